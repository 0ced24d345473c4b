//! The user directory's contract, run against both backends: `users.json` in a temporary
//! data dir, and PostgreSQL in a schema of its own per test (dropped after it) when
//! `SOSQ_TEST_DATABASE_URL` names a database; without it each PostgreSQL test says in one
//! line that it was skipped. Then what only the PostgreSQL backend does: fail closed when
//! the database stops answering, migrate safely, keep passwords out of messages.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::postgres::{REFRESH_EVERY, STALE_AFTER};
use super::*;

/// Where a directory is kept, opened as often as a test needs: a daemon and an admin
/// command are two directories on one place.
trait Place {
    fn open(&self) -> UserDirectory;
    /// Everything the backend stored, as text (to look for tokens in it).
    fn stored(&self) -> String;
}

struct FilePlace(tempfile::TempDir);

impl FilePlace {
    fn new() -> FilePlace {
        FilePlace(tempfile::tempdir().unwrap())
    }
}

impl Place for FilePlace {
    fn open(&self) -> UserDirectory {
        UserDirectory::open(self.0.path())
    }

    fn stored(&self) -> String {
        std::fs::read_to_string(self.0.path().join(USERS_FILE)).unwrap()
    }
}

/// A fresh schema in the test database, dropped with the place.
struct PgPlace {
    url: String,
    schema: String,
}

static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

impl PgPlace {
    /// A place in a new schema, or `None` (said on stderr) without a test database.
    fn new() -> Option<PgPlace> {
        let Ok(url) = std::env::var("SOSQ_TEST_DATABASE_URL") else {
            eprintln!("skipped: SOSQ_TEST_DATABASE_URL is not set, so there is no PostgreSQL to run the user directory against");
            return None;
        };
        let schema = format!(
            "sosq_users_test_{}_{}",
            std::process::id(),
            SCHEMAS.fetch_add(1, Ordering::Relaxed)
        );
        run_sql(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        Some(PgPlace { url, schema })
    }
}

impl Place for PgPlace {
    fn open(&self) -> UserDirectory {
        UserDirectory::open_postgres(&self.url, Some(&self.schema)).expect("open the directory")
    }

    fn stored(&self) -> String {
        run_sql(
            &self.url,
            &format!(
                "SELECT row_to_json(u)::text FROM {0}.sosq_users u
                 UNION ALL SELECT row_to_json(g)::text FROM {0}.sosq_groups g",
                self.schema
            ),
        )
        .join("\n")
    }
}

impl Drop for PgPlace {
    fn drop(&mut self) {
        run_sql(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        );
    }
}

/// Runs `sql` on a connection of its own (from a thread of its own, so it works anywhere);
/// returns the first column of each row of the last statement, as text.
fn run_sql(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            client
                .simple_query(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .into_iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or_default().to_string())
                    }
                    _ => None,
                })
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// How long `condition` took to hold, polling; panics after `limit`.
fn within(limit: Duration, what: &str, condition: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// Another directory on the same place sees a write within this: at once for the file, one
/// reload for PostgreSQL (with room for a slow machine).
const SEEN_WITHIN: Duration = Duration::from_millis(REFRESH_EVERY.as_millis() as u64 * 4);

/// Runs each contract test against the file and against PostgreSQL.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod file_backend {
            $(#[test] fn $name() { super::$name(&super::FilePlace::new()); })*
        }
        mod postgres_backend {
            $(#[test] fn $name() {
                if let Some(place) = super::PgPlace::new() { super::$name(&place); }
            })*
        }
    };
}

mod profiles;
mod public_page;

contract!(
    tokens_authenticate_their_user_only,
    a_revoked_user_is_no_longer_valid_and_its_token_fails,
    a_revoke_through_another_directory_is_seen_within_a_refresh,
    names_are_unique_and_checked,
    a_second_directory_sees_users_added_later,
    set_changes_an_experts_groups_and_keeps_its_token,
    admins_take_no_groups_and_an_existing_name_says_what_to_do,
    groups_are_listed_in_order_and_defined_once,
    users_are_listed_in_the_order_they_were_added,
    concurrent_writers_lose_no_user,
);

fn tokens_authenticate_their_user_only(place: &dyn Place) {
    let users = place.open();
    let ana = users.add("ana", StaffRole::Expert).unwrap();
    let root = users.add("root", StaffRole::Admin).unwrap();
    assert!(ana.starts_with("sosq_") && ana.len() == 5 + 64);
    assert_eq!(users.authenticate(&ana).unwrap().unwrap().name, "ana");
    assert_eq!(
        users.authenticate(&root).unwrap().unwrap().role,
        StaffRole::Admin
    );
    assert!(users.authenticate("sosq_nope").unwrap().is_none());
    let stored = place.stored();
    assert!(stored.contains(&hash_secret(&ana)), "{stored}");
    assert!(
        !stored.contains(&ana),
        "the token itself must not be stored"
    );
}

fn a_revoked_user_is_no_longer_valid_and_its_token_fails(place: &dyn Place) {
    let daemon = place.open();
    let admin = place.open();
    let token = admin.add("ana", StaffRole::Expert).unwrap();
    within(SEEN_WITHIN, "the daemon sees ana", || {
        daemon.authenticate(&token).unwrap().is_some()
    });
    let ana = daemon.authenticate(&token).unwrap().unwrap();
    assert!(daemon.still_valid(&ana).unwrap());
    let revoked = admin.revoke("ana").unwrap();
    assert_eq!(revoked, ana, "the revoke returns the user as it was");
    within(SEEN_WITHIN, "the revoke reaches the daemon", || {
        !daemon.still_valid(&ana).unwrap()
    });
    assert!(daemon.authenticate(&token).unwrap().is_none());
    assert!(matches!(admin.revoke("ana"), Err(UserError::NotFound(_))));
    // Re-adding the name gives a new token; the old one stays dead.
    let again = admin.add("ana", StaffRole::Expert).unwrap();
    within(SEEN_WITHIN, "the daemon sees the new ana", || {
        daemon.authenticate(&again).unwrap().is_some()
    });
    assert!(!daemon.still_valid(&ana).unwrap());
    assert!(daemon.authenticate(&token).unwrap().is_none());
}

/// The daemon's once-a-second check closes a revoked user's connections: what it reads must
/// change within one reload of a revoke made anywhere (another node, the CLI).
fn a_revoke_through_another_directory_is_seen_within_a_refresh(place: &dyn Place) {
    let daemon = place.open();
    let admin = place.open();
    admin.add("bo", StaffRole::Expert).unwrap();
    let token = admin.add("ana", StaffRole::Expert).unwrap();
    within(SEEN_WITHIN, "the daemon sees ana", || {
        daemon.authenticate(&token).unwrap().is_some()
    });
    let ana = daemon.authenticate(&token).unwrap().unwrap();
    admin.revoke("ana").unwrap();
    let took = within(SEEN_WITHIN, "the revoke reaches the daemon", || {
        !daemon.still_valid(&ana).unwrap()
    });
    eprintln!("revoke seen by the other directory after {took:?}");
    assert!(daemon.expert("bo").unwrap().is_some(), "bo is untouched");
}

fn names_are_unique_and_checked(place: &dyn Place) {
    let users = place.open();
    users.add("ana", StaffRole::Expert).unwrap();
    assert!(matches!(
        users.add("ana", StaffRole::Admin),
        Err(UserError::Exists(_))
    ));
    for bad in ["ana maria", "", "a/b", &"x".repeat(65)] {
        assert!(
            matches!(
                users.add(bad, StaffRole::Admin),
                Err(UserError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(users.list().unwrap().len(), 1);
}

fn a_second_directory_sees_users_added_later(place: &dyn Place) {
    let daemon = place.open();
    assert!(daemon.authenticate("sosq_x").unwrap().is_none());
    let token = place.open().add("bo", StaffRole::Expert).unwrap();
    within(SEEN_WITHIN, "the daemon sees bo", || {
        daemon.authenticate(&token).unwrap().is_some()
    });
    assert_eq!(daemon.authenticate(&token).unwrap().unwrap().name, "bo");
    assert_eq!(daemon.expert("bo").unwrap().unwrap().name, "bo");
}

fn set_changes_an_experts_groups_and_keeps_its_token(place: &dyn Place) {
    let users = place.open();
    users.add_group("billing").unwrap();
    let token = users.add("ana", StaffRole::Expert).unwrap();
    let ana = users.authenticate(&token).unwrap().unwrap();
    assert_eq!(ana.teams(), vec!["general"]);
    let groups = vec!["billing".to_string(), "general".to_string()];
    let changed = users.set_groups("ana", &groups).unwrap();
    assert_eq!(changed.groups, groups);
    let now = users.authenticate(&token).unwrap().unwrap();
    assert_eq!(now.teams(), groups, "in the order given");
    assert!(users.still_valid(&ana).unwrap(), "same token, still valid");
    assert!(matches!(
        users.set_groups("ana", &["network".to_string()]),
        Err(UserError::NoSuchGroup(g)) if g == "network"
    ));
    assert!(matches!(
        users.set_groups("bo", &groups),
        Err(UserError::NotFound(_))
    ));
    users.add("root", StaffRole::Admin).unwrap();
    assert!(matches!(
        users.set_groups("root", &groups),
        Err(UserError::AdminGroups(_))
    ));
    assert_eq!(
        users.authenticate(&token).unwrap().unwrap().groups,
        groups,
        "a refused change changed nothing"
    );
}

fn admins_take_no_groups_and_an_existing_name_says_what_to_do(place: &dyn Place) {
    let users = place.open();
    users.add_group("billing").unwrap();
    let err = users
        .add_in_groups("root", StaffRole::Admin, &["billing".to_string()])
        .unwrap_err();
    assert!(matches!(err, UserError::AdminGroups(_)), "{err}");
    let err = users
        .add_in_groups("ana", StaffRole::Expert, &["network".to_string()])
        .unwrap_err();
    assert!(
        matches!(err, UserError::NoSuchGroup(ref g) if g == "network"),
        "{err}"
    );
    assert!(users.list().unwrap().is_empty(), "nothing added");
    users.add("ana", StaffRole::Expert).unwrap();
    let err = users.add("ana", StaffRole::Expert).unwrap_err().to_string();
    assert!(err.contains("sosqd user set ana"), "{err}");
    assert!(err.contains("sosqd user revoke ana"), "{err}");
}

fn groups_are_listed_in_order_and_defined_once(place: &dyn Place) {
    let users = place.open();
    assert_eq!(users.groups().unwrap(), vec!["general"]);
    users.add_group("network").unwrap();
    users.add_group("billing").unwrap();
    assert_eq!(
        place.open().groups().unwrap(),
        vec!["general", "network", "billing"]
    );
    for taken in ["billing", "general"] {
        assert!(
            matches!(users.add_group(taken), Err(UserError::GroupExists(_))),
            "{taken}"
        );
    }
    assert!(matches!(
        users.add_group("two words"),
        Err(UserError::InvalidName(_))
    ));
    assert!(users.group_exists("billing").unwrap());
    assert!(users.group_exists("general").unwrap());
    assert!(!users.group_exists("sales").unwrap());
    users
        .add_in_groups("ana", StaffRole::Expert, &["billing".to_string()])
        .unwrap();
    users.add("root", StaffRole::Admin).unwrap();
    assert_eq!(
        users.expert("ana").unwrap().unwrap().teams(),
        vec!["billing"]
    );
    assert!(
        users.expert("root").unwrap().is_none(),
        "admins are not experts"
    );
    assert!(users.expert("nobody").unwrap().is_none());
}

fn users_are_listed_in_the_order_they_were_added(place: &dyn Place) {
    let users = place.open();
    let before = Timestamp::now();
    for name in ["zoe", "ana", "mia"] {
        users.add(name, StaffRole::Expert).unwrap();
    }
    users.revoke("ana").unwrap();
    users.add("ana", StaffRole::Admin).unwrap();
    let listed = place.open().list().unwrap();
    let names: Vec<_> = listed.iter().map(|user| user.name.as_str()).collect();
    assert_eq!(names, ["zoe", "mia", "ana"]);
    assert_eq!(listed[2].role, StaffRole::Admin);
    assert!(listed
        .iter()
        .all(|user| user.created_at >= before && user.created_at <= Timestamp::now()));
}

fn concurrent_writers_lose_no_user(place: &dyn Place) {
    std::thread::scope(|scope| {
        for i in 0..8 {
            let directory = place.open();
            scope.spawn(move || {
                directory
                    .add(&format!("expert{i}"), StaffRole::Expert)
                    .unwrap()
            });
        }
    });
    assert_eq!(place.open().list().unwrap().len(), 8);
}

/// A TCP relay to the test database that the test can stop forwarding through, as a dead
/// link does: connections stay open and nothing answers.
struct Blackhole {
    addr: std::net::SocketAddr,
    paused: Arc<AtomicBool>,
}

impl Blackhole {
    fn start(target: std::net::SocketAddr) -> Blackhole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let paused = Arc::new(AtomicBool::new(false));
        let gate = paused.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let gate = gate.clone();
                    std::thread::spawn(move || pump(from, to, &gate));
                }
            }
        });
        Blackhole { addr, paused }
    }
}

/// Copies `from` to `to`, holding each read while the gate is closed.
fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, paused: &AtomicBool) {
    use std::io::{Read, Write};
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer) {
        while paused.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The daemon must not go on trusting an old copy: once the database has not answered for
/// [`STALE_AFTER`], every token is refused (an error, not "unknown token"); until then the
/// copy serves, so a short blip refuses nobody; when the database answers again, so does
/// the directory.
#[test]
fn the_postgres_directory_fails_closed_while_the_database_is_silent() {
    let Some(place) = PgPlace::new() else {
        return;
    };
    let config: tokio_postgres::Config = place.url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .unwrap()
        .next()
        .unwrap();
    let link = Blackhole::start(target);
    let mut through = format!(
        "host=127.0.0.1 port={} user={} dbname={}",
        link.addr.port(),
        config.get_user().unwrap_or("postgres"),
        config.get_dbname().unwrap_or("postgres"),
    );
    if let Some(password) = config.get_password() {
        through.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    let admin = place.open();
    let token = admin.add("ana", StaffRole::Expert).unwrap();
    let daemon = UserDirectory::open_postgres(&through, Some(&place.schema)).unwrap();
    let ana = daemon.authenticate(&token).unwrap().unwrap();

    link.paused.store(true, Ordering::Relaxed);
    let silent = Instant::now();
    let failed = within(STALE_AFTER * 3, "reads fail once the copy is stale", || {
        daemon.still_valid(&ana).is_err()
    });
    assert!(
        failed >= STALE_AFTER - REFRESH_EVERY * 2,
        "the copy serves through a short blip, failed after {failed:?}"
    );
    let refused = daemon.authenticate(&token).unwrap_err();
    assert!(
        matches!(refused, UserError::Unavailable { .. }),
        "{refused}"
    );
    let said = refused.to_string();
    assert!(
        said.contains("no staff token is accepted") && said.contains("127.0.0.1"),
        "{said}"
    );
    assert!(daemon.group_exists("general").is_err());
    eprintln!("silent database: reads refused after {failed:?}");

    link.paused.store(false, Ordering::Relaxed);
    let back = within(STALE_AFTER * 4, "reads work again", || {
        matches!(daemon.still_valid(&ana), Ok(true))
    });
    eprintln!(
        "database back: reads work again {back:?} later ({:?} after it went silent)",
        silent.elapsed()
    );
}

/// A node and the CLI starting at once on an empty database both make the tables, once.
#[test]
fn directories_opening_at_once_on_a_fresh_schema_all_succeed() {
    let Some(place) = PgPlace::new() else {
        return;
    };
    let opened: Vec<_> = std::thread::scope(|scope| {
        let openers: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| UserDirectory::open_postgres(&place.url, Some(&place.schema))))
            .collect();
        openers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for directory in &opened {
        if let Err(e) = directory {
            panic!("{e}");
        }
    }
    let version = run_sql(
        &place.url,
        &format!("SELECT version FROM {}.sosq_users_meta", place.schema),
    );
    assert_eq!(version, [super::sql::SCHEMA_VERSION.to_string()]);
}

#[test]
fn a_directory_written_by_a_newer_sosqd_is_refused() {
    let Some(place) = PgPlace::new() else {
        return;
    };
    drop(place.open());
    run_sql(
        &place.url,
        &format!("UPDATE {}.sosq_users_meta SET version = 99", place.schema),
    );
    let Err(refused) = UserDirectory::open_postgres(&place.url, Some(&place.schema)) else {
        panic!("a newer schema was opened");
    };
    let said = refused.to_string();
    assert!(said.contains("schema 99, newer than"), "{said}");
}

/// An unreachable database is an error at once that names it, never its password.
#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let Err(refused) =
        UserDirectory::open_postgres("postgres://sosq:hunter2@127.0.0.1:1/staff", None)
    else {
        panic!("nothing listens on port 1");
    };
    let said = refused.to_string();
    assert!(said.contains("postgres://sosq@127.0.0.1:1/staff"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}
