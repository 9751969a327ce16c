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

/// Appends `text` to `out` as a JSON string, quotes included, escaped byte for byte as
/// `serde_json` escapes it: `\"`, `\\`, the short escapes `\b \t \n \f \r`, `\u00xx` for the
/// other control characters, everything else as it is. Exports write millions of strings; this
/// skips eight bytes at a time past text that needs no escape.
pub fn push_str(out: &mut Vec<u8>, text: &str) {
    escape_into(out, text.as_bytes());
}

/// [`push_str`] for bytes not yet known to be UTF-8, checked on the way: `false` (and `out`
/// holding a partial string) when they are not. ASCII text, known valid from the scan that
/// escapes it, is not checked a second time.
pub fn push_utf8(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    !escape_into(out, bytes) || std::str::from_utf8(bytes).is_ok()
}

/// Eight copies of a byte.
const fn lanes(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// The high bit of each byte of `w` that is a control character, a quote or a backslash. A
/// byte's high bit can be set wrongly only above a byte that is truly set, so "none" is exact.
fn specials(w: u64) -> u64 {
    const HIGH: u64 = lanes(0x80);
    let has_zero = |x: u64| x.wrapping_sub(lanes(1)) & !x;
    let below_space = w.wrapping_sub(lanes(0x20)) & !w;
    (below_space | has_zero(w ^ lanes(b'"')) | has_zero(w ^ lanes(b'\\'))) & HIGH
}

/// Writes the quoted, escaped string; says whether any byte was outside ASCII. Eight bytes are
/// looked at together while eight are left, one by one where a word holds something to escape
/// and at the end.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut wide = 0u64;
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            let w = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
            wide |= w;
            if specials(w) == 0 {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        wide |= u64::from(b);
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0..0x20 => b'u',
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
    wide & lanes(0x80) != 0
}

#[cfg(test)]
mod push_str_tests {
    use super::*;

    fn pushed(text: &str) -> String {
        let mut out = b"x".to_vec();
        push_str(&mut out, text);
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn escapes_as_serde_json_does_at_every_offset() {
        for special in [
            "\"", "\\", "\n", "\u{1}", "\u{1f}", "\t", "\u{7f}", "é", "\u{8}",
        ] {
            for before in 0..17 {
                let text = format!("{}{special}{}", "a".repeat(before), "b".repeat(9));
                let want = serde_json::to_string(&text).expect("a string");
                assert_eq!(pushed(&text), format!("x{want}"), "{text:?}");
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_and_ascii_is_not_checked_twice() {
        let mut out = Vec::new();
        assert!(push_utf8(&mut out, b"plain ascii, longer than eight"));
        assert_eq!(out, b"\"plain ascii, longer than eight\"");
        for bad in [&b"abcdefgh\xff"[..], b"\xc3", b"0123456789\xe2\x82"] {
            assert!(!push_utf8(&mut Vec::new(), bad), "{bad:?}");
        }
        out.clear();
        assert!(push_utf8(&mut out, "Zoë \"q\"\n".as_bytes()));
        assert_eq!(
            out,
            serde_json::to_string("Zoë \"q\"\n")
                .expect("a string")
                .as_bytes()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_written_as_serde_json_writes_it(text in "(?s).{0,40}", ctl in proptest::collection::vec(0u8..0x80, 0..40)) {
            let ascii = String::from_utf8(ctl).expect("ASCII");
            for t in [text.as_str(), ascii.as_str()] {
                let mut out = Vec::new();
                proptest::prop_assert!(push_utf8(&mut out, t.as_bytes()));
                proptest::prop_assert_eq!(String::from_utf8(out).expect("UTF-8"), serde_json::to_string(t).expect("a string"));
            }
        }
    }
}
