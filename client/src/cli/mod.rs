//! The `sosq` commands: one function per command, each a connection that does one thing.

pub mod lists;
pub mod output;
pub mod session;
pub mod signals;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use sosq::profile::SupportProfile;
use sosq::protocol::{Assignee, CaseFilter, CaseState, DeleteSelector, Priority, Reply, Request};
use sosq::{Client, ClientError, ConnectOptions, SessionCode};

use output::Output;
use session::{Ended, Forwarding, Side};

/// sosq: ask for remote support, work the support queue, or administer sosqd.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Machine-readable output: JSON on stdout, JSON lines on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the daemon; every command takes these.
#[derive(Args)]
pub struct ConnectionArgs {
    /// sosqd address, host:port [default: 127.0.0.1:4433, or the support profile's].
    #[arg(long, env = "SOSQ_SERVER", global = true)]
    pub server: Option<String>,
    /// SHA-256 fingerprint of the server certificate (`sosqd fingerprint` prints it).
    #[arg(long, env = "SOSQ_FINGERPRINT", global = true, hide_env_values = true)]
    pub fingerprint: Option<String>,
    /// CA certificate(s) (PEM) to trust instead of a fingerprint, when the daemon runs with
    /// an operator's certificate.
    #[arg(long, env = "SOSQ_CA", global = true, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Access token of an expert or admin; without one you are a customer.
    #[arg(long, env = "SOSQ_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// An expert or a team, exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct AssigneeArgs {
    /// An expert, by user name.
    #[arg(long)]
    expert: Option<String>,
    /// A team queue, by group name.
    #[arg(long)]
    group: Option<String>,
}

impl AssigneeArgs {
    fn assignee(self) -> Result<Assignee, ClientError> {
        match (self.expert, self.group) {
            (Some(expert), None) => Ok(Assignee::Expert(expert)),
            (None, Some(group)) => Ok(Assignee::Group(group)),
            _ => Err(ClientError::Options(
                "give --expert NAME or --group NAME".into(),
            )),
        }
    }
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Customer: ask for help. Prints your session code, waits for an expert, then runs
    /// the session (stdin to the expert, the expert to stdout).
    Request {
        /// Your name, as the expert will see it [default: your login name].
        #[arg(long)]
        name: Option<String>,
        /// A support profile from your support team: server, certificate, team and
        /// welcome text, so nothing else needs to be typed.
        #[arg(long, value_name = "FILE")]
        profile: Option<std::path::PathBuf>,
        /// What you need help with.
        #[arg(long, default_value = "")]
        description: String,
        /// How badly business is hurt: critical, high, normal or low.
        #[arg(long, default_value = "normal")]
        priority: Priority,
        /// The support team to ask (from your support profile); default `general`.
        #[arg(long)]
        group: Option<String>,
        /// Let the expert reach this one local TCP service (e.g. 127.0.0.1:5900 for your
        /// VNC server); nothing else on your machine is reachable. Ctrl-C ends the session.
        #[arg(long, value_name = "ADDR")]
        share: Option<SocketAddr>,
    },
    /// Customer: join a case an expert created (or come back to yours with --secret).
    Join {
        /// The session code the expert gave you.
        code: String,
        /// Your name.
        #[arg(long)]
        name: String,
        /// The resume secret printed when you first joined or asked for help.
        #[arg(long, env = "SOSQ_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Let the expert reach this one local TCP service (e.g. 127.0.0.1:5900 for your
        /// VNC server); nothing else on your machine is reachable. Ctrl-C ends the session.
        #[arg(long, value_name = "ADDR")]
        share: Option<SocketAddr>,
    },
    /// Expert: show the waiting cases, a page at a time (customers who dropped are shown
    /// offline, in their place).
    Queue {
        /// Keep showing the first page as the queue changes (the server pushes every change).
        #[arg(long, conflicts_with_all = ["after", "all"])]
        watch: bool,
        #[command(flatten)]
        paging: lists::Paging,
    },
    /// Expert: take the next waiting case and run the session.
    Pull {
        /// If nobody is waiting, wait for the next customer instead of failing.
        #[arg(long)]
        wait: bool,
        /// Listen on this local address; every TCP connection to it is forwarded to the
        /// service the customer shares (e.g. 127.0.0.1:15900).
        #[arg(long, value_name = "ADDR")]
        forward: Option<SocketAddr>,
    },
    /// Expert: connect to a case by its code and run the session.
    Connect {
        /// The session code.
        code: String,
        /// Listen on this local address; every TCP connection to it is forwarded to the
        /// service the customer shares (e.g. 127.0.0.1:15900).
        #[arg(long, value_name = "ADDR")]
        forward: Option<SocketAddr>,
    },
    /// Expert: create a case and print its code to read to the customer.
    Create {
        /// The customer's name.
        #[arg(long)]
        customer: String,
        /// What the case is about.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Expert, or the case's customer (with --secret): close a case.
    Close {
        /// The session code.
        code: String,
        /// Customers: the resume secret of your case.
        #[arg(long, env = "SOSQ_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Show one case with its history (customers: your own, with --secret).
    Status {
        /// The session code.
        code: String,
        /// Customers: the resume secret of your case.
        #[arg(long, env = "SOSQ_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// Expert or admin: change a case's priority; the reason goes into its history.
    Escalate {
        /// The session code.
        code: String,
        /// The new priority: critical, high, normal or low.
        #[arg(long)]
        priority: Priority,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Expert or admin: route a case to one expert (offered only to them) or a team queue.
    Assign {
        /// The session code.
        code: String,
        #[command(flatten)]
        to: AssigneeArgs,
    },
    /// Expert in a session: hand the case to another expert or team; the customer stays
    /// connected and is told who takes over.
    Transfer {
        /// The session code.
        code: String,
        #[command(flatten)]
        to: AssigneeArgs,
    },
    /// Expert or admin: show the whole history of a case (open, closed or expired): every
    /// transition and action with its time, who did it and from which address.
    History {
        /// The session code.
        code: String,
    },
    /// Admin: list the cases with their state and times, oldest first, a page at a time.
    Cases {
        /// Only cases in this state: new, pending, in_progress, closed, expired.
        #[arg(long)]
        state: Option<CaseState>,
        #[command(flatten)]
        paging: lists::Paging,
    },
    /// Admin: delete cases by code, or in bulk by state and/or age. Deleting an active
    /// case ends its session.
    Delete {
        /// Codes of the cases to delete.
        codes: Vec<String>,
        /// Delete every case in this state.
        #[arg(long, conflicts_with = "codes")]
        state: Option<CaseState>,
        /// Delete cases created longer ago than this, e.g. "7d", "12h".
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "codes")]
        older_than: Option<Duration>,
    },
}

/// Runs the command; `Err` carries the one-line reason.
pub async fn run(cli: Cli) -> Result<(), ClientError> {
    let out = Output { json: cli.json };
    // A support profile fills in whatever the flags and environment leave open.
    let profile = match &cli.command {
        Command::Request {
            profile: Some(path),
            ..
        } => Some(SupportProfile::load(path).map_err(|e| ClientError::Options(e.to_string()))?),
        _ => None,
    };
    let fingerprint = cli
        .connection
        .fingerprint
        .clone()
        .or_else(|| profile.as_ref().map(|p| p.fingerprint.clone()));
    let fingerprint = match (fingerprint, &cli.connection.ca) {
        (Some(fingerprint), _) => fingerprint,
        (None, Some(_)) => String::new(),
        (None, None) => {
            return Err(ClientError::Options(
                "no server fingerprint: pass --fingerprint or set SOSQ_FINGERPRINT (the admin gets it with `sosqd fingerprint`), or --ca FILE for an operator's certificate".into(),
            ))
        }
    };
    let server = cli
        .connection
        .server
        .clone()
        .or_else(|| profile.as_ref().map(|p| p.server.clone()))
        .unwrap_or_else(|| "127.0.0.1:4433".to_string());
    let options = ConnectOptions {
        server,
        fingerprint,
        token: cli
            .connection
            .token
            .clone()
            .filter(|t| !t.trim().is_empty()),
        ca: cli.connection.ca.clone(),
    };
    // Check what we can before touching the network.
    let delete = match &cli.command {
        Command::Delete {
            codes,
            state,
            older_than,
        } => Some(delete_selector(codes, *state, *older_than)?),
        _ => None,
    };
    // Bind the expert's port first, so a busy port fails before anyone is paired.
    let listener = match &cli.command {
        Command::Pull {
            forward: Some(addr),
            ..
        }
        | Command::Connect {
            forward: Some(addr),
            ..
        } => {
            let listener = sosq::forward::listen(*addr)
                .await
                .map_err(|e| ClientError::Options(e.to_string()))?;
            let bound = listener.local_addr().unwrap_or(*addr);
            out.status(
                "forwarding",
                format!("forwarding connections to {bound} to the customer's shared service"),
                json!({"listen": bound}),
            );
            Some(listener)
        }
        _ => None,
    };
    // A customer's request travels with the hello: one round trip less on a slow network.
    let first = customer_request(&cli.command, profile.as_ref());
    let (mut client, first_reply) = Client::connect_with(&options, first).await?;
    let first_reply =
        || first_reply.ok_or_else(|| ClientError::Unexpected("no reply to the request".into()));
    match cli.command {
        Command::Request { share, .. } => {
            let reply = first_reply()?;
            report_attached(&out, &reply);
            if let Some(welcome) = profile.as_ref().and_then(|p| p.welcome.as_deref()) {
                out.status("welcome", welcome, json!({ "text": welcome }));
            }
            let forwarding = Forwarding {
                share,
                listener: None,
            };
            run_session(client, Side::Customer, out, forwarding).await
        }
        Command::Join { share, .. } => {
            let reply = first_reply()?;
            report_attached(&out, &reply);
            let forwarding = Forwarding {
                share,
                listener: None,
            };
            run_session(client, Side::Customer, out, forwarding).await
        }
        Command::Pull { wait, .. } => {
            let reply = client.request(Request::Pull { wait }).await?;
            if let Reply::Waiting = reply {
                out.status(
                    "waiting",
                    "nobody is waiting; you get the next customer who asks for help",
                    json!({}),
                );
            }
            report_attached(&out, &reply);
            let forwarding = Forwarding {
                share: None,
                listener,
            };
            run_session(client, Side::Expert, out, forwarding).await
        }
        Command::Connect { code, .. } => {
            let reply = client.request(Request::Connect { code }).await?;
            report_attached(&out, &reply);
            let forwarding = Forwarding {
                share: None,
                listener,
            };
            run_session(client, Side::Expert, out, forwarding).await
        }
        Command::Queue {
            watch: false,
            paging,
        } => {
            lists::queue(&mut client, &out, paging).await?;
            client.close().await;
            Ok(())
        }
        Command::Queue {
            watch: true,
            paging,
        } => lists::watch_queue(client, out, paging.limit).await,
        Command::Create {
            customer,
            description,
        } => {
            let reply = client
                .request(Request::Create {
                    customer,
                    description,
                })
                .await?;
            let Reply::Created(case) = reply else {
                return Err(unexpected());
            };
            out.print(case.code.to_string(), json!(case));
            client.close().await;
            Ok(())
        }
        Command::Close { code, secret } => {
            let reply = client
                .request(Request::Close {
                    code,
                    resume_secret: secret,
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(format!("closed case {}", case.code), json!(case));
            client.close().await;
            Ok(())
        }
        Command::Assign { code, to } => {
            let to = to.assignee()?;
            let reply = client.request(Request::Assign { code, to }).await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            let whom = case
                .assigned_to
                .as_ref()
                .map(|expert| format!("expert {expert}"))
                .unwrap_or_else(|| format!("group {}", case.group));
            out.print(
                format!("case {} is now routed to {whom}", case.code),
                json!(case),
            );
            client.close().await;
            Ok(())
        }
        Command::Transfer { code, to } => {
            let to = to.assignee()?;
            let reply = client
                .request(Request::Transfer {
                    code,
                    to: to.clone(),
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(format!("handed case {} to {to}", case.code), json!(case));
            client.close().await;
            Ok(())
        }
        Command::Escalate {
            code,
            priority,
            reason,
        } => {
            let reply = client
                .request(Request::Escalate {
                    code,
                    priority,
                    reason,
                })
                .await?;
            let Reply::Case(case) = reply else {
                return Err(unexpected());
            };
            out.print(
                format!("case {} is now {}", case.code, case.priority),
                json!(case),
            );
            client.close().await;
            Ok(())
        }
        Command::Status { code, secret } => {
            lists::status(&mut client, &out, code, secret).await?;
            client.close().await;
            Ok(())
        }
        Command::History { code } => {
            lists::history(&mut client, &out, code).await?;
            client.close().await;
            Ok(())
        }
        Command::Cases { state, paging } => {
            lists::cases(&mut client, &out, state, paging).await?;
            client.close().await;
            Ok(())
        }
        Command::Delete { .. } => {
            let selector = delete.ok_or_else(unexpected)?;
            let Reply::Deleted { count } = client.request(Request::Delete(selector)).await? else {
                return Err(unexpected());
            };
            let noun = if count == 1 { "case" } else { "cases" };
            out.print(
                format!("deleted {count} {noun}"),
                json!({ "deleted": count }),
            );
            client.close().await;
            Ok(())
        }
    }
}

fn delete_selector(
    codes: &[String],
    state: Option<CaseState>,
    older_than: Option<Duration>,
) -> Result<DeleteSelector, ClientError> {
    if !codes.is_empty() {
        let parsed = codes
            .iter()
            .map(|code| code.parse::<SessionCode>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Options(e.to_string()))?;
        return Ok(DeleteSelector::Codes(parsed));
    }
    if state.is_none() && older_than.is_none() {
        return Err(ClientError::Options(
            "say what to delete: codes, --state STATE and/or --older-than DURATION".into(),
        ));
    }
    Ok(DeleteSelector::Filter(CaseFilter {
        state,
        older_than_ms: older_than.map(|d| d.as_millis() as u64),
    }))
}

/// The request a customer command sends with its hello (`request`, `join`); none for staff.
fn customer_request(command: &Command, profile: Option<&SupportProfile>) -> Option<Request> {
    match command {
        Command::Request {
            name,
            description,
            priority,
            group,
            ..
        } => Some(Request::OpenSos {
            customer: name
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "customer".into()),
            description: description.clone(),
            priority: *priority,
            group: group
                .clone()
                .or_else(|| profile.and_then(|p| p.group.clone())),
        }),
        Command::Join {
            code, name, secret, ..
        } => Some(Request::Join {
            code: code.clone(),
            customer: name.clone(),
            resume_secret: secret.clone(),
        }),
        _ => None,
    }
}

fn report_attached(out: &Output, reply: &Reply) {
    let Reply::Attached {
        case,
        resume_secret,
        position,
    } = reply
    else {
        return;
    };
    let mut human = format!("case {} ({})", case.code, case.state);
    if let Some(position) = position {
        human = format!(
            "your session code is {} - you are number {position} in the queue; an expert will be with you shortly",
            case.code
        );
    } else if !case.customer.is_empty() {
        human.push_str(&format!(": customer {}", case.customer));
        if !case.description.is_empty() {
            human.push_str(&format!(" - {}", case.description));
        }
    }
    if let Some(secret) = resume_secret {
        human.push_str(&format!(
            "\nkeep this resume secret to come back to or close your case: {secret}"
        ));
    }
    out.status(
        "attached",
        human,
        json!({
            "code": case.code,
            "state": case.state,
            "position": position,
            "resume_secret": resume_secret,
            "customer": case.customer,
            "description": case.description,
        }),
    );
}

/// Runs the session, then closes the connection either way.
async fn run_session(
    mut client: Client,
    side: Side,
    out: Output,
    forwarding: Forwarding,
) -> Result<(), ClientError> {
    let ended = session::run(&mut client, side, out, forwarding).await;
    client.close().await;
    match ended? {
        Ended::PeerFinished | Ended::ByServer => Ok(()),
        Ended::Interrupted => Err(ClientError::Interrupted),
    }
}

/// The error for a reply that does not fit the request.
pub(crate) fn unexpected() -> ClientError {
    ClientError::Unexpected("the server answered something else".into())
}
