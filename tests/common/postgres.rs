//! A fresh PostgreSQL database per test, on the server `SOSQ_TEST_DATABASE_URL` names.
//!
//! Each [`FreshDatabase`] is a new database with a random name on that server, dropped
//! when the value is (after ending whatever is still connected to it: a cluster node a
//! failed test left running, a pool). Without the variable a test prints one line saying
//! it was skipped and why, and returns: it never passes silently as if it had run.
//!
//! The admin work runs on a thread of its own with its own small runtime, so the same
//! calls work from plain `#[test]`s and from inside `#[tokio::test]`s (where blocking on a
//! second runtime on the test's own thread would panic).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

/// The variable naming the test server: a URL (`postgres://postgres@127.0.0.1:5432/test`)
/// or key-value settings (`host=127.0.0.1 user=postgres dbname=test`).
pub const DATABASE_URL_VAR: &str = "SOSQ_TEST_DATABASE_URL";

/// Every database this harness makes starts with this, then the creation time in Unix
/// seconds, the creating process's id and a random part.
pub const PREFIX: &str = "sosq_t_";

/// A database of ours older than this is a leftover of a run that died before dropping
/// it (killed, aborted). Younger ones may belong to a test running right now in another
/// process (nextest runs test binaries in parallel, and several checkouts share the
/// server), so they are left alone; no test runs anywhere near this long.
pub const LEFTOVER_AGE: Duration = Duration::from_secs(60 * 60);

/// The test server's URL, or `None` after printing the one line that says `test` was
/// skipped for want of it. An empty value counts as unset.
pub fn database_url_or_skip(test: &str) -> Option<String> {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            eprintln!("skipped: {test}: {DATABASE_URL_VAR} is not set (needs PostgreSQL)");
            None
        }
    }
}

/// The running test's name, as libtest names its thread (the module path inside the test
/// binary); "a test" where the thread has no name.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .unwrap_or("a test")
        .to_string()
}

/// A new, empty database, dropped with this value.
pub struct FreshDatabase {
    name: String,
    url: String,
    /// The server as the variable names it: where the database is made and dropped from.
    admin_url: String,
}

impl FreshDatabase {
    /// Makes a new database on the test server, after dropping leftovers of dead runs; or
    /// `None` (with the skip line) when `SOSQ_TEST_DATABASE_URL` is not set.
    ///
    /// Panics with the cause when the variable is set but the server cannot be used: a
    /// test that was asked to run against PostgreSQL fails rather than skip.
    pub fn create() -> Option<FreshDatabase> {
        let admin_url = database_url_or_skip(&current_test())?;
        let now = unix_seconds();
        let name = format!(
            "{PREFIX}{now}_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let create = name.clone();
        let outcome = admin(&admin_url, move |runtime, client| {
            runtime.block_on(async {
                drop_leftovers(client, now).await;
                client
                    .batch_execute(&format!("CREATE DATABASE \"{create}\""))
                    .await
            })
        });
        if let Err(e) = outcome.and_then(|created| created.map_err(|e| e.to_string())) {
            panic!("cannot make a test database on {DATABASE_URL_VAR}={admin_url}: {e}");
        }
        Some(FreshDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        })
    }

    /// The database's URL (the test server's, with this database's name).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` (one or more statements, no results wanted) in this database; panics
    /// with the statement and the cause when it fails.
    pub fn execute(&self, sql: &str) {
        let text = sql.to_string();
        let outcome = admin(&self.url, move |runtime, client| {
            runtime.block_on(client.batch_execute(&text))
        });
        if let Err(e) = outcome.and_then(|done| done.map_err(|e| e.to_string())) {
            panic!("{sql:?} in {}: {e}", self.name);
        }
    }

    /// The first column of every row `sql` returns in this database, as text (cast in the
    /// query: `SELECT code::text ...`).
    pub fn query_texts(&self, sql: &str) -> Vec<Option<String>> {
        let text = sql.to_string();
        let outcome = admin(&self.url, move |runtime, client| {
            runtime
                .block_on(client.query(&text, &[]))
                .map(|rows| rows.iter().map(|row| row.get(0)).collect())
        });
        match outcome.and_then(|rows| rows.map_err(|e| e.to_string())) {
            Ok(rows) => rows,
            Err(e) => panic!("{sql:?} in {}: {e}", self.name),
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let outcome = admin(&self.admin_url, move |runtime, client| {
            runtime.block_on(drop_database(client, &name))
        });
        // Never a panic here: a drop during a failing test's unwinding would abort the
        // run and hide the failure; the next run's leftover sweep removes it instead.
        if let Err(e) = outcome.and_then(|dropped| dropped) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// The creation time (Unix seconds) a database name of ours carries.
pub fn created_at(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.split('_').next()?.parse().ok()
}

/// Drops every database of ours older than [`LEFTOVER_AGE`]. Best effort: one that
/// cannot be dropped now (another sweep got there first) is tried by the next run.
async fn drop_leftovers(client: &Client, now: u64) {
    let Ok(rows) = client
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
            &[&format!("{}%", PREFIX.replace('_', "\\_"))],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let old =
            created_at(&name).is_some_and(|at| now.saturating_sub(at) > LEFTOVER_AGE.as_secs());
        if old {
            let _ = drop_database(client, &name).await;
        }
    }
}

/// Ends every session in `name`, then drops it. `WITH (FORCE)` (PostgreSQL 13 and later;
/// the machines run 15) also refuses new sessions while it works; on an older server the
/// terminations alone have to do.
async fn drop_database(client: &Client, name: &str) -> Result<(), String> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .map_err(|e| e.to_string())?;
    let force = if version >= 130_000 {
        " WITH (FORCE)"
    } else {
        ""
    };
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\"{force}"))
        .await
        .map_err(|e| e.to_string())
}

/// Connects to `url` on a thread of its own and runs `work` with that thread's runtime
/// and the connection; a connection failure is the error.
pub fn admin<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&tokio::runtime::Runtime, &Client) -> T + Send + 'static,
) -> Result<T, String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(&url, NoTls))
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        runtime.spawn(connection);
        Ok(work(&runtime, &client))
    })
    .join()
    .map_err(|_| "the PostgreSQL admin thread panicked".to_string())?
}

/// `url` with its database replaced by `database`: the path of a `postgres://` URL (query
/// kept), or the `dbname` of key-value settings.
pub fn with_database(url: &str, database: &str) -> String {
    match split_url(url) {
        Some((scheme, authority, _, query)) => format!("{scheme}{authority}/{database}{query}"),
        None => replace_setting(url, "dbname", database),
    }
}

/// `url` pointing at `addr` instead of its own host and port (user, database and query
/// kept): the same database reached through a [`super::proxy::Proxy`].
pub fn via(url: &str, addr: SocketAddr) -> String {
    match split_url(url) {
        Some((scheme, authority, path, query)) => {
            let user = authority
                .rsplit_once('@')
                .map(|(user, _)| format!("{user}@"));
            format!("{scheme}{}{addr}{path}{query}", user.unwrap_or_default())
        }
        None => {
            let host = replace_setting(url, "host", &addr.ip().to_string());
            replace_setting(&host, "port", &addr.port().to_string())
        }
    }
}

/// The TCP address of the server `url` names (a proxy needs one; a Unix socket will not
/// do); the default port is 5432.
pub fn server_addr(url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is not a PostgreSQL URL: {e}"));
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("a proxy needs a TCP host in {url}, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve the host of {url}"))
}

/// A `postgres://` URL cut into scheme (with `://`), authority, path (with its `/`, maybe
/// empty) and query (with its `?`, maybe empty); `None` for key-value settings.
fn split_url(url: &str) -> Option<(&str, &str, &str, &str)> {
    let start = ["postgres://", "postgresql://"]
        .iter()
        .find(|scheme| url.starts_with(**scheme))?
        .len();
    let (scheme, rest) = url.split_at(start);
    let (rest, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Some((scheme, authority, path, query))
}

/// Key-value settings with `key` set to `value` (replaced, or added at the end).
fn replace_setting(settings: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    let mut found = false;
    let mut parts: Vec<String> = settings
        .split_whitespace()
        .map(|part| match part.starts_with(&prefix) {
            true => {
                found = true;
                format!("{prefix}{value}")
            }
            false => part.to_string(),
        })
        .collect();
    if !found {
        parts.push(format!("{prefix}{value}"));
    }
    parts.join(" ")
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}
