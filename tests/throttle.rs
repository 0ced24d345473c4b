//! End to end against a real sosqd: the wrong-code throttle charges one person's typos to
//! that person's connection, so the others behind the same address (an office NAT; here
//! every client comes from 127.0.0.1) still get in, while a spray from many connections
//! on one address is still held to the address's budget.

mod common;

use common::{config_file, Daemon};
use sosq::protocol::{ErrorKind, Reply, Request};
use sosq::{Client, ClientError};

/// A customer's join by code.
fn join(code: &str, customer: &str) -> Request {
    Request::Join {
        code: code.into(),
        customer: customer.into(),
        resume_secret: None,
    }
}

/// How the daemon answered a look-up of a code that does not exist.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A real answer: no such code (and a failure charged).
    UnknownCode,
    /// Refused before the look-up: a budget is spent.
    Throttled,
}

async fn guess(client: &mut Client, code: &str) -> Answer {
    match client.request(join(code, "Mallory")).await {
        Err(ClientError::Refused(r)) if r.kind == ErrorKind::UnknownCode => Answer::UnknownCode,
        Err(ClientError::Refused(r)) if r.kind == ErrorKind::Throttled => Answer::Throttled,
        other => panic!("a wrong code {code} got {other:?}"),
    }
}

/// Codes that are none of `live`.
fn wrong_codes(live: &[String]) -> impl Iterator<Item = String> + '_ {
    (1..)
        .map(|i| format!("s000-000-{i:03}"))
        .filter(move |code| !live.contains(code))
}

/// A library customer connection.
async fn customer(daemon: &Daemon) -> Client {
    Client::connect(&daemon.options(None))
        .await
        .expect("customer connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_persons_typos_do_not_refuse_the_joins_of_others_behind_the_same_address() {
    // Default budgets: 5 per connection, 30 per address, 50 in total.
    let daemon = Daemon::start(&[]);
    let (_, mut expert) = daemon.staff_client("ana", "expert").await;
    let mut codes = Vec::new();
    for i in 0..50 {
        let created = expert
            .request(Request::Create {
                customer: format!("customer {i}"),
                description: String::new(),
            })
            .await;
        match created {
            Ok(Reply::Created(case)) => codes.push(case.code.to_string()),
            other => panic!("{other:?}"),
        }
    }
    let wrong: Vec<String> = wrong_codes(&codes).take(20).collect();
    // Everyone connects first, so the look-ups below overlap.
    let mut typist = customer(&daemon).await;
    let mut others = Vec::new();
    for _ in 0..50 {
        others.push(customer(&daemon).await);
    }

    let (throttled, typist_throttled) = tokio::sync::watch::channel(false);
    let typing = tokio::spawn(async move {
        let mut answers = Vec::new();
        for code in &wrong {
            let answer = guess(&mut typist, code).await;
            if answer == Answer::Throttled {
                throttled.send_replace(true);
            }
            answers.push(answer);
        }
        answers
    });
    let mut joins = tokio::task::JoinSet::new();
    for (i, (mut client, code)) in others.into_iter().zip(codes).enumerate() {
        let mut typist_throttled = typist_throttled.clone();
        joins.spawn(async move {
            // Half join alongside the typos, half once the typist is throttled, when its
            // typos have cost the address all they can.
            if i % 2 == 1 {
                let _ = typist_throttled.wait_for(|throttled| *throttled).await;
            }
            client.request(join(&code, &format!("customer {i}"))).await
        });
    }

    let answers = typing.await.unwrap();
    assert_eq!(
        answers.iter().position(|a| *a == Answer::Throttled),
        Some(5),
        "the typist gets its own burst, then is throttled: {answers:?}"
    );
    let mut attached = 0;
    while let Some(joined) = joins.join_next().await {
        match joined.unwrap() {
            Ok(Reply::Attached { .. }) => attached += 1,
            other => panic!("an honest join was refused: {other:?}"),
        }
    }
    assert_eq!(attached, 50);
}

#[tokio::test]
async fn a_spray_from_many_connections_on_one_address_gets_exactly_the_address_burst() {
    let (_dir, config) = config_file(
        "wrong_codes_per_connection_burst = 2\n\
         wrong_codes_per_connection_per_minute = 1\n\
         wrong_codes_per_address_burst = 7\n\
         wrong_codes_per_address_per_minute = 1\n",
    );
    let daemon = Daemon::start(&["--config", &config]);
    let token = daemon.add_user("ana", "expert");
    let created = daemon.json(Some(&token), &["create", "--customer", "Bob"]);
    let real_code = created["code"].as_str().unwrap().to_string();
    let live = [real_code.clone()];
    let mut wrong = wrong_codes(&live);

    // Each connection types wrong codes until it is throttled; a fresh one comes next,
    // until one is throttled before its first answer.
    let mut answered = Vec::new();
    for _ in 0..10 {
        let mut sprayer = customer(&daemon).await;
        let mut mine = 0;
        while guess(&mut sprayer, &wrong.next().unwrap()).await == Answer::UnknownCode {
            mine += 1;
        }
        answered.push(mine);
        if mine == 0 {
            break;
        }
    }
    // Three connections spend their own 2 each, the fourth gets the address's 7th, and
    // then the address is spent for everyone on it.
    assert_eq!(answered, [2, 2, 2, 1, 0]);
    assert_eq!(answered.iter().sum::<u32>(), 7, "the address burst exactly");

    // A fresh connection is refused even the right code, with a wait; the case is untouched.
    let mut bob = customer(&daemon).await;
    match bob.request(join(&real_code, "Bob")).await {
        Err(ClientError::Refused(r)) => {
            assert_eq!(r.kind, ErrorKind::Throttled);
            assert!(r.message.contains("wait"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    let status = daemon.json(Some(&token), &["status", &real_code]);
    assert_eq!(status["state"], "new");
}
