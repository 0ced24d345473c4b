//! End to end: staff notes. An expert notes a waiting case, an admin reads the note in the
//! history (and notes the case again once closed), the customer's own view never shows a
//! note, and a customer cannot write one.

mod common;

use common::Daemon;

#[test]
fn staff_note_cases_and_read_them_and_the_customer_never_sees_them() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().expect("a code").to_string();
    let secret = attached["resume_secret"]
        .as_str()
        .expect("a resume secret")
        .to_string();

    let noted = daemon.run(Some(&ana), &["note", &code, "asked for the invoice number"]);
    assert!(noted.status.success(), "{noted:?}");
    assert_eq!(
        String::from_utf8_lossy(&noted.stdout).trim(),
        format!("note added to case {code}")
    );

    // The admin reads it in the history, with its author.
    let history = daemon.json(Some(&root), &["history", &code]);
    let notes: Vec<&serde_json::Value> = history["history"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["kind"] == "note")
        .collect();
    assert_eq!(notes.len(), 1, "{history}");
    assert_eq!(notes[0]["event"], "asked for the invoice number");
    assert_eq!(notes[0]["actor"]["name"], "ana");
    assert_eq!(notes[0]["actor"]["role"], "expert");

    // People read it as a note, with its author.
    let table = daemon.run(Some(&root), &["history", &code]);
    let table = String::from_utf8_lossy(&table.stdout);
    let line = table
        .lines()
        .find(|line| line.contains("invoice number"))
        .unwrap_or_else(|| panic!("no note in:\n{table}"));
    assert!(
        line.contains("expert ana") && line.contains("note: asked"),
        "{line}"
    );
    let details = daemon.run(Some(&ana), &["status", &code]);
    let details = String::from_utf8_lossy(&details.stdout);
    assert!(
        details.contains("note by expert ana: asked for the invoice number"),
        "{details}"
    );

    // The customer's own view of its case, from another connection with its secret: the
    // case, no history, no note.
    let status = daemon.run(None, &["--json", "status", &code, "--secret", &secret]);
    assert!(status.status.success(), "{status:?}");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&code), "{text}");
    assert!(!text.contains("invoice number"), "{text}");
    // A customer cannot read the history, nor write a note, even on its own case.
    for args in [
        vec!["--json", "history", code.as_str()],
        vec!["--json", "note", code.as_str(), "I am staff"],
    ] {
        let refused = daemon.run(None, &args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}: {refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("not_allowed"), "{args:?}: {stderr}");
    }
    let refused = daemon.run(None, &["note", &code, "I am staff"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("adding a staff note is for experts and admins"),
        "{stderr}"
    );

    // Closed, the case still takes notes (from the store), in order after the close.
    let closed = daemon.run(Some(&ana), &["close", &code]);
    assert!(closed.status.success(), "{closed:?}");
    drop(customer);
    let noted = daemon.run(Some(&root), &["note", &code, "refund sent"]);
    assert!(noted.status.success(), "{noted:?}");
    let history = daemon.json(Some(&ana), &["history", &code]);
    let kinds: Vec<&str> = history["history"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap_or_default())
        .collect();
    let closed_at = kinds
        .iter()
        .position(|kind| *kind == "closed")
        .expect("closed");
    assert_eq!(kinds.last(), Some(&"note"), "{kinds:?}");
    assert!(closed_at < kinds.len() - 1, "{kinds:?}");
    let last = &history["history"][kinds.len() - 1];
    assert_eq!(last["event"], "refund sent");
    assert_eq!(last["actor"]["name"], "root");

    // Limits as for other free text, with the reason.
    let long = "x".repeat(2_001);
    let refused = daemon.run(Some(&ana), &["note", &code, &long]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("longer than 2000 characters"),
        "{refused:?}"
    );
    let refused = daemon.run(Some(&ana), &["note", "s000-000-000", "x"]);
    assert_eq!(refused.status.code(), Some(1));
}
