//! Customers' messages: while waiting, a case's customer adds words ("it also beeps"). Each
//! goes into the case's history (kind [`HistoryKind::Message`]) and becomes the case's
//! latest message, which staff see in the queue and on the case.
//!
//! Only open cases take messages (a closed case has nobody left to read them), and only
//! from their own customer: the one attached on this connection, or one proving it with
//! the resume secret, as for closing. How often a case may take one is the shell's to
//! bound (`server::case_rate`): the core has no clock of its own to count minutes by.
//!
//! The other way, the expert in a session may ask its customer to run the native client
//! ([`Broker::invite_native`]): a browser customer cannot share a screen or a service, so
//! the expert's word reaches the customer's page as an event, and the history records it.

use sosq::protocol::{CaseInfo, Event, HistoryKind, Timestamp};

use super::{Broker, BrokerError, Effect, PartyId, Persist, MAX_DESCRIPTION_CHARS};

/// The longest customer message accepted, in characters: as long as a description, the
/// bound the largest replies (a page of history) are checked with.
pub const MAX_MESSAGE_CHARS: usize = MAX_DESCRIPTION_CHARS;

impl Broker {
    /// The customer on `party` (or proving ownership with `secret`) adds the message `text`
    /// to its open case `typed`. Returns the case as the customer sees it. Pushes one
    /// [`Persist::Save`]; nobody is notified (staff see it on their next look at the queue
    /// or the case, and the queue's watchers through the next change).
    ///
    /// Errors: a malformed or unknown code; [`BrokerError::NotYourCase`]; an empty message
    /// or one over [`MAX_MESSAGE_CHARS`].
    pub fn add_message(
        &mut self,
        now: Timestamp,
        party: PartyId,
        typed: &str,
        secret: Option<&str>,
        text: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(typed)?;
        self.check_customer_owns(party, code, secret)?;
        let text = checked_message(text)?;
        let waiting = self.queue.contains(code);
        let case = self.case_mut(code);
        case.record.note(
            now,
            HistoryKind::Message,
            format!("customer message: {text}"),
        );
        case.record.last_message = Some(text.to_string());
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        let info = case.info();
        if waiting {
            // Staff watching the queue see the new words with the next update.
            self.queue.touch();
        }
        Ok(info)
    }

    /// The expert `expert` (by user name, from any of its connections), in a session on
    /// `typed`, asks the case's customer to run the native client and share the local
    /// service `share` (`host:port`, as `sosq join --share` takes it). Pushes one
    /// [`Persist::Save`] (the history records it) and an [`Event::NativeInvite`] to the
    /// customer. Returns the case.
    ///
    /// Errors: a malformed or unknown code; [`BrokerError::InvalidInput`] when `expert` is
    /// not the case's expert, the customer is not connected, or `share` is not an address.
    pub fn invite_native(
        &mut self,
        now: Timestamp,
        expert: &str,
        typed: &str,
        share: &str,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code = self.open_code(typed)?;
        let share = sosq::protocol::check_share(share).map_err(BrokerError::InvalidInput)?;
        let case = &self.cases[&code];
        if case.expert.as_ref().is_none_or(|seat| seat.name != expert) {
            return Err(BrokerError::InvalidInput(format!(
                "you are not the expert in a session on case {code}; connect to it first"
            )));
        }
        let Some(customer) = case.customer else {
            return Err(BrokerError::InvalidInput(format!(
                "the customer of case {code} is not connected; ask again once it is back"
            )));
        };
        let case = self.case_mut(code);
        case.record.note(
            now,
            HistoryKind::NativeInvite,
            format!("expert {expert} asked the customer to run sosq and share {share}"),
        );
        out.push(Effect::Persist(Persist::Save(case.record.clone())));
        out.push(Effect::Notify {
            party: customer,
            event: Event::NativeInvite {
                code,
                expert: expert.to_string(),
                share: share.to_string(),
            },
        });
        Ok(case.info())
    }
}

/// The message as kept: trimmed, not empty, at most [`MAX_MESSAGE_CHARS`].
fn checked_message(text: &str) -> Result<&str, BrokerError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BrokerError::InvalidInput("the message is empty".into()));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return Err(BrokerError::InvalidInput(format!(
            "the message is longer than {MAX_MESSAGE_CHARS} characters; send it in parts"
        )));
    }
    Ok(text)
}
