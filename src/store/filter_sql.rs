//! A [`CaseSelection`] as an SQL condition over `cases`, shared by the SQLite and the
//! PostgreSQL store so the two select the same cases (the memory store's
//! [`CaseSelection::matches`] is the reference the contract suite holds both to).
//!
//! Only the fields a selection gives become conditions: a fixed `(?1 IS NULL OR ...)`
//! form would let neither planner pick an index, while an exact condition lets it seek
//! the filter indexes (SQLite schema 4, PostgreSQL schema 3) and walk them in creation
//! order, so a filtered page costs about the page divided by how selective the remaining
//! conditions are. The text condition is never served by an index: it is checked on each
//! row the other conditions leave (a scan of the filtered range, stopped by `LIMIT`).

use crate::broker::CaseSelection;
use crate::store::columns::millis;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A text column's value.
    Text(String),
    /// An integer column's value (times in milliseconds, codes, limits).
    Int(i64),
}

/// Which database the condition is written for: placeholders and ASCII folding differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?N` placeholders; `lower()` folds ASCII letters only (no ICU in the bundled build).
    Sqlite,
    /// `$N` placeholders; `lower()` follows the column's collation, so it is asked for in
    /// the "C" collation, where it folds ASCII letters only, like the other stores (and
    /// about 20 times faster than the same folding with `translate`).
    Postgres,
}

/// A condition and the values its placeholders take, in order.
#[derive(Debug, Clone)]
pub struct Condition {
    dialect: Dialect,
    /// The condition (`1 = 1` when the selection is empty).
    pub sql: String,
    /// The values of the placeholders `1..=values.len()`.
    pub values: Vec<Value>,
}

impl Condition {
    /// The condition `selection` stands for.
    pub fn of(selection: &CaseSelection, dialect: Dialect) -> Condition {
        let mut condition = Condition {
            dialect,
            sql: String::new(),
            values: Vec::new(),
        };
        let mut parts: Vec<String> = Vec::new();
        if let Some(state) = selection.state {
            let p = condition.bind(Value::Text(state.as_str().into()));
            parts.push(format!("state = {p}"));
        }
        if let Some(from) = selection.created_from {
            let p = condition.bind(Value::Int(millis(from)));
            parts.push(format!("created_at >= {p}"));
        }
        if let Some(before) = selection.created_before {
            let p = condition.bind(Value::Int(millis(before)));
            parts.push(format!("created_at < {p}"));
        }
        if selection.finished_only() {
            // Spelled like the partial index `cases_finished` (SQLite) so it can serve it.
            parts.push("state IN ('closed', 'expired')".into());
        }
        if let Some(from) = selection.closed_from {
            let p = condition.bind(Value::Int(millis(from)));
            parts.push(format!("updated_at >= {p}"));
        }
        if let Some(before) = selection.closed_before {
            let p = condition.bind(Value::Int(millis(before)));
            parts.push(format!("updated_at < {p}"));
        }
        if let Some(team) = &selection.team {
            let p = condition.bind(Value::Text(team.clone()));
            parts.push(format!("team = {p}"));
        }
        if let Some(priority) = selection.priority {
            let p = condition.bind(Value::Text(priority.as_str().into()));
            parts.push(format!("priority = {p}"));
        }
        if let Some(text) = &selection.text {
            let p = condition.bind(Value::Text(text.to_ascii_lowercase()));
            let (customer, description) =
                (dialect.folded("customer"), dialect.folded("description"));
            let found = match dialect {
                Dialect::Sqlite => "instr",
                Dialect::Postgres => "strpos",
            };
            parts.push(format!(
                "({found}({customer}, {p}) > 0 OR {found}({description}, {p}) > 0)"
            ));
        }
        condition.sql = if parts.is_empty() {
            "1 = 1".into()
        } else {
            parts.join(" AND ")
        };
        condition
    }

    /// Adds a value and returns its placeholder, for the parts of a query after the
    /// condition (a cursor, a limit).
    pub fn bind(&mut self, value: Value) -> String {
        self.values.push(value);
        let n = self.values.len();
        match self.dialect {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

impl Dialect {
    /// `column` with its ASCII letters lowercased and nothing else changed.
    fn folded(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("lower({column})"),
            Dialect::Postgres => format!("lower({column} COLLATE \"C\")"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sosq::protocol::{CaseState, Timestamp};

    #[test]
    fn only_given_fields_become_conditions_in_order() {
        let empty = Condition::of(&CaseSelection::default(), Dialect::Sqlite);
        assert_eq!((empty.sql.as_str(), empty.values.len()), ("1 = 1", 0));
        let selection = CaseSelection {
            state: Some(CaseState::Closed),
            closed_before: Some(Timestamp(9)),
            text: Some("AbC".into()),
            ..CaseSelection::default()
        };
        let mut pg = Condition::of(&selection, Dialect::Postgres);
        assert_eq!(
            pg.sql,
            "state = $1 AND state IN ('closed', 'expired') AND updated_at < $2 AND \
             (strpos(lower(customer COLLATE \"C\"), $3) > 0 OR \
             strpos(lower(description COLLATE \"C\"), $3) > 0)"
        );
        assert_eq!(
            pg.values,
            [
                Value::Text("closed".into()),
                Value::Int(9),
                Value::Text("abc".into())
            ]
        );
        assert_eq!(pg.bind(Value::Int(1)), "$4");
    }
}
