//! Field-level changes between two versions of a value, computed exactly as the server computes
//! them from `before`/`after`: the same diff (`sealtrail_model::diff`) and the same default
//! redaction, so an application may send `changes` or `before`/`after` and store the same thing.
//!
//! Field attributes are serde's: `#[serde(skip)]` leaves a field out of the diff and
//! `#[serde(rename = "…")]` names it; to redact a field that is not sensitive by name, list it
//! in a [`Redactor`] for [`changes_with`] (the change still shows, with `"[REDACTED]"` values).

use sealtrail_model::{Change, Redactor};
use serde::Serialize;

/// The changes that turn `before` into `after`, both serialised to JSON objects, with values
/// under sensitive keys (`password`, `token`, …) redacted as the server redacts them. The two
/// may be of different types (a new record against `json!({})`, say).
pub fn changes<A: Serialize + ?Sized, B: Serialize + ?Sized>(
    before: &A,
    after: &B,
) -> Result<Vec<Change>, serde_json::Error> {
    changes_with(before, after, &Redactor::default())
}

/// [`changes`] with another redaction list (for example the default names plus your own).
pub fn changes_with<A: Serialize + ?Sized, B: Serialize + ?Sized>(
    before: &A,
    after: &B,
    redactor: &Redactor,
) -> Result<Vec<Change>, serde_json::Error> {
    let before = serde_json::to_value(before)?;
    let after = serde_json::to_value(after)?;
    let mut out = sealtrail_model::diff(&before, &after);
    redactor.redact_changes(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Account {
        name: String,
        #[serde(rename = "pin_code")]
        pin: String,
        #[serde(skip)]
        _cache: u32,
    }

    #[test]
    fn serde_attributes_skip_and_rename_and_a_redactor_hides_values() {
        let before = Account {
            name: "a".into(),
            pin: "1".into(),
            _cache: 1,
        };
        let after = Account {
            name: "b".into(),
            pin: "2".into(),
            _cache: 2,
        };
        let plain = changes(&before, &after).expect("diff");
        let fields: Vec<&str> = plain.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["name", "pin_code"]);
        let redactor = Redactor::new(["pin_code", "password"]);
        let hidden = changes_with(&before, &after, &redactor).expect("diff");
        assert_eq!(hidden[1].field, "pin_code");
        assert_eq!(hidden[1].old_value, json!("[REDACTED]"));
        assert_eq!(hidden[0].new_value, json!("b"));
    }
}
