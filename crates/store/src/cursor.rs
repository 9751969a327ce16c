//! Opaque page cursors. A cursor names the last item served, so paging stays exact while new
//! events arrive: keyset pagination, never offsets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// In a list ordered by `seq`.
    Seq(u64),
    /// In a timeline ordered by `occurred_at` (microseconds), then `seq`.
    Time(i64, u64),
}

/// A cursor that is not one this server made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("is not a valid cursor")]
pub struct CursorError;

/// The most digits of a cursor's `seq`: every such number fits a `u64`.
pub(crate) const SEQ_DIGITS: usize = 19;
/// The most digits of a timeline cursor's time: every such number fits an `i64`.
pub(crate) const TIME_DIGITS: usize = 18;

impl Cursor {
    /// The text form: `s1.<seq>` or `t1.<occurred_at micros>.<seq>`. Opaque to clients, but
    /// plain, so that its shape is a pattern the OpenAPI document can state
    /// ([`Cursor::LIST_PATTERN`], [`Cursor::TIMELINE_PATTERN`]) and every text of that shape
    /// is a cursor.
    pub fn encode(self) -> String {
        match self {
            Self::Seq(seq) => format!("s1.{seq}"),
            Self::Time(t, seq) => format!("t1.{t}.{seq}"),
        }
    }

    /// The shape of a list cursor.
    pub const LIST_PATTERN: &str = "^s1\\.(?:0|[1-9][0-9]{0,18})$";
    /// The shape of a timeline cursor.
    pub const TIMELINE_PATTERN: &str = "^t1\\.(?:0|-?[1-9][0-9]{0,17})\\.(?:0|[1-9][0-9]{0,18})$";

    /// Parses the text form; the base64 form of earlier versions is still read, so a
    /// cursor handed out before an upgrade goes on working.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if let Some(rest) = text.strip_prefix("s1.") {
            return number(rest, SEQ_DIGITS).map(Self::Seq);
        }
        if let Some(rest) = text.strip_prefix("t1.") {
            let (t, seq) = rest.split_once('.').ok_or(CursorError)?;
            let (negative, digits) = match t.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, t),
            };
            let magnitude = number(digits, TIME_DIGITS)? as i64;
            if negative && magnitude == 0 {
                return Err(CursorError);
            }
            let t = if negative { -magnitude } else { magnitude };
            return Ok(Self::Time(t, number(seq, SEQ_DIGITS)?));
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| CursorError)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CursorError)?;
        let mut parts = text.split(':');
        let cursor = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("s1"), Some(seq), None, None) => Self::Seq(seq.parse().map_err(|_| CursorError)?),
            (Some("t1"), Some(t), Some(seq), None) => Self::Time(
                t.parse().map_err(|_| CursorError)?,
                seq.parse().map_err(|_| CursorError)?,
            ),
            _ => return Err(CursorError),
        };
        Ok(cursor)
    }
}

/// A number of at most `max_digits` digits without a leading zero (`0` itself aside).
fn number(text: &str, max_digits: usize) -> Result<u64, CursorError> {
    let canonical = !text.is_empty()
        && text.len() <= max_digits
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(CursorError);
    }
    text.parse().map_err(|_| CursorError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let max_seq = 10u64.pow(SEQ_DIGITS as u32) - 1;
        let max_time = 10i64.pow(TIME_DIGITS as u32) - 1;
        for c in [
            Cursor::Seq(0),
            Cursor::Seq(max_seq),
            Cursor::Time(-5, 7),
            Cursor::Time(0, 0),
            Cursor::Time(max_time, max_seq),
            Cursor::Time(-max_time, 1),
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
        // Earlier versions' base64 cursors still work.
        assert_eq!(Cursor::decode("czE6NDI"), Ok(Cursor::Seq(42)));
        assert_eq!(Cursor::decode("dDE6LTU6Nw"), Ok(Cursor::Time(-5, 7)));
        for bad in [
            "",
            "!!",
            "czE6",
            "czE6eA",
            "dDE6MTox0jE",
            "s1.",
            "s1.01",
            "s1.-1",
            "s1.1.2",
            "s1.12345678901234567890",
            "t1.5",
            "t1.-0.1",
            "t1.1.",
            "t1.01.1",
            "S1.1",
        ] {
            assert_eq!(Cursor::decode(bad), Err(CursorError), "{bad}");
        }
    }
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    /// The documented patterns, checked by hand: every text of the shape decodes.
    #[test]
    fn every_text_of_the_documented_shape_is_a_cursor() {
        let max_seq = "9".repeat(SEQ_DIGITS);
        let max_time = "9".repeat(TIME_DIGITS);
        for text in [
            format!("s1.{max_seq}"),
            format!("t1.-{max_time}.{max_seq}"),
            format!("t1.{max_time}.0"),
        ] {
            assert!(Cursor::decode(&text).is_ok(), "{text}");
        }
        assert!(Cursor::LIST_PATTERN.contains(&format!("{{0,{}}}", SEQ_DIGITS - 1)));
        assert!(Cursor::TIMELINE_PATTERN.contains(&format!("{{0,{}}}", TIME_DIGITS - 1)));
    }
}
