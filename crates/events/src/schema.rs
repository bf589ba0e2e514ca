//! JSON Schemas of the event bodies, generated from the Rust types.
//!
//! They describe bodies *as sent*: `event` and `message` always present, `timestamp` in UTC with
//! milliseconds. `cargo xtask schema` writes them to `schemas/`.
//!
//! ```
//! use linq_hooks_events::{EventKind, schema};
//! let union = schema::event();
//! assert_eq!(union.get("title").unwrap(), "Event");
//! let run = schema::body(EventKind::RunStateChange);
//! assert_eq!(run.get("title").unwrap(), "RunStateChange");
//! ```

use schemars::transform::RecursiveTransform;
use schemars::{Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::Value;

use crate::{
    Event, EventKind, LabwareMovement, NewPlan, RunStateChange, SafetyStateChange, TaskStateChange,
};

/// The schema of any event body: the union of the five kinds, tagged by `event`.
///
/// ```
/// let schema = linq_hooks_events::schema::event();
/// assert!(schema.get("oneOf").is_some());
/// ```
pub fn event() -> Schema {
    let mut schema = generator().into_root_schema_for::<Event>();
    if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
        for def in defs.values_mut().filter_map(Value::as_object_mut) {
            require_message(def);
        }
    }
    schema
}

/// The schema of one kind's body. `event` is optional here, so that LINQ's documented body
/// (which has none) validates against `run_state_change`'s schema.
///
/// ```
/// use linq_hooks_events::{EventKind, schema};
/// let schema = schema::body(EventKind::TaskStateChange);
/// assert_eq!(schema.get("properties").unwrap()["event"]["const"], "task_state_change");
/// ```
pub fn body(kind: EventKind) -> Schema {
    let generator = generator();
    let mut schema = match kind {
        EventKind::RunStateChange => generator.into_root_schema_for::<RunStateChange>(),
        EventKind::TaskStateChange => generator.into_root_schema_for::<TaskStateChange>(),
        EventKind::SafetyStateChange => generator.into_root_schema_for::<SafetyStateChange>(),
        EventKind::LabwareMovement => generator.into_root_schema_for::<LabwareMovement>(),
        EventKind::NewPlan => generator.into_root_schema_for::<NewPlan>(),
    };
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        let event = serde_json::json!({
            "description": "The kind of event.",
            "type": "string",
            "const": kind.name(),
        });
        properties.insert("event".into(), event);
    }
    if let Some(object) = schema.as_object_mut() {
        require_message(object);
    }
    schema
}

/// The schema of an operational webhook's body ([`crate::ops::OpsEvent`]): `type`, `timestamp`
/// and `data`, one of the three kinds of `serve --ops-url`.
///
/// ```
/// let schema = linq_hooks_events::schema::ops_event();
/// assert_eq!(schema.get("title").unwrap(), "OpsEvent");
/// ```
pub fn ops_event() -> Schema {
    generator().into_root_schema_for::<crate::ops::OpsEvent>()
}

/// `message` may be absent on input, but every body sent carries one.
fn require_message(schema: &mut serde_json::Map<String, Value>) {
    let message = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("message"));
    let Some(Value::Object(message)) = message else {
        return;
    };
    message.remove("default");
    if let Some(Value::Array(required)) = schema.get_mut("required")
        && !required.contains(&Value::from("message"))
    {
        required.push("message".into());
    }
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(summary_descriptions))
        .into_generator()
}

/// The cut of [`summary_descriptions`], applied by each type's derived `JsonSchema` impl
/// (`#[schemars(transform = summary)]`), so that a user's own `schemars::schema_for!` gives
/// the same short descriptions as this module.
pub(crate) fn summary(schema: &mut Schema) {
    schemars::transform::Transform::transform(
        &mut RecursiveTransform(summary_descriptions),
        schema,
    );
}

/// Descriptions come from the rustdoc comments; a schema keeps only their first paragraph (the
/// summary), on one line: the rest is for Rust readers.
fn summary_descriptions(schema: &mut Schema) {
    if let Some(Value::String(description)) = schema.get_mut("description") {
        let summary = description.split("\n\n").next().unwrap_or_default();
        *description = summary.split_whitespace().collect::<Vec<_>>().join(" ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn descriptions(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(d)) = map.get("description") {
                    out.push(d.clone());
                }
                map.values().for_each(|v| descriptions(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| descriptions(v, out)),
            _ => {}
        }
    }

    /// A user's `schema_for!` carries the same short descriptions as this module's schemas:
    /// the derived impls cut them themselves.
    #[test]
    fn schema_for_has_the_summaries() {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        descriptions(&event().to_value(), &mut ours);
        descriptions(&schemars::schema_for!(Event).to_value(), &mut theirs);
        ours.sort();
        theirs.sort();
        assert!(!ours.is_empty());
        assert_eq!(theirs, ours);
    }
}
