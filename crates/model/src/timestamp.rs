//! Microsecond UTC timestamps, printed as RFC 3339 with exactly six fractional digits.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time in microseconds since the Unix epoch, UTC.
///
/// This is the only time representation that crosses crate boundaries: it is what the store
/// persists and what the API prints (`2026-11-23T10:00:00.000000Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Wraps a count of microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// The count of microseconds since the Unix epoch.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The current time, truncated to the microsecond.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Converts a date-time, truncating anything finer than a microsecond.
    pub fn from_datetime(dt: OffsetDateTime) -> Self {
        Self((dt.unix_timestamp_nanos() / 1000) as i64)
    }

    /// Parses RFC 3339 text with any offset; the result is UTC, truncated to the microsecond.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(Self::from_datetime)
    }

    /// The date-time in UTC.
    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(UtcOffset::UTC)
    }

    /// RFC 3339 in UTC with six fractional digits, e.g. `2026-11-23T10:00:00.000000Z`.
    pub fn to_rfc3339(self) -> String {
        match self.rfc3339_digits() {
            Some(text) => std::str::from_utf8(&text)
                .expect("digits are ASCII")
                .to_owned(),
            None => self.rfc3339_formatted(),
        }
    }

    /// Appends [`Timestamp::to_rfc3339`]'s text to `out`, without allocating for the years 0
    /// to 9999.
    pub fn push_rfc3339(self, out: &mut Vec<u8>) {
        match self.rfc3339_digits() {
            Some(text) => out.extend_from_slice(&text),
            None => out.extend_from_slice(self.rfc3339_formatted().as_bytes()),
        }
    }

    /// [`Timestamp::to_rfc3339`] into a fixed buffer, for the years 0 to 9999 (`None` for
    /// the others): served events print two timestamps per event and one per change, and
    /// exports print millions.
    fn rfc3339_digits(self) -> Option<[u8; 27]> {
        let dt = self.to_datetime();
        let year = u32::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
        let mut text = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for digit in text[at..at + width].iter_mut().rev() {
                *digit = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(dt.month())));
        put(8, 2, u32::from(dt.day()));
        put(11, 2, u32::from(dt.hour()));
        put(14, 2, u32::from(dt.minute()));
        put(17, 2, u32::from(dt.second()));
        put(20, 6, dt.microsecond());
        Some(text)
    }

    fn rfc3339_formatted(self) -> String {
        let dt = self.to_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.microsecond()
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339_digits() {
            Some(text) => {
                serializer.serialize_str(std::str::from_utf8(&text).expect("digits are ASCII"))
            }
            None => serializer.serialize_str(&self.rfc3339_formatted()),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 date-time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_six_fraction_digits_in_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-23T12:30:05.123456789+02:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-11-23T10:30:05.123456Z");
        let t = Timestamp::parse_rfc3339("2026-01-02T03:04:05Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-01-02T03:04:05.000000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }

    proptest::proptest! {
        /// The digits written by hand are what the formatter prints, at every microsecond
        /// of years 0 to 9999 and beyond them (where the formatter is used).
        #[test]
        fn the_fast_digits_are_the_formatted_text(micros in -63_000_000_000_000_000i64..254_000_000_000_000_000) {
            let t = Timestamp::from_micros(micros);
            let formatted = t.rfc3339_formatted();
            proptest::prop_assert_eq!(t.to_rfc3339(), formatted.clone());
            proptest::prop_assert_eq!(serde_json::to_string(&t).expect("json"), format!("\"{formatted}\""));
        }
    }

    #[test]
    fn rejects_text_that_is_not_rfc3339() {
        for bad in ["2026-11-23", "yesterday", "2026-11-23T10:00:00", ""] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
