//! Redaction of sensitive values before anything is stored (SPEC §3, §12).

use serde_json::Value;

use crate::event::Change;
use crate::json::field_segments;

/// The placeholder that replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// The key names redacted when a tenant has not registered its own list.
pub const DEFAULT_SENSITIVE_KEYS: [&str; 13] = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "api_key",
    "authorization",
    "cookie",
    "credit_card",
    "card_number",
    "cvv",
    "ssn",
];

/// Decides which keys are sensitive and replaces their values.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: Vec<String>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_SENSITIVE_KEYS)
    }
}

impl Redactor {
    /// A redactor for these key names (compared lower-case, with `-` read as `_`).
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            names: names.into_iter().map(|n| normalise(n.as_ref())).collect(),
        }
    }

    /// Whether a key is sensitive: lower-cased with `-` read as `_`, it equals a listed name or
    /// ends with `_` followed by one (`user_password`, `csrf_token`).
    pub fn is_sensitive(&self, key: &str) -> bool {
        let key = normalise(key);
        self.names.iter().any(|name| {
            key == *name
                || (key.len() > name.len()
                    && key.ends_with(name.as_str())
                    && key.as_bytes()[key.len() - name.len() - 1] == b'_')
        })
    }

    /// Replaces, at any depth, the value of every sensitive key by `"[REDACTED]"`. A null value
    /// stays null.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if self.is_sensitive(key) {
                        if !v.is_null() {
                            *v = Value::String(REDACTED.to_owned());
                        }
                    } else {
                        self.redact_value(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }

    /// Redacts a list of changes. A change whose field path passes through a sensitive key
    /// (`password`, `credentials.password`, `secret.value`, `tokens[0]`) keeps its field and
    /// shows that it changed, but both values become `"[REDACTED]"` (a null stays null). Other
    /// values are redacted inside, key by key.
    pub fn redact_changes(&self, changes: &mut [Change]) {
        for change in changes {
            if field_segments(&change.field).any(|s| self.is_sensitive(s)) {
                for v in [&mut change.old_value, &mut change.new_value] {
                    if !v.is_null() {
                        *v = Value::String(REDACTED.to_owned());
                    }
                }
            } else {
                self.redact_value(&mut change.old_value);
                self.redact_value(&mut change.new_value);
            }
        }
    }
}

fn normalise(key: &str) -> String {
    key.to_lowercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_keys_follow_the_suffix_rule() {
        let r = Redactor::default();
        for key in [
            "password",
            "PASSWORD",
            "user_password",
            "csrf-token",
            "X-Api-Key",
            "ssn",
        ] {
            assert!(r.is_sensitive(key), "{key}");
        }
        for key in [
            "passwords",
            "tokenizer",
            "mytoken",
            "name",
            "secretary",
            "_",
        ] {
            assert!(!r.is_sensitive(key), "{key}");
        }
    }

    #[test]
    fn nested_values_are_redacted_and_nulls_stay() {
        let r = Redactor::default();
        let mut v =
            json!({"a": {"password": "x", "list": [{"token": 1}]}, "cookie": null, "ok": 1});
        r.redact_value(&mut v);
        assert_eq!(
            v,
            json!({"a": {"password": "[REDACTED]", "list": [{"token": "[REDACTED]"}]}, "cookie": null, "ok": 1})
        );
    }

    #[test]
    fn changes_keep_showing_that_a_secret_changed() {
        let r = Redactor::default();
        let mut changes = vec![
            Change {
                field: "password".into(),
                old_value: json!("a"),
                new_value: json!("b"),
            },
            Change {
                field: "api_key[0]".into(),
                old_value: json!(null),
                new_value: json!("t"),
            },
            Change {
                field: "tokens[0]".into(),
                old_value: json!("a"),
                new_value: json!("t"),
            },
            Change {
                field: "profile".into(),
                old_value: json!({"secret": 1}),
                new_value: json!(2),
            },
        ];
        r.redact_changes(&mut changes);
        assert_eq!(changes[0].old_value, json!(REDACTED));
        assert_eq!(changes[0].new_value, json!(REDACTED));
        assert_eq!(changes[1].old_value, json!(null));
        assert_eq!(changes[1].new_value, json!(REDACTED));
        // `tokens` is not a listed name: the last segment of `tokens[0]` is `tokens`.
        assert_eq!(changes[2].new_value, json!("t"));
        assert_eq!(changes[3].old_value, json!({"secret": REDACTED}));
        assert_eq!(changes[3].new_value, json!(2));
    }
}
