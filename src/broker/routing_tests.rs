//! Unit tests of team queues, assignment to an expert or team, and transfer of a case in
//! session.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::protocol::{Assignee, CaseState, Event, Priority, Timestamp};
use sosq::SessionCode;

use super::*;

const T0: Timestamp = Timestamp(1_700_000_000_000);
const CUSTOMER: PartyId = PartyId(1);
const ANA: PartyId = PartyId(10);
const BO: PartyId = PartyId(11);

fn at(seconds: u64) -> Timestamp {
    T0.plus(Duration::from_secs(seconds))
}

fn broker() -> Broker {
    Broker::new(BrokerConfig::default(), Box::new(StdRng::seed_from_u64(3)))
}

fn teams(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn pull_request<'a>(expert: &'a str, names: &[&str], wait: bool) -> PullRequest<'a> {
    PullRequest {
        expert,
        teams: teams(names),
        wait,
    }
}

fn sos_in(b: &mut Broker, now: Timestamp, party: PartyId, group: &str) -> SessionCode {
    let request = SosRequest {
        customer: "customer",
        description: "",
        priority: Priority::Normal,
        group,
    };
    b.open_sos(now, party, request, &mut Vec::new())
        .unwrap()
        .case
        .code
}

fn codes(entries: Vec<sosq::protocol::QueueEntry>) -> Vec<SessionCode> {
    entries.into_iter().map(|e| e.code).collect()
}

#[test]
fn experts_see_and_pull_only_their_teams_cases() {
    let mut b = broker();
    let billing = sos_in(&mut b, at(0), PartyId(1), "billing");
    let network = sos_in(&mut b, at(1), PartyId(2), "network");
    assert_eq!(
        codes(b.queue_view_for("ana", &teams(&["billing"]))),
        vec![billing]
    );
    assert_eq!(
        codes(b.queue_view_for("bo", &teams(&["network"]))),
        vec![network]
    );
    assert_eq!(
        codes(b.queue_view()),
        vec![billing, network],
        "admins see all"
    );

    let mut out = Vec::new();
    let pulled = b
        .pull(
            at(2),
            ANA,
            pull_request("ana", &["billing"], false),
            &mut out,
        )
        .unwrap();
    assert_eq!(pulled.unwrap().code, billing);
    let err = b
        .pull(
            at(3),
            PartyId(12),
            pull_request("cy", &["billing"], false),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        err,
        BrokerError::QueueEmpty(Searched {
            teams: teams(&["billing"])
        }),
        "network's case is not offered to billing"
    );
    assert_eq!(
        err.to_string(),
        "no customer is waiting in your queues: billing, and the cases assigned to you; other teams' queues are not yours to pull"
    );
}

#[test]
fn a_case_assigned_to_an_expert_is_offered_to_that_expert_only() {
    let mut b = broker();
    let code = sos_in(&mut b, at(0), CUSTOMER, GENERAL);
    let mut out = Vec::new();
    let info = b
        .assign(
            at(1),
            "admin root",
            &code.to_string(),
            &Assignee::Expert("bo".into()),
            &mut out,
        )
        .unwrap();
    assert_eq!(info.assigned_to.as_deref(), Some("bo"));
    assert!(b.queue_view_for("ana", &teams(&[GENERAL])).is_empty());
    let err = b
        .pull(at(2), ANA, PullRequest::general("ana", false), &mut out)
        .unwrap_err();
    assert!(matches!(err, BrokerError::QueueEmpty(_)), "{err:?}");
    let pulled = b
        .pull(at(3), BO, PullRequest::general("bo", false), &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(pulled.code, code);
    assert_eq!(pulled.state, CaseState::InProgress);
}

#[test]
fn assigning_to_a_team_moves_the_case_and_a_waiting_expert_there_takes_it() {
    let mut b = broker();
    let code = sos_in(&mut b, at(0), CUSTOMER, GENERAL);
    let mut out = Vec::new();
    assert_eq!(
        b.pull(at(1), BO, pull_request("bo", &["network"], true), &mut out),
        Ok(None)
    );
    b.assign(
        at(2),
        "expert ana",
        &code.to_string(),
        &Assignee::Group("network".into()),
        &mut out,
    )
    .unwrap();
    let case = b.case(code).unwrap();
    assert_eq!(case.record.group, "network");
    assert_eq!(case.expert.as_ref().map(|s| s.name.as_str()), Some("bo"));
    assert_eq!(case.record.state, CaseState::InProgress);
}

#[test]
fn transfer_keeps_the_customer_connected_tells_both_and_requeues_for_the_new_expert() {
    let mut b = broker();
    let code = sos_in(&mut b, at(0), CUSTOMER, GENERAL);
    let mut out = Vec::new();
    b.pull(at(1), ANA, PullRequest::general("ana", false), &mut out)
        .unwrap();
    out.clear();

    let info = b
        .transfer(
            at(2),
            "ana",
            &code.to_string(),
            &Assignee::Expert("bo".into()),
            &mut out,
        )
        .unwrap();
    assert_eq!(info.state, CaseState::Pending);
    assert!(info.customer_online, "the customer stays connected");
    assert_eq!(b.attached_case(ANA), None);
    assert_eq!(b.attached_case(CUSTOMER), Some(code));
    assert!(out.contains(&Effect::Unpair { code, drain: true }));
    let told_customer = out.iter().any(|e| {
        matches!(e,
        Effect::Notify { party, event: Event::PeerLeft { reason, .. } }
            if *party == CUSTOMER && reason.contains("expert bo"))
    });
    assert!(told_customer, "{out:?}");
    let told_expert = out.iter().any(|e| {
        matches!(e,
        Effect::Notify { party, event: Event::SessionEnded { .. } } if *party == ANA)
    });
    assert!(told_expert, "{out:?}");
    assert!(b
        .case(code)
        .unwrap()
        .record
        .history
        .last()
        .unwrap()
        .event
        .contains("transferred the case to expert bo"));

    let pulled = b
        .pull(at(3), BO, PullRequest::general("bo", false), &mut out)
        .unwrap()
        .unwrap();
    assert_eq!(pulled.code, code);
    assert_eq!(pulled.state, CaseState::InProgress);
}

#[test]
fn only_the_expert_in_the_session_can_transfer_and_refusals_change_nothing() {
    let mut b = broker();
    let code = sos_in(&mut b, at(0), CUSTOMER, GENERAL);
    let mut out = Vec::new();
    b.pull(at(1), ANA, PullRequest::general("ana", false), &mut out)
        .unwrap();
    out.clear();
    let before = b.case(code).unwrap().info();
    let to_bo = Assignee::Expert("bo".into());
    assert!(b
        .transfer(at(2), "bo", &code.to_string(), &to_bo, &mut out)
        .is_err());
    let to_self = Assignee::Expert("ana".into());
    assert!(b
        .transfer(at(2), "ana", &code.to_string(), &to_self, &mut out)
        .is_err());
    assert!(out.is_empty());
    assert_eq!(b.case(code).unwrap().info(), before);
}
