//! Delivering webhooks: the logic shared by `linq-hooks dispatch` (one shot, in memory) and
//! `linq-hooks serve` (a service with a durable outbox).
//!
//! - [`NewDelivery::for_event`] turns an event into one delivery per hook that fires, each with
//!   its `webhook-id` and the event's JSON body, both fixed for every attempt.
//! - An [`Outbox`] holds deliveries per hook, in order: [`MemoryOutbox`] here, a durable one
//!   elsewhere.
//! - A [`Dispatcher`] sends them over any [`Transport`](linq_hooks_transport::Transport): per
//!   hook in order, hooks side by side, bounded concurrency, Standard Webhooks signatures,
//!   retries by a [`RetryPolicy`] (judged by [`Verdict`]).
//!
//! ```
//! use std::sync::Arc;
//! use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox, NewDelivery};
//! use linq_hooks_filter::Matcher;
//! use linq_hooks_transport::{MemoryTransport, Response};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let hooks: Arc<[_]> = linq_hooks_model::parse_hooks(r#"[
//!     {"filter": "on_run_state_change", "parameters": {"url": "https://lims.example/runs"}}
//! ]"#).unwrap().hooks.into();
//! let event = linq_hooks_events::parse_event(
//!     r#"{"event": "run_state_change", "run_id": "r1", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#,
//! ).unwrap();
//!
//! let outbox = Arc::new(MemoryOutbox::new(hooks.len()));
//! for delivery in NewDelivery::for_event(&Matcher::new(&*hooks), &event) {
//!     outbox.push(delivery);
//! }
//! let transport = Arc::new(MemoryTransport::new());
//! transport.reply(Ok(Response::new(503))); // the first attempt fails; then 200
//!
//! let config = Config::default().policy("10ms".parse().unwrap());
//! let dispatcher = Dispatcher::new(hooks, transport.clone(), outbox.clone(), config);
//! dispatcher.close();
//! dispatcher.run().await;
//!
//! let sent = transport.requests();
//! assert_eq!(sent.len(), 2);
//! assert_eq!(sent[0].header("webhook-id"), sent[1].header("webhook-id")); // a retry keeps its id
//! assert_eq!(outbox.reports()[0].delivered, 1);
//! # });
//! ```
#![forbid(unsafe_code)]

mod dispatcher;
mod memory;
mod outbox;
mod policy;

pub use async_trait::async_trait;
pub use dispatcher::{Config, Destination, Dispatcher};
pub use memory::{FailedDelivery, HookReport, MemoryOutbox};
pub use outbox::{
    Attempt, AttemptResult, Delivery, DeliveryId, Head, HookId, NewDelivery, Outbox, OutboxError,
    Outcome,
};
pub use policy::{ParsePolicyError, RetryPolicy, Verdict};
