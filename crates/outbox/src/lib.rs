//! A durable outbox for linq-hooks, in one [redb](https://www.redb.org) file.
//!
//! `linq-hooks serve` keeps every acknowledged event and its deliveries here: [`Store::append`]
//! answers only once they are durably committed, and the [`Dispatcher`] delivers from the
//! store through the [`Outbox`] trait, so a crash at any point loses nothing that was
//! acknowledged. Many appends arriving together share one commit.
//!
//! What it keeps: event bodies (once per event, for as long as any of its deliveries is kept),
//! deliveries (hook, `webhook-id`, state, attempts), every attempt (time, status or error,
//! latency, the first 1 KiB of the answer's body), and each hook's state (disabled by a 410,
//! consecutive failures, failed deliveries, its last attempt). Deliveries are indexed by state,
//! by hook and state, and by event, so that listing them ([`Store::deliveries`]) does bounded
//! work per page whatever the store holds.
//!
//! [`Dispatcher`]: linq_hooks_delivery::Dispatcher
//! [`Outbox`]: linq_hooks_delivery::Outbox
//!
//! ```
//! use linq_hooks_outbox::{DeliveryState, NewEvent, Store};
//! use linq_hooks_delivery::NewDelivery;
//!
//! # let dir = std::env::temp_dir().join(format!("outbox-doc-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let _ = std::fs::remove_file(dir.join("lib.redb"));
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = Store::open(dir.join("lib.redb"))?;
//! let hooks = linq_hooks_model::parse_hooks(
//!     r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/plans"}}]"#,
//! ).unwrap().hooks;
//! let secret = linq_hooks_signature::Secret::generate().unwrap();
//! let hook = store.put_workflow("lab-a", hooks, secret).await?.workflow.hooks[0].id;
//! let deliveries = vec![NewDelivery { hook, webhook_id: "msg_a".into(), body: "{}".into() }];
//! store.append(vec![NewEvent { body: "{}".into(), deliveries }]).await?;
//! assert_eq!(store.pending()?, 1);
//! assert_eq!(store.list(DeliveryState::Pending, None, 10)?[0].webhook_id, "msg_a");
//! # Ok::<(), linq_hooks_outbox::StoreError>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod durable;
mod error;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod records;
mod redb;
mod types;

pub use crate::redb::Store;
pub use durable::DurableOutbox;
pub use error::StoreError;
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PgStore};
pub use query::{DeliveryFilter, DeliveryPage, EventInfo, SCAN_PER_PAGE, StatusClass};
pub use records::{
    AttemptInfo, DeliveryInfo, DeliveryState, HookStatus, StoredHook, StoredWorkflow,
    WorkflowChange, WorkflowRemoval, WorkflowSecrets,
};
pub use types::{
    AcceptedDelivery, AcceptedEvent, Appended, HookRetry, IdempotencyKey, NewEvent, Recovery,
    Replay, Retry,
};
