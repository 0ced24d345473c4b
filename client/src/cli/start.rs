//! Starting a session command (`request`, `join`, `pull`, `connect`): bind the expert's
//! forwarding port first (a busy port fails before anyone is paired), reach the daemon
//! (with `--wait`, for as long as it takes), attach to the case, then hand over to
//! [`super::session`] and say how the session ended.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use sosq::profile::SupportProfile;
use sosq::protocol::{CaseState, Reply, Request};
use sosq::{Client, ClientError, ConnectOptions, SessionCode};

use super::endpoints;
use super::output::Output;
use super::session::{self, Attach, Forwarding, Outcome, Plan};
use super::Command;

/// How a session rides out a lost connection and how it ends.
#[derive(Args, Debug, Clone)]
pub struct SessionArgs {
    /// After a lost connection (a network drop, a daemon restart), keep reconnecting for
    /// this long before giving up.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub reconnect_for: Duration,
    /// On Ctrl-C, let what this side already took in reach the other side for at most this
    /// long before leaving (Ctrl-C again leaves at once).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    pub drain_for: Duration,
}

/// A session command, as the session needs it.
pub struct Session {
    first: Request,
    /// Wait for the daemon to answer.
    wait: bool,
    /// `pull --wait`: wait for customers too.
    pull_waits: bool,
    args: SessionArgs,
    share: Option<SocketAddr>,
    forward: Option<SocketAddr>,
    /// The customer's name (to come back with).
    name: String,
    /// The support profile it was started with (to come back with the same).
    profile: Option<std::path::PathBuf>,
}

impl Session {
    /// The session `command` starts, if it is a session command.
    pub fn of(command: &Command, profile: Option<&SupportProfile>) -> Option<Session> {
        let session = match command {
            Command::Request {
                name,
                profile: profile_path,
                description,
                priority,
                group,
                share,
                wait,
                session,
            } => {
                let name = name
                    .clone()
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_else(|| "customer".into());
                Session {
                    first: Request::OpenSos {
                        customer: name.clone(),
                        description: description.clone(),
                        priority: *priority,
                        group: group
                            .clone()
                            .or_else(|| profile.and_then(|p| p.group.clone())),
                    },
                    wait: *wait,
                    pull_waits: false,
                    args: session.clone(),
                    share: *share,
                    forward: None,
                    name,
                    profile: profile_path.clone(),
                }
            }
            Command::Join {
                code,
                name,
                profile: profile_path,
                secret,
                share,
                wait,
                session,
            } => Session {
                first: Request::Join {
                    code: code.clone(),
                    customer: name.clone(),
                    resume_secret: secret.clone(),
                },
                wait: *wait,
                pull_waits: false,
                args: session.clone(),
                share: *share,
                forward: None,
                name: name.clone(),
                profile: profile_path.clone(),
            },
            Command::Pull {
                wait,
                forward,
                session,
            } => Session {
                first: Request::Pull { wait: *wait },
                wait: *wait,
                pull_waits: *wait,
                args: session.clone(),
                share: None,
                forward: *forward,
                name: String::new(),
                profile: None,
            },
            Command::Connect {
                code,
                forward,
                wait,
                session,
            } => Session {
                first: Request::Connect {
                    code: code.clone(),
                    working_queue: false,
                },
                wait: *wait,
                pull_waits: false,
                args: session.clone(),
                share: None,
                forward: *forward,
                name: String::new(),
                profile: None,
            },
            _ => return None,
        };
        Some(session)
    }
}

/// Runs a session command to its end.
pub async fn run(
    session: Session,
    options: ConnectOptions,
    out: Output,
    profile: Option<&SupportProfile>,
) -> Result<(), ClientError> {
    let listener = match session.forward {
        Some(addr) => {
            let listener = sosq::forward::listen(addr)
                .await
                .map_err(|e| ClientError::Local(e.to_string()))?;
            let bound = listener.local_addr().unwrap_or(addr);
            out.status(
                "forwarding",
                format!("forwarding connections to {bound} to the customer's shared service"),
                json!({"listen": bound}),
            );
            Some(listener)
        }
        None => None,
    };
    // A customer's request travels with the hello: one round trip less on a slow network.
    let (client, reply) = reach(&options, session.first.clone(), session.wait, &out)
        .await
        .map_err(|e| hint_wait(e, &session.first))?;
    if let Reply::Waiting = reply {
        out.status(
            "waiting",
            "nobody is waiting; you get the next customer who asks for help",
            json!({}),
        );
    }
    report_attached(&out, &reply);
    if let (Request::OpenSos { .. }, Some(welcome)) =
        (&session.first, profile.and_then(|p| p.welcome.as_deref()))
    {
        let code = match &reply {
            Reply::Attached { case, .. } => Some(case.code),
            _ => None,
        };
        out.status("welcome", welcome, json!({ "code": code, "text": welcome }));
    }
    let attach = attach_of(&session, &reply)?;
    let plan = Plan {
        options,
        attach,
        reconnect_for: session.args.reconnect_for,
        drain_for: session.args.drain_for,
        pull_waits: session.pull_waits,
    };
    let forwarding = Forwarding {
        share: session.share,
        listener,
    };
    match session::run(client, plan, out, forwarding).await? {
        Outcome::Finished => Ok(()),
        Outcome::Replaced { reason, code } => {
            out.status(
                "replaced",
                format!("{reason}; this one ends here"),
                json!({"code": code, "reason": reason}),
            );
            Ok(())
        }
        Outcome::Left {
            cut,
            attach,
            signal,
        } => {
            let again = ComeBack {
                profile: session.profile.as_deref(),
                share: session.share,
            };
            report_left(&out, &attach, cut, signal, &again);
            Ok(())
        }
    }
}

/// Connects and sends `first` with the hello; with `wait`, an unanswered daemon is tried
/// again (every 2 s, saying so once) until it answers.
async fn reach(
    options: &ConnectOptions,
    first: Request,
    wait: bool,
    out: &Output,
) -> Result<(Client, Reply), ClientError> {
    let mut said = false;
    loop {
        let notice = super::events::redirect_notice(*out);
        match Client::connect_with_notice(options, Some(first.clone()), notice).await {
            Ok((client, reply)) => {
                endpoints::remember(client.endpoint());
                let reply = reply
                    .ok_or_else(|| ClientError::Unexpected("no reply to the request".into()))?;
                return Ok((client, reply));
            }
            Err(e @ (ClientError::NoAnswer { .. } | ClientError::Connect { .. })) if wait => {
                if !said {
                    // The case the command is for, when it names one.
                    let code = match &first {
                        Request::Join { code, .. } | Request::Connect { code, .. } => {
                            code.parse::<SessionCode>().ok()
                        }
                        _ => None,
                    };
                    out.status(
                        "no_answer",
                        format!("{e}; trying again until it answers (--wait)"),
                        json!({"code": code, "reason": e.to_string()}),
                    );
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            // A `pull --wait` on a cluster node waits for its answer; if that node goes
            // away meanwhile, the wait goes on at the next server given.
            Err(e @ (ClientError::Disconnected(_) | ClientError::Ended { .. }))
                if wait && matches!(first, Request::Pull { .. }) && !revoked(&e) =>
            {
                out.status(
                    "reconnecting",
                    format!("{e}; waiting on at the servers given (--wait)"),
                    json!({"code": null, "reason": e.to_string()}),
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the daemon ended the connection because the staff token is no good (waiting on
/// elsewhere would only be refused again).
fn revoked(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Ended { close_code, .. }
            if *close_code == sosq::protocol::close_code::UNAUTHENTICATED
    )
}

/// A `pull` that found nobody waiting says how to wait for the next customer instead.
fn hint_wait(error: ClientError, first: &Request) -> ClientError {
    match (error, first) {
        (ClientError::Refused(mut refusal), Request::Pull { wait: false })
            if refusal.kind == sosq::protocol::ErrorKind::QueueEmpty =>
        {
            refusal
                .message
                .push_str("; `sosq pull --wait` waits for the next one");
            ClientError::Refused(refusal)
        }
        (error, _) => error,
    }
}

/// How this party comes back to its case, from the reply that attached it.
fn attach_of(session: &Session, reply: &Reply) -> Result<Attach, ClientError> {
    Ok(match (&session.first, reply) {
        (
            Request::OpenSos { .. } | Request::Join { .. },
            Reply::Attached {
                case,
                resume_secret,
                ..
            },
        ) => {
            let given = match &session.first {
                Request::Join { resume_secret, .. } => resume_secret.clone(),
                _ => None,
            };
            Attach::Customer {
                code: case.code,
                name: session.name.clone(),
                secret: resume_secret.clone().or(given),
            }
        }
        (Request::Pull { .. }, Reply::Attached { case, .. }) => Attach::Case {
            code: case.code,
            working_queue: true,
        },
        (Request::Pull { wait }, Reply::Waiting) => Attach::Pull { wait: *wait },
        (Request::Connect { .. }, Reply::Attached { case, .. }) => Attach::Case {
            code: case.code,
            working_queue: false,
        },
        _ => return Err(super::unexpected()),
    })
}

/// What a customer's come-back command must repeat besides its case: the profile that
/// names the server, and the service it shares.
struct ComeBack<'a> {
    profile: Option<&'a std::path::Path>,
    share: Option<SocketAddr>,
}

/// The line when a party leaves a case open (Ctrl-C, or both sides finished): the case stays
/// open, and the exact commands to come back or close it.
fn report_left(
    out: &Output,
    attach: &Attach,
    cut: usize,
    signal: Option<super::signals::Signal>,
    again: &ComeBack<'_>,
) {
    let cut_note = match cut {
        0 => String::new(),
        n => format!(" ({n} forwarded connection(s) had not finished and were cut)"),
    };
    let left = match signal {
        Some(_) => "you left the session",
        None => "the conversation is over",
    };
    let human = match attach {
        Attach::Customer { code, name, secret } => {
            let secret = secret.as_deref().unwrap_or("SECRET");
            let profile = again
                .profile
                .map(|path| format!(" --profile {}", path.display()))
                .unwrap_or_default();
            let share = again
                .share
                .map(|addr| format!(" --share {addr}"))
                .unwrap_or_default();
            format!(
                "{left}{cut_note}; case {code} stays open: come back with `sosq join {code} --name {name:?} --secret {secret}{profile}{share}`, or close it with `sosq close {code} --secret {secret}{profile}`"
            )
        }
        Attach::Case { code, .. } => format!(
            "{left}{cut_note}; case {code} stays open: come back with `sosq connect {code}`, or close it with `sosq close {code}`"
        ),
        Attach::Pull { .. } => "you stopped waiting for a customer".to_string(),
    };
    let code: Option<SessionCode> = match attach {
        Attach::Customer { code, .. } | Attach::Case { code, .. } => Some(*code),
        Attach::Pull { .. } => None,
    };
    let signal = signal.map(super::signals::Signal::name);
    let fields = json!({"code": code, "cut": cut, "signal": signal, "message": human});
    out.status("left", human, fields);
}

/// Reports the reply that attached this party to a case: its code, and for a customer its
/// place in the queue and its resume secret (shown this once).
pub fn report_attached(out: &Output, reply: &Reply) {
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
    if position.is_none() && matches!(case.state, CaseState::New | CaseState::Pending) {
        // Without this, an expert who came by code (or a customer early to a created
        // case) sees one line and then silence, which looks like a hang.
        human.push_str(
            "\nwaiting for the other party to connect (Ctrl-C stops waiting; the case stays open)",
        );
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
