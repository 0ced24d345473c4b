//! The admin table's filter as the console's forms and links carry it: every field of the
//! wire's [`CaseFilter`] (state, team, priority, text in customer or description, created
//! more than some time ago, created between, closed between), read from a query string or
//! a form, turned into the wire's filter, described in words for a confirmation, and
//! written back as a query string or hidden fields.

use axum::http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;
use sosq::protocol::{CaseFilter, CaseState, Priority, Timestamp};

use super::layout::PageError;
use super::queue::encode;

/// The case table's filter, from the query string (or the delete form's fields). Every
/// field is text as typed; empty means "any".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// A state name.
    pub state: String,
    /// A team's name.
    pub team: String,
    /// A priority name.
    pub priority: String,
    /// Text in the customer's name or the description (any case).
    pub text: String,
    /// Created more than this long ago ("1d", "36h").
    pub older: String,
    /// Created on or after this day (`2026-11-30`) or time (RFC 3339).
    pub created_after: String,
    /// Created before this day or time.
    pub created_before: String,
    /// Closed or expired on or after this day or time.
    pub closed_after: String,
    /// Closed or expired before this day or time.
    pub closed_before: String,
    /// The page: right after this case (the token `sosq cases` prints).
    pub after: String,
}

/// A time as `sosq cases --created-after` takes it ([`Timestamp::parse_given`]), ages
/// counted back from now; errors name the field.
fn parse_time(field: &str, given: &str) -> Result<Timestamp, PageError> {
    Timestamp::parse_given(given, Timestamp::now()).map_err(|e| bad(format!("{field}: {e}")))
}

fn bad(message: String) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, message)
}

impl Filter {
    /// The fields by name, in the order forms and query strings carry them.
    fn fields(&self) -> [(&'static str, &String); 9] {
        [
            ("state", &self.state),
            ("team", &self.team),
            ("priority", &self.priority),
            ("text", &self.text),
            ("older", &self.older),
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
            ("closed_after", &self.closed_after),
            ("closed_before", &self.closed_before),
        ]
    }

    /// Sets field `name` from a form; whether it is one of the filter's.
    pub fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "state" => &mut self.state,
            "team" => &mut self.team,
            "priority" => &mut self.priority,
            "text" => &mut self.text,
            "older" => &mut self.older,
            "created_after" => &mut self.created_after,
            "created_before" => &mut self.created_before,
            "closed_after" => &mut self.closed_after,
            "closed_before" => &mut self.closed_before,
            _ => return false,
        };
        *slot = value;
        true
    }

    /// The wire's filter (the daemon checks ranges and lengths and says what is wrong).
    /// Errors: a field that does not parse.
    pub fn to_wire(&self) -> Result<CaseFilter, PageError> {
        let text = |t: &String| Some(t.trim().to_string()).filter(|t| !t.is_empty());
        let time = |field: &str, t: &String| match t.trim() {
            "" => Ok(None),
            given => parse_time(field, given).map(Some),
        };
        Ok(CaseFilter {
            state: match self.state.trim() {
                "" => None,
                name => Some(name.parse::<CaseState>().map_err(bad)?),
            },
            older_than_ms: match self.older.trim() {
                "" => None,
                age => Some(
                    humantime::parse_duration(age)
                        .map_err(|e| bad(format!("{age:?} is not an age such as 1d or 36h: {e}")))?
                        .as_millis() as u64,
                ),
            },
            team: text(&self.team),
            priority: match self.priority.trim() {
                "" => None,
                name => Some(name.parse::<Priority>().map_err(bad)?),
            },
            created_from: time("created after", &self.created_after)?,
            created_to: time("created before", &self.created_before)?,
            closed_from: time("closed after", &self.closed_after)?,
            closed_to: time("closed before", &self.closed_before)?,
            text: text(&self.text),
        })
    }

    /// The filter in words, for the confirmation and the result ("state closed, team
    /// billing").
    pub fn describe(&self) -> String {
        let words = |name: &str| {
            match name {
                "older" => "created more than … ago",
                "created_after" => "created on or after",
                "created_before" => "created before",
                "closed_after" => "closed on or after",
                "closed_before" => "closed before",
                "text" => "text",
                other => other,
            }
            .to_string()
        };
        let parts: Vec<String> = self
            .fields()
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| match *k {
                "older" => format!("created more than {} ago", v.trim()),
                "text" => format!("text {:?} in customer or description", v.trim()),
                _ => format!("{} {}", words(k), v.trim()),
            })
            .collect();
        if parts.is_empty() {
            "no filter (every case)".into()
        } else {
            parts.join(", ")
        }
    }

    /// The filter as a query string, without the page.
    pub fn query(&self) -> String {
        self.fields()
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The filter as hidden form fields (the delete forms carry it).
    pub fn hidden(&self) -> Markup {
        html! {
            @for (name, value) in self.fields() {
                input type="hidden" name=(name) value=(value);
            }
        }
    }

    /// The filter's inputs, for the table's filter form.
    pub fn inputs(&self) -> Markup {
        html! {
            label { "State " select name="state" {
                option value="" { "any" }
                @for s in CaseState::ALL { option value=(s) selected[self.state == s.as_str()] { (s) } }
            } }
            label { "Team " input type="text" name="team" value=(self.team) size="10"; }
            label { "Priority " select name="priority" {
                option value="" { "any" }
                @for p in Priority::ALL { option value=(p) selected[self.priority == p.to_string()] { (p) } }
            } }
            label { "Text " input type="search" name="text" value=(self.text) size="14" placeholder="customer or description"; }
            label { "Created more than " input type="text" name="older" value=(self.older) size="5" placeholder="1d"; " ago" }
            label { "Created from " input type="date" name="created_after" value=(self.created_after); }
            label { "to " input type="date" name="created_before" value=(self.created_before); }
            label { "Closed from " input type="date" name="closed_after" value=(self.closed_after); }
            label { "to " input type="date" name="closed_before" value=(self.closed_before); }
        }
    }
}
