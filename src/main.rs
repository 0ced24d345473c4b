//! `sosqd`: run the broker (`serve`, the default), print the certificate fingerprint, add
//! staff users and teams, set the public status page's notice, keep and write support
//! profiles (`main/profile.rs`), back up and restore the case store.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sosqd::config::{parse_duration, Config, Overrides};
use sosqd::store::users::{StaffRole, UserDirectory};
use sosqd::transport::Identity;

#[path = "main/profile.rs"]
mod profile;
#[path = "main/serve.rs"]
mod serve;

/// mimalloc instead of glibc's malloc: the broker allocates and frees small buffers per
/// packet and per message from every worker thread, where glibc's arenas showed up as a
/// fifth of the daemon's CPU at 1,000 pairings/s (README "Scale").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sosqd: the sosq remote-support session broker.
#[derive(Parser)]
#[command(version = sosqd::LONG_VERSION, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
    /// Print the SHA-256 fingerprint of the server certificate (an error if there is none
    /// yet, unless --create).
    Fingerprint {
        /// Make the self-signed certificate and key first if the data dir has none (the
        /// daemon's first start does the same).
        #[arg(long)]
        create: bool,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Manage experts and admins.
    #[command(subcommand)]
    User(UserCommand),
    /// Support profiles: without a command, write the file customers run `sosq request
    /// --profile FILE` with; `save`/`list`/`remove` keep the named profiles of the
    /// customers' /help/NAME pages; `desktop-entry` writes the desktop SOS button.
    // Boxed: its file form and its commands make it the largest by far.
    Profile(Box<profile::ProfileArgs>),
    /// Manage support teams (groups), each with its own queue.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The maintenance notice of the public status page (every node shows the same).
    #[command(subcommand)]
    Notice(NoticeCommand),
    /// Write a consistent copy of the case store to FILE, while the daemon serves.
    Backup {
        /// Where to write the backup (replaced atomically if it exists; owner-only).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Put a backup in place as the case store (the daemon must be stopped).
    Restore {
        /// A file written by `sosqd backup`.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Args, Clone, Default)]
pub(crate) struct ServeArgs {
    /// Config file (TOML); without one the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address to listen on [default: 0.0.0.0:4433].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Directory for the certificate, key, users and case store [default: sosqd-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How long after creation an open case expires, e.g. "24h" [default: 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    case_ttl: Option<Duration>,
    /// How long closed and expired cases are kept, e.g. "30days" [default: 30days].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    retention: Option<Duration>,
    /// Where cases are kept: a PostgreSQL URL makes this daemon a cluster node
    /// [default: the embedded SQLite store in the data dir].
    #[arg(long, value_name = "URL", env = "SOSQ_STORE")]
    store: Option<String>,
    /// This node's name in a cluster [default: host name and port].
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
    /// The host:port clients reach this cluster node at [default: the listening address].
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
}

#[derive(Args, Clone, Default)]
struct DataDirArgs {
    /// Directory for the certificate, key and users [default: sosqd-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file to take the data dir from.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Where users and groups are: the data dir's users file, or a cluster's PostgreSQL store.
#[derive(Args, Clone, Default)]
struct StoreArgs {
    #[command(flatten)]
    data: DataDirArgs,
    /// The cluster's PostgreSQL store (postgres://user@host/db) to keep users and groups in;
    /// works whether or not any node runs [default: the config file's `store`, else
    /// users.json in the data dir].
    #[arg(long, value_name = "URL", env = "SOSQ_STORE")]
    store: Option<String>,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Define a team; cases can then land in its queue and experts be put on it.
    Add {
        /// The team's name: letters, digits, '.', '_' or '-'.
        name: String,
        /// Show its waiting count and typical wait on the public status page.
        #[arg(long)]
        public: bool,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// Change a team: whether the public status page shows it (`general` too).
    Set {
        /// The team's name.
        name: String,
        /// true: the public status page shows its waiting count and typical wait.
        #[arg(long, value_name = "true|false", action = clap::ArgAction::Set, required = true)]
        public: bool,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// List the teams, `general` first; public ones say so.
    List(StoreArgs),
}

#[derive(Subcommand)]
enum NoticeCommand {
    /// Show TEXT on the public status page; running daemons show it within a second.
    Set {
        /// One line, at most 500 characters.
        text: String,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// Remove the notice.
    Clear(StoreArgs),
    /// Print the notice (stdout) and when it was set (stderr); nothing if none is set.
    Show(StoreArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an expert or admin and print its access token (shown only this once).
    Add {
        /// Login name: letters, digits, '.', '_' or '-'.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: StaffRole,
        /// A team whose queue the expert works (repeat for several); default `general`.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// Change the teams an expert works, keeping its token.
    Set {
        /// The expert's name.
        name: String,
        /// A team whose queue the expert works (repeat for several; `general` is the
        /// default team). Replaces its current teams.
        #[arg(long = "group", value_name = "GROUP", required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// List experts and admins (never their tokens).
    List(StoreArgs),
    /// Revoke a user's token; open connections of that user are closed within a second.
    Revoke {
        /// The user's name.
        name: String,
        #[command(flatten)]
        data: StoreArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let result = run();
    if let Err(e) = &result {
        // One line, with the causes, instead of anyhow's multi-line debug dump.
        eprintln!("sosqd: error: {e:#}");
        std::process::exit(1);
    }
    result
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve::serve(cli.serve),
        Some(Command::Serve(args)) => serve::serve(args),
        Some(Command::Fingerprint { create, data }) => {
            let config = if create {
                writing_config(&data)?
            } else {
                data_config(&data)?
            };
            let identity = if create {
                Identity::from_config_or_create(&config)?
            } else {
                Identity::from_config(&config)?
            };
            println!("{}", identity.fingerprint());
            Ok(())
        }
        Some(Command::User(UserCommand::Add {
            name,
            role,
            groups,
            data,
        })) => {
            let users = directory(&data, Writes::Yes)?;
            let token = users.add_in_groups(&name, role, &groups)?;
            eprintln!(
                "added {} {name} to {}; the token is shown only now, store it safely:",
                role_name(role),
                users.location()
            );
            println!("{token}");
            Ok(())
        }
        Some(Command::Profile(args)) => profile::run(*args),
        Some(Command::Group(GroupCommand::Add { name, public, data })) => {
            directory(&data, Writes::Yes)?.add_group_public(&name, public)?;
            let shown = if public { " (public)" } else { "" };
            eprintln!("added group {name}{shown}; put experts on it with `sosqd user add NAME --role expert --group {name}`");
            Ok(())
        }
        Some(Command::Group(GroupCommand::Set { name, public, data })) => {
            directory(&data, Writes::Yes)?.set_group_public(&name, public)?;
            if public {
                eprintln!(
                    "group {name} is public: the status page shows its waiting count and \
                     typical wait"
                );
            } else {
                eprintln!("group {name} is not public: the status page no longer shows it");
            }
            Ok(())
        }
        Some(Command::Group(GroupCommand::List(data))) => {
            let directory = directory(&data, Writes::No)?;
            let public = directory.public_groups()?;
            for group in directory.groups()? {
                match public.contains(&group) {
                    true => println!("{group:<24} public"),
                    false => println!("{group}"),
                }
            }
            Ok(())
        }
        Some(Command::Notice(command)) => notice(command),
        Some(Command::User(UserCommand::List(data))) => {
            let directory = directory(&data, Writes::No)?;
            let users = directory.list()?;
            if users.is_empty() {
                eprintln!(
                    "no users yet in {}; add one with `sosqd user add NAME --role expert`",
                    directory.location()
                );
            }
            for user in users {
                let since = std::time::UNIX_EPOCH + Duration::from_millis(user.created_at.0);
                println!(
                    "{:<24} {:<7} {:<24} added {}",
                    user.name,
                    role_name(user.role),
                    user.teams().join(","),
                    humantime::format_rfc3339_seconds(since)
                );
            }
            Ok(())
        }
        Some(Command::Backup { file, data }) => {
            let config = data_config(&data)?;
            not_a_cluster(&config, "backup")?;
            let report = sosqd::store::backup(&config.data_dir, &file)?;
            eprintln!(
                "wrote {}: {} case{}, schema version {}, {} bytes",
                report.file.display(),
                report.cases,
                plural(report.cases),
                report.schema_version,
                report.bytes
            );
            Ok(())
        }
        Some(Command::Restore { file, data }) => {
            let config = writing_config(&data)?;
            not_a_cluster(&config, "restore")?;
            let report = sosqd::store::restore(&config.data_dir, &file)?;
            eprintln!(
                "restored {} case{} from {} into {}",
                report.cases,
                plural(report.cases),
                file.display(),
                report.store.display()
            );
            if let Some(previous) = report.previous {
                eprintln!("the store that was there is kept as {}", previous.display());
            }
            Ok(())
        }
        Some(Command::User(UserCommand::Set { name, groups, data })) => {
            let user = directory(&data, Writes::Yes)?.set_groups(&name, &groups)?;
            eprintln!(
                "expert {name} now works {}; its token is unchanged (a connection open now keeps its old teams until it reconnects)",
                user.teams().join(", ")
            );
            Ok(())
        }
        Some(Command::User(UserCommand::Revoke { name, data })) => {
            let user = directory(&data, Writes::Yes)?.revoke(&name)?;
            eprintln!(
                "revoked {} {}; running sosqd nodes close its connections within about a second",
                role_name(user.role),
                user.name
            );
            Ok(())
        }
    }
}

/// "s" unless there is exactly one.
fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn role_name(role: StaffRole) -> &'static str {
    match role {
        StaffRole::Expert => "expert",
        StaffRole::Admin => "admin",
    }
}

/// [`data_config`] for a command that writes into the data dir: warns first when root is
/// about to make the data dir (README "Install as a systemd service").
fn writing_config(data: &DataDirArgs) -> anyhow::Result<Config> {
    let config = data_config(data)?;
    if let Some(note) = sosqd::fsutil::root_makes_new_dir(&config.data_dir) {
        eprintln!("{note}");
    }
    Ok(config)
}

/// Whether a command changes the user directory.
/// `sosqd notice set|clear|show`.
fn notice(command: NoticeCommand) -> anyhow::Result<()> {
    match command {
        NoticeCommand::Set { text, data } => {
            let directory = directory(&data, Writes::Yes)?;
            directory.set_notice(Some(&text))?;
            eprintln!(
                "notice set in {}; the public status page shows it within a second",
                directory.location()
            );
        }
        NoticeCommand::Clear(data) => {
            let directory = directory(&data, Writes::Yes)?;
            directory.set_notice(None)?;
            eprintln!("notice cleared in {}", directory.location());
        }
        NoticeCommand::Show(data) => match directory(&data, Writes::No)?.notice()? {
            Some(notice) => {
                let since = std::time::UNIX_EPOCH + Duration::from_millis(notice.set_at.0);
                println!("{}", notice.text);
                eprintln!("set {}", humantime::format_rfc3339_seconds(since));
            }
            None => eprintln!("no notice is set; set one with `sosqd notice set TEXT`"),
        },
    }
    Ok(())
}

#[derive(PartialEq)]
enum Writes {
    Yes,
    No,
}

/// The user directory a `user` or `group` command works on: the cluster's PostgreSQL store
/// if `--store`, `SOSQ_STORE` or the config file names one, else the data dir's users file
/// (with root's warning first when a write is about to make the data dir).
fn directory(at: &StoreArgs, writes: Writes) -> anyhow::Result<UserDirectory> {
    let config = store_config(at)?;
    if writes == Writes::Yes && !config.is_cluster() {
        if let Some(note) = sosqd::fsutil::root_makes_new_dir(&config.data_dir) {
            eprintln!("{note}");
        }
    }
    Ok(UserDirectory::from_config(&config)?)
}

/// [`data_config`] with the store from `--store` or `SOSQ_STORE`, when given.
fn store_config(at: &StoreArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: at.data.data_dir.clone(),
        store: at.store.clone(),
        ..Overrides::default()
    };
    Ok(Config::load(at.data.config.as_deref(), &overrides)?)
}

/// Refuses `sosqd backup`/`restore` for a cluster's configuration: its cases are in
/// PostgreSQL, which has its own tools.
fn not_a_cluster(config: &Config, command: &str) -> anyhow::Result<()> {
    if config.is_cluster() {
        anyhow::bail!(
            "this configuration's case store is PostgreSQL (a cluster): `sosqd {command}` is for the single-node SQLite store; use pg_dump / pg_restore on the database (README \"Backups and engines\")"
        );
    }
    Ok(())
}

fn data_config(data: &DataDirArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: data.data_dir.clone(),
        ..Overrides::default()
    };
    Ok(Config::load(data.config.as_deref(), &overrides)?)
}
