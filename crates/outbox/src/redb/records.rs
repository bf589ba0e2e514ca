//! What the redb store keeps: the tables, their records (sealed with a checksum; their bytes
//! are `wire`'s), and how a read finds a record damaged.

use std::time::Duration;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use linq_hooks_model::Hook;

use super::wire::{Decode, Encode};
use crate::records::from_millis;
use crate::{AttemptInfo, DeliveryInfo, DeliveryState, HookStatus};
use linq_hooks_delivery::DeliveryId;

/// Counters (`next_event`, `next_delivery`, `next_hook`, `format`).
pub(crate) const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
/// Workflow id → its record (JSON): secrets and hook ids in document order.
pub(crate) const WORKFLOWS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("workflows");
/// Hook id → its definition (JSON): workflow, the hook in API form, when removed. Kept after
/// removal (a tombstone), so a delivery's history still names its hook and workflow.
pub(crate) const HOOK_DEFS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("hook_defs");
/// Event id → the JSON body every delivery of the event posts.
pub(crate) const EVENT_BODIES: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("event_bodies");
/// Event id → how many deliveries of the event are kept: the body goes when the last of them
/// is pruned, so an event is shown with its body for as long as any of its deliveries is.
pub(crate) const EVENT_REFS: TableDefinition<'_, u64, u32> = TableDefinition::new("event_refs");
/// Delivery id → its record (binary, `wire`; JSON when written by format 4 or before).
pub(crate) const DELIVERIES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("deliveries");
/// (hook, delivery id) for every pending delivery: each hook's queue, in order.
pub(crate) const PENDING: TableDefinition<'_, (u64, u64), ()> = TableDefinition::new("pending");
/// Hook → how many of its deliveries are pending (kept with `PENDING`, so that showing the
/// hooks does not walk a backlog).
pub(crate) const PENDING_COUNTS: TableDefinition<'_, u64, u64> =
    TableDefinition::new("pending_counts");
/// (state, delivery id): deliveries by state, for listing.
pub(crate) const BY_STATE: TableDefinition<'_, (u8, u64), ()> = TableDefinition::new("by_state");
/// (hook, state, delivery id): each hook's deliveries by state (format 4), for listing by hook
/// or workflow and for recovering a hook's failed deliveries without walking the others. Not
/// pending ones (format 5): `PENDING` holds the same (hook, delivery id) for each, so a reader
/// takes a hook's pending deliveries from there, and a delivery's way through its states
/// writes one entry less (most never leave pending but to be delivered).
pub(crate) const BY_HOOK_STATE: TableDefinition<'_, (u64, u8, u64), ()> =
    TableDefinition::new("by_hook_state");
/// (event id, delivery id): each event's deliveries (format 4), for showing an event.
pub(crate) const EVENT_DELIVERIES: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("event_deliveries");
/// (delivered at, delivery id): for pruning after the retention.
pub(crate) const DELIVERED_AT: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("delivered_at");
/// (delivery id, attempt number) → the attempt (binary, `wire`; JSON before format 5).
pub(crate) const ATTEMPTS: TableDefinition<'_, (u64, u32), &[u8]> =
    TableDefinition::new("attempts");
/// Idempotency key (`workflow` NUL `key`) → what the ingest that first used it stored (JSON).
pub(crate) const IDEMPOTENCY: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("idempotency");
/// (expires at, idempotency key): for forgetting keys after their window.
pub(crate) const IDEMPOTENCY_EXPIRY: TableDefinition<'_, (u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");

/// Hook id → its delivery state (binary, `wire`; JSON before format 5); absent means enabled
/// with no failures.
pub(crate) const HOOKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("hooks");
/// Delivery id → its record as it was found when it was quarantined (the bytes that failed
/// their checksum or did not decode), kept for whoever investigates.
pub(crate) const DAMAGED: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("damaged");

/// The length of a record's seal: a CRC-32 (IEEE, little-endian) of the bytes after it.
const SEAL: usize = 4;

/// A record's bytes as stored (format 3): the CRC-32 of `bytes`, then `bytes`. Every value of
/// the tables of records (workflows, hook definitions, event bodies, deliveries, attempts, hook
/// states, idempotency keys) is sealed, so that a record damaged on disk is found when it is
/// read, not sent. What `bytes` are for each kind of record is `wire`'s: the checksum covers
/// their version byte too.
pub(crate) fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(SEAL + bytes.len());
    sealed.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    sealed.extend_from_slice(bytes);
    sealed
}

/// The bytes of a sealed record, or why they cannot be trusted.
pub(crate) fn unseal(sealed: &[u8]) -> Result<&[u8], String> {
    let Some((seal, bytes)) = sealed.split_first_chunk::<SEAL>() else {
        return Err(format!(
            "a record of {} bytes is too short to hold its checksum",
            sealed.len()
        ));
    };
    let (stored, computed) = (u32::from_le_bytes(*seal), crc32fast::hash(bytes));
    if stored == computed {
        Ok(bytes)
    } else {
        Err(format!(
            "a record fails its checksum (stored {stored:08x}, computed {computed:08x}): \
             the store file was damaged"
        ))
    }
}

/// A delivery as stored: written in binary (`wire`, format 5); records of format 4 and before
/// are JSON, read with these serde names.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct DeliveryRecord {
    pub(crate) hook: u64,
    pub(crate) event: u64,
    pub(crate) webhook_id: String,
    #[serde(with = "state_name")]
    pub(crate) state: DeliveryState,
    /// Attempts in this round (a replay or an enable starts a new round): what the retry
    /// policy counts.
    pub(crate) round_attempts: u32,
    /// Attempts ever made: the key of the next attempt record.
    pub(crate) attempts: u32,
    pub(crate) created_ms: u64,
    pub(crate) next_attempt_ms: Option<u64>,
    pub(crate) finished_ms: Option<u64>,
    /// Why it was given up or cancelled.
    pub(crate) failure: Option<String>,
    /// When the last attempt started (format 4; `None` in older records, whose last attempt
    /// is then read from the attempts table).
    #[serde(default)]
    pub(crate) last_attempt_ms: Option<u64>,
    /// The last attempt's HTTP status, if it got an answer (format 4).
    #[serde(default)]
    pub(crate) last_status: Option<u16>,
}

/// A state in a JSON record: its name (`"pending"`, …), as formats 2 to 4 wrote it.
mod state_name {
    use super::DeliveryState;
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeliveryState, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// An attempt as stored: binary (`wire`, format 5), or JSON (format 4 and before).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct AttemptRecord {
    pub(crate) at_ms: u64,
    pub(crate) latency_us: u64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    /// The start of the answer's body (at most 1 KiB of it, as text); absent in records of
    /// format 3 and before.
    #[serde(default)]
    pub(crate) response_body: Option<String>,
    /// Whether the body was longer than `response_body`.
    #[serde(default)]
    pub(crate) response_body_truncated: bool,
}

/// A hook's state as stored: binary (`wire`, format 5), or JSON (format 4 and before).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct HookRecord {
    pub(crate) disabled_ms: Option<u64>,
    pub(crate) consecutive_failures: u32,
    /// How many of its deliveries are failed (format 4: counted when a store of format 3 is
    /// opened, then kept in the transaction of each change).
    #[serde(default)]
    pub(crate) failed: u64,
    /// When its last attempt started (format 4).
    #[serde(default)]
    pub(crate) last_attempt_ms: Option<u64>,
    /// Its last attempt's HTTP status, if it got an answer (format 4).
    #[serde(default)]
    pub(crate) last_status: Option<u16>,
}

/// A workflow's definition: its hook ids in document order and its signing secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkflowRecord {
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
    /// `whsec_…`.
    pub(crate) secret: String,
    /// Secrets rotated out whose grace period had not ended at the last rotation, each with
    /// the end of its grace period, oldest first.
    pub(crate) previous_secrets: Vec<(String, u64)>,
    pub(crate) hooks: Vec<u64>,
}

/// An ingest remembered under its idempotency key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct IdempotencyRecord {
    /// A digest of the request body, so that a key reused for another body is refused.
    pub(crate) fingerprint: String,
    /// When the key is forgotten (a repeat after that is a new ingest).
    pub(crate) expires_ms: u64,
    /// What was stored: per event, its id and its deliveries.
    pub(crate) accepted: Vec<(Option<u64>, Vec<RememberedDelivery>)>,
}

/// A delivery an idempotent ingest stored: (id, hook, webhook-id).
pub(crate) type RememberedDelivery = (u64, u64, String);

/// A hook's definition.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HookDef {
    pub(crate) workflow: String,
    pub(crate) hook: Hook,
    /// Set once the hook was removed from its workflow.
    pub(crate) removed_ms: Option<u64>,
}

impl DeliveryInfo {
    /// The view of a record whose last attempt is known (see [`DeliveryRecord::last_known`]).
    pub(crate) fn new(id: DeliveryId, record: &DeliveryRecord) -> DeliveryInfo {
        DeliveryInfo {
            id,
            hook: record.hook,
            event: record.event,
            webhook_id: record.webhook_id.clone(),
            state: record.state,
            attempts: record.attempts,
            created_at: from_millis(record.created_ms),
            next_attempt_at: record.next_attempt_ms.map(from_millis),
            finished_at: record.finished_ms.map(from_millis),
            failure: record.failure.clone(),
            last_status: record.last_status,
        }
    }
}

impl DeliveryRecord {
    /// Whether the record says how its last attempt went: it made none, or it was written by
    /// format 4, which keeps `last_attempt_ms` (older records need the attempts table).
    pub(crate) fn last_known(&self) -> bool {
        self.attempts == 0 || self.last_attempt_ms.is_some()
    }
}

impl From<&AttemptRecord> for AttemptInfo {
    fn from(record: &AttemptRecord) -> AttemptInfo {
        AttemptInfo {
            at: from_millis(record.at_ms),
            latency: Duration::from_micros(record.latency_us),
            status: record.status,
            error: record.error.clone(),
            response_body: record.response_body.clone(),
            response_body_truncated: record.response_body_truncated,
        }
    }
}

impl HookStatus {
    pub(crate) fn new(record: &HookRecord, pending: u64) -> HookStatus {
        HookStatus {
            enabled: record.disabled_ms.is_none(),
            disabled_at: record.disabled_ms.map(from_millis),
            consecutive_failures: record.consecutive_failures,
            pending,
            failed: record.failed,
            last_attempt_at: record.last_attempt_ms.map(from_millis),
            last_status: record.last_status,
        }
    }
}

/// A read's failure: redb's, or a record that does not decode.
pub(crate) enum ReadError {
    Storage(redb::Error),
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for ReadError {
    fn from(e: E) -> ReadError {
        ReadError::Storage(e.into())
    }
}

/// A sealed record's value: its checksum checked, then its bytes read (`wire`).
pub(crate) fn decode<T: Decode>(bytes: &[u8]) -> Result<T, ReadError> {
    T::decode(unseal(bytes).map_err(ReadError::Corrupt)?)
        .map_err(|e| ReadError::Corrupt(format!("a record does not decode: {e}")))
}

/// A record as stored: its bytes (`wire`), sealed with its checksum.
pub(crate) fn encode<T: Encode>(value: &T) -> Vec<u8> {
    seal(&value.encode())
}
