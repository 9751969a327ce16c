//! JSON helpers that the validators and the search filters share.

use serde_json::Value;

/// The deepest nesting of arrays and objects in `bytes`, scanning without parsing.
///
/// Runs before the parser so that a 10 000-deep document is refused cheaply and without
/// recursion. Brackets inside strings are ignored; malformed input is left to the parser.
pub fn max_depth(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// JSON containment, as PostgreSQL's `@>` defines it: every key of an object in `needle` is in
/// `haystack` with a contained value; every element of an array in `needle` is contained in some
/// element of the array in `haystack`; scalars must be equal.
pub fn contains(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::Object(h), Value::Object(n)) => n
            .iter()
            .all(|(k, nv)| h.get(k).is_some_and(|hv| contains(hv, nv))),
        (Value::Array(h), Value::Array(n)) => {
            n.iter().all(|nv| h.iter().any(|hv| contains(hv, nv)))
        }
        // A scalar needle is contained in an array holding it (PostgreSQL's special case).
        (Value::Array(h), n) if !n.is_object() && !n.is_array() => h.iter().any(|hv| hv == n),
        (h, n) => h == n,
    }
}

/// The names along a change's field path: `a.b[2].c` gives `a`, `b`, `c`; indices are dropped.
pub fn field_segments(field: &str) -> impl Iterator<Item = &str> {
    field
        .split('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment))
        .filter(|segment| !segment.is_empty())
}

/// Whether a change of `field` is a change of `wanted`: the same path, or a path inside it
/// (`address` matches `address.city` and `tags` matches `tags[2]`).
pub fn field_matches(field: &str, wanted: &str) -> bool {
    field == wanted
        || (field.starts_with(wanted)
            && matches!(field.as_bytes().get(wanted.len()), Some(b'.') | Some(b'[')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(max_depth(br#"{"a":"[[[[{{{"}"#), 1);
        assert_eq!(max_depth(br#"{"a":"\"[[","b":[[1]]}"#), 3);
        assert_eq!(max_depth(b"42"), 0);
        assert_eq!(max_depth("[".repeat(10_000).as_bytes()), 10_000);
    }

    #[test]
    fn containment_follows_postgres_semantics() {
        let doc = json!({"a": 1, "b": {"c": [1, 2, {"d": "x"}]}, "e": null});
        let cases = [
            (json!({}), true),
            (json!({"a": 1}), true),
            (json!({"a": 2}), false),
            (json!({"b": {"c": [2]}}), true),
            (json!({"b": {"c": [{"d": "x"}]}}), true),
            (json!({"b": {"c": [3]}}), false),
            (json!({"e": null}), true),
            (json!({"z": null}), false),
            (json!({"b": {"c": 1}}), true),
        ];
        for (needle, expected) in cases {
            assert_eq!(contains(&doc, &needle), expected, "{needle}");
        }
    }

    #[test]
    fn field_paths_split_and_match() {
        assert_eq!(
            field_segments("a.b[2].c").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(field_segments("tokens[0]").collect::<Vec<_>>(), ["tokens"]);
        assert!(field_matches("address.city", "address"));
        assert!(field_matches("tags[2]", "tags"));
        assert!(field_matches("status", "status"));
        assert!(!field_matches("statuses", "status"));
        assert!(!field_matches("address", "address.city"));
    }
}

/// A JSON number as a whole non-negative integer: `7` and `7.0` alike (JSON Schema counts both
/// as integers), `None` for fractions, negatives and numbers past `u64`.
pub fn whole_number(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

#[cfg(test)]
mod whole_number_tests {
    use super::*;

    #[test]
    fn integral_floats_are_whole_numbers_and_fractions_are_not() {
        let n = |text: &str| whole_number(&serde_json::from_str(text).expect("a number"));
        assert_eq!(n("7"), Some(7));
        assert_eq!(n("110.0"), Some(110));
        assert_eq!(n("1e2"), Some(100));
        assert_eq!(n("7.5"), None);
        assert_eq!(n("-1"), None);
        assert_eq!(n("-0.0"), Some(0));
        assert_eq!(n("1e300"), None);
    }
}
