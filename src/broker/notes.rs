//! Staff notes: an expert's or admin's words on a case, kept in its history as an entry of
//! kind [`HistoryKind::Note`], on an open case (which the core holds) or a closed or
//! expired one (which only the store holds).
//!
//! A note on a stored case is not a read-modify-write of the whole record: the shell reads
//! the record only to check it and to answer, and the core asks the store to append the one
//! entry ([`Persist::Note`]). The store applies changes in submission order and appends to
//! whatever history it holds then, so two notes at once both stay, a note submitted after a
//! close lands after the close's entries even if the record read was older, and a note on a
//! case deleted meanwhile is dropped instead of bringing the case back.

use sosq::protocol::{CaseInfo, HistoryEntry, HistoryKind, Timestamp};
use sosq::SessionCode;

use super::{
    Broker, BrokerError, CaseRecord, Effect, Persist, MAX_DESCRIPTION_CHARS, MAX_HISTORY_ENTRIES,
};

/// The longest staff note accepted, in characters: as long as a description or an
/// escalation's reason, the bound the largest replies (a page of history) are checked with.
pub const MAX_NOTE_CHARS: usize = MAX_DESCRIPTION_CHARS;

/// The most entries a history may have for a note to be added: one slot stays free for the
/// entry that folds later events of an open case (see [`CaseRecord::note`]), so a note is
/// never folded away, and a note never carries on into a folding entry.
pub const NOTE_ROOM: usize = MAX_HISTORY_ENTRIES - 1;

impl Broker {
    /// Adds the staff note `text` to the case `typed` names: to the open case the core
    /// holds, or else to `stored`, the record the shell read from the store for a case the
    /// core does not hold (closed or expired). Returns the case as staff see it.
    ///
    /// Pushes one [`Persist::Save`] (open case) or [`Persist::Note`] (stored case), never a
    /// notification: nobody is told, and a customer never sees a note.
    ///
    /// Errors: a malformed code; an empty note or one over [`MAX_NOTE_CHARS`]; a history
    /// with no room left ([`NOTE_ROOM`]); [`BrokerError::UnknownCode`] when no case has the
    /// code; a stored case that is still open but not held here (it is being closed or
    /// moved at this very moment: try again).
    pub fn add_note(
        &mut self,
        now: Timestamp,
        typed: &str,
        text: &str,
        stored: Option<&CaseRecord>,
        out: &mut Vec<Effect>,
    ) -> Result<CaseInfo, BrokerError> {
        let code: SessionCode = typed.parse()?;
        let text = checked_note(text)?;
        if let Some(case) = self.cases.get_mut(&code) {
            has_room(&case.record)?;
            case.record.note(now, HistoryKind::Note, text);
            out.push(Effect::Persist(Persist::Save(case.record.clone())));
            return Ok(case.info());
        }
        let record = match stored {
            Some(record) if record.code == code => record,
            _ => return Err(BrokerError::UnknownCode(code)),
        };
        if record.state.is_open() {
            return Err(BrokerError::InvalidInput(format!(
                "case {code} is changing hands right now; add the note again in a moment"
            )));
        }
        has_room(record)?;
        out.push(Effect::Persist(Persist::Note {
            code,
            entry: HistoryEntry {
                at: now,
                state: record.state,
                kind: HistoryKind::Note,
                event: text.to_string(),
                actor: None,
                address: None,
            },
        }));
        Ok(record.info(false, None))
    }
}

/// The note as kept: trimmed, not empty, at most [`MAX_NOTE_CHARS`].
fn checked_note(text: &str) -> Result<&str, BrokerError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BrokerError::InvalidInput("the note is empty".into()));
    }
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(BrokerError::InvalidInput(format!(
            "the note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(text)
}

/// Refuses a note on a history that has no room for one (see [`NOTE_ROOM`]).
fn has_room(record: &CaseRecord) -> Result<(), BrokerError> {
    if record.history.len() >= NOTE_ROOM {
        return Err(BrokerError::InvalidInput(format!(
            "case {}'s history is full ({MAX_HISTORY_ENTRIES} entries); the note was not added",
            record.code
        )));
    }
    Ok(())
}
