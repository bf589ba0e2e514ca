//! The dispatcher: one worker per hook, so a hook's deliveries go in order while hooks proceed
//! side by side, sharing a bound on requests in flight.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::{Secret, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, sign};
use linq_hooks_transport::{Request, Transport};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::outbox::{
    Attempt, AttemptResult, Delivery, DeliveryId, Head, HookId, Outbox, OutboxError, Outcome,
};
use crate::policy::{RetryPolicy, Verdict};

/// How long a worker waits before asking a failing outbox again: the first time...
const OUTBOX_RETRY: Duration = Duration::from_secs(1);
/// ...doubling while it keeps failing, up to this (so a damaged store costs a log line per hook
/// a minute, not a spin).
const OUTBOX_RETRY_MAX: Duration = Duration::from_secs(60);

/// How many deliveries a worker reads ahead of its hook's queue at once ([`Outbox::after`]):
/// enough that the read is a small part of each delivery's cost, few enough that thousands of
/// hooks with deep queues, each holding what it read while it waits for capacity, hold little.
const READ_AHEAD: usize = 32;

/// The longest pause of a hook whose receiver keeps timing out ([`Config::breaker`]).
const BREAKER_MAX_COOL_DOWN: Duration = Duration::from_secs(5 * 60);

/// How long a worker that panicked waits before it is started again: the first time...
const RESTART_FIRST: Duration = Duration::from_millis(100);
/// ...doubling each time it panics again, up to this...
const RESTART_MAX: Duration = Duration::from_secs(30);
/// ...and from the first again once a worker ran this long before it panicked.
const RESTART_RESET: Duration = Duration::from_secs(60);

const NO_TIMERS: &str = "Dispatcher::run needs a Tokio runtime with time enabled \
    (tokio::runtime::Builder::enable_time or enable_all; #[tokio::main] and #[tokio::test] enable it)";

/// How a [`Dispatcher`] delivers.
///
/// Capacity comes in two lanes, so that receivers that hang cannot take the capacity of those
/// that answer (see ARCHITECTURE.md, "Capacity"):
///
/// - a request counts against [`concurrency`](Config::concurrency) (the shared pool) until it
///   has been in flight for [`slow_after`](Config::slow_after); then it gives its place back
///   and waits in the slow lane, if the slow lane has room;
/// - [`max_in_flight`](Config::max_in_flight) bounds every request in flight, slow ones
///   included (each is a socket): the slow lane holds `max_in_flight - concurrency`;
/// - requests in flight to one origin (scheme, host and port of the hook's URL) are at most
///   `concurrency`, so one receiver cannot fill the slow lane;
/// - a hook whose requests time out (or take longer than `slow_after` to fail to connect)
///   [`breaker_after`](Config::breaker_after)
///   times in a row is paused (its queue kept, in order) for
///   [`breaker_cool_down`](Config::breaker_cool_down), doubling while it keeps failing.
///
/// ```
/// use std::time::Duration;
/// let config = linq_hooks_delivery::Config::default();
/// assert_eq!(config.concurrency, 64);
/// assert_eq!(config.slow_after, Duration::from_millis(500));
/// assert_eq!(config.max_in_flight, 1024);
/// assert_eq!(config.breaker_after, 5);
/// assert_eq!(config.breaker_cool_down, Duration::from_secs(1));
///
/// let config = linq_hooks_delivery::Config::default()
///     .concurrency(16)
///     .slow_after(Duration::from_secs(1))
///     .max_in_flight(256)
///     .breaker(3, Duration::from_secs(10));
/// assert_eq!((config.concurrency, config.max_in_flight, config.breaker_after), (16, 256, 3));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// At most this many requests in flight that count against the shared pool, over all hooks
    /// (default 64). A request stops counting once it has been in flight for
    /// [`slow_after`](Config::slow_after) and the slow lane has room. Also the most requests
    /// in flight to one origin (scheme, host, port), slow ones included.
    pub concurrency: usize,
    /// How long a request may be in flight before it leaves the shared pool for the slow lane
    /// (default 500 ms): a receiver slower than this no longer delays other hooks.
    pub slow_after: Duration,
    /// At most this many requests in flight in all, slow ones included (default 1 024; at
    /// least [`concurrency`](Config::concurrency)): each holds a socket.
    pub max_in_flight: usize,
    /// A hook is paused after this many attempts in a row that timed out, or failed to connect
    /// after trying longer than [`slow_after`](Config::slow_after) (default 5; 0 never pauses).
    /// A connection refused at once holds nothing: the retry schedule alone spaces those. Its queue is kept; see
    /// [`breaker_cool_down`](Config::breaker_cool_down).
    pub breaker_after: u32,
    /// How long a paused hook waits before it tries again (default 1 s), doubling each time
    /// that try fails too, up to 5 minutes; any answer from the receiver ends the pause.
    pub breaker_cool_down: Duration,
    /// When to retry.
    pub policy: RetryPolicy,
    /// Signing secrets for the hooks given to [`Dispatcher::new`] (several during a rotation:
    /// one signature each). With none, requests carry `webhook-id` and `webhook-timestamp` but
    /// no `webhook-signature`. Hooks given with [`Dispatcher::set`] bring their own.
    pub secrets: Vec<Secret>,
    /// The wall clock (`SystemTime::now` unless a test steps it).
    clock: WallClock,
}

/// The wall clock a dispatcher reads: the system's, or one a test sets.
#[derive(Clone, Default)]
struct WallClock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl WallClock {
    fn now(&self) -> SystemTime {
        self.0
            .as_ref()
            .map_or_else(SystemTime::now, |clock| clock())
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "WallClock(set)"
        } else {
            "WallClock(system)"
        })
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            concurrency: 64,
            slow_after: Duration::from_millis(500),
            max_in_flight: 1024,
            breaker_after: 5,
            breaker_cool_down: Duration::from_secs(1),
            policy: RetryPolicy::dispatch_default(),
            secrets: Vec::new(),
            clock: WallClock::default(),
        }
    }
}

impl Config {
    /// Sets the bound on requests in flight in the shared pool, and per origin (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Config {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets how long a request may be in flight before it moves to the slow lane.
    pub fn slow_after(mut self, slow_after: Duration) -> Config {
        self.slow_after = slow_after;
        self
    }

    /// Sets the bound on all requests in flight, slow ones included (raised to
    /// [`concurrency`](Config::concurrency) if lower when the dispatcher is built).
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Config {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Pauses a hook after `after` attempts in a row that timed out (or failed to connect after
    /// longer than `slow_after`)
    /// (0: never), for `cool_down`, doubling while it keeps failing (up to 5 minutes).
    pub fn breaker(mut self, after: u32, cool_down: Duration) -> Config {
        self.breaker_after = after;
        self.breaker_cool_down = cool_down;
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

    /// Replaces the wall clock, for tests that step it (a clock that jumps back must not make
    /// retries wait). Waits are measured on Tokio's monotonic clock whatever this says; the
    /// wall clock gives due times to store, signature timestamps and secrets' ends.
    #[doc(hidden)]
    pub fn wall_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Config {
        self.clock = WallClock(Some(Arc::new(clock)));
        self
    }
}

/// Where one hook's deliveries go, and how they are signed: the hook's URL and headers, and its
/// signing secrets (each with the time it stops being used, for a rotation's grace period).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use linq_hooks_delivery::{Destination, HookParameters, Secret};
///
/// let parameters = HookParameters::new("https://lims.example/hook", Default::default())?;
/// let new: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
/// let old: Secret = "whsec_c2VjcmV0LXR3ZW50eS1mb3VyLWJ5dGVz".parse().unwrap();
/// let destination = Destination::new(parameters)
///     .secret(new)
///     .secret_until(old, SystemTime::now() + Duration::from_secs(24 * 3600));
/// assert_eq!(destination.parameters().url(), "https://lims.example/hook");
/// # Ok::<(), linq_hooks_delivery::model::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Destination {
    parameters: HookParameters,
    secrets: Vec<(Secret, Option<SystemTime>)>,
    /// `scheme://host:port` of the URL, the key of its bound on requests in flight: read once
    /// here rather than at every attempt.
    origin: String,
}

impl Destination {
    /// Deliveries to these parameters, unsigned until a secret is added.
    pub fn new(parameters: HookParameters) -> Destination {
        Destination {
            origin: origin_of(parameters.url()),
            parameters,
            secrets: Vec::new(),
        }
    }

    /// Also signs with `secret` (one `v1,` signature per secret).
    pub fn secret(mut self, secret: Secret) -> Destination {
        self.secrets.push((secret, None));
        self
    }

    /// Also signs with `secret` until `until` (a rotated-out secret's grace period).
    pub fn secret_until(mut self, secret: Secret, until: SystemTime) -> Destination {
        self.secrets.push((secret, Some(until)));
        self
    }

    /// The URL and headers.
    pub fn parameters(&self) -> &HookParameters {
        &self.parameters
    }

    /// The secrets in force at `now`.
    fn secrets_at(&self, now: SystemTime) -> Vec<Secret> {
        self.secrets
            .iter()
            .filter(|(_, until)| until.is_none_or(|until| now < until))
            .map(|(secret, _)| secret.clone())
            .collect()
    }
}

/// Delivers what an [`Outbox`] holds, over a [`Transport`].
///
/// - Per hook, in order: a hook's next delivery waits until the one before it was delivered or
///   given up. Hooks proceed independently; a slow or failing receiver holds up only its own
///   hook.
/// - At most [`Config::concurrency`] requests in flight in the shared pool; a request in
///   flight longer than [`Config::slow_after`] moves to a slow lane, so that receivers that hang
///   do not take the capacity of those that answer; at most [`Config::max_in_flight`] in all
///   ([`Config`] explains the limits).
/// - A hook whose attempts keep timing out is paused for a while, its
///   deliveries kept ([`Config::breaker_after`]; [`Health::paused`]).
/// - Success is a 2xx; connection failures, timeouts, 408, 429 and 5xx are retried as the
///   [`RetryPolicy`] says; 410 disables the hook; anything else fails at once ([`Verdict`]).
/// - The body and `webhook-id` of a delivery are the same on every attempt; the timestamp and
///   signature are made fresh for each.
/// - A worker waiting for a retry sleeps (no polling); it wakes when the time comes, when
///   [`wake`](Dispatcher::wake) is called for its hook, or on shutdown.
/// - Hooks are live data: [`set`](Dispatcher::set) adds a hook or changes where its deliveries
///   go (from the next attempt on; the delivery in flight finishes as it started), and
///   [`remove`](Dispatcher::remove) stops its worker, while the dispatcher runs.
///
/// This example needs the `memory` feature (for `MemoryTransport`):
///
/// ```
/// use std::sync::Arc;
/// use linq_hooks_delivery::transport::MemoryTransport;
/// use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox, NewDelivery, model};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let hooks: Arc<[_]> = model::parse_hooks(
///     r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/hook"}}]"#,
/// ).unwrap().hooks.into();
/// let outbox = Arc::new(MemoryOutbox::new(hooks.len()));
/// outbox.push(NewDelivery { hook: 0, webhook_id: "msg_1".into(), body: "{}".into() });
/// let transport = Arc::new(MemoryTransport::new()); // answers 200
///
/// let dispatcher = Dispatcher::new(hooks, transport.clone(), outbox.clone(), Config::default())?;
/// dispatcher.close(); // nothing more will come: run until the outbox is drained
/// dispatcher.run().await;
///
/// assert_eq!(outbox.reports()[0].delivered, 1);
/// assert_eq!(transport.requests()[0].header("webhook-id"), Some("msg_1"));
/// # Ok::<(), linq_hooks_delivery::DispatcherError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<dyn Transport>,
    outbox: Arc<dyn Outbox>,
    config: Config,
    /// The shared pool: requests in flight for less than `slow_after`.
    fast: Semaphore,
    /// The slow lane: requests in flight for longer (`max_in_flight - concurrency`).
    slow: Semaphore,
    /// Requests in flight per origin (at most `concurrency` each); an entry lives while a
    /// worker holds it.
    origins: Mutex<HashMap<String, Weak<Semaphore>>>,
    hooks: Mutex<HashMap<HookId, Arc<Slot>>>,
    /// Told when a hook is added (or on close), so that `run` starts its worker.
    added: Notify,
    closed: AtomicBool,
    shutdown: CancellationToken,
    /// Workers started again after a panic, over the dispatcher's life.
    restarts: AtomicU64,
}

/// One hook's live state, shared by its worker and whoever edits it.
struct Slot {
    destination: Mutex<Arc<Destination>>,
    wake: Notify,
    removed: AtomicBool,
    /// Whether `run` has started its worker.
    started: AtomicBool,
    /// Whether its worker panicked and waits to be started again.
    failing: AtomicBool,
    /// Whether its worker may be waiting for a delivery to be added (set before it reads its
    /// queue, cleared once it has one), for [`Dispatcher::appended`].
    idle: AtomicBool,
    /// The wait before the next restart, and when the worker last started.
    restart: Mutex<(Duration, Option<Instant>)>,
    /// While its worker cannot read the outbox: the last error (what `health` reports).
    outbox_error: Mutex<Option<String>>,
    /// Whether the hook is paused after attempts that timed out.
    breaker: Mutex<Breaker>,
    /// Set by [`Dispatcher::retry_now`]: the worker forgets the retry deadline it keeps.
    retry_now: AtomicBool,
    /// Set when the queue may have changed other than at its end (a replay, a retry, an
    /// enable, an edit): the worker drops what it read ahead and asks for the head.
    reread: AtomicBool,
    /// Set by the outbox's [`HookWaker`]: a worker backing off after a failed read reads
    /// again at once (the outbox, say a database connection back, can be read again).
    outbox_woke: AtomicBool,
}

/// A hook's circuit breaker: counts attempts in a row that timed out (or were slow to fail to
/// connect);
/// once there are `Config::breaker_after`, the hook pauses for a cool-down, then tries once
/// more (half open): an answer closes it, another failure pauses it twice as long.
#[derive(Debug)]
struct Breaker {
    failures: u32,
    /// While open: when the next try may go.
    open_until: Option<Instant>,
    /// The next pause.
    cool_down: Duration,
}

impl Breaker {
    fn new(cool_down: Duration) -> Breaker {
        Breaker {
            failures: 0,
            open_until: None,
            cool_down,
        }
    }

    /// How long the hook must still wait, if it is paused.
    fn wait(&self) -> Option<Duration> {
        self.open_until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|wait| !wait.is_zero())
    }

    /// Notes an attempt's result; the pause, when the breaker opened because of it.
    fn note(&mut self, result: AttemptKind, config: &Config) -> Option<Duration> {
        match result {
            AttemptKind::Answered => *self = Breaker::new(config.breaker_cool_down),
            AttemptKind::Unreachable => {
                self.failures = self.failures.saturating_add(1);
                if config.breaker_after > 0 && self.failures >= config.breaker_after {
                    let pause = self.cool_down;
                    self.open_until = Some(Instant::now() + pause);
                    self.cool_down = (self.cool_down * 2).min(BREAKER_MAX_COOL_DOWN);
                    return Some(pause);
                }
            }
            AttemptKind::Other => {}
        }
        None
    }
}

/// What an attempt says of the receiver, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttemptKind {
    /// It answered (any status): it is there.
    Answered,
    /// No answer in time, or no connection after longer than `slow_after`: it held capacity
    /// and gave nothing back.
    Unreachable,
    /// Anything else (a request that cannot be sent, a broken answer).
    Other,
}

/// What a worker read ahead of its hook's queue ([`Outbox::after`]).
#[derive(Debug, Default)]
struct Ahead {
    /// The delivery handled last (delivered or given up), while nothing else changed the queue.
    last: Option<DeliveryId>,
    /// The deliveries read after it, not yet sent.
    queue: VecDeque<Delivery>,
}

impl Ahead {
    /// Forgets it all: the next delivery is the head, asked for again.
    fn forget(&mut self) {
        self.last = None;
        self.queue.clear();
    }
}

/// A retry this worker scheduled, with its deadline on the monotonic clock: a wall clock that
/// steps back must not make the wait longer.
#[derive(Clone, Copy, Debug)]
struct Scheduled {
    delivery: DeliveryId,
    /// The due time stored in the outbox.
    at: SystemTime,
    /// The same due time on the monotonic clock.
    deadline: tokio::time::Instant,
}

impl Slot {
    fn new(destination: Destination, config: &Config) -> Slot {
        Slot {
            breaker: Mutex::new(Breaker::new(config.breaker_cool_down)),
            destination: Mutex::new(Arc::new(destination)),
            wake: Notify::new(),
            removed: AtomicBool::new(false),
            started: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            idle: AtomicBool::new(true),
            restart: Mutex::new((RESTART_FIRST, None)),
            outbox_error: Mutex::new(None),
            retry_now: AtomicBool::new(false),
            reread: AtomicBool::new(false),
            outbox_woke: AtomicBool::new(false),
        }
    }

    /// The wait before starting again a worker that just panicked: doubling while it keeps
    /// panicking soon after it starts.
    fn restart_delay(&self) -> Duration {
        let mut restart = self.restart.lock().expect("not poisoned");
        let (next, started) = *restart;
        let delay = if started.is_some_and(|at| at.elapsed() >= RESTART_RESET) {
            RESTART_FIRST
        } else {
            next
        };
        *restart = ((delay * 2).min(RESTART_MAX), None);
        delay
    }

    fn started_now(&self) {
        self.restart.lock().expect("not poisoned").1 = Some(Instant::now());
        self.failing.store(false, Ordering::SeqCst);
    }
}

/// Wakes the workers of one [`Dispatcher`], for an [`Outbox`] that adds deliveries itself
/// (given to [`Outbox::subscribe`]). It does not keep the dispatcher alive: once the dispatcher
/// is dropped, waking does nothing.
#[derive(Clone)]
pub struct HookWaker {
    inner: Weak<Inner>,
}

impl HookWaker {
    /// Tells the worker of `hook` that its queue changed, as [`Dispatcher::wake`] does.
    pub fn wake(&self, hook: HookId) {
        if let Some(slot) = self.inner.upgrade().and_then(|inner| inner.slot(hook)) {
            // As `Dispatcher::wake`: the head is read again, not only what follows the last
            // delivery sent (a delivery may have become visible behind it, or the outbox's
            // hold on the hook was lost); and a back-off after a failed read ends.
            slot.outbox_woke.store(true, Ordering::SeqCst);
            slot.reread.store(true, Ordering::SeqCst);
            slot.wake.notify_one();
        }
    }

    /// Whether the dispatcher still exists.
    pub fn is_alive(&self) -> bool {
        self.inner.strong_count() > 0
    }
}

impl fmt::Debug for HookWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookWaker")
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// Why a [`Dispatcher`] could not be built.
///
/// This example needs the `memory` feature (for `MemoryTransport`):
///
/// ```
/// use std::sync::Arc;
/// use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox, model::parse_hooks, transport::MemoryTransport};
///
/// let hooks = parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}},
///     {"filter": "on_new_plan", "parameters": {"url": "https://b.example"}}]"#).unwrap().hooks;
/// let outbox = Arc::new(MemoryOutbox::new(1)); // one hook short
/// let transport = Arc::new(MemoryTransport::new());
/// let err = Dispatcher::new(hooks.into(), transport, outbox, Config::default()).unwrap_err();
/// assert!(err.is_hook_not_accepted());
/// assert_eq!(err.hook(), Some(1));
/// ```
#[derive(Debug)]
pub struct DispatcherError {
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    HookNotAccepted(HookId),
}

impl DispatcherError {
    /// Whether the outbox does not keep deliveries for one of the hooks
    /// ([`Outbox::accepts`]): a [`MemoryOutbox`](crate::MemoryOutbox) made for fewer hooks.
    pub fn is_hook_not_accepted(&self) -> bool {
        matches!(self.kind, ErrorKind::HookNotAccepted(_))
    }

    /// The hook concerned, if one is.
    pub fn hook(&self) -> Option<HookId> {
        match self.kind {
            ErrorKind::HookNotAccepted(hook) => Some(hook),
        }
    }
}

impl fmt::Display for DispatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::HookNotAccepted(hook) => write!(
                f,
                "the outbox does not keep deliveries for hook {hook} (an outbox made for fewer hooks?)"
            ),
        }
    }
}

impl std::error::Error for DispatcherError {}

/// How a [`Dispatcher`]'s workers fare: see [`Dispatcher::health`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Workers started again after a panic, over the dispatcher's life.
    pub worker_restarts: u64,
    /// The hooks whose worker panicked and waits to be started again (in back-off), in order.
    pub failing: Vec<HookId>,
    /// The hooks whose worker cannot read its queue from the outbox (a damaged or broken
    /// store), in order, each with the last error (`{:#}`: with its sources). Such a worker
    /// asks again after 1 s, doubling up to 60 s while it keeps failing.
    pub outbox_failing: Vec<(HookId, String)>,
    /// The hooks paused because their attempts kept timing out (or were slow to fail to connect)
    /// ([`Config::breaker_after`]), in order: their deliveries wait in the outbox. A paused
    /// hook is the receiver's trouble, not the dispatcher's: it does not make
    /// [`is_healthy`](Health::is_healthy) false.
    pub paused: Vec<HookId>,
}

impl Health {
    /// Whether no worker is in back-off, after a panic or an outbox failure.
    pub fn is_healthy(&self) -> bool {
        self.failing.is_empty() && self.outbox_failing.is_empty()
    }
}

impl Dispatcher {
    /// A dispatcher for a fixed list of `hooks`: the deliveries in the outbox name a hook by its
    /// index in the list. Requests are signed with [`Config::secrets`].
    ///
    /// # Errors
    ///
    /// When the outbox does not keep deliveries for every hook ([`Outbox::accepts`]): a
    /// [`MemoryOutbox`](crate::MemoryOutbox) made for fewer hooks than given.
    pub fn new(
        hooks: Arc<[Hook]>,
        transport: Arc<dyn Transport>,
        outbox: Arc<dyn Outbox>,
        config: Config,
    ) -> Result<Dispatcher, DispatcherError> {
        if let Some(hook) = (0..hooks.len() as HookId).find(|&hook| !outbox.accepts(hook)) {
            return Err(DispatcherError {
                kind: ErrorKind::HookNotAccepted(hook),
            });
        }
        let secrets = config.secrets.clone();
        let dispatcher = Dispatcher::without_hooks(transport, outbox, config);
        for (index, hook) in hooks.iter().enumerate() {
            let destination = secrets
                .iter()
                .fold(Destination::new(hook.parameters().clone()), |d, s| {
                    d.secret(s.clone())
                });
            dispatcher.set(index as HookId, destination);
        }
        Ok(dispatcher)
    }

    /// A dispatcher with no hooks yet: add them with [`set`](Dispatcher::set), before or while
    /// it runs.
    ///
    /// This example needs the `memory` feature (for `MemoryTransport`):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use linq_hooks_delivery::transport::MemoryTransport;
    /// use linq_hooks_delivery::{Config, Destination, Dispatcher, HookParameters, MemoryOutbox, NewDelivery};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let outbox = Arc::new(MemoryOutbox::new(1));
    /// let transport = Arc::new(MemoryTransport::new());
    /// let dispatcher = Dispatcher::without_hooks(transport.clone(), outbox.clone(), Config::default());
    /// let parameters = HookParameters::new("https://lims.example/moved", Default::default()).unwrap();
    /// dispatcher.set(0, Destination::new(parameters));
    /// outbox.push(NewDelivery { hook: 0, webhook_id: "msg_1".into(), body: "{}".into() });
    /// dispatcher.close();
    /// dispatcher.run().await;
    /// assert_eq!(transport.requests()[0].url(), "https://lims.example/moved");
    /// # });
    /// ```
    pub fn without_hooks(
        transport: Arc<dyn Transport>,
        outbox: Arc<dyn Outbox>,
        config: Config,
    ) -> Dispatcher {
        let inner = Arc::new(Inner {
            transport,
            outbox,
            fast: Semaphore::new(config.concurrency.clamp(1, Semaphore::MAX_PERMITS)),
            slow: Semaphore::new(
                config
                    .max_in_flight
                    .saturating_sub(config.concurrency.max(1))
                    .min(Semaphore::MAX_PERMITS),
            ),
            origins: Mutex::new(HashMap::new()),
            config,
            hooks: Mutex::new(HashMap::new()),
            added: Notify::new(),
            closed: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            restarts: AtomicU64::new(0),
        });
        inner.outbox.subscribe(HookWaker {
            inner: Arc::downgrade(&inner),
        });
        Dispatcher { inner }
    }

    /// Adds `hook`, or changes where its deliveries go: the next attempt (a retry included) goes
    /// to the new destination, with the delivery's own `webhook-id` and body. An attempt in
    /// flight to the old destination finishes there; if it does not deliver, whatever it got
    /// (a failure, a 410, a retry hours away) is not held against the new destination: the next
    /// attempt goes to it at once. A new hook's
    /// worker starts at once (in [`run`](Dispatcher::run)) and reads its queue.
    pub fn set(&self, hook: HookId, destination: Destination) {
        let mut hooks = self.inner.hooks.lock().expect("not poisoned");
        match hooks.get(&hook) {
            Some(slot) => {
                *slot.destination.lock().expect("not poisoned") = Arc::new(destination);
                // What the old destination did says nothing of the new one.
                *slot.breaker.lock().expect("not poisoned") =
                    Breaker::new(self.inner.config.breaker_cool_down);
                slot.reread.store(true, Ordering::SeqCst);
                slot.wake.notify_one();
            }
            None => {
                hooks.insert(hook, Arc::new(Slot::new(destination, &self.inner.config)));
                drop(hooks);
                self.inner.added.notify_one();
            }
        }
    }

    /// Removes `hook`: its worker stops after the attempt in flight, if any. What is left in
    /// its queue is the outbox's to settle (a durable outbox cancels it).
    pub fn remove(&self, hook: HookId) {
        let removed = self.inner.hooks.lock().expect("not poisoned").remove(&hook);
        if let Some(slot) = removed {
            slot.removed.store(true, Ordering::SeqCst);
            slot.wake.notify_one();
        }
    }

    /// Tells the worker of `hook` that its queue changed (a delivery was added, replayed, or the
    /// hook was enabled). Cheap; a wake-up with nothing new is harmless.
    ///
    /// Whoever adds deliveries to the outbox calls it, unless the outbox wakes the dispatcher
    /// itself ([`Outbox::subscribe`]): [`MemoryOutbox::push`](crate::MemoryOutbox::push) does,
    /// so it needs no `wake`.
    pub fn wake(&self, hook: HookId) {
        if let Some(slot) = self.inner.slot(hook) {
            slot.reread.store(true, Ordering::SeqCst);
            slot.wake.notify_one();
        }
    }

    /// Has the worker of `hook` attempt its head now: an operator's "retry now", after the
    /// outbox made the head due (cleared its stored due time). The worker forgets the retry
    /// deadline it keeps on the monotonic clock, a pause of the circuit breaker ends (the next
    /// attempt is its probe: another timeout pauses the hook again, for twice as long), and the
    /// worker wakes. Nothing else changes: the delivery keeps its `webhook-id` and the attempts
    /// of its round (a failure goes on with its retry schedule). A hook the dispatcher does not
    /// know is ignored.
    ///
    /// This example needs the `memory` feature (for `MemoryTransport`):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use linq_hooks_delivery::transport::MemoryTransport;
    /// use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox};
    ///
    /// let outbox = Arc::new(MemoryOutbox::new(1));
    /// let dispatcher = Dispatcher::without_hooks(Arc::new(MemoryTransport::new()), outbox, Config::default());
    /// dispatcher.retry_now(0); // not set yet: nothing happens
    /// ```
    pub fn retry_now(&self, hook: HookId) {
        if let Some(slot) = self.inner.slot(hook) {
            slot.retry_now.store(true, Ordering::SeqCst);
            slot.reread.store(true, Ordering::SeqCst);
            slot.breaker.lock().expect("not poisoned").open_until = None;
            slot.wake.notify_one();
        }
    }

    /// Tells the worker of `hook` that deliveries were added at the end of its queue: a cheaper
    /// [`wake`](Dispatcher::wake) for whoever appends, as `serve`'s ingest does. Only a worker
    /// that may be waiting for deliveries is woken; one sending an earlier delivery, or waiting
    /// to retry one, reaches the new ones in order without being told, so that a burst of events
    /// does not make every hook waiting for a retry read its queue again for each of them. For
    /// any other change (a delivery replayed or made due, a hook enabled), call `wake`.
    ///
    /// Call it after the deliveries are visible in the outbox.
    ///
    /// This example needs the `memory` feature (for `MemoryTransport`):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use linq_hooks_delivery::transport::MemoryTransport;
    /// use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox};
    ///
    /// let outbox = Arc::new(MemoryOutbox::new(0));
    /// let transport = Arc::new(MemoryTransport::new());
    /// let dispatcher = Dispatcher::without_hooks(transport, outbox, Config::default());
    /// // After appending to hook 7's queue in a store that does not wake the dispatcher itself:
    /// dispatcher.appended(7); // a hook the dispatcher does not know: nothing happens
    /// ```
    pub fn appended(&self, hook: HookId) {
        if let Some(slot) = self.inner.slot(hook)
            && slot.idle.load(Ordering::SeqCst)
        {
            slot.wake.notify_one();
        }
    }

    /// Says that no more deliveries will be added: each worker stops once its hook has nothing
    /// left to send (or is disabled), and [`run`](Dispatcher::run) returns when all have.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        for slot in self.inner.hooks.lock().expect("not poisoned").values() {
            slot.wake.notify_one();
        }
        self.inner.added.notify_one();
    }

    /// Stops: no new attempt starts; attempts in flight finish. [`run`](Dispatcher::run)
    /// returns once they have. What is not delivered stays in the outbox.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// How the workers fare: how many were started again after a panic, and which hooks' workers
    /// wait to be (in back-off).
    pub fn health(&self) -> Health {
        // The count first: a restart marks its hook failing before it is counted, so a count
        // seen here comes with its hook.
        let worker_restarts = self.inner.restarts.load(Ordering::SeqCst);
        let (mut failing, mut outbox_failing, mut paused) = (Vec::new(), Vec::new(), Vec::new());
        for (hook, slot) in self.inner.hooks.lock().expect("not poisoned").iter() {
            if slot.failing.load(Ordering::SeqCst) {
                failing.push(*hook);
            }
            if let Some(error) = slot.outbox_error.lock().expect("not poisoned").clone() {
                outbox_failing.push((*hook, error));
            }
            if slot
                .breaker
                .lock()
                .expect("not poisoned")
                .open_until
                .is_some()
            {
                paused.push(*hook);
            }
        }
        failing.sort_unstable();
        outbox_failing.sort_unstable();
        paused.sort_unstable();
        Health {
            worker_restarts,
            failing,
            outbox_failing,
            paused,
        }
    }

    /// Runs one worker per hook (starting workers for hooks added meanwhile) until
    /// [`close`](Dispatcher::close)d and drained, or [`shutdown`](Dispatcher::shutdown).
    ///
    /// A worker that panics (a transport or outbox that panicked) is started again after a
    /// back-off (100 ms, doubling up to 30 s, from 100 ms again once a worker ran a minute);
    /// the delivery it was attempting is still pending, so it is attempted again. Each restart
    /// is logged (`tracing::error!`) and counted in [`health`](Dispatcher::health).
    ///
    /// # Runtime
    ///
    /// Call it inside a Tokio runtime with time enabled (`Builder::enable_time` or
    /// `enable_all`; `#[tokio::main]` and `#[tokio::test]` do), multi-thread or current-thread.
    /// Workers are spawned on the current runtime with `tokio::spawn`.
    ///
    /// # Panics
    ///
    /// At once, when the runtime has no time driver (retries could not wait).
    pub async fn run(&self) {
        let timers = std::panic::catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO)));
        assert!(timers.is_ok(), "{NO_TIMERS}");
        let mut workers = tokio::task::JoinSet::new();
        // Which hook (and slot) each worker serves.
        let mut serving = HashMap::new();
        loop {
            if !self.inner.shutdown.is_cancelled() {
                let waiting: Vec<(HookId, Arc<Slot>)> = {
                    let hooks = self.inner.hooks.lock().expect("not poisoned");
                    hooks
                        .iter()
                        .filter(|(_, slot)| !slot.started.swap(true, Ordering::SeqCst))
                        .map(|(hook, slot)| (*hook, Arc::clone(slot)))
                        .collect()
                };
                for (hook, slot) in waiting {
                    let id = self.spawn_worker(&mut workers, hook, &slot, None);
                    serving.insert(id, (hook, slot));
                }
            }
            if workers.is_empty()
                && (self.inner.closed.load(Ordering::SeqCst) || self.inner.shutdown.is_cancelled())
            {
                return;
            }
            tokio::select! {
                Some(result) = workers.join_next_with_id(), if !workers.is_empty() => {
                    let id = match &result {
                        Ok((id, ())) => *id,
                        Err(e) => e.id(),
                    };
                    let (hook, slot) = serving.remove(&id).expect("every worker is known");
                    if let Err(e) = result {
                        // A worker that panicked would leave its hook silent for good: another
                        // starts after a back-off (not at once: a worker that panics on every
                        // attempt would spin), unless the hook was removed meanwhile.
                        if !slot.removed.load(Ordering::SeqCst) && !self.inner.shutdown.is_cancelled() {
                            let delay = slot.restart_delay();
                            slot.failing.store(true, Ordering::SeqCst);
                            self.inner.restarts.fetch_add(1, Ordering::SeqCst);
                            tracing::error!(
                                hook = %HookName(hook),
                                restart_in_ms = millis(delay),
                                "a delivery worker panicked ({e}); starting it again"
                            );
                            let id = self.spawn_worker(&mut workers, hook, &slot, Some(delay));
                            serving.insert(id, (hook, slot));
                        }
                    }
                }
                () = self.inner.added.notified() => {}
                () = self.inner.shutdown.cancelled(), if workers.is_empty() => return,
            }
        }
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "hooks",
                &self.inner.hooks.lock().expect("not poisoned").len(),
            )
            .field("config", &self.inner.config)
            .field("closed", &self.inner.closed.load(Ordering::SeqCst))
            .field("shut_down", &self.inner.shutdown.is_cancelled())
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Spawns the worker of `hook`, after `delay` for a restart.
    fn spawn_worker(
        &self,
        workers: &mut tokio::task::JoinSet<()>,
        hook: HookId,
        slot: &Arc<Slot>,
        delay: Option<Duration>,
    ) -> tokio::task::Id {
        let inner = Arc::clone(&self.inner);
        let slot = Arc::clone(slot);
        workers
            .spawn(async move {
                if let Some(delay) = delay {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = inner.shutdown.cancelled() => return,
                    }
                }
                slot.started_now();
                inner.work(hook, &slot).await;
                // Outcomes written behind the sends are on record before the worker is done.
                if let Err(e) = inner.outbox.flush(hook).await {
                    tracing::warn!(
                        hook = %HookName(hook),
                        error = &e as &dyn std::error::Error,
                        "cannot record the last attempts; their deliveries will be sent again"
                    );
                }
            })
            .id()
    }
}

impl Inner {
    fn slot(&self, hook: HookId) -> Option<Arc<Slot>> {
        self.hooks.lock().expect("not poisoned").get(&hook).cloned()
    }

    async fn work(&self, hook: HookId, slot: &Slot) {
        // The wait after the outbox fails again; a success starts it over.
        let mut outbox_retry = OUTBOX_RETRY;
        // The retry this worker scheduled last, with its deadline on the monotonic clock.
        let mut scheduled: Option<Scheduled> = None;
        // Read ahead: the deliveries that follow the last one handled, not yet sent, and that
        // last one (delivered or given up), whose followers can be read without the head.
        let mut ahead = Ahead::default();
        loop {
            if self.shutdown.is_cancelled() || slot.removed.load(Ordering::SeqCst) {
                return;
            }
            if slot.retry_now.swap(false, Ordering::SeqCst) {
                // The outbox made the head due now: the monotonic deadline noted for it must
                // not hold it back.
                scheduled = None;
            }
            if slot.reread.swap(false, Ordering::SeqCst) {
                ahead.forget();
            }
            let head = match ahead.queue.pop_front() {
                Some(delivery) => Ok(Head::Ready(delivery)),
                None => {
                    // Idle until the queue has a delivery: set before reading it, so that a
                    // delivery appended after the read finds it set and wakes the worker
                    // (`appended`).
                    slot.idle.store(true, Ordering::SeqCst);
                    self.next(hook, &mut ahead).await
                }
            };
            let head = match head {
                Ok(head) => {
                    outbox_retry = OUTBOX_RETRY;
                    slot.outbox_error.lock().expect("not poisoned").take();
                    head
                }
                Err(e) => {
                    ahead.forget();
                    // One line per attempt: the back-off is what bounds the log.
                    tracing::warn!(
                        hook = %HookName(hook),
                        error = &e as &dyn std::error::Error,
                        retry_in_ms = millis(outbox_retry),
                        "cannot read the outbox; trying again"
                    );
                    // What failed inside the outbox: health says it cannot read its queue.
                    let text = std::error::Error::source(&e).map_or_else(|| e.to_string(), chain);
                    *slot.outbox_error.lock().expect("not poisoned") = Some(text);
                    // Not woken early by an ingest, which does not repair a store; only by
                    // the outbox itself (its `HookWaker`: it can be read again).
                    let backoff = tokio::time::sleep(outbox_retry);
                    tokio::pin!(backoff);
                    loop {
                        tokio::select! {
                            () = &mut backoff => break,
                            () = self.shutdown.cancelled() => break,
                            () = slot.wake.notified() => {
                                if slot.outbox_woke.swap(false, Ordering::SeqCst) {
                                    break;
                                }
                            }
                        }
                    }
                    outbox_retry = (outbox_retry * 2).min(OUTBOX_RETRY_MAX);
                    continue;
                }
            };
            let delivery = match head {
                Head::Ready(delivery) => {
                    slot.idle.store(false, Ordering::SeqCst);
                    delivery
                }
                Head::Empty | Head::Disabled => {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::select! {
                        () = slot.wake.notified() => {}
                        () = self.shutdown.cancelled() => return,
                    }
                    continue;
                }
            };
            if let Some(wait) = self.wait_for(&delivery, scheduled.as_ref()) {
                // Not due yet: sleep until it is, unless something changes first; then ask
                // for the head again.
                ahead.forget();
                self.sleep_or_wake(slot, wait).await;
                continue;
            }
            let paused = slot.breaker.lock().expect("not poisoned").wait();
            if let Some(wait) = paused {
                // The receiver kept timing out: wait out the cool-down, then this
                // delivery is the probe. Nothing is attempted (or counted) meanwhile.
                ahead.forget();
                self.sleep_or_wake(slot, wait).await;
                continue;
            }
            let destination = Arc::clone(&slot.destination.lock().expect("not poisoned"));
            let Some((attempt, verdict, kind)) =
                self.attempt_within_limits(&destination, &delivery).await
            else {
                return; // shut down while waiting for capacity
            };
            let moved = !Arc::ptr_eq(
                &destination,
                &slot.destination.lock().expect("not poisoned"),
            );
            // The old destination's result says nothing of the new one's receiver.
            let paused = if moved {
                None
            } else {
                slot.breaker
                    .lock()
                    .expect("not poisoned")
                    .note(kind, &self.config)
            };
            if let Some(pause) = paused {
                tracing::warn!(
                    hook = %HookName(hook),
                    delivery = delivery.id,
                    result = attempt.result.to_string().as_str(),
                    pause_ms = millis(pause),
                    "the receiver keeps timing out: the hook pauses, its deliveries kept"
                );
                self.outbox.paused(hook);
            }
            let now = self.config.clock.now();
            let mut outcome = self.decide(&delivery, verdict, &attempt, now);
            if moved && outcome != Outcome::Delivered {
                // The hook was pointed elsewhere while this attempt went to the old place: what
                // the old place answered says nothing of the new one. Try the new one now.
                outcome = Outcome::Retry { at: now };
            }
            scheduled = match outcome {
                Outcome::Retry { at } => Some(Scheduled {
                    delivery: delivery.id,
                    at,
                    deadline: tokio::time::Instant::now()
                        + at.duration_since(now).unwrap_or_default(),
                }),
                _ => None,
            };
            log_attempt(hook, &delivery, &attempt, &outcome);
            // Only after a delivered or given-up delivery does the queue go on behind it; a
            // retry or a disabled hook is the head's business.
            match outcome {
                Outcome::Delivered | Outcome::Failed { .. } => ahead.last = Some(delivery.id),
                Outcome::Retry { .. } | Outcome::HookGone => ahead.forget(),
            }
            self.record(&delivery, attempt, outcome).await;
        }
    }

    /// The next delivery of `hook`: read ahead from the last one handled when the outbox can,
    /// else its head.
    async fn next(&self, hook: HookId, ahead: &mut Ahead) -> Result<Head, OutboxError> {
        if let Some(last) = ahead.last {
            match self.outbox.after(hook, last, READ_AHEAD).await? {
                Some(deliveries) => {
                    ahead.queue = deliveries.into();
                    return Ok(match ahead.queue.pop_front() {
                        Some(delivery) => Head::Ready(delivery),
                        None => Head::Empty,
                    });
                }
                None => ahead.forget(),
            }
        }
        self.outbox.head(hook).await
    }

    /// How long `delivery` must still wait, if it is not due. For the retry this worker
    /// scheduled itself (the same delivery, the same stored due time), the monotonic deadline
    /// it noted then; for any other (after a restart, a replay, a due time set elsewhere), the
    /// wall-clock difference, the only measure a stored time has.
    fn wait_for(&self, delivery: &Delivery, scheduled: Option<&Scheduled>) -> Option<Duration> {
        let at = delivery.next_attempt_at?;
        let wait = match scheduled {
            // A store may keep due times in milliseconds: "the same" allows for the rounding.
            Some(scheduled)
                if scheduled.delivery == delivery.id
                    && abs_diff(scheduled.at, at) < Duration::from_millis(1) =>
            {
                scheduled
                    .deadline
                    .saturating_duration_since(tokio::time::Instant::now())
            }
            _ => at
                .duration_since(self.config.clock.now())
                .unwrap_or_default(),
        };
        (!wait.is_zero()).then_some(wait)
    }

    /// Makes one attempt once there is capacity for it: a place among the requests in flight to
    /// its origin, then one in the shared pool, given back for one in the slow lane once the
    /// request has been in flight for `slow_after`. `None` when shut down while waiting.
    async fn attempt_within_limits(
        &self,
        destination: &Destination,
        delivery: &Delivery,
    ) -> Option<(Attempt, Verdict, AttemptKind)> {
        let origin = self.origin(&destination.origin);
        let _origin = tokio::select! {
            permit = origin.acquire() => permit.expect("the semaphore is never closed"),
            () = self.shutdown.cancelled() => return None,
        };
        let fast = tokio::select! {
            permit = self.fast.acquire() => permit.expect("the semaphore is never closed"),
            () = self.shutdown.cancelled() => return None,
        };
        let mut fast = Some(fast);
        let send = self.attempt(destination, delivery);
        tokio::pin!(send);
        let result = tokio::select! {
            result = &mut send => result,
            () = tokio::time::sleep(self.config.slow_after) => {
                // Slow: make room for the requests of receivers that answer. With the slow
                // lane full, it keeps its place in the shared pool.
                let slow = self.slow.try_acquire().ok();
                if slow.is_some() {
                    fast = None;
                }
                let result = send.await;
                drop(slow);
                result
            }
        };
        drop(fast);
        Some(result)
    }

    /// The bound on requests in flight to `origin` ([`origin_of`] a URL), shared by every worker
    /// sending there.
    fn origin(&self, origin: &str) -> Arc<Semaphore> {
        let mut origins = self.origins.lock().expect("not poisoned");
        if let Some(semaphore) = origins.get(origin).and_then(Weak::upgrade) {
            return semaphore;
        }
        let semaphore = Arc::new(Semaphore::new(
            self.config.concurrency.clamp(1, Semaphore::MAX_PERMITS),
        ));
        origins.insert(origin.to_string(), Arc::downgrade(&semaphore));
        if origins.len() >= 64 && origins.len().is_power_of_two() {
            origins.retain(|_, semaphore| semaphore.strong_count() > 0);
        }
        semaphore
    }

    /// Makes one attempt: a fresh timestamp and signature over the fixed id and body.
    async fn attempt(
        &self,
        destination: &Destination,
        delivery: &Delivery,
    ) -> (Attempt, Verdict, AttemptKind) {
        let at = self.config.clock.now();
        let timestamp = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let parameters = destination.parameters();
        let mut request = Request::new(parameters.url(), delivery.body.clone())
            .with_headers(parameters.headers())
            .with_header(WEBHOOK_ID, delivery.webhook_id.as_str())
            .with_header(WEBHOOK_TIMESTAMP, timestamp.to_string());
        let secrets = destination.secrets_at(at);
        if !secrets.is_empty() {
            let timestamp = i64::try_from(timestamp).unwrap_or(i64::MAX);
            let signature = sign(&secrets, &delivery.webhook_id, timestamp, &delivery.body);
            request = request.with_header(WEBHOOK_SIGNATURE, signature);
        }
        let started = Instant::now();
        let result = self.transport.send(request).await;
        let latency = started.elapsed();
        let verdict = Verdict::of(&result);
        let kind = match &result {
            Ok(_) => AttemptKind::Answered,
            // A connection refused at once holds nothing (the retry schedule spaces those);
            // one that took longer than `slow_after` to fail held a socket all that time.
            Err(e) if e.is_timeout() || (e.is_connect() && latency >= self.config.slow_after) => {
                AttemptKind::Unreachable
            }
            Err(_) => AttemptKind::Other,
        };
        let attempt = match result {
            Ok(response) => {
                let attempt = Attempt::new(at, latency, AttemptResult::Status(response.status()))
                    .with_response_body(response.body(), response.is_body_truncated());
                match response.body_error() {
                    Some(e) => attempt.with_note(format!("the response body broke off: {e}")),
                    None => attempt,
                }
            }
            Err(error) => Attempt::new(at, latency, AttemptResult::Error(format!("{error:#}"))),
        };
        (attempt, verdict, kind)
    }

    fn decide(
        &self,
        delivery: &Delivery,
        verdict: Verdict,
        attempt: &Attempt,
        now: SystemTime,
    ) -> Outcome {
        match verdict {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Gone => Outcome::HookGone,
            Verdict::Fail { reason } => Outcome::Failed { reason },
            Verdict::Retry { retry_after } => {
                let attempts = delivery.attempts + 1;
                match self.config.policy.delay_after(attempts, retry_after) {
                    Some(delay) => Outcome::Retry { at: now + delay },
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
        let mut wait = OUTBOX_RETRY;
        while let Err(e) = self
            .outbox
            .record(delivery, attempt.clone(), outcome.clone())
            .await
        {
            tracing::warn!(
                hook = %HookName(delivery.hook),
                delivery = delivery.id,
                error = &e as &dyn std::error::Error,
                retry_in_ms = millis(wait),
                "cannot record an attempt; trying again"
            );
            if self.shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(OUTBOX_RETRY_MAX);
        }
    }

    async fn sleep_or_wake(&self, slot: &Slot, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = slot.wake.notified() => {}
            () = self.shutdown.cancelled() => {}
        }
    }
}

/// A hook as logs and the API spell it: `hook_` and its number (under `dispatch`, its index
/// in the hook file, from 0).
struct HookName(HookId);

impl fmt::Display for HookName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hook_{}", self.0)
    }
}

/// A duration in whole milliseconds, for log fields.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One `debug` line per attempt, in fields a reader (or a JSON log pipeline) takes as they are:
/// times in RFC 3339 (UTC, milliseconds), the latency in milliseconds to the microsecond, the
/// outcome as a word.
fn log_attempt(hook: HookId, delivery: &Delivery, attempt: &Attempt, outcome: &Outcome) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    // Microseconds over 1000: the shortest decimal that reads back the same (`0.035`, not
    // `0.034999999999999996`).
    let latency_ms = attempt.latency.as_micros() as f64 / 1000.0;
    let next_attempt_at = match outcome {
        Outcome::Retry { at } => Some(humantime::format_rfc3339_millis(*at)),
        _ => None,
    };
    let reason = match outcome {
        Outcome::Failed { reason } => Some(reason.as_str()),
        _ => None,
    };
    tracing::debug!(
        hook = %HookName(hook),
        delivery = delivery.id,
        webhook_id = %delivery.webhook_id,
        attempt = delivery.attempts.saturating_add(1),
        at = %humantime::format_rfc3339_millis(attempt.at),
        latency_ms,
        result = attempt.result.to_string().as_str(),
        outcome = outcome.as_str(),
        next_attempt_at = next_attempt_at.map(tracing::field::display),
        reason,
        "attempt"
    );
}

/// An error and its sources, `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The origin of a hook's URL, as `scheme://host:port` (the `url` crate's WHATWG parsing: lower
/// case, the default port filled in where the scheme has one), so that `https://A.example/x`
/// and `https://a.example:443/y` share their bound. A URL it cannot read is its own origin.
fn origin_of(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    // Names are case-insensitive; the `url` crate lowers them only for http(s) and a few more.
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    match parsed.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    }
}

fn abs_diff(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_name_scheme_host_and_port() {
        for (url, origin) in [
            ("https://A.example/hook?x=1", "https://a.example:443"),
            ("https://a.example:443/other", "https://a.example:443"),
            ("http://a.example", "http://a.example:80"),
            ("http://user:pw@a.example:8080/x", "http://a.example:8080"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
            ("http://[::1]/x", "http://[::1]:80"),
            ("http://[::1]:9000#f", "http://[::1]:9000"),
            ("mqtt://Broker.lab/lab/runs", "mqtt://broker.lab"),
            ("mqtt://broker.lab:1884/x", "mqtt://broker.lab:1884"),
        ] {
            assert_eq!(origin_of(url), origin, "{url}");
        }
    }
}
