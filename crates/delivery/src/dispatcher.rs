//! The dispatcher: one worker per hook, so a hook's deliveries go in order while hooks proceed
//! side by side, sharing a bound on requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use linq_hooks_model::Hook;
use linq_hooks_signature::{Secret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, sign};
use linq_hooks_transport::{Request, Transport};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::outbox::{Attempt, AttemptResult, Delivery, Head, Outbox, Outcome};
use crate::policy::{RetryPolicy, Verdict};

/// How long a worker waits before asking a failing outbox again.
const OUTBOX_RETRY: Duration = Duration::from_secs(1);

/// How a [`Dispatcher`] delivers.
///
/// ```
/// let config = linq_hooks_delivery::Config::default();
/// assert_eq!(config.concurrency, 64);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// At most this many requests in flight, over all hooks.
    pub concurrency: usize,
    /// When to retry.
    pub policy: RetryPolicy,
    /// Signing secrets (several during a rotation: one signature each). With none, requests
    /// carry `webhook-id` and `webhook-timestamp` but no `webhook-signature`.
    pub secrets: Vec<Secret>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            concurrency: 64,
            policy: RetryPolicy::dispatch_default(),
            secrets: Vec::new(),
        }
    }
}

impl Config {
    /// Sets the bound on requests in flight (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Config {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets the retry policy.
    pub fn policy(mut self, policy: RetryPolicy) -> Config {
        self.policy = policy;
        self
    }

    /// Sets the signing secrets.
    pub fn secrets(mut self, secrets: Vec<Secret>) -> Config {
        self.secrets = secrets;
        self
    }
}

/// Delivers what an [`Outbox`] holds, over a [`Transport`].
///
/// - Per hook, in order: a hook's next delivery waits until the one before it was delivered or
///   given up. Hooks proceed independently; a slow or failing receiver holds up only its own
///   hook.
/// - At most [`Config::concurrency`] requests in flight.
/// - Success is a 2xx; connection failures, timeouts, 408, 429 and 5xx are retried as the
///   [`RetryPolicy`] says; 410 disables the hook; anything else fails at once ([`Verdict`]).
/// - The body and `webhook-id` of a delivery are the same on every attempt; the timestamp and
///   signature are made fresh for each.
/// - A worker waiting for a retry sleeps (no polling); it wakes when the time comes, when
///   [`wake`](Dispatcher::wake) is called for its hook, or on shutdown.
///
/// ```
/// use std::sync::Arc;
/// use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox, NewDelivery};
/// use linq_hooks_transport::MemoryTransport;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let hooks: Arc<[_]> = linq_hooks_model::parse_hooks(
///     r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/hook"}}]"#,
/// ).unwrap().hooks.into();
/// let outbox = Arc::new(MemoryOutbox::new(hooks.len()));
/// outbox.push(NewDelivery { hook: 0, webhook_id: "msg_1".into(), body: "{}".into() });
/// let transport = Arc::new(MemoryTransport::new()); // answers 200
///
/// let dispatcher = Dispatcher::new(hooks, transport.clone(), outbox.clone(), Config::default());
/// dispatcher.close(); // nothing more will come: run until the outbox is drained
/// dispatcher.run().await;
///
/// assert_eq!(outbox.reports()[0].delivered, 1);
/// assert_eq!(transport.requests()[0].header("webhook-id"), Some("msg_1"));
/// # });
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    hooks: Arc<[Hook]>,
    transport: Arc<dyn Transport>,
    outbox: Arc<dyn Outbox>,
    config: Config,
    permits: Semaphore,
    wake: Vec<Notify>,
    closed: AtomicBool,
    shutdown: CancellationToken,
}

impl Dispatcher {
    /// A dispatcher for `hooks` (the indices in the outbox's deliveries refer to this list).
    pub fn new(
        hooks: Arc<[Hook]>,
        transport: Arc<dyn Transport>,
        outbox: Arc<dyn Outbox>,
        config: Config,
    ) -> Dispatcher {
        let wake = hooks.iter().map(|_| Notify::new()).collect();
        Dispatcher {
            inner: Arc::new(Inner {
                hooks,
                transport,
                outbox,
                permits: Semaphore::new(config.concurrency.max(1)),
                config,
                wake,
                closed: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Tells the worker of `hook` that its queue changed (a delivery was added, replayed, or the
    /// hook was enabled). Cheap; a wake-up with nothing new is harmless.
    pub fn wake(&self, hook: usize) {
        if let Some(notify) = self.inner.wake.get(hook) {
            notify.notify_one();
        }
    }

    /// Says that no more deliveries will be added: each worker stops once its hook has nothing
    /// left to send (or is disabled), and [`run`](Dispatcher::run) returns when all have.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        (0..self.inner.wake.len()).for_each(|hook| self.wake(hook));
    }

    /// Stops: no new attempt starts; attempts in flight finish. [`run`](Dispatcher::run)
    /// returns once they have. What is not delivered stays in the outbox.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Runs one worker per hook until [`close`](Dispatcher::close)d and drained, or
    /// [`shutdown`](Dispatcher::shutdown).
    pub async fn run(&self) {
        let mut workers = tokio::task::JoinSet::new();
        let mut hook_of = std::collections::HashMap::new();
        for hook in 0..self.inner.hooks.len() {
            let inner = Arc::clone(&self.inner);
            hook_of.insert(
                workers.spawn(async move { inner.work(hook).await }).id(),
                hook,
            );
        }
        while let Some(result) = workers.join_next_with_id().await {
            if let Err(e) = result {
                // A worker that panicked would leave its hook silent for good: start another.
                let hook = hook_of[&e.id()];
                tracing::error!(hook, "a delivery worker panicked ({e}); starting it again");
                let inner = Arc::clone(&self.inner);
                hook_of.insert(
                    workers.spawn(async move { inner.work(hook).await }).id(),
                    hook,
                );
            }
        }
    }
}

impl Inner {
    async fn work(&self, hook: usize) {
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let head = match self.outbox.head(hook).await {
                Ok(head) => head,
                Err(e) => {
                    tracing::error!(hook, "cannot read the outbox: {e}; trying again");
                    self.sleep_or_wake(hook, OUTBOX_RETRY).await;
                    continue;
                }
            };
            let delivery = match head {
                Head::Ready(delivery) => delivery,
                Head::Empty | Head::Disabled => {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::select! {
                        () = self.wake[hook].notified() => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            if let Some(wait) = delivery
                .next_attempt_at
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
            {
                // Not due yet: sleep until it is, unless something changes first.
                self.sleep_or_wake(hook, wait).await;
                continue;
            }
            let permit = tokio::select! {
                permit = self.permits.acquire() => permit.expect("the semaphore is never closed"),
                () = self.shutdown.cancelled() => return,
            };
            let (attempt, verdict) = self.attempt(&self.hooks[hook], &delivery).await;
            drop(permit);
            let outcome = self.decide(&delivery, verdict, &attempt);
            tracing::debug!(hook, delivery = delivery.id, webhook_id = %delivery.webhook_id, result = %attempt.result, ?outcome, "attempt");
            self.record(&delivery, attempt, outcome).await;
        }
    }

    /// Makes one attempt: a fresh timestamp and signature over the fixed id and body.
    async fn attempt(&self, hook: &Hook, delivery: &Delivery) -> (Attempt, Verdict) {
        let at = SystemTime::now();
        let timestamp = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let parameters = hook.parameters();
        let mut request = Request::new(parameters.url(), delivery.body.clone())
            .with_headers(parameters.headers())
            .with_header(WEBHOOK_ID, delivery.webhook_id.as_str())
            .with_header(WEBHOOK_TIMESTAMP, timestamp.to_string());
        if !self.config.secrets.is_empty() {
            let timestamp = i64::try_from(timestamp).unwrap_or(i64::MAX);
            let signature = sign(
                &self.config.secrets,
                &delivery.webhook_id,
                timestamp,
                &delivery.body,
            );
            request = request.with_header(WEBHOOK_SIGNATURE, signature);
        }
        let started = Instant::now();
        let result = self.transport.send(request).await;
        let latency = started.elapsed();
        let verdict = Verdict::of(&result);
        let result = match result {
            Ok(response) => AttemptResult::Status(response.status()),
            Err(error) => AttemptResult::Error(format!("{error:#}")),
        };
        (
            Attempt {
                at,
                latency,
                result,
            },
            verdict,
        )
    }

    fn decide(&self, delivery: &Delivery, verdict: Verdict, attempt: &Attempt) -> Outcome {
        match verdict {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Gone => Outcome::HookGone,
            Verdict::Fail { reason } => Outcome::Failed { reason },
            Verdict::Retry { retry_after } => {
                let attempts = delivery.attempts + 1;
                match self.config.policy.delay_after(attempts, retry_after) {
                    Some(delay) => Outcome::Retry {
                        at: SystemTime::now() + delay,
                    },
                    None => Outcome::Failed {
                        reason: format!(
                            "gave up after {attempts} attempts; the last: {}",
                            attempt.result
                        ),
                    },
                }
            }
        }
    }

    /// Records an attempt, insisting while the outbox fails: forgetting it would send the
    /// delivery again, or worse, skip its outcome.
    async fn record(&self, delivery: &Delivery, attempt: Attempt, outcome: Outcome) {
        while let Err(e) = self
            .outbox
            .record(delivery, attempt.clone(), outcome.clone())
            .await
        {
            tracing::error!(
                hook = delivery.hook,
                delivery = delivery.id,
                "cannot record an attempt: {e}; trying again"
            );
            if self.shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(OUTBOX_RETRY).await;
        }
    }

    async fn sleep_or_wake(&self, hook: usize, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.wake[hook].notified() => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}
