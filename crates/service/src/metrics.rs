//! Prometheus metrics (prometheus-client's registry and text encoder).
//!
//! Per-hook series (`linq_hooks_hook_*`, labels `workflow` and `hook`) exist only for hooks
//! registered now: a hook gets them at its first attempt, and loses them when it is removed
//! ([`Metrics::forget`]). So their number is bounded by the registry: 18 per hook at most
//! (`SERIES_PER_HOOK`, checked by a test).

use std::sync::Mutex;
use std::time::Duration;

use linq_hooks_delivery::{AttemptResult, Health, Outcome};
use linq_hooks_outbox::DurableOutbox;
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
    attempt_classes: Family<ClassLabel, Counter>,
    hook_attempts: Family<HookClassLabels, Counter>,
    hook_deliveries: Family<HookOutcomeLabels, Counter>,
    hook_attempt_seconds: Family<HookLabels, Histogram, fn() -> Histogram>,
    /// Operational webhooks dropped because their queue was full.
    pub(crate) ops_dropped: Counter,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    workflow: String,
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookClassLabels {
    workflow: String,
    hook: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookOutcomeLabels {
    workflow: String,
    hook: String,
    outcome: &'static str,
}

/// The status classes of attempts: an HTTP status by its first digit, `error` for no answer
/// (a transport error) or a status outside 200..=599.
pub(crate) const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

/// What a delivery became, per hook: `delivered`, or `failed` (given up).
const SETTLED: [&str; 2] = ["delivered", "failed"];

/// The buckets of the latency histograms, in seconds: from a receiver on the same host to
/// the default 15 s timeout and beyond.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The per-hook histogram's buckets: fewer, as there is one per hook.
const HOOK_LATENCY_BUCKETS: [f64; 8] = [0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0];

/// The most series one registered hook has: attempts by class (5), deliveries by outcome (2),
/// the latency histogram (8 buckets, `+Inf`, `_sum`, `_count`): 18.
#[cfg(test)]
pub(crate) const SERIES_PER_HOOK: usize =
    CLASSES.len() + SETTLED.len() + HOOK_LATENCY_BUCKETS.len() + 3;

/// An attempt's status class (one of [`CLASSES`]).
pub(crate) fn class_of(result: &AttemptResult) -> &'static str {
    match result {
        AttemptResult::Status(status @ 200..=599) => CLASSES[usize::from(status / 100) - 2],
        _ => "error",
    }
}

fn hook_histogram() -> Histogram {
    Histogram::new(HOOK_LATENCY_BUCKETS)
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
        let attempt_seconds = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "attempt_duration_seconds",
            "How long attempts took, to the answer or the error",
            attempt_seconds.clone(),
        );
        let attempt_classes = Family::<ClassLabel, Counter>::default();
        registry.register(
            "attempt_results",
            "Attempts by the class of their answer: 2xx, 3xx, 4xx, 5xx, or error (no answer)",
            attempt_classes.clone(),
        );
        let hook_attempts = Family::<HookClassLabels, Counter>::default();
        registry.register(
            "hook_attempts",
            "Attempts per registered hook, by the class of their answer: 2xx, 3xx, 4xx, 5xx, \
             or error (no answer)",
            hook_attempts.clone(),
        );
        let hook_deliveries = Family::<HookOutcomeLabels, Counter>::default();
        registry.register(
            "hook_deliveries",
            "Deliveries per registered hook that were delivered or failed (given up)",
            hook_deliveries.clone(),
        );
        let hook_attempt_seconds =
            Family::<HookLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                hook_histogram,
            );
        registry.register(
            "hook_attempt_duration_seconds",
            "How long attempts took per registered hook, to the answer or the error",
            hook_attempt_seconds.clone(),
        );
        let ops_dropped = Counter::default();
        registry.register(
            "ops_webhooks_dropped",
            "Operational webhooks (serve --ops-url) dropped unsent because their queue was full",
            ops_dropped.clone(),
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
            attempt_classes,
            hook_attempts,
            hook_deliveries,
            hook_attempt_seconds,
            ops_dropped,
            queue_depth,
            hooks_disabled,
            quarantined,
            hooks_paused,
        }
    }

    /// Counts an attempt; in the per-hook series too when its hook is registered (`hook`:
    /// its workflow and `hook_N`). The caller holds the registry of hooks for reading, so
    /// that a hook being removed ([`forget`](Metrics::forget)) cannot get its series back.
    pub(crate) fn observe(
        &self,
        hook: Option<(&str, String)>,
        latency: Duration,
        result: &AttemptResult,
        outcome: &Outcome,
    ) {
        self.attempts.inc();
        self.attempt_seconds.observe(latency.as_secs_f64());
        let class = class_of(result);
        self.attempt_classes
            .get_or_create(&ClassLabel { class })
            .inc();
        self.outcomes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        let Some((workflow, hook)) = hook else {
            return;
        };
        self.hook_attempts
            .get_or_create(&HookClassLabels {
                workflow: workflow.to_string(),
                hook: hook.clone(),
                class,
            })
            .inc();
        let settled = match outcome {
            Outcome::Delivered => Some("delivered"),
            Outcome::Failed { .. } => Some("failed"),
            Outcome::Retry { .. } | Outcome::HookGone => None,
        };
        if let Some(outcome) = settled {
            self.hook_deliveries
                .get_or_create(&HookOutcomeLabels {
                    workflow: workflow.to_string(),
                    hook: hook.clone(),
                    outcome,
                })
                .inc();
        }
        self.hook_attempt_seconds
            .get_or_create(&HookLabels {
                workflow: workflow.to_string(),
                hook,
            })
            .observe(latency.as_secs_f64());
    }

    /// Removes every series of a hook that is no longer registered.
    pub(crate) fn forget(&self, workflow: &str, hook: String) {
        for class in CLASSES {
            self.hook_attempts.remove(&HookClassLabels {
                workflow: workflow.to_string(),
                hook: hook.clone(),
                class,
            });
        }
        for outcome in SETTLED {
            self.hook_deliveries.remove(&HookOutcomeLabels {
                workflow: workflow.to_string(),
                hook: hook.clone(),
                outcome,
            });
        }
        self.hook_attempt_seconds.remove(&HookLabels {
            workflow: workflow.to_string(),
            hook,
        });
    }

    /// The exposition text, with the gauges read from the store now and the worker restarts
    /// and paused hooks from the dispatcher's `health`.
    pub(crate) async fn render(
        &self,
        store: &dyn DurableOutbox,
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
            .set(i64::try_from(store.pending().await?).unwrap_or(i64::MAX));
        let disabled = store.disabled_hooks().await?;
        self.hooks_disabled
            .set(i64::try_from(disabled).unwrap_or(i64::MAX));
        let quarantined = store
            .count(linq_hooks_outbox::DeliveryState::Quarantined)
            .await?;
        self.quarantined
            .set(i64::try_from(quarantined).unwrap_or(i64::MAX));
        Ok(self.encode())
    }

    /// The exposition text of what the registry holds now.
    fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn series_of(text: &str, hook: &str) -> usize {
        let label = format!("hook=\"{hook}\"");
        text.lines()
            .filter(|line| !line.starts_with('#') && line.contains(&label))
            .count()
    }

    /// A hook has at most `SERIES_PER_HOOK` series, and none once forgotten; other hooks keep
    /// theirs.
    #[test]
    fn per_hook_series_are_bounded_and_go_with_their_hook() {
        let metrics = Metrics::new();
        let results = [
            AttemptResult::Status(200),
            AttemptResult::Status(302),
            AttemptResult::Status(404),
            AttemptResult::Status(503),
            AttemptResult::Error("could not connect".into()),
        ];
        let outcomes = [
            Outcome::Delivered,
            Outcome::Failed {
                reason: "no".into(),
            },
            Outcome::Retry {
                at: SystemTime::now(),
            },
            Outcome::HookGone,
        ];
        for hook in ["hook_1", "hook_2"] {
            for result in &results {
                for outcome in &outcomes {
                    metrics.observe(
                        Some(("lab", hook.to_string())),
                        Duration::from_millis(35),
                        result,
                        outcome,
                    );
                }
            }
        }
        let text = metrics.encode();
        assert_eq!(series_of(&text, "hook_1"), SERIES_PER_HOOK, "{text}");
        assert!(text.contains(
            "linq_hooks_hook_attempts_total{workflow=\"lab\",hook=\"hook_1\",class=\"4xx\"} 4"
        ));
        metrics.forget("lab", "hook_1".to_string());
        let text = metrics.encode();
        assert_eq!(series_of(&text, "hook_1"), 0, "{text}");
        assert_eq!(series_of(&text, "hook_2"), SERIES_PER_HOOK);
        // The totals over every hook stay.
        assert!(
            text.contains("linq_hooks_attempt_results_total{class=\"error\"} 8"),
            "{text}"
        );
    }

    #[test]
    fn status_classes() {
        for (result, class) in [
            (AttemptResult::Status(200), "2xx"),
            (AttemptResult::Status(299), "2xx"),
            (AttemptResult::Status(301), "3xx"),
            (AttemptResult::Status(410), "4xx"),
            (AttemptResult::Status(599), "5xx"),
            (AttemptResult::Status(600), "error"),
            (AttemptResult::Status(101), "error"),
            (AttemptResult::Error("timed out".into()), "error"),
        ] {
            assert_eq!(class_of(&result), class, "{result}");
        }
    }
}
