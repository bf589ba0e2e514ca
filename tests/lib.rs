//! Shared test utilities for the workspace's integration tests (`tests/it/` here, and the CLI's
//! tests in `crates/cli/tests/`), in the spirit of hyper's `test_utils`.
//!
//! ```
//! let cases = linq_hooks_tests::sdk_hook_cases();
//! assert_eq!(cases.len(), 400);
//! ```
#![forbid(unsafe_code)]

mod client;
mod flood;
mod mosquitto;
pub mod postgres;
mod proxy;
mod receiver;
mod socks;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use client::{Reply, request};
pub use flood::Flood;
pub use mosquitto::Mosquitto;
pub use proxy::{ForwardProxy, Proxied};
pub use receiver::{Answer, Received, Receiver};
pub use socks::Socks5Proxy;

/// One case of the LINQ SDK conformance data (`fixtures/linq-sdk/hook-cases.jsonl`): a hook
/// document and how the LINQ SDK's own models judged it.
#[derive(Clone, Debug, Deserialize)]
pub struct SdkHookCase {
    /// The case name.
    pub id: String,
    /// The document as text: one hook, an array of hooks, or `{"hooks": [...]}`.
    pub input: String,
    /// Whether the SDK accepts the hooks.
    pub valid: bool,
    /// When valid: the SDK's dump of the hooks in API form.
    pub normalized: Option<serde_json::Value>,
    /// When invalid: the SDK's first error type.
    pub error: Option<String>,
}

/// The directory of the test fixtures.
///
/// ```
/// assert!(linq_hooks_tests::fixtures_dir().join("linq-sdk").is_dir());
/// ```
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The workspace root (where `schemas/` and `examples/` are).
///
/// ```
/// assert!(linq_hooks_tests::workspace_root().join("Cargo.toml").is_file());
/// ```
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One case of the LINQ SDK's judged workflow documents (`fixtures/linq-sdk/workflow-cases.jsonl`):
/// a whole workflow document in the API's form (`{"workflow": {"hooks": [...], ...}, ...}`) and how
/// the SDK's `WorkflowConfigInput` model judged it.
#[derive(Clone, Debug, Deserialize)]
pub struct SdkWorkflowCase {
    /// The case name.
    pub id: String,
    /// The whole workflow document as text.
    pub input: String,
    /// Whether the SDK accepts the document.
    pub valid: bool,
    /// When valid: the SDK's dump of `workflow.hooks` in API form.
    pub normalized: Option<serde_json::Value>,
}

/// All 400 LINQ SDK conformance cases, in file order.
pub fn sdk_hook_cases() -> Vec<SdkHookCase> {
    read_jsonl("linq-sdk/hook-cases.jsonl")
}

/// All 80 LINQ SDK workflow documents, in file order.
///
/// ```
/// let cases = linq_hooks_tests::sdk_workflow_cases();
/// assert_eq!(cases.len(), 80);
/// assert!(cases.iter().any(|case| !case.valid));
/// ```
pub fn sdk_workflow_cases() -> Vec<SdkWorkflowCase> {
    read_jsonl("linq-sdk/workflow-cases.jsonl")
}

/// Reads a JSON Lines fixture, one value per line, naming the file and line of any problem.
fn read_jsonl<T: serde::de::DeserializeOwned>(relative: &str) -> Vec<T> {
    let path = fixtures_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Reads a JSON file of the workspace, such as `schemas/hook.schema.json`.
pub fn read_json(relative: &str) -> serde_json::Value {
    let path = workspace_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
