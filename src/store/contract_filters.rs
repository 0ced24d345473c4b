//! The contract's part about the admin table: every filter field alone and combined,
//! paging through a filtered set, counting with a cap, deleting by an extended filter, and
//! pages of the audit log. Each store's answer is held to [`CaseSelection::matches`] (the
//! core's, which the memory store uses) and, for each field, to cases picked by hand, so a
//! wrong `matches` cannot make every store agree on a wrong answer.

use sosq::protocol::{CaseState, Priority, Timestamp};
use sosq::SessionCode;

use super::contract::{case, code, codes, commit, Make};
use crate::broker::{AuditEntry, CaseRecord, CaseSelection, Persist};

/// 36 cases: creation times in pairs (so the code breaks ties), every state, three teams,
/// every priority, and a few customers and descriptions for the text filter.
fn fixture() -> Vec<CaseRecord> {
    (1..=36u64)
        .map(|n| {
            let state = CaseState::ALL[(n % 5) as usize];
            let created = (n / 2) * 100;
            let mut record = case(n, state, created, created + 10 * n);
            record.group = ["general", "billing", "network"][(n % 3) as usize].into();
            record.priority = Priority::ALL[(n % 4) as usize];
            record.customer = match n % 6 {
                0 => format!("Émile {n}"),
                1 => format!("VPN-Guy {n}"),
                _ => format!("customer {n}"),
            };
            record.description = if n % 4 == 0 {
                "the vpn is DOWN".into()
            } else {
                "printer on fire".into()
            };
            record
        })
        .collect()
}

/// The fixture's codes `selection` matches, in creation order (then code).
fn expected(all: &[CaseRecord], selection: &CaseSelection) -> Vec<SessionCode> {
    let mut found: Vec<&CaseRecord> = all.iter().filter(|r| selection.matches(r)).collect();
    found.sort_by_key(|record| (record.created_at, record.code));
    found.iter().map(|record| record.code).collect()
}

/// Every filter field, alone and combined: the stores agree with `matches` on each, and
/// the hand-picked answers pin what `matches` means.
async fn filters_each_field_and_their_combinations(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let all = fixture();
    commit(&store, all.iter().cloned().map(Persist::Save).collect()).await;
    let pick = |ns: &[u64]| -> Vec<SessionCode> { ns.iter().map(|&n| code(n)).collect() };
    let by = |selection: CaseSelection, hand: Option<Vec<SessionCode>>| {
        let want = expected(&all, &selection);
        assert!(
            !want.is_empty(),
            "{selection:?} selects nothing: a weak test"
        );
        assert!(want.len() < all.len(), "{selection:?} selects everything");
        if let Some(hand) = hand {
            assert_eq!(want, hand, "matches disagrees with the hand-picked cases");
        }
        (selection, want)
    };
    let cases = [
        by(
            CaseSelection {
                team: Some("network".into()),
                ..CaseSelection::default()
            },
            Some(pick(&[2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35])),
        ),
        by(
            CaseSelection {
                priority: Some(Priority::Critical),
                ..CaseSelection::default()
            },
            Some(pick(&[4, 8, 12, 16, 20, 24, 28, 32, 36])),
        ),
        by(
            CaseSelection {
                created_from: Some(Timestamp(1_600)),
                created_before: Some(Timestamp(1_800)),
                ..CaseSelection::default()
            },
            Some(pick(&[32, 33, 34, 35])),
        ),
        // Ended in [1_000, 1_300): closed (n % 5 == 3) or expired (n % 5 == 4) only.
        by(
            CaseSelection {
                closed_from: Some(Timestamp(1_000)),
                closed_before: Some(Timestamp(1_300)),
                ..CaseSelection::default()
            },
            Some(pick(&[18, 19])),
        ),
        // ASCII letters in either case, in the customer or the description.
        by(
            CaseSelection {
                text: Some("vPn".into()),
                ..CaseSelection::default()
            },
            Some(pick(&[
                1, 4, 7, 8, 12, 13, 16, 19, 20, 24, 25, 28, 31, 32, 36,
            ])),
        ),
        // Other letters match as written only (the documented ASCII folding).
        by(
            CaseSelection {
                text: Some("Émile".into()),
                ..CaseSelection::default()
            },
            Some(pick(&[6, 12, 18, 24, 30, 36])),
        ),
        by(
            CaseSelection {
                state: Some(CaseState::Closed),
                team: Some("general".into()),
                ..CaseSelection::default()
            },
            Some(pick(&[3, 18, 33])),
        ),
        by(
            CaseSelection {
                state: Some(CaseState::Expired),
                priority: Some(Priority::Critical),
                created_before: Some(Timestamp(1_500)),
                text: Some("DOWN".into()),
                ..CaseSelection::default()
            },
            Some(pick(&[4, 24])),
        ),
        by(
            CaseSelection {
                team: Some("billing".into()),
                closed_from: Some(Timestamp(500)),
                created_from: Some(Timestamp(300)),
                ..CaseSelection::default()
            },
            None,
        ),
    ];
    let nothing = CaseSelection {
        text: Some("émile".into()),
        ..CaseSelection::default()
    };
    assert!(store.list(&nothing).unwrap().is_empty(), "É is not folded");
    for (selection, want) in cases {
        assert_eq!(
            codes(&store.list(&selection).unwrap()),
            want,
            "list {selection:?}"
        );
        assert_eq!(
            codes(&store.page(&selection, None, 100).unwrap()),
            want,
            "page {selection:?}"
        );
        let mut found = store.codes(&selection).unwrap();
        found.sort_unstable();
        let mut sorted = want.clone();
        sorted.sort_unstable();
        assert_eq!(found, sorted, "codes {selection:?}");
        assert_eq!(
            store.count(&selection, 1_000).unwrap(),
            want.len() as u64,
            "count {selection:?}"
        );
    }
}

/// Pages of 4 through a filtered set with ties in creation time: each case once, in
/// order, and the page after the last is empty.
async fn pages_through_a_filtered_set_without_skip_or_repeat(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let all = fixture();
    commit(&store, all.iter().cloned().map(Persist::Save).collect()).await;
    for selection in [
        CaseSelection {
            team: Some("billing".into()),
            ..CaseSelection::default()
        },
        CaseSelection {
            text: Some("printer".into()),
            created_from: Some(Timestamp(200)),
            ..CaseSelection::default()
        },
    ] {
        let want = expected(&all, &selection);
        assert!(want.len() > 8, "several pages wanted");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.page(&selection, after, 4).unwrap();
            assert!(page.len() <= 4);
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.code));
            seen.extend(codes(&page));
        }
        assert_eq!(seen, want, "{selection:?}");
    }
}

/// A count stops at its cap; a cap of 0 reads nothing.
async fn counts_up_to_a_cap(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let all = fixture();
    commit(&store, all.iter().cloned().map(Persist::Save).collect()).await;
    let general = CaseSelection {
        team: Some("general".into()),
        ..CaseSelection::default()
    };
    assert_eq!(store.count(&general, u64::MAX).unwrap(), 12);
    assert_eq!(store.count(&general, 12).unwrap(), 12);
    assert_eq!(store.count(&general, 5).unwrap(), 5);
    assert_eq!(store.count(&general, 0).unwrap(), 0);
    assert_eq!(store.count(&CaseSelection::default(), 30).unwrap(), 30);
    assert_eq!(store.count(&CaseSelection::default(), 100).unwrap(), 36);
}

/// A delete by an extended filter removes exactly what the filter lists.
async fn deletes_by_an_extended_filter(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    let all = fixture();
    commit(&store, all.iter().cloned().map(Persist::Save).collect()).await;
    let selection = CaseSelection {
        team: Some("network".into()),
        text: Some("fire".into()),
        ..CaseSelection::default()
    };
    let mut want = expected(&all, &selection);
    want.sort_unstable();
    assert_eq!(want.len(), 9);
    let deleted = commit(&store, vec![Persist::DeleteWhere(selection.clone())]).await;
    assert_eq!(deleted, want);
    assert_eq!(store.count(&selection, 100).unwrap(), 0);
    assert_eq!(store.count(&CaseSelection::default(), 100).unwrap(), 36 - 9);
}

/// Audit pages come newest first, each below the previous page's last id, each entry
/// once; a `before` below every id gives an empty page.
async fn pages_the_audit_log_newest_first(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    assert!(store.audit_page(None, 10).unwrap().is_empty());
    let note = |n: u64| AuditEntry {
        at: Timestamp(1_000 + n),
        actor: "admin root".into(),
        address: None,
        action: "delete".into(),
        selector: format!("team \"t{n}\""),
        count: 0,
    };
    for n in 0..7 {
        commit(&store, vec![Persist::Audit(note(n))]).await;
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit_page(before, 3).unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen.extend(page);
    }
    let ids: Vec<u64> = seen.iter().map(|record| record.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let entries: Vec<AuditEntry> = seen.into_iter().map(|record| record.entry).collect();
    let mut oldest_first = store.audit_log().unwrap();
    oldest_first.reverse();
    assert_eq!(entries, oldest_first);
    assert_eq!(entries.len(), 7);
    let lowest = *ids.last().unwrap();
    assert!(store.audit_page(Some(lowest), 10).unwrap().is_empty());
}

/// The filters' part of the contract, run by `contract::contract_suite`.
pub(super) async fn suite(make: Make) {
    filters_each_field_and_their_combinations(make).await;
    pages_through_a_filtered_set_without_skip_or_repeat(make).await;
    counts_up_to_a_cap(make).await;
    deletes_by_an_extended_filter(make).await;
    pages_the_audit_log_newest_first(make).await;
}
