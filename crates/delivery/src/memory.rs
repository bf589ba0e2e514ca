//! An outbox in memory, for one-shot delivery (`linq-hooks dispatch`) and for tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::dispatcher::HookWaker;
use crate::outbox::{
    Attempt, Delivery, DeliveryId, Head, HookId, NewDelivery, Outbox, OutboxError, Outcome,
};

/// Keeps deliveries in memory, queued per hook, and counts what became of them.
///
/// Hooks are keyed by [`HookId`], so any hook can be pushed to; [`new(n)`](MemoryOutbox::new)
/// registers hooks `0..n` up front, so that [`reports`](MemoryOutbox::reports) covers each of
/// them and [`Dispatcher::new`](crate::Dispatcher::new) refuses a longer hook list (a mis-sized
/// outbox is a mistake found when the dispatcher is built, not a panic while it runs).
///
/// [`push`](MemoryOutbox::push) wakes the hook's worker in every dispatcher built on the
/// outbox: no [`Dispatcher::wake`](crate::Dispatcher::wake) is needed.
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
    /// The dispatchers built on this outbox, woken on each push.
    wakers: Mutex<Vec<HookWaker>>,
}

#[derive(Debug)]
struct State {
    next_id: DeliveryId,
    /// The hooks registered by `new`: `0..registered`.
    registered: usize,
    hooks: BTreeMap<HookId, Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    report: HookReport,
}

impl Queue {
    fn report(&self) -> HookReport {
        HookReport {
            pending: self.deliveries.len(),
            ..self.report.clone()
        }
    }
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
    /// An empty outbox with hooks `0..hooks` registered: [`reports`](MemoryOutbox::reports)
    /// has one entry each, and a dispatcher built on it takes at most that many hooks.
    pub fn new(hooks: usize) -> MemoryOutbox {
        MemoryOutbox {
            state: Mutex::new(State {
                next_id: 1,
                registered: hooks,
                hooks: (0..hooks as HookId)
                    .map(|h| (h, Queue::default()))
                    .collect(),
            }),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Queues a delivery behind the hook's others, wakes the hook's worker in every dispatcher
    /// built on this outbox, and returns the delivery's number. A hook not registered yet is
    /// registered.
    pub fn push(&self, new: NewDelivery) -> DeliveryId {
        let hook = new.hook;
        let id = {
            let mut state = self.state.lock().expect("not poisoned");
            let id = state.next_id;
            state.next_id += 1;
            state
                .hooks
                .entry(hook)
                .or_default()
                .deliveries
                .push_back(Delivery {
                    id,
                    hook,
                    webhook_id: new.webhook_id,
                    body: new.body,
                    attempts: 0,
                    next_attempt_at: None,
                });
            id
        };
        for waker in self.wakers.lock().expect("not poisoned").iter() {
            waker.wake(hook);
        }
        id
    }

    /// How many deliveries wait, over all hooks.
    pub fn pending(&self) -> usize {
        let state = self.state.lock().expect("not poisoned");
        state.hooks.values().map(|q| q.deliveries.len()).sum()
    }

    /// How many deliveries were delivered or given up so far, over all hooks.
    pub fn settled(&self) -> usize {
        let state = self.state.lock().expect("not poisoned");
        state
            .hooks
            .values()
            .map(|q| {
                usize::try_from(q.report.delivered).unwrap_or(usize::MAX) + q.report.failed.len()
            })
            .sum()
    }

    /// How many hooks' next deliveries wait for a retry (attempted before, not settled yet),
    /// over all hooks: at most one per hook, since a hook's deliveries go in order. A hook
    /// disabled by 410 Gone is not counted.
    ///
    /// ```
    /// let outbox = linq_hooks_delivery::MemoryOutbox::new(2);
    /// assert_eq!(outbox.retrying(), 0);
    /// ```
    pub fn retrying(&self) -> usize {
        let state = self.state.lock().expect("not poisoned");
        state
            .hooks
            .values()
            .filter(|q| !q.report.gone)
            .filter(|q| q.deliveries.front().is_some_and(|d| d.attempts > 0))
            .count()
    }

    /// What became of each hook's deliveries so far, for the hooks `0..n` registered by
    /// [`new(n)`](MemoryOutbox::new), in hook order. Other hooks: [`report`](MemoryOutbox::report).
    pub fn reports(&self) -> Vec<HookReport> {
        let state = self.state.lock().expect("not poisoned");
        (0..state.registered as HookId)
            .map(|hook| {
                state
                    .hooks
                    .get(&hook)
                    .map(Queue::report)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// What became of `hook`'s deliveries so far (all zero for a hook never pushed to).
    pub fn report(&self, hook: HookId) -> HookReport {
        let state = self.state.lock().expect("not poisoned");
        state
            .hooks
            .get(&hook)
            .map(Queue::report)
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Outbox for MemoryOutbox {
    async fn head(&self, hook: HookId) -> Result<Head, OutboxError> {
        let state = self.state.lock().expect("not poisoned");
        let Some(queue) = state.hooks.get(&hook) else {
            return Ok(Head::Empty);
        };
        if queue.report.gone {
            return Ok(Head::Disabled);
        }
        Ok(queue
            .deliveries
            .front()
            .cloned()
            .map_or(Head::Empty, Head::Ready))
    }

    /// Hooks `0..n` registered by [`new(n)`](MemoryOutbox::new), and those pushed to since.
    fn accepts(&self, hook: HookId) -> bool {
        self.state
            .lock()
            .expect("not poisoned")
            .hooks
            .contains_key(&hook)
    }

    fn subscribe(&self, waker: HookWaker) {
        self.wakers.lock().expect("not poisoned").push(waker);
    }

    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        let mut state = self.state.lock().expect("not poisoned");
        let hook = delivery.hook;
        let queue = state.hooks.get_mut(&hook).filter(|q| {
            q.deliveries
                .front()
                .is_some_and(|front| front.id == delivery.id)
        });
        let Some(queue) = queue else {
            return Err(OutboxError::new(format!(
                "delivery {} is not at the head of hook {hook}",
                delivery.id
            )));
        };
        let report = &mut queue.report;
        report.attempts += 1;
        report.latencies.push(attempt.latency);
        match outcome {
            Outcome::Delivered => {
                report.delivered += 1;
                queue.deliveries.pop_front();
            }
            Outcome::Failed { reason } => {
                report.failed.push(FailedDelivery {
                    id: delivery.id,
                    webhook_id: delivery.webhook_id.clone(),
                    reason,
                });
                queue.deliveries.pop_front();
            }
            Outcome::Retry { at } => {
                let front = queue.deliveries.front_mut().expect("checked above");
                front.attempts += 1;
                front.next_attempt_at = Some(at);
            }
            Outcome::HookGone => {
                report.gone = true;
                let front = queue.deliveries.front_mut().expect("checked above");
                front.attempts += 1;
            }
        }
        Ok(())
    }
}
