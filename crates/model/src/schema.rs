//! JSON Schemas of the hook model, generated from the Rust types themselves.
//!
//! The schemas describe the wire format exactly as the LINQ API accepts it (`filter`-tagged
//! union, `headers` an object or null, unknown fields allowed). They cannot check URL syntax or
//! header names: that is [`parse_hooks`](crate::parse_hooks)' job. `cargo xtask schema` writes
//! them to `schemas/`.
//!
//! ```
//! let schema = linq_hooks_model::schema::hook();
//! assert_eq!(schema.get("$schema").unwrap(), "https://json-schema.org/draft/2020-12/schema");
//! ```

use schemars::transform::RecursiveTransform;
use schemars::{Schema, generate::SchemaSettings};
use serde_json::Value;

use crate::Hook;

/// The schema of one hook: the union of the five hook kinds, tagged by `filter`.
///
/// ```
/// let schema = linq_hooks_model::schema::hook();
/// assert_eq!(schema.get("title").unwrap(), "Hook");
/// ```
pub fn hook() -> Schema {
    generator().into_root_schema_for::<Hook>()
}

/// The schema of a workflow's `hooks` array: a list of hooks.
///
/// ```
/// let schema = linq_hooks_model::schema::hooks();
/// assert_eq!(schema.get("type").unwrap(), "array");
/// ```
pub fn hooks() -> Schema {
    let mut schema = generator().into_root_schema_for::<Vec<Hook>>();
    schema.insert("title".into(), "Hooks".into());
    schema.insert(
        "description".into(),
        "The `hooks` array of a LINQ workflow.".into(),
    );
    schema
}

fn generator() -> schemars::SchemaGenerator {
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
/// summary), on one line: the rest is for Rust readers (examples, notes on the API).
fn summary_descriptions(schema: &mut Schema) {
    if let Some(Value::String(description)) = schema.get_mut("description") {
        let summary = description.split("\n\n").next().unwrap_or_default();
        *description = summary.split_whitespace().collect::<Vec<_>>().join(" ");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's `schema_for!` gets what this module gives: the derived impls cut the
    /// descriptions themselves.
    #[test]
    fn schema_for_matches_the_module() {
        let mut ours = hooks().to_value();
        let mut theirs = schemars::schema_for!(Vec<Hook>).to_value();
        for root in [&mut ours, &mut theirs] {
            let root = root.as_object_mut().unwrap();
            root.remove("title");
            root.remove("description");
        }
        assert_eq!(theirs, ours);
        assert!(ours.to_string().contains("\"description\""));
    }
}
