//! The harness: one real [`Broker`] and the model side by side, each operation applied to
//! both and every observable compared after every step.

use super::*;

// ----- the harness ---------------------------------------------------------------------

/// A broker and the model, stepped together.
pub(super) struct Harness {
    pub(super) broker: Broker,
    pub(super) model: Model,
    pub(super) now: Timestamp,
}

/// Everything observable about the core, for "a refused command changes nothing": every
/// case record (history included) with its seats, the queue, the deadline, the codes held
/// and every party's attachment.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    pub(super) cases: Vec<(CaseRecord, Option<PartyId>, Option<ExpertSeat>)>,
    pub(super) queue: Vec<sosq::protocol::QueueEntry>,
    pub(super) next_deadline: Option<Timestamp>,
    pub(super) codes_held: usize,
    pub(super) attached: Vec<Option<SessionCode>>,
}

/// What a step of the core answered, reduced to what the model predicts.
pub(super) fn core_answer_attached(attached: &Attached) -> Answer {
    Answer::Attached(
        attached.case.code,
        attached.resume_secret.is_some(),
        attached.position,
    )
}

impl Harness {
    pub(super) fn new(seed: u64) -> Harness {
        let config = BrokerConfig {
            case_ttl: Duration::from_millis(TTL_MS),
            max_open_cases: MAX_OPEN,
            ..BrokerConfig::default()
        };
        Harness {
            broker: Broker::new(config, Box::new(StdRng::seed_from_u64(seed))),
            model: Model::default(),
            now: Timestamp(T0),
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            cases: self
                .model
                .seen
                .iter()
                .filter_map(|code| self.broker.case(*code))
                .map(|case| (case.record.clone(), case.customer, case.expert.clone()))
                .collect(),
            queue: self.broker.queue_view(),
            next_deadline: self.broker.next_deadline(),
            codes_held: self.broker.codes_held(),
            attached: CUSTOMERS
                .iter()
                .chain(EXPERTS.iter())
                .map(|party| self.broker.attached_case(*party))
                .collect(),
        }
    }

    /// Runs one operation on both sides and compares everything.
    pub(super) fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let before = self.snapshot();
        let now = self.now;
        let mut out = Vec::new();
        let mut fx = Fx::default();
        let (core, model): (Result<Answer, BrokerError>, Result<Answer, MErr>) = match op {
            Op::OpenSos { customer, name: n } => {
                let party = CUSTOMERS[*customer];
                let name = name(n);
                let core = self.broker.open_sos(
                    now,
                    party,
                    SosRequest::general(&name, "printer on fire"),
                    &mut out,
                );
                let model = self.model.unattached(party).and_then(|()| {
                    if !name_ok(&name) {
                        return Err(MErr::InvalidInput);
                    }
                    if self.model.open_count() >= MAX_OPEN {
                        return Err(MErr::TooMany);
                    }
                    Ok(())
                });
                let model = match (&core, model) {
                    (Ok(attached), Ok(())) => {
                        let code = attached.case.code;
                        prop_assert!(
                            !self.model.cases.iter().any(|c| c.code == code),
                            "code {code} issued while still held"
                        );
                        let i = self.model.new_case(code, true, &name, now);
                        self.model.cases[i].customer = Some(party);
                        self.model.cases[i].secret = attached.resume_secret.clone();
                        self.model.after_seat(i, now, &mut fx);
                        Ok(Answer::Attached(code, true, self.model.position(code)))
                    }
                    (_, Ok(())) => Ok(Answer::Done),
                    (_, Err(e)) => Err(e),
                };
                if let Ok(attached) = &core {
                    self.check_info(&attached.case)?;
                }
                (core.map(|a| core_answer_attached(&a)), model)
            }
            Op::Create { expert, name: n } => {
                let expert = expert_name(EXPERTS[*expert]);
                let name = name(n);
                let core = self
                    .broker
                    .create(now, &expert, &name, "vpn is down", &mut out);
                let model = if !name_ok(&name) {
                    Err(MErr::InvalidInput)
                } else if self.model.open_count() >= MAX_OPEN {
                    Err(MErr::TooMany)
                } else {
                    Ok(())
                };
                let model = match (&core, model) {
                    (Ok(info), Ok(())) => {
                        prop_assert!(
                            !self.model.cases.iter().any(|c| c.code == info.code),
                            "code {} issued while still held",
                            info.code
                        );
                        self.model.new_case(info.code, false, &name, now);
                        Ok(Answer::Case(info.code))
                    }
                    (_, Ok(())) => Ok(Answer::Done),
                    (_, Err(e)) => Err(e),
                };
                if let Ok(info) = &core {
                    self.check_info(info)?;
                }
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::Join {
                customer,
                code,
                secret: s,
                name: n,
            } => {
                let party = CUSTOMERS[*customer];
                let typed = typed(&self.model, code);
                let given = secret(&self.model, &typed, s);
                let name = name(n);
                let core =
                    self.broker
                        .join(now, party, &typed.text, &name, given.as_deref(), &mut out);
                let model = (|| {
                    self.model.unattached(party)?;
                    if !name_ok(&name) {
                        return Err(MErr::InvalidInput);
                    }
                    let i = self.model.lookup(&typed)?;
                    let case = &self.model.cases[i];
                    // Ownership first: a stranger learns nothing, not even whether the
                    // customer is online.
                    let fresh = match (&case.secret, &given) {
                        (Some(theirs), Some(given)) if theirs.trim() == given.trim() => false,
                        (Some(_), _) => return Err(MErr::NotYours(case.code)),
                        (None, _) => true,
                    };
                    match case.customer {
                        Some(old) if !fresh => Ok((i, fresh, Some(old))),
                        Some(_) => Err(MErr::CustomerTaken(case.code)),
                        None => Ok((i, fresh, None)),
                    }
                })();
                let model = match model {
                    Ok((i, fresh, old)) => {
                        if let Some(old) = old {
                            self.model.replace(i, old, now, &mut fx);
                        }
                        if fresh {
                            self.model.cases[i].secret =
                                core.as_ref().ok().and_then(|a| a.resume_secret.clone());
                        }
                        self.model.cases[i].customer = Some(party);
                        self.model.after_seat(i, now, &mut fx);
                        let code = self.model.cases[i].code;
                        Ok(Answer::Attached(code, fresh, self.model.position(code)))
                    }
                    Err(e) => Err(e),
                };
                if let Ok(attached) = &core {
                    self.check_info(&attached.case)?;
                }
                (core.map(|a| core_answer_attached(&a)), model)
            }
            Op::Pull { expert, wait } => {
                let party = EXPERTS[*expert];
                let expert = expert_name(party);
                let core =
                    self.broker
                        .pull(now, party, PullRequest::general(&expert, *wait), &mut out);
                let model = self.model.unattached(party).and_then(|()| {
                    match self.model.queue().first().copied() {
                        Some(code) => {
                            let i = self.model.find_open(code).expect("queued cases are open");
                            self.model.cases[i].expert = Some((party, expert.clone()));
                            self.model.cases[i].pulled = true;
                            self.model.after_seat(i, now, &mut fx);
                            Ok(Answer::Case(code))
                        }
                        None if *wait => {
                            self.model.idle.push_back((party, expert.clone()));
                            Ok(Answer::Waiting)
                        }
                        None => match self.model.offline_count() {
                            0 => Err(MErr::QueueEmpty),
                            offline => Err(MErr::NobodyOnline(offline)),
                        },
                    }
                });
                if let Ok(Some(info)) = &core {
                    self.check_info(info)?;
                }
                let core = core.map(|case| match case {
                    Some(info) => Answer::Case(info.code),
                    None => Answer::Waiting,
                });
                (core, model)
            }
            Op::Connect { expert, code } => {
                let party = EXPERTS[*expert];
                let expert = expert_name(party);
                let typed = typed(&self.model, code);
                let core = self
                    .broker
                    .connect(now, party, &expert, &typed.text, false, &mut out);
                let model = (|| {
                    self.model.unattached(party)?;
                    let i = self.model.lookup(&typed)?;
                    let pulled = match self.model.cases[i].expert.clone() {
                        // The same expert again takes over, keeping how it came.
                        Some((old, name)) if name == expert => {
                            let pulled = self.model.cases[i].pulled;
                            self.model.replace(i, old, now, &mut fx);
                            pulled
                        }
                        Some(_) => return Err(MErr::ExpertTaken(self.model.cases[i].code)),
                        None => false,
                    };
                    self.model.cases[i].expert = Some((party, expert.clone()));
                    self.model.cases[i].pulled = pulled;
                    self.model.after_seat(i, now, &mut fx);
                    Ok(Answer::Case(self.model.cases[i].code))
                })();
                if let Ok(info) = &core {
                    self.check_info(info)?;
                }
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::Disconnect { party } => {
                let party = CUSTOMERS
                    .iter()
                    .chain(EXPERTS.iter())
                    .nth(*party)
                    .copied()
                    .expect("a party of the pool");
                self.broker
                    .disconnect(now, party, Departure::Lost, &mut out);
                self.model.idle.retain(|(p, _)| *p != party);
                if let Some(code) = self.model.attached_of(party) {
                    let i = self
                        .model
                        .find_open(code)
                        .expect("attached to an open case");
                    let case = &mut self.model.cases[i];
                    let was_paired = case.state == CaseState::InProgress;
                    let mut released = None;
                    let peer = if case.customer == Some(party) {
                        case.customer = None;
                        match case.expert.clone() {
                            // A pulling expert is let go for the next case.
                            Some((expert, _)) if case.pulled => {
                                case.expert = None;
                                released = Some(expert);
                                None
                            }
                            seat => seat.map(|e| e.0),
                        }
                    } else {
                        case.expert = None;
                        case.customer
                    };
                    if was_paired {
                        case.set_state(CaseState::Pending, now);
                        fx.unpairs.push(code);
                        fx.peer_left.extend(peer);
                    }
                    fx.released.extend(released);
                    self.model.refresh(i, now, &mut fx);
                }
                (Ok(Answer::Done), Ok(Answer::Done))
            }
            Op::CloseByExpert { expert, code } => {
                let expert = expert_name(EXPERTS[*expert]);
                let typed = typed(&self.model, code);
                let core = self
                    .broker
                    .close(now, Closer::Expert(&expert), &typed.text, &mut out);
                let model = self.model.lookup(&typed).map(|i| {
                    self.model.end(i, CaseState::Closed, now, &mut fx);
                    Answer::Case(self.model.cases[i].code)
                });
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::CloseByCustomer {
                customer,
                code,
                secret: s,
            } => {
                let party = CUSTOMERS[*customer];
                let typed = typed(&self.model, code);
                let given = secret(&self.model, &typed, s);
                let closer = Closer::Customer {
                    party,
                    secret: given.as_deref(),
                };
                let core = self.broker.close(now, closer, &typed.text, &mut out);
                let model = self.model.lookup(&typed).and_then(|i| {
                    self.model.owns(i, party, &given)?;
                    self.model.end(i, CaseState::Closed, now, &mut fx);
                    Ok(Answer::Case(self.model.cases[i].code))
                });
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::View {
                customer,
                code,
                secret: s,
            } => {
                let party = CUSTOMERS[*customer];
                let typed = typed(&self.model, code);
                let given = secret(&self.model, &typed, s);
                let core = self
                    .broker
                    .customer_view(party, &typed.text, given.as_deref());
                let model = self.model.lookup(&typed).and_then(|i| {
                    self.model.owns(i, party, &given)?;
                    Ok(Answer::Case(self.model.cases[i].code))
                });
                if let Ok(info) = &core {
                    self.check_info(info)?;
                }
                (core.map(|info| Answer::Case(info.code)), model)
            }
            Op::Tick { ms } => {
                self.now = Timestamp(self.now.0 + ms);
                let now = self.now;
                let expired = self.broker.expire_due(now, &mut out);
                let mut due: Vec<(Timestamp, SessionCode, usize)> = self
                    .model
                    .cases
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.open() && c.expires_at <= now)
                    .map(|(i, c)| (c.expires_at, c.code, i))
                    .collect();
                due.sort();
                for &(_, _, i) in &due {
                    self.model.end(i, CaseState::Expired, now, &mut fx);
                }
                let due: Vec<SessionCode> = due.iter().map(|d| d.1).collect();
                prop_assert_eq!(expired, due, "expire_due returned other codes");
                (Ok(Answer::Done), Ok(Answer::Done))
            }
            Op::DeleteCodes { codes } => {
                let typed: Vec<SessionCode> = codes
                    .iter()
                    .filter_map(|choice| typed(&self.model, choice).code)
                    .collect();
                let selection = Persist::Delete(typed.clone());
                let core = self.broker.delete(now, "root", selection.clone(), &mut out);
                prop_assert_eq!(out.first(), Some(&Effect::Persist(selection)));
                let deleted = self.model.delete(|c| typed.contains(&c.code), &mut fx);
                self.broker.release_codes(&deleted);
                (core.map(|()| Answer::Done), Ok(Answer::Done))
            }
            Op::DeleteWhere {
                state,
                older_than_ms,
            } => {
                let filter = CaseFilter {
                    state: *state,
                    older_than_ms: *older_than_ms,
                    ..CaseFilter::default()
                };
                let selection = CaseSelection::resolve(&filter, now)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let persist = Persist::DeleteWhere(selection.clone());
                let core = self.broker.delete(now, "root", persist.clone(), &mut out);
                prop_assert_eq!(out.first(), Some(&Effect::Persist(persist)));
                let before = older_than_ms.map(|ms| now.0.saturating_sub(ms));
                let state = *state;
                let deleted = self.model.delete(
                    |c| {
                        state.is_none_or(|s| c.state == s)
                            && before.is_none_or(|b| c.created_at.0 < b)
                    },
                    &mut fx,
                );
                self.broker.release_codes(&deleted);
                (core.map(|()| Answer::Done), Ok(Answer::Done))
            }
            Op::DeleteNothing => {
                let some = self.model.seen.first().copied();
                let record_of =
                    some.and_then(|code| self.broker.case(code).map(|c| c.record.clone()));
                match record_of {
                    Some(record) => {
                        let core = self
                            .broker
                            .delete(now, "root", Persist::Save(record), &mut out);
                        (core.map(|()| Answer::Done), Err(MErr::InvalidInput))
                    }
                    None => (Ok(Answer::Done), Ok(Answer::Done)),
                }
            }
        };

        match (&core, &model) {
            (Ok(core), Ok(model)) => prop_assert_eq!(core, model, "answers differ"),
            (Err(core), Err(model)) => {
                prop_assert!(
                    model.matches(core),
                    "refusals differ: core {core:?}, model {model:?}"
                );
                prop_assert!(out.is_empty(), "a refused command pushed {out:?}");
                prop_assert!(
                    self.snapshot() == before,
                    "a refused command changed the core"
                );
            }
            _ => prop_assert!(false, "core {core:?} but model {model:?}"),
        }
        prop_assert_eq!(Fx::of(&out), fx.sorted(), "effects differ");
        self.check_pairs(&out)?;
        self.compare()
    }

    /// A returned view must match the model's case.
    pub(super) fn check_info(&self, info: &CaseInfo) -> Result<(), TestCaseError> {
        let case = self
            .model
            .cases
            .iter()
            .find(|c| c.code == info.code)
            .ok_or_else(|| TestCaseError::fail(format!("unknown case {} returned", info.code)))?;
        prop_assert_eq!(info.state, case.state);
        prop_assert_eq!(info.customer_online, case.customer.is_some());
        prop_assert_eq!(&info.expert, &case.expert.as_ref().map(|e| e.1.clone()));
        prop_assert_eq!(&info.customer, &case.customer_name);
        Ok(())
    }

    /// Every `Pair` effect names a case that now has exactly those two seats taken.
    pub(super) fn check_pairs(&self, out: &[Effect]) -> Result<(), TestCaseError> {
        for effect in out {
            if let Effect::Pair {
                code,
                customer,
                expert,
            } = effect
            {
                let case = self
                    .broker
                    .case(*code)
                    .ok_or_else(|| TestCaseError::fail(format!("paired a closed case {code}")))?;
                prop_assert_eq!(case.customer, Some(*customer));
                prop_assert_eq!(case.expert.as_ref().map(|e| e.party), Some(*expert));
                prop_assert_eq!(case.record.state, CaseState::InProgress);
            }
        }
        Ok(())
    }

    /// The whole observable state of the core against the model, plus the core's own
    /// invariants.
    pub(super) fn compare(&self) -> Result<(), TestCaseError> {
        let b = &self.broker;
        let m = &self.model;
        prop_assert_eq!(b.open_cases(), m.open_count(), "open-case count");
        prop_assert_eq!(b.codes_held(), m.cases.len(), "codes held");
        let mut seated = Vec::new();
        for case in &m.cases {
            let Some(core) = b.case(case.code) else {
                prop_assert!(!case.open(), "case {} is open in the model only", case.code);
                continue;
            };
            prop_assert!(case.open(), "case {} is open in the core only", case.code);
            let r = &core.record;
            prop_assert_eq!(r.state, case.state, "state of {}", case.code);
            prop_assert_eq!(r.created_at, case.created_at);
            prop_assert_eq!(r.updated_at, case.updated_at, "updated_at of {}", case.code);
            prop_assert_eq!(r.expires_at, case.expires_at);
            prop_assert_eq!(matches!(r.origin, CaseOrigin::Sos), case.sos);
            prop_assert_eq!(&r.customer, &case.customer_name);
            prop_assert_eq!(
                core.customer,
                case.customer,
                "customer seat of {}",
                case.code
            );
            prop_assert_eq!(
                core.expert.as_ref().map(|e| (e.party, e.name.clone())),
                case.expert.clone(),
                "expert seat of {}",
                case.code
            );
            match (&r.resume_secret_hash, &case.secret) {
                (None, None) => {}
                (Some(hash), Some(secret)) => prop_assert!(secret_matches(secret, hash)),
                (hash, secret) => prop_assert!(false, "secret {secret:?} vs hash {hash:?}"),
            }
            // Invariants of the core on its own.
            if r.state == CaseState::InProgress {
                prop_assert!(core.customer.is_some() && core.expert.is_some());
            }
            let last = r.history.last().map(|h| h.state);
            prop_assert_eq!(last, Some(r.state), "history ends in the state");
            for pair in r.history.windows(2) {
                let (a, b) = (pair[0].state, pair[1].state);
                let probe = CaseRecord {
                    state: a,
                    ..r.clone()
                };
                prop_assert!(a == b || probe.may_become(b), "history {a} -> {b}");
            }
            seated.extend(core.customer);
            seated.extend(core.expert.as_ref().map(|e| e.party));
        }
        let before = seated.len();
        seated.sort();
        seated.dedup();
        prop_assert_eq!(seated.len(), before, "a party sits in two cases");
        for party in CUSTOMERS.iter().chain(EXPERTS.iter()) {
            prop_assert_eq!(
                b.attached_case(*party),
                m.attached_of(*party),
                "attachment of {:?}",
                party
            );
        }
        let queue = b.queue_view();
        let expected = m.queue();
        prop_assert_eq!(
            queue.iter().map(|e| (e.code, e.online)).collect::<Vec<_>>(),
            m.view(),
            "queue order, offline customers in their place"
        );
        let mut position = 0;
        for entry in &queue {
            if entry.online {
                position += 1;
                prop_assert_eq!(entry.position, Some(position));
            } else {
                prop_assert_eq!(entry.position, None);
            }
            let case = m.cases.iter().find(|c| c.code == entry.code);
            prop_assert_eq!(Some(entry.waiting_since), case.map(|c| c.created_at));
        }
        prop_assert_eq!(position as usize, expected.len());
        if !m.idle.is_empty() {
            prop_assert!(expected.is_empty(), "experts wait while customers wait");
        }
        let next = m
            .cases
            .iter()
            .filter(|c| c.open())
            .map(|c| c.expires_at)
            .min();
        prop_assert_eq!(b.next_deadline(), next, "next deadline");
        Ok(())
    }
}
