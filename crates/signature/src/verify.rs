//! Checking a delivery as a receiver.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use crate::{Secret, VERSION_PREFIX, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};

/// How far a timestamp may be from the receiver's clock, either way: five minutes, as the
/// specification recommends.
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(linq_hooks_signature::DEFAULT_TOLERANCE, Duration::from_secs(300));
/// ```
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The three header values of a delivery, as they arrived (`None` when a header is absent).
///
/// Build it with [`new`](WebhookHeaders::new) when all three are at hand, with
/// [`from_fn`](WebhookHeaders::from_fn) from any header map, or field by field.
///
/// ```
/// use linq_hooks_signature::WebhookHeaders;
///
/// let headers = WebhookHeaders {
///     id: Some("msg_1"),
///     timestamp: Some("1700000000"),
///     signature: None,
/// };
/// let all = WebhookHeaders::new("msg_1", "1700000000", "v1,abc=");
/// assert_eq!(headers, WebhookHeaders { signature: None, ..all });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookHeaders<'a> {
    /// The `webhook-id` header.
    pub id: Option<&'a str>,
    /// The `webhook-timestamp` header.
    pub timestamp: Option<&'a str>,
    /// The `webhook-signature` header.
    pub signature: Option<&'a str>,
}

impl<'a> WebhookHeaders<'a> {
    /// All three headers present.
    ///
    /// ```
    /// use linq_hooks_signature::WebhookHeaders;
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1700000000", "v1,abc=");
    /// assert_eq!(headers.timestamp, Some("1700000000"));
    /// ```
    pub fn new(id: &'a str, timestamp: &'a str, signature: &'a str) -> Self {
        WebhookHeaders {
            id: Some(id),
            timestamp: Some(timestamp),
            signature: Some(signature),
        }
    }

    /// Looks each header up by its lower-case name ([`WEBHOOK_ID`] and the others).
    ///
    /// HTTP header names are case-insensitive: make `get` so too. Return `None` only for an
    /// absent header: a value that is present but not text is an *invalid* header, not a
    /// missing one, so for header maps that hold bytes use
    /// [`from_bytes_fn`](WebhookHeaders::from_bytes_fn), which keeps that difference.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use linq_hooks_signature::WebhookHeaders;
    ///
    /// let map = HashMap::from([("webhook-id", "msg_1"), ("webhook-timestamp", "1700000000")]);
    /// let headers = WebhookHeaders::from_fn(|name| map.get(name).copied());
    /// assert_eq!(headers.id, Some("msg_1"));
    /// assert_eq!(headers.signature, None);
    /// ```
    pub fn from_fn(mut get: impl FnMut(&'static str) -> Option<&'a str>) -> Self {
        WebhookHeaders {
            id: get(WEBHOOK_ID),
            timestamp: get(WEBHOOK_TIMESTAMP),
            signature: get(WEBHOOK_SIGNATURE),
        }
    }

    /// Looks each header up by its lower-case name, as raw bytes: for header maps whose
    /// values need not be text (such as `http::HeaderMap`).
    ///
    /// A present value that is not visible ASCII (or not UTF-8 at all) stays present, and the
    /// [`Verifier`] refuses it as an invalid header ([`Error::is_invalid_header`]), not as a
    /// missing one.
    ///
    /// ```
    /// use linq_hooks_signature::{Verifier, WebhookHeaders};
    ///
    /// let get = |name: &str| match name {
    ///     "webhook-id" => Some(&b"msg_\xff"[..]),
    ///     "webhook-timestamp" => Some(&b"0"[..]),
    ///     _ => Some(&b"v1,x"[..]),
    /// };
    /// let headers = WebhookHeaders::from_bytes_fn(get);
    /// assert!(headers.id.is_some());
    /// let err = Verifier::new([]).verify_at(headers, b"", 0).unwrap_err();
    /// assert!(err.is_invalid_header());
    /// assert_eq!(err.header(), Some("webhook-id"));
    /// ```
    pub fn from_bytes_fn(mut get: impl FnMut(&'static str) -> Option<&'a [u8]>) -> Self {
        WebhookHeaders::from_fn(|name| {
            get(name).map(|value| std::str::from_utf8(value).unwrap_or(NOT_TEXT))
        })
    }
}

/// What [`WebhookHeaders::from_bytes_fn`] keeps of a value that is not UTF-8: some text the
/// verifier refuses as not visible ASCII.
const NOT_TEXT: &str = "\u{FFFD}";

/// True for what may stand in a webhook header value: visible ASCII, spaces and tabs (what
/// `http::HeaderValue::to_str` accepts).
fn is_header_text(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
}

/// Checks deliveries against one or more secrets, as a receiver does.
///
/// A delivery passes when its timestamp is within the tolerance of "now" (either way) and one
/// of the `v1,` signatures in its `webhook-signature` header matches one of the secrets. Every
/// signature is compared with every secret in constant time; signatures of other versions
/// (`v1a,` …) are skipped. A verifier without secrets refuses every delivery.
///
/// ```
/// use std::time::Duration;
/// use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
///
/// let secret: Secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse()?;
/// let verifier = Verifier::new([secret]).tolerance(Duration::from_secs(60));
/// let headers = WebhookHeaders::new(
///     "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
///     "1649367553",
///     "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
/// );
/// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
///
/// verifier.verify_at(headers, body, 1649367553 + 60)?;
/// assert!(verifier.verify_at(headers, body, 1649367553 + 61).unwrap_err().is_stale_timestamp());
/// assert!(verifier.verify_at(headers, b"{}", 1649367553).unwrap_err().is_bad_signature());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    secrets: Vec<Secret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier that accepts a signature by any of `secrets`, with the
    /// [`DEFAULT_TOLERANCE`].
    ///
    /// ```
    /// use linq_hooks_signature::{Secret, Verifier};
    ///
    /// let verifier = Verifier::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse::<Secret>()?]);
    /// # Ok::<(), linq_hooks_signature::ParseSecretError>(())
    /// ```
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Verifier {
            secrets: secrets.into_iter().collect(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Sets how far (whole seconds) a timestamp may be from now, in the past or the future.
    ///
    /// ```
    /// use std::time::Duration;
    /// use linq_hooks_signature::Verifier;
    ///
    /// let verifier = Verifier::new([]).tolerance(Duration::from_secs(30));
    /// ```
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Checks a delivery against the system clock.
    ///
    /// ```no_run
    /// use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
    ///
    /// # let (id, timestamp, signature, body) = ("", "", "", b"");
    /// let verifier = Verifier::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse::<Secret>()?]);
    /// verifier.verify(WebhookHeaders::new(id, timestamp, signature), body)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, headers: WebhookHeaders<'_>, body: &[u8]) -> Result<(), Error> {
        let now = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        };
        self.verify_at(headers, body, now)
    }

    /// Checks a delivery as if the time were `now` (unix seconds).
    ///
    /// The checks run in this order, and the first that fails is the error: every header is
    /// present, every header is visible ASCII (spaces and tabs allowed), the timestamp is an
    /// integer, it is within the tolerance, a signature matches.
    ///
    /// ```
    /// use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, sign};
    ///
    /// let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
    /// let signature = sign(&[secret.clone()], "msg_1", 1_700_000_000, b"{}");
    /// let verifier = Verifier::new([secret]);
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1700000000", &signature);
    /// verifier.verify_at(headers, b"{}", 1_700_000_000)?;
    /// let err = verifier
    ///     .verify_at(WebhookHeaders::new("msg_1", "soon", &signature), b"{}", 1_700_000_000)
    ///     .unwrap_err();
    /// assert!(err.is_invalid_header());
    /// assert_eq!(err.header(), Some("webhook-timestamp"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_at(
        &self,
        headers: WebhookHeaders<'_>,
        body: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        let id = headers.id.ok_or(Error::missing(WEBHOOK_ID))?;
        let timestamp = headers.timestamp.ok_or(Error::missing(WEBHOOK_TIMESTAMP))?;
        let signatures = headers.signature.ok_or(Error::missing(WEBHOOK_SIGNATURE))?;
        for (name, value) in [
            (WEBHOOK_ID, id),
            (WEBHOOK_TIMESTAMP, timestamp),
            (WEBHOOK_SIGNATURE, signatures),
        ] {
            if !is_header_text(value) {
                return Err(Error {
                    kind: Kind::InvalidHeader(name, "not visible ASCII"),
                });
            }
        }

        let timestamp: i64 = timestamp.parse().map_err(|_| Error {
            kind: Kind::InvalidHeader(WEBHOOK_TIMESTAMP, "not an integer number of unix seconds"),
        })?;
        let tolerance = i128::from(self.tolerance.as_secs());
        let age = i128::from(now) - i128::from(timestamp);
        if age > tolerance || -age > tolerance {
            return Err(Error {
                kind: Kind::StaleTimestamp {
                    age,
                    tolerance: self.tolerance.as_secs(),
                },
            });
        }

        let expected: Vec<[u8; 32]> = self
            .secrets
            .iter()
            .map(|secret| secret.tag(id, timestamp, body))
            .collect();
        let mut matched = subtle::Choice::from(0);
        let candidates = signatures
            .split(' ')
            .filter_map(|signature| signature.strip_prefix(VERSION_PREFIX))
            // A signature that is not base64 matches nothing; its length is no secret.
            .filter_map(|encoded| STANDARD.decode(encoded).ok());
        for candidate in candidates {
            for tag in &expected {
                matched |= tag.as_slice().ct_eq(&candidate);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Error {
                kind: Kind::BadSignature,
            })
        }
    }
}

/// Why a delivery was refused.
///
/// Opaque so that new reasons can be added without breaking users: ask it what it is with the
/// `is_*` methods.
///
/// ```
/// use linq_hooks_signature::{Verifier, WebhookHeaders};
///
/// let err = Verifier::new([]).verify_at(WebhookHeaders::default(), b"", 0).unwrap_err();
/// assert!(err.is_missing_header());
/// assert_eq!(err.to_string(), "missing header `webhook-id`");
/// ```
#[derive(Clone, Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    MissingHeader(&'static str),
    InvalidHeader(&'static str, &'static str),
    /// `age` is now minus the timestamp: negative for a timestamp in the future.
    StaleTimestamp {
        age: i128,
        tolerance: u64,
    },
    BadSignature,
}

impl Error {
    fn missing(header: &'static str) -> Self {
        Error {
            kind: Kind::MissingHeader(header),
        }
    }

    /// True when one of the three headers is absent; see [`header`](Error::header).
    ///
    /// ```
    /// use linq_hooks_signature::{Verifier, WebhookHeaders};
    ///
    /// let headers = WebhookHeaders { signature: None, ..WebhookHeaders::new("msg_1", "0", "") };
    /// let err = Verifier::new([]).verify_at(headers, b"", 0).unwrap_err();
    /// assert!(err.is_missing_header());
    /// assert_eq!(err.header(), Some("webhook-signature"));
    /// ```
    pub fn is_missing_header(&self) -> bool {
        matches!(self.kind, Kind::MissingHeader(_))
    }

    /// True when a header is present but unreadable: not visible ASCII, or a timestamp that
    /// is not an integer; see [`header`](Error::header).
    ///
    /// ```
    /// use linq_hooks_signature::{Verifier, WebhookHeaders};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "2024-01-01T00:00:00Z", "v1,x");
    /// let err = Verifier::new([]).verify_at(headers, b"", 0).unwrap_err();
    /// assert!(err.is_invalid_header());
    /// ```
    pub fn is_invalid_header(&self) -> bool {
        matches!(self.kind, Kind::InvalidHeader(..))
    }

    /// True when the timestamp is further from now than the tolerance, in the past (a replay,
    /// or a delivery that took too long) or in the future.
    ///
    /// ```
    /// use linq_hooks_signature::{Verifier, WebhookHeaders};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1000", "v1,x");
    /// let err = Verifier::new([]).verify_at(headers, b"", 1000 + 301).unwrap_err();
    /// assert!(err.is_stale_timestamp());
    /// ```
    pub fn is_stale_timestamp(&self) -> bool {
        matches!(self.kind, Kind::StaleTimestamp { .. })
    }

    /// True when no `v1` signature of the header matches any secret (also when the header
    /// holds no `v1` signature at all).
    ///
    /// ```
    /// use linq_hooks_signature::{Verifier, WebhookHeaders};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1000", "v1a,x");
    /// let err = Verifier::new([]).verify_at(headers, b"", 1000).unwrap_err();
    /// assert!(err.is_bad_signature());
    /// ```
    pub fn is_bad_signature(&self) -> bool {
        matches!(self.kind, Kind::BadSignature)
    }

    /// The name of the missing or invalid header, for those two kinds.
    ///
    /// ```
    /// use linq_hooks_signature::{Verifier, WebhookHeaders};
    ///
    /// let err = Verifier::new([]).verify_at(WebhookHeaders::default(), b"", 0).unwrap_err();
    /// assert_eq!(err.header(), Some(linq_hooks_signature::WEBHOOK_ID));
    /// ```
    pub fn header(&self) -> Option<&'static str> {
        match self.kind {
            Kind::MissingHeader(name) | Kind::InvalidHeader(name, _) => Some(name),
            Kind::StaleTimestamp { .. } | Kind::BadSignature => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::MissingHeader(name) => write!(f, "missing header `{name}`"),
            Kind::InvalidHeader(name, why) => write!(f, "invalid header `{name}`: {why}"),
            Kind::StaleTimestamp { age, tolerance } if *age >= 0 => write!(
                f,
                "webhook timestamp is {age} s in the past (tolerance {tolerance} s)"
            ),
            Kind::StaleTimestamp { age, tolerance } => write!(
                f,
                "webhook timestamp is {} s in the future (tolerance {tolerance} s)",
                -age
            ),
            Kind::BadSignature => f.write_str("no webhook signature matches"),
        }
    }
}

impl std::error::Error for Error {}
