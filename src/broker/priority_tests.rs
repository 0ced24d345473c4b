//! Unit tests of queue order by priority, response deadline and age; escalation; and the
//! record of whether each case's first-response target was met.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::protocol::{Priority, Timestamp};
use sosq::SessionCode;

use super::*;

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn broker() -> Broker {
    Broker::new(BrokerConfig::default(), Box::new(StdRng::seed_from_u64(42)))
}

fn at(seconds: u64) -> Timestamp {
    T0.plus(Duration::from_secs(seconds))
}

fn sos(b: &mut Broker, now: Timestamp, party: u64, priority: Priority) -> SessionCode {
    let mut out = Vec::new();
    b.open_sos(
        now,
        PartyId(party),
        SosRequest {
            priority,
            ..SosRequest::general("customer", "")
        },
        &mut out,
    )
    .expect("sos")
    .case
    .code
}

fn queue(b: &Broker) -> Vec<SessionCode> {
    b.queue_view().into_iter().map(|entry| entry.code).collect()
}

#[test]
fn higher_priority_is_served_first_then_the_earlier_deadline_then_the_longer_wait() {
    let mut b = broker();
    let low = sos(&mut b, at(0), 1, Priority::Low);
    let normal_old = sos(&mut b, at(1), 2, Priority::Normal);
    let normal_new = sos(&mut b, at(2), 3, Priority::Normal);
    let critical = sos(&mut b, at(3), 4, Priority::Critical);
    let high = sos(&mut b, at(4), 5, Priority::High);
    assert_eq!(queue(&b), vec![critical, high, normal_old, normal_new, low]);

    let mut out = Vec::new();
    let pulled = b
        .pull(
            at(5),
            PartyId(100),
            PullRequest::general("ana", false),
            &mut out,
        )
        .unwrap();
    assert_eq!(pulled.unwrap().code, critical);
}

#[test]
fn the_response_deadline_follows_the_priority_target() {
    let mut b = broker();
    let code = sos(&mut b, at(0), 1, Priority::High);
    let entry = &b.queue_view()[0];
    assert_eq!(entry.priority, Priority::High);
    assert_eq!(entry.response_due, at(5 * 60));
    assert_eq!(b.case(code).unwrap().record.response_due, Some(at(5 * 60)));
}

#[test]
fn an_escalated_case_jumps_the_queue_and_the_reason_is_kept() {
    let mut b = broker();
    let first = sos(&mut b, at(0), 1, Priority::Normal);
    let second = sos(&mut b, at(1), 2, Priority::Normal);
    assert_eq!(queue(&b), vec![first, second]);
    let mut out = Vec::new();
    let info = b
        .escalate(
            at(2),
            "expert ana",
            &second.to_string(),
            Priority::Critical,
            "server room flooded",
            &mut out,
        )
        .unwrap();
    assert_eq!(info.priority, Priority::Critical);
    assert_eq!(info.response_due, Some(at(1 + 2 * 60)));
    assert_eq!(queue(&b), vec![second, first]);
    assert!(matches!(
        out.as_slice(),
        [Effect::Persist(Persist::Save(_))]
    ));
    let history = &b.case(info.code).unwrap().record.history;
    let last = history.last().unwrap();
    assert!(
        last.event.contains("normal -> critical") && last.event.contains("server room flooded")
    );
}

#[test]
fn escalation_needs_a_reason_and_an_open_case_and_changes_nothing_otherwise() {
    let mut b = broker();
    let code = sos(&mut b, at(0), 1, Priority::Low);
    let before = b.case(code).unwrap().info();
    let mut out = Vec::new();
    let err = b
        .escalate(
            at(1),
            "expert ana",
            &code.to_string(),
            Priority::High,
            "  ",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, BrokerError::InvalidInput(_)));
    let unknown = SessionCode::from_number(1).unwrap().to_string();
    let err = b
        .escalate(
            at(1),
            "expert ana",
            &unknown,
            Priority::High,
            "why",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, BrokerError::UnknownCode(_)));
    assert!(out.is_empty());
    assert_eq!(b.case(code).unwrap().info(), before);
}

#[test]
fn whether_the_first_response_target_was_met_is_recorded() {
    let mut b = broker();
    let quick = sos(&mut b, at(0), 1, Priority::Critical);
    let mut out = Vec::new();
    b.pull(
        at(60),
        PartyId(100),
        PullRequest::general("ana", false),
        &mut out,
    )
    .unwrap();
    let info = b.case(quick).unwrap().info();
    assert_eq!(info.first_response_at, Some(at(60)));
    assert_eq!(info.response_target_met, Some(true));

    let slow = sos(&mut b, at(100), 2, Priority::Critical);
    b.pull(
        at(100 + 3 * 60),
        PartyId(101),
        PullRequest::general("bo", false),
        &mut out,
    )
    .unwrap();
    let info = b.case(slow).unwrap().info();
    assert_eq!(info.response_target_met, Some(false));
    assert!(b
        .case(slow)
        .unwrap()
        .record
        .history
        .iter()
        .any(|h| h.event.contains("after its target")));

    // A later re-pairing does not rewrite the first response.
    b.disconnect(
        at(1000),
        PartyId(101),
        crate::broker::Departure::Lost,
        &mut out,
    );
    b.pull(
        at(1001),
        PartyId(102),
        PullRequest::general("cy", false),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        b.case(slow).unwrap().info().first_response_at,
        Some(at(100 + 3 * 60))
    );
}
