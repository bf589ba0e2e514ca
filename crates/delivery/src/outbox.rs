//! Where deliveries wait: the contract between the dispatcher and its store.

use std::fmt;
use std::time::{Duration, SystemTime};

use linq_hooks_events::Event;
use linq_hooks_filter::Matcher;
use linq_hooks_transport::Bytes;

use crate::dispatcher::HookWaker;

/// An outbox-assigned delivery number; later deliveries have larger ones.
pub type DeliveryId = u64;

/// A hook's number: its index in a fixed hook list ([`Dispatcher::new`]), or the id a store
/// gave it ([`Dispatcher::without_hooks`]). A hook keeps its number for life; numbers are never
/// reused for another hook.
///
/// [`Dispatcher::new`]: crate::Dispatcher::new
/// [`Dispatcher::without_hooks`]: crate::Dispatcher::without_hooks
pub type HookId = u64;

/// One event body on its way to one hook.
///
/// ```
/// # use linq_hooks_delivery::Delivery;
/// let delivery = Delivery {
///     id: 1,
///     hook: 0,
///     webhook_id: "msg_1".into(),
///     body: r#"{"event":"new_plan"}"#.into(),
///     attempts: 0,
///     next_attempt_at: None,
/// };
/// assert!(delivery.is_due(std::time::SystemTime::now()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its number in the outbox.
    pub id: DeliveryId,
    /// Its hook.
    pub hook: HookId,
    /// The `webhook-id` header: the same on every attempt, so receivers can drop duplicates.
    pub webhook_id: String,
    /// The request body: the event's JSON, fixed before the first attempt.
    pub body: Bytes,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not before this time (a retry's due time); `None` for as soon as possible.
    pub next_attempt_at: Option<SystemTime>,
}

impl Delivery {
    /// Whether the delivery may be attempted at `now`.
    pub fn is_due(&self, now: SystemTime) -> bool {
        self.next_attempt_at.is_none_or(|at| at <= now)
    }
}

/// A delivery to be added to an outbox.
///
/// ```
/// use linq_hooks_delivery::NewDelivery;
/// # let hooks = linq_hooks_delivery::model::parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}},
/// #   {"filter": "on_run_state_change", "parameters": {"url": "https://b.example"}}]"#).unwrap().hooks;
/// let matcher = linq_hooks_delivery::Matcher::new(&hooks);
/// let event = linq_hooks_delivery::events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
/// let new = NewDelivery::for_event(&matcher, &event);
/// assert_eq!(new.len(), 1);
/// assert_eq!(new[0].hook, 0);
/// assert!(new[0].webhook_id.starts_with("msg_"));
/// # Ok::<(), linq_hooks_delivery::events::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    /// Its hook.
    pub hook: HookId,
    /// Its `webhook-id`, made once here and kept for every attempt.
    pub webhook_id: String,
    /// The body to post.
    pub body: Bytes,
}

impl NewDelivery {
    /// One delivery per hook that fires for `event`, in hook order, all sharing the event's
    /// JSON body, each with a fresh `webhook-id`.
    pub fn for_event(matcher: &Matcher, event: &Event) -> Vec<NewDelivery> {
        NewDelivery::for_hooks(
            event,
            matcher.matching(event).into_iter().map(|i| i as HookId),
        )
    }

    /// One delivery for each of `hooks` (the hooks that fire for `event`, found by the caller),
    /// all sharing the event's JSON body, each with a fresh `webhook-id`.
    ///
    /// ```
    /// use linq_hooks_delivery::NewDelivery;
    /// let event = linq_hooks_delivery::events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
    /// let new = NewDelivery::for_hooks(&event, [7, 9]);
    /// assert_eq!((new[0].hook, new[1].hook), (7, 9));
    /// assert_eq!(new[0].body, new[1].body);
    /// # Ok::<(), linq_hooks_delivery::events::Error>(())
    /// ```
    pub fn for_hooks(event: &Event, hooks: impl IntoIterator<Item = HookId>) -> Vec<NewDelivery> {
        let mut hooks = hooks.into_iter().peekable();
        if hooks.peek().is_none() {
            return Vec::new();
        }
        let body = Bytes::from(event.to_json_bytes());
        hooks
            .map(|hook| NewDelivery {
                hook,
                webhook_id: linq_hooks_signature::new_message_id(),
                body: body.clone(),
            })
            .collect()
    }
}

/// What an outbox says about a hook's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// The oldest delivery not yet delivered or given up.
    Ready(Delivery),
    /// Nothing waits for this hook.
    Empty,
    /// The hook is disabled (it answered 410 Gone); its deliveries wait until it is enabled.
    Disabled,
}

/// One attempt, for the record.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use linq_hooks_delivery::{Attempt, AttemptResult};
///
/// let attempt = Attempt::new(SystemTime::now(), Duration::from_millis(3), AttemptResult::Status(200))
///     .with_note("the body broke off: connection closed");
/// assert_eq!(attempt.note.as_deref(), Some("the body broke off: connection closed"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// When it started.
    pub at: SystemTime,
    /// How long it took, to the answer or the error.
    pub latency: Duration,
    /// What came back.
    pub result: AttemptResult,
    /// Something worth keeping that did not decide the outcome: a response body that broke off
    /// after its status arrived.
    pub note: Option<String>,
    /// The start of the receiver's answer, as text: at most [`RESPONSE_BODY_KEPT`] bytes of
    /// it, read as UTF-8 with invalid sequences replaced (U+FFFD), never cut inside a
    /// character. `None` when no answer came or it had no body.
    pub response_body: Option<String>,
    /// Whether the answer's body was longer than what `response_body` keeps.
    pub response_body_truncated: bool,
}

/// How much of a response body an [`Attempt`] keeps: 1 KiB, enough for a receiver's reason
/// (a 401's "signature mismatch", a 400's validation message) without storing pages of HTML.
pub const RESPONSE_BODY_KEPT: usize = 1024;

impl Attempt {
    /// An attempt started `at`, that took `latency` and brought back `result`.
    pub fn new(at: SystemTime, latency: Duration, result: AttemptResult) -> Attempt {
        Attempt {
            at,
            latency,
            result,
            note: None,
            response_body: None,
            response_body_truncated: false,
        }
    }

    /// Keeps the start of the receiver's answer: at most [`RESPONSE_BODY_KEPT`] bytes of
    /// `body`, as lossy UTF-8 text cut at a character boundary; `truncated` also when the
    /// transport itself cut the body (`Response::is_body_truncated`). An empty body keeps
    /// nothing.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use linq_hooks_delivery::{Attempt, AttemptResult, RESPONSE_BODY_KEPT};
    ///
    /// let at = SystemTime::now();
    /// let short = Attempt::new(at, Duration::ZERO, AttemptResult::Status(401))
    ///     .with_response_body(b"signature mismatch", false);
    /// assert_eq!(short.response_body.as_deref(), Some("signature mismatch"));
    /// assert!(!short.response_body_truncated);
    ///
    /// let long = Attempt::new(at, Duration::ZERO, AttemptResult::Status(500))
    ///     .with_response_body("é".repeat(1000).as_bytes(), false); // 2 000 bytes
    /// assert_eq!(long.response_body.as_deref().unwrap().len(), RESPONSE_BODY_KEPT);
    /// assert!(long.response_body_truncated);
    /// ```
    pub fn with_response_body(mut self, body: &[u8], truncated: bool) -> Attempt {
        if body.is_empty() {
            return self;
        }
        let mut kept = &body[..body.len().min(RESPONSE_BODY_KEPT)];
        let cut = kept.len() < body.len();
        if cut {
            // Not inside a character: drop the incomplete sequence the cut left at the end.
            if let Err(e) = std::str::from_utf8(kept)
                && e.error_len().is_none()
            {
                kept = &kept[..e.valid_up_to()];
            }
        }
        self.response_body = Some(String::from_utf8_lossy(kept).into_owned());
        self.response_body_truncated = cut || truncated;
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Attempt {
        self.note = Some(note.into());
        self
    }
}

/// What an attempt brought back.
///
/// ```
/// use linq_hooks_delivery::AttemptResult;
/// assert_eq!(AttemptResult::Status(503).to_string(), "status 503");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// An HTTP status.
    Status(u16),
    /// A transport error, described.
    Error(String),
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptResult::Status(status) => write!(f, "status {status}"),
            AttemptResult::Error(error) => f.write_str(error),
        }
    }
}

/// What becomes of a delivery after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: done.
    Delivered,
    /// Try again, not before this time.
    Retry {
        /// The due time of the next attempt.
        at: SystemTime,
    },
    /// Given up; the delivery stays on record (a service can replay it).
    Failed {
        /// Why.
        reason: String,
    },
    /// The receiver answered 410 Gone: disable the hook. The delivery stays pending, and so do
    /// the hook's other deliveries, until the hook is enabled again.
    HookGone,
}

impl Outcome {
    /// The outcome as one word, as logs and metrics label it: `delivered`, `retry`, `failed` or
    /// `gone`.
    ///
    /// ```
    /// use linq_hooks_delivery::Outcome;
    /// assert_eq!(Outcome::HookGone.as_str(), "gone");
    /// assert_eq!(Outcome::Failed { reason: "status 400".into() }.as_str(), "failed");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
            Outcome::HookGone => "gone",
        }
    }
}

/// An outbox's failure (a full disk, a broken store).
///
/// ```
/// let err = linq_hooks_delivery::OutboxError::new("disk full");
/// assert_eq!(err.to_string(), "the outbox failed");
/// assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "disk full");
/// ```
#[derive(Debug)]
pub struct OutboxError {
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl OutboxError {
    /// Wraps the store's own error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> OutboxError {
        OutboxError {
            source: source.into(),
        }
    }
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Its own level only; the store's error is the source (the one error rule).
        f.write_str("the outbox failed")
    }
}

impl std::error::Error for OutboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Where deliveries wait, hook by hook, in order. The dispatcher asks it for each hook's oldest
/// delivery and tells it how each attempt went; it never adds deliveries itself.
///
/// [`MemoryOutbox`](crate::MemoryOutbox) keeps them in memory (for `linq-hooks dispatch`); a
/// durable outbox keeps them in a store. A store shared by several dispatchers can be added
/// behind this trait without touching the delivery logic.
///
/// ```
/// use linq_hooks_delivery::{Attempt, Delivery, Head, HookId, Outbox, OutboxError, Outcome, async_trait};
///
/// /// An outbox that never has anything.
/// struct Nothing;
///
/// #[async_trait]
/// impl Outbox for Nothing {
///     async fn head(&self, _hook: HookId) -> Result<Head, OutboxError> {
///         Ok(Head::Empty)
///     }
///     async fn record(&self, _: &Delivery, _: Attempt, _: Outcome) -> Result<(), OutboxError> {
///         Ok(())
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Outbox: Send + Sync {
    /// The state of `hook`'s queue: its oldest delivery not yet delivered or given up, if any.
    async fn head(&self, hook: HookId) -> Result<Head, OutboxError>;

    /// Whether this outbox keeps deliveries for `hook`. [`Dispatcher::new`] refuses a hook
    /// list with a hook the outbox does not accept (a [`MemoryOutbox`] made for fewer hooks).
    /// The default accepts every hook, as a store does.
    ///
    /// [`Dispatcher::new`]: crate::Dispatcher::new
    /// [`MemoryOutbox`]: crate::MemoryOutbox
    fn accepts(&self, hook: HookId) -> bool {
        let _ = hook;
        true
    }

    /// Called once by each dispatcher built on this outbox, with the handle that wakes its
    /// workers. An outbox that adds deliveries itself keeps it and calls
    /// [`HookWaker::wake`] after each, so that the new work cannot wait unnoticed;
    /// [`MemoryOutbox::push`](crate::MemoryOutbox::push) does. The default ignores it: whoever
    /// adds deliveries calls [`Dispatcher::wake`](crate::Dispatcher::wake).
    fn subscribe(&self, waker: HookWaker) {
        let _ = waker;
    }

    /// Told when `hook`'s circuit breaker opens: its receiver kept timing out, and its worker
    /// pauses (its deliveries kept; see [`Config::breaker_after`]). Called after the attempt
    /// that opened it is decided, before that attempt is [`record`](Outbox::record)ed. The
    /// default ignores it; `serve` remembers it, to report the hook's recovery.
    ///
    /// [`Config::breaker_after`]: crate::Config::breaker_after
    fn paused(&self, hook: HookId) {
        let _ = hook;
    }

    /// The deliveries that follow delivery `after` in `hook`'s queue, oldest first, at most
    /// `limit` of them (`Some(vec![])` when none follows yet): what the hook's worker sends one
    /// after another without asking for the [`head`](Outbox::head) each time.
    ///
    /// The dispatcher asks only when `after` was the head, its attempt was
    /// [`record`](Outbox::record)ed as delivered or failed, and nothing was said to change the
    /// queue since ([`Dispatcher::wake`] and [`Dispatcher::retry_now`] end a read-ahead); so
    /// what follows `after` is what follows the head, unless a delivery came to the queue
    /// *before* `after` meanwhile (an outbox whose ids are taken before its writes are
    /// visible, as PostgreSQL's sequences are, can show one there). It checks each delivery as
    /// it checks a head (is it due?) and asks for the head again after any other outcome.
    ///
    /// `Ok(None)` means "ask [`head`](Outbox::head)": the default, for an outbox that does not
    /// read ahead, and the answer when what follows needs the head's care (a hook disabled, a
    /// record to set aside, a pending delivery at or before `after`: never hand out what
    /// follows it first). A durable outbox reads ahead so that a hook is not held up by a
    /// read of its store for every delivery.
    ///
    /// [`Dispatcher::wake`]: crate::Dispatcher::wake
    /// [`Dispatcher::retry_now`]: crate::Dispatcher::retry_now
    async fn after(
        &self,
        hook: HookId,
        after: DeliveryId,
        limit: usize,
    ) -> Result<Option<Vec<Delivery>>, OutboxError> {
        let _ = (hook, after, limit);
        Ok(None)
    }

    /// Records an attempt at `delivery` (the value `head` or `after` returned) and its outcome.
    ///
    /// It may return before the outcome is stored for good (written behind the sends, so that
    /// a hook's next delivery does not wait for a commit), as long as [`head`](Outbox::head)
    /// reflects it and [`flush`](Outbox::flush) waits for it. A crash may then lose the last
    /// outcomes recorded: their deliveries are sent again, with the same `webhook-id`, which
    /// the at-least-once contract allows. An error returned later, by `head` or `flush`,
    /// must not forget the outcome: the outbox keeps it and tries again.
    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError>;

    /// Waits until every outcome [`record`](Outbox::record)ed for `hook` is stored. The
    /// dispatcher calls it when a hook's worker stops (a shutdown, the hook removed), so that
    /// after a clean shutdown every attempt is on record. The default returns at once, for an
    /// outbox whose `record` stores before it returns.
    async fn flush(&self, hook: HookId) -> Result<(), OutboxError> {
        let _ = hook;
        Ok(())
    }
}
