//! Operational webhooks (`serve --ops-url`): events about the dispatcher itself, posted to one
//! URL by a small dispatcher of their own.
//!
//! Why a second [`Dispatcher`] over an in-memory queue rather than a hook in the store: the
//! events must never wait behind, or take capacity from, the deliveries they report on (a
//! second dispatcher has its own pool and its own worker), and they are about the moment: one
//! lost in a crash is less harm than the store holding a workflow of its own that users could
//! see, edit or delete. The dispatcher brings signing, retries and order for free.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use linq_hooks_delivery::{
    Attempt, Config, Delivery, Destination, Dispatcher, Head, HookId, HookParameters, HookWaker,
    Outbox, OutboxError, Outcome, RetryPolicy, Secret,
};
use linq_hooks_events::ops::OpsEvent;
use linq_hooks_transport::Transport;
use prometheus_client::metrics::counter::Counter;

/// Where operational webhooks go (`serve --ops-url URL --ops-secret whsec_…`).
///
/// ```
/// use linq_hooks_service::OpsWebhooks;
/// let parameters = linq_hooks_model::HookParameters::new("https://ops.example/linq", Default::default())?;
/// let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
/// let ops = OpsWebhooks::new(parameters, secret);
/// assert_eq!(ops.policy.to_string(), "5s,30s,2m,10m,30m");
/// assert_eq!(ops.queue, 1000);
/// # Ok::<(), linq_hooks_model::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct OpsWebhooks {
    /// The URL (and headers) they are posted to, checked as a hook's are.
    pub parameters: HookParameters,
    /// What they are signed with (Standard Webhooks, as every other webhook).
    pub secret: Secret,
    /// When to retry one that did not get through (default 5s, 30s, 2m, 10m, 30m; then it is
    /// dropped, with a warning in the log).
    pub policy: RetryPolicy,
    /// At most this many wait to be sent (default 1 000); when full, the oldest is dropped
    /// (`linq_hooks_ops_webhooks_dropped_total`, and a warning in the log).
    pub queue: usize,
}

impl OpsWebhooks {
    /// Operational webhooks to `parameters`, signed with `secret`, with the default retries
    /// and queue.
    pub fn new(parameters: HookParameters, secret: Secret) -> OpsWebhooks {
        OpsWebhooks {
            parameters,
            secret,
            policy: "5s,30s,2m,10m,30m".parse().expect("a valid schedule"),
            queue: 1000,
        }
    }
}

impl fmt::Debug for OpsWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsWebhooks")
            .field("url", &self.parameters.url())
            .field("secret", &self.secret)
            .field("policy", &self.policy.to_string())
            .field("queue", &self.queue)
            .finish()
    }
}

/// The one "hook" of the operational dispatcher.
const OPS_HOOK: HookId = 0;

/// Sends operational webhooks; cheap to call from anywhere (it only queues).
pub(crate) struct OpsSender {
    outbox: Arc<OpsQueue>,
    pub(crate) dispatcher: Dispatcher,
}

impl OpsSender {
    pub(crate) fn new(
        ops: OpsWebhooks,
        transport: Arc<dyn Transport>,
        dropped: Counter,
    ) -> OpsSender {
        let outbox = Arc::new(OpsQueue {
            queue: Mutex::new(VecDeque::new()),
            capacity: ops.queue.max(1),
            next_id: AtomicU64::new(1),
            waker: Mutex::new(None),
            dropped,
        });
        // Its own dispatcher: its own pool and worker, so it never takes capacity from, nor
        // waits behind, the deliveries of ordinary hooks.
        let dispatcher = Dispatcher::without_hooks(
            transport,
            outbox.clone(),
            Config::default().concurrency(1).policy(ops.policy),
        );
        dispatcher.set(
            OPS_HOOK,
            Destination::new(ops.parameters).secret(ops.secret),
        );
        OpsSender { outbox, dispatcher }
    }

    /// Queues `event`; the oldest waiting is dropped when the queue is full.
    pub(crate) fn send(&self, event: &OpsEvent) {
        self.outbox.push(event);
    }

    /// The bodies waiting, oldest first.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> Vec<serde_json::Value> {
        self.outbox
            .queue
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(d, _)| serde_json::from_slice(&d.body).expect("JSON"))
            .collect()
    }
}

/// The operational webhooks waiting, oldest first.
struct OpsQueue {
    queue: Mutex<VecDeque<(Delivery, &'static str)>>,
    capacity: usize,
    next_id: AtomicU64,
    waker: Mutex<Option<HookWaker>>,
    dropped: Counter,
}

impl OpsQueue {
    fn push(&self, event: &OpsEvent) {
        let body = serde_json::to_vec(event).expect("an operational event serializes");
        let kind = event.data.type_name();
        let delivery = Delivery {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            hook: OPS_HOOK,
            webhook_id: linq_hooks_signature::new_message_id(),
            body: body.into(),
            attempts: 0,
            next_attempt_at: None,
        };
        {
            let mut queue = self.queue.lock().expect("not poisoned");
            if queue.len() >= self.capacity
                && let Some((oldest, oldest_kind)) = queue.pop_front()
            {
                self.dropped.inc();
                tracing::warn!(
                    r#type = oldest_kind,
                    webhook_id = %oldest.webhook_id,
                    queue = self.capacity,
                    "the operational webhooks' queue is full: the oldest is dropped unsent"
                );
            }
            queue.push_back((delivery, kind));
        }
        if let Some(waker) = &*self.waker.lock().expect("not poisoned") {
            waker.wake(OPS_HOOK);
        }
    }
}

#[async_trait::async_trait]
impl Outbox for OpsQueue {
    async fn head(&self, _hook: HookId) -> Result<Head, OutboxError> {
        Ok(self
            .queue
            .lock()
            .expect("not poisoned")
            .front()
            .map_or(Head::Empty, |(delivery, _)| Head::Ready(delivery.clone())))
    }

    fn subscribe(&self, waker: HookWaker) {
        *self.waker.lock().expect("not poisoned") = Some(waker);
    }

    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        let mut queue = self.queue.lock().expect("not poisoned");
        // Dropped meanwhile (the queue was full): nothing to record.
        let Some(at) = queue.iter().position(|(d, _)| d.id == delivery.id) else {
            return Ok(());
        };
        let kind = queue[at].1;
        match outcome {
            Outcome::Retry { at: due } => {
                let waiting = &mut queue[at].0;
                waiting.attempts += 1;
                waiting.next_attempt_at = Some(due);
                tracing::debug!(r#type = kind, webhook_id = %delivery.webhook_id, result = attempt.result.to_string().as_str(), "operational webhook to be retried");
            }
            Outcome::Delivered => {
                queue.remove(at);
                tracing::debug!(r#type = kind, webhook_id = %delivery.webhook_id, "operational webhook delivered");
            }
            Outcome::Failed { reason } => {
                queue.remove(at);
                tracing::warn!(r#type = kind, webhook_id = %delivery.webhook_id, reason, "an operational webhook was given up");
            }
            Outcome::HookGone => {
                // No one to enable the ops URL again: this one is dropped, the next are sent.
                queue.remove(at);
                tracing::warn!(r#type = kind, webhook_id = %delivery.webhook_id, "the ops URL answered 410 Gone: this operational webhook is dropped");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use linq_hooks_events::ops::{HookDisabled, OpsData};

    use super::*;

    fn event(n: u64) -> OpsEvent {
        OpsEvent {
            timestamp: linq_hooks_events::Timestamp::now(),
            data: OpsData::HookDisabled(HookDisabled {
                workflow_id: "lab".into(),
                hook: format!("hook_{n}"),
                delivery: n,
                webhook_id: format!("msg_{n}"),
                reason: "410".into(),
            }),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_oldest_and_counts_it() {
        let dropped = Counter::default();
        let queue = OpsQueue {
            queue: Mutex::new(VecDeque::new()),
            capacity: 2,
            next_id: AtomicU64::new(1),
            waker: Mutex::new(None),
            dropped: dropped.clone(),
        };
        for n in 1..=3 {
            queue.push(&event(n));
        }
        assert_eq!(dropped.get(), 1);
        let Head::Ready(head) = queue.head(OPS_HOOK).await.unwrap() else {
            panic!("a head");
        };
        let body: serde_json::Value = serde_json::from_slice(&head.body).unwrap();
        assert_eq!(
            body["data"]["hook"], "hook_2",
            "the oldest (hook_1) was dropped"
        );
        // A retry keeps it first, due later; delivered removes it.
        let attempt = Attempt::new(
            std::time::SystemTime::now(),
            std::time::Duration::ZERO,
            linq_hooks_delivery::AttemptResult::Status(503),
        );
        let due = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        queue
            .record(&head, attempt.clone(), Outcome::Retry { at: due })
            .await
            .unwrap();
        let Head::Ready(again) = queue.head(OPS_HOOK).await.unwrap() else {
            panic!("a head");
        };
        assert_eq!((again.id, again.attempts), (head.id, 1));
        assert_eq!(again.next_attempt_at, Some(due));
        queue
            .record(&again, attempt, Outcome::Delivered)
            .await
            .unwrap();
        let Head::Ready(next) = queue.head(OPS_HOOK).await.unwrap() else {
            panic!("a head");
        };
        let body: serde_json::Value = serde_json::from_slice(&next.body).unwrap();
        assert_eq!(body["data"]["hook"], "hook_3");
    }
}
