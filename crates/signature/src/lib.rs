//! [Standard Webhooks](https://www.standardwebhooks.com/) signatures for LINQ hook deliveries.
//!
//! Every delivery carries three headers: [`WEBHOOK_ID`] (a unique message id, the same for every
//! attempt of one delivery), [`WEBHOOK_TIMESTAMP`] (unix seconds) and [`WEBHOOK_SIGNATURE`]
//! (`v1,` followed by the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, once per secret).
//!
//! The sender calls [`sign`]; a receiver checks a delivery with a [`Verifier`]. This crate does
//! no IO and knows nothing of HTTP clients or async; the only thing it asks of the operating
//! system is the clock for [`Verifier::verify`], and, for a sender, randomness.
//!
//! # Features
//!
//! - `sender` (off by default): what only a sender needs, `new_message_id` (a random UUID)
//!   and `Secret::generate` (the operating system's random source). A receiver leaves it off
//!   and builds neither `uuid` nor `getrandom`.
//!
//! ```
//! use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, sign};
//!
//! let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
//! let (id, timestamp, body) = ("msg_1", 1_700_000_000, br#"{"run": 7}"#);
//! let signature = sign(&[secret.clone()], id, timestamp, body);
//!
//! // On the receiving side, with the header values as they arrived:
//! let headers = WebhookHeaders::new(id, "1700000000", &signature);
//! Verifier::new([secret]).verify_at(headers, body, 1_700_000_042)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Secret rotation
//!
//! While a secret is being replaced, sign with both: the header then holds two signatures, and a
//! receiver that knows either secret accepts the delivery.
//!
//! ```
//! use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, sign};
//!
//! let old: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
//! let new: Secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse()?;
//! let signature = sign(&[old.clone(), new.clone()], "msg_1", 1_700_000_000, b"{}");
//! assert_eq!(signature.split(' ').count(), 2);
//!
//! let headers = WebhookHeaders::new("msg_1", "1700000000", &signature);
//! Verifier::new([new]).verify_at(headers, b"{}", 1_700_000_000)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod secret;
mod verify;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub use secret::{ParseSecretError, Secret};
pub use verify::{DEFAULT_TOLERANCE, Error, Verifier, WebhookHeaders};

/// The name of the header that carries the message id (`webhook-id`).
///
/// ```
/// assert_eq!(linq_hooks_signature::WEBHOOK_ID, "webhook-id");
/// ```
pub const WEBHOOK_ID: &str = "webhook-id";

/// The name of the header that carries the signing time in unix seconds (`webhook-timestamp`).
///
/// ```
/// assert_eq!(linq_hooks_signature::WEBHOOK_TIMESTAMP, "webhook-timestamp");
/// ```
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";

/// The name of the header that carries the signatures (`webhook-signature`).
///
/// ```
/// assert_eq!(linq_hooks_signature::WEBHOOK_SIGNATURE, "webhook-signature");
/// ```
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The only signature scheme of the specification: HMAC-SHA256, base64.
const VERSION_PREFIX: &str = "v1,";

/// The value of the [`WEBHOOK_SIGNATURE`] header: `v1,<base64 HMAC-SHA256>` for each secret, in
/// order, separated by single spaces.
///
/// The signed content is `{msg_id}.{timestamp}.{body}`. With no secret the value is empty.
///
/// ```
/// use linq_hooks_signature::{Secret, sign};
///
/// let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
/// assert_eq!(
///     sign(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
/// );
/// # Ok::<(), linq_hooks_signature::ParseSecretError>(())
/// ```
pub fn sign(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut value = String::with_capacity(secrets.len() * 48);
    for secret in secrets {
        if !value.is_empty() {
            value.push(' ');
        }
        value.push_str(VERSION_PREFIX);
        STANDARD.encode_string(secret.tag(msg_id, timestamp, body), &mut value);
    }
    value
}

/// A fresh message id for the [`WEBHOOK_ID`] header: `msg_` followed by 32 hex digits of a
/// random (version 4) UUID.
///
/// Make one per delivery and keep it for every retry of that delivery: receivers use it to
/// drop duplicates. Needs the `sender` feature.
///
/// ```
/// let id = linq_hooks_signature::new_message_id();
/// assert!(id.starts_with("msg_"));
/// assert_eq!(id.len(), 4 + 32);
/// assert_ne!(id, linq_hooks_signature::new_message_id());
/// ```
#[cfg(feature = "sender")]
pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}
