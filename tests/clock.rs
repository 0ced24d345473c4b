//! Timestamps follow the system clock, expiry the monotonic one: the daemon runs under
//! libfaketime (`LD_PRELOAD`), and the test steps its wall clock by two hours while it
//! runs, as an NTP correction or an admin fixing the date would.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Daemon;
use sosq::protocol::{CaseState, Priority, Reply, Request, Timestamp};
use sosq::Client;

/// Debian's `faketime` package (`apt-get install faketime`); `.ci/run` installs it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

const HOUR: Duration = Duration::from_secs(60 * 60);

#[tokio::test]
async fn a_stepped_system_clock_shows_in_histories_and_expires_nothing_early() {
    if !Path::new(LIBFAKETIME).exists() {
        println!("skipped: {LIBFAKETIME} is missing (apt-get install faketime)");
        return;
    }
    let clock_dir = tempfile::tempdir().unwrap();
    let offset = clock_dir.path().join("offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let offset_path = offset.to_string_lossy().into_owned();
    let daemon = Daemon::start_with_env(
        Arc::new(tempfile::tempdir().unwrap()),
        &["--case-ttl", "1h"],
        "info",
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", &offset_path),
            // Read the offset file on every clock read, so a step takes effect at once.
            ("FAKETIME_NO_CACHE", "1"),
            // Only the wall clock jumps; the monotonic clock keeps real time.
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let (_, mut expert) = daemon.staff_client("ana", "expert").await;

    let before = Timestamp::now();
    // The case with the earliest deadline: closing it later wakes the expiry timer.
    let Reply::Created(first) = expert
        .request(Request::Create {
            customer: "Dan".into(),
            description: String::new(),
        })
        .await
        .unwrap()
    else {
        panic!("no case created");
    };
    let Reply::Created(case) = expert
        .request(Request::Create {
            customer: "Bob".into(),
            description: String::new(),
        })
        .await
        .unwrap()
    else {
        panic!("no case created");
    };
    assert!(
        case.created_at.since(before) < HOUR && before.since(case.created_at) < HOUR,
        "before the step, the daemon's clock is the real one"
    );
    let code = case.code.to_string();

    // The system clock jumps two hours ahead while the daemon runs.
    std::fs::write(&offset, "+2h\n").unwrap();
    expert
        .request(Request::Escalate {
            code: code.clone(),
            priority: Priority::High,
            reason: "clock test".into(),
        })
        .await
        .unwrap();
    let history = history_of(&mut expert, &code).await;
    let escalated = history
        .iter()
        .find(|(_, event)| event.contains("clock test"))
        .map(|(at, _)| *at)
        .expect("the escalation is in the history");
    assert!(
        escalated.since(before) >= 2 * HOUR - Duration::from_secs(60),
        "the entry after the step carries the stepped time: {escalated:?} vs {before:?}"
    );

    // By the stepped clock the case is past its one-hour ttl, but only seconds of real time
    // went by: it must still be open. Closing the case due first wakes the expiry timer,
    // which then looks at this one; a moment later it is still `new`.
    expert
        .request(Request::Close {
            code: first.code.to_string(),
            resume_secret: None,
        })
        .await
        .unwrap();
    let Reply::Created(later) = expert
        .request(Request::Create {
            customer: "Carol".into(),
            description: String::new(),
        })
        .await
        .unwrap()
    else {
        panic!("no second case");
    };
    assert!(later.created_at.since(before) >= 2 * HOUR - Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Reply::Case(now) = expert
        .request(Request::Status {
            code: code.clone(),
            resume_secret: None,
        })
        .await
        .unwrap()
    else {
        panic!("no status");
    };
    assert_eq!(
        now.state,
        CaseState::New,
        "a clock step expired the case early"
    );
    expert.close().await;
}

/// The (time, event) pairs of a case's history.
async fn history_of(expert: &mut Client, code: &str) -> Vec<(Timestamp, String)> {
    let Reply::History(page) = expert
        .request(Request::History {
            code: code.into(),
            from: 0,
            limit: 0,
        })
        .await
        .unwrap()
    else {
        panic!("no history");
    };
    page.entries.into_iter().map(|e| (e.at, e.event)).collect()
}
