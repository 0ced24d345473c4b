//! Resolving a wire filter into a selection: every field reaches the selection, bad input
//! is refused with what to fix, and `matches` reads each field (the stores are held to it
//! by the store contract).

use super::*;
use sosq::protocol::{CaseFilter, Priority, MAX_FILTER_TEXT_CHARS};

fn refused(filter: CaseFilter) -> String {
    match CaseSelection::resolve(&filter, at(1_000)) {
        Err(BrokerError::InvalidInput(message)) => message,
        other => panic!("{filter:?} was not refused: {other:?}"),
    }
}

#[test]
fn every_field_reaches_the_selection_and_older_than_tightens_created_to() {
    let filter = CaseFilter {
        state: Some(CaseState::Closed),
        older_than_ms: Some(500),
        team: Some("billing".into()),
        priority: Some(Priority::High),
        created_from: Some(at(10)),
        created_to: Some(at(900)),
        closed_from: Some(at(20)),
        closed_to: Some(at(30)),
        text: Some("Printer".into()),
    };
    let selection = CaseSelection::resolve(&filter, at(1_000)).unwrap();
    assert_eq!(
        selection,
        CaseSelection {
            state: Some(CaseState::Closed),
            created_from: Some(at(10)),
            // 500 ms before now is tighter than the given 900.
            created_before: Some(at(500)),
            closed_from: Some(at(20)),
            closed_before: Some(at(30)),
            team: Some("billing".into()),
            priority: Some(Priority::High),
            text: Some("Printer".into()),
        }
    );
    let looser = CaseFilter {
        older_than_ms: Some(10),
        ..filter
    };
    let selection = CaseSelection::resolve(&looser, at(1_000)).unwrap();
    assert_eq!(selection.created_before, Some(at(900)));
}

#[test]
fn bad_filters_are_refused_saying_what_to_fix() {
    let long = refused(CaseFilter {
        text: Some("é".repeat(MAX_FILTER_TEXT_CHARS + 1)),
        ..CaseFilter::default()
    });
    assert!(
        long.contains("201 characters") && long.contains("200"),
        "{long}"
    );
    // The cap counts characters, not bytes.
    let at_cap = CaseFilter {
        text: Some("é".repeat(MAX_FILTER_TEXT_CHARS)),
        ..CaseFilter::default()
    };
    assert!(CaseSelection::resolve(&at_cap, at(0)).is_ok());
    assert!(refused(CaseFilter {
        text: Some(String::new()),
        ..CaseFilter::default()
    })
    .contains("text filter is empty"));
    assert!(refused(CaseFilter {
        team: Some(String::new()),
        ..CaseFilter::default()
    })
    .contains("team filter is empty"));
    let backwards = refused(CaseFilter {
        created_from: Some(Timestamp(7)),
        created_to: Some(Timestamp(5)),
        ..CaseFilter::default()
    });
    assert!(backwards.contains("created range is empty"), "{backwards}");
    let empty = refused(CaseFilter {
        closed_from: Some(Timestamp(5)),
        closed_to: Some(Timestamp(5)),
        ..CaseFilter::default()
    });
    assert!(empty.contains("closed range is empty"), "{empty}");
}

#[test]
fn matches_reads_each_field() {
    let mut record = record_in(CaseState::Closed, some_code(1));
    record.customer = "Alice Example".into();
    record.description = "Printer on FIRE".into();
    record.group = "billing".into();
    record.priority = Priority::High;
    record.created_at = at(100);
    record.updated_at = at(200);
    let yes_and_no = |yes: CaseSelection, no: CaseSelection| {
        assert!(yes.matches(&record), "{yes:?}");
        assert!(!no.matches(&record), "{no:?}");
    };
    let none = CaseSelection::default;
    yes_and_no(
        CaseSelection {
            team: Some("billing".into()),
            ..none()
        },
        CaseSelection {
            team: Some("Billing".into()),
            ..none()
        },
    );
    yes_and_no(
        CaseSelection {
            priority: Some(Priority::High),
            ..none()
        },
        CaseSelection {
            priority: Some(Priority::Low),
            ..none()
        },
    );
    yes_and_no(
        CaseSelection {
            created_from: Some(at(100)),
            ..none()
        },
        CaseSelection {
            created_from: Some(at(101)),
            ..none()
        },
    );
    yes_and_no(
        CaseSelection {
            closed_from: Some(at(200)),
            closed_before: Some(at(201)),
            ..none()
        },
        CaseSelection {
            closed_before: Some(at(200)),
            ..none()
        },
    );
    yes_and_no(
        CaseSelection {
            text: Some("fire".into()),
            ..none()
        },
        CaseSelection {
            text: Some("water".into()),
            ..none()
        },
    );
    yes_and_no(
        CaseSelection {
            text: Some("ALICE".into()),
            ..none()
        },
        CaseSelection {
            text: Some("alice  example".into()),
            ..none()
        },
    );
    // A closing-time bound never selects an open case, whatever its updated_at.
    record.state = CaseState::InProgress;
    assert!(!CaseSelection {
        closed_from: Some(at(0)),
        ..none()
    }
    .matches(&record));
    assert!(CaseSelection {
        created_from: Some(at(0)),
        ..none()
    }
    .matches(&record));
}
