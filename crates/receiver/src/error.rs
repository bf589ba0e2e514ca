//! Why a webhook was refused.

use http::StatusCode;

/// Why a webhook was refused: it could not be verified, its event is of a kind this version
/// does not know, or its body is not an event.
///
/// Opaque so that kinds can be added without breaking users: ask it what it is with the
/// `is_*` methods. As in hyper, its message names the kind only; the cause (the signature
/// check's or the JSON reader's error) is its [`source`](std::error::Error::source), so print
/// the chain when logging.
///
/// ```
/// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
///
/// let err = receive_at(&Verifier::new([]), WebhookHeaders::default(), b"{}", 0).unwrap_err();
/// assert!(err.is_unverified() && err.is_missing_header());
/// assert_eq!(err.header(), Some("webhook-id"));
/// assert_eq!(err.to_string(), "webhook not verified");
/// let cause = std::error::Error::source(&err).unwrap();
/// assert_eq!(cause.to_string(), "missing header `webhook-id`");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("webhook not verified")]
    Unverified(#[source] linq_hooks_signature::Error),
    #[error("unknown event kind")]
    UnknownEvent {
        name: String,
        source: linq_hooks_events::Error,
    },
    #[error("malformed webhook body: not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("malformed webhook body: not an event")]
    NotAnEvent(#[source] linq_hooks_events::Error),
}

impl Error {
    pub(crate) fn unverified(source: linq_hooks_signature::Error) -> Error {
        Error {
            kind: Kind::Unverified(source),
        }
    }

    pub(crate) fn unknown(name: String, source: linq_hooks_events::Error) -> Error {
        Error {
            kind: Kind::UnknownEvent { name, source },
        }
    }

    pub(crate) fn not_json(source: serde_json::Error) -> Error {
        Error {
            kind: Kind::NotJson(source),
        }
    }

    pub(crate) fn not_an_event(source: linq_hooks_events::Error) -> Error {
        Error {
            kind: Kind::NotAnEvent(source),
        }
    }

    fn signature(&self) -> Option<&linq_hooks_signature::Error> {
        match &self.kind {
            Kind::Unverified(e) => Some(e),
            _ => None,
        }
    }

    /// True when the webhook could not be verified, for any reason: a missing or invalid
    /// header, a stale timestamp, or no matching signature. Answer 401.
    ///
    /// ```
    /// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1000", "v1,bm90IGEgc2lnbmF0dXJl");
    /// let err = receive_at(&Verifier::new([]), headers, b"{}", 1000).unwrap_err();
    /// assert!(err.is_unverified() && err.is_bad_signature());
    /// ```
    pub fn is_unverified(&self) -> bool {
        self.signature().is_some()
    }

    /// True when no `v1` signature of the `webhook-signature` header matches any secret: a
    /// wrong secret, or a body or id changed on the way.
    ///
    /// ```
    /// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1000", "v1,bm90IGEgc2lnbmF0dXJl");
    /// let err = receive_at(&Verifier::new([]), headers, b"{}", 1000).unwrap_err();
    /// assert!(err.is_bad_signature());
    /// ```
    pub fn is_bad_signature(&self) -> bool {
        self.signature()
            .is_some_and(linq_hooks_signature::Error::is_bad_signature)
    }

    /// True when the `webhook-timestamp` is further from now than the verifier's tolerance
    /// (five minutes by default), in the past (a replay) or the future.
    ///
    /// ```
    /// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "1000", "v1,bm90IGEgc2lnbmF0dXJl");
    /// let err = receive_at(&Verifier::new([]), headers, b"{}", 1000 + 3600).unwrap_err();
    /// assert!(err.is_stale_timestamp());
    /// ```
    pub fn is_stale_timestamp(&self) -> bool {
        self.signature()
            .is_some_and(linq_hooks_signature::Error::is_stale_timestamp)
    }

    /// True when `webhook-id`, `webhook-timestamp` or `webhook-signature` is absent; see
    /// [`header`](Error::header).
    ///
    /// ```
    /// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
    ///
    /// let headers = WebhookHeaders { signature: None, ..WebhookHeaders::new("msg_1", "1000", "") };
    /// let err = receive_at(&Verifier::new([]), headers, b"{}", 1000).unwrap_err();
    /// assert!(err.is_missing_header());
    /// assert_eq!(err.header(), Some("webhook-signature"));
    /// ```
    pub fn is_missing_header(&self) -> bool {
        self.signature()
            .is_some_and(linq_hooks_signature::Error::is_missing_header)
    }

    /// True when a webhook header is present but unreadable, such as a `webhook-timestamp`
    /// that is not an integer; see [`header`](Error::header).
    ///
    /// ```
    /// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
    ///
    /// let headers = WebhookHeaders::new("msg_1", "yesterday", "v1,x");
    /// let err = receive_at(&Verifier::new([]), headers, b"{}", 1000).unwrap_err();
    /// assert!(err.is_invalid_header());
    /// assert_eq!(err.header(), Some("webhook-timestamp"));
    /// ```
    pub fn is_invalid_header(&self) -> bool {
        self.signature()
            .is_some_and(linq_hooks_signature::Error::is_invalid_header)
    }

    /// The name of the missing or invalid header, for those two kinds.
    ///
    /// ```
    /// use linq_hooks_receiver::{Verifier, WebhookHeaders, receive_at};
    ///
    /// let err = receive_at(&Verifier::new([]), WebhookHeaders::default(), b"", 0).unwrap_err();
    /// assert_eq!(err.header(), Some(linq_hooks_receiver::WEBHOOK_ID));
    /// ```
    pub fn header(&self) -> Option<&'static str> {
        self.signature()
            .and_then(linq_hooks_signature::Error::header)
    }

    /// True when the body is an event of a kind this version does not know (`event` is a
    /// string, but not one of the five): most likely a newer sender. Answer 2xx and ignore it
    /// (see [`status`](Error::status)); [`unknown_event`](Error::unknown_event) gives its name.
    ///
    /// ```
    /// let err = linq_hooks_receiver::parse_body(br#"{"event": "foo"}"#).unwrap_err();
    /// assert!(err.is_unknown_event());
    /// assert!(!err.is_malformed_body());
    /// ```
    pub fn is_unknown_event(&self) -> bool {
        matches!(self.kind, Kind::UnknownEvent { .. })
    }

    /// The `event` value of an unknown event, as it came.
    ///
    /// ```
    /// let err = linq_hooks_receiver::parse_body(br#"{"event": "foo"}"#).unwrap_err();
    /// assert_eq!(err.unknown_event(), Some("foo"));
    /// ```
    pub fn unknown_event(&self) -> Option<&str> {
        match &self.kind {
            Kind::UnknownEvent { name, .. } => Some(name),
            _ => None,
        }
    }

    /// True when the body is not an event: not JSON, not a JSON object, without an `event`
    /// string, or with a field missing or of the wrong type. Answer 400. The
    /// [`source`](std::error::Error::source) says where (the JSON path) and why.
    ///
    /// ```
    /// use linq_hooks_receiver::parse_body;
    ///
    /// let err = parse_body(br#"{"event": "new_plan", "plan_id": 7}"#).unwrap_err();
    /// assert!(err.is_malformed_body());
    /// let cause = std::error::Error::source(&err).unwrap().to_string();
    /// assert_eq!(cause, "plan_id: invalid type: integer `7`, expected a string");
    /// assert!(parse_body(b"[]").unwrap_err().is_malformed_body());
    /// ```
    pub fn is_malformed_body(&self) -> bool {
        matches!(self.kind, Kind::NotJson(_) | Kind::NotAnEvent(_))
    }

    /// The HTTP status a receiver answers for this error: the one place that decides it.
    ///
    /// | kind | status |
    /// | --- | --- |
    /// | [`is_unverified`](Error::is_unverified) | 401 Unauthorized: not from the sender, or replayed too late |
    /// | [`is_malformed_body`](Error::is_malformed_body) | 400 Bad Request |
    /// | [`is_unknown_event`](Error::is_unknown_event) | 204 No Content: acknowledged and ignored |
    ///
    /// An unknown kind of event is most likely a newer sender's: the request is fine, this
    /// receiver just has nothing to do with it. An error status would make the sender retry it
    /// for hours and then record it as failed, so it is acknowledged instead. A receiver that
    /// answers its events with another 2xx may answer unknown ones the same way.
    ///
    /// ```
    /// use linq_hooks_receiver::{StatusCode, Verifier, WebhookHeaders, parse_body, receive_at};
    ///
    /// let unverified = receive_at(&Verifier::new([]), WebhookHeaders::default(), b"", 0);
    /// assert_eq!(unverified.unwrap_err().status(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(parse_body(b"{").unwrap_err().status(), StatusCode::BAD_REQUEST);
    /// assert_eq!(parse_body(br#"{"event": "run_exploded"}"#).unwrap_err().status(), 204);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Unverified(_) => StatusCode::UNAUTHORIZED,
            Kind::UnknownEvent { .. } => StatusCode::NO_CONTENT,
            Kind::NotJson(_) | Kind::NotAnEvent(_) => StatusCode::BAD_REQUEST,
        }
    }
}
