//! Words, as full-text search (`q`) reads them, declared once.
//!
//! A **word** is a maximal run of letters and digits (Unicode alphanumerics), lower-cased;
//! everything else separates words. `invoice.paid` holds the words `invoice` and `paid`,
//! `alice@example.com` holds `alice`, `example` and `com`, `Ünïcode` is `ünïcode`. A UUID
//! (`8-4-4-4-12` hexadecimal digits, not part of a longer run) is one word, so an identifier is
//! found whole: `req 550E8400-E29B-41D4-A716-446655440000` holds `req` and
//! `550e8400-e29b-41d4-a716-446655440000`. A word longer
//! than [`MAX_WORD`] bytes keeps its first [`MAX_WORD`] bytes (cut at a character boundary),
//! the same way for events and for queries.
//!
//! A query `q` matches an event when every word of `q` is one of the event's words (case
//! never matters, order never matters, so `q=paid invoice` and `q=invoice.paid` both find
//! `invoice.paid`). An event's words come from the fields SPEC §12 names: `action`,
//! `event_type`, `actor.id`, `actor.name`, `target.id`, `target.name`, `error`, each change's
//! `field` and the strings and numbers of its old and new values, and the strings and numbers
//! of `metadata` (values, not keys). The indexer keeps one posting per word
//! ([`crate::fields::WORD`]), so `q` is answered like any other filter: behind the log, exact
//! over its tail, and an erased personal value's words leave the postings when they are
//! rebuilt from the log. An `actor.id` or `target.id` that is its own word ([`is_own_word`])
//! is kept through its field's posting alone, and a word of that shape is looked up there too.

/// The longest word kept, in bytes; longer runs are cut to it.
pub const MAX_WORD: usize = 64;

/// The most words a query may hold: half of the 1024 characters a query may have (a word and
/// what separates it from the next take two at least), so that the length limit, which any
/// client can check, is the only one a query meets.
pub const MAX_QUERY_WORDS: usize = 512;

/// Calls `emit` with each word of `text`, in order (repeats included). `scratch` is reused for
/// the lower-cased form.
pub fn words(text: &str, scratch: &mut String, emit: &mut dyn FnMut(&str)) {
    let mut start = None;
    let mut skip_to = 0;
    for (i, c) in text.char_indices() {
        if i < skip_to {
            continue;
        }
        match (c.is_alphanumeric(), start) {
            (true, None) => {
                if let Some(len) = uuid_at(&text[i..]) {
                    emit_word(&text[i..i + len], scratch, emit);
                    skip_to = i + len;
                } else {
                    start = Some(i);
                }
            }
            (false, Some(s)) => {
                emit_word(&text[s..i], scratch, emit);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        emit_word(&text[s..], scratch, emit);
    }
}

/// The length of a UUID (`8-4-4-4-12` hexadecimal digits, either case) at the start of `text`
/// when nothing alphanumeric follows it: such a UUID is one word, so that an identifier is
/// found whole and costs one posting, not five.
fn uuid_at(text: &str) -> Option<usize> {
    let bytes = text.as_bytes().get(..UUID_LEN)?;
    // Only once the first UUID_LEN bytes are known to be ASCII is UUID_LEN a character boundary.
    let ends = || {
        text[UUID_LEN..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric())
    };
    (uuid_shape(bytes, |b| b.is_ascii_hexdigit()) && ends()).then_some(UUID_LEN)
}

/// A UUID's length in bytes.
const UUID_LEN: usize = 36;

/// Whether `bytes` is a UUID's shape: dashes after the 8th, 12th, 16th and 20th digit, and
/// digits `digit` accepts everywhere else. The dashes are looked at first (most texts fail
/// there), then each group with no early exit, which the compiler vectorises: the indexer asks
/// this of two identifiers of every event (`perf` of `sealtrail reindex`: 3 % of the indexer
/// when it went byte by byte).
fn uuid_shape(bytes: &[u8], digit: impl Fn(u8) -> bool) -> bool {
    bytes.len() == UUID_LEN
        && [8, 13, 18, 23].iter().all(|&i| bytes[i] == b'-')
        && [
            &bytes[..8],
            &bytes[9..13],
            &bytes[14..18],
            &bytes[19..23],
            &bytes[24..],
        ]
        .iter()
        .all(|group| group.iter().fold(true, |ok, &b| ok & digit(b)))
}

/// Whether `text` is one word exactly as it stands: its only word ([`words`]) is `text`
/// itself. Answered by its shape alone, without cutting it: ASCII lower-case letters and
/// digits, or a lower-case UUID, at most [`MAX_WORD`] bytes (any other text answers `false`,
/// whatever its words). An identifier of this shape (`actor.id`, `target.id`) needs no word
/// posting of its own: its field's posting holds the same events (see
/// [`crate::fields::EventFilter::groups`]).
pub fn is_own_word(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_WORD {
        return false;
    }
    let lower_hex = |b: u8| b.is_ascii_digit() | (b'a'..=b'f').contains(&b);
    uuid_shape(bytes, lower_hex)
        || bytes.iter().fold(true, |ok, &b| {
            ok & (b.is_ascii_lowercase() | b.is_ascii_digit())
        })
}

fn emit_word(run: &str, scratch: &mut String, emit: &mut dyn FnMut(&str)) {
    scratch.clear();
    if run.is_ascii() {
        let cut = run.len().min(MAX_WORD);
        scratch.push_str(&run[..cut]);
        scratch.make_ascii_lowercase();
    } else {
        // Lower-cased as a whole word (a final capital sigma becomes `ς`), then cut.
        for c in run.to_lowercase().chars() {
            if scratch.len() + c.len_utf8() > MAX_WORD {
                break;
            }
            scratch.push(c);
        }
    }
    emit(scratch);
}

/// The distinct words of a query, in the order first given: none for a query without letters
/// or digits (an empty search filters nothing), an error (for a 400) when it holds more than
/// [`MAX_QUERY_WORDS`] words, repeats counted (so that the rule is a plain shape of the text,
/// which the OpenAPI document states as a pattern).
pub fn query_words(q: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut scratch = String::new();
    let mut count = 0;
    words(q, &mut scratch, &mut |w| {
        count += 1;
        if !out.iter().any(|o| o == w) {
            out.push(w.to_owned());
        }
    });
    if count > MAX_QUERY_WORDS {
        return Err(format!("must hold at most {MAX_QUERY_WORDS} words"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        words(text, &mut String::new(), &mut |w| out.push(w.to_owned()));
        out
    }

    #[test]
    fn words_are_runs_of_letters_and_digits_lower_cased() {
        assert_eq!(all("invoice.paid"), ["invoice", "paid"]);
        assert_eq!(all("Alice@Example.COM"), ["alice", "example", "com"]);
        assert_eq!(all("  T-4521, ok!"), ["t", "4521", "ok"]);
        assert_eq!(all("ÜBER straße Ǆ"), ["über", "straße", "ǆ"]);
        assert_eq!(all("日本語 テキスト"), ["日本語", "テキスト"]);
        assert_eq!(all("ΟΔΟΣ"), ["οδος"]);
        assert!(all(" .-_/ ").is_empty());
        assert_eq!(all("x"), ["x"]);
    }

    #[test]
    fn text_with_a_character_across_the_36th_byte_is_split_without_panicking() {
        // Found by schemathesis: a run of two-byte letters whose 36th byte falls inside one.
        let text = "\u{d3}K\u{cb}\u{ac}\u{d3}I\u{ee}\u{e6}\u{10d415}\u{100efc}\u{d7}\u{f9d70}\u{f5}\u{97}K";
        assert!(!all(text).is_empty());
        for n in 0..40 {
            let s = format!("{}{}", "a".repeat(n), "é".repeat(40));
            assert_eq!(all(&s).len(), 1, "{s}");
        }
    }

    #[test]
    fn a_uuid_is_one_word_unless_it_is_part_of_a_longer_run() {
        let id = "550E8400-E29B-41D4-A716-446655440000";
        assert_eq!(
            all(&format!("req_{id}/x")),
            ["req", "550e8400-e29b-41d4-a716-446655440000", "x"]
        );
        assert_eq!(all(id), [id.to_lowercase()]);
        // Longer, shorter or misshapen: ordinary words.
        assert_eq!(all(&format!("{id}0")).len(), 5);
        assert_eq!(all(&format!("a{id}")).len(), 5);
        assert_eq!(all("550e8400-e29b-41d4-a716-44665544000").len(), 5);
        assert_eq!(all("550e8400-e29b-41d4-a716_446655440000").len(), 5);
        assert_eq!(all("g50e8400-e29b-41d4-a716-446655440000").len(), 5);
        assert_eq!(
            all(&format!("{id}-tail")),
            [id.to_lowercase(), "tail".into()]
        );
        assert_eq!(query_words(id).expect("a valid query"), [id.to_lowercase()]);
    }

    #[test]
    fn a_text_that_is_its_own_word_is_told_by_its_shape() {
        for own in ["alpha", "a1", "x", "550e8400-e29b-41d4-a716-446655440000"] {
            assert!(is_own_word(own), "{own}");
            assert_eq!(all(own), [own]);
        }
        let longest = "a".repeat(MAX_WORD);
        assert!(is_own_word(&longest));
        for not in [
            "",
            "Alpha",
            "u-1",
            "550E8400-E29B-41D4-A716-446655440000",
            "550e8400-e29b-41d4-a716-4466554400000",
            "straße",
            "a b",
        ] {
            assert!(!is_own_word(not), "{not}");
        }
        assert!(!is_own_word(&"a".repeat(MAX_WORD + 1)));
        // The shape as first written, byte by byte: the same answers.
        let reference = |text: &str| {
            let b = text.as_bytes();
            let lower_alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty()
                && b.len() <= MAX_WORD
                && (b.iter().all(lower_alnum)
                    || (b.len() == UUID_LEN
                        && b.iter().enumerate().all(|(i, c)| match i {
                            8 | 13 | 18 | 23 => *c == b'-',
                            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
                        })))
        };
        // Whatever the text: one that says it is its own word is.
        let pieces = [
            "a",
            "Z",
            "0",
            "-",
            "é",
            "_",
            " ",
            "550e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000",
            "550e8400-E29B-41d4-a716",
            "-f-",
            "g",
        ];
        let mut seed = 0x9e37_79b9_u64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 5) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            assert_eq!(is_own_word(&text), reference(&text), "{text:?}");
            if is_own_word(&text) {
                assert_eq!(all(&text), [text.clone()]);
            }
        }
    }

    #[test]
    fn long_runs_are_cut_at_a_character_boundary() {
        let long = "a".repeat(100);
        assert_eq!(all(&long), ["a".repeat(MAX_WORD)]);
        let wide = "é".repeat(40); // two bytes each
        let got = all(&wide);
        assert_eq!(got[0].len(), MAX_WORD);
        assert_eq!(got[0], "é".repeat(MAX_WORD / 2));
        // The same rule for a query, so a long word still finds itself.
        assert_eq!(query_words(&long).expect("a valid query"), all(&long));
    }

    #[test]
    fn queries_are_their_distinct_words() {
        assert_eq!(
            query_words("Paid invoice.PAID").expect("a valid query"),
            ["paid", "invoice"]
        );
        assert!(query_words(" -- ").expect("a valid query").is_empty());
        assert!(query_words("").expect("a valid query").is_empty());
        let many: Vec<String> = (0..=MAX_QUERY_WORDS).map(|i| format!("w{i}")).collect();
        assert!(query_words(&many.join(" ")).is_err());
        assert!(query_words(&many[..MAX_QUERY_WORDS].join(" ")).is_ok());
        // Repeats count: the limit is on the text's shape.
        assert!(query_words(&["w"; MAX_QUERY_WORDS + 1].join(" ")).is_err());
        assert_eq!(
            query_words(&["w"; MAX_QUERY_WORDS].join(" ")).expect("valid"),
            ["w"]
        );
    }
}
