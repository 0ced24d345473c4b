//! The pages the shell builds itself: the stored cases (`sosq cases`) and one case's
//! history (`sosq history`). The queue's pages come from the core
//! ([`Broker::queue_page`](crate::broker::Broker::queue_page)), which owns the queue's order.
//!
//! Both are pure functions of what the store and the core handed over, so the paging rules
//! (the item limit, the byte budget of [`PageBudget`], where the next page starts) are
//! tested without a daemon; `largest_messages` fills them with the largest items the
//! validators allow and checks every page fits one frame, and the tests here fill them
//! with the smallest, which claim the most while decoding.

use sosq::codec::PageBudget;
use sosq::protocol::{CaseInfo, CaseState, CasesCursor, CasesPage, HistoryEntry, HistoryPage};
use sosq::SessionCode;

/// One page of the case list. `candidates` are the cases right after the page's cursor in
/// creation order; the caller hands over one more than `items` (see
/// [`sosq::protocol::page_items`]) so that a full page knows there is a next one. The page
/// takes them in order while its item limit and byte budget allow, and names where the
/// next page starts when any candidate was left out.
pub fn cases_page(candidates: impl IntoIterator<Item = CaseInfo>, items: usize) -> CasesPage {
    let mut budget = PageBudget::new(items);
    let mut cases = Vec::new();
    let mut more = false;
    for info in candidates {
        if !budget.admit(&info) {
            more = true;
            break;
        }
        cases.push(info);
    }
    let next = cases.last().filter(|_| more).map(|last| CasesCursor {
        created_at: last.created_at,
        code: last.code,
    });
    CasesPage { cases, next }
}

/// One page of the history of case `code` (now in `state`): the entries from index `from`
/// on, at most `items` and within the byte budget, with the index the next page starts at
/// when there are more. A `from` past the end gives an empty last page.
pub fn history_page(
    code: SessionCode,
    state: CaseState,
    history: &[HistoryEntry],
    from: u32,
    items: usize,
) -> HistoryPage {
    let mut budget = PageBudget::new(items);
    let start = usize::try_from(from).map_or(history.len(), |from| from.min(history.len()));
    let entries: Vec<HistoryEntry> = history[start..]
        .iter()
        .take_while(|entry| budget.admit(entry))
        .cloned()
        .collect();
    let end = start + entries.len();
    HistoryPage {
        code,
        state,
        total: u32::try_from(history.len()).unwrap_or(u32::MAX),
        next: (end < history.len()).then(|| u32::try_from(end).unwrap_or(u32::MAX)),
        entries,
    }
}

#[cfg(test)]
mod tests {
    use sosq::protocol::{
        Actor, ActorRole, CaseOrigin, HistoryKind, Priority, Timestamp, MAX_PAGE_BYTES,
    };

    use super::*;

    fn info(n: u64, description: &str) -> CaseInfo {
        CaseInfo {
            code: SessionCode::from_number(n).unwrap(),
            state: CaseState::Closed,
            origin: CaseOrigin::Sos,
            customer: format!("customer {n}"),
            description: description.into(),
            created_at: Timestamp(1_000 + n),
            updated_at: Timestamp(2_000 + n),
            expires_at: Timestamp(3_000 + n),
            group: "general".into(),
            assigned_to: None,
            priority: Priority::Normal,
            response_due: None,
            first_response_at: None,
            response_target_met: None,
            customer_online: false,
            expert: None,
            last_message: None,
            attachments: 0,
        }
    }

    fn entry(n: u64, event: &str) -> HistoryEntry {
        HistoryEntry {
            at: Timestamp(n),
            state: CaseState::Pending,
            kind: HistoryKind::Attached,
            event: event.into(),
            actor: Some(Actor::new(ActorRole::Customer, "Alice")),
            address: None,
        }
    }

    /// Small items claim far more while decoding than they take on the wire, so full pages
    /// of the smallest items the validators allow, built by the real builders, must decode.
    #[test]
    fn pages_of_the_smallest_items_decode() {
        use crate::broker::{Broker, BrokerConfig, PartyId, QueueViewer, SosRequest};
        use rand::SeedableRng;
        use sosq::codec;
        use sosq::protocol::{Event, Reply, ServerMessage, MAX_PAGE_ITEMS};

        let round_trip = |message: ServerMessage| {
            let frame = codec::encode(&message).expect("fits a frame");
            let back: ServerMessage = codec::decode(&frame[4..]).expect("decodes");
            assert_eq!(back, message);
        };
        let items = MAX_PAGE_ITEMS as usize;
        let rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut broker = Broker::new(BrokerConfig::default(), Box::new(rng));
        for n in 0..=items as u64 {
            let request = SosRequest {
                customer: "a",
                description: "",
                priority: Priority::Low,
                group: "g",
            };
            let mut out = Vec::new();
            broker
                .open_sos(Timestamp(n), PartyId(n), request, &mut out)
                .expect("a case");
        }
        let queue = broker.queue_page(QueueViewer::Everyone, None, items);
        assert_eq!(
            queue.entries.len(),
            items,
            "the smallest entries fill the item limit"
        );
        round_trip(ServerMessage::Reply(Reply::Queue(queue.clone())));
        round_trip(ServerMessage::Event(Event::QueueChanged(queue)));

        let smallest = info(1, "");
        let cases = cases_page(std::iter::repeat_n(smallest, items + 1), items);
        assert_eq!(cases.cases.len(), items);
        round_trip(ServerMessage::Reply(Reply::Cases(cases)));

        let history: Vec<HistoryEntry> = (0..256).map(|n| entry(n, "")).collect();
        let code = SessionCode::from_number(1).unwrap();
        let page = history_page(code, CaseState::New, &history, 0, items);
        assert_eq!(page.entries.len(), 256);
        round_trip(ServerMessage::Reply(Reply::History(page)));
    }

    #[test]
    fn a_full_case_page_names_the_case_after_which_the_next_starts() {
        let candidates: Vec<CaseInfo> = (1..=4).map(|n| info(n, "vpn")).collect();
        let page = cases_page(candidates.clone(), 3);
        assert_eq!(page.cases, candidates[..3].to_vec());
        let next = page.next.expect("a fourth case is waiting");
        assert_eq!(
            (next.created_at, next.code),
            (Timestamp(1_003), candidates[2].code)
        );
        let last = cases_page(candidates[3..].to_vec(), 3);
        assert_eq!((last.cases.len(), last.next), (1, None));
        assert_eq!(
            cases_page(Vec::new(), 3),
            CasesPage {
                cases: Vec::new(),
                next: None
            }
        );
    }

    #[test]
    fn a_case_page_stops_at_its_byte_budget() {
        let big = "x".repeat(MAX_PAGE_BYTES / 3);
        let page = cases_page((1..=5).map(|n| info(n, &big)), 100);
        assert_eq!(page.cases.len(), 2, "the third would pass the budget");
        assert_eq!(page.next.map(|next| next.code), Some(page.cases[1].code));
    }

    #[test]
    fn history_pages_cover_every_entry_once() {
        let history: Vec<HistoryEntry> = (0..7).map(|n| entry(n, "customer came back")).collect();
        let code = SessionCode::from_number(42).unwrap();
        let mut seen = Vec::new();
        let mut from = 0;
        loop {
            let page = history_page(code, CaseState::Pending, &history, from, 3);
            assert_eq!(
                (page.code, page.state, page.total),
                (code, CaseState::Pending, 7)
            );
            assert!(page.entries.len() <= 3);
            seen.extend(page.entries);
            match page.next {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(seen, history);
        let past = history_page(code, CaseState::Pending, &history, u32::MAX, 3);
        assert_eq!((past.entries.len(), past.next, past.total), (0, None, 7));
    }

    #[test]
    fn a_history_page_stops_at_its_byte_budget() {
        let big = "y".repeat(MAX_PAGE_BYTES / 3);
        let history: Vec<HistoryEntry> = (0..5).map(|n| entry(n, &big)).collect();
        let code = SessionCode::from_number(7).unwrap();
        let page = history_page(code, CaseState::Closed, &history, 1, 100);
        assert_eq!((page.entries.len(), page.next), (2, Some(3)));
    }
}
