//! `parse_event` on arbitrary text: it never panics; an accepted event serializes and reads back
//! to the same event; its timestamp is written `YYYY-MM-DDTHH:MM:SS.mmmZ` for years 0000–9999,
//! cut (never rounded) to the millisecond.
#![no_main]

use libfuzzer_sys::fuzz_target;
use linq_hooks_events::{Event, parse_event};

/// `0000-01-01T00:00:00.000Z` and `9999-12-31T23:59:59.999Z` in unix milliseconds.
const FOUR_DIGIT_YEARS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let event = match parse_event(text) {
        Ok(event) => event,
        Err(err) => {
            assert_eq!(err.is_syntax(), !err.is_invalid());
            if let Some(path) = err.path() {
                assert!(!path.is_empty(), "error without a path: {err}");
            }
            let _ = err.to_string();
            return;
        }
    };
    let written = String::from_utf8(event.to_json_bytes()).expect("JSON is UTF-8");
    let again = parse_event(&written)
        .unwrap_or_else(|e| panic!("the written form is refused: {e}\n{written}"));
    assert_eq!(again, event, "round trip changed the event\n{written}");
    let via_serde: Event = serde_json::from_str(&written)
        .unwrap_or_else(|e| panic!("serde refuses the written form: {e}\n{written}"));
    assert_eq!(via_serde, event);

    let timestamp = event.timestamp();
    let shown = timestamp.to_string();
    let value: serde_json::Value = serde_json::from_str(&written).expect("valid JSON");
    assert_eq!(value["timestamp"].as_str(), Some(shown.as_str()));
    assert!(!event.message().is_empty(), "no message\n{written}");
    if FOUR_DIGIT_YEARS.contains(&timestamp.unix_millis()) {
        assert!(is_utc_millis(&shown), "timestamp written as {shown:?}");
    }

    // Finer precision is cut: the written instant is at most the one read, and less than a
    // millisecond before it.
    let input: serde_json::Value = serde_json::from_str(text).expect("parse_event read it");
    let read: jiff::Timestamp = input["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("parse_event read the timestamp");
    let given = input["timestamp"].as_str().unwrap_or_default();
    if is_leap_second(given) {
        // A leap second is the last millisecond of the second jiff reads it as.
        let last = i128::from(read.as_second()) * 1_000_000_000 + 999_000_000;
        assert_eq!(i128::from(timestamp.unix_millis()) * 1_000_000, last, "{given:?}");
        return;
    }
    let cut = read.as_nanosecond() - i128::from(timestamp.unix_millis()) * 1_000_000;
    assert!(
        (0..1_000_000).contains(&cut),
        "{:?} written as {shown}",
        input["timestamp"]
    );
});

/// Whether a time's seconds field (after `hh:mm:`) is `60`.
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

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, digits where digits belong.
fn is_utc_millis(text: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    text.len() == SHAPE.len()
        && text.bytes().zip(SHAPE).all(|(c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            s => c == s,
        })
}
