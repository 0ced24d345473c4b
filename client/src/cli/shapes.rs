//! The JSON shapes `sosq --json` prints where the protocol's own serde shape is not the
//! one scripts should rely on (`docs/sosq-json.schema.json` is the whole contract). A case's
//! `origin` is the one such place: the wire's enum would print as a bare string for an SOS
//! case and as an object for an expert's, so here it is one object shape for both.

use serde_json::{json, Value};
use sosq::protocol::{Actor, ActorRole, CaseInfo, CaseOrigin, CasesPage};

/// A case as `--json` prints it: the protocol's fields, with `origin` as
/// `{"kind": "sos" | "created", "by": ACTOR}`.
pub fn case(case: &CaseInfo) -> Value {
    let mut value = json!(case);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("origin".into(), origin(&case.origin, &case.customer));
    }
    value
}

/// How a case came to be, as one object shape: `kind` says how, `by` who opened it (an
/// actor, as in history entries): the customer who pressed the SOS button, or the expert
/// who created it.
pub fn origin(origin: &CaseOrigin, customer: &str) -> Value {
    let (kind, by) = match origin {
        CaseOrigin::Sos => ("sos", Actor::new(ActorRole::Customer, customer)),
        CaseOrigin::CreatedByExpert(expert) => {
            ("created", Actor::new(ActorRole::Expert, expert.clone()))
        }
    };
    json!({ "kind": kind, "by": by })
}

/// A page of cases: the protocol's fields, each case as [`case`] prints it.
pub fn cases_page(page: &CasesPage) -> Value {
    let mut value = json!(page);
    if let Some(fields) = value.as_object_mut() {
        let cases: Vec<Value> = page.cases.iter().map(case).collect();
        fields.insert("cases".into(), Value::Array(cases));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_origins_have_one_shape() {
        let sos = origin(&CaseOrigin::Sos, "Alice");
        let created = origin(&CaseOrigin::CreatedByExpert("ana".into()), "Bob");
        assert_eq!(
            sos,
            json!({"kind": "sos", "by": {"role": "customer", "name": "Alice"}})
        );
        assert_eq!(
            created,
            json!({"kind": "created", "by": {"role": "expert", "name": "ana"}})
        );
    }
}
