//! Lists in pages and the bounds that keep every message within one frame, end to end: a
//! real `sosqd` and real `sosq` processes (library clients where a test needs hundreds of
//! parties or a raw stream).
//!
//! - A million stored cases: `sosq cases` shows the first page and how to get the next,
//!   `--after` continues exactly after it, `--limit 1000` holds at most 1000, a page deep
//!   into the million is served, and `--all` prints every case once in creation order.
//! - A customer coming back 300 times leaves a history of 256 entries, the last folding the
//!   rest, the same after a `kill -9` and a restart; staff still see and pull the case.
//! - A frame dripped a byte a second is cut at the frame deadline with a reason, while
//!   others are served.
//! - 120 waiting customers page through `sosq queue` in order, positions 1 to 120.
//! - 100,000 waiting customers (offline since a restart) page through `sosq queue` in
//!   line, each once; `pull` refuses with how many wait offline.
//!
//! Timeouts only stop a broken test from hanging; no test asserts how long anything took.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{config_file, Daemon, PATIENCE};
use serde_json::Value;
use sosq::codec::{self, FRAME_DEADLINE, MAX_FRAME_LEN};
use sosq::protocol::{
    close_code, CaseState, CasesCursor, ClientMessage, ErrorKind, Event, QueueCursor, Reply,
    Request, ServerMessage, Timestamp, PROTOCOL_VERSION,
};
use sosq::{Client, ClientError, SessionCode, SharedEndpoint};
use sosqd::broker::{FOLD_MARK, MAX_HISTORY_ENTRIES};
use sosqd::loadgen::{self, Fleet};

/// Cases in the big store.
const SEEDED: u64 = 1_000_000;
/// Every this many seeded cases one is expired (the others are closed): a subset spread over
/// the whole store for `--state`.
const EXPIRED_EVERY: u64 = 101;
/// Guard for the commands that walk the whole million (never a performance assertion).
const LONG_PATIENCE: Duration = Duration::from_secs(20 * 60);

/// Seeded case `n`: its code (as `loadgen::seed_finished_cases` makes it), creation time and
/// state. Creation times are a permutation of the cases, four to a millisecond, so creation
/// order is neither code order nor seeding order, and ties are broken by code.
fn seeded(base: u64, n: u64) -> (Timestamp, SessionCode, CaseState) {
    let created = Timestamp(base + n * 7_919 % SEEDED / 4);
    let code = SessionCode::from_number(n * 997).expect("a code");
    let state = if n.is_multiple_of(EXPIRED_EVERY) {
        CaseState::Expired
    } else {
        CaseState::Closed
    };
    (created, code, state)
}

/// The token in `more: sosq cases --after TOKEN (or --all for every page)`.
fn more_token(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|line| line.starts_with("more: "))?;
    let (_, rest) = line.split_once("--after ")?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// The `next` token of a `{"event":"more"}` line of `sosq --json`.
fn json_more(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr).lines().find_map(|line| {
        let value: Value = serde_json::from_str(line).ok()?;
        (value["event"] == "more").then(|| value["next"].as_str().map(str::to_string))?
    })
}

/// The token of the page after a `sosq --json` page: its `next` cursor as `--after` takes it.
fn next_token<T: serde::de::DeserializeOwned + std::fmt::Display>(page: &Value) -> Option<String> {
    let next: Option<T> = serde_json::from_value(page["next"].clone()).expect("a cursor");
    next.map(|cursor| cursor.to_string())
}

/// The codes of a `sosq --json cases` page.
fn page_codes(page: &Value) -> Vec<String> {
    page["cases"]
        .as_array()
        .expect("a page of cases")
        .iter()
        .map(|case| case["code"].as_str().expect("a code").to_string())
        .collect()
}

/// Runs `cmd`, handing each stdout line to `line` as it comes, killing it if it outlives
/// [`LONG_PATIENCE`]; returns its exit status and stderr.
fn each_line(mut cmd: Command, mut line: impl FnMut(&str)) -> (ExitStatus, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sosq");
    let pid = child.id().to_string();
    let (finished, watched) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        // Not told in time (or the reader panicked): the command is stuck.
        if watched.recv_timeout(LONG_PATIENCE).is_err() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    for text in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        line(&text.expect("a line of output"));
    }
    let status = child.wait().expect("wait for sosq");
    let _ = finished.send(());
    let _ = watchdog.join();
    (status, errors.join().expect("stderr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_cases_page_in_creation_order() {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let base = Timestamp::now().0 - 2 * 3_600_000;
    loadgen::seed_finished_cases(dir.path(), SEEDED, |n| {
        let (created, _, state) = seeded(base, n);
        (created, state)
    })
    .await
    .expect("seed a million cases");
    let mut order: Vec<(Timestamp, SessionCode, CaseState)> =
        (0..SEEDED).map(|n| seeded(base, n)).collect();
    order.sort_unstable_by_key(|&(created, code, _)| (created, code));
    let expected: Vec<String> = order.iter().map(|(_, code, _)| code.to_string()).collect();

    let daemon = Daemon::start_in(dir, &[]);
    let admin = daemon.add_user("root", "admin");
    let token = Some(admin.as_str());

    // The first page, as a person sees it: 100 rows under a header, and how to go on.
    let first = daemon.run(token, &["cases"]);
    assert!(first.status.success(), "{first:?}");
    let stdout = String::from_utf8(first.stdout).expect("utf-8");
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 100, "{stdout}");
    let shown: Vec<&str> = rows.iter().map(|row| &row[..12]).collect();
    assert_eq!(shown, expected[..100]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("more: sosq cases --after ")
            && stderr.contains("(or --all for every page)"),
        "{stderr}"
    );
    let token_1 = more_token(&stderr).expect("a token");

    // The next page continues exactly after it.
    let second = daemon.run(token, &["cases", "--after", &token_1]);
    assert!(second.status.success(), "{second:?}");
    let stdout = String::from_utf8(second.stdout).expect("utf-8");
    let shown: Vec<&str> = stdout.lines().skip(1).map(|row| &row[..12]).collect();
    assert_eq!(shown, expected[100..200]);
    let token_2 = more_token(&String::from_utf8_lossy(&second.stderr)).expect("a token");

    // `--limit 1000`: at most 1000, fewer when they would pass the page's byte budget.
    let wide = daemon.run(
        token,
        &["--json", "cases", "--limit", "1000", "--after", &token_2],
    );
    assert!(wide.status.success(), "{wide:?}");
    let page: Value = serde_json::from_slice(&wide.stdout).expect("JSON");
    let codes = page_codes(&page);
    // A seeded case takes about 110 bytes, so the byte budget ends this page first.
    assert!(!codes.is_empty() && codes.len() < 1000, "{}", codes.len());
    assert_eq!(codes, expected[200..200 + codes.len()]);
    assert_eq!(next_token::<CasesCursor>(&page), json_more(&wide.stderr));

    // Deep into the million: a cursor 150 cases before the end.
    let (created, code, _) = order[order.len() - 151];
    let deep = CasesCursor {
        created_at: created,
        code,
    }
    .to_string();
    let near_end = daemon.json(token, &["cases", "--after", &deep]);
    let tail = &expected[expected.len() - 150..];
    assert_eq!(page_codes(&near_end), tail[..100]);
    let last_token = next_token::<CasesCursor>(&near_end).expect("one more page");
    let last = daemon.run(token, &["--json", "cases", "--after", &last_token]);
    assert!(last.status.success(), "{last:?}");
    let page: Value = serde_json::from_slice(&last.stdout).expect("JSON");
    assert_eq!(page_codes(&page), tail[100..]);
    assert_eq!(
        (page["next"].clone(), json_more(&last.stderr)),
        (Value::Null, None)
    );

    // `--all --state expired`: the subset spread over the whole store, each once, in order.
    let expired: Vec<&String> = order
        .iter()
        .zip(&expected)
        .filter(|((_, _, state), _)| *state == CaseState::Expired)
        .map(|(_, code)| code)
        .collect();
    let mut listed = Vec::new();
    let mut cmd = daemon.sosq(token);
    cmd.args(["--json", "cases", "--all", "--state", "expired"]);
    let (status, stderr) = each_line(cmd, |line| {
        let case: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(case["state"], "expired", "{line}");
        listed.push(case["code"].as_str().expect("a code").to_string());
    });
    assert!(status.success(), "{stderr}");
    assert_eq!(listed.len(), expired.len());
    assert!(listed.iter().zip(&expired).all(|(got, want)| got == *want));

    // `--all` over the whole million, a JSON line per case, each once, in creation order
    // (pages of up to 1000 for fewer round trips).
    let mut seen = 0;
    let mut cmd = daemon.sosq(token);
    cmd.args(["--json", "cases", "--all", "--limit", "1000"]);
    let (status, stderr) = each_line(cmd, |line| {
        let case: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(
            case["code"].as_str(),
            expected.get(seen).map(String::as_str)
        );
        seen += 1;
    });
    assert!(status.success(), "{stderr}");
    assert_eq!(seen, expected.len());
}

/// Connects a customer on `endpoint` and comes back to `code` with `secret`.
async fn come_back(endpoint: &SharedEndpoint, code: &str, secret: &str) -> Client {
    let mut client = Client::connect_on(endpoint, None).await.expect("connect");
    let reply = client
        .request(Request::Join {
            code: code.to_string(),
            customer: "Alice".into(),
            resume_secret: Some(secret.to_string()),
        })
        .await;
    assert!(matches!(reply, Ok(Reply::Attached { .. })), "{reply:?}");
    client
}

/// How many events the history of `code` holds: its entries, each folded event counted
/// (read from the last entry a history can have).
async fn events_recorded(staff: &mut Client, code: &str) -> usize {
    let last = Request::History {
        code: code.to_string(),
        from: MAX_HISTORY_ENTRIES as u32 - 1,
        limit: 1,
    };
    let Ok(Reply::History(page)) = staff.request(last).await else {
        panic!("no history of {code}");
    };
    match page.entries.first() {
        None => page.total as usize,
        Some(last) => MAX_HISTORY_ENTRIES - 1 + folded(&last.event).unwrap_or(1),
    }
}

/// The events a folding history entry holds ("347 events folded into this last entry …").
fn folded(event: &str) -> Option<usize> {
    let (count, _) = event.split_once(&format!(" {FOLD_MARK}"))?;
    count.parse().ok()
}

/// Waits until the history of `code` holds more than `events` events; returns how many.
async fn more_events_than(staff: &mut Client, code: &str, events: usize) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = events_recorded(staff, code).await;
        if now > events {
            return now;
        }
        assert!(Instant::now() < deadline, "no new event after {events}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next event a library client is pushed.
async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Event {
    let event = tokio::time::timeout(PATIENCE, events.recv()).await;
    event.expect("an event in time").expect("still connected")
}

/// The history entries of `code` as `sosq --json history` prints them.
fn history(daemon: &Daemon, token: &str, code: &str) -> Vec<Value> {
    let out = daemon.json(Some(token), &["history", code]);
    out["history"].as_array().expect("a history").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_coming_back_300_times_leaves_a_bounded_history() {
    let daemon = Daemon::start(&[]);
    let expert = daemon.add_user("ana", "expert");
    let options = daemon.options(None);
    let endpoint = SharedEndpoint::open(&options, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("endpoint");
    let mut customer = Client::connect_on(&endpoint, None).await.expect("connect");
    let reply = customer
        .request(Request::OpenSos {
            customer: "Alice".into(),
            description: "printer on fire".into(),
            priority: Default::default(),
            group: None,
        })
        .await
        .expect("an answer");
    let Reply::Attached {
        case,
        resume_secret: Some(secret),
        ..
    } = reply
    else {
        panic!("no case: {reply:?}");
    };
    let code = case.code.to_string();

    // Each time, the connection closes, its departure is recorded (waited for, so the
    // return finds the seat free), and the return is recorded: one event each, also once
    // the history is full and they fold into its last entry. The last connection stays.
    let mut staff = Client::connect(&daemon.options(Some(&expert)))
        .await
        .expect("staff connects");
    let mut events = events_recorded(&mut staff, &code).await;
    for _ in 0..300 {
        customer.close().await;
        let departed = more_events_than(&mut staff, &code, events).await;
        assert_eq!(departed, events + 1, "a departure is one event");
        customer = come_back(&endpoint, &code, &secret).await;
        events = events_recorded(&mut staff, &code).await;
        assert_eq!(events, departed + 1, "a return is one event");
    }
    assert!(events > MAX_HISTORY_ENTRIES + 300, "{events} events");

    let entries = history(&daemon, &expert, &code);
    assert_eq!(entries.len(), MAX_HISTORY_ENTRIES);
    let last = entries[MAX_HISTORY_ENTRIES - 1]["event"]
        .as_str()
        .expect("an event");
    assert_eq!(
        folded(last),
        Some(events - (MAX_HISTORY_ENTRIES - 1)),
        "{last}"
    );
    assert!(last.ends_with("came back"), "{last}");
    let status = daemon.json(Some(&expert), &["status", &code]);
    assert_eq!(status["state"], "pending");
    assert_eq!(status["history"].as_array().map(Vec::len), Some(256));

    // The queue path takes the big case like any other: an expert pulls and is paired.
    let mut events_in = customer.take_events().expect("events");
    let mut pulling = daemon.session(Some(&expert), &["pull"]);
    pulling.expect_event("paired");
    let paired = loop {
        if let Event::Paired { code, .. } = next_event(&mut events_in).await {
            break code;
        }
    };
    assert_eq!(paired, case.code);
    pulling.interrupt();
    pulling.wait();
    loop {
        if let Event::PeerLeft { .. } = next_event(&mut events_in).await {
            break;
        }
    }

    // The expert's departure is in the history now (the customer heard of it in the same
    // step); an acknowledged command after it makes sure the store has it too, since the
    // store commits in order. Then kill -9, and the stored copy is what the daemon showed.
    let live = history(&daemon, &expert, &code);
    assert_eq!(live.len(), MAX_HISTORY_ENTRIES);
    let last = live[MAX_HISTORY_ENTRIES - 1]["event"]
        .as_str()
        .unwrap_or("");
    let after_pairing = folded(last).unwrap_or_else(|| panic!("not a folding entry: {last}"));
    assert!(
        after_pairing > events - (MAX_HISTORY_ENTRIES - 1),
        "the pairing and the departure fold in too: {last}"
    );
    let barrier = daemon.run(Some(&expert), &["create", "--customer", "Bob"]);
    assert!(barrier.status.success(), "{barrier:?}");
    let dir = daemon.kill9();
    let daemon = Daemon::start_in(dir, &[]);
    let stored = history(&daemon, &expert, &code);
    assert_eq!(stored.len(), MAX_HISTORY_ENTRIES);
    assert_eq!(
        stored.last(),
        live.last(),
        "the folding entry as it was last rewritten"
    );
    assert!(
        stored == live,
        "the stored history differs from the live one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_dripped_a_byte_a_second_is_cut_at_the_deadline() {
    let daemon = Daemon::start(&[]);
    let (_, mut expert) = daemon.staff_client("ana", "expert").await;

    let (_endpoint, connection) = sosq::client::connect_quic(&daemon.options(None))
        .await
        .expect("connect");
    let (mut send, mut recv) = connection.open_bi().await.expect("control stream");
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        token: None,
    };
    send.write_all(&codec::encode(&hello).expect("hello"))
        .await
        .expect("send hello");
    let welcome: Option<ServerMessage> = codec::read_frame(&mut recv).await.expect("welcome");
    assert!(
        matches!(welcome, Some(ServerMessage::Reply(Reply::Welcome { .. }))),
        "{welcome:?}"
    );
    // A frame announcing 64 KiB, then a byte a second, while the expert keeps asking.
    send.write_all(&(MAX_FRAME_LEN as u32).to_be_bytes())
        .await
        .expect("send a length");
    let answer =
        tokio::spawn(async move { codec::read_frame::<ServerMessage, _>(&mut recv).await });
    let guard = Instant::now() + FRAME_DEADLINE + PATIENCE;
    let mut served_meanwhile = 0;
    while !answer.is_finished() {
        assert!(
            Instant::now() < guard,
            "the dripping connection was never cut"
        );
        let _ = send.write_all(&[0]).await;
        let reply = expert
            .request(Request::Queue {
                after: None,
                limit: 0,
            })
            .await
            .expect("the expert is served");
        assert!(matches!(reply, Reply::Queue(_)), "{reply:?}");
        if connection.close_reason().is_none() {
            served_meanwhile += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        served_meanwhile > 0,
        "nobody was served while the frame dripped"
    );
    match answer.await.expect("reader") {
        Ok(Some(ServerMessage::Reply(Reply::Error(e)))) => {
            assert_eq!(e.kind, ErrorKind::BadFrame);
            let deadline = format!("within {}s", FRAME_DEADLINE.as_secs());
            assert!(e.message.contains(&deadline), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match tokio::time::timeout(PATIENCE, connection.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code, close_code::PROTOCOL_ERROR.into());
        }
        other => panic!("expected a protocol-error close, got {other:?}"),
    }
    assert!(matches!(
        expert.request(Request::Pull { wait: false }).await,
        Err(ClientError::Refused(e)) if e.kind == ErrorKind::QueueEmpty
    ));
}

/// A queue entry's position and code, from its JSON.
fn position_and_code(entry: &Value) -> (u64, String) {
    let position = entry["position"].as_u64().expect("a position");
    (
        position,
        entry["code"].as_str().expect("a code").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_customers_page_through_the_queue_in_order() {
    const WAITING: usize = 120;
    let (_config_dir, config) = config_file("max_connections_per_address = 1000\n");
    let daemon = Daemon::start(&["--config", &config]);
    let expert = daemon.add_user("ana", "expert");
    let fleet = Fleet::open(&daemon.options(None), 2, &["127.0.0.1".parse().unwrap()])
        .await
        .expect("client endpoints");
    let mut customers = Vec::new();
    for _ in 0..WAITING {
        customers.push(loadgen::open_sos(&fleet, None).await.expect("a case"));
    }
    let arrival: Vec<String> = customers.iter().map(|c| c.code.to_string()).collect();

    // One page at a time: 50, 50, 20, each continuing where the last stopped.
    let entries = |page: &Value| -> Vec<(u64, String)> {
        let entries = page["entries"].as_array().expect("entries");
        let entry = |e: &Value| position_and_code(e);
        entries.iter().map(entry).collect()
    };
    let mut paged = Vec::new();
    let mut args = vec!["--json", "queue", "--limit", "50"];
    let mut token = None::<String>;
    for expected in [50, 50, 20] {
        let mut all = args.clone();
        if let Some(token) = &token {
            all.extend(["--after", token.as_str()]);
        }
        let out = daemon.run(Some(&expert), &all);
        assert!(out.status.success(), "{out:?}");
        let page: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(page["online"], WAITING as u64);
        let shown = entries(&page);
        assert_eq!(shown.len(), expected);
        paged.extend(shown);
        token = json_more(&out.stderr);
        assert_eq!(token, next_token::<QueueCursor>(&page));
    }
    assert_eq!(token, None, "the third page is the last");
    args.push("--all");
    let out = daemon.run(Some(&expert), &args);
    assert!(out.status.success(), "{out:?}");
    let every: Vec<(u64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| position_and_code(&serde_json::from_str(line).expect("a JSON line")))
        .collect();
    let in_line: Vec<(u64, String)> = (1..=WAITING as u64).zip(arrival).collect();
    assert_eq!(paged, in_line);
    assert_eq!(every, in_line);
    fleet.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_waiting_customers_page_through_the_queue() {
    const WAITING: u64 = 100_000;
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    // Customers who asked for help and are offline now (say, before a restart), one a
    // millisecond, in seeding order: case n has code n × 997.
    let base = Timestamp::now().0 - 3_600_000;
    loadgen::seed_finished_cases(dir.path(), WAITING, |n| {
        (Timestamp(base + n), CaseState::Pending)
    })
    .await
    .expect("seed the store");
    let code = |n: u64| {
        SessionCode::from_number(n * 997)
            .expect("a code")
            .to_string()
    };
    let daemon = Daemon::start_in(dir, &[]);
    let expert = daemon.add_user("ana", "expert");

    let first = daemon.run(Some(&expert), &["--json", "queue"]);
    assert!(first.status.success(), "{first:?}");
    let page: Value = serde_json::from_slice(&first.stdout).expect("JSON");
    assert_eq!(
        (page["online"].as_u64(), page["offline"].as_u64()),
        (Some(0), Some(WAITING))
    );
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 100);
    assert!(entries
        .iter()
        .all(|e| e["online"] == false && e["position"].is_null()));
    let shown: Vec<String> = entries
        .iter()
        .map(|e| e["code"].as_str().unwrap().into())
        .collect();
    assert_eq!(shown, (0..100).map(code).collect::<Vec<_>>());
    let token = json_more(&first.stderr).expect("a next page");
    let second = daemon.run(Some(&expert), &["--json", "queue", "--after", &token]);
    let page: Value = serde_json::from_slice(&second.stdout).expect("JSON");
    let shown: Vec<String> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().into())
        .collect();
    assert_eq!(shown, (100..200).map(code).collect::<Vec<_>>());

    // Every page, as it comes: each waiting customer once, in line.
    let mut cmd = daemon.sosq(Some(&expert));
    cmd.args(["--json", "queue", "--all", "--limit", "1000"]);
    let mut n = 0;
    let (status, stderr) = each_line(cmd, |line| {
        let entry: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(entry["code"].as_str(), Some(code(n).as_str()), "entry {n}");
        n += 1;
    });
    assert!(status.success(), "{stderr}");
    assert_eq!(n, WAITING);

    // Nobody among them can be pulled; the refusal says how many wait offline.
    let pull = daemon.run(Some(&expert), &["pull"]);
    assert!(!pull.status.success());
    let said = String::from_utf8_lossy(&pull.stderr);
    assert!(
        said.contains(&format!("{WAITING} waiting offline")),
        "{said}"
    );
}
