//! End to end: a cluster's users and groups live in its PostgreSQL store. `sosqd user` and
//! `sosqd group` work against it with `--store`, `SOSQ_STORE` or the config file's `store`,
//! whether or not any node runs; every node accepts the users added there, and a revoke by
//! the CLI closes the user's connections on every node.
//!
//! Each test works in a fresh PostgreSQL schema that it drops; without
//! `SOSQ_TEST_DATABASE_URL` each says in one line that it was skipped.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sosqd_bin, Daemon, PATIENCE};
use sosq::protocol::Request;
use sosq::Client;

/// A fresh schema in the test database, dropped with it; `url` reaches it (the schema is
/// the connection's search path, as an operator would set it for a shared database).
struct Schema {
    base: String,
    name: String,
    url: String,
}

static SCHEMAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Schema {
    fn new(test: &str) -> Option<Schema> {
        let Ok(base) = std::env::var("SOSQ_TEST_DATABASE_URL") else {
            eprintln!("skipped {test}: SOSQ_TEST_DATABASE_URL is not set, so there is no PostgreSQL for a cluster's users");
            return None;
        };
        let name = format!(
            "sosq_cluster_users_{}_{}",
            std::process::id(),
            SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        sql(
            &base,
            &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"),
        );
        let joint = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{joint}options=-csearch_path%3D{name}");
        Some(Schema { base, name, url })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        sql(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
    }
}

/// Runs `text` on a connection of its own.
fn sql(url: &str, text: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (url, text) = (url.to_string(), text.to_string());
    std::thread::spawn(move || {
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .batch_execute(&text)
                .await
                .unwrap_or_else(|e| panic!("{text}: {e}"));
        })
    })
    .join()
    .unwrap();
}

/// Runs `sosqd ARGS` with `env`, and without any SOSQ_STORE the test run may have.
fn sosqd(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(sosqd_bin())
        .args(args)
        .env_remove("SOSQ_STORE")
        .envs(env.iter().copied())
        .output()
        .expect("run sosqd")
}

fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

/// No node runs: `user add --store` writes the database, `user list` reads it back, the same
/// through SOSQ_STORE and the config file's `store`; the data dir is neither made nor used.
#[test]
fn user_and_group_commands_work_against_postgres_with_no_node_running() {
    let Some(schema) = Schema::new("user_and_group_commands_work_against_postgres") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let store = schema.url.as_str();

    let (token, said) = ok(sosqd(
        &[
            "user",
            "add",
            "ana",
            "--role",
            "expert",
            "--store",
            store,
            "--data-dir",
            data,
        ],
        &[],
    ));
    let token = token.trim();
    assert!(token.starts_with("sosq_"), "{token}");
    assert!(
        said.contains("added expert ana to postgres://") && !said.contains("users.json"),
        "{said}"
    );

    let (listed, _) = ok(sosqd(&["user", "list", "--store", store], &[]));
    let line = listed
        .lines()
        .find(|l| l.starts_with("ana "))
        .expect(&listed);
    assert!(
        line.contains("expert") && line.contains("general"),
        "{line}"
    );
    assert!(!listed.contains(token), "never the token: {listed}");

    // SOSQ_STORE, and the config file's `store`, name the same directory.
    let env = [("SOSQ_STORE", store)];
    ok(sosqd(&["group", "add", "billing"], &env));
    ok(sosqd(&["user", "set", "ana", "--group", "billing"], &env));
    let config = dir.path().join("sosqd.toml");
    std::fs::write(&config, format!("store = {store:?}\n")).unwrap();
    let config = config.to_str().unwrap();
    let (groups, _) = ok(sosqd(&["group", "list", "--config", config], &[]));
    assert_eq!(groups.lines().collect::<Vec<_>>(), ["general", "billing"]);
    let (listed, _) = ok(sosqd(&["user", "list", "--config", config], &[]));
    assert!(listed.contains("billing"), "{listed}");

    // A name taken in the database is refused with what to do instead.
    let taken = sosqd(&["user", "add", "ana", "--role", "admin"], &env);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("sosqd user set ana"));

    assert!(
        !std::path::Path::new(data).exists(),
        "a cluster's user commands leave the data dir alone"
    );
    let (_, said) = ok(sosqd(&["user", "list", "--data-dir", data], &[]));
    assert!(
        said.contains("no users yet"),
        "the file is another directory: {said}"
    );

    // A support profile's team is checked against the cluster's teams (the certificate
    // still comes from the node's data dir).
    let node = dir.path().join("node");
    let node = node.to_str().unwrap();
    ok(sosqd(&["fingerprint", "--create", "--data-dir", node], &[]));
    let profile = dir.path().join("billing.sosq");
    let profile = profile.to_str().unwrap();
    let write_profile = |group: &str| {
        let args = ["profile", "--out", profile, "--server", "127.0.0.1:4433"];
        let args = [&args[..], &["--group", group, "--data-dir", node]].concat();
        sosqd(&args, &env)
    };
    ok(write_profile("billing"));
    let refused = write_profile("sales");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("no group named \"sales\""), "{said}");

    let (_, said) = ok(sosqd(&["user", "revoke", "ana"], &env));
    assert!(said.contains("revoked expert ana"), "{said}");
    let (listed, said) = ok(sosqd(&["user", "list"], &env));
    assert!(listed.is_empty(), "{listed}");
    assert!(said.contains("no users yet in postgres://"), "{said}");
}

/// An unreachable store is one clear line naming it, and no users file is written instead.
#[test]
fn an_unreachable_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = sosqd(
        &[
            "user",
            "add",
            "ana",
            "--role",
            "expert",
            "--store",
            "postgres://sosq:secret@127.0.0.1:1/staff",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("user directory in postgres://sosq@127.0.0.1:1/staff")
            && !said.contains("secret"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(!dir.path().join("users.json").exists());
}

/// Two nodes on one store: both accept a user the CLI added (before they started, or while
/// they run), neither accepts a users file left in its data dir, and one revoke by the CLI
/// closes the user's connections on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_by_the_cli_closes_the_users_connections_on_every_node() {
    let Some(schema) = Schema::new("a_revoke_by_the_cli_closes_the_users_connections") else {
        return;
    };
    let store = schema.url.clone();
    let env = [("SOSQ_STORE", store.as_str())];
    let (ana, _) = ok(sosqd(&["user", "add", "ana", "--role", "expert"], &env));
    let ana = ana.trim().to_string();

    // Node A's data dir still has the users file of its single-node days.
    let dir_a = Arc::new(tempfile::tempdir().unwrap());
    let data_a = dir_a.path().to_str().unwrap();
    let (old, _) = ok(sosqd(
        &[
            "user",
            "add",
            "old",
            "--role",
            "admin",
            "--data-dir",
            data_a,
        ],
        &[],
    ));
    let a = Daemon::start_in(dir_a.clone(), &["--store", &store]);
    let b = Daemon::start(&["--store", &store]);
    a.wait_for_log("not used by a cluster node");
    assert!(
        Client::connect(&a.options(Some(old.trim()))).await.is_err(),
        "a users file in a cluster node's data dir grants nothing"
    );

    // Added while the nodes run: accepted within a reload.
    let (bo, _) = ok(sosqd(&["user", "add", "bo", "--role", "expert"], &env));
    let bo = bo.trim();
    let deadline = Instant::now() + PATIENCE;
    let mut bo_on_b = loop {
        match Client::connect(&b.options(Some(bo))).await {
            Ok(client) => break client,
            Err(e) => assert!(Instant::now() < deadline, "bo refused by node B: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut on_a = Client::connect(&a.options(Some(&ana))).await.unwrap();
    let mut on_b = Client::connect(&b.options(Some(&ana))).await.unwrap();
    for client in [&mut on_a, &mut on_b, &mut bo_on_b] {
        let queue = client.request(Request::Queue {
            after: None,
            limit: 0,
        });
        assert!(queue.await.is_ok());
    }

    let revoked = Instant::now();
    ok(sosqd(&["user", "revoke", "ana"], &env));
    for (node, client) in [("A", &on_a), ("B", &on_b)] {
        let reason = tokio::time::timeout(PATIENCE, client.connection().closed())
            .await
            .unwrap_or_else(|_| panic!("ana's connection to node {node} stayed open"));
        assert!(reason.to_string().contains("revoked"), "{reason}");
    }
    eprintln!(
        "revoke by the CLI closed ana's connections on both nodes {:?} after it returned \
         (reload every 250 ms, revocation check every second)",
        revoked.elapsed()
    );
    assert!(
        Client::connect(&b.options(Some(&ana))).await.is_err(),
        "the revoked token is refused"
    );
    let still = bo_on_b.request(Request::Queue {
        after: None,
        limit: 0,
    });
    assert!(still.await.is_ok(), "bo is untouched");
}
