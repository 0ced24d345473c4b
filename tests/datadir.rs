//! Data-dir safety, end to end with real `sosqd` processes: one daemon per data dir,
//! read-only commands that make nothing, files that take the data dir's owner and are
//! owner-only, paths in a config file relative to the file, `sosqd user set`, and error
//! lines that say each cause once.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use common::{run_with_patience, sosqd_bin, Daemon};

/// The uid (and gid) the ownership tests give data dirs to: `nobody` on Debian.
const OTHER: u32 = 65534;

/// Runs `sosqd ARGS --data-dir DIR` to completion.
fn sosqd(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(sosqd_bin());
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null());
    run_with_patience(cmd)
}

/// [`sosqd`] that must succeed; its stdout, trimmed.
fn sosqd_ok(dir: &Path, args: &[&str]) -> String {
    let out = sosqd(dir, args);
    assert!(out.status.success(), "sosqd {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// sosqd's error line (log lines may come before it).
fn error_line(out: &Output) -> String {
    let text = stderr(out);
    let errors: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("sosqd: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{text}");
    errors[0].to_string()
}

/// Every regular file in `dir`: (name, uid, gid, permission bits).
fn files(dir: &Path) -> Vec<(String, u32, u32, u32)> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                meta.uid(),
                meta.gid(),
                meta.permissions().mode() & 0o777,
            )
        })
        .collect();
    found.sort();
    found
}

fn running_as_root() -> bool {
    let probe = tempfile::tempdir().unwrap();
    std::fs::metadata(probe.path()).unwrap().uid() == 0
}

fn have_setpriv() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `sosqd ARGS` run as uid and gid `id` with no supplementary groups.
fn sosqd_as(id: u32, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={id}"))
        .arg(format!("--regid={id}"))
        .arg("--clear-groups")
        .arg(sosqd_bin())
        .args(args);
    cmd
}

/// A temp dir others may pass through, holding `data`: an empty data dir owned by
/// [`OTHER`], owner-only, as a service's `StateDirectory` is.
fn data_dir_of_another_user() -> (Arc<tempfile::TempDir>, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(OTHER), Some(OTHER)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    (Arc::new(root), data)
}

/// A customer asks for help and stays; the case is written to the store.
fn open_a_case(daemon: &Daemon) -> common::Session {
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    customer.expect_event("attached");
    customer
}

#[test]
fn a_second_daemon_on_a_held_data_dir_fails_naming_the_first_and_kill_9_frees_it() {
    let first = Daemon::start(&[]);
    let refused = common::refused_start(first.dir.path());
    assert!(
        refused.contains(&format!("is in use by another sosqd (pid {})", first.pid())),
        "{refused}"
    );
    assert!(
        refused.contains(&first.dir.path().display().to_string()),
        "{refused}"
    );
    assert_eq!(refused.lines().count(), 1, "one line: {refused}");
    // The same data dir and the same port (two plain `sosqd` in one directory): the
    // data dir's holder is named first, not the port.
    let out = sosqd(
        first.dir.path(),
        &["serve", "--listen", first.addr.as_str()],
    );
    let same_port = error_line(&out);
    assert!(
        same_port.contains(&format!("is in use by another sosqd (pid {})", first.pid())),
        "{same_port}"
    );
    // The first one still serves.
    let mut customer = open_a_case(&first);

    // kill -9 leaves the lock file with a pid that is no longer running; that alone must
    // not block a restart.
    let old_pid = first.pid();
    customer.kill9();
    let dir = first.kill9();
    let lock = dir.path().join("sosqd.lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        old_pid.to_string()
    );
    let second = Daemon::start_in(dir, &[]);
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        second.pid().to_string()
    );
    let refused = common::refused_start(second.dir.path());
    assert!(
        refused.contains(&format!("pid {}", second.pid())),
        "{refused}"
    );
}

#[test]
fn read_only_commands_make_nothing_and_fingerprint_says_where_it_looked() {
    // Run from a directory with no data dir, as an admin in the wrong place would.
    let cwd = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(sosqd_bin());
        cmd.args(args).current_dir(cwd.path()).stdin(Stdio::null());
        run_with_patience(cmd)
    };
    let expected = cwd.path().join("sosqd-data").join("cert.pem");
    for args in [
        &["fingerprint"][..],
        &[
            "profile",
            "--out",
            "support.sosq",
            "--server",
            "127.0.0.1:4433",
        ],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?} without a certificate");
        let line = error_line(&out);
        assert!(
            line.contains(&format!("no certificate at {}", expected.display())),
            "{line}"
        );
        assert!(line.contains("sosqd fingerprint --create"), "{line}");
    }
    for args in [&["user", "list"][..], &["group", "list"]] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "read-only commands made something"
    );

    // --create makes it once; a daemon then serves with that same certificate.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let made = sosqd_ok(dir.path(), &["fingerprint", "--create"]);
    assert_eq!(made.len(), 64, "{made}");
    assert_eq!(sosqd_ok(dir.path(), &["fingerprint", "--create"]), made);
    assert_eq!(sosqd_ok(dir.path(), &["fingerprint"]), made);
    let daemon = Daemon::start_in(dir, &[]);
    assert_eq!(daemon.fingerprint, made);
}

#[test]
fn every_file_in_the_data_dir_is_owner_only_and_loose_ones_are_tightened() {
    let daemon = Daemon::start(&[]);
    let mut customer = open_a_case(&daemon);
    let found = files(daemon.dir.path());
    let names: Vec<&str> = found.iter().map(|(name, ..)| name.as_str()).collect();
    for expected in [
        "cases.sqlite3",
        "cases.sqlite3-shm",
        "cases.sqlite3-wal",
        "cert.pem",
        "key.pem",
        "sosqd.lock",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    for (name, _, _, mode) in &found {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
    }

    // Files an older sosqd left readable are made owner-only at the next start.
    customer.kill9();
    let dir = daemon.kill9();
    for name in ["cases.sqlite3", "cases.sqlite3-wal", "cases.sqlite3-shm"] {
        let path = dir.path().join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let _again = Daemon::start_in(dir.clone(), &[]);
    for (name, _, _, mode) in files(dir.path()) {
        assert_eq!(mode, 0o600, "{name} is {mode:o} after a restart");
    }
}

#[test]
fn admin_commands_run_as_root_leave_files_the_data_dirs_owner_owns_and_its_daemon_uses() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give a data dir to another user");
        return;
    }
    let (root, data) = data_dir_of_another_user();
    sosqd_ok(&data, &["group", "add", "billing"]);
    let ana = sosqd_ok(
        &data,
        &[
            "user", "add", "ana", "--role", "expert", "--group", "billing",
        ],
    );
    let bo = sosqd_ok(&data, &["user", "add", "bo", "--role", "expert"]);
    sosqd_ok(&data, &["user", "set", "bo", "--group", "billing"]);
    let fingerprint = sosqd_ok(&data, &["fingerprint", "--create"]);
    let found = files(&data);
    let names: Vec<&str> = found.iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(names, ["cert.pem", "key.pem", "users.json"], "nothing else");
    for (name, uid, gid, mode) in &found {
        assert_eq!((*uid, *gid, *mode), (OTHER, OTHER, 0o600), "{name}");
    }

    if !have_setpriv() {
        eprintln!("skipped the rest: needs setpriv to run sosqd as uid {OTHER}");
        return;
    }
    // A user that is neither root nor the owner is refused, and nothing is written.
    let before = std::fs::read(data.join("users.json")).unwrap();
    let data_arg = data.to_string_lossy().into_owned();
    let mut cmd = sosqd_as(
        OTHER - 1,
        &[
            "user",
            "add",
            "cy",
            "--role",
            "expert",
            "--data-dir",
            &data_arg,
        ],
    );
    cmd.stdin(Stdio::null());
    let out = run_with_patience(cmd);
    assert!(!out.status.success(), "a stranger wrote users.json");
    let line = error_line(&out);
    assert!(
        line.contains(&format!("uid {OTHER}")) && line.contains("or as root"),
        "{line}"
    );
    assert_eq!(std::fs::read(data.join("users.json")).unwrap(), before);

    // The service's own user runs the daemon: it reads the key and the tokens root wrote.
    let serve = sosqd_as(
        OTHER,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_arg],
    );
    let daemon = Daemon::spawn(serve, root);
    assert_eq!(daemon.fingerprint, fingerprint);
    for token in [&ana, &bo] {
        let queue = daemon.json(Some(token), &["queue"]);
        assert!(queue["entries"].is_array(), "{queue}");
    }
    // Revoked by root, refused by the daemon.
    sosqd_ok(&data, &["user", "revoke", "ana"]);
    let refused = daemon.run(Some(&ana), &["queue"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("unknown or revoked"),
        "{}",
        stderr(&refused)
    );
    let _customer = open_a_case(&daemon);
    for (name, uid, _, mode) in files(&data) {
        assert_eq!((uid, mode), (OTHER, 0o600), "{name}");
    }

    // A root-owned users file (as an older sosqd run as root left it) is named with the
    // chown that gives it back, not a bare "Permission denied".
    let users = data.join("users.json");
    std::os::unix::fs::chown(&users, Some(0), Some(0)).unwrap();
    let mut cmd = sosqd_as(OTHER, &["user", "list", "--data-dir", &data_arg]);
    cmd.stdin(Stdio::null());
    let line = error_line(&run_with_patience(cmd));
    assert!(
        line.contains("belongs to user root (uid 0)")
            && line.contains(&format!("chown {OTHER}:{OTHER} {}", users.display())),
        "{line}"
    );
    // Root's next change gives it back.
    sosqd_ok(&data, &["user", "revoke", "bo"]);
    assert_eq!(std::fs::metadata(&users).unwrap().uid(), OTHER);
}

#[test]
fn a_daemon_started_as_root_on_another_users_data_dir_leaves_that_user_every_file() {
    if !running_as_root() {
        eprintln!("skipped: needs root to give a data dir to another user");
        return;
    }
    let (root, data) = data_dir_of_another_user();
    let mut serve = Command::new(sosqd_bin());
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data);
    let daemon = Daemon::spawn(serve, root.clone());
    let mut customer = open_a_case(&daemon);
    let found = files(&data);
    assert!(
        found.iter().any(|(name, ..)| name == "cases.sqlite3-wal"),
        "{found:?}"
    );
    for (name, uid, gid, mode) in &found {
        assert_eq!((*uid, *gid, *mode), (OTHER, OTHER, 0o600), "{name}");
    }
    customer.kill9();
    drop(daemon);
    if !have_setpriv() {
        eprintln!("skipped the rest: needs setpriv to run sosqd as uid {OTHER}");
        return;
    }
    let data_arg = data.to_string_lossy().into_owned();
    let serve = sosqd_as(
        OTHER,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_arg],
    );
    let daemon = Daemon::spawn(serve, root);
    let _customer = open_a_case(&daemon);
}

#[test]
fn root_making_a_data_dir_by_an_admin_command_is_warned_and_the_daemons_user_told_the_chown() {
    if !running_as_root() {
        eprintln!("skipped: needs root to make a data dir another user's daemon cannot use");
        return;
    }
    // The service's data dir does not exist yet: root's `user add` makes it, root's.
    let root = Arc::new(tempfile::tempdir().unwrap());
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.path().join("data");
    let out = sosqd(&data, &["user", "add", "ana", "--role", "expert"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warned = stderr(&out);
    assert!(warned.contains("does not exist yet"), "{warned}");
    assert!(
        warned.contains(&format!(
            "install -d -o sosqd -g sosqd -m 0700 {}",
            data.display()
        )),
        "{warned}"
    );
    // A second command on the existing dir says nothing of it.
    let out = sosqd(&data, &["user", "add", "bo", "--role", "expert"]);
    assert!(
        !stderr(&out).contains("does not exist yet"),
        "{}",
        stderr(&out)
    );
    if !have_setpriv() {
        eprintln!("skipped the rest: needs setpriv to run sosqd as uid {OTHER}");
        return;
    }
    // The daemon's user is refused with the chown that gives it the dir.
    let data_arg = data.to_string_lossy().into_owned();
    let out = run_with_patience(sosqd_as(
        OTHER,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_arg],
    ));
    assert!(!out.status.success());
    let refused = error_line(&out);
    // uid 65534 is `nobody` where /etc/passwd names it, else the bare number.
    let chown = format!(": {}`", data.display());
    assert!(
        refused.contains("`chown -R ") && refused.contains(&chown),
        "{refused}"
    );
}

#[test]
fn a_relative_data_dir_in_a_config_file_is_beside_the_file_wherever_sosqd_runs() {
    let root = Arc::new(tempfile::tempdir().unwrap());
    let conf = root.path().join("conf");
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&conf).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(
        conf.join("sosqd.toml"),
        "listen = \"127.0.0.1:0\"\ndata_dir = \"state\"\n",
    )
    .unwrap();
    let mut serve = Command::new(sosqd_bin());
    serve
        .args(["serve", "--config", "conf/sosqd.toml"])
        .current_dir(root.path());
    let daemon = Daemon::spawn(serve, root.clone());
    assert!(conf.join("state").join("cert.pem").exists());
    assert!(!root.path().join("state").exists());
    assert!(!root.path().join("sosqd-data").exists());

    let mut fingerprint = Command::new(sosqd_bin());
    fingerprint
        .args(["fingerprint", "--config", "../conf/sosqd.toml"])
        .current_dir(&elsewhere);
    let out = run_with_patience(fingerprint);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        daemon.fingerprint
    );
}

#[test]
fn user_set_moves_an_expert_to_other_teams_without_a_new_token() {
    let daemon = Daemon::start(&[]);
    let admin = |args: &[&str]| {
        let out = daemon.admin_command(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    admin(&["group", "add", "billing"]);
    let ana = daemon.add_user("ana", "expert");
    // user add says where it wrote, so a command run in the wrong place is noticed.
    let out = daemon.admin_command(&["user", "add", "bo", "--role", "expert"]);
    let users_file = daemon.dir.path().join("users.json");
    assert!(
        stderr(&out).contains(&format!("added expert bo to {}", users_file.display())),
        "{}",
        stderr(&out)
    );
    let mut payer = daemon.session(None, &["request", "--name", "Payer", "--group", "billing"]);
    let code = payer.expect_event("attached")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let queue = |token: &str| daemon.json(Some(token), &["queue"])["entries"].clone();
    assert_eq!(
        queue(&ana).as_array().unwrap().len(),
        0,
        "ana works general"
    );

    admin(&[
        "user", "set", "ana", "--group", "billing", "--group", "general",
    ]);
    let entries = queue(&ana);
    assert_eq!(entries[0]["code"], code.as_str(), "{entries}");
    let listed = String::from_utf8(daemon.admin_command(&["user", "list"]).stdout).unwrap();
    assert!(listed.contains("billing,general"), "{listed}");

    let refused = |args: &[&str], says: &str| {
        let out = daemon.admin_command(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let line = error_line(&out);
        assert!(line.contains(says), "{args:?}: {line}");
    };
    refused(
        &["user", "set", "ana", "--group", "network"],
        "no group named \"network\"",
    );
    refused(
        &["user", "add", "ana", "--role", "expert"],
        "sosqd user set ana",
    );
    refused(
        &[
            "user", "add", "root", "--role", "admin", "--group", "billing",
        ],
        "admins see and work every queue",
    );
    let listed = String::from_utf8(daemon.admin_command(&["user", "list"]).stdout).unwrap();
    assert!(!listed.contains("root"), "{listed}");
}

#[test]
fn an_address_in_use_asks_whether_another_sosqd_runs_and_each_cause_is_said_once() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = Command::new(sosqd_bin());
    cmd.args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .stdin(Stdio::null());
    let out = run_with_patience(cmd);
    assert!(!out.status.success(), "sosqd shared {addr}");
    let line = error_line(&out);
    assert!(line.contains(&format!("cannot listen on {addr}")), "{line}");
    assert!(line.contains("is another sosqd running?"), "{line}");
    assert_eq!(line.matches("(os error").count(), 1, "{line}");
    // Checked before anything is made: no data dir, store or certificate left behind.
    assert!(
        !data.exists(),
        "a taken port left {} behind",
        data.display()
    );

    // Other errors with a system cause say it once too.
    let out = sosqd(
        dir.path(),
        &["serve", "--config", "/nonexistent/sosqd.toml"],
    );
    let line = error_line(&out);
    assert!(line.contains("/nonexistent/sosqd.toml"), "{line}");
    assert_eq!(line.matches("(os error").count(), 1, "{line}");
    let not_a_dir = dir.path().join("cert.pem");
    std::fs::write(&not_a_dir, "not a directory").unwrap();
    let out = sosqd(&not_a_dir, &["user", "add", "ana", "--role", "expert"]);
    let line = error_line(&out);
    assert_eq!(line.matches("(os error").count(), 1, "{line}");
}
