//! The webhook bodies linq-hooks sends: typed events of the LINQ scheduler.
//!
//! These bodies are the public contract receivers code against, in any language; their JSON
//! Schemas are generated from these types (the `schema` module, with the `schema` feature).
//! Every body is flat, in the style of LINQ's documented run-state body, and carries `event`,
//! naming its kind (the hook's `filter` without `on_`).
//!
//! | `event` | body type | fired for hooks with `filter` |
//! | --- | --- | --- |
//! | `run_state_change` | [`RunStateChange`] | `on_run_state_change` |
//! | `task_state_change` | [`TaskStateChange`] | `on_task_state_change` |
//! | `safety_state_change` | [`SafetyStateChange`] | `on_safety_state_change` |
//! | `labware_movement` | [`LabwareMovement`] | `on_labware_movement` |
//! | `new_plan` | [`NewPlan`] | `on_new_plan` |
//!
//! Rules receivers rely on: `message` is always there (made from the state when the sender had
//! none); `timestamp` is UTC with milliseconds and `Z`; a state this version does not know is
//! passed on as it came; so is a field it does not know, after the known ones (each body's
//! `extra`).
//!
//! This crate does no IO and no async.
//!
//! ```
//! use linq_hooks_events::{Event, parse_event};
//!
//! let event = parse_event(r#"{"event": "task_state_change", "run_id": "r1", "task_id": "t1",
//!                             "state": "succeeded", "timestamp": "2025-04-17T11:30:00+02:00"}"#)?;
//! let Event::TaskStateChange(task) = &event else { unreachable!() };
//! assert_eq!(task.message, "Task t1 succeeded.");
//! assert_eq!(
//!     serde_json::to_string(&event).unwrap(),
//!     r#"{"event":"task_state_change","run_id":"r1","task_id":"t1","state":"succeeded","message":"Task t1 succeeded.","timestamp":"2025-04-17T09:30:00.000Z"}"#
//! );
//!
//! let err = parse_event(r#"{"event": "run_state_change", "run_id": 7}"#).unwrap_err();
//! assert_eq!(err.to_string(), "run_id: invalid type: integer `7`, expected a string");
//! # Ok::<(), linq_hooks_events::Error>(())
//! ```
//!
//! # Features
//!
//! - `schema` (off by default): the `schema` module, which generates the JSON Schemas of the
//!   bodies (`schemas/event.schema.json`, `schemas/events/*.schema.json`), and
//!   `schemars::JsonSchema` for every public type. It adds `schemars`; sending and receiving
//!   events does not need it.
//!
//! ```toml
//! linq-hooks-events = { version = "0.1", features = ["schema"] }
//! ```
//!
//! ```
//! # #[cfg(feature = "schema")] {
//! let schema = linq_hooks_events::schema::event();
//! assert_eq!(schema.get("$schema").unwrap(), "https://json-schema.org/draft/2020-12/schema");
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod kinds;
pub mod ops;
#[cfg(feature = "schema")]
pub mod schema;
mod state;
mod timestamp;

#[cfg(feature = "schema")]
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use error::Error;
pub use kinds::{
    LabwareMovement, Location, NewPlan, RunStateChange, SafetyStateChange, TaskStateChange,
};
pub use state::{Phase, RunState, SafetyState, TaskState};
pub use timestamp::{Timestamp, TimestampError};

/// An event of any kind: the union of the five bodies, tagged by `event`.
///
/// ```
/// use linq_hooks_events::{Event, EventKind};
/// let event: Event = serde_json::from_str(
///     r#"{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"}"#,
/// )?;
/// assert_eq!(event.kind(), EventKind::NewPlan);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// `run_state_change`
    RunStateChange(RunStateChange),
    /// `task_state_change`
    TaskStateChange(TaskStateChange),
    /// `safety_state_change`
    SafetyStateChange(SafetyStateChange),
    /// `labware_movement`
    LabwareMovement(LabwareMovement),
    /// `new_plan`
    NewPlan(NewPlan),
}

/// The five kinds of event, named by their `event` value.
///
/// ```
/// use linq_hooks_events::EventKind;
/// assert_eq!(EventKind::from_name("labware_movement"), Some(EventKind::LabwareMovement));
/// assert_eq!(EventKind::LabwareMovement.name(), "labware_movement");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// `run_state_change`
    RunStateChange,
    /// `task_state_change`
    TaskStateChange,
    /// `safety_state_change`
    SafetyStateChange,
    /// `labware_movement`
    LabwareMovement,
    /// `new_plan`
    NewPlan,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 5] = [
        EventKind::RunStateChange,
        EventKind::TaskStateChange,
        EventKind::SafetyStateChange,
        EventKind::LabwareMovement,
        EventKind::NewPlan,
    ];

    /// The `event` value of this kind.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::RunStateChange => "run_state_change",
            EventKind::TaskStateChange => "task_state_change",
            EventKind::SafetyStateChange => "safety_state_change",
            EventKind::LabwareMovement => "labware_movement",
            EventKind::NewPlan => "new_plan",
        }
    }

    /// The kind an `event` value names, if any (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl Event {
    /// Which kind of event this is.
    ///
    /// ```
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// assert_eq!(event.kind().name(), "new_plan");
    /// ```
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RunStateChange(_) => EventKind::RunStateChange,
            Event::TaskStateChange(_) => EventKind::TaskStateChange,
            Event::SafetyStateChange(_) => EventKind::SafetyStateChange,
            Event::LabwareMovement(_) => EventKind::LabwareMovement,
            Event::NewPlan(_) => EventKind::NewPlan,
        }
    }

    /// When it happened.
    ///
    /// ```
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// assert_eq!(event.timestamp().to_string(), "2025-04-17T09:30:00.000Z");
    /// ```
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Event::RunStateChange(e) => e.timestamp,
            Event::TaskStateChange(e) => e.timestamp,
            Event::SafetyStateChange(e) => e.timestamp,
            Event::LabwareMovement(e) => e.timestamp,
            Event::NewPlan(e) => e.timestamp,
        }
    }

    /// The human sentence the body carries.
    ///
    /// ```
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "run_state_change", "run_id": "r", "state": "paused", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// assert_eq!(event.message(), "The run is paused.");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Event::RunStateChange(e) => &e.message,
            Event::TaskStateChange(e) => &e.message,
            Event::SafetyStateChange(e) => &e.message,
            Event::LabwareMovement(e) => &e.message,
            Event::NewPlan(e) => &e.message,
        }
    }

    /// The run the event belongs to, when it has one.
    ///
    /// ```
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// assert_eq!(event.run_id(), None);
    /// ```
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Event::RunStateChange(e) => Some(&e.run_id),
            Event::TaskStateChange(e) => Some(&e.run_id),
            Event::LabwareMovement(e) => Some(&e.run_id),
            Event::SafetyStateChange(e) => e.run_id.as_deref(),
            Event::NewPlan(e) => e.run_id.as_deref(),
        }
    }

    /// The fields that identify the event, as `(name, value)` pairs in a fixed order per kind:
    /// what a person scanning a stream of events needs to tell them apart.
    ///
    /// | kind | fields |
    /// | --- | --- |
    /// | `run_state_change` | `run`, `state` |
    /// | `task_state_change` | `run`, `task`, `state` |
    /// | `safety_state_change` | `run` (if any), `workcell` (if any), `state` |
    /// | `labware_movement` | `run`, `labware`, `phase`, `from`, `to` (`instrument/slot`) |
    /// | `new_plan` | `run` (if any), `plan`, `workflow` (if any) |
    ///
    /// The message and the timestamp are not among them: they say what happened and when,
    /// not which thing it happened to.
    ///
    /// ```
    /// let event = linq_hooks_events::parse_event(r#"{"event": "labware_movement",
    ///     "run_id": "r1", "labware_id": "plate-1", "phase": "end",
    ///     "source": {"instrument": "hotel", "slot": 3},
    ///     "destination": {"instrument": "reader", "slot": 1},
    ///     "timestamp": "2025-04-17T09:30:00Z"}"#)?;
    /// let fields: Vec<String> = event.key_fields().iter().map(|(k, v)| format!("{k}={v}")).collect();
    /// assert_eq!(fields, ["run=r1", "labware=plate-1", "phase=end", "from=hotel/3", "to=reader/1"]);
    /// # Ok::<(), linq_hooks_events::Error>(())
    /// ```
    pub fn key_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::new();
        let mut push = |key, value: &str| fields.push((key, value.to_string()));
        match self {
            Event::RunStateChange(e) => {
                push("run", &e.run_id);
                push("state", e.state.as_str());
            }
            Event::TaskStateChange(e) => {
                push("run", &e.run_id);
                push("task", &e.task_id);
                push("state", e.state.as_str());
            }
            Event::SafetyStateChange(e) => {
                if let Some(run) = &e.run_id {
                    push("run", run);
                }
                if let Some(workcell) = &e.workcell_id {
                    push("workcell", workcell);
                }
                push("state", e.state.as_str());
            }
            Event::LabwareMovement(e) => {
                push("run", &e.run_id);
                push("labware", &e.labware_id);
                push("phase", e.phase.as_str());
                let from = format!("{}/{}", e.source.instrument, e.source.slot);
                push("from", &from);
                let to = format!("{}/{}", e.destination.instrument, e.destination.slot);
                push("to", &to);
            }
            Event::NewPlan(e) => {
                if let Some(run) = &e.run_id {
                    push("run", run);
                }
                push("plan", &e.plan_id);
                if let Some(workflow) = &e.workflow_id {
                    push("workflow", workflow);
                }
            }
        }
        fields
    }

    /// The fields of the body this version does not know, as received (empty for most events).
    /// They are sent on after the known fields.
    ///
    /// ```
    /// let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p",
    ///     "timestamp": "2025-04-17T09:30:00Z", "plan_version": 3}"#)?;
    /// assert_eq!(event.extra()["plan_version"], 3);
    /// assert!(String::from_utf8(event.to_json_bytes()).unwrap().ends_with(r#","plan_version":3}"#));
    /// # Ok::<(), linq_hooks_events::Error>(())
    /// ```
    pub fn extra(&self) -> &serde_json::Map<String, Value> {
        match self {
            Event::RunStateChange(e) => &e.extra,
            Event::TaskStateChange(e) => &e.extra,
            Event::SafetyStateChange(e) => &e.extra,
            Event::LabwareMovement(e) => &e.extra,
            Event::NewPlan(e) => &e.extra,
        }
    }

    fn extra_mut(&mut self) -> &mut serde_json::Map<String, Value> {
        match self {
            Event::RunStateChange(e) => &mut e.extra,
            Event::TaskStateChange(e) => &mut e.extra,
            Event::SafetyStateChange(e) => &mut e.extra,
            Event::LabwareMovement(e) => &mut e.extra,
            Event::NewPlan(e) => &mut e.extra,
        }
    }

    /// The body as JSON bytes: exactly what a webhook for this event posts.
    ///
    /// ```
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// assert!(event.to_json_bytes().starts_with(br#"{"event":"new_plan""#));
    /// ```
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }
}

/// Reads one event from JSON text; the error names the JSON path and the reason.
///
/// ```
/// let err = linq_hooks_events::parse_event(r#"{"event": "labware_movement", "run_id": "r", "labware_id": "l",
///     "phase": "middle", "source": {"instrument": "a", "slot": 1}, "destination": {"instrument": "b", "slot": 2},
///     "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap_err();
/// assert_eq!(err.path(), Some("phase"));
/// ```
pub fn parse_event(text: &str) -> Result<Event, Error> {
    // A byte order mark before the JSON is ignored, as RFC 8259 §8.1 allows.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(Error::syntax)?;
    parse_event_value(&value)
}

/// Like [`parse_event`], for an event that is already a `serde_json::Value`.
///
/// ```
/// let value = serde_json::json!({"event": "safety_state_change", "state": "normal", "timestamp": "2025-04-17T09:30:00Z"});
/// assert_eq!(linq_hooks_events::parse_event_value(&value)?.message(), "The workcell is back to normal.");
/// # Ok::<(), linq_hooks_events::Error>(())
/// ```
pub fn parse_event_value(value: &Value) -> Result<Event, Error> {
    let Value::Object(map) = value else {
        return Err(Error::invalid(
            "$",
            format!("expected an event object, found {}", describe(value)),
        ));
    };
    let kind = match map.get("event") {
        Some(Value::String(name)) => EventKind::from_name(name).ok_or_else(|| {
            Error::invalid(
                "event",
                format!(
                    "unknown event {}; expected one of {}",
                    Value::from(name.as_str()),
                    kind_names()
                ),
            )
        })?,
        Some(other) => {
            return Err(Error::invalid(
                "event",
                format!(
                    "expected a string (one of {}), found {}",
                    kind_names(),
                    describe(other)
                ),
            ));
        }
        None => {
            return Err(Error::invalid(
                "event",
                format!("missing required field `event` (one of {})", kind_names()),
            ));
        }
    };
    fn body<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, Error> {
        serde_path_to_error::deserialize(value).map_err(Error::from_path)
    }
    let mut event = match kind {
        EventKind::RunStateChange => Event::RunStateChange(body(value)?),
        EventKind::TaskStateChange => Event::TaskStateChange(body(value)?),
        EventKind::SafetyStateChange => Event::SafetyStateChange(body(value)?),
        EventKind::LabwareMovement => Event::LabwareMovement(body(value)?),
        EventKind::NewPlan => Event::NewPlan(body(value)?),
    };
    // `event` is the union's tag, written by its own serializer: not a field of the body.
    event.extra_mut().remove("event");
    Ok(event)
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        let value = Value::deserialize(deserializer)?;
        parse_event_value(&value).map_err(serde::de::Error::custom)
    }
}

fn kind_names() -> String {
    EventKind::ALL.map(EventKind::name).join(", ")
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check(body, expected)`: the key fields of the event `body`, written `k=v` and joined.
    fn check(body: &str, expected: &str) {
        let event = parse_event(body).unwrap();
        let fields: Vec<String> = event
            .key_fields()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        assert_eq!(fields.join(" "), expected, "{body}");
    }

    #[test]
    fn key_fields_of_each_kind() {
        const T: &str = r#""timestamp": "2025-04-17T09:30:00Z""#;
        check(
            &format!(r#"{{"event": "run_state_change", "run_id": "r1", "state": "paused", {T}}}"#),
            "run=r1 state=paused",
        );
        check(
            &format!(
                r#"{{"event": "task_state_change", "run_id": "r1", "task_id": "t1", "state": "failed", {T}}}"#
            ),
            "run=r1 task=t1 state=failed",
        );
        check(
            &format!(r#"{{"event": "safety_state_change", "state": "emergency_stop", {T}}}"#),
            "state=emergency_stop",
        );
        check(
            &format!(
                r#"{{"event": "safety_state_change", "run_id": "r1", "workcell_id": "w", "state": "emergency_stop", {T}}}"#
            ),
            "run=r1 workcell=w state=emergency_stop",
        );
        check(
            &format!(r#"{{"event": "new_plan", "plan_id": "p1", {T}}}"#),
            "plan=p1",
        );
        check(
            &format!(
                r#"{{"event": "new_plan", "run_id": "r1", "plan_id": "p1", "workflow_id": "wf", {T}}}"#
            ),
            "run=r1 plan=p1 workflow=wf",
        );
    }
}
