//! Field-level changes between two versions of a value, computed exactly as the server computes
//! them from `before`/`after`: the same diff (`sealtrail_model::diff`) and the same default
//! redaction, so an application may send `changes` or `before`/`after` and store the same thing.

use sealtrail_model::{Change, Redactor};
use serde::Serialize;

/// The changes that turn `before` into `after`, both serialised to JSON objects, with values
/// under sensitive keys (`password`, `token`, …) redacted as the server redacts them. The two
/// may be of different types (a new record against `json!({})`, say).
pub fn changes<A: Serialize + ?Sized, B: Serialize + ?Sized>(
    before: &A,
    after: &B,
) -> Result<Vec<Change>, serde_json::Error> {
    let before = serde_json::to_value(before)?;
    let after = serde_json::to_value(after)?;
    let mut out = sealtrail_model::diff(&before, &after);
    Redactor::default().redact_changes(&mut out);
    Ok(out)
}
