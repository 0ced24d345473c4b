//! Cases going out of service: closed by an expert or its own customer, deleted by an admin
//! (the store first, then the sessions of the open ones), or expired when their deadline
//! comes; each ends its sessions and frees its parties' seats.

use sosq::protocol::{close_code, CaseInfo, CaseState, Event, HistoryKind, Timestamp};
use sosq::SessionCode;

use super::{humanize, Broker, BrokerError, Case, CaseSelection, Closer, Effect, PartyId, Persist};

impl Broker {
    /// Closes a case: by any expert, or by its own customer.
    pub fn close(
        &mut self,
        now: Timestamp,
        closer: Closer<'_>,
        code: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(code)?;
        let who = match closer {
            Closer::Expert(name) => format!("expert {name}"),
            Closer::Customer { party, secret } => {
                self.check_customer_owns(party, code, secret)?;
                "the customer".to_string()
            }
        };
        let mut case = self.take_case(code);
        case.record
            .transition(
                CaseState::Closed,
                now,
                HistoryKind::Closed,
                format!("closed by {who}"),
                "close",
            )
            .expect("open cases may always close");
        self.stats.closed += 1;
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        self.end_sessions(&case, out, |party| Effect::Notify {
            party,
            event: Event::SessionEnded {
                code,
                reason: format!("case {code} was closed by {who}"),
            },
        });
        Ok(case.info())
    }

    /// The open cases `selection` matches (a bulk delete by filter ends their sessions).
    pub fn open_matching(&self, selection: &CaseSelection) -> Vec<SessionCode> {
        self.cases
            .values()
            .filter(|case| selection.matches(&case.record))
            .map(|case| case.record.code)
            .collect()
    }

    /// Admin bulk delete, open-case side: ends the sessions of the open cases selected and
    /// asks the store to delete every selected case. Codes are released once the store
    /// reports which cases it deleted ([`Broker::release_codes`]).
    pub fn delete(
        &mut self,
        now: Timestamp,
        admin: &str,
        selection: Persist,
        out: &mut Vec<Effect>,
    ) -> Result<(), BrokerError> {
        let doomed: Vec<SessionCode> = match &selection {
            Persist::Delete(codes) => {
                let mut open: Vec<SessionCode> = codes
                    .iter()
                    .copied()
                    .filter(|code| self.cases.contains_key(code))
                    .collect();
                // An admin may name a code twice; end its session once.
                open.sort_unstable();
                open.dedup();
                open
            }
            Persist::DeleteWhere(filter) => self
                .cases
                .values()
                .filter(|case| filter.matches(&case.record))
                .map(|case| case.record.code)
                .collect(),
            Persist::Save(_)
            | Persist::Note { .. }
            | Persist::Attach { .. }
            | Persist::Audit(_) => {
                return Err(BrokerError::InvalidInput(
                    "a delete needs codes or a filter".into(),
                ))
            }
        };
        out.push(Effect::Persist(selection));
        for code in doomed {
            let mut case = self.take_case(code);
            case.record.note(
                now,
                HistoryKind::Deleted,
                format!("deleted by admin {admin}"),
            );
            let reason = format!("case {code} was deleted by an administrator");
            self.end_sessions(&case, out, |party| Effect::Disconnect {
                party,
                code: close_code::DELETED,
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// Expires every open case whose deadline is at or before `now`: its code stops working
    /// and its parties are disconnected with the reason.
    pub fn expire_due(&mut self, now: Timestamp, out: &mut Vec<Effect>) -> Vec<SessionCode> {
        let due = self.deadlines.take_due(now);
        for &code in &due {
            let ttl = humanize(self.config.case_ttl);
            let mut case = self.take_case(code);
            case.record
                .transition(
                    CaseState::Expired,
                    now,
                    HistoryKind::Expired,
                    format!("expired: not closed within {ttl} of creation"),
                    "expire",
                )
                .expect("open cases may always expire");
            self.stats.expired += 1;
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
            let reason = format!("case {code} expired: it was not closed within {ttl}");
            self.end_sessions(&case, out, |party| Effect::Disconnect {
                party,
                code: close_code::EXPIRED,
                reason: reason.clone(),
            });
        }
        due
    }

    /// Removes an open case from every live structure (the store keeps it).
    pub(super) fn take_case(&mut self, code: SessionCode) -> Case {
        let case = self
            .cases
            .remove(&code)
            .expect("callers look the case up first");
        self.queue.forget(code);
        self.deadlines.clear(code);
        if let Some(party) = case.customer {
            self.parties.remove(&party);
        }
        if let Some(seat) = &case.expert {
            self.parties.remove(&seat.party);
        }
        case
    }

    /// Ends a removed case's relay and tells each attached party with `tell`.
    pub(super) fn end_sessions(
        &self,
        case: &Case,
        out: &mut Vec<Effect>,
        tell: impl Fn(PartyId) -> Effect,
    ) {
        let expert = case.expert.as_ref().map(|seat| seat.party);
        if case.customer.is_some() && expert.is_some() {
            out.push(Effect::Unpair {
                code: case.record.code,
                drain: false,
            });
        }
        for party in case.customer.into_iter().chain(expert) {
            out.push(tell(party));
        }
    }
}
