//! The five event bodies, each in the flat style of LINQ's documented run-state body.
//!
//! Every body type reads on its own (without `event`), so a receiver of real LINQ webhooks can
//! use it. `message` may be absent (or empty) on input; the body then carries a short sentence
//! made from the state.

#[cfg(feature = "schema")]
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Phase, RunState, SafetyState, TaskState, Timestamp};

/// A run changed state: LINQ's documented body.
///
/// ```
/// use linq_hooks_events::{RunState, RunStateChange};
///
/// // The body from LINQ's documentation, unchanged (its run_id is not a UUID: ids are opaque).
/// let body = r#"{"state": "paused", "message": "The run is paused.", "run_id": "00000000-0000-0000-000000000000", "timestamp": "2025-04-17T09:30:00.000Z"}"#;
/// let event: RunStateChange = serde_json::from_str(body)?;
/// assert_eq!(event.state, RunState::Paused);
/// assert_eq!(event.timestamp.to_string(), "2025-04-17T09:30:00.000Z");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(remote = "Self")]
pub struct RunStateChange {
    /// The run.
    pub run_id: String,
    /// Its new state.
    pub state: RunState,
    /// A short human sentence (generated from the state when the input had none).
    #[serde(default)]
    pub message: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Fields this version does not know, as received: sent on unchanged, after the known ones
    /// (in key order), so that a field a newer scheduler adds reaches receivers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A task changed state.
///
/// ```
/// let event: linq_hooks_events::TaskStateChange = serde_json::from_str(
///     r#"{"run_id": "r1", "task_id": "read-plate", "state": "failed", "error": "lid stuck", "timestamp": "2025-04-17T09:30:00Z"}"#,
/// )?;
/// assert_eq!(event.message, "Task read-plate failed: lid stuck");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(remote = "Self")]
pub struct TaskStateChange {
    /// The run the task belongs to.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Its new state.
    pub state: TaskState,
    /// A short human sentence (generated from the state when the input had none).
    #[serde(default)]
    pub message: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// What went wrong, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields this version does not know, as received: sent on unchanged, after the known ones
    /// (in key order), so that a field a newer scheduler adds reaches receivers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The workcell's safety state changed.
///
/// ```
/// let event: linq_hooks_events::SafetyStateChange =
///     serde_json::from_str(r#"{"state": "alert", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
/// assert_eq!(event.message, "The workcell raised a safety alert.");
/// assert_eq!(event.run_id, None);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(remote = "Self")]
pub struct SafetyStateChange {
    /// The new safety state.
    pub state: SafetyState,
    /// A short human sentence (generated from the state when the input had none).
    #[serde(default)]
    pub message: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The run going on at the time, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The workcell, if the scheduler drives several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workcell_id: Option<String>,
    /// Fields this version does not know, as received: sent on unchanged, after the known ones
    /// (in key order), so that a field a newer scheduler adds reaches receivers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where labware is: an instrument and a slot on it (the LINQ API's location shape).
///
/// ```
/// let at: linq_hooks_events::Location = serde_json::from_str(r#"{"instrument": "hotel", "slot": 3}"#)?;
/// assert_eq!(at.slot, 3);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct Location {
    /// The instrument's id.
    pub instrument: String,
    /// The slot on the instrument.
    pub slot: u32,
    /// Fields this version does not know, as received: sent on unchanged, after the known ones
    /// (in key order), so that a field a newer scheduler adds reaches receivers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Labware was picked up (`phase: start`) or put down (`phase: end`).
///
/// ```
/// let event: linq_hooks_events::LabwareMovement = serde_json::from_str(r#"{
///     "run_id": "r1", "labware_id": "plate-7", "phase": "start",
///     "source": {"instrument": "hotel", "slot": 3}, "destination": {"instrument": "reader", "slot": 1},
///     "timestamp": "2025-04-17T09:30:00Z"}"#)?;
/// assert_eq!(event.message, "Labware plate-7 was picked up from hotel slot 3.");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(remote = "Self")]
pub struct LabwareMovement {
    /// The run moving the labware.
    pub run_id: String,
    /// The labware.
    pub labware_id: String,
    /// `start`: picked up; `end`: put down.
    pub phase: Phase,
    /// Where it comes from.
    pub source: Location,
    /// Where it goes.
    pub destination: Location,
    /// A short human sentence (generated from the phase when the input had none).
    #[serde(default)]
    pub message: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Fields this version does not know, as received: sent on unchanged, after the known ones
    /// (in key order), so that a field a newer scheduler adds reaches receivers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The scheduler made a new plan.
///
/// ```
/// let event: linq_hooks_events::NewPlan =
///     serde_json::from_str(r#"{"plan_id": "p2", "run_id": "r1", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
/// assert_eq!(event.message, "The scheduler made a new plan, p2.");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(remote = "Self")]
pub struct NewPlan {
    /// The plan.
    pub plan_id: String,
    /// A short human sentence (generated when the input had none).
    #[serde(default)]
    pub message: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The run it is for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The workflow it is for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Fields this version does not know, as received: sent on unchanged, after the known ones
    /// (in key order), so that a field a newer scheduler adds reaches receivers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The sentence a body carries when its input had no `message`.
trait DefaultMessage {
    fn default_message(&self) -> String;
}

impl DefaultMessage for RunStateChange {
    fn default_message(&self) -> String {
        match &self.state {
            RunState::Started => "The run has started.".into(),
            RunState::Paused => "The run is paused.".into(),
            RunState::Resumed => "The run has resumed.".into(),
            RunState::Stopped => "The run has stopped.".into(),
            other => format!("The run is now {other}."),
        }
    }
}

impl DefaultMessage for TaskStateChange {
    fn default_message(&self) -> String {
        let task = &self.task_id;
        match (&self.state, &self.error) {
            (TaskState::Failed, Some(error)) => format!("Task {task} failed: {error}"),
            (TaskState::Skipped, _) => format!("Task {task} was skipped."),
            (TaskState::Cancelled, _) => format!("Task {task} was cancelled."),
            (state, _) if state.is_known() => format!("Task {task} {state}."),
            (other, _) => format!("Task {task} is now {other}."),
        }
    }
}

impl DefaultMessage for SafetyStateChange {
    fn default_message(&self) -> String {
        match &self.state {
            SafetyState::Normal => "The workcell is back to normal.".into(),
            SafetyState::Alert => "The workcell raised a safety alert.".into(),
            SafetyState::EmergencyStop => "The workcell is in emergency stop.".into(),
            other => format!("The workcell's safety state is now {other}."),
        }
    }
}

impl DefaultMessage for LabwareMovement {
    fn default_message(&self) -> String {
        let (id, from, to) = (&self.labware_id, &self.source, &self.destination);
        match self.phase {
            Phase::Start => format!(
                "Labware {id} was picked up from {} slot {}.",
                from.instrument, from.slot
            ),
            Phase::End => format!(
                "Labware {id} was put down on {} slot {}.",
                to.instrument, to.slot
            ),
        }
    }
}

impl DefaultMessage for NewPlan {
    fn default_message(&self) -> String {
        format!("The scheduler made a new plan, {}.", self.plan_id)
    }
}

/// `#[serde(remote = "Self")]` turns the derives into inherent functions; these trait impls call
/// them and fill in the default message, so every way of reading a body gives the same result.
macro_rules! serde_with_default_message {
    ($($ty:ident),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $ty::serialize(self, serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
                let mut body = $ty::deserialize(deserializer)?;
                if body.message.is_empty() {
                    body.message = body.default_message();
                }
                Ok(body)
            }
        }
    )*};
}

serde_with_default_message!(
    RunStateChange,
    TaskStateChange,
    SafetyStateChange,
    LabwareMovement,
    NewPlan
);
