//! `sosqd serve`: load the configuration, take the data dir's lock and the port, open the
//! store (the embedded SQLite one, or PostgreSQL for a cluster node), run the daemon, and
//! reload on SIGHUP and stop on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use sosqd::config::{Config, Overrides};
use sosqd::server::Server;
use sosqd::store::SqliteStore;

use super::ServeArgs;

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        case_ttl: args.case_ttl,
        retention: args.retention,
        store: args.store.clone(),
        node_id: args.node_id.clone(),
        advertise: args.advertise.clone(),
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    let logs = Arc::new(sosqd::logging::init(config.log_format, &config.log_level));
    sosqd::datadir::private_umask();
    // The clearest refusal first: an existing data dir held by another daemon names that
    // daemon's pid; otherwise the port is checked before the data dir, store or
    // certificate are made, so a taken port leaves nothing new behind.
    let data_dir_existed = config.data_dir.exists();
    let lock = if data_dir_existed {
        Some(sosqd::datadir::DataDirLock::acquire(&config.data_dir)?)
    } else {
        None
    };
    sosqd::transport::check_listen(config.listen)?;
    // Held until serve returns: one daemon per data dir.
    let _lock = match lock {
        Some(lock) => lock,
        None => sosqd::datadir::DataDirLock::acquire(&config.data_dir)?,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.worker_threads > 0 {
        runtime.worker_threads(config.worker_threads);
    }
    let runtime = runtime.build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Before anything else: until a handler is installed, SIGHUP's default kills.
        let hangups = hangup_signals()?;
        let data_dir = config.data_dir.clone();
        let server = if config.is_cluster() {
            start_node(config).await?
        } else {
            let store = SqliteStore::open_in(&data_dir).context("cannot start sosqd")?;
            tracing::info!(path = %store.path().display(), "case store open");
            Server::start(config, Arc::new(store))
                .with_context(|| format!("cannot start sosqd (data dir {})", data_dir.display()))?
        };
        let addr = server.local_addr()?;
        tracing::info!(
            "{}",
            sosqd::server::listening_line(addr, server.fingerprint())
        );
        if let Some(web) = server.web_addr() {
            tracing::info!("{}", sosqd::server::console_line(web));
        }
        if let Some(metrics) = server.metrics_addr() {
            tracing::info!("metrics on http://{metrics}/metrics");
        }
        let reloader = server.reloader(Some(logs));
        let reloads = tokio::spawn(reload_on_hangup(hangups, reloader, args.config, overrides));
        server.run(shutdown_signal()).await;
        reloads.abort();
        Ok(())
    })
}

/// Starts a cluster node: its PostgreSQL store, fenced by the node's ledger, and its
/// place in the cluster (the lease of its name, its first codes).
async fn start_node(config: Config) -> anyhow::Result<Server> {
    let node = match config.node_id.trim() {
        "" => default_node_id(config.listen.port()),
        given => given.to_string(),
    };
    let ledger = Arc::new(sosqd::store::Ledger::new(&node));
    let url = config.store.clone();
    let opened = {
        let ledger = ledger.clone();
        tokio::task::spawn_blocking(move || {
            sosqd::store::PgStore::open_node(&url, None, Some(ledger))
        })
        .await
        .context("cannot start sosqd")?
    };
    let store = opened.context("cannot start sosqd: the cluster's database")?;
    tracing::info!(node = %node, "case store open (PostgreSQL, cluster node)");
    let clock = sosqd::clock::Clock::new();
    let server = Server::start_node(config, Arc::new(store), clock, Some(ledger))
        .context("cannot start sosqd (cluster node)")?;
    server
        .join_cluster()
        .await
        .context("cannot join the cluster")?;
    Ok(server)
}

/// A node name when none is configured: the host name and the listening port, which
/// tells nodes on one host apart and stays the same across restarts (port 0: a random
/// name, new at every start).
fn default_node_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(50)
        .collect();
    if port == 0 {
        // An ephemeral port is only known after binding, and differs at every start: a
        // random suffix keeps two such nodes on one host apart (tests, trials).
        return format!("{host}:ephemeral-{:08x}", rand::random::<u32>());
    }
    format!("{host}:{port}")
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> anyhow::Result<Hangups> {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")
}

#[cfg(not(unix))]
fn hangup_signals() -> anyhow::Result<Hangups> {
    Ok(())
}

/// On every SIGHUP: re-reads the config file (the command line's flags still win) and
/// applies it; an unreadable or invalid file is logged and changes nothing.
async fn reload_on_hangup(
    hangups: Hangups,
    reloader: sosqd::server::Reloader,
    file: Option<PathBuf>,
    overrides: Overrides,
) {
    #[cfg(unix)]
    {
        let mut hangups = hangups;
        while hangups.recv().await.is_some() {
            let source = file
                .as_ref()
                .map_or("the built-in defaults".to_string(), |f| {
                    f.display().to_string()
                });
            tracing::info!("SIGHUP: reloading the configuration from {source}");
            let outcome = Config::load(file.as_deref(), &overrides)
                .map_err(anyhow::Error::from)
                .and_then(|config| Ok(reloader.reload(config)?));
            if let Err(e) = outcome {
                tracing::error!("reload failed, the running settings stay: {e:#}");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (hangups, reloader, file, overrides);
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
