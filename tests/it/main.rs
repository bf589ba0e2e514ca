//! Workspace-level integration tests: one test binary, one module per concern.

mod conformance;
mod events;
mod hooks;
