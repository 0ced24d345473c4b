//! `sosqd`: run the broker (`serve`, the default), print the certificate fingerprint, or
//! add staff users.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sosqd::config::{parse_duration, Config, Overrides};
use sosqd::server::Server;
use sosqd::store::users::{StaffRole, UserDirectory};
use sosqd::store::SqliteStore;
use sosqd::transport::Identity;

/// sosqd: the sosq remote-support session broker.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
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
    /// Print the SHA-256 fingerprint of the server certificate (made if missing).
    Fingerprint(DataDirArgs),
    /// Manage experts and admins.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
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

#[derive(Subcommand)]
enum UserCommand {
    /// Add an expert or admin and print its access token (shown only this once).
    Add {
        /// Login name: letters, digits, '.', '_' or '-'.
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: StaffRole,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Fingerprint(data)) => {
            let config = data_config(&data)?;
            let identity = Identity::load_or_create(&config.data_dir)?;
            println!("{}", identity.fingerprint());
            Ok(())
        }
        Some(Command::User(UserCommand::Add { name, role, data })) => {
            let config = data_config(&data)?;
            let token = UserDirectory::open(&config.data_dir).add(&name, role)?;
            eprintln!(
                "added {} {name}; the token is shown only now, store it safely:",
                match role {
                    StaffRole::Expert => "expert",
                    StaffRole::Admin => "admin",
                }
            );
            println!("{token}");
            Ok(())
        }
    }
}

fn data_config(data: &DataDirArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        data_dir: data.data_dir.clone(),
        ..Overrides::default()
    };
    Ok(Config::load(data.config.as_deref(), &overrides)?)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        case_ttl: args.case_ttl,
        retention: args.retention,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let store = SqliteStore::open_in(&data_dir).context("cannot start sosqd")?;
        tracing::info!(path = %store.path().display(), "case store open");
        let server = Server::start(config, Arc::new(store))
            .with_context(|| format!("cannot start sosqd (data dir {})", data_dir.display()))?;
        let addr = server.local_addr()?;
        tracing::info!(
            "listening on {addr} (certificate fingerprint {})",
            server.fingerprint()
        );
        server.run(shutdown_signal()).await;
        Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
