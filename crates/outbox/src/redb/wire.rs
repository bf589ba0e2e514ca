//! How records are written inside their seal: a compact binary encoding for the records written
//! per delivery and per attempt, JSON for the rest.
//!
//! A delivery, an attempt and a hook's state are written with [postcard] (format 5): a version
//! byte, then the record in postcard's wire format (version 1.0, documented and stable:
//! <https://postcard.jamesmunns.com/wire-format>: integers as varints, `Option` as a 0/1 tag,
//! strings with a varint length, fields in declaration order, no field names). A record
//! written by format 4 or before is JSON, which always starts with `{`: the first byte tells
//! the two apart, so a backlog written by an older version reads as it is, without rewriting.
//! Workflows, hook definitions and idempotency keys stay JSON (one per workflow, hook or
//! ingest, and read in part: a hook definition's workflow alone).
//!
//! Postcard is not self-describing: a field added, removed, reordered or retyped in one of the
//! layouts below makes a new layout. Give it the next version byte (never `{`, 0x7B), write
//! only the new one, and keep the decoder of every older one: records are never rewritten in
//! bulk, so a store holds every layout it was ever written in.
//!
//! A `webhook-id` of the form `linq_hooks_signature::new_message_id` makes (`msg_` and the 32
//! lowercase hex digits of a UUID) is kept as its 16 bytes; any other as its text. Reading gives
//! back the same string.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::records::{AttemptRecord, DeliveryRecord, HookDef, HookRecord};
use super::records::{IdempotencyRecord, WorkflowRecord};
use crate::DeliveryState;

/// What a record is read from: its bytes inside the seal.
pub(crate) trait Decode: Sized {
    /// The record, or why its bytes do not read as one.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

/// What a record is written as: its bytes inside the seal.
pub(crate) trait Encode {
    fn encode(&self) -> Vec<u8>;
}

/// A record kept as JSON (or a part of one read alone, such as a hook definition's workflow).
pub(crate) trait JsonRecord: DeserializeOwned {}

impl<T: JsonRecord> Decode for T {
    fn decode(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

impl<T: JsonRecord + Serialize> Encode for T {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }
}

impl JsonRecord for WorkflowRecord {}
impl JsonRecord for HookDef {}
impl JsonRecord for IdempotencyRecord {}

/// The first byte of every JSON record (formats 2 to 4).
const JSON: u8 = b'{';
/// The first layout of the binary records (format 5): [`DeliveryV1`], [`AttemptV1`],
/// [`HookV1`], each in its own table.
const V1: u8 = 1;

/// Postcard's bytes of `value` after the version byte `version`.
fn binary(version: u8, value: &impl Serialize) -> Vec<u8> {
    postcard::to_extend(value, vec![version]).expect("records serialize")
}

/// Reads a record whose first byte says its encoding: JSON (formats 2 to 4), or layout 1, read
/// as `L` and made into the record by `from`. A new layout adds its version byte here.
fn decode_v1<'a, T: DeserializeOwned, L: Deserialize<'a>>(
    bytes: &'a [u8],
    from: impl FnOnce(L) -> Result<T, String>,
) -> Result<T, String> {
    match bytes.split_first() {
        None => Err("a record is empty".into()),
        Some((&JSON, _)) => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Some((&V1, rest)) => from(postcard_value(rest)?),
        Some((&version, _)) => unknown(version),
    }
}

/// Postcard's value in `bytes`, all of them.
fn postcard_value<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} bytes are left over", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

fn unknown<T>(version: u8) -> Result<T, String> {
    Err(format!(
        "its encoding (version byte {version}) is not one this version of linq-hooks reads"
    ))
}

/// A `webhook-id` as stored: the 16 bytes of a `msg_` UUID id, or the text of any other.
#[derive(Serialize, Deserialize)]
enum WebhookId<'a> {
    Message([u8; 16]),
    Other(&'a str),
}

impl<'a> WebhookId<'a> {
    fn of(id: &'a str) -> WebhookId<'a> {
        match message_uuid(id) {
            Some(uuid) => WebhookId::Message(uuid),
            None => WebhookId::Other(id),
        }
    }

    fn text(self) -> String {
        match self {
            WebhookId::Message(uuid) => {
                let mut id = String::with_capacity(4 + 32);
                id.push_str("msg_");
                for byte in uuid {
                    id.push(char::from(HEX[usize::from(byte >> 4)]));
                    id.push(char::from(HEX[usize::from(byte & 0xf)]));
                }
                id
            }
            WebhookId::Other(id) => id.to_string(),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The 16 bytes of `msg_` followed by 32 lowercase hex digits (`None` for any other id, even
/// one in upper case: reading it back would not give the same text).
fn message_uuid(id: &str) -> Option<[u8; 16]> {
    let hex = id.strip_prefix("msg_")?.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let digit = |c: u8| HEX.iter().position(|&h| h == c).map(|d| d as u8);
    let mut uuid = [0; 16];
    for (byte, pair) in uuid.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(uuid)
}

/// A delivery, layout 1. The state is its code (`DeliveryState::code`).
#[derive(Serialize, Deserialize)]
struct DeliveryV1<'a> {
    hook: u64,
    event: u64,
    #[serde(borrow)]
    webhook_id: WebhookId<'a>,
    state: u8,
    round_attempts: u32,
    attempts: u32,
    created_ms: u64,
    next_attempt_ms: Option<u64>,
    finished_ms: Option<u64>,
    failure: Option<&'a str>,
    last_attempt_ms: Option<u64>,
    last_status: Option<u16>,
}

impl Encode for DeliveryRecord {
    fn encode(&self) -> Vec<u8> {
        binary(
            V1,
            &DeliveryV1 {
                hook: self.hook,
                event: self.event,
                webhook_id: WebhookId::of(&self.webhook_id),
                state: self.state.code(),
                round_attempts: self.round_attempts,
                attempts: self.attempts,
                created_ms: self.created_ms,
                next_attempt_ms: self.next_attempt_ms,
                finished_ms: self.finished_ms,
                failure: self.failure.as_deref(),
                last_attempt_ms: self.last_attempt_ms,
                last_status: self.last_status,
            },
        )
    }
}

impl Decode for DeliveryRecord {
    fn decode(bytes: &[u8]) -> Result<DeliveryRecord, String> {
        decode_v1(bytes, |v: DeliveryV1<'_>| {
            Ok(DeliveryRecord {
                hook: v.hook,
                event: v.event,
                webhook_id: v.webhook_id.text(),
                state: DeliveryState::from_code(v.state)
                    .ok_or_else(|| format!("unknown state code {}", v.state))?,
                round_attempts: v.round_attempts,
                attempts: v.attempts,
                created_ms: v.created_ms,
                next_attempt_ms: v.next_attempt_ms,
                finished_ms: v.finished_ms,
                failure: v.failure.map(str::to_string),
                last_attempt_ms: v.last_attempt_ms,
                last_status: v.last_status,
            })
        })
    }
}

/// An attempt, layout 1.
#[derive(Serialize, Deserialize)]
struct AttemptV1<'a> {
    at_ms: u64,
    latency_us: u64,
    status: Option<u16>,
    error: Option<&'a str>,
    response_body: Option<&'a str>,
    response_body_truncated: bool,
}

impl Encode for AttemptRecord {
    fn encode(&self) -> Vec<u8> {
        binary(
            V1,
            &AttemptV1 {
                at_ms: self.at_ms,
                latency_us: self.latency_us,
                status: self.status,
                error: self.error.as_deref(),
                response_body: self.response_body.as_deref(),
                response_body_truncated: self.response_body_truncated,
            },
        )
    }
}

impl Decode for AttemptRecord {
    fn decode(bytes: &[u8]) -> Result<AttemptRecord, String> {
        decode_v1(bytes, |v: AttemptV1<'_>| {
            Ok(AttemptRecord {
                at_ms: v.at_ms,
                latency_us: v.latency_us,
                status: v.status,
                error: v.error.map(str::to_string),
                response_body: v.response_body.map(str::to_string),
                response_body_truncated: v.response_body_truncated,
            })
        })
    }
}

/// A hook's state, layout 1.
#[derive(Serialize, Deserialize)]
struct HookV1 {
    disabled_ms: Option<u64>,
    consecutive_failures: u32,
    failed: u64,
    last_attempt_ms: Option<u64>,
    last_status: Option<u16>,
}

impl Encode for HookRecord {
    fn encode(&self) -> Vec<u8> {
        binary(
            V1,
            &HookV1 {
                disabled_ms: self.disabled_ms,
                consecutive_failures: self.consecutive_failures,
                failed: self.failed,
                last_attempt_ms: self.last_attempt_ms,
                last_status: self.last_status,
            },
        )
    }
}

impl Decode for HookRecord {
    fn decode(bytes: &[u8]) -> Result<HookRecord, String> {
        decode_v1(bytes, |v: HookV1| {
            Ok(HookRecord {
                disabled_ms: v.disabled_ms,
                consecutive_failures: v.consecutive_failures,
                failed: v.failed,
                last_attempt_ms: v.last_attempt_ms,
                last_status: v.last_status,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(webhook_id: &str) -> DeliveryRecord {
        DeliveryRecord {
            hook: 3,
            event: 70_000,
            webhook_id: webhook_id.into(),
            state: DeliveryState::Pending,
            round_attempts: 0,
            attempts: 0,
            created_ms: 1_796_000_000_000,
            next_attempt_ms: None,
            finished_ms: None,
            failure: None,
            last_attempt_ms: None,
            last_status: None,
        }
    }

    fn same(a: &DeliveryRecord, b: &DeliveryRecord) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn a_message_id_is_kept_as_its_16_bytes_and_reads_back_the_same() {
        let id = "msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4c";
        let record = delivery(id);
        let bytes = record.encode();
        assert_eq!(bytes[0], V1);
        assert!(
            !bytes.windows(4).any(|w| w == b"msg_"),
            "kept as bytes, not text"
        );
        let back = DeliveryRecord::decode(&bytes).unwrap();
        assert_eq!(back.webhook_id, id);
        same(&back, &record);
        // A pending delivery of format 5 is small: version, hook, event, id, state, counts,
        // time, the empty options.
        assert!(bytes.len() <= 40, "{} bytes", bytes.len());
    }

    #[test]
    fn any_other_webhook_id_is_kept_as_its_text() {
        for id in [
            "msg_a",
            "",
            "msg_0F8E2C7D1A9B4E6F8C3D5A7B9E1F2A4C", // upper case: not what we make
            "msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4",  // 31 digits
            "msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4c0", // 33 digits
            "msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4g", // not hex
            "evt_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4c",
            "msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2aé",
            "client's own id ✓",
        ] {
            let bytes = delivery(id).encode();
            assert_eq!(DeliveryRecord::decode(&bytes).unwrap().webhook_id, id);
        }
    }

    #[test]
    fn every_field_of_a_delivery_reads_back() {
        for state in DeliveryState::ALL {
            let record = DeliveryRecord {
                state,
                round_attempts: 2,
                attempts: 7,
                next_attempt_ms: Some(1_796_000_060_000),
                finished_ms: Some(u64::MAX),
                failure: Some("HTTP 500 after 7 attempts".into()),
                last_attempt_ms: Some(1_796_000_000_001),
                last_status: Some(503),
                ..delivery("msg_x")
            };
            same(&DeliveryRecord::decode(&record.encode()).unwrap(), &record);
        }
    }

    #[test]
    fn records_of_format_4_still_read() {
        let json = br#"{"hook":2,"event":4,"webhook_id":"msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4c","state":"failed","round_attempts":1,"attempts":3,"created_ms":10,"next_attempt_ms":null,"finished_ms":20,"failure":"HTTP 410","last_attempt_ms":15,"last_status":410}"#;
        let record = DeliveryRecord::decode(json).unwrap();
        assert_eq!(record.state, DeliveryState::Failed);
        assert_eq!(record.webhook_id, "msg_0f8e2c7d1a9b4e6f8c3d5a7b9e1f2a4c");
        assert_eq!((record.attempts, record.last_status), (3, Some(410)));
        // Format 3's, without the fields format 4 added.
        let json = br#"{"hook":2,"event":4,"webhook_id":"msg_a","state":"pending","round_attempts":0,"attempts":0,"created_ms":10,"next_attempt_ms":null,"finished_ms":null,"failure":null}"#;
        assert_eq!(DeliveryRecord::decode(json).unwrap().last_attempt_ms, None);

        let attempt = AttemptRecord::decode(
            br#"{"at_ms":5,"latency_us":900,"status":500,"error":null,"response_body":"no"}"#,
        )
        .unwrap();
        assert_eq!(
            (attempt.status, attempt.response_body.as_deref()),
            (Some(500), Some("no"))
        );
        let hook = HookRecord::decode(br#"{"disabled_ms":null,"consecutive_failures":2}"#).unwrap();
        assert_eq!((hook.consecutive_failures, hook.failed), (2, 0));
    }

    #[test]
    fn attempts_and_hook_states_read_back() {
        let attempt = AttemptRecord {
            at_ms: 1_796_000_000_000,
            latency_us: 1234,
            status: Some(200),
            error: Some("the body broke off".into()),
            response_body: Some("{\"ok\":true}".into()),
            response_body_truncated: true,
        };
        let back = AttemptRecord::decode(&attempt.encode()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{attempt:?}"));
        let hook = HookRecord {
            disabled_ms: Some(9),
            consecutive_failures: 4,
            failed: 12,
            last_attempt_ms: Some(8),
            last_status: None,
        };
        assert_eq!(HookRecord::decode(&hook.encode()).unwrap(), hook);
    }

    #[test]
    fn bytes_of_no_known_encoding_are_refused_with_the_reason() {
        let mut bytes = delivery("msg_a").encode();
        bytes[0] = 9;
        let e = DeliveryRecord::decode(&bytes).unwrap_err();
        assert!(e.contains("version byte 9"), "{e}");
        let mut bytes = delivery("msg_a").encode();
        bytes.push(0);
        let e = DeliveryRecord::decode(&bytes).unwrap_err();
        assert!(e.contains("left over"), "{e}");
        let bytes = delivery("msg_a").encode();
        assert!(DeliveryRecord::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(DeliveryRecord::decode(&[]).unwrap_err().contains("empty"));
        assert!(AttemptRecord::decode(b"{\"at_ms\":").is_err());
    }
}
