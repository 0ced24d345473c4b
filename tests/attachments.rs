//! End to end: customers' messages and attachments. A waiting customer adds a message and
//! attaches files with `sosq message` and `sosq attach`; staff see the latest message,
//! list the files and download them byte for byte (`sosq attachments`, and the console's
//! download, sent as a download and to signed-in staff only); a customer cannot read
//! them; too large, wrong-typed and one-too-many files and too many messages are refused
//! in words; the history says it all; the files survive a restart and go with their case.

mod common;

use std::path::Path;

use common::web::Console;
use common::Daemon;
use serde_json::Value;
use sosq::protocol::{ErrorKind, Reply, Request};
use sosq::Client;

/// A PNG of `len` bytes: the signature, then bytes that differ from one offset to the
/// next (so a part put in the wrong place shows).
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((8..len).map(|i| (i * 31 + i / 253) as u8));
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

/// The stderr of a command that must fail with exit 1, checking its `--json` error code.
fn refused(out: &std::process::Output, code: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line: Value = serde_json::from_str(stderr.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("a JSON error line: {stderr}"));
    assert_eq!(line["code"], code, "{stderr}");
    line["message"].as_str().unwrap_or_default().to_string()
}

const CONFIG: &str = "max_attachment_bytes = 200000\n\
                      max_attachments_per_case = 2\n\
                      customer_messages_per_minute = 3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_adds_words_and_files_and_staff_read_them_whole() {
    let (_config_dir, config) = common::config_file(CONFIG);
    let daemon = Daemon::start(&["--config", &config]);
    let ana = daemon.add_user("ana", "expert");
    let root = daemon.add_user("root", "admin");
    let files = tempfile::tempdir().unwrap();
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();

    // A message, from another connection with the secret; staff see it as the latest.
    let said = daemon.run(
        None,
        &["message", &code, "it also beeps", "--secret", &secret],
    );
    assert!(said.status.success(), "{said:?}");
    assert_eq!(
        String::from_utf8_lossy(&said.stdout).trim(),
        format!("message added to case {code}")
    );
    let status = daemon.json(Some(&ana), &["status", &code]);
    assert_eq!(status["last_message"], "it also beeps");
    assert_eq!(status["attachments"], 0);
    let queue = daemon.json(Some(&ana), &["queue"]);
    assert_eq!(queue["entries"][0]["last_message"], "it also beeps");
    let details = daemon.run(Some(&ana), &["status", &code]);
    assert!(
        String::from_utf8_lossy(&details.stdout).contains("latest message: it also beeps"),
        "{details:?}"
    );

    // A 100,000-byte screenshot: in parts of 32 KiB, kept, counted, in the history.
    let shot = png(100_000);
    let path = write(files.path(), "error.png", &shot);
    let sent = daemon.run(None, &["attach", &code, &path, "--secret", &secret]);
    assert!(sent.status.success(), "{sent:?}");
    assert_eq!(
        String::from_utf8_lossy(&sent.stdout).trim(),
        format!("attached error.png to case {code} (100,000 bytes, image/png)")
    );
    let list = daemon.json(Some(&ana), &["attachments", &code]);
    assert_eq!(list["code"], code.as_str());
    let items = list["attachments"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["name"], "error.png");
    assert_eq!(items[0]["content_type"], "image/png");
    assert_eq!(items[0]["size"], 100_000);

    // Staff download it byte for byte; an existing file is kept unless --force.
    let out = files.path().join("got.png");
    let out_arg = out.to_string_lossy().into_owned();
    let got = daemon.json(
        Some(&root),
        &["attachments", &code, "--get", "1", "--out", &out_arg],
    );
    assert_eq!(got["size"], 100_000);
    assert_eq!(std::fs::read(&out).unwrap(), shot);
    let again = daemon.run(
        Some(&ana),
        &[
            "--json",
            "attachments",
            &code,
            "--get",
            "1",
            "--out",
            &out_arg,
        ],
    );
    assert!(refused(&again, "bad_option").contains("--force"));
    std::fs::write(&out, b"old").unwrap();
    let forced = daemon.run(
        Some(&ana),
        &[
            "attachments",
            &code,
            "--get",
            "1",
            "--out",
            &out_arg,
            "--force",
        ],
    );
    assert!(forced.status.success(), "{forced:?}");
    assert_eq!(std::fs::read(&out).unwrap(), shot);
    let leftovers: Vec<_> = std::fs::read_dir(files.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "no partial file is left");

    // A customer cannot list nor read them, not even its own case's.
    let listing = daemon.run(None, &["--json", "attachments", &code]);
    assert!(refused(&listing, "not_allowed")
        .contains("listing a case's attachments is for experts and admins"),);
    let mut own = Client::connect(&daemon.options(None)).await.unwrap();
    let fetch = own
        .request(Request::Attachment {
            code: code.clone(),
            id: 1,
            offset: 0,
        })
        .await;
    match fetch {
        Err(sosq::ClientError::Refused(e)) => assert_eq!(e.kind, ErrorKind::Forbidden),
        Ok(Reply::Error(e)) => assert_eq!(e.kind, ErrorKind::Forbidden),
        other => panic!("a customer read an attachment: {other:?}"),
    }

    // Too large, the wrong type (refused at its first part), then a second file and the
    // cap.
    let big = write(files.path(), "big.png", &png(200_001));
    let too_big = daemon.run(
        None,
        &["--json", "attach", &code, &big, "--secret", &secret],
    );
    assert_eq!(
        refused(&too_big, "invalid_input"),
        "the file is 200,001 bytes; an attachment may have at most 200,000 bytes"
    );
    let program = write(
        files.path(),
        "setup.exe",
        b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff",
    );
    let wrong = daemon.run(
        None,
        &["--json", "attach", &code, &program, "--secret", &secret],
    );
    let why = refused(&wrong, "invalid_input");
    assert!(
        why.contains("not accepted")
            && why.contains("PNG, JPEG, GIF or WebP images, PDF documents and plain UTF-8 text"),
        "{why}"
    );
    let log = write(
        files.path(),
        "printer.log",
        "Fehler 42: Papierstau\n".as_bytes(),
    );
    let second = daemon.json(None, &["attach", &code, &log, "--secret", &secret]);
    assert_eq!(second["id"], 2);
    assert_eq!(second["content_type"], "text/plain; charset=utf-8");
    let third = daemon.run(
        None,
        &["--json", "attach", &code, &log, "--secret", &secret],
    );
    assert!(
        refused(&third, "invalid_input").contains("has 2 attachments already"),
        "one too many"
    );

    // Messages per minute: 3 at once (one was sent), then the case waits.
    for text in ["and it smells", "hello?"] {
        let ok = daemon.run(None, &["message", &code, text, "--secret", &secret]);
        assert!(ok.status.success(), "{ok:?}");
    }
    let fourth = daemon.run(
        None,
        &["--json", "message", &code, "please", "--secret", &secret],
    );
    let why = refused(&fourth, "throttled");
    assert!(why.contains("at most 3 messages a minute"), "{why}");
    let stranger = daemon.run(
        None,
        &["--json", "message", &code, "hi", "--secret", "wrong"],
    );
    refused(&stranger, "not_allowed");

    // The history says it all, for staff.
    let history = daemon.json(Some(&ana), &["history", &code]);
    let events: Vec<(String, String)> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for wanted in [
        ("message", "customer message: it also beeps"),
        (
            "attachment",
            "customer attached error.png (100,000 bytes, image/png)",
        ),
        (
            "attachment",
            "customer attached printer.log (22 bytes, text/plain)",
        ),
        ("message", "customer message: hello?"),
    ] {
        assert!(
            events.iter().any(|(k, e)| k == wanted.0 && e == wanted.1),
            "{wanted:?} in {events:?}"
        );
    }

    // A restart keeps them, byte for byte.
    drop(customer);
    let mut daemon = daemon;
    daemon.terminate();
    let dir = daemon.kill9();
    let store_file = dir.path().join("cases.sqlite3");
    let daemon = Daemon::start_in(dir, &["--config", &config]);
    let list = daemon.json(Some(&ana), &["attachments", &code]);
    assert_eq!(list["attachments"].as_array().unwrap().len(), 2, "{list}");
    let after = files.path().join("after.png");
    daemon.json(
        Some(&ana),
        &[
            "attachments",
            &code,
            "--get",
            "1",
            "--out",
            &after.to_string_lossy(),
        ],
    );
    assert_eq!(std::fs::read(&after).unwrap(), shot);
    assert_eq!(
        daemon.json(Some(&ana), &["status", &code])["attachments"],
        2
    );

    // Deleting the case deletes its files.
    let deleted = daemon.json(Some(&root), &["delete", &code]);
    assert_eq!(deleted["deleted"], 1);
    let gone = daemon.run(Some(&ana), &["--json", "attachments", &code]);
    refused(&gone, "unknown_code");
    let store = rusqlite::Connection::open_with_flags(
        &store_file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: i64 = store
        .query_row("SELECT count(*) FROM attachments", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0, "no attachment outlives its case");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sends_an_attachment_as_a_download_to_signed_in_staff_only() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    let files = tempfile::tempdir().unwrap();
    let mut customer = daemon.session(None, &["request", "--name", "Alice"]);
    let attached = customer.expect_event("attached");
    let code = attached["code"].as_str().unwrap().to_string();
    let secret = attached["resume_secret"].as_str().unwrap().to_string();
    let said = daemon.run(
        None,
        &["message", &code, "it also beeps", "--secret", &secret],
    );
    assert!(said.status.success(), "{said:?}");
    // Text that a browser would render as a page if it were shown inline.
    let page = "<html><script>alert(1)</script></html>\n";
    let path = write(files.path(), "Fehler \"groß\".txt", page.as_bytes());
    let sent = daemon.run(None, &["attach", &code, &path, "--secret", &secret]);
    assert!(sent.status.success(), "{sent:?}");

    let download = format!("/cases/{code}/attachments/1");
    let stranger = Console::new(&daemon);
    let response = stranger.get(&download).await;
    assert_eq!(response.status(), 303, "no session: to sign-in, no bytes");

    let console = Console::new(&daemon);
    console.sign_in(&ana).await;
    let queue = console.page("/queue").await;
    assert!(queue.contains("it also beeps"), "{queue}");
    assert!(queue.contains("1 file attached"), "{queue}");
    let case = console.page(&format!("/cases/{code}")).await;
    assert!(case.contains(&download), "{case}");
    assert!(case.contains("Latest message"), "{case}");

    let response = console.get(&download).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"Fehler _gro__.txt\"; filename*=UTF-8''Fehler%20%22gro%C3%9F%22.txt"
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), page.as_bytes());
    let missing = console.get(&format!("/cases/{code}/attachments/9")).await;
    assert_eq!(missing.status(), 404);
    drop(customer);
}
