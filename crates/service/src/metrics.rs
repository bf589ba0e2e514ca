//! Prometheus metrics, and the outbox wrapper that counts attempts as they are recorded.

use std::sync::{Arc, Mutex};

use linq_hooks_delivery::{Attempt, Delivery, Head, Health, Outbox, OutboxError, Outcome};
use linq_hooks_outbox::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The service's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) events_accepted: Counter,
    outcomes: Family<OutcomeLabel, Counter>,
    attempts: Counter,
    attempt_seconds: Histogram,
    queue_depth: Gauge,
    hooks_disabled: Gauge,
    quarantined: Gauge,
    hooks_paused: Gauge,
    /// Brought up to the dispatcher's count at each render (under the lock, so that two renders
    /// do not both add the same restarts).
    worker_restarts: Mutex<Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("linq_hooks");
        let events_accepted = Counter::default();
        registry.register(
            "events_accepted",
            "Events acknowledged (durably stored)",
            events_accepted.clone(),
        );
        let outcomes = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Attempt outcomes: delivered, retry, failed (given up), gone (410, hook disabled)",
            outcomes.clone(),
        );
        let attempts = Counter::default();
        registry.register("attempts", "Delivery attempts made", attempts.clone());
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let attempt_seconds = Histogram::new(buckets);
        registry.register(
            "attempt_duration_seconds",
            "How long attempts took",
            attempt_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries pending in the outbox",
            queue_depth.clone(),
        );
        let hooks_disabled = Gauge::default();
        registry.register(
            "hooks_disabled",
            "Hooks disabled by a 410 Gone",
            hooks_disabled.clone(),
        );
        let quarantined = Gauge::default();
        registry.register(
            "deliveries_quarantined",
            "Deliveries set aside because their record was damaged in the store",
            quarantined.clone(),
        );
        let hooks_paused = Gauge::default();
        registry.register(
            "hooks_paused",
            "Hooks paused by their circuit breaker: their receiver kept timing out; their \
             deliveries wait",
            hooks_paused.clone(),
        );
        let worker_restarts = Counter::default();
        registry.register(
            "worker_restarts",
            "Delivery workers started again after a panic",
            worker_restarts.clone(),
        );
        Metrics {
            registry,
            worker_restarts: Mutex::new(worker_restarts),
            events_accepted,
            outcomes,
            attempts,
            attempt_seconds,
            queue_depth,
            hooks_disabled,
            quarantined,
            hooks_paused,
        }
    }

    fn observe(&self, latency: std::time::Duration, outcome: &Outcome) {
        self.attempts.inc();
        self.attempt_seconds.observe(latency.as_secs_f64());
        let outcome = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
            Outcome::HookGone => "gone",
        };
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The exposition text, with the gauges read from the store now and the worker restarts
    /// and paused hooks from the dispatcher's `health`.
    pub(crate) fn render(
        &self,
        store: &Store,
        health: &Health,
    ) -> Result<String, linq_hooks_outbox::StoreError> {
        {
            let restarts = self.worker_restarts.lock().expect("not poisoned");
            let new = health.worker_restarts.saturating_sub(restarts.get());
            if new > 0 {
                restarts.inc_by(new);
            }
        }
        self.hooks_paused
            .set(i64::try_from(health.paused.len()).unwrap_or(i64::MAX));
        self.queue_depth
            .set(i64::try_from(store.pending()?).unwrap_or(i64::MAX));
        let disabled = store.disabled_hooks()?;
        self.hooks_disabled
            .set(i64::try_from(disabled).unwrap_or(i64::MAX));
        let quarantined = store.count(linq_hooks_outbox::DeliveryState::Quarantined)?;
        self.quarantined
            .set(i64::try_from(quarantined).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        Ok(text)
    }
}

/// The store, counting every recorded attempt into the metrics on the way.
pub(crate) struct MeteredOutbox {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl Outbox for MeteredOutbox {
    async fn head(&self, hook: linq_hooks_delivery::HookId) -> Result<Head, OutboxError> {
        self.store.head(hook).await
    }

    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        // Counted once recorded: the dispatcher repeats a record the store refused.
        let (latency, observed) = (attempt.latency, outcome.clone());
        self.store.record(delivery, attempt, outcome).await?;
        self.metrics.observe(latency, &observed);
        Ok(())
    }
}
