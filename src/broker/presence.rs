//! Parties coming and going: a connection that ends (on purpose or lost), a new connection
//! that takes over a seat from a half-alive old one, and a pulling expert let go when its
//! customer vanishes.
//!
//! A seat belongs to a connection ([`PartyId`]); the core forgets the connection the moment
//! it leaves or is replaced, so the old connection's later cleanup finds nothing to undo and
//! can never detach its replacement.

use sosq::protocol::{close_code, CaseState, Event, HistoryKind, Timestamp};
use sosq::SessionCode;

use super::{Broker, Effect, PartyId, Persist};

/// How a party's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It closed its connection on purpose (Ctrl-C, the session done), after letting what
    /// it sent drain: what was already relayed may still reach the other side.
    Left,
    /// Its connection was lost (nothing heard for the idle timeout, a crash, a reset):
    /// what it was sending is cut, and the other side must see a reset, never an end.
    Lost,
}

impl Departure {
    /// What happened, after the party's name ("customer Alice left").
    fn verb(self) -> &'static str {
        match self {
            Departure::Left => "left",
            Departure::Lost => "was lost (its connection stopped answering)",
        }
    }
}

impl Broker {
    /// A party's connection is gone: free its seat. A case with both partners drops back to
    /// `pending`; an SOS customer whose expert left goes back in the queue at its place; a
    /// pulling expert whose customer vanished is let go (told with [`Event::Released`]) to
    /// take the next case, while its case keeps its place, offline, for the customer.
    pub fn disconnect(
        &mut self,
        now: Timestamp,
        party: PartyId,
        departure: Departure,
        out: &mut Vec<Effect>,
    ) {
        self.idle_experts.retain(|seat| seat.party != party);
        let Some(code) = self.parties.remove(&party) else {
            return;
        };
        let Some(case) = self.cases.get_mut(&code) else {
            return;
        };
        let was_paired = case.record.state == CaseState::InProgress;
        let drain = departure == Departure::Left;
        let departed_customer = case.customer == Some(party);
        let (event, told) = if departed_customer {
            case.customer = None;
            let event = format!("customer {} {}", case.record.customer, departure.verb());
            let told = match case.expert.clone() {
                Some(seat) if seat.pulled => {
                    case.expert = None;
                    self.parties.remove(&seat.party);
                    let reason = format!(
                        "the customer of case {code} {}; the case keeps its place in the queue for when they come back, and you are free for the next one",
                        departure.verb()
                    );
                    Some((seat.party, Event::Released { code, reason }))
                }
                Some(seat) => Some((
                    seat.party,
                    Event::PeerLeft {
                        code,
                        reason: format!(
                            "the customer {}; waiting for them to come back",
                            departure.verb()
                        ),
                    },
                )),
                None => None,
            };
            (event, told)
        } else {
            let name = case.expert.take().map(|seat| seat.name).unwrap_or_default();
            let told = case.customer.map(|customer| {
                let reason = format!(
                    "expert {name} {}; you are waiting for an expert again",
                    departure.verb()
                );
                (customer, Event::PeerLeft { code, reason })
            });
            (format!("expert {name} {}", departure.verb()), told)
        };
        let case = self.case_mut(code);
        if was_paired {
            case.record
                .transition(
                    CaseState::Pending,
                    now,
                    HistoryKind::Left,
                    event,
                    "move to pending",
                )
                .expect("in progress may always go back to pending");
            out.push(Effect::Unpair { code, drain });
        } else {
            case.record.note(now, HistoryKind::Left, event);
        }
        if let Some((peer, event)) = told {
            if matches!(event, Event::Released { .. }) {
                case.record.note(
                    now,
                    HistoryKind::Released,
                    "the expert was let go to take the next case",
                );
            }
            // A peer that was only seated (not paired) hears nothing it could act on.
            if was_paired || matches!(event, Event::Released { .. }) {
                out.push(Effect::Notify { party: peer, event });
            }
        }
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        self.refresh_queue(code, now, out);
    }

    /// A new connection proved a seat of `code` that `old` still holds (a customer's resume
    /// secret, or the same expert): the old connection is forgotten and closed with
    /// "replaced by a newer connection", and a session it was in ends at once (its streams
    /// died with it). The caller seats the new connection next.
    pub(super) fn replace_party(
        &mut self,
        now: Timestamp,
        code: SessionCode,
        old: PartyId,
        out: &mut Vec<Effect>,
    ) {
        self.parties.remove(&old);
        let case = self.case_mut(code);
        let who = if case.customer == Some(old) {
            case.customer = None;
            "customer".to_string()
        } else {
            let name = case.expert.take().map(|seat| seat.name).unwrap_or_default();
            format!("expert {name}")
        };
        let event = format!("{who} came back on a new connection; the old one was closed");
        if case.record.state == CaseState::InProgress {
            case.record
                .transition(
                    CaseState::Pending,
                    now,
                    HistoryKind::Replaced,
                    event,
                    "move to pending",
                )
                .expect("in progress may always go back to pending");
            out.push(Effect::Unpair { code, drain: false });
        } else {
            case.record.note(now, HistoryKind::Replaced, event);
        }
        out.push(Effect::Disconnect {
            party: old,
            code: close_code::REPLACED,
            reason: format!(
                "replaced by a newer connection to case {code} (it was resumed elsewhere)"
            ),
        });
    }
}
