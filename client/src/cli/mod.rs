//! The `sosq` commands: one function per command, each a connection that does one thing.
//! Session commands (`request`, `join`, `pull`, `connect`) start in [`start`]; listings are
//! in [`lists`]; the one-request commands in [`one_shot`]; here are the arguments and
//! [`run`], which connects and hands the command on.

pub mod attachments;
pub mod chat;
pub mod endpoints;
pub mod events;
pub mod filters;
pub mod forwards;
pub mod help;
pub mod lists;
pub mod one_shot;
pub mod output;
pub mod reconnect;
pub mod session;
pub mod shapes;
pub mod signals;
pub mod start;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use sosq::profile::SupportProfile;
use sosq::protocol::{Assignee, Priority};
use sosq::{Client, ClientError, ConnectOptions};

use help::{ABOUT, GLOBAL, LONG_ABOUT};
use output::Output;

/// sosq: ask for remote support, work the support queue, or administer sosqd.
#[derive(Parser)]
#[command(name = "sosq", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Machine-readable output: JSON on stdout, JSON lines on stderr.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the daemon; every command takes these, listed apart under [`GLOBAL`] so
/// a command's help shows its own options first.
#[derive(Args)]
#[command(next_help_heading = GLOBAL)]
pub struct ConnectionArgs {
    /// sosqd address, host:port [default: 127.0.0.1:4433, or the support profile's]. Several
    /// (the nodes of a cluster): repeat the flag or separate them with commas; each is
    /// tried, and every address a name resolves to.
    #[arg(
        long,
        env = "SOSQ_SERVER",
        global = true,
        hide_env_values = true,
        value_name = "ADDR",
        value_delimiter = ',',
        action = clap::ArgAction::Append
    )]
    pub server: Vec<String>,
    /// SHA-256 fingerprint of the server certificate (`sosqd fingerprint` prints it).
    #[arg(
        long,
        env = "SOSQ_FINGERPRINT",
        global = true,
        hide_env_values = true,
        value_name = "FINGERPRINT"
    )]
    pub fingerprint: Option<String>,
    /// CA certificate(s) (PEM) to trust instead of a fingerprint, when the daemon runs with
    /// an operator's certificate.
    #[arg(
        long,
        env = "SOSQ_CA",
        global = true,
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub ca: Option<std::path::PathBuf>,
    /// Access token of an expert or admin; without one you are a customer.
    #[arg(
        long,
        env = "SOSQ_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// An expert or a team, exactly one.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct AssigneeArgs {
    /// An expert, by user name.
    #[arg(long, value_name = "NAME")]
    expert: Option<String>,
    /// A team queue, by group name.
    #[arg(long, value_name = "GROUP")]
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
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// A support profile from your support team: server, certificate, team and
        /// welcome text, so nothing else needs to be typed.
        #[arg(long, value_name = "FILE")]
        profile: Option<std::path::PathBuf>,
        /// What you need help with.
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
        /// How badly business is hurt: critical, high, normal or low.
        #[arg(long, default_value = "normal", value_name = "PRIORITY")]
        priority: Priority,
        /// The support team to ask (from your support profile); default `general`.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Let the expert reach this one local TCP service (e.g. 127.0.0.1:5900 for your
        /// VNC server); nothing else on your machine is reachable. Ctrl-C ends the session.
        #[arg(long, value_name = "ADDR")]
        share: Option<SocketAddr>,
        /// If sosqd does not answer, keep trying until it does (instead of failing after 5 s).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        session: start::SessionArgs,
    },
    /// Customer: join a case an expert created (or come back to yours with --secret).
    Join {
        /// The session code the expert gave you.
        code: String,
        /// Your name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// A support profile from your support team (server and certificate).
        #[arg(long, value_name = "FILE")]
        profile: Option<std::path::PathBuf>,
        /// The resume secret printed when you first joined or asked for help.
        #[arg(
            long,
            env = "SOSQ_SECRET",
            hide_env_values = true,
            value_name = "SECRET"
        )]
        secret: Option<String>,
        /// Let the expert reach this one local TCP service (e.g. 127.0.0.1:5900 for your
        /// VNC server); nothing else on your machine is reachable. Ctrl-C ends the session.
        #[arg(long, value_name = "ADDR")]
        share: Option<SocketAddr>,
        /// If sosqd does not answer, keep trying until it does (instead of failing after 5 s).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        session: start::SessionArgs,
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
    /// Expert: take the next waiting case and run the session; if the customer vanishes,
    /// take the next one.
    Pull {
        /// If nobody is waiting, wait for the next customer instead of failing (also: wait
        /// for sosqd to answer).
        #[arg(long)]
        wait: bool,
        /// Listen on this local address; every TCP connection to it is forwarded to the
        /// service the customer shares (e.g. 127.0.0.1:15900).
        #[arg(long, value_name = "ADDR")]
        forward: Option<SocketAddr>,
        #[command(flatten)]
        session: start::SessionArgs,
    },
    /// Expert: connect to a case by its code and run the session (if the customer drops,
    /// wait for them to come back).
    Connect {
        /// The session code.
        code: String,
        /// Listen on this local address; every TCP connection to it is forwarded to the
        /// service the customer shares (e.g. 127.0.0.1:15900).
        #[arg(long, value_name = "ADDR")]
        forward: Option<SocketAddr>,
        /// If sosqd does not answer, keep trying until it does (instead of failing after 5 s).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        session: start::SessionArgs,
    },
    /// Expert: create a case and print its code to read to the customer.
    Create {
        /// The customer's name.
        #[arg(long, value_name = "NAME")]
        customer: String,
        /// What the case is about.
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
    },
    /// Expert, or the case's customer (with --secret): close a case.
    Close {
        /// The session code.
        code: String,
        /// Customers: the resume secret of your case.
        #[arg(
            long,
            env = "SOSQ_SECRET",
            hide_env_values = true,
            value_name = "SECRET"
        )]
        secret: Option<String>,
        /// Customers: your support profile (server and certificate).
        #[arg(long, value_name = "FILE")]
        profile: Option<std::path::PathBuf>,
    },
    /// Show one case with its history (customers: your own, with --secret).
    Status {
        /// The session code.
        code: String,
        /// Customers: the resume secret of your case.
        #[arg(
            long,
            env = "SOSQ_SECRET",
            hide_env_values = true,
            value_name = "SECRET"
        )]
        secret: Option<String>,
        /// Customers: your support profile (server and certificate).
        #[arg(long, value_name = "FILE")]
        profile: Option<std::path::PathBuf>,
    },
    /// Expert or admin: change a case's priority; the reason goes into its history.
    Escalate {
        /// The session code.
        code: String,
        /// The new priority: critical, high, normal or low.
        #[arg(long, value_name = "PRIORITY")]
        priority: Priority,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Expert or admin: add a staff note to a case's history, open or not. Notes are for
    /// staff: the customer never sees them.
    Note {
        /// The session code.
        code: String,
        /// The note (at most 2,000 characters).
        text: String,
    },
    /// Customer: add a message to your waiting case ("it also beeps"); staff see it.
    Message(attachments::MessageArgs),
    /// Customer: attach a file to your case (a screenshot of the error): a PNG, JPEG, GIF
    /// or WebP image, a PDF, or plain text.
    Attach(attachments::AttachArgs),
    /// Expert or admin: list a case's attachments, or download one with --get ID.
    Attachments(attachments::AttachmentsArgs),
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
    /// Expert in a session: ask the customer (in a browser, most often) to run sosq and
    /// share a local service; the customer's page shows the download and the exact
    /// `sosq join` command, prefilled with its code and secret.
    InviteNative {
        /// The session code.
        code: String,
        /// The service on the customer's machine to share, host:port (127.0.0.1:5900: its
        /// screen over VNC; 127.0.0.1:22: SSH).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5900")]
        share: SocketAddr,
    },
    /// Expert or admin: show the whole history of a case (open, closed or expired): every
    /// transition and action with its time, who did it and from which address.
    History {
        /// The session code.
        code: String,
    },
    /// Admin: list the cases with their state and times, oldest first, a page at a time;
    /// the filter flags narrow it.
    Cases {
        #[command(flatten)]
        filter: filters::FilterArgs,
        #[command(flatten)]
        paging: lists::Paging,
    },
    /// Admin: delete cases by code, or in bulk by filter (the flags `sosq cases` takes:
    /// what it lists is what is deleted). Deleting an active case ends its session.
    Delete {
        /// Codes of the cases to delete; a code no case has is an error, named.
        #[arg(value_name = "CODE")]
        codes: Vec<String>,
        #[command(flatten)]
        filter: filters::FilterArgs,
    },
}

impl Command {
    /// The support profile the command was given, if any.
    pub fn profile(&self) -> Option<&std::path::Path> {
        match self {
            Command::Request { profile, .. }
            | Command::Join { profile, .. }
            | Command::Close { profile, .. }
            | Command::Status { profile, .. } => profile.as_deref(),
            Command::Message(args) => args.profile.as_deref(),
            Command::Attach(args) => args.profile.as_deref(),
            _ => None,
        }
    }

    /// Whether the command ends itself on Ctrl-C, SIGTERM and SIGHUP (sessions and
    /// `queue --watch`), rather than being cut short.
    pub fn handles_signals(&self) -> bool {
        matches!(
            self,
            Command::Request { .. }
                | Command::Join { .. }
                | Command::Pull { .. }
                | Command::Connect { .. }
                | Command::Queue { watch: true, .. }
        )
    }
}

/// Runs the command; `Err` carries the one-line reason.
pub async fn run(cli: Cli) -> Result<(), ClientError> {
    let out = Output { json: cli.json };
    // A support profile fills in whatever the flags and environment leave open.
    let profile = match cli.command.profile() {
        Some(path) => {
            Some(SupportProfile::load(path).map_err(|e| ClientError::Options(e.to_string()))?)
        }
        None => None,
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
    let given: Vec<&str> = cli
        .connection
        .server
        .iter()
        .map(|server| server.trim())
        .filter(|server| !server.is_empty())
        .collect();
    let server = match given.is_empty() {
        false => given.join(","),
        true => profile
            .as_ref()
            .map(|p| p.server.clone())
            .unwrap_or_else(|| "127.0.0.1:4433".to_string()),
    };
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
    if let Some(session) = start::Session::of(&cli.command, profile.as_ref()) {
        return start::run(session, options, out, profile.as_ref()).await;
    }
    // Check what we can before touching the network.
    let delete = match &cli.command {
        Command::Delete { codes, filter } => Some(one_shot::delete_selector(codes, filter)?),
        _ => None,
    };
    if let Command::Queue {
        watch: true,
        paging,
    } = cli.command
    {
        let client = connect(&options, out).await?;
        return lists::watch_queue(client, out, paging.limit).await;
    }
    let mut client = connect(&options, out).await?;
    // Whatever happens, the connection closes politely before the command ends (the one a
    // redirect led to, if any: the client closed the one it left).
    let done = one_shot::one_shot(&mut client, cli.command, delete, &out).await;
    client.close().await;
    done
}

/// Connects and says hello (remembering the endpoint, to close it however we end); a
/// redirect to another cluster node is followed saying so in one line.
async fn connect(options: &ConnectOptions, out: Output) -> Result<Client, ClientError> {
    let mut client = Client::connect(options).await?;
    endpoints::remember(client.endpoint());
    client.set_redirect_notice(events::redirect_notice(out));
    Ok(client)
}

/// The error for a reply that does not fit the request.
pub(crate) fn unexpected() -> ClientError {
    ClientError::Unexpected("the server answered something else".into())
}
