//! What came back from one attempt.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// The most response body a transport reads and a [`Response`] keeps: 20 KiB.
///
/// The body is kept to show a user what their endpoint answered; a bigger one is cut, and
/// reading stops there, so a hostile or broken endpoint cannot make the sender buffer megabytes.
///
/// ```
/// assert_eq!(linq_hooks_transport::MAX_RESPONSE_BODY, 20 * 1024);
/// ```
pub const MAX_RESPONSE_BODY: usize = 20 * 1024;

/// The answer to one attempt: status, `Retry-After`, and the start of the body.
///
/// ```
/// use std::time::Duration;
/// use linq_hooks_transport::Response;
///
/// let response = Response::new(503).with_retry_after("120").with_body("busy");
/// assert!(!response.is_success());
/// assert_eq!(response.retry_after(), Some(Duration::from_secs(120)));
/// assert_eq!(response.body().as_ref(), b"busy");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    status: u16,
    retry_after: Option<String>,
    body: Bytes,
    body_truncated: bool,
    body_error: Option<String>,
}

impl Response {
    /// A response with `status`, no `Retry-After` and an empty body.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// let response = Response::new(204);
    /// assert!(response.is_success());
    /// assert!(response.body().is_empty());
    /// ```
    pub fn new(status: u16) -> Self {
        Response {
            status,
            retry_after: None,
            body: Bytes::new(),
            body_truncated: false,
            body_error: None,
        }
    }

    /// Sets the raw value of the `Retry-After` header.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// let response = Response::new(429).with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT");
    /// assert_eq!(response.retry_after_header(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
    /// ```
    pub fn with_retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// Sets the body, keeping at most its first [`MAX_RESPONSE_BODY`] bytes; a longer body is
    /// cut and marked (see [`is_body_truncated`](Response::is_body_truncated)).
    ///
    /// A transport that stops reading at the limit passes what it read, including the first
    /// bytes past the limit if it has them, so that the mark is set.
    ///
    /// ```
    /// use linq_hooks_transport::{MAX_RESPONSE_BODY, Response};
    ///
    /// let response = Response::new(500).with_body(vec![b'x'; MAX_RESPONSE_BODY + 1]);
    /// assert_eq!(response.body().len(), MAX_RESPONSE_BODY);
    /// assert!(response.is_body_truncated());
    /// ```
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        let mut body = body.into();
        self.body_truncated = body.len() > MAX_RESPONSE_BODY;
        body.truncate(MAX_RESPONSE_BODY);
        self.body = body;
        self
    }

    /// The HTTP status code.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// assert_eq!(Response::new(302).status(), 302);
    /// ```
    pub fn status(&self) -> u16 {
        self.status
    }

    /// True for a `2xx` status: the delivery succeeded.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// assert!(Response::new(200).is_success());
    /// assert!(Response::new(299).is_success());
    /// assert!(!Response::new(302).is_success());
    /// ```
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// True for a `3xx` status. Transports follow no redirects, so the caller sees them; for a
    /// webhook they are failed attempts.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// assert!(Response::new(307).is_redirect());
    /// assert!(!Response::new(200).is_redirect());
    /// ```
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }

    /// The raw `Retry-After` header, if the response had one.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// assert_eq!(Response::new(503).retry_after_header(), None);
    /// assert_eq!(Response::new(503).with_retry_after("soon").retry_after_header(), Some("soon"));
    /// ```
    pub fn retry_after_header(&self) -> Option<&str> {
        self.retry_after.as_deref()
    }

    /// How long the endpoint asked to wait before the next attempt, from now.
    ///
    /// See [`retry_after_at`](Response::retry_after_at); this one measures an HTTP-date from
    /// the system clock.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use linq_hooks_transport::Response;
    /// let response = Response::new(429).with_retry_after("3");
    /// assert_eq!(response.retry_after(), Some(Duration::from_secs(3)));
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_at(SystemTime::now())
    }

    /// How long the endpoint asked to wait, measured from `now`.
    ///
    /// `Retry-After` is either a number of seconds or an HTTP-date (RFC 9110, section 10.2.3);
    /// a date in the past means no wait. `None` when the header is absent or neither form.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use linq_hooks_transport::Response;
    ///
    /// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 07:28:00
    /// let response = Response::new(503).with_retry_after("Wed, 21 Oct 2015 07:30:00 GMT");
    /// assert_eq!(response.retry_after_at(now), Some(Duration::from_secs(120)));
    ///
    /// let later = now + Duration::from_secs(3600);
    /// assert_eq!(response.retry_after_at(later), Some(Duration::ZERO));
    /// assert_eq!(Response::new(503).with_retry_after("-1").retry_after_at(now), None);
    /// ```
    pub fn retry_after_at(&self, now: SystemTime) -> Option<Duration> {
        let value = self.retry_after.as_deref()?.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return value.parse().ok().map(Duration::from_secs);
        }
        let date = httpdate::parse_http_date(value).ok()?;
        Some(date.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// The start of the body: at most [`MAX_RESPONSE_BODY`] bytes.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// let response = Response::new(400).with_body(r#"{"error": "unknown run"}"#);
    /// assert!(response.body().starts_with(b"{\"error\""));
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Notes that the body broke off after the status arrived (the connection closed early, or
    /// the attempt's time ran out while reading it). The status still stands: what an answer
    /// means is decided by its status (the Standard Webhooks specification counts any 2xx as
    /// delivered); the body is only kept for the record.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// let response = Response::new(200).with_body("only part").with_body_error("connection closed");
    /// assert!(response.is_success());
    /// assert_eq!(response.body_error(), Some("connection closed"));
    /// ```
    pub fn with_body_error(mut self, error: impl Into<String>) -> Self {
        self.body_error = Some(error.into());
        self
    }

    /// Why the body broke off after the status arrived, if it did.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// assert_eq!(Response::new(204).body_error(), None);
    /// ```
    pub fn body_error(&self) -> Option<&str> {
        self.body_error.as_deref()
    }

    /// True when the body was longer than [`MAX_RESPONSE_BODY`] and was cut.
    ///
    /// ```
    /// # use linq_hooks_transport::Response;
    /// assert!(!Response::new(200).with_body("ok").is_body_truncated());
    /// ```
    pub fn is_body_truncated(&self) -> bool {
        self.body_truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(value: &str, now: SystemTime) -> Option<Duration> {
        Response::new(503)
            .with_retry_after(value)
            .retry_after_at(now)
    }

    #[test]
    fn retry_after_forms() {
        // Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(at("0", now), secs(0));
        assert_eq!(at("120", now), secs(120));
        assert_eq!(at(" 120 ", now), secs(120));
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT", now), secs(0));
        assert_eq!(at("Sun, 06 Nov 1994 08:50:37 GMT", now), secs(60));
        // The obsolete forms HTTP-date still allows.
        assert_eq!(at("Sunday, 06-Nov-94 08:50:37 GMT", now), secs(60));
        assert_eq!(at("Sun Nov  6 08:50:37 1994", now), secs(60));
        assert_eq!(at("Sat, 05 Nov 1994 08:49:37 GMT", now), secs(0));
        for bad in [
            "",
            "-5",
            "1.5",
            "+3",
            "soon",
            "99999999999999999999999",
            "2 minutes",
        ] {
            assert_eq!(at(bad, now), None, "{bad:?}");
        }
        assert_eq!(Response::new(503).retry_after_at(now), None);
    }

    #[test]
    fn body_limit() {
        let exact = Response::new(200).with_body(vec![0; MAX_RESPONSE_BODY]);
        assert_eq!(exact.body().len(), MAX_RESPONSE_BODY);
        assert!(!exact.is_body_truncated());
        let over = Response::new(200).with_body(vec![0; 3 * MAX_RESPONSE_BODY]);
        assert_eq!(over.body().len(), MAX_RESPONSE_BODY);
        assert!(over.is_body_truncated());
    }

    #[test]
    fn status_classes() {
        for (status, success, redirect) in [
            (199, false, false),
            (200, true, false),
            (204, true, false),
            (299, true, false),
            (300, false, true),
            (302, false, true),
            (399, false, true),
            (400, false, false),
            (503, false, false),
        ] {
            let response = Response::new(status);
            assert_eq!(response.is_success(), success, "{status}");
            assert_eq!(response.is_redirect(), redirect, "{status}");
        }
    }
}
