//! End to end: the `sosq` command line as a newcomer meets it: support profiles on every
//! customer command, what `pull` says when nobody waits, deleting unknown codes, staff
//! looking at ended cases, `status` output and the help text.

mod common;

use common::Daemon;

fn admin_ok(daemon: &Daemon, args: &[&str]) {
    let out = daemon.admin_command(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An expert of two teams finds nobody in its queues (a customer waits in a third team's):
/// `pull` names the queues it searched and how to wait; with a customer offline in one of
/// them, it counts them as before.
#[test]
fn pull_with_nobody_waiting_names_the_queues_searched_and_wait() {
    let daemon = Daemon::start(&[]);
    admin_ok(&daemon, &["group", "add", "billing"]);
    admin_ok(&daemon, &["group", "add", "network"]);
    let out = daemon.admin_command(&[
        "user", "add", "ana", "--role", "expert", "--group", "general", "--group", "billing",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ana = stdout(&out).trim().to_string();
    let mut elsewhere =
        daemon.session(None, &["request", "--name", "Router", "--group", "network"]);
    elsewhere.expect_event("attached");

    let pull = daemon.run(Some(&ana), &["pull"]);
    assert!(!pull.status.success());
    let said = stderr(&pull);
    assert!(
        said.contains("no customer is waiting in your queues: general, billing, and the cases assigned to you")
            && said.contains("other teams' queues are not yours")
            && said.contains("sosq pull --wait"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line: {said}");

    // A billing customer who left (politely: offline at once) is counted, not handed out.
    let mut payer = daemon.session(None, &["request", "--name", "Payer", "--group", "billing"]);
    payer.expect_event("attached");
    payer.interrupt();
    payer.expect_event("left");
    let pull = daemon.run(Some(&ana), &["pull"]);
    assert!(!pull.status.success());
    let said = stderr(&pull);
    assert!(
        said.contains("no customer is waiting online in your queues: general, billing")
            && said.contains("(1 waiting offline")
            && said.contains("sosq pull --wait"),
        "{said}"
    );
}

/// `sosq delete CODE...` deletes the cases that exist and fails naming the codes that
/// match none, so a typo is not taken for a deletion; deleting again fails too.
#[test]
fn deleting_unknown_codes_fails_naming_them_and_deletes_the_rest() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");
    let made = daemon.json(Some(&ana), &["create", "--customer", "Bob"]);
    let real = made["code"].as_str().unwrap().to_string();
    let unknown = if real == "s111-111-111" {
        "s222-222-222"
    } else {
        "s111-111-111"
    };

    let out = daemon.run(Some(&root), &["delete", &real, unknown, &real]);
    assert!(!out.status.success(), "a typo must not pass: {out:?}");
    assert_eq!(stdout(&out).trim(), "deleted 1 case");
    let said = stderr(&out);
    assert!(
        said.contains(&format!("no case has code {unknown}")) && !said.contains(&real),
        "{said}"
    );
    let gone = daemon.run(Some(&root), &["status", &real]);
    assert!(!gone.status.success(), "{}", stdout(&gone));

    // Again, with --json: the reply names what was not found, the error is a JSON line.
    let again = daemon.run(Some(&root), &["--json", "delete", &real]);
    assert!(!again.status.success());
    let reply: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(reply["deleted"], 0);
    assert_eq!(reply["not_found"], serde_json::json!([real]));
    let error: serde_json::Value =
        serde_json::from_str(stderr(&again).lines().last().unwrap()).unwrap();
    assert!(
        error["message"].as_str().unwrap().contains(&real),
        "{error}"
    );

    // A delete by filter that matches nothing is not an error.
    let none = daemon.run(Some(&root), &["delete", "--state", "expired"]);
    assert!(none.status.success(), "{}", stderr(&none));
    assert_eq!(stdout(&none).trim(), "deleted 0 cases");
}

/// A customer who started from a support profile, with nothing in the environment, comes
/// back the way it left: `status`, `join` and `close` take `--profile` with `--secret`.
#[test]
fn a_profile_only_customer_can_look_come_back_and_close() {
    let daemon = Daemon::start(&[]);
    let profile = daemon.dir.path().join("support.sosq");
    let profile = profile.to_str().unwrap().to_string();
    admin_ok(
        &daemon,
        &["profile", "--out", &profile, "--server", &daemon.addr],
    );
    let customer = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::sosq_bin());
        cmd.env_remove("SOSQ_SERVER")
            .env_remove("SOSQ_FINGERPRINT")
            .env_remove("SOSQ_TOKEN")
            .env_remove("SOSQ_SECRET")
            .env_remove("SOSQ_CA")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let mut asking = common::Session::from_command(customer(&[
        "--json",
        "request",
        "--profile",
        &profile,
        "--name",
        "Payer",
    ]));
    let attached = asking.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();
    asking.interrupt();
    let left = asking.expect_event("left");
    let message = left["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("--profile {profile}")),
        "the come-back line names the profile: {message}"
    );

    let status = common::run_with_patience(customer(&[
        "status",
        &code,
        "--secret",
        &secret,
        "--profile",
        &profile,
    ]));
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).starts_with(&format!("case {code}: pending")));

    let mut back = common::Session::from_command(customer(&[
        "--json",
        "join",
        &code,
        "--name",
        "Payer",
        "--secret",
        &secret,
        "--profile",
        &profile,
    ]));
    assert_eq!(back.expect_event("attached")["code"], code.as_str());
    back.interrupt();
    back.expect_event("left");
    let (done, said) = back.wait();
    assert!(done.success(), "{said}");

    let close = common::run_with_patience(customer(&[
        "close",
        &code,
        "--secret",
        &secret,
        "--profile",
        &profile,
    ]));
    assert!(close.status.success(), "{}", stderr(&close));
    assert_eq!(stdout(&close).trim(), format!("closed case {code}"));
    // Without the profile (and nothing in the environment) it says what is missing.
    let bare = common::run_with_patience(customer(&["status", &code, "--secret", &secret]));
    assert!(!bare.status.success());
    assert!(
        stderr(&bare).contains("no server fingerprint"),
        "{}",
        stderr(&bare)
    );
}

/// The fields of `sosq status` as `name: value` lines (the history left out).
fn status_fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip(1)
        .take_while(|line| *line != "history:")
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Staff see a closed or expired case (still stored) with `status` and `history`, and its
/// status says when it ended instead of when it would expire, without empty lines;
/// customers get no such distinction.
#[test]
fn staff_see_closed_and_expired_cases_and_status_says_when_they_ended() {
    let daemon = Daemon::start(&["--case-ttl", "3s"]);
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");

    // Open, with a description: it says when it expires.
    let mut asking = daemon.session(
        None,
        &[
            "request",
            "--name",
            "Alice",
            "--description",
            "printer on fire",
        ],
    );
    let attached = asking.expect_event("attached");
    let open = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();
    let shown = daemon.run(Some(&ana), &["status", &open]);
    let fields = status_fields(&stdout(&shown));
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "customer",
            "description",
            "created",
            "expires",
            "respond by"
        ],
        "{}",
        stdout(&shown)
    );

    // Closed by its customer: staff still see it, with when it closed.
    let closed = daemon.run(None, &["close", &open, "--secret", &secret]);
    assert!(closed.status.success(), "{}", stderr(&closed));
    for token in [&ana, &root] {
        let shown = daemon.run(Some(token), &["status", &open]);
        assert!(shown.status.success(), "{}", stderr(&shown));
        let text = stdout(&shown);
        assert!(text.starts_with(&format!("case {open}: closed")), "{text}");
        let names: Vec<String> = status_fields(&text).into_iter().map(|f| f.0).collect();
        assert_eq!(
            names,
            [
                "customer",
                "description",
                "created",
                "closed",
                "first response"
            ],
            "{text}"
        );
        assert!(
            text.contains("closed by the customer"),
            "with its history: {text}"
        );
        let history = daemon.run(Some(token), &["history", &open]);
        assert!(history.status.success(), "{}", stderr(&history));
        assert!(stdout(&history).starts_with(&format!("case {open}: closed")));
    }
    // The customer, even with its secret, learns nothing of a case that is not open.
    let asked = daemon.run(None, &["status", &open, "--secret", &secret]);
    assert!(!asked.status.success());
    assert!(
        stderr(&asked).contains("no open case has code"),
        "{}",
        stderr(&asked)
    );

    // Expert-created, no description, never joined: it expires after the 3 s ttl.
    let made = daemon.json(Some(&ana), &["create", "--customer", "Bob"]);
    let lapsed = made["code"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let text = loop {
        let shown = daemon.run(Some(&root), &["status", &lapsed]);
        assert!(shown.status.success(), "{}", stderr(&shown));
        let text = stdout(&shown);
        if text.starts_with(&format!("case {lapsed}: expired")) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never expired: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let names: Vec<String> = status_fields(&text).into_iter().map(|f| f.0).collect();
    assert_eq!(names, ["customer", "created", "expired"], "{text}");
    let history = daemon.run(Some(&ana), &["history", &lapsed]);
    assert!(history.status.success(), "{}", stderr(&history));
    assert!(stdout(&history).contains("expired: not closed within 3s"));
    let asked = daemon.run(None, &["status", &lapsed]);
    assert!(
        stderr(&asked).contains("no open case has code"),
        "{}",
        stderr(&asked)
    );
}

/// `sosq --help` opens with what sosq does and its main commands by role, not the crate's
/// description; a command's help opens with what it does and lists its own options
/// before the global ones, which sit under one heading; placeholders name their values.
#[test]
fn help_says_what_sosq_does_and_keeps_global_options_apart() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(common::sosq_bin())
            .args(args)
            .env_remove("SOSQ_SERVER")
            .output()
            .expect("run sosq");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let top = help(&["--help"]);
    assert!(
        top.lines()
            .next()
            .unwrap()
            .starts_with("sosq: get remote support"),
        "{top}"
    );
    assert!(!top.contains("async client library"), "{top}");
    for by_role in [
        "Customers",
        "Experts",
        "Admins",
        "sosq pull",
        "sosq request",
    ] {
        assert!(top.contains(by_role), "{by_role} missing from:\n{top}");
    }
    let short = help(&["-h"]);
    assert!(short.starts_with("sosq: get remote support"), "{short}");

    let status = help(&["status", "--help"]);
    let lines: Vec<&str> = status.lines().collect();
    assert!(lines[0].starts_with("Show one case"), "{status}");
    let own = lines
        .iter()
        .position(|l| *l == "Options:")
        .expect("Options:");
    let global = lines
        .iter()
        .position(|l| l.starts_with("Global options"))
        .expect("a Global options heading");
    let at = |flag: &str| {
        lines
            .iter()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing from:\n{status}"))
    };
    assert!(own < at("--secret <SECRET>") && at("--secret") < global);
    assert!(own < at("--profile <FILE>") && at("--profile") < global);
    for flag in [
        "--server <ADDR>",
        "--fingerprint <FINGERPRINT>",
        "--ca <FILE>",
        "--token <TOKEN>",
        "--json",
    ] {
        assert!(
            at(flag) > global,
            "{flag} under the global heading:\n{status}"
        );
    }
    let delete = help(&["delete", "--help"]);
    assert!(
        delete.contains("[CODE]...") && delete.contains("--older-than <DURATION>"),
        "{delete}"
    );
}

/// An expert who connects by code before the customer joins is told it waits for them,
/// not left looking at one line and silence; once the customer joins, both are connected.
#[test]
fn connecting_by_code_before_the_customer_says_it_waits() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let created = daemon.json(Some(&ana), &["create", "--customer", "Bob"]);
    let code = created["code"].as_str().unwrap().to_string();
    let mut cmd = daemon.sosq(Some(&ana));
    cmd.args(["connect", &code])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut expert = common::Session::from_command(cmd);
    let waiting = expert.expect_line("waiting for the other party to connect");
    assert!(waiting.contains("the case stays open"), "{waiting}");
    let mut bob = daemon.session(None, &["join", &code, "--name", "Bob"]);
    bob.expect_event("paired");
    expert.expect_line("connected to customer Bob");
}

/// A client given several nodes (a cluster's) tries each: a silent first address does not
/// stop it reaching the next, given with commas (flag or `SOSQ_SERVER`) or by repeating
/// the flag; when none answers, the error names every address tried.
#[test]
fn several_servers_are_tried_in_turn() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    // A port that takes datagrams and never answers: a node that is down.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap().to_string();
    let listed = format!("{dead},{}", daemon.addr);
    let mut by_env = daemon.sosq(Some(&ana));
    by_env.env("SOSQ_SERVER", &listed).arg("queue");
    let out = common::run_with_patience(by_env);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut by_flags = daemon.sosq(Some(&ana));
    by_flags
        .env_remove("SOSQ_SERVER")
        .args(["queue", "--server", &dead, "--server", &daemon.addr]);
    let out = common::run_with_patience(by_flags);
    assert!(out.status.success(), "{}", stderr(&out));

    let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let also_dead = other.local_addr().unwrap().to_string();
    let mut none = daemon.sosq(Some(&ana));
    none.env("SOSQ_SERVER", format!("{dead},{also_dead}"))
        .arg("queue");
    let out = common::run_with_patience(none);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("no answer from sosqd"), "{said}");
    assert!(said.contains(&dead) && said.contains(&also_dead), "{said}");
}

/// `sosq status CODE | head -1` and the like: when the reader of its answer goes away,
/// `sosq` ends quietly and successfully instead of panicking on the broken pipe.
#[test]
fn a_reader_that_goes_away_ends_sosq_quietly() {
    let daemon = Daemon::start(&[]);
    let root = daemon.add_user("root", "admin");
    let mut waiting = daemon.session(None, &["request", "--name", "Pipe"]);
    waiting.expect_event("attached");
    for args in [&["queue"][..], &["cases"][..]] {
        let mut child = daemon
            .sosq(Some(&root))
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start sosq");
        // The reader goes away before `sosq` has its answer (connecting takes longer).
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("sosq ends");
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
}
