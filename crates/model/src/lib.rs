//! The LINQ workflow hook model.
//!
//! A LINQ workflow declares *hooks*: "when this happens, POST a JSON body to this URL". This crate
//! holds their types, reads them exactly as the LINQ API and its Python SDK write them, and checks
//! them more strictly than the API does, so that a hook that would only fail at delivery time is
//! refused when it is written.
//!
//! It knows nothing of HTTP clients, IO or async: it turns JSON text into [`Hook`] values and
//! back, and (with the `schema` feature) describes them with a JSON Schema.
//!
//! # Reading hooks
//!
//! [`parse_hooks`] reads any of the four shapes users have at hand: one hook object, an array of
//! hooks, an object whose `hooks` field is the array, or the LINQ API's own workflow document
//! (`{"name": ..., "workflow": {"hooks": [...], "tasks": {...}, ...}, ...}`, as the SDK's
//! `Workflow.to_api_input()` writes it). Every problem in the document is reported, each with its
//! JSON path; in the workflow document, task and labware ids that name nothing the workflow lists
//! are warned about.
//!
//! ```
//! use linq_hooks_model::{parse_hooks, Hook};
//!
//! let parsed = parse_hooks(r#"{"hooks": [
//!     {"filter": "on_task_state_change", "parameters": {"url": "https://lims.example/hook"}, "task_ids": ["t1"]}
//! ]}"#)?;
//! let Hook::TaskStateChange(hook) = &parsed.hooks[0] else { unreachable!() };
//! assert_eq!(hook.task_ids, ["t1"]);
//! assert_eq!(hook.parameters.url(), "https://lims.example/hook");
//!
//! let err = parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "/relative"}}]"#).unwrap_err();
//! assert_eq!(err.to_string(), "[0].parameters.url: relative URL without a scheme");
//! # Ok::<(), linq_hooks_model::Error>(())
//! ```
//!
//! # Writing hooks
//!
//! Serializing a [`Hook`] gives the API form the SDK sends: `filter` first, `headers` always an
//! object, `trigger_on` filled in, unknown fields dropped.
//!
//! ```
//! # use linq_hooks_model::parse_hooks;
//! let parsed = parse_hooks(r#"{"parameters": {"url": "http://example.com", "headers": null},
//!                              "labware_ids": [], "filter": "on_labware_movement"}"#)?;
//! assert_eq!(
//!     serde_json::to_string(&parsed.hooks)?,
//!     r#"[{"filter":"on_labware_movement","parameters":{"url":"http://example.com","headers":{}},"labware_ids":[],"trigger_on":"both"}]"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `schema` (off by default): the `schema` module, which generates the JSON Schemas of the
//!   hooks (`schemas/hook.schema.json`, `schemas/hooks.schema.json`), and `schemars::JsonSchema`
//!   for every public type. It adds `schemars`; reading and writing hooks does not need it.
//!
//! ```toml
//! linq-hooks-model = { version = "0.1", features = ["schema"] }
//! ```
//!
//! ```
//! # #[cfg(feature = "schema")] {
//! let schema = linq_hooks_model::schema::hooks();
//! assert_eq!(schema.get("title").unwrap(), "Hooks");
//! # }
//! ```
#![forbid(unsafe_code)]

mod check;
mod error;
mod hook;
mod parse;
#[cfg(feature = "schema")]
pub mod schema;

pub use check::URL_SCHEMES;
pub use error::{Diagnostic, Error};
pub use hook::{
    Headers, Hook, HookKind, HookParameters, LabwareMovementHook, NewPlanHook, RunStateChangeHook,
    SafetyStateChangeHook, TaskStateChangeHook, TriggerOn,
};
pub use parse::{ParsedHooks, parse_hooks, parse_hooks_value};
