//! Operational webhooks: events about the dispatcher itself, not about the lab.
//!
//! `linq-hooks serve --ops-url URL` posts one of these, signed like every other webhook
//! (Standard Webhooks), when a hook is disabled by a 410 Gone (`hook.disabled`), when a delivery
//! is given up (`delivery.failed`), and when a hook that had either trouble, or was paused by
//! its circuit breaker, delivers again (`hook.recovered`). The body follows the payload shape
//! the Standard Webhooks specification recommends: `type`, `timestamp`, and the details in
//! `data`.
//!
//! ```
//! use linq_hooks_events::ops::{OpsData, OpsEvent};
//!
//! let body = r#"{"type": "delivery.failed", "timestamp": "2026-11-30T02:46:42.123Z",
//!   "data": {"workflow_id": "lab", "hook": "hook_3", "delivery": 17, "webhook_id": "msg_1",
//!            "attempts": 8, "last_status": 503, "reason": "gave up after 8 attempts; the last: status 503"}}"#;
//! let event: OpsEvent = serde_json::from_str(body)?;
//! let OpsData::DeliveryFailed(failed) = &event.data else { unreachable!() };
//! assert_eq!((failed.hook.as_str(), failed.delivery), ("hook_3", 17));
//! assert_eq!(event.data.type_name(), "delivery.failed");
//! # Ok::<(), serde_json::Error>(())
//! ```

#[cfg(feature = "schema")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// An operational webhook's body: `{"type", "timestamp", "data"}`.
///
/// ```
/// use linq_hooks_events::Timestamp;
/// use linq_hooks_events::ops::{HookDisabled, OpsData, OpsEvent};
///
/// let event = OpsEvent {
///     timestamp: "2026-11-30T02:46:42Z".parse().unwrap(),
///     data: OpsData::HookDisabled(HookDisabled {
///         workflow_id: "lab".into(),
///         hook: "hook_1".into(),
///         delivery: 4,
///         webhook_id: "msg_4".into(),
///         reason: "the receiver answered 410 Gone".into(),
///     }),
/// };
/// assert_eq!(
///     serde_json::to_string(&event).unwrap(),
///     r#"{"timestamp":"2026-11-30T02:46:42.000Z","type":"hook.disabled","data":{"workflow_id":"lab","hook":"hook_1","delivery":4,"webhook_id":"msg_4","reason":"the receiver answered 410 Gone"}}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct OpsEvent {
    /// When the dispatcher saw it happen (UTC, milliseconds).
    pub timestamp: Timestamp,
    /// What happened: `type` and its `data`.
    #[serde(flatten)]
    pub data: OpsData,
}

/// What happened, tagged by `type`, with its details in `data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(tag = "type", content = "data")]
#[non_exhaustive]
pub enum OpsData {
    /// `hook.disabled`: a hook's receiver answered 410 Gone; the hook is disabled and its
    /// deliveries wait until it is enabled (`POST /v1/hooks/{hook_id}/enable`).
    #[serde(rename = "hook.disabled")]
    HookDisabled(HookDisabled),
    /// `delivery.failed`: a delivery was given up (its retries ran out, or the receiver's answer
    /// was a permanent failure); it can be replayed (`POST /v1/deliveries/{id}/retry`).
    #[serde(rename = "delivery.failed")]
    DeliveryFailed(DeliveryFailed),
    /// `hook.recovered`: a hook in trouble (a delivery given up, disabled by a 410, or paused by
    /// its circuit breaker) delivered again.
    #[serde(rename = "hook.recovered")]
    HookRecovered(HookRecovered),
}

impl OpsData {
    /// The `type` value: `hook.disabled`, `delivery.failed` or `hook.recovered`.
    ///
    /// ```
    /// # use linq_hooks_events::ops::{OpsData, HookRecovered, Trouble};
    /// let data = OpsData::HookRecovered(HookRecovered {
    ///     workflow_id: "lab".into(), hook: "hook_1".into(), delivery: 9,
    ///     since: "2026-11-30T02:00:00Z".parse().unwrap(), after: vec![Trouble::HookPaused],
    /// });
    /// assert_eq!(data.type_name(), "hook.recovered");
    /// ```
    pub fn type_name(&self) -> &'static str {
        match self {
            OpsData::HookDisabled(_) => "hook.disabled",
            OpsData::DeliveryFailed(_) => "delivery.failed",
            OpsData::HookRecovered(_) => "hook.recovered",
        }
    }

    /// Every `type` value, in the order of the variants.
    pub const TYPES: [&'static str; 3] = ["hook.disabled", "delivery.failed", "hook.recovered"];
}

/// The data of `hook.disabled`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct HookDisabled {
    /// The hook's workflow.
    pub workflow_id: String,
    /// The hook, `hook_` and a number.
    pub hook: String,
    /// The delivery whose attempt got the 410; it stays pending, first in the hook's queue.
    pub delivery: u64,
    /// That delivery's `webhook-id`.
    pub webhook_id: String,
    /// Why, in words.
    pub reason: String,
}

/// The data of `delivery.failed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct DeliveryFailed {
    /// The hook's workflow.
    pub workflow_id: String,
    /// The hook, `hook_` and a number.
    pub hook: String,
    /// The delivery given up.
    pub delivery: u64,
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// Attempts made, the last included.
    pub attempts: u32,
    /// The HTTP status of the last attempt, if the receiver answered.
    pub last_status: Option<u16>,
    /// Why it was given up, in words.
    pub reason: String,
}

/// The data of `hook.recovered`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct HookRecovered {
    /// The hook's workflow.
    pub workflow_id: String,
    /// The hook, `hook_` and a number.
    pub hook: String,
    /// The delivery that got through.
    pub delivery: u64,
    /// When the trouble began (the first of `after`).
    pub since: Timestamp,
    /// The troubles it recovered from, in the order they began, each once.
    pub after: Vec<Trouble>,
}

/// A trouble a hook can recover from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[non_exhaustive]
pub enum Trouble {
    /// One of its deliveries was given up (`delivery.failed`).
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    /// It was disabled by a 410 Gone (`hook.disabled`), then enabled again.
    #[serde(rename = "hook.disabled")]
    HookDisabled,
    /// Its circuit breaker paused it: its receiver kept timing out.
    #[serde(rename = "hook.paused")]
    HookPaused,
}

impl Trouble {
    /// Its name as it appears in `after`: `delivery.failed`, `hook.disabled`, `hook.paused`.
    ///
    /// ```
    /// assert_eq!(linq_hooks_events::ops::Trouble::HookPaused.as_str(), "hook.paused");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Trouble::DeliveryFailed => "delivery.failed",
            Trouble::HookDisabled => "hook.disabled",
            Trouble::HookPaused => "hook.paused",
        }
    }
}
