//! Receive LINQ hook webhooks: check the Standard Webhooks signature and read the typed event,
//! in one call.
//!
//! For integrators on the receiving end. Hand [`receive`] the request's headers, its raw body
//! (exactly the bytes that arrived: the signature covers them) and a [`Verifier`] holding your
//! secrets; it checks the headers, the timestamp and the signature, then reads the body as an
//! [`Event`], and gives back a [`Webhook`]: the event and its `webhook-id`, to drop
//! duplicates (a retried delivery keeps its id).
//!
//! This crate does no IO and no async: use it from any server. It knows `http`'s types (a
//! small crate of types only), and needs none of them: [`WebhookHeaders::from_fn`] reads any
//! header map.
//!
//! ```
//! use linq_hooks_receiver::{Event, Secret, Verifier, WebhookHeaders, receive_at};
//! # use linq_hooks_signature::sign;
//!
//! let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
//! let verifier = Verifier::new([secret.clone()]);
//! # let body = br#"{"event":"new_plan","plan_id":"p1","timestamp":"2025-04-17T09:30:00.000Z"}"#;
//! # let signature = sign(&[secret], "msg_1", 1_744_882_200, body);
//! // The request as it arrived (any header map will do):
//! let request_headers = [
//!     ("Webhook-Id", "msg_1"),
//!     ("Webhook-Timestamp", "1744882200"),
//!     ("Webhook-Signature", signature.as_str()),
//! ];
//! let headers = WebhookHeaders::from_fn(|name| {
//!     request_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
//! });
//!
//! // `receive` checks against the system clock; `receive_at` takes "now" (unix seconds).
//! let webhook = receive_at(&verifier, headers, body, 1_744_882_230)?;
//! assert_eq!(webhook.id, "msg_1");
//! let Event::NewPlan(plan) = &webhook.event else { unreachable!() };
//! assert_eq!(plan.plan_id, "p1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With `http`'s types (hyper, axum, and most Rust servers), [`headers_from_map`] reads the
//! headers of an `http::HeaderMap`, and [`Error::status`] is the status to answer.
//!
//! Everything a receiver names is here, so it depends on this crate alone: the event types
//! ([`NewPlan`], [`RunStateChange`] and the others, their states, [`Timestamp`]) at the root,
//! and the whole events crate as [`events`].
//!
//! # What to answer
//!
//! | result | answer |
//! | --- | --- |
//! | `Ok(webhook)` already seen (same [`Webhook::id`]) | 2xx, and do nothing: it is a retry |
//! | `Ok(webhook)` | 2xx once it is handled (or queued) |
//! | [`is_unverified`](Error::is_unverified) | 401: not from the sender, or replayed too late |
//! | [`is_unknown_event`](Error::is_unknown_event) | 2xx and ignore it: a newer sender's kind of event |
//! | [`is_malformed_body`](Error::is_malformed_body) | 400 |
//!
//! [`Error::status`] gives that answer for each error kind (204 for an unknown event).
//!
//! # What the sender does with the answer
//!
//! Each attempt of a delivery is signed afresh (a new `webhook-timestamp` and signature) and
//! keeps the delivery's `webhook-id`. The answer decides what comes next:
//!
//! | answer | the sender |
//! | --- | --- |
//! | any 2xx | counts the delivery as delivered |
//! | a connection or TLS error, a timeout, a response cut short, 408, 429, any 5xx | tries again later; a `Retry-After` is honoured as a minimum wait (up to 24 h) |
//! | 410 Gone | disables the hook until its owner enables it again |
//! | any other status, 3xx included (redirects are not followed) | records the delivery as failed at once |
//!
//! `linq-hooks serve` tries again after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (each
//! ±20 %): eight attempts over about 28 hours, then it gives up. `linq-hooks dispatch`
//! tries again after 1 s, 5 s and 30 s. Both schedules can be changed by the operator.
//!
//! # Dropping duplicates
//!
//! A retry arrives with the same `webhook-id`, and a delivery the receiver handled but whose
//! answer was lost *will* be retried. The five-minute timestamp tolerance
//! ([`DEFAULT_TOLERANCE`]) does not bound that: every retry is freshly signed, so it passes the
//! check hours after the first attempt. Keep the ids seen for longer than the whole schedule,
//! **48 hours** for `serve`'s default, and answer 2xx to an id already handled.
//!
//! Some resends come later than any schedule, and keep their id too: a delivery replayed by an
//! operator after it failed, the deliveries held while a hook was disabled by a 410 and then
//! enabled again, and retries stretched by large `Retry-After` answers (each is honoured up to
//! 24 h). A receiver whose handling is not idempotent should keep ids longer than it expects
//! such a resend, or make the handling itself idempotent (the id as a unique key).
//!
//! The example `examples/receiver.rs` of this crate is a complete receiver on hyper:
//! `LINQ_HOOKS_SECRET=whsec_... cargo run -p linq-hooks-receiver --example receiver`.
#![forbid(unsafe_code)]

mod error;

use http::HeaderMap;
use serde_json::Value;

pub use error::Error;
/// The `http` crate this one uses, for [`headers_from_map`] and [`Error::status`].
pub use http;
pub use http::StatusCode;
/// The event types, whole: every body, state and error of the events crate.
pub use linq_hooks_events as events;
pub use linq_hooks_events::{
    Event, EventKind, LabwareMovement, Location, NewPlan, Phase, RunState, RunStateChange,
    SafetyState, SafetyStateChange, TaskState, TaskStateChange, Timestamp,
};
pub use linq_hooks_signature::{
    DEFAULT_TOLERANCE, Secret, Verifier, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
    WebhookHeaders,
};

/// A verified webhook: its id, when it was signed, and the event it carries.
///
/// ```
/// # use linq_hooks_receiver::{Secret, Verifier, WebhookHeaders, receive_at};
/// # let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
/// # let body = br#"{"event":"run_state_change","run_id":"r1","state":"paused","timestamp":"2025-04-17T09:30:00Z"}"#;
/// # let signature = linq_hooks_signature::sign(&[secret.clone()], "msg_9", 1_744_882_200, body);
/// # let headers = WebhookHeaders::new("msg_9", "1744882200", &signature);
/// let webhook = receive_at(&Verifier::new([secret]), headers, body, 1_744_882_200)?;
/// assert_eq!((webhook.id.as_str(), webhook.timestamp), ("msg_9", 1_744_882_200));
/// assert_eq!(webhook.event.message(), "The run is paused.");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Webhook {
    /// The `webhook-id` header: the same for every attempt of one delivery, so a receiver
    /// that has seen it before is looking at a retry.
    pub id: String,
    /// The `webhook-timestamp` header: when this attempt was signed, in unix seconds.
    pub timestamp: i64,
    /// The event, read from the body.
    pub event: Event,
}

impl Webhook {
    /// A webhook as [`receive`] would give it, for tests of the code that handles webhooks:
    /// nothing is verified.
    ///
    /// ```
    /// use linq_hooks_receiver::{Event, Webhook, parse_body};
    ///
    /// let event = parse_body(br#"{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
    /// let webhook = Webhook::new("msg_1", 1_744_882_200, event);
    /// let Event::NewPlan(plan) = &webhook.event else { unreachable!() };
    /// assert_eq!(plan.message, "The scheduler made a new plan, p1.");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(id: impl Into<String>, timestamp: i64, event: Event) -> Webhook {
        Webhook {
            id: id.into(),
            timestamp,
            event,
        }
    }
}

/// Verifies a webhook against the system clock and reads its event.
///
/// The same as [`receive_at`] with the current time; see there for the order of the checks.
///
/// ```no_run
/// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive};
///
/// # let (id, timestamp, signature, body) = ("", "", "", b"");
/// let verifier = Verifier::new([std::env::var("LINQ_HOOKS_SECRET")?.parse()?]);
/// let webhook = receive(&verifier, WebhookHeaders::new(id, timestamp, signature), body)?;
/// println!("{}: {}", webhook.id, webhook.event.message());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn receive(
    verifier: &Verifier,
    headers: WebhookHeaders<'_>,
    body: &[u8],
) -> Result<Webhook, Error> {
    verifier.verify(headers, body).map_err(Error::unverified)?;
    verified(headers, body)
}

/// Verifies a webhook as if the time were `now` (unix seconds) and reads its event.
///
/// First the signature (every header present, the timestamp an integer within the verifier's
/// tolerance of `now`, a signature matching one of its secrets), then the body: nothing of an
/// unverified body is read. The first check that fails is the error.
///
/// ```
/// use linq_hooks_receiver::{Secret, Verifier, WebhookHeaders, receive_at};
///
/// // The Standard Webhooks test vector: a valid signature over a body that is no event.
/// let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
/// let headers = WebhookHeaders::new(
///     "msg_p5jXN8AQM9LWM0D4loKWxJek",
///     "1614265330",
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
/// );
/// let body = br#"{"test": 2432232314}"#;
/// let verifier = Verifier::new([secret]);
///
/// assert!(receive_at(&verifier, headers, body, 1614265330).unwrap_err().is_malformed_body());
/// assert!(receive_at(&verifier, headers, body, 1614265330 + 301).unwrap_err().is_stale_timestamp());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn receive_at(
    verifier: &Verifier,
    headers: WebhookHeaders<'_>,
    body: &[u8],
    now: i64,
) -> Result<Webhook, Error> {
    verifier
        .verify_at(headers, body, now)
        .map_err(Error::unverified)?;
    verified(headers, body)
}

/// The webhook of headers and a body whose signature has been verified.
fn verified(headers: WebhookHeaders<'_>, body: &[u8]) -> Result<Webhook, Error> {
    let (Some(id), Some(timestamp)) = (headers.id, headers.timestamp) else {
        unreachable!("a verified webhook has every header");
    };
    let timestamp = timestamp
        .parse()
        .expect("a verified webhook's timestamp is an integer");
    Ok(Webhook {
        id: id.to_string(),
        timestamp,
        event: parse_body(body)?,
    })
}

/// Reads a webhook body as an [`Event`], *without* checking any signature.
///
/// For receivers that verify elsewhere (a gateway in front of them), and for tools that show
/// what arrived. The errors are those of [`receive`] for the body: an `event` this version does
/// not know is [`is_unknown_event`](Error::is_unknown_event); anything else that is not an
/// event (not JSON, not an object, no `event`, a field of the wrong type) is
/// [`is_malformed_body`](Error::is_malformed_body).
///
/// ```
/// use linq_hooks_receiver::parse_body;
///
/// let event = parse_body(br#"{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
/// assert_eq!(event.kind().name(), "new_plan");
///
/// let err = parse_body(br#"{"event": "run_exploded"}"#).unwrap_err();
/// assert_eq!(err.unknown_event(), Some("run_exploded"));
/// assert!(parse_body(b"{").unwrap_err().is_malformed_body());
/// assert!(parse_body(br#"{"event": "new_plan"}"#).unwrap_err().is_malformed_body());
/// # Ok::<(), linq_hooks_receiver::Error>(())
/// ```
pub fn parse_body(body: &[u8]) -> Result<Event, Error> {
    let value: Value = serde_json::from_slice(body).map_err(Error::not_json)?;
    linq_hooks_events::parse_event_value(&value).map_err(|source| {
        match value.get("event").and_then(Value::as_str) {
            Some(name) if EventKind::from_name(name).is_none() => {
                Error::unknown(name.to_string(), source)
            }
            _ => Error::not_an_event(source),
        }
    })
}

/// The three webhook headers from (name, value) pairs, names compared case-insensitively; the
/// first value of a repeated header is the one taken.
///
/// For header maps that iterate as pairs. For an `http::HeaderMap` use [`headers_from_map`];
/// a map with its own case-insensitive lookup can use [`WebhookHeaders::from_fn`].
///
/// ```
/// use linq_hooks_receiver::headers_from_pairs;
///
/// let pairs = vec![
///     ("Content-Type".to_string(), "application/json".to_string()),
///     ("Webhook-ID".to_string(), "msg_1".to_string()),
///     ("webhook-id".to_string(), "msg_2".to_string()),
/// ];
/// let headers = headers_from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
/// assert_eq!(headers.id, Some("msg_1"));
/// assert_eq!(headers.signature, None);
/// ```
pub fn headers_from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> WebhookHeaders<'a> {
    let mut headers = WebhookHeaders::default();
    for (name, value) in pairs {
        let slot = if name.eq_ignore_ascii_case(WEBHOOK_ID) {
            &mut headers.id
        } else if name.eq_ignore_ascii_case(WEBHOOK_TIMESTAMP) {
            &mut headers.timestamp
        } else if name.eq_ignore_ascii_case(WEBHOOK_SIGNATURE) {
            &mut headers.signature
        } else {
            continue;
        };
        slot.get_or_insert(value);
    }
    headers
}

/// The three webhook headers of an `http::HeaderMap` (hyper's, axum's); the first value of a
/// repeated header is the one taken.
///
/// A header that is present but not visible ASCII stays present, and verifying refuses it as
/// an invalid header ([`Error::is_invalid_header`]), not a missing one.
///
/// ```
/// use linq_hooks_receiver::http::{HeaderMap, HeaderValue};
/// use linq_hooks_receiver::{Verifier, headers_from_map, receive_at};
///
/// let mut map = HeaderMap::new();
/// map.insert("Webhook-Id", HeaderValue::from_static("msg_1"));
/// map.insert("webhook-timestamp", HeaderValue::from_bytes(b"17\xe9")?);
/// map.insert("webhook-signature", HeaderValue::from_static("v1,x"));
/// let headers = headers_from_map(&map);
/// assert_eq!(headers.id, Some("msg_1"));
///
/// let err = receive_at(&Verifier::new([]), headers, b"{}", 0).unwrap_err();
/// assert!(err.is_invalid_header() && !err.is_missing_header());
/// assert_eq!(err.header(), Some("webhook-timestamp"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn headers_from_map(map: &HeaderMap) -> WebhookHeaders<'_> {
    WebhookHeaders::from_bytes_fn(|name| map.get(name).map(http::HeaderValue::as_bytes))
}
