//! An outbox in memory, for one-shot delivery (`linq-hooks dispatch`) and for tests.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::outbox::{
    Attempt, Delivery, DeliveryId, Head, HookId, NewDelivery, Outbox, OutboxError, Outcome,
};

/// Keeps deliveries in memory, queued per hook, and counts what became of them.
///
/// Nothing survives the process: for a service that must not lose what it acknowledged, use a
/// durable outbox.
///
/// ```
/// use linq_hooks_delivery::{MemoryOutbox, NewDelivery};
///
/// let outbox = MemoryOutbox::new(2);
/// let id = outbox.push(NewDelivery { hook: 1, webhook_id: "msg_1".into(), body: "{}".into() });
/// assert_eq!(id, 1);
/// assert_eq!(outbox.pending(), 1);
/// assert_eq!(outbox.reports()[1].pending, 1);
/// ```
#[derive(Debug)]
pub struct MemoryOutbox {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_id: DeliveryId,
    queues: Vec<VecDeque<Delivery>>,
    reports: Vec<HookReport>,
}

/// What became of one hook's deliveries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookReport {
    /// Deliveries delivered.
    pub delivered: u64,
    /// Deliveries given up, with the reason.
    pub failed: Vec<FailedDelivery>,
    /// Deliveries still waiting (for a disabled hook: not sent).
    pub pending: usize,
    /// Attempts made.
    pub attempts: u64,
    /// The latency of every attempt, in the order they were made.
    pub latencies: Vec<Duration>,
    /// Whether the hook answered 410 Gone and was disabled.
    pub gone: bool,
}

/// A delivery that was given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedDelivery {
    /// Its number.
    pub id: DeliveryId,
    /// Its `webhook-id`.
    pub webhook_id: String,
    /// Why it was given up.
    pub reason: String,
}

impl MemoryOutbox {
    /// An empty outbox for `hooks` hooks.
    pub fn new(hooks: usize) -> MemoryOutbox {
        MemoryOutbox {
            state: Mutex::new(State {
                next_id: 1,
                queues: vec![VecDeque::new(); hooks],
                reports: vec![HookReport::default(); hooks],
            }),
        }
    }

    /// Queues a delivery behind the hook's others and returns its number.
    ///
    /// # Panics
    ///
    /// If `new.hook` is not one of the outbox's hooks.
    pub fn push(&self, new: NewDelivery) -> DeliveryId {
        let mut state = self.state.lock().expect("not poisoned");
        let id = state.next_id;
        state.next_id += 1;
        state.queues[new.hook as usize].push_back(Delivery {
            id,
            hook: new.hook,
            webhook_id: new.webhook_id,
            body: new.body,
            attempts: 0,
            next_attempt_at: None,
        });
        id
    }

    /// How many deliveries wait, over all hooks.
    pub fn pending(&self) -> usize {
        let state = self.state.lock().expect("not poisoned");
        state.queues.iter().map(VecDeque::len).sum()
    }

    /// How many deliveries were delivered or given up so far, over all hooks.
    pub fn settled(&self) -> usize {
        let state = self.state.lock().expect("not poisoned");
        state
            .reports
            .iter()
            .map(|r| usize::try_from(r.delivered).unwrap_or(usize::MAX) + r.failed.len())
            .sum()
    }

    /// What became of each hook's deliveries so far, in hook order.
    pub fn reports(&self) -> Vec<HookReport> {
        let state = self.state.lock().expect("not poisoned");
        let mut reports = state.reports.clone();
        for (report, queue) in reports.iter_mut().zip(&state.queues) {
            report.pending = queue.len();
        }
        reports
    }
}

#[async_trait::async_trait]
impl Outbox for MemoryOutbox {
    async fn head(&self, hook: HookId) -> Result<Head, OutboxError> {
        let state = self.state.lock().expect("not poisoned");
        let hook = hook as usize;
        if state.reports[hook].gone {
            return Ok(Head::Disabled);
        }
        Ok(state.queues[hook]
            .front()
            .cloned()
            .map_or(Head::Empty, Head::Ready))
    }

    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        let mut state = self.state.lock().expect("not poisoned");
        let hook = delivery.hook as usize;
        let front = state.queues[hook]
            .front_mut()
            .filter(|front| front.id == delivery.id);
        let Some(front) = front else {
            return Err(OutboxError::new(format!(
                "delivery {} is not at the head of hook {hook}",
                delivery.id
            )));
        };
        front.attempts += 1;
        let report = &mut state.reports[hook];
        report.attempts += 1;
        report.latencies.push(attempt.latency);
        match outcome {
            Outcome::Delivered => {
                report.delivered += 1;
                state.queues[hook].pop_front();
            }
            Outcome::Failed { reason } => {
                report.failed.push(FailedDelivery {
                    id: delivery.id,
                    webhook_id: delivery.webhook_id.clone(),
                    reason,
                });
                state.queues[hook].pop_front();
            }
            Outcome::Retry { at } => {
                let front = state.queues[hook].front_mut().expect("checked above");
                front.next_attempt_at = Some(at);
            }
            Outcome::HookGone => report.gone = true,
        }
        Ok(())
    }
}
