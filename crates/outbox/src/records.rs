//! What the store keeps, and what it shows: the tables, their records, and the public views.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use linq_hooks_delivery::DeliveryId;
use linq_hooks_events::Timestamp;

/// Counters (`next_event`, `next_delivery`, `format`).
pub(crate) const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
/// Settings (`hooks`: the fingerprint of the hook list the deliveries were made for).
pub(crate) const SETTINGS: TableDefinition<'_, &str, &str> = TableDefinition::new("settings");
/// Event id → the JSON body every delivery of the event posts.
pub(crate) const EVENT_BODIES: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("event_bodies");
/// Event id → how many deliveries still refer to the body.
pub(crate) const EVENT_REFS: TableDefinition<'_, u64, u32> = TableDefinition::new("event_refs");
/// Delivery id → its record (JSON).
pub(crate) const DELIVERIES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("deliveries");
/// (hook, delivery id) for every pending delivery: each hook's queue, in order.
pub(crate) const PENDING: TableDefinition<'_, (u32, u64), ()> = TableDefinition::new("pending");
/// Hook → how many of its deliveries are pending (kept with `PENDING`, so that showing the
/// hooks does not walk a backlog).
pub(crate) const PENDING_COUNTS: TableDefinition<'_, u32, u64> =
    TableDefinition::new("pending_counts");
/// (state, delivery id): deliveries by state, for listing.
pub(crate) const BY_STATE: TableDefinition<'_, (u8, u64), ()> = TableDefinition::new("by_state");
/// (delivered at, delivery id): for pruning after the retention.
pub(crate) const DELIVERED_AT: TableDefinition<'_, (u64, u64), ()> =
    TableDefinition::new("delivered_at");
/// (delivery id, attempt number) → the attempt (JSON).
pub(crate) const ATTEMPTS: TableDefinition<'_, (u64, u32), &[u8]> =
    TableDefinition::new("attempts");
/// Hook index → its state (JSON); absent means enabled with no failures.
pub(crate) const HOOKS: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("hooks");

/// Where a delivery stands.
///
/// ```
/// use linq_hooks_outbox::DeliveryState;
/// assert_eq!("failed".parse::<DeliveryState>(), Ok(DeliveryState::Failed));
/// assert_eq!(DeliveryState::Pending.as_str(), "pending");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its first attempt, a retry, or its hook to be enabled.
    Pending,
    /// Delivered (a 2xx).
    Delivered,
    /// Given up; it can be replayed.
    Failed,
}

impl DeliveryState {
    /// The name used in the API: `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Failed => 2,
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<DeliveryState, String> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(format!(
                "unknown state `{other}`; expected pending, delivered or failed"
            )),
        }
    }
}

/// A delivery as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DeliveryRecord {
    pub(crate) hook: u32,
    pub(crate) event: u64,
    pub(crate) webhook_id: String,
    pub(crate) state: DeliveryState,
    /// Attempts in this round (a replay or an enable starts a new round): what the retry
    /// policy counts.
    pub(crate) round_attempts: u32,
    /// Attempts ever made: the key of the next attempt record.
    pub(crate) attempts: u32,
    pub(crate) created_ms: u64,
    pub(crate) next_attempt_ms: Option<u64>,
    pub(crate) finished_ms: Option<u64>,
    pub(crate) failure: Option<String>,
    /// The hook list it was made for (a counter that grows each time the list changes); a
    /// delivery of another list can no longer be replayed, its hook index means another hook.
    #[serde(default)]
    pub(crate) generation: u64,
}

/// An attempt as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AttemptRecord {
    pub(crate) at_ms: u64,
    pub(crate) latency_us: u64,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
}

/// A hook's state as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct HookRecord {
    pub(crate) disabled_ms: Option<u64>,
    pub(crate) consecutive_failures: u32,
}

/// A delivery, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeliveryInfo {
    /// Its number.
    pub id: DeliveryId,
    /// Its hook's index in the hook file.
    pub hook: u32,
    /// The event's number.
    pub event: u64,
    /// The `webhook-id` every attempt carries.
    pub webhook_id: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When it was accepted (RFC 3339).
    pub created_at: String,
    /// When the next attempt is due, if one is planned.
    pub next_attempt_at: Option<String>,
    /// When it was delivered or given up.
    pub finished_at: Option<String>,
    /// Why it was given up.
    pub failure: Option<String>,
}

impl DeliveryInfo {
    pub(crate) fn new(id: DeliveryId, record: &DeliveryRecord) -> DeliveryInfo {
        DeliveryInfo {
            id,
            hook: record.hook,
            event: record.event,
            webhook_id: record.webhook_id.clone(),
            state: record.state,
            attempts: record.attempts,
            created_at: rfc3339(record.created_ms),
            next_attempt_at: record.next_attempt_ms.map(rfc3339),
            finished_at: record.finished_ms.map(rfc3339),
            failure: record.failure.clone(),
        }
    }
}

/// One attempt, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AttemptInfo {
    /// When it started (RFC 3339).
    pub at: String,
    /// How long it took, in milliseconds.
    pub latency_ms: f64,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The error, when none did.
    pub error: Option<String>,
}

impl From<&AttemptRecord> for AttemptInfo {
    fn from(record: &AttemptRecord) -> AttemptInfo {
        AttemptInfo {
            at: rfc3339(record.at_ms),
            latency_ms: record.latency_us as f64 / 1000.0,
            status: record.status,
            error: record.error.clone(),
        }
    }
}

/// A hook's state, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HookStatus {
    /// Its index in the hook file.
    pub index: u32,
    /// False after a 410 Gone, until enabled again.
    pub enabled: bool,
    /// When it was disabled.
    pub disabled_at: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Deliveries waiting.
    pub pending: u64,
}

pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds, as event timestamps are.
pub(crate) fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(Timestamp::from_unix_millis)
        .map_or_else(|| format!("{ms}ms after the epoch"), |t| t.to_string())
}
