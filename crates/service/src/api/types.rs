//! The API's JSON types: what the service answers, built from the store's typed records.

use std::time::SystemTime;

use linq_hooks_delivery::HookId;
use linq_hooks_events::Timestamp;
use linq_hooks_outbox::{AttemptInfo, DeliveryInfo, StoredHook, StoredWorkflow, WorkflowChange};
use serde::Serialize;
use serde_json::Value;

use super::error::Problem;
use utoipa::ToSchema;

/// RFC 3339 UTC with milliseconds, as event timestamps are.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let ms = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_unix_millis(ms)
        .map_or_else(|| format!("{ms}ms after the epoch"), |t| t.to_string())
}

/// A hook id as the API shows it: `hook_` and its number.
pub(crate) fn hook_id(id: HookId) -> String {
    format!("hook_{id}")
}

/// A hook's delivery state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HookStateOut {
    /// False after a 410 Gone, until `POST /v1/hooks/{hook_id}/enable`.
    enabled: bool,
    /// When a 410 disabled it (RFC 3339).
    disabled_at: Option<String>,
    /// Failed attempts since the last success.
    consecutive_failures: u32,
    /// Deliveries waiting.
    pending: u64,
    /// Deliveries given up (failed): `POST /v1/hooks/{hook_id}/recover` replays them.
    failed: u64,
    /// When its last attempt started (RFC 3339); null before its first (and for a hook whose
    /// last attempt was made by a version before this field).
    last_attempt_at: Option<String>,
    /// Its last attempt's HTTP status; null when it got no answer (or none was made).
    last_status: Option<u16>,
}

/// A hook: its id, its workflow, the hook in the LINQ API's form, and its state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HookOut {
    /// `hook_` and a number; kept across edits of the workflow while it is the same hook.
    #[schema(example = "hook_3")]
    id: String,
    /// The workflow it belongs to.
    workflow_id: String,
    /// The hook in the LINQ API's form (`filter`, `parameters`, `task_ids`, `labware_ids`,
    /// `trigger_on`): see `schemas/hook.schema.json`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    hook: Value,
    /// Its delivery state.
    state: HookStateOut,
}

impl From<&StoredHook> for HookOut {
    fn from(hook: &StoredHook) -> HookOut {
        HookOut {
            id: hook_id(hook.id),
            workflow_id: hook.workflow.clone(),
            hook: serde_json::to_value(&hook.hook).expect("a hook serializes"),
            state: HookStateOut {
                enabled: hook.status.enabled,
                disabled_at: hook.status.disabled_at.map(rfc3339),
                consecutive_failures: hook.status.consecutive_failures,
                pending: hook.status.pending,
                failed: hook.status.failed,
                last_attempt_at: hook.status.last_attempt_at.map(rfc3339),
                last_status: hook.status.last_status,
            },
        }
    }
}

/// A workflow and its hooks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkflowOut {
    /// Its id: a LINQ workflow UUID or a name of 1–128 characters from `[A-Za-z0-9._-]`.
    workflow_id: String,
    /// When it was registered (RFC 3339).
    created_at: String,
    /// When it was last changed (RFC 3339).
    updated_at: String,
    /// Its hooks, in document order.
    hooks: Vec<HookOut>,
}

impl From<&StoredWorkflow> for WorkflowOut {
    fn from(workflow: &StoredWorkflow) -> WorkflowOut {
        WorkflowOut {
            workflow_id: workflow.id.clone(),
            created_at: rfc3339(workflow.created_at),
            updated_at: rfc3339(workflow.updated_at),
            hooks: workflow.hooks.iter().map(HookOut::from).collect(),
        }
    }
}

/// A page of workflows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkflowsOut {
    pub(crate) workflows: Vec<WorkflowOut>,
    /// Pass as `after` for the next page; null on the last.
    pub(crate) next_after: Option<String>,
}

/// What a `PUT` changed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangesOut {
    /// Hooks that kept their id, queue and history (their URL and headers may have changed).
    kept: Vec<String>,
    /// New hooks.
    added: Vec<String>,
    /// Hooks no longer in the workflow.
    removed: Vec<String>,
    /// Pending deliveries of the removed hooks, now `cancelled`.
    cancelled_deliveries: u64,
}

/// The answer to `PUT /v1/workflows/{workflow_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PutWorkflowOut {
    workflow_id: String,
    /// The hooks with their ids, in document order.
    hooks: Vec<HookOut>,
    changes: ChangesOut,
    /// The workflow's signing secret (`whsec_…`); only when the PUT created the workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// Things worth a look that did not make the document invalid (as `linq-hooks validate`
    /// prints them): unknown fields, ignored; task or labware ids that name nothing in the
    /// document. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<Problem>,
}

impl PutWorkflowOut {
    pub(crate) fn new(
        change: &WorkflowChange,
        secret: Option<String>,
        warnings: Vec<Problem>,
    ) -> PutWorkflowOut {
        let ids = |ids: &[HookId]| ids.iter().copied().map(hook_id).collect();
        PutWorkflowOut {
            workflow_id: change.workflow.id.clone(),
            hooks: change.workflow.hooks.iter().map(HookOut::from).collect(),
            changes: ChangesOut {
                kept: ids(&change.kept),
                added: ids(&change.added),
                removed: ids(&change.removed),
                cancelled_deliveries: change.cancelled_deliveries,
            },
            secret,
            warnings,
        }
    }
}

/// The answer to `PATCH /v1/hooks/{hook_id}`: the hook, and any warnings about the parameters
/// given (an unknown field such as `header` for `headers` is ignored: the warning says so).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PatchedHookOut {
    #[serde(flatten)]
    pub(crate) hook: HookOut,
    /// Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<Problem>,
}

/// The answer to `DELETE /v1/workflows/{workflow_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeletedOut {
    pub(crate) workflow_id: String,
    /// Its hooks, all removed.
    pub(crate) removed: Vec<String>,
    /// Their pending deliveries, now `cancelled`.
    pub(crate) cancelled_deliveries: u64,
}

/// A workflow's signing secrets.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretOut {
    pub(crate) workflow_id: String,
    /// The secret (`whsec_…`) webhooks are signed with.
    pub(crate) secret: String,
    /// The secrets that also sign, oldest first: after a rotation, the ones before, each until
    /// its `expires_at` (so a receiver still on one keeps verifying); empty otherwise.
    pub(crate) previous: Vec<PreviousSecretOut>,
}

/// A secret that still signs besides the current one: rotated out and in its grace period.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PreviousSecretOut {
    pub(crate) secret: String,
    /// When it stops signing (RFC 3339); null for a secret `serve --secret` gives, which signs
    /// as long as it is given.
    pub(crate) expires_at: Option<String>,
}

/// A delivery.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryOut {
    id: u64,
    /// Its hook (`hook_…`).
    hook: String,
    /// Its hook's workflow.
    workflow_id: Option<String>,
    /// The event's number (0 for a quarantined delivery whose own record was damaged).
    event: u64,
    /// The `webhook-id` every attempt carries (empty for a quarantined delivery whose own
    /// record was damaged).
    webhook_id: String,
    /// `pending`, `delivered`, `failed`, `cancelled` or `quarantined` (its record or its
    /// event's body was damaged in the store: set aside, never sent; `failure` says what was
    /// found).
    state: String,
    /// Attempts made.
    attempts: u32,
    /// RFC 3339.
    created_at: String,
    next_attempt_at: Option<String>,
    /// When it was delivered, given up, cancelled or quarantined.
    finished_at: Option<String>,
    /// Why it was given up, cancelled or quarantined.
    failure: Option<String>,
    /// The last attempt's HTTP status; null when it got no answer (a connection error, a
    /// timeout) or no attempt was made.
    last_status: Option<u16>,
}

impl DeliveryOut {
    pub(crate) fn new(info: &DeliveryInfo, workflow: Option<String>) -> DeliveryOut {
        DeliveryOut {
            id: info.id,
            hook: hook_id(info.hook),
            workflow_id: workflow,
            event: info.event,
            webhook_id: info.webhook_id.clone(),
            state: info.state.as_str().to_string(),
            attempts: info.attempts,
            created_at: rfc3339(info.created_at),
            next_attempt_at: info.next_attempt_at.map(rfc3339),
            finished_at: info.finished_at.map(rfc3339),
            failure: info.failure.clone(),
            last_status: info.last_status,
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveriesOut {
    pub(crate) deliveries: Vec<DeliveryOut>,
    /// Pass as `cursor` (with the same filters) for the next page; null on the last. A page
    /// may hold fewer deliveries than `limit`, even none, and still have a `next_cursor`: each
    /// page examines a bounded number of deliveries, so a filter that matches little in a
    /// large store is answered in several pages.
    pub(crate) next_cursor: Option<String>,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptOut {
    /// When it started (RFC 3339).
    at: String,
    /// How long it took, in milliseconds.
    latency_ms: f64,
    /// The HTTP status, when an answer came.
    status: Option<u16>,
    /// The error, when none did.
    error: Option<String>,
    /// The start of the receiver's answer: at most the first 1 KiB of its body, as UTF-8 text
    /// (invalid bytes replaced by U+FFFD, never cut inside a character); null when no answer
    /// came, it had no body, or the attempt was recorded by a version before this field.
    response_body: Option<String>,
    /// True when the answer's body was longer than `response_body`.
    response_body_truncated: bool,
}

impl From<&AttemptInfo> for AttemptOut {
    fn from(attempt: &AttemptInfo) -> AttemptOut {
        AttemptOut {
            at: rfc3339(attempt.at),
            latency_ms: attempt.latency.as_secs_f64() * 1000.0,
            status: attempt.status,
            error: attempt.error.clone(),
            response_body: attempt.response_body.clone(),
            response_body_truncated: attempt.response_body_truncated,
        }
    }
}

/// A delivery with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryDetailOut {
    #[serde(flatten)]
    pub(crate) delivery: DeliveryOut,
    /// Every attempt, oldest first.
    pub(crate) attempt_log: Vec<AttemptOut>,
}

/// One stored delivery, in an ingest answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AcceptedDeliveryOut {
    /// The index of its event in the request (0 for a single event).
    pub(crate) event_index: usize,
    pub(crate) id: u64,
    /// `hook_…`.
    pub(crate) hook: String,
    pub(crate) webhook_id: String,
}

/// The answer to an ingest: how many events were stored, and their deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestOut {
    pub(crate) accepted: usize,
    pub(crate) deliveries: Vec<AcceptedDeliveryOut>,
}

/// The answer to a retry: the delivery is pending (attempted now, or replayed).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplayOut {
    pub(crate) id: u64,
    /// `pending`.
    pub(crate) state: String,
}

/// The answer to `POST /v1/hooks/{hook_id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HookRetryOut {
    /// `hook_…`.
    pub(crate) hook: String,
    /// Its pending deliveries; the first of them is attempted now.
    pub(crate) pending: u64,
}

/// The answer to `POST /v1/hooks/{hook_id}/recover`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecoverOut {
    /// `hook_…`.
    pub(crate) hook: String,
    /// The deliveries pending again, in id order (the order they go in); empty when none
    /// failed since then.
    pub(crate) replayed: Vec<u64>,
}

/// An event as stored, with its deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventOut {
    pub(crate) id: u64,
    /// The workflow whose hooks it was matched against.
    pub(crate) workflow_id: Option<String>,
    /// When it was stored (RFC 3339).
    pub(crate) received_at: String,
    /// The JSON every delivery of it posted (`schemas/event.schema.json`). The body is kept
    /// as long as any delivery of the event is (pruning after the retention removes both), so
    /// it is null only when it was damaged in the store file (its deliveries are then
    /// `quarantined`).
    #[schema(value_type = Option<Object>)]
    pub(crate) body: Option<Value>,
    /// Its deliveries, one per hook that fired, in id order.
    pub(crate) deliveries: Vec<DeliveryOut>,
}

/// The answer to an enable.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EnableOut {
    /// `hook_…`.
    pub(crate) id: String,
    pub(crate) enabled: bool,
    /// Whether a 410 had disabled it.
    pub(crate) was_disabled: bool,
}

/// Every hook.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HooksOut {
    pub(crate) hooks: Vec<HookOut>,
    /// Pass as `after` for the next page; null on the last.
    pub(crate) next_after: Option<String>,
}

/// `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthOut {
    /// `ok` or `failing`.
    pub(crate) status: String,
    /// Why it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Deliveries set aside because their record was damaged in the store
    /// (`GET /v1/deliveries?state=quarantined`); absent when the store cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) quarantined: Option<u64>,
}
