//! Helpers shared by the store's integration tests: store files, hooks, events, outcomes.
#![allow(dead_code)] // each test binary uses its own part

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{
    Attempt, AttemptResult, Delivery, Head, HookId, NewDelivery, Outbox, Outcome,
};
use linq_hooks_model::Hook;
use linq_hooks_outbox::{NewEvent, Store};
use linq_hooks_signature::Secret;

/// A fresh store file for one test (the directory is this process's, the name the test's).
pub fn store_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linq-hooks-outbox-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.redb"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Hooks from JSON (any shape `parse_hooks` reads).
pub fn hooks(json: &str) -> Vec<Hook> {
    linq_hooks_model::parse_hooks(json)
        .unwrap_or_else(|e| panic!("{json}: {e}"))
        .hooks
}

/// `n` hooks that do not fire alike: task hooks for `t0`, `t1`, …, posting to
/// `https://lims.example/0`, ….
pub fn distinct_hooks(n: usize) -> Vec<Hook> {
    let list: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"filter": "on_task_state_change", "task_ids": ["t{i}"],
                    "parameters": {{"url": "https://lims.example/{i}"}}}}"#
            )
        })
        .collect();
    hooks(&format!("[{}]", list.join(",")))
}

pub fn secret() -> Secret {
    Secret::generate().unwrap()
}

/// Registers workflow `workflow` with `n` distinct hooks; returns their ids in order.
pub async fn register(store: &Store, workflow: &str, n: usize) -> Vec<HookId> {
    let change = store
        .put_workflow(workflow, distinct_hooks(n), secret())
        .await
        .unwrap();
    assert!(change.created);
    assert_eq!(change.added.len(), n);
    change.workflow.hooks.iter().map(|h| h.id).collect()
}

/// An event delivered to `hooks`, each delivery's `webhook-id` `msg_{tag}_{hook}`.
pub fn event(hooks: &[HookId], tag: &str) -> NewEvent {
    NewEvent {
        body: format!(r#"{{"tag":"{tag}"}}"#).into(),
        deliveries: hooks
            .iter()
            .map(|&hook| NewDelivery {
                hook,
                webhook_id: format!("msg_{tag}_{hook}"),
                body: format!(r#"{{"tag":"{tag}"}}"#).into(),
            })
            .collect(),
    }
}

/// The head of `hook`'s queue, which must be a delivery.
pub async fn head(store: &Store, hook: HookId) -> Delivery {
    match store.head(hook).await.unwrap() {
        Head::Ready(delivery) => delivery,
        other => panic!("hook {hook}: expected a delivery, got {other:?}"),
    }
}

/// Records a 200 for `delivery`: delivered.
pub async fn deliver(store: &Store, delivery: &Delivery) {
    store
        .record(delivery, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    // Written behind: committed once flushed.
    store.flush(delivery.hook).await.unwrap();
}

/// Records `status` for `delivery` and gives it up.
pub async fn fail(store: &Store, delivery: &Delivery, status: u16) {
    let outcome = Outcome::Failed {
        reason: format!("status {status}"),
    };
    store
        .record(delivery, attempt(status), outcome)
        .await
        .unwrap();
    store.flush(delivery.hook).await.unwrap();
}

pub fn attempt(status: u16) -> Attempt {
    Attempt::new(
        SystemTime::now(),
        Duration::from_millis(3),
        AttemptResult::Status(status),
    )
}
