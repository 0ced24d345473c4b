//! `sosq --json` is a contract for scripts: real commands against a real daemon, and every
//! line they print checked against `docs/sosq-json.schema.json` (draft 2020-12, by the
//! `jsonschema` crate). The schema names every field of every object and allows no other,
//! so a field renamed, missing or added without the schema saying so fails here.

mod common;

use std::process::Output;

use common::{echo_service, echo_through, Daemon};
use serde_json::{json, Value};

/// The schema document, checking values against one of its definitions.
struct Schema(Value);

impl Schema {
    fn load() -> Schema {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sosq-json.schema.json");
        let text = std::fs::read_to_string(path).expect("docs/sosq-json.schema.json");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
        Schema(schema)
    }

    /// The errors of `value` against `#/$defs/{def}` (none: it is valid).
    fn errors(&self, def: &str, value: &Value) -> Vec<String> {
        let mut schema = self.0.clone();
        let top = schema.as_object_mut().expect("an object");
        assert!(top["$defs"].get(def).is_some(), "the schema defines {def}");
        top.remove("anyOf");
        top.insert("$ref".into(), json!(format!("#/$defs/{def}")));
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        validator
            .iter_errors(value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }

    /// Panics unless `value` is a valid `def`.
    fn check(&self, def: &str, value: &Value) {
        let errors = self.errors(def, value);
        assert!(errors.is_empty(), "not a valid {def}: {value}\n{errors:#?}");
    }

    /// Checks every stderr line as a JSON event; returns them.
    fn check_stderr(&self, stderr: &str) -> Vec<Value> {
        stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"));
                self.check("stderr_line", &value);
                value
            })
            .collect()
    }

    /// Checks a command that succeeded: its stdout lines as `def`, its stderr as events.
    fn check_run(&self, def: &str, out: &Output) -> (Vec<Value>, Vec<Value>) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "failed: {stderr}");
        let stdout: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                self.check(def, &value);
                value
            })
            .collect();
        (stdout, self.check_stderr(&stderr))
    }

    /// Checks a command that failed: nothing on stdout, one error line with `code` on
    /// stderr, and the exit code `exit`.
    fn check_failure(&self, out: &Output, code: &str, exit: i32) -> Value {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(exit), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let lines = self.check_stderr(&stderr);
        let [error] = lines.as_slice() else {
            panic!("one error line expected: {stderr}");
        };
        assert_eq!(error["event"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        error.clone()
    }
}

fn kinds(history: &Value) -> Vec<String> {
    history
        .as_array()
        .expect("a history")
        .iter()
        .map(|entry| entry["kind"].as_str().expect("a kind").to_string())
        .collect()
}

#[test]
fn every_line_a_case_life_prints_matches_the_schema() {
    let schema = Schema::load();
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");
    let (ana, root) = (Some(ana.as_str()), Some(root.as_str()));

    let mut alice = daemon.session(
        None,
        &[
            "request",
            "--name",
            "Alice",
            "--description",
            "printer on fire",
            "--priority",
            "high",
        ],
    );
    let code = alice.expect_event("attached")["code"]
        .as_str()
        .expect("a code")
        .to_string();
    let mut bob = daemon.session(None, &["request", "--name", "Bob"]);
    let bob_attached = bob.expect_event("attached");

    // Bob's message prints his case; his file, its list and its download print theirs.
    let bob_code = bob_attached["code"].as_str().expect("a code").to_string();
    let secret = bob_attached["resume_secret"].as_str().expect("a secret");
    let said = &schema
        .check_run(
            "case",
            &daemon.run(
                None,
                &[
                    "--json", "message", &bob_code, "it beeps", "--secret", secret,
                ],
            ),
        )
        .0[0];
    assert_eq!(said["last_message"], "it beeps");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("log.txt");
    std::fs::write(&file, "paper jam\n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let attached = &schema
        .check_run(
            "attachment",
            &daemon.run(
                None,
                &["--json", "attach", &bob_code, &file, "--secret", secret],
            ),
        )
        .0[0];
    assert_eq!(attached["code"], bob_code.as_str());
    schema.check_run(
        "attachments",
        &daemon.run(ana, &["--json", "attachments", &bob_code]),
    );
    let out = files.path().join("got.txt").to_string_lossy().into_owned();
    let got = &schema
        .check_run(
            "download",
            &daemon.run(
                ana,
                &[
                    "--json",
                    "attachments",
                    &bob_code,
                    "--get",
                    "1",
                    "--out",
                    &out,
                ],
            ),
        )
        .0[0];
    assert_eq!(got["size"], 10);

    // The queue, a page of one with the token of the next, and all of it line by line.
    let (page, more) = schema.check_run(
        "queue_page",
        &daemon.run(ana, &["queue", "--json", "--limit", "1"]),
    );
    assert_eq!(page[0]["entries"][0]["code"], code.as_str());
    assert_eq!(more[0]["event"], "more");
    assert_eq!(page[0]["after"], more[0]["next"]);
    let (entries, _) = schema.check_run(
        "queue_entry",
        &daemon.run(ana, &["--json", "queue", "--all"]),
    );
    assert_eq!(entries.len(), 2);

    // Changes to the waiting case print it whole.
    let escalated = &schema
        .check_run(
            "case",
            &daemon.run(
                ana,
                &[
                    "--json",
                    "escalate",
                    &code,
                    "--priority",
                    "critical",
                    "--reason",
                    "payroll",
                ],
            ),
        )
        .0[0];
    assert_eq!(escalated["priority"], "critical");
    assert_eq!(
        escalated["origin"],
        json!({"kind": "sos", "by": {"role": "customer", "name": "Alice"}})
    );
    let assigned = &schema
        .check_run(
            "case",
            &daemon.run(ana, &["--json", "assign", &code, "--expert", "ana"]),
        )
        .0[0];
    assert_eq!(assigned["assigned_to"], "ana");

    // Status: the case and its history, each entry with its kind and actor.
    let status = &schema
        .check_run(
            "case_with_history",
            &daemon.run(ana, &["--json", "status", &code]),
        )
        .0[0];
    assert_eq!(
        kinds(&status["history"]),
        ["created", "attached", "started", "escalated", "assigned"]
    );
    assert_eq!(
        status["history"][0]["actor"],
        json!({"role": "customer", "name": "Alice"})
    );
    assert_eq!(
        status["history"][3]["actor"],
        json!({"role": "expert", "name": "ana"})
    );

    // The session: ana pulls Alice's case, they talk, ana closes it by code.
    let mut pull = daemon.session(ana, &["pull"]);
    assert_eq!(pull.expect_event("paired")["code"], code.as_str());
    alice.expect_event("paired");
    alice.send(b"hello\n");
    assert_eq!(pull.receive(6), b"hello\n");
    let created = &schema
        .check_run(
            "case",
            &daemon.run(ana, &["--json", "create", "--customer", "Carol"]),
        )
        .0[0];
    assert_eq!(
        created["origin"],
        json!({"kind": "created", "by": {"role": "expert", "name": "ana"}})
    );
    schema.check_run("case", &daemon.run(ana, &["--json", "close", &code]));
    for session in [alice, pull] {
        let (status, stderr) = session.wait();
        assert!(status.success(), "{stderr}");
        let events = schema.check_stderr(&stderr);
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "session_ended" && e["code"] == code.as_str()),
            "{stderr}"
        );
    }

    // A staff note on the closed case prints the case, and its history then holds it, by
    // whom.
    let noted = &schema
        .check_run(
            "case",
            &daemon.run(ana, &["--json", "note", &code, "refund promised"]),
        )
        .0[0];
    assert_eq!(noted["state"], "closed");
    // The history once closed: paired, the first response, closed, each by whom.
    let history = &schema
        .check_run("history", &daemon.run(ana, &["--json", "history", &code]))
        .0[0];
    let seen = kinds(&history["history"]);
    for kind in ["attached", "paired", "first_response", "closed"] {
        assert!(seen.iter().any(|k| k == kind), "{kind} in {seen:?}");
    }
    let closed = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["kind"] == "closed")
        .unwrap();
    assert_eq!(closed["actor"], json!({"role": "expert", "name": "ana"}));
    assert_eq!(closed["state"], "closed");
    let note = history["history"].as_array().unwrap().last().unwrap();
    assert_eq!(note["kind"], "note");
    assert_eq!(note["event"], "refund promised");
    assert_eq!(note["actor"], json!({"role": "expert", "name": "ana"}));

    // The admin's lists and delete.
    let (page, more) = schema.check_run(
        "cases_page",
        &daemon.run(root, &["--json", "cases", "--limit", "1"]),
    );
    assert_eq!(page[0]["cases"].as_array().unwrap().len(), 1);
    assert_eq!(more[0]["event"], "more");
    let (cases, _) = schema.check_run("case", &daemon.run(root, &["cases", "--all", "--json"]));
    assert_eq!(cases.len(), 3);
    let deleted = &schema
        .check_run("deleted", &daemon.run(root, &["--json", "delete", &code]))
        .0[0];
    assert_eq!(deleted["deleted"], 1);
    // Deleting it again: the document says which codes were not found, then the command
    // fails with their error code.
    let again = daemon.run(root, &["--json", "delete", &code]);
    assert_eq!(again.status.code(), Some(1));
    let stdout: Value = serde_json::from_slice(&again.stdout).expect("a JSON document");
    schema.check("deleted", &stdout);
    assert_eq!(stdout["not_found"], json!([code]));
    let lines = schema.check_stderr(&String::from_utf8_lossy(&again.stderr));
    assert_eq!(lines.last().unwrap()["code"], "unknown_code");

    // Refusals carry the protocol's error kind as a code.
    schema.check_failure(&daemon.run(ana, &["--json", "cases"]), "not_allowed", 1);
    schema.check_failure(
        &daemon.run(None, &["--json", "status", "s000-000-001"]),
        "unknown_code",
        1,
    );
    schema.check_failure(
        &daemon.run(ana, &["--json", "delete", "not-a-code"]),
        "bad_option",
        1,
    );
    let novel = "x".repeat(70_000);
    schema.check_failure(
        &daemon.run(
            ana,
            &[
                "--json",
                "create",
                "--customer",
                "Eve",
                "--description",
                &novel,
            ],
        ),
        "too_large",
        1,
    );

    // Bob leaves with Ctrl-C: the case stays open, and his lines say which.
    bob.interrupt();
    let (status, stderr) = bob.wait();
    assert!(status.success(), "{stderr}");
    let left = schema
        .check_stderr(&stderr)
        .into_iter()
        .find(|e| e["event"] == "left")
        .expect("a left line");
    assert_eq!(left["signal"], "Ctrl-C");
    assert!(left["code"].is_string(), "{left}");
}

#[test]
fn usage_errors_are_json_under_json_and_help_stays_text() {
    let schema = Schema::load();
    // No daemon: a usage error never reaches the network.
    let daemon_less = |args: &[&str]| {
        std::process::Command::new(common::sosq_bin())
            .args(args)
            .env_remove("SOSQ_SERVER")
            .output()
            .expect("run sosq")
    };
    for args in [
        &["--json", "queue", "--bogus"][..],
        &["queue", "--bogus", "--json"],
        &["request", "--json", "--priority", "urgent"],
        &["--json", "escalate", "s123-456-789", "--priority"],
        &["--json", "frobnicate"],
        &["--json"],
        &["--json", "delete", "--older-than", "soon"],
    ] {
        let error = schema.check_failure(&daemon_less(args), "usage", 2);
        let message = error["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.contains('\n') && !message.starts_with("error:"),
            "{args:?}: {message:?}"
        );
    }
    let error = schema.check_failure(
        &daemon_less(&["request", "--json", "--priority", "urgent"]),
        "usage",
        2,
    );
    assert!(
        error["message"].as_str().unwrap().contains("urgent"),
        "{error}"
    );
    // Without --json, clap's own text; --help and --version stay text either way.
    let plain = daemon_less(&["queue", "--bogus"]);
    assert_eq!(plain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plain.stderr).starts_with("error:"));
    for args in [
        &["--json", "--help"][..],
        &["queue", "--help", "--json"],
        &["--version", "--json"],
    ] {
        let out = daemon_less(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.is_empty() && serde_json::from_str::<Value>(&text).is_err(),
            "{args:?}: {text}"
        );
    }
    // A client-side failure before the network has its own code.
    let no_fingerprint = std::process::Command::new(common::sosq_bin())
        .args(["--json", "queue"])
        .env_remove("SOSQ_FINGERPRINT")
        .env_remove("SOSQ_CA")
        .output()
        .expect("run sosq");
    schema.check_failure(&no_fingerprint, "bad_option", 1);
}

#[test]
fn a_forwarded_session_names_its_case_on_every_line() {
    let schema = Schema::load();
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let echo = echo_service().to_string();
    // `queue --watch`: a page per line, the first at once, another on every change.
    let mut watch = daemon.session(Some(ana.as_str()), &["queue", "--watch"]);
    let parse = |line: &str| -> Value { serde_json::from_str(line).expect("a JSON line") };
    let first = watch.stdout_lines_until(|_| true);
    schema.check("queue_page", &parse(&first[0]));
    let mut customer = daemon.session(None, &["request", "--name", "Dee", "--share", &echo]);
    let code = customer.expect_event("attached")["code"].clone();
    let code_text = code.as_str().unwrap().to_string();
    for line in watch.stdout_lines_until(|line| line.contains(&code_text)) {
        schema.check("queue_page", &parse(&line));
    }
    watch.interrupt();
    let (status, stderr) = watch.wait();
    assert!(status.success(), "{stderr}");
    schema.check_stderr(&stderr);
    let mut expert = daemon.session(Some(ana.as_str()), &["pull", "--forward", "127.0.0.1:0"]);
    let local = expert.expect_forwarding();
    expert.expect_event("paired");
    customer.expect_event("paired");
    echo_through(local, b"through the broker");
    assert_eq!(expert.expect_event("forward_closed")["code"], code);
    assert_eq!(customer.expect_event("forward_closed")["code"], code);
    expert.interrupt();
    let (status, stderr) = expert.wait();
    assert!(status.success(), "{stderr}");
    let expert_lines = schema.check_stderr(&stderr);
    assert_eq!(customer.expect_event("peer_left")["code"], code);
    customer.interrupt();
    let (status, stderr) = customer.wait();
    assert!(status.success(), "{stderr}");
    let customer_lines = schema.check_stderr(&stderr);
    // Every line about the case names it (`forwarding` comes before there is one).
    for line in expert_lines.iter().chain(&customer_lines) {
        if line["event"] != "forwarding" {
            assert_eq!(line["code"], code, "{line}");
        }
    }
}

#[test]
fn the_schema_refuses_a_renamed_missing_or_unknown_field() {
    let schema = Schema::load();
    let error = json!({"event": "error", "code": "usage", "message": "unexpected argument"});
    schema.check("stderr_line", &error);
    let renamed = json!({"event": "error", "code": "usage", "msg": "unexpected argument"});
    assert!(!schema.errors("stderr_line", &renamed).is_empty());
    let unknown_code = json!({"event": "error", "code": "oops", "message": "x"});
    assert!(!schema.errors("stderr_line", &unknown_code).is_empty());
    let unknown_event = json!({"event": "surprise", "code": "s123-456-789"});
    assert!(!schema.errors("stderr_line", &unknown_event).is_empty());
    let entry = json!({
        "at": 1, "state": "pending", "kind": "attached", "event": "customer Alice joined",
        "actor": {"role": "customer", "name": "Alice"}, "address": "192.0.2.1:5"
    });
    schema.check("history_entry", &entry);
    for field in ["at", "state", "kind", "event", "actor", "address"] {
        let mut missing = entry.clone();
        missing.as_object_mut().unwrap().remove(field);
        assert!(
            !schema.errors("history_entry", &missing).is_empty(),
            "{field}"
        );
    }
    let mut extra = entry.clone();
    extra["who"] = json!("customer");
    assert!(!schema.errors("history_entry", &extra).is_empty());
    let mut bad_actor = entry;
    bad_actor["actor"] = json!("customer Alice");
    assert!(!schema.errors("history_entry", &bad_actor).is_empty());
}

#[test]
fn a_redirect_and_too_many_of_them_print_schema_lines() {
    use common::fake_node::{case, redirect, reply, Cert, FakeNode, Script};
    use sosq::protocol::{CaseState, Reply, Request};
    use std::sync::{Arc, Mutex};

    let schema = Schema::load();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cert = Cert::self_signed();
    // A node that answers a redeemed request, and one that keeps sending to itself.
    let home: Script = Arc::new(|_: &Request| vec![reply(Reply::Case(case(CaseState::New)))]);
    let home = runtime.block_on(FakeNode::start(&cert, home));
    let looping = Arc::new(Mutex::new(String::new()));
    let here = looping.clone();
    let to = home.address();
    let first: Script = Arc::new(move |request: &Request| match request {
        Request::Close { .. } => vec![redirect("b", &to, "t", request.clone())],
        _ => vec![redirect("a", &here.lock().unwrap(), "t", request.clone())],
    });
    let first = runtime.block_on(FakeNode::start(&cert, first));
    *looping.lock().unwrap() = first.address();
    let sosq = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::sosq_bin());
        cmd.env("SOSQ_SERVER", first.address())
            .env("SOSQ_FINGERPRINT", cert.fingerprint())
            .env("SOSQ_TOKEN", "tok")
            .env_remove("SOSQ_SECRET")
            .arg("--json")
            .args(args);
        common::run_with_patience(cmd)
    };

    let (closed, lines) = schema.check_run("case", &sosq(&["close", "s123-456-789"]));
    assert_eq!(closed[0]["code"], "s123-456-789");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "redirected");
    assert_eq!(lines[0]["node"], "b");
    let out = sosq(&[
        "escalate",
        "s123-456-789",
        "--priority",
        "high",
        "--reason",
        "x",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = schema.check_stderr(&stderr);
    assert_eq!(
        lines.len(),
        4,
        "three redirects followed, then the error: {stderr}"
    );
    assert_eq!(lines[3]["code"], "too_many_redirects", "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}
