//! Event timestamps: RFC 3339 in, UTC with milliseconds and `Z` out.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

#[cfg(feature = "schema")]
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// When an event happened, to the millisecond.
///
/// Read from any RFC 3339 timestamp with an offset (`Z` or `±hh:mm`; without one it is
/// ambiguous and refused). jiff's parser, which does the reading, also takes some ISO 8601 and
/// RFC 9557 forms beyond RFC 3339: a space or lowercase `t` for `T`, a lowercase `z`, a comma
/// before the fraction, no seconds, a bracketed time zone after the offset (`[Europe/Paris]`; the
/// offset alone decides the instant) and a year written with a sign and six digits
/// (`+002025-…`).
///
/// A leap second (`23:59:60.5Z`) is read as the last millisecond of the second before it
/// (`23:59:59.999Z`), so that events keep their order: after everything in second 59, before
/// the next minute.
///
/// Always written as UTC with milliseconds, `Z` and a four-digit year, so a timestamp already in
/// that form passes through unchanged. Finer precision is truncated (toward the past) to the
/// millisecond.
///
/// Only instants whose UTC year RFC 3339 can write are accepted, from `0000-01-01T00:00:00.000Z`
/// to `9999-12-30T22:00:00.999Z` (the end of jiff's range, a day short of the end of 9999).
/// Anything earlier is refused, whether written with a signed year (`-000001-…`) or not
/// (`0000-01-01T00:00:00+01:00` is in year -1 in UTC), as is anything later: a `Timestamp` is
/// never written with a sign or six digits, which most RFC 3339 readers would not take.
///
/// ```
/// use linq_hooks_events::Timestamp;
///
/// let t: Timestamp = "2025-04-17T11:30:00.5+02:00".parse()?;
/// assert_eq!(t.to_string(), "2025-04-17T09:30:00.500Z");
/// assert_eq!(t.unix_millis(), 1_744_882_200_500);
/// assert!("2025-04-17T09:30:00".parse::<Timestamp>().is_err()); // no offset: ambiguous
///
/// // A six-digit year is read when it is one RFC 3339 can write, and written with four.
/// let t: Timestamp = "+002025-04-17T09:30:00Z".parse()?;
/// assert_eq!(t.to_string(), "2025-04-17T09:30:00.000Z");
/// // Before 0000 in UTC: refused, with or without a sign.
/// assert!("-000001-06-01T00:00:00Z".parse::<Timestamp>().is_err());
/// assert!("0000-01-01T00:00:00+01:00".parse::<Timestamp>().is_err());
/// // The last instant.
/// let last: Timestamp = "9999-12-30T22:00:00.999Z".parse()?;
/// assert!("9999-12-30T22:00:01Z".parse::<Timestamp>().is_err());
/// assert_eq!(Timestamp::from_unix_millis(last.unix_millis() + 1), None);
/// # Ok::<(), linq_hooks_events::TimestampError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(jiff::Timestamp);

/// Why a text is not a timestamp.
///
/// ```
/// let err = "yesterday".parse::<linq_hooks_events::Timestamp>().unwrap_err();
/// assert!(err.to_string().starts_with("invalid RFC 3339 timestamp"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TimestampError(String);

impl Timestamp {
    /// The current time, from the system clock.
    ///
    /// ```
    /// assert!(linq_hooks_events::Timestamp::now().unix_millis() > 1_700_000_000_000);
    /// ```
    pub fn now() -> Timestamp {
        Timestamp::truncated(jiff::Timestamp::now())
    }

    /// The timestamp `millis` milliseconds after the Unix epoch; `None` before
    /// `0000-01-01T00:00:00.000Z` (RFC 3339 cannot write it) or after `9999-12-30T22:00:00.999Z`
    /// (the end of jiff's range), as when reading text.
    ///
    /// ```
    /// let t = linq_hooks_events::Timestamp::from_unix_millis(0).unwrap();
    /// assert_eq!(t.to_string(), "1970-01-01T00:00:00.000Z");
    /// ```
    pub fn from_unix_millis(millis: i64) -> Option<Timestamp> {
        // Through nanoseconds: jiff's `from_millisecond` stops at its last whole second
        // (9999-12-30T22:00:00Z), short of the 999 milliseconds after it that a `Timestamp`
        // holds and `unix_millis` gives.
        let t = jiff::Timestamp::from_nanosecond(i128::from(millis) * 1_000_000).ok()?;
        in_rfc3339_years(t).then_some(Timestamp(t))
    }

    /// Milliseconds since the Unix epoch.
    ///
    /// ```
    /// let t: linq_hooks_events::Timestamp = "1970-01-01T00:00:01Z".parse().unwrap();
    /// assert_eq!(t.unix_millis(), 1000);
    /// ```
    pub fn unix_millis(self) -> i64 {
        self.0.as_millisecond()
    }

    /// Cuts the digits below the millisecond. `as_millisecond` rounds toward 1970, which before
    /// 1970 is *up*: `1969-12-31T23:59:59.9999Z` would become `1970-01-01T00:00:00.000Z`.
    /// Through nanoseconds, not `from_millisecond`, whose range ends at jiff's last whole second:
    /// `9999-12-30T22:00:00.5Z` does not fit it (and panicked here when it was used).
    fn truncated(t: jiff::Timestamp) -> Timestamp {
        let nanos = t.as_nanosecond().div_euclid(1_000_000) * 1_000_000;
        // Cutting toward the past stays in range: jiff's first instant is a whole second.
        Timestamp(jiff::Timestamp::from_nanosecond(nanos).expect("in jiff's range"))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Timestamp, TimestampError> {
        let t = s
            .parse::<jiff::Timestamp>()
            .map_err(|e| TimestampError(format!("invalid RFC 3339 timestamp {s:?}: {e}")))?;
        if !in_rfc3339_years(t) {
            return Err(TimestampError(format!(
                "timestamp {s:?} is outside the years 0000 to 9999 (UTC) that RFC 3339 can write"
            )));
        }
        if is_leap_second(s) {
            // jiff reads second 60 as 59 with its fraction kept, which puts `23:59:60.5` before
            // `23:59:59.9`. The leap second is after all of second 59: its last millisecond.
            let whole = t.as_second();
            let last =
                jiff::Timestamp::from_nanosecond(i128::from(whole) * 1_000_000_000 + 999_000_000)
                    .map_err(|e| TimestampError(format!("invalid RFC 3339 timestamp {s:?}: {e}")))?;
            return Ok(Timestamp(last));
        }
        Ok(Timestamp::truncated(t))
    }
}

/// Whether an RFC 3339 time names a leap second: its seconds field (after `hh:mm:`) is `60`.
fn is_leap_second(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(6).enumerate().any(|(i, w)| {
        w[0] == b':'
            && w[1].is_ascii_digit()
            && w[2].is_ascii_digit()
            && w[3] == b':'
            && &w[4..6] == b"60"
            && bytes.get(i + 6).is_none_or(|b| !b.is_ascii_digit())
    })
}

/// Whether a time's UTC year is one RFC 3339 can write (0000 to 9999). Receivers in any
/// language parse RFC 3339; ISO 8601's signed six-digit years they mostly do not. (jiff's range
/// ends at 9999-12-30T22:00:00.999999999Z, so the last hours of 9999 never reach this check:
/// jiff refuses them first.)
fn in_rfc3339_years(t: jiff::Timestamp) -> bool {
    /// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z, in seconds since the epoch.
    const FIRST: i128 = -62_167_219_200;
    const END: i128 = 253_402_300_800;
    (FIRST * 1_000_000_000..END * 1_000_000_000).contains(&t.as_nanosecond())
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds (jiff's printer, which writes a year from 0000 to 9999,
    /// the only ones a `Timestamp` holds, with four digits and no sign).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schema")]
impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "When it happened: RFC 3339, written as UTC with milliseconds and `Z`.",
            "examples": ["2025-04-17T09:30:00.000Z"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each input is read, written as expected, and the written form reads back the same.
    #[test]
    fn written_form_reads_back() {
        let cases = [
            ("2025-04-17T11:30:00.5+02:00", "2025-04-17T09:30:00.500Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000Z"),
            ("0099-12-31T23:59:59.999Z", "0099-12-31T23:59:59.999Z"),
            // Before 1970 too, finer precision is cut, not rounded up to the next millisecond
            // (and here the next year). The first was found by the `parse_event` fuzz target.
            ("1013-04-17T09:31:20.07777700Z", "1013-04-17T09:31:20.077Z"),
            ("0099-12-31T23:59:59.999999Z", "0099-12-31T23:59:59.999Z"),
            ("1969-12-31T23:59:59.9999Z", "1969-12-31T23:59:59.999Z"),
            ("1969-12-31T23:59:59.0001Z", "1969-12-31T23:59:59.000Z"),
            ("9999-12-30T21:59:59.999-00:00", "9999-12-30T21:59:59.999Z"),
        ];
        for (input, written) in cases {
            let t: Timestamp = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(t.to_string(), written, "input: {input}");
            assert_eq!(written.parse::<Timestamp>().unwrap(), t, "input: {input}");
        }
    }

    /// Found with the `parse_event` fuzz target: a year before 0000 was written as `-001-…`,
    /// which no reader (ours included) takes back. RFC 3339 has no such years: refused.
    #[test]
    fn years_rfc3339_cannot_write_are_refused() {
        for input in [
            "0000-01-01T00:00:00+00:01",
            "-000001-01-01T00:00:00Z",
            "-009999-01-02T01:59:59Z",
        ] {
            let err = input.parse::<Timestamp>().unwrap_err();
            assert!(
                err.to_string().contains("outside the years 0000 to 9999"),
                "{input}: {err}"
            );
        }
        assert!(
            Timestamp::from_unix_millis(-62_167_219_200_001).is_none(),
            "just before 0000"
        );
        assert!(
            Timestamp::from_unix_millis(-62_167_219_200_000).is_some(),
            "0000-01-01"
        );
    }

    /// jiff's range ends at 9999-12-30T22:00:00.999999999Z, a day short of the end of 9999. The
    /// milliseconds of its last second used to panic (`from_millisecond` stops at the second).
    #[test]
    fn the_last_instants_read_write_and_round_trip_without_panicking() {
        let last = "9999-12-30T22:00:00.999Z";
        for input in [
            "9999-12-30T22:00:00.5Z",
            "9999-12-30T22:00:00.999999999Z",
            "9999-12-31T00:00:00.999+02:00",
        ] {
            let t: Timestamp = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(
                t.to_string().starts_with("9999-12-30T22:00:00."),
                "{input}: {t}"
            );
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t, "{input}");
            assert_eq!(
                Timestamp::from_unix_millis(t.unix_millis()),
                Some(t),
                "{input}"
            );
        }
        let t: Timestamp = last.parse().unwrap();
        assert_eq!(t.unix_millis(), 253_402_207_200_999);
        assert_eq!(Timestamp::from_unix_millis(253_402_207_200_999), Some(t));
        assert_eq!(Timestamp::from_unix_millis(253_402_207_201_000), None);
        for input in ["9999-12-30T22:00:01Z", "9999-12-31T23:59:59Z"] {
            let err = input.parse::<Timestamp>().unwrap_err();
            assert!(err.to_string().contains("overflowed"), "{input}: {err}");
        }
    }
}
