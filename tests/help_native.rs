//! A browser customer's two ways beyond the chat, at the protocol level against a real
//! daemon: files attached from the page (the same checks as `sosq attach`), and the
//! expert's invitation to run the native client, whose command (run as the page shows it,
//! by a shell) joins the same case and takes the customer's seat over from the page.

mod common;

use std::process::{Command, Stdio};

use base64::Engine;
use common::chat_socket::ChatSocket;
use common::web::Console;
use common::{echo_service, echo_through, sosq_bin, Daemon, Session};
use serde_json::{json, Value};

/// The case a page was attached to: (code, secret).
fn case_of(attached: &Value) -> (String, String) {
    (
        attached["code"].as_str().expect("code").to_string(),
        attached["secret"].as_str().expect("secret").to_string(),
    )
}

/// Sends `bytes` as the page does (start, 24 KiB base64 parts, each answered, finish);
/// returns the page's last answer: `uploaded` or `upload_failed`.
async fn attach(page: &mut ChatSocket, name: &str, bytes: &[u8]) -> Value {
    page.send(json!({"type": "attach_start", "name": name, "size": bytes.len()}))
        .await;
    let started = next_upload_answer(page).await;
    if started["type"] != "upload" {
        return started;
    }
    for part in bytes.chunks(24 * 1024) {
        let data = base64::engine::general_purpose::STANDARD.encode(part);
        page.send(json!({"type": "attach_part", "data": data}))
            .await;
        let answer = next_upload_answer(page).await;
        if answer["type"] != "upload" {
            return answer;
        }
    }
    page.send(json!({"type": "attach_finish"})).await;
    next_upload_answer(page).await
}

async fn next_upload_answer(page: &mut ChatSocket) -> Value {
    loop {
        let message = page.next().await.expect("the page's socket is open");
        if ["upload", "uploaded", "upload_failed"].contains(&message["type"].as_str().unwrap()) {
            return message;
        }
    }
}

#[tokio::test]
async fn a_waiting_browser_customer_attaches_a_screenshot_and_staff_download_it() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let mut page = ChatSocket::ask(&daemon, "Alice", "an error box").await;
    let (code, _) = case_of(&page.expect("attached").await);

    // A PNG of several parts arrives whole.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(common::payload(100_000, 7));
    let uploaded = attach(&mut page, "C:\\Users\\alice\\error <1>.png", &png).await;
    assert_eq!(uploaded["type"], "uploaded", "{uploaded}");
    assert!(
        uploaded["text"].as_str().unwrap().contains("100,008 bytes"),
        "{uploaded}"
    );
    let listed = daemon.json(Some(&expert), &["attachments", &code]);
    let first = &listed["attachments"][0];
    assert_eq!(first["content_type"], "image/png", "{listed}");
    assert_eq!(first["size"], png.len(), "{listed}");
    let files = tempfile::tempdir().unwrap();
    let out = files.path().join("got.png");
    let got = daemon.run(
        Some(&expert),
        &[
            "attachments",
            &code,
            "--get",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), png, "the same bytes");

    // A program is not a screenshot: refused by its bytes, whatever its name says.
    let refused = attach(&mut page, "screenshot.png", b"MZ\x90\x00\x03\x00\x00\x00").await;
    assert_eq!(refused["type"], "upload_failed", "{refused}");
    assert!(
        refused["text"].as_str().unwrap().contains("PNG, JPEG"),
        "{refused}"
    );
    // Over the size cap (4 MiB by default): refused before a byte is sent.
    page.send(json!({"type": "attach_start", "name": "big.png", "size": 5 * 1024 * 1024}))
        .await;
    let too_big = next_upload_answer(&mut page).await;
    assert_eq!(too_big["type"], "upload_failed", "{too_big}");
    // Garbled base64 ends the upload with words, and the page goes on.
    page.send(json!({"type": "attach_start", "name": "a.txt", "size": 3}))
        .await;
    assert_eq!(next_upload_answer(&mut page).await["type"], "upload");
    page.send(json!({"type": "attach_part", "data": "*not base64*"}))
        .await;
    let garbled = next_upload_answer(&mut page).await;
    assert_eq!(garbled["type"], "upload_failed", "{garbled}");
    page.say("still waiting").await;
    assert_eq!(page.expect("line").await["text"], "still waiting");

    let history = daemon.run(Some(&expert), &["history", &code]);
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("attached"), "{history}");
}

#[tokio::test]
async fn the_expert_invites_a_browser_customer_to_the_native_client_which_takes_over_the_case() {
    let daemon = Daemon::start(&[]);
    let ana = daemon.add_user("ana", "expert");
    // A name a shell would make something of, to show the command quotes it.
    let name = "Ann O'Brien; echo pwned";
    let mut page = ChatSocket::ask(&daemon, name, "my screen must be seen").await;
    let (code, secret) = case_of(&page.expect("attached").await);

    // Only the expert in a session may ask.
    let early = daemon.run(Some(&ana), &["invite-native", &code]);
    assert!(!early.status.success());
    let early = String::from_utf8_lossy(&early.stderr);
    assert!(early.contains("not the expert in a session"), "{early}");

    let mut expert = daemon.session(Some(&ana), &["connect", &code, "--forward", "127.0.0.1:0"]);
    let forward = expert.expect_forwarding();
    expert.expect_event("paired");
    assert_eq!(page.expect("paired").await["name"], "ana");

    let echo = echo_service();
    let asked = daemon.run(
        Some(&ana),
        &["invite-native", &code, "--share", &echo.to_string()],
    );
    assert!(
        asked.status.success(),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    let invite = page.expect("invite").await;
    assert_eq!(invite["expert"], "ana");
    assert_eq!(invite["share"], echo.to_string());
    let unix = invite["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["system"] == "unix")
        .expect("a command for Linux and macOS")["command"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(unix.contains(&code) && unix.contains(&secret), "{unix}");

    // The customer downloads the profile into ~/Downloads and runs the command as shown,
    // in a shell, with nothing else telling sosq where the daemon is.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("Downloads")).unwrap();
    let profile = Console::new(&daemon)
        .get("/help/support.sosq")
        .await
        .text()
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&profile)
        .unwrap_or_else(|e| panic!("the profile is not JSON ({e}): {profile}"));
    assert!(
        parsed["server"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{profile}"
    );
    std::fs::write(home.path().join("Downloads/support.sosq"), &profile).unwrap();
    let bin_dir = sosq_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("{unix} --json"))
        .env("HOME", home.path())
        .env("PATH", path)
        .env_remove("SOSQ_SERVER")
        .env_remove("SOSQ_FINGERPRINT")
        .env_remove("SOSQ_TOKEN")
        .env_remove("SOSQ_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut native = Session::from_command(shell);
    let paired = native.expect_event("paired");
    assert_eq!(paired["peer_name"], "ana", "{paired}");

    // The page lets go rather than taking the seat back.
    let elsewhere = page.expect("elsewhere").await;
    assert!(
        elsewhere["text"].as_str().unwrap().contains("sosq program"),
        "{elsewhere}"
    );
    // The expert reaches the shared service through its forward, on the same case.
    expert.expect_event("paired");
    echo_through(forward, b"the customer's screen");

    let status = daemon.json(Some(&ana), &["status", &code]);
    assert_eq!(
        status["customer"], name,
        "the name came through the shell whole"
    );
    let history = daemon.json(Some(&ana), &["history", &code]);
    let kinds: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"native_invite"), "{history}");
    assert!(kinds.contains(&"replaced"), "{history}");
}
