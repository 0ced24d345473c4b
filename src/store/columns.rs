//! How a case is laid out in SQL columns, whichever database holds it (the SQLite store and
//! the PostgreSQL store share it, so the two cannot drift): times as milliseconds since the
//! epoch, codes as their number, states, origins and actors as the words the CLI uses.

use sosq::protocol::{Actor, ActorRole, CaseOrigin, Timestamp};
use sosq::SessionCode;

/// The columns of `cases`, in the order each store's row reader takes them.
pub const CASE_COLUMNS: &str = "code, origin, created_by, customer, description, state, \
     created_at, updated_at, expires_at, waiting_since, resume_secret_hash, team, assigned_to, \
     priority, response_due, first_response_at, last_message, attachments";

/// A stored attachment count (a negative one, which no sosqd writes, reads as none).
pub fn count_from(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A stored time.
pub fn millis(at: Timestamp) -> i64 {
    i64::try_from(at.0).unwrap_or(i64::MAX)
}

/// A time as stored; a negative one (no sosqd writes it) reads as the epoch.
pub fn timestamp(value: i64) -> Timestamp {
    Timestamp(u64::try_from(value).unwrap_or(0))
}

/// A stored code.
pub fn code_column(code: SessionCode) -> i64 {
    code.number() as i64
}

/// A code as stored. Errors: a number that is not a session code.
pub fn code_from_column(n: i64) -> Result<SessionCode, String> {
    u64::try_from(n)
        .ok()
        .and_then(SessionCode::from_number)
        .ok_or_else(|| format!("{n} is not a session code"))
}

/// The origin as (origin, created_by) columns.
pub fn origin_columns(origin: &CaseOrigin) -> (&'static str, Option<&str>) {
    match origin {
        CaseOrigin::Sos => ("sos", None),
        CaseOrigin::CreatedByExpert(expert) => ("expert", Some(expert.as_str())),
    }
}

/// The origin from its (origin, created_by) columns. Errors: words no sosqd writes.
pub fn origin_from_columns(origin: &str, created_by: Option<String>) -> Result<CaseOrigin, String> {
    match (origin, created_by) {
        ("sos", _) => Ok(CaseOrigin::Sos),
        ("expert", Some(expert)) => Ok(CaseOrigin::CreatedByExpert(expert)),
        (other, _) => Err(format!("unknown case origin {other:?}")),
    }
}

/// An actor as (role, name) columns.
pub fn actor_columns(actor: Option<&Actor>) -> (Option<&'static str>, Option<&str>) {
    match actor {
        Some(actor) => (Some(actor.role.as_str()), actor.name.as_deref()),
        None => (None, None),
    }
}

/// An actor from its (role, name) columns. Errors: a role no sosqd writes.
pub fn actor_from_columns(
    role: Option<String>,
    name: Option<String>,
) -> Result<Option<Actor>, String> {
    let Some(role) = role else {
        return Ok(None);
    };
    Ok(Some(Actor {
        role: role.parse::<ActorRole>()?,
        name,
    }))
}
