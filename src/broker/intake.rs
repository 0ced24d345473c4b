//! Cases coming in: a customer's SOS (a new case, the customer seated and queued), a case an
//! expert creates by hand, and a customer joining a case by its code (the first customer of
//! an expert-created case binds it; anyone after needs its resume secret, and a customer
//! proving it takes over from its old connection at once).

use sosq::protocol::{CaseInfo, CaseOrigin, CaseState, HistoryKind, Priority, Timestamp};
use sosq::SessionCode;

use super::{
    hash_secret, secret_matches, Attached, Broker, BrokerError, Case, CaseRecord, Effect, PartyId,
    Persist, GENERAL, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS,
};

impl Broker {
    /// The customer's SOS button: a new case, customer attached, `pending`, in its team's
    /// queue by priority and response deadline (or straight to an expert waiting for one).
    pub fn open_sos(
        &mut self,
        now: Timestamp,
        party: PartyId,
        request: SosRequest<'_>,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        self.ensure_unattached(party)?;
        let customer = checked_name("customer name", request.customer)?;
        let description = checked_description(request.description)?;
        let group = checked_name("group", request.group)?;
        let priority = request.priority;
        let code = self.new_case(now, CaseOrigin::Sos, customer, description)?;
        let secret = self.codes.resume_secret();
        let response_due = now.plus(self.config.response_targets.of(priority));
        let case = self.case_mut(code);
        case.record.group = group;
        case.record.resume_secret_hash = Some(hash_secret(&secret));
        case.record.waiting_since = Some(now);
        case.record.priority = priority;
        case.record.response_due = Some(response_due);
        let event = format!("customer {} asked for help (SOS)", case.record.customer);
        self.seat_customer(now, code, party, event, out);
        Ok(self.attached(code, Some(secret)))
    }

    /// An expert creates a case by hand; it is `new` until someone attaches.
    pub fn create(
        &mut self,
        now: Timestamp,
        expert: &str,
        customer: &str,
        description: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let customer = checked_name("customer name", customer)?;
        let description = checked_description(description)?;
        let code = self.new_case(
            now,
            CaseOrigin::CreatedByExpert(expert.to_string()),
            customer,
            description,
        )?;
        let case = self.case_mut(code);
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        Ok(case.info())
    }

    /// A customer attaches by code: the first customer of an expert-created case binds it
    /// (and gets a resume secret); anyone after that needs the secret.
    pub fn join(
        &mut self,
        now: Timestamp,
        party: PartyId,
        code: &str,
        customer: &str,
        secret: Option<&str>,
        out: &mut Vec<Effect>,
    ) -> Result<Attached, BrokerError> {
        self.ensure_unattached(party)?;
        let customer = checked_name("customer name", customer)?;
        let code = self.open_code(code)?;
        let case = &self.cases[&code];
        // Ownership first: a stranger learns nothing, not even whether the customer is online.
        let bound = match (&case.record.resume_secret_hash, secret) {
            (Some(hash), Some(given)) if secret_matches(given, hash) => true,
            (Some(_), _) => return Err(BrokerError::NotYourCase(code)),
            (None, _) => false,
        };
        match case.customer {
            // Proven by its secret: the new connection takes over at once from the old
            // one (half-alive, or a window the customer forgot).
            Some(old) if bound => self.replace_party(now, code, old, out),
            Some(_) => return Err(BrokerError::CustomerAlreadyConnected(code)),
            None => {}
        }
        let new_secret = (!bound).then(|| self.codes.resume_secret());
        let case = self.case_mut(code);
        let event = match &new_secret {
            Some(secret) => {
                case.record.resume_secret_hash = Some(hash_secret(secret));
                format!("customer {customer} joined")
            }
            None => format!("customer {customer} came back"),
        };
        self.seat_customer(now, code, party, event, out);
        Ok(self.attached(code, new_secret))
    }

    pub(super) fn new_case(
        &mut self,
        now: Timestamp,
        origin: CaseOrigin,
        customer: String,
        description: String,
    ) -> Result<SessionCode, BrokerError> {
        if self.cases.len() >= self.config.max_open_cases {
            return Err(BrokerError::TooManyCases(self.config.max_open_cases));
        }
        let code = self.codes.issue().ok_or(BrokerError::NoCodeReserved)?;
        let expires_at = now.plus(self.config.case_ttl);
        let created_by = match &origin {
            CaseOrigin::Sos => format!("created by customer {customer}"),
            CaseOrigin::CreatedByExpert(expert) => format!("created by expert {expert}"),
        };
        let mut record = CaseRecord {
            code,
            origin,
            customer,
            description,
            state: CaseState::New,
            created_at: now,
            updated_at: now,
            expires_at,
            waiting_since: None,
            group: GENERAL.to_string(),
            assigned_to: None,
            priority: Priority::Normal,
            response_due: None,
            first_response_at: None,
            resume_secret_hash: None,
            history: Vec::new(),
            last_message: None,
            attachments: 0,
        };
        record.note(now, HistoryKind::Created, created_by);
        self.deadlines.set(code, expires_at);
        self.cases.insert(
            code,
            Case {
                record,
                customer: None,
                expert: None,
            },
        );
        Ok(code)
    }

    /// The reply to a customer that opened or joined `code`; its position is in it, so the
    /// live updates need not repeat it.
    pub(super) fn attached(
        &mut self,
        code: SessionCode,
        resume_secret: Option<String>,
    ) -> Attached {
        let position = self.queue.position(code);
        if let Some(position) = position {
            self.queue.told(code, position);
        }
        Attached {
            case: self.cases[&code].info(),
            resume_secret,
            position,
        }
    }
}

pub(super) fn checked_name(what: &str, name: &str) -> Result<String, BrokerError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(BrokerError::InvalidInput(format!("the {what} is empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(BrokerError::InvalidInput(format!(
            "the {what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(BrokerError::InvalidInput(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(name.to_string())
}

/// The fields of an SOS request.
#[derive(Debug, Clone, Copy)]
pub struct SosRequest<'a> {
    /// The customer's name.
    pub customer: &'a str,
    /// What the customer needs help with.
    pub description: &'a str,
    /// How urgent.
    pub priority: Priority,
    /// The team queue to wait in.
    pub group: &'a str,
}

impl<'a> SosRequest<'a> {
    /// An SOS at `normal` priority in the `general` team's queue (what the button sends
    /// when the customer picks neither).
    pub fn general(customer: &'a str, description: &'a str) -> Self {
        Self {
            customer,
            description,
            priority: Priority::Normal,
            group: GENERAL,
        }
    }
}

fn checked_description(description: &str) -> Result<String, BrokerError> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(BrokerError::InvalidInput(format!(
            "the description is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(description.to_string())
}
