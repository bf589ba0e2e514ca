//! What the service makes of each recorded attempt: metrics, the per-minute stats, the `info`
//! lines of give-ups, 410s and recoveries, and the operational webhooks.
//!
//! All of it hangs on [`ObservedOutbox`], the store as the dispatcher sees it: every attempt
//! passes through its `record`, after the store has it (so nothing is counted or reported that
//! is not on record), and a hook's circuit breaker opening through its `paused`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use linq_hooks_delivery::{
    Attempt, AttemptResult, Delivery, DeliveryId, Head, HookId, Outbox, OutboxError, Outcome,
};
use linq_hooks_events::Timestamp;
use linq_hooks_events::ops::{
    DeliveryFailed, HookDisabled, HookRecovered, OpsData, OpsEvent, Trouble,
};
use linq_hooks_outbox::{DurableOutbox, StoredWorkflow};

use crate::api::types::hook_id;
use crate::metrics::Metrics;
use crate::ops::OpsSender;
use crate::stats::Stats;

/// What the reason of a 410 says.
const GONE: &str = "the receiver answered 410 Gone";

/// A hook in trouble since a time, and which troubles, in the order they began.
#[derive(Clone, Debug)]
struct InTrouble {
    since: SystemTime,
    after: Vec<Trouble>,
}

/// Sees every recorded attempt and every registry change.
pub(crate) struct Observer {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stats: Stats,
    ops: Option<OpsSender>,
    /// The registered hooks and their workflows: only these get per-hook series and stats.
    hooks: RwLock<HashMap<HookId, String>>,
    /// Hooks that had a delivery given up, a 410, or a pause, and have not delivered since.
    troubled: Mutex<HashMap<HookId, InTrouble>>,
}

impl Observer {
    pub(crate) fn new(metrics: Arc<Metrics>, ops: Option<OpsSender>) -> Observer {
        Observer {
            metrics,
            stats: Stats::default(),
            ops,
            hooks: RwLock::new(HashMap::new()),
            troubled: Mutex::new(HashMap::new()),
        }
    }

    /// The operational webhooks' sender, if `--ops-url` is set.
    pub(crate) fn ops(&self) -> Option<&OpsSender> {
        self.ops.as_ref()
    }

    /// Notes `workflow`'s hooks as registered (at start, and after each change). A hook the
    /// store says is disabled by a 410 is in trouble from its `disabled_at`, so that enabling
    /// it and delivering again after a restart still reports its recovery.
    pub(crate) fn show(&self, workflow: &StoredWorkflow) {
        let mut hooks = self.hooks.write().expect("not poisoned");
        let mut troubled = self.troubled.lock().expect("not poisoned");
        for hook in &workflow.hooks {
            hooks.insert(hook.id, workflow.id.clone());
            if let Some(since) = hook.status.disabled_at {
                let entry = troubled.entry(hook.id).or_insert_with(|| InTrouble {
                    since,
                    after: Vec::new(),
                });
                if !entry.after.contains(&Trouble::HookDisabled) {
                    entry.after.push(Trouble::HookDisabled);
                }
            }
        }
    }

    /// Forgets a removed hook: its series, its stats, its trouble.
    pub(crate) fn forget(&self, hook: HookId) {
        let mut hooks = self.hooks.write().expect("not poisoned");
        if let Some(workflow) = hooks.remove(&hook) {
            self.metrics.forget(&workflow, hook_id(hook));
        }
        self.stats.forget(hook);
        self.troubled.lock().expect("not poisoned").remove(&hook);
    }

    fn note_trouble(&self, hook: HookId, trouble: Trouble, now: SystemTime) {
        let mut troubled = self.troubled.lock().expect("not poisoned");
        let entry = troubled.entry(hook).or_insert_with(|| InTrouble {
            since: now,
            after: Vec::new(),
        });
        if !entry.after.contains(&trouble) {
            entry.after.push(trouble);
        }
    }

    fn send(&self, now: SystemTime, data: OpsData) {
        if let Some(ops) = &self.ops {
            ops.send(&OpsEvent {
                timestamp: timestamp(now),
                data,
            });
        }
    }

    /// Everything an attempt the store has recorded means.
    fn recorded(&self, delivery: &Delivery, attempt: &Attempt, outcome: &Outcome) {
        let now = SystemTime::now();
        let hook = delivery.hook;
        let name = hook_id(hook);
        // Read-locked throughout, so that `forget` cannot run between the check and the
        // counting and leave a removed hook with series.
        let hooks = self.hooks.read().expect("not poisoned");
        let workflow = hooks.get(&hook).cloned();
        self.metrics.observe(
            workflow.as_deref().map(|w| (w, name.clone())),
            attempt.latency,
            &attempt.result,
            outcome,
        );
        if workflow.is_some() {
            self.stats
                .observe(hook, now, matches!(outcome, Outcome::Delivered));
        }
        drop(hooks);
        // A hook removed while its attempt was in flight: its deliveries are cancelled, and
        // there is no one to report its trouble or recovery to.
        let Some(workflow) = workflow else {
            return;
        };
        let attempts = delivery.attempts.saturating_add(1);
        match outcome {
            Outcome::Delivered => {
                let recovered = self.troubled.lock().expect("not poisoned").remove(&hook);
                if let Some(trouble) = recovered {
                    let after: Vec<&str> = trouble.after.iter().map(|t| t.as_str()).collect();
                    tracing::info!(
                        workflow = %workflow,
                        hook = %name,
                        delivery = delivery.id,
                        since = %humantime_rfc3339(trouble.since),
                        after = after.join(",").as_str(),
                        "hook recovered: it delivers again"
                    );
                    self.send(
                        now,
                        OpsData::HookRecovered(HookRecovered {
                            workflow_id: workflow,
                            hook: name,
                            delivery: delivery.id,
                            since: timestamp(trouble.since),
                            after: trouble.after,
                        }),
                    );
                }
            }
            Outcome::Failed { reason } => {
                let last_status = match attempt.result {
                    AttemptResult::Status(status) => Some(status),
                    AttemptResult::Error(_) => None,
                };
                tracing::info!(
                    workflow = %workflow,
                    hook = %name,
                    delivery = delivery.id,
                    webhook_id = %delivery.webhook_id,
                    attempts,
                    last_status,
                    reason = reason.as_str(),
                    "delivery given up: it stays failed until replayed"
                );
                self.note_trouble(hook, Trouble::DeliveryFailed, now);
                self.send(
                    now,
                    OpsData::DeliveryFailed(DeliveryFailed {
                        workflow_id: workflow,
                        hook: name,
                        delivery: delivery.id,
                        webhook_id: delivery.webhook_id.clone(),
                        attempts,
                        last_status,
                        reason: reason.clone(),
                    }),
                );
            }
            Outcome::HookGone => {
                tracing::info!(
                    workflow = %workflow,
                    hook = %name,
                    delivery = delivery.id,
                    webhook_id = %delivery.webhook_id,
                    reason = GONE,
                    "hook disabled: its deliveries wait until it is enabled"
                );
                self.note_trouble(hook, Trouble::HookDisabled, now);
                self.send(
                    now,
                    OpsData::HookDisabled(HookDisabled {
                        workflow_id: workflow,
                        hook: name,
                        delivery: delivery.id,
                        webhook_id: delivery.webhook_id.clone(),
                        reason: GONE.to_string(),
                    }),
                );
            }
            Outcome::Retry { .. } => {}
        }
    }
}

/// A `SystemTime` as an events-crate timestamp (UTC, milliseconds).
fn timestamp(time: SystemTime) -> Timestamp {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_unix_millis(millis).unwrap_or_else(Timestamp::now)
}

/// RFC 3339, UTC, milliseconds: how every time is logged.
fn humantime_rfc3339(time: SystemTime) -> String {
    timestamp(time).to_string()
}

/// The store as the dispatcher sees it: every recorded attempt goes through the [`Observer`].
pub(crate) struct ObservedOutbox {
    pub(crate) store: Arc<dyn DurableOutbox>,
    pub(crate) observer: Arc<Observer>,
}

#[async_trait::async_trait]
impl Outbox for ObservedOutbox {
    async fn head(&self, hook: HookId) -> Result<Head, OutboxError> {
        self.store.head(hook).await
    }

    async fn after(
        &self,
        hook: HookId,
        after: DeliveryId,
        limit: usize,
    ) -> Result<Option<Vec<Delivery>>, OutboxError> {
        self.store.after(hook, after, limit).await
    }

    async fn flush(&self, hook: HookId) -> Result<(), OutboxError> {
        self.store.flush(hook).await
    }

    fn subscribe(&self, waker: linq_hooks_delivery::HookWaker) {
        // A shared store wakes the hooks whose leases it takes, or whose new work it hears of.
        self.store.subscribe(waker);
    }

    fn paused(&self, hook: HookId) {
        self.observer
            .note_trouble(hook, Trouble::HookPaused, SystemTime::now());
    }

    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        // Observed once the store has it: it keeps an outcome whose commit failed and tries
        // again, and refuses one only when closed.
        let (observed, decided) = (attempt.clone(), outcome.clone());
        self.store.record(delivery, attempt, outcome).await?;
        self.observer.recorded(delivery, &observed, &decided);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use linq_hooks_delivery::HookParameters;
    use linq_hooks_transport::MemoryTransport;

    use super::*;
    use crate::ops::OpsWebhooks;

    fn delivery(id: u64, hook: HookId) -> Delivery {
        Delivery {
            id,
            hook,
            webhook_id: format!("msg_{id}"),
            body: "{}".into(),
            attempts: 0,
            next_attempt_at: None,
        }
    }

    fn attempt(status: u16) -> Attempt {
        Attempt::new(
            SystemTime::now(),
            Duration::from_millis(3),
            AttemptResult::Status(status),
        )
    }

    /// A pause, then a give-up, then a delivery: one `hook.recovered` naming both troubles in
    /// order; a hook never in trouble recovers from nothing; a removed hook is forgotten.
    #[test]
    fn a_hook_in_trouble_recovers_once_it_delivers() {
        let metrics = Arc::new(Metrics::new());
        let parameters = HookParameters::new("https://ops.example/", Default::default()).unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let ops = OpsSender::new(
            OpsWebhooks::new(parameters, secret),
            Arc::new(MemoryTransport::new()),
            metrics.ops_dropped.clone(),
        );
        let observer = Observer::new(metrics, Some(ops));
        observer.hooks.write().unwrap().insert(1, "lab".into());
        observer.hooks.write().unwrap().insert(2, "lab".into());

        observer.note_trouble(1, Trouble::HookPaused, SystemTime::now());
        let failed = Outcome::Failed {
            reason: "status 400".into(),
        };
        observer.recorded(&delivery(7, 1), &attempt(400), &failed);
        observer.recorded(&delivery(8, 1), &attempt(200), &Outcome::Delivered);
        observer.recorded(&delivery(9, 2), &attempt(200), &Outcome::Delivered);
        observer.recorded(&delivery(10, 1), &attempt(200), &Outcome::Delivered);

        let sent = observer.ops().unwrap().waiting();
        let types: Vec<&str> = sent.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["delivery.failed", "hook.recovered"]);
        assert_eq!(sent[0]["data"]["last_status"], 400);
        assert_eq!(sent[1]["data"]["hook"], "hook_1");
        assert_eq!(sent[1]["data"]["delivery"], 8);
        assert_eq!(
            sent[1]["data"]["after"],
            serde_json::json!(["hook.paused", "delivery.failed"])
        );

        observer.note_trouble(2, Trouble::HookDisabled, SystemTime::now());
        observer.forget(2);
        observer.recorded(&delivery(11, 2), &attempt(200), &Outcome::Delivered);
        assert_eq!(observer.ops().unwrap().waiting().len(), 2, "forgotten");
        assert!(
            observer
                .stats
                .per_minute(SystemTime::now(), 60, Some(2))
                .is_empty()
        );
    }
}
