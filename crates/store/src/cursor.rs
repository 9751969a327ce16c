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

impl Cursor {
    /// The opaque text form.
    pub fn encode(self) -> String {
        let text = match self {
            Self::Seq(seq) => format!("s1:{seq}"),
            Self::Time(t, seq) => format!("t1:{t}:{seq}"),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    /// Parses the opaque text form.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for c in [Cursor::Seq(0), Cursor::Seq(u64::MAX), Cursor::Time(-5, 7)] {
            assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
        for bad in ["", "!!", "czE6", "czE6eA", "dDE6MTox0jE"] {
            assert_eq!(Cursor::decode(bad), Err(CursorError), "{bad}");
        }
    }
}
