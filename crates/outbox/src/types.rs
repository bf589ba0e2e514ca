//! The requests and answers of a store's changes, whichever store keeps them (the redb
//! [`Store`](crate::Store), or the PostgreSQL store).

use std::time::Duration;

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_transport::Bytes;

use crate::DeliveryState;

/// An event to store with its deliveries (those of the hooks that fire for it).
///
/// ```
/// let new = linq_hooks_outbox::NewEvent { body: r#"{"event":"new_plan"}"#.into(), deliveries: vec![] };
/// assert!(new.deliveries.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The event's JSON, exactly as every delivery will post it.
    pub body: Bytes,
    /// One per hook that fires.
    pub deliveries: Vec<linq_hooks_delivery::NewDelivery>,
}

/// The idempotency key of an ingest ([`Store::append_once`](crate::Store::append_once)): a
/// repeat with the same key within `window` stores nothing and gets the first answer.
///
/// ```
/// use std::time::Duration;
/// let key = linq_hooks_outbox::IdempotencyKey {
///     key: "lab-a\u{0}batch-17".into(),
///     fingerprint: "sha256-of-the-body".into(),
///     window: Duration::from_secs(24 * 3600),
/// };
/// assert_eq!(key.window.as_secs(), 86_400);
/// ```
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    /// The key, as the caller scopes it (say, the workflow and the client's key).
    pub key: String,
    /// What identifies the request's content (a digest of its body): the same key with another
    /// fingerprint is refused.
    pub fingerprint: String,
    /// How long the key is remembered.
    pub window: Duration,
}

/// What [`Store::append_once`](crate::Store::append_once) did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Appended {
    /// The events were stored, and the key with them.
    Stored(Vec<AcceptedEvent>),
    /// The key was used before, within its window, for the same content: nothing was stored;
    /// this is what the first ingest stored.
    Repeated(Vec<AcceptedEvent>),
    /// The key was used before, within its window, for other content: nothing was stored.
    KeyReused,
}

/// What [`Store::append`](crate::Store::append) stored for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptedEvent {
    /// The event's number (`None` when no hook fires: nothing is stored).
    pub id: Option<u64>,
    /// The deliveries made for it, in hook order (none when no hook fires).
    pub deliveries: Vec<AcceptedDelivery>,
}

/// One delivery [`Store::append`](crate::Store::append) stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptedDelivery {
    /// Its number.
    pub id: DeliveryId,
    /// Its hook.
    pub hook: HookId,
    /// Its `webhook-id`.
    pub webhook_id: String,
}

/// What became of a replay request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replay {
    /// The failed delivery is pending again, first in its hook's queue; wake that hook.
    Replayed {
        /// Its hook.
        hook: HookId,
    },
    /// No such delivery (or it was pruned).
    NotFound,
    /// Only failed deliveries can be replayed; this one is in another state.
    NotFailed(DeliveryState),
    /// Its hook was removed from its workflow: there is nowhere to send it.
    HookRemoved {
        /// The removed hook.
        hook: HookId,
    },
}

/// What became of a retry request ([`Store::retry`](crate::Store::retry)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// The pending delivery is due now (and so is the head of its hook's queue, which goes
    /// first): call [`Dispatcher::retry_now`](linq_hooks_delivery::Dispatcher::retry_now)
    /// for its hook.
    Now {
        /// Its hook.
        hook: HookId,
        /// The head of the hook's queue, which is attempted first (the delivery itself when
        /// it is the head).
        head: Option<DeliveryId>,
    },
    /// The failed delivery is pending again, as [`Store::replay`](crate::Store::replay) does;
    /// wake its hook.
    Replayed {
        /// Its hook.
        hook: HookId,
    },
    /// No such delivery (or it was pruned).
    NotFound,
    /// Delivered, cancelled or quarantined: nothing to retry.
    NotRetriable(DeliveryState),
    /// A failed delivery whose hook was removed: there is nowhere to send it.
    HookRemoved {
        /// The removed hook.
        hook: HookId,
    },
    /// A pending delivery whose hook a 410 Gone disabled: it waits until the hook is enabled.
    HookDisabled {
        /// The disabled hook.
        hook: HookId,
    },
}

/// What became of a hook retry ([`Store::retry_hook`](crate::Store::retry_hook)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookRetry {
    /// The head of its queue (if any) is due now: call
    /// [`Dispatcher::retry_now`](linq_hooks_delivery::Dispatcher::retry_now).
    Woken {
        /// Its pending deliveries.
        pending: u64,
        /// The head of its queue, now due.
        head: Option<DeliveryId>,
    },
    /// No such hook (or it was removed).
    NotFound,
    /// A 410 Gone disabled it: enable it first.
    Disabled,
}

/// What a recovery did ([`Store::recover`](crate::Store::recover)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// These failed deliveries are pending again, in id order (none if there were none).
    Replayed(Vec<DeliveryId>),
    /// No such hook (or it was removed).
    NotFound,
}
