//! One webhook request, as a transport receives it.

use std::fmt;

use bytes::Bytes;

/// One webhook request: where to POST, which headers to add, and the body.
///
/// The URL is an absolute `http` or `https` URL that was validated before (a hook's URL is
/// checked when the hook is read); a transport still refuses one it cannot use, with
/// [`Error::is_invalid_request`](crate::Error::is_invalid_request). Headers keep their order
/// and may repeat. The body is [`Bytes`], so cloning a request for a retry copies no data.
///
/// The method (`POST`) and the headers the transport owns (`content-type`, `user-agent`,
/// `host`, `content-length`) are the transport's business.
///
/// `Debug` shows header names but not their values: hook headers often carry credentials.
///
/// ```
/// use linq_hooks_transport::Request;
///
/// let request = Request::new("https://lims.example/hooks", r#"{"run_id": "r1"}"#)
///     .with_header("Authorization", "Bearer s3cret")
///     .with_header("webhook-id", "msg_1");
/// assert_eq!(request.url(), "https://lims.example/hooks");
/// assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
/// assert_eq!(request.body().as_ref(), br#"{"run_id": "r1"}"#);
/// assert!(!format!("{request:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct Request {
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Request {
    /// A request to `url` with `body` and no headers yet.
    ///
    /// ```
    /// use linq_hooks_transport::Request;
    ///
    /// let request = Request::new("http://127.0.0.1:8080/hook", b"{}".to_vec());
    /// assert!(request.headers().is_empty());
    /// ```
    pub fn new(url: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Request {
            url: url.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header after those already there.
    ///
    /// ```
    /// use linq_hooks_transport::Request;
    ///
    /// let request = Request::new("https://lims.example/", "{}").with_header("X-Lab", "north");
    /// assert_eq!(request.headers(), [("X-Lab".to_string(), "north".to_string())]);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds several headers, in order, after those already there.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use linq_hooks_transport::Request;
    ///
    /// let hook_headers = BTreeMap::from([("X-A".to_string(), "1".to_string())]);
    /// let request = Request::new("https://lims.example/", "{}")
    ///     .with_headers(hook_headers)
    ///     .with_headers([("webhook-id", "msg_1")]);
    /// assert_eq!(request.headers().len(), 2);
    /// ```
    pub fn with_headers<N, V>(mut self, headers: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<String>,
        V: Into<String>,
    {
        self.headers
            .extend(headers.into_iter().map(|(n, v)| (n.into(), v.into())));
        self
    }

    /// The URL to POST to.
    ///
    /// ```
    /// # use linq_hooks_transport::Request;
    /// assert_eq!(Request::new("https://lims.example/", "").url(), "https://lims.example/");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers to add, in order, as (name, value).
    ///
    /// ```
    /// # use linq_hooks_transport::Request;
    /// let request = Request::new("https://lims.example/", "").with_header("X-A", "1");
    /// for (name, value) in request.headers() {
    ///     assert_eq!((name.as_str(), value.as_str()), ("X-A", "1"));
    /// }
    /// ```
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The value of the first header named `name` (compared case-insensitively).
    ///
    /// ```
    /// # use linq_hooks_transport::Request;
    /// let request = Request::new("https://lims.example/", "").with_header("Webhook-Id", "msg_1");
    /// assert_eq!(request.header("webhook-id"), Some("msg_1"));
    /// assert_eq!(request.header("webhook-timestamp"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    ///
    /// ```
    /// # use linq_hooks_transport::Request;
    /// assert_eq!(Request::new("https://lims.example/", "[]").body().len(), 2);
    /// ```
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a [(String, String)]);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(name, _)| (name, "[redacted]")))
                    .finish()
            }
        }
        f.debug_struct("Request")
            .field("url", &self.url)
            .field("headers", &Redacted(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}
