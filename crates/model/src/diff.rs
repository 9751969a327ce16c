//! Field-level diffs of two JSON documents (SPEC §12 "Diffs").
//!
//! The rules: nested objects are compared key by key and named by dotted path (`address.city`);
//! arrays are compared by index (`tags[2]`); an added key has `old_value: null` and a removed one
//! `new_value: null`; an added or removed object or array yields one change per leaf; a value that
//! changes type is one change carrying both whole values. Keys are visited in sorted order, so the
//! result is deterministic.

use serde_json::Value;

use crate::event::Change;

/// The changes that turn `before` into `after`.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(String::new(), before, after, &mut out);
    out
}

fn walk(path: String, old: &Value, new: &Value, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let child = join_key(&path, key);
                match (o.get(key), n.get(key)) {
                    (Some(ov), Some(nv)) => walk(child, ov, nv, out),
                    (None, Some(nv)) => leaves(child, nv, Side::Added, out),
                    (Some(ov), None) => leaves(child, ov, Side::Removed, out),
                    (None, None) => unreachable!("key came from one of the two maps"),
                }
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            for i in 0..o.len().max(n.len()) {
                let child = format!("{path}[{i}]");
                match (o.get(i), n.get(i)) {
                    (Some(ov), Some(nv)) => walk(child, ov, nv, out),
                    (None, Some(nv)) => leaves(child, nv, Side::Added, out),
                    (Some(ov), None) => leaves(child, ov, Side::Removed, out),
                    (None, None) => unreachable!("index is below one of the two lengths"),
                }
            }
        }
        _ if old == new => {}
        _ => out.push(Change {
            field: path,
            old_value: old.clone(),
            new_value: new.clone(),
        }),
    }
}

#[derive(Clone, Copy)]
enum Side {
    Added,
    Removed,
}

fn leaves(path: String, value: &Value, side: Side, out: &mut Vec<Change>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                leaves(join_key(&path, key), v, side, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(format!("{path}[{i}]"), v, side, out);
            }
        }
        // A key that appears or vanishes with a null value changes nothing visible.
        Value::Null => {}
        _ => {
            let (old_value, new_value) = match side {
                Side::Added => (Value::Null, value.clone()),
                Side::Removed => (value.clone(), Value::Null),
            };
            out.push(Change {
                field: path,
                old_value,
                new_value,
            });
        }
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn check(before: Value, after: Value, expected: &[(&str, Value, Value)]) {
        let got: Vec<(String, Value, Value)> = diff(&before, &after)
            .into_iter()
            .map(|c| (c.field, c.old_value, c.new_value))
            .collect();
        let want: Vec<(String, Value, Value)> = expected
            .iter()
            .map(|(f, o, n)| (f.to_string(), o.clone(), n.clone()))
            .collect();
        assert_eq!(got, want, "diff of {before} and {after}");
    }

    #[test]
    fn diffs_follow_the_spec_rules() {
        check(json!({"a": 1}), json!({"a": 1}), &[]);
        check(
            json!({"a": 1}),
            json!({"a": 2}),
            &[("a", json!(1), json!(2))],
        );
        check(json!({}), json!({"a": 1}), &[("a", json!(null), json!(1))]);
        check(json!({"a": 1}), json!({}), &[("a", json!(1), json!(null))]);
        check(
            json!({"address": {"city": "Oslo", "zip": "0150"}}),
            json!({"address": {"city": "Bergen", "zip": "0150"}}),
            &[("address.city", json!("Oslo"), json!("Bergen"))],
        );
        check(
            json!({}),
            json!({"address": {"city": "Oslo", "geo": {"lat": 1}}}),
            &[
                ("address.city", json!(null), json!("Oslo")),
                ("address.geo.lat", json!(null), json!(1)),
            ],
        );
        check(
            json!({"tags": ["a", "b", "c"]}),
            json!({"tags": ["a", "x"]}),
            &[
                ("tags[1]", json!("b"), json!("x")),
                ("tags[2]", json!("c"), json!(null)),
            ],
        );
        check(
            json!({"items": [{"qty": 1}]}),
            json!({"items": [{"qty": 2}, {"qty": 3}]}),
            &[
                ("items[0].qty", json!(1), json!(2)),
                ("items[1].qty", json!(null), json!(3)),
            ],
        );
        check(
            json!({"v": {"a": 1}}),
            json!({"v": [1]}),
            &[("v", json!({"a": 1}), json!([1]))],
        );
        check(
            json!({"v": 1}),
            json!({"v": "1"}),
            &[("v", json!(1), json!("1"))],
        );
        check(
            json!({"v": null}),
            json!({"v": 0}),
            &[("v", json!(null), json!(0))],
        );
        check(json!({}), json!({"v": null}), &[]);
        check(
            json!({}),
            json!({"e": {}}),
            &[("e", json!(null), json!({}))],
        );
    }

    proptest::proptest! {
        #[test]
        fn a_document_never_differs_from_itself(v in arb_json()) {
            proptest::prop_assert!(diff(&v, &v).is_empty());
        }

        #[test]
        fn every_change_names_a_distinct_field(a in arb_json(), b in arb_json()) {
            let changes = diff(&a, &b);
            let mut fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            let n = fields.len();
            fields.sort_unstable();
            fields.dedup();
            proptest::prop_assert_eq!(n, fields.len());
            for c in &changes {
                proptest::prop_assert_ne!(&c.old_value, &c.new_value);
            }
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..5).prop_map(|n| json!(n)),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        proptest::collection::btree_map("[a-d]", value, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }
}
