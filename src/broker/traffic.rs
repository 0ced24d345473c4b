//! What a session carried: the relay counts the bytes of each direction, and when the
//! pairing ends the totals go into the case history. The bytes are what the applications
//! sent (chat and forwarded connections); the kind byte that opens each stream is the
//! protocol's, not theirs, and is not counted.

use sosq::protocol::{HistoryKind, Timestamp};
use sosq::SessionCode;

use super::{Broker, Persist};

/// The bytes one pairing of a case relayed, in each direction: payload only, the same
/// streams' bytes as [`SessionTraffic::streams`] counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTraffic {
    /// Bytes the customer sent to the expert.
    pub customer_to_expert: u64,
    /// Bytes the expert sent to the customer.
    pub expert_to_customer: u64,
    /// Streams relayed during the pairing, of every kind: chats and forwarded connections
    /// alike (the bytes above are theirs, all of them). Streams the relay refused carried
    /// nothing and are not counted.
    pub streams: u64,
}

impl SessionTraffic {
    /// The history line: "session relayed 3 streams (chats and forwarded connections):
    /// 1200 bytes customer to expert, 35 bytes expert to customer".
    pub fn describe(&self) -> String {
        let noun = if self.streams == 1 {
            "stream"
        } else {
            "streams"
        };
        format!(
            "session relayed {} {noun} (chats and forwarded connections): {} bytes customer to expert, {} bytes expert to customer",
            self.streams, self.customer_to_expert, self.expert_to_customer
        )
    }
}

impl Broker {
    /// Notes the traffic of a pairing that just ended in the case history.
    ///
    /// `changes` are the store changes of the same command, not yet handed to the store.
    /// A case that is still open (a partner left) gets a new save. A case the same command
    /// ended (closed, expired) is no longer held here, so its final save in `changes` is
    /// amended instead, and the record the store keeps ends with the traffic. A deleted
    /// case has no history left to note it in.
    pub fn record_traffic(
        &mut self,
        now: Timestamp,
        code: SessionCode,
        traffic: SessionTraffic,
        changes: &mut Vec<Persist>,
    ) {
        if let Some(case) = self.cases.get_mut(&code) {
            case.record
                .note(now, HistoryKind::Traffic, traffic.describe());
            changes.push(Persist::Save(case.record.clone()));
            return;
        }
        let final_save = changes.iter_mut().rev().find_map(|change| match change {
            Persist::Save(record) if record.code == code => Some(record),
            _ => None,
        });
        if let Some(record) = final_save {
            record.note(now, HistoryKind::Traffic, traffic.describe());
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use sosq::protocol::CaseState;

    use super::*;
    use crate::broker::{BrokerConfig, Closer, Effect, PartyId, PullRequest, SosRequest};

    const CUSTOMER: PartyId = PartyId(1);
    const EXPERT: PartyId = PartyId(2);
    const TRAFFIC: SessionTraffic = SessionTraffic {
        customer_to_expert: 5_000,
        expert_to_customer: 7,
        streams: 2,
    };

    fn paired() -> (Broker, SessionCode) {
        let mut b = Broker::new(BrokerConfig::default(), Box::new(StdRng::seed_from_u64(1)));
        let mut out = Vec::new();
        let code = b
            .open_sos(
                Timestamp(1_000),
                CUSTOMER,
                SosRequest::general("Alice", ""),
                &mut out,
            )
            .expect("sos")
            .case
            .code;
        b.pull(
            Timestamp(2_000),
            EXPERT,
            PullRequest::general("ana", false),
            &mut out,
        )
        .expect("pull");
        (b, code)
    }

    fn saves(effects: Vec<Effect>) -> Vec<Persist> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Persist(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    fn last_event(change: &Persist) -> &str {
        match change {
            Persist::Save(record) => &record.history.last().expect("history").event,
            other => panic!("not a save: {other:?}"),
        }
    }

    #[test]
    fn a_partner_leaving_saves_the_traffic_of_the_open_case() {
        let (mut b, code) = paired();
        let mut out = Vec::new();
        b.disconnect(
            Timestamp(3_000),
            EXPERT,
            crate::broker::Departure::Lost,
            &mut out,
        );
        let mut changes = saves(out);
        let before = changes.len();
        b.record_traffic(Timestamp(3_000), code, TRAFFIC, &mut changes);
        assert_eq!(changes.len(), before + 1, "one more save, after the others");
        assert_eq!(last_event(&changes[before]), TRAFFIC.describe());
        let held = &b.case(code).expect("still open").record;
        assert_eq!(held.state, CaseState::Pending);
        assert!(held
            .history
            .last()
            .unwrap()
            .event
            .contains("5000 bytes customer to expert"));
    }

    #[test]
    fn closing_amends_the_final_save_of_the_closed_case() {
        let (mut b, code) = paired();
        let mut out = Vec::new();
        b.close(
            Timestamp(4_000),
            Closer::Expert("ana"),
            &code.to_string(),
            &mut out,
        )
        .expect("close");
        let mut changes = saves(out);
        let before = changes.len();
        b.record_traffic(Timestamp(4_000), code, TRAFFIC, &mut changes);
        assert_eq!(changes.len(), before, "no extra save for a closed case");
        let Persist::Save(record) = &changes[before - 1] else {
            panic!("the close saves the record");
        };
        assert_eq!(record.state, CaseState::Closed);
        assert_eq!(last_event(&changes[before - 1]), TRAFFIC.describe());
    }

    #[test]
    fn a_deleted_case_has_nowhere_to_note_traffic() {
        let (mut b, code) = paired();
        let mut changes = vec![Persist::Delete(vec![code])];
        b.delete(
            Timestamp(5_000),
            "root",
            Persist::Delete(vec![code]),
            &mut Vec::new(),
        )
        .expect("delete");
        b.record_traffic(Timestamp(5_000), code, TRAFFIC, &mut changes);
        assert_eq!(changes, vec![Persist::Delete(vec![code])]);
    }
}
