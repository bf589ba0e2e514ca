//! The public views of what a store keeps (deliveries, attempts, hooks, workflows), whichever
//! store keeps it; the redb store's own records are in `redb::records`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_model::Hook;
use linq_hooks_signature::Secret;

/// Where a delivery stands.
///
/// ```
/// use linq_hooks_outbox::DeliveryState;
/// assert_eq!("failed".parse::<DeliveryState>(), Ok(DeliveryState::Failed));
/// assert_eq!(DeliveryState::Pending.as_str(), "pending");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryState {
    /// Waiting for its first attempt, a retry, or its hook to be enabled.
    Pending,
    /// Delivered (a 2xx).
    Delivered,
    /// Given up; it can be replayed.
    Failed,
    /// Its hook was removed from its workflow before it was delivered; kept on record with the
    /// reason, never sent again.
    Cancelled,
    /// Its record or its event's body was damaged in the store file (it failed its checksum,
    /// or was missing): set aside with the reason and never sent, so that its hook goes on
    /// with the next delivery. What was found is kept in the store for investigation.
    Quarantined,
}

impl DeliveryState {
    /// Every state, in the order of their codes.
    pub const ALL: [DeliveryState; 5] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Cancelled,
        DeliveryState::Quarantined,
    ];

    /// The name used in the API: `pending`, `delivered`, `failed`, `cancelled` or
    /// `quarantined`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Cancelled => "cancelled",
            DeliveryState::Quarantined => "quarantined",
        }
    }

    /// Its code in the indexes and in binary records: 0 to 4, in the order of [`ALL`](Self::ALL).
    pub(crate) fn code(self) -> u8 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Failed => 2,
            DeliveryState::Cancelled => 3,
            DeliveryState::Quarantined => 4,
        }
    }

    /// The state of a code ([`code`](Self::code)), if it is one.
    pub(crate) fn from_code(code: u8) -> Option<DeliveryState> {
        DeliveryState::ALL.get(usize::from(code)).copied()
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<DeliveryState, String> {
        DeliveryState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!("unknown state `{s}`; expected pending, delivered, failed, cancelled or quarantined")
            })
    }
}

/// A delivery, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryInfo {
    /// Its number.
    pub id: DeliveryId,
    /// Its hook.
    pub hook: HookId,
    /// The event's number (0 for a quarantined delivery whose own record was damaged: it is
    /// not known).
    pub event: u64,
    /// The `webhook-id` every attempt carries (empty for a quarantined delivery whose own
    /// record was damaged).
    pub webhook_id: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When it was accepted (for a quarantined delivery whose own record was damaged: when it
    /// was quarantined).
    pub created_at: SystemTime,
    /// When the next attempt is due, if one is planned.
    pub next_attempt_at: Option<SystemTime>,
    /// When it was delivered, given up, cancelled or quarantined.
    pub finished_at: Option<SystemTime>,
    /// Why it was given up, cancelled or quarantined.
    pub failure: Option<String>,
    /// The last attempt's HTTP status; `None` when it got no answer or none was made.
    pub last_status: Option<u16>,
}

/// One attempt, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptInfo {
    /// When it started.
    pub at: SystemTime,
    /// How long it took (to the microsecond).
    pub latency: Duration,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The error, when none did.
    pub error: Option<String>,
    /// The start of the receiver's answer: at most 1 KiB of its body, as UTF-8 text (invalid
    /// sequences replaced by U+FFFD); `None` when no answer came, it had no body, or the
    /// attempt was recorded by a version before this field.
    pub response_body: Option<String>,
    /// Whether the body was longer than `response_body`.
    pub response_body_truncated: bool,
}

/// A hook's delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookStatus {
    /// False after a 410 Gone, until enabled again.
    pub enabled: bool,
    /// When it was disabled.
    pub disabled_at: Option<SystemTime>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Deliveries waiting.
    pub pending: u64,
    /// Deliveries given up (failed), which can be replayed; counted as they change, not by a
    /// walk of the store.
    pub failed: u64,
    /// When its last attempt started (`None` before its first, and for a hook whose last
    /// attempt was made by a version before this field).
    pub last_attempt_at: Option<SystemTime>,
    /// Its last attempt's HTTP status (`None` when it got no answer).
    pub last_status: Option<u16>,
}

/// A hook of a workflow: its id, its definition and its delivery state.
///
/// ```
/// # fn show(hook: &linq_hooks_outbox::StoredHook) {
/// println!("hook_{} posts to {}", hook.id, hook.hook.parameters().url());
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredHook {
    /// Its id, kept across edits of its workflow for as long as it is the same hook.
    pub id: HookId,
    /// The workflow it belongs to.
    pub workflow: String,
    /// The hook, in the LINQ API's form.
    pub hook: Hook,
    /// Its delivery state (enabled, failures, pending count).
    pub status: HookStatus,
}

/// A workflow's signing secrets: the current one, and those rotated out whose grace period has
/// not ended, which still sign until the time given (so that a second rotation within the grace
/// period does not cut off receivers still on the first secret).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkflowSecrets {
    /// The secret every webhook of the workflow is signed with.
    pub current: Secret,
    /// Rotated-out secrets and the ends of their grace periods, oldest first. Some may have
    /// ended since they were read: compare with the clock.
    pub previous: Vec<(Secret, SystemTime)>,
}

/// A workflow and its hooks.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoredWorkflow {
    /// Its id: a LINQ workflow UUID or a name.
    pub id: String,
    /// When it was registered.
    pub created_at: SystemTime,
    /// When it was last changed.
    pub updated_at: SystemTime,
    /// Its hooks, in document order.
    pub hooks: Vec<StoredHook>,
    /// Its signing secrets.
    pub secrets: WorkflowSecrets,
}

/// What a [`Store::put_workflow`](crate::Store::put_workflow) did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkflowChange {
    /// The workflow as it now stands.
    pub workflow: StoredWorkflow,
    /// Whether it was created (it did not exist before).
    pub created: bool,
    /// Hooks that kept their id (the same hook; their parameters may have changed).
    pub kept: Vec<HookId>,
    /// Hooks that are new.
    pub added: Vec<HookId>,
    /// Hooks no longer in the workflow.
    pub removed: Vec<HookId>,
    /// Pending deliveries of the removed hooks, now cancelled.
    pub cancelled_deliveries: u64,
}

/// What a [`Store::delete_workflow`](crate::Store::delete_workflow) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkflowRemoval {
    /// The workflow's hooks, all removed.
    pub removed: Vec<HookId>,
    /// Their pending deliveries, now cancelled.
    pub cancelled_deliveries: u64,
}

/// Milliseconds since the UNIX epoch (0 before it), as the stores keep times.
pub(crate) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the UNIX epoch.
pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
