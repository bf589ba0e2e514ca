//! Delivering webhooks: the logic shared by `linq-hooks dispatch` (one shot, in memory) and
//! `linq-hooks serve` (a service with a durable outbox).
//!
//! - [`NewDelivery::for_event`] turns an event into one delivery per hook that fires, each with
//!   its `webhook-id` and the event's JSON body, both fixed for every attempt.
//! - An [`Outbox`] holds deliveries per hook, in order: [`MemoryOutbox`] here, a durable one
//!   elsewhere.
//! - A [`Dispatcher`] sends them over any [`Transport`]: per
//!   hook in order, hooks side by side, bounded concurrency, Standard Webhooks signatures,
//!   retries by a [`RetryPolicy`] (judged by [`Verdict`]).
//!
//! Embedding the dispatcher needs this crate and a transport: the types in its signatures are
//! re-exported ([`Hook`], [`HookParameters`], [`Secret`], [`Matcher`], [`Event`], [`Bytes`],
//! [`Transport`], [`Request`], [`Response`]), and so are the crates they come from, as
//! [`model`], [`events`], [`filter`], [`signature`] and [`transport`] (whose `MemoryTransport`
//! needs this crate's `memory` feature). `examples/embed.rs` embeds it with a transport of its
//! own.
//!
//! The dispatcher runs on Tokio, in a runtime with time enabled ([`Dispatcher::run`]).
//!
//! This example needs the `memory` feature (for `MemoryTransport`):
//!
//! ```
//! use std::sync::Arc;
//! use linq_hooks_delivery::transport::{MemoryTransport, Response};
//! use linq_hooks_delivery::{Config, Dispatcher, Matcher, MemoryOutbox, NewDelivery, events, model};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let hooks: Arc<[_]> = model::parse_hooks(r#"[
//!     {"filter": "on_run_state_change", "parameters": {"url": "https://lims.example/runs"}}
//! ]"#).unwrap().hooks.into();
//! let event = events::parse_event(
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
//! let dispatcher = Dispatcher::new(hooks, transport.clone(), outbox.clone(), config).unwrap();
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
pub use dispatcher::{Config, Destination, Dispatcher, DispatcherError, Health, HookWaker};
pub use memory::{FailedDelivery, HookReport, MemoryOutbox};
pub use outbox::{
    Attempt, AttemptResult, Delivery, DeliveryId, Head, HookId, NewDelivery, Outbox, OutboxError,
    Outcome, RESPONSE_BODY_KEPT,
};
pub use policy::{ParsePolicyError, RetryPolicy, Verdict};

/// The events crate, whose [`Event`] [`NewDelivery::for_event`] takes.
pub use linq_hooks_events as events;
pub use linq_hooks_events::Event;
/// The filter crate, whose [`Matcher`] [`NewDelivery::for_event`] takes.
pub use linq_hooks_filter as filter;
pub use linq_hooks_filter::Matcher;
/// The model crate, whose [`Hook`] and [`HookParameters`] the dispatcher takes.
pub use linq_hooks_model as model;
pub use linq_hooks_model::{Hook, HookParameters};
/// The signature crate, whose [`Secret`] signs requests.
pub use linq_hooks_signature as signature;
pub use linq_hooks_signature::Secret;
/// The transport crate: the [`Transport`] trait the dispatcher sends over, its [`Request`],
/// [`Response`] and `Error`, and (with this crate's `memory` feature) `MemoryTransport`.
pub use linq_hooks_transport as transport;
pub use linq_hooks_transport::{Bytes, Request, Response, Transport};
