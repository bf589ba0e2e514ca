//! Why an attempt brought back no response.

use std::fmt;

/// A boxed error that can cross threads: the cause a transport attaches to an [`Error`].
///
/// ```
/// let cause: linq_hooks_transport::BoxError = "no route to host".into();
/// assert_eq!(cause.to_string(), "no route to host");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an attempt brought back no response.
///
/// Opaque, in the manner of hyper's error: ask what kind of failure it was with the `is_*`
/// methods (a retry policy needs little more), and find the underlying cause in
/// [`source`](std::error::Error::source). New kinds may be added; an error of a kind a caller
/// does not know answers `false` to every `is_*` method it does know.
///
/// Transport implementations build errors with the constructors ([`Error::connect`],
/// [`Error::timeout`], …), keeping the underlying error as the source. The message of an error
/// names only its kind; print the source chain to see the cause.
///
/// ```
/// use std::error::Error as _;
/// use linq_hooks_transport::Error;
///
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// let err = Error::connect(refused);
/// assert!(err.is_connect() && !err.is_timeout());
/// assert_eq!(err.to_string(), "could not connect");
/// assert_eq!(err.source().unwrap().to_string(), "connection refused");
/// ```
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Connect,
    Timeout,
    Tls,
    InvalidRequest,
    Body,
    Refused,
    Other,
}

impl Error {
    fn new(kind: Kind, source: Option<BoxError>) -> Self {
        Error { kind, source }
    }

    /// The connection could not be made: name resolution, refusal, unreachable host, a timeout
    /// while connecting.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(Error::connect("connection refused").is_connect());
    /// ```
    pub fn connect(source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Connect, Some(source.into()))
    }

    /// The attempt took longer than the transport allows.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(Error::timeout().is_timeout());
    /// ```
    pub fn timeout() -> Self {
        Error::new(Kind::Timeout, None)
    }

    /// The TLS handshake failed, such as on a certificate the transport does not trust.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(Error::tls("invalid peer certificate: UnknownIssuer").is_tls());
    /// ```
    pub fn tls(source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Tls, Some(source.into()))
    }

    /// The request cannot be sent as it is: a URL or a header the transport cannot use.
    /// Sending it again will not help.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// let err = Error::invalid_request("URL scheme `ftp` is not http or https");
    /// assert!(err.is_invalid_request());
    /// ```
    pub fn invalid_request(source: impl Into<BoxError>) -> Self {
        Error::new(Kind::InvalidRequest, Some(source.into()))
    }

    /// The response began but its body could not be read.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(Error::body("connection reset").is_body());
    /// ```
    pub fn body(source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Body, Some(source.into()))
    }

    /// The transport's egress policy refused the address it would connect to (say, a private
    /// address when private addresses are denied). Nothing was sent, and nothing is connected
    /// to; the source names the rule and the address. Sending again meets the same rule.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// let err = Error::refused("refused by --deny-cidr 127.0.0.0/8: 127.0.0.1:4567");
    /// assert!(err.is_refused());
    /// assert_eq!(
    ///     format!("{err:#}"),
    ///     "blocked by the egress policy: refused by --deny-cidr 127.0.0.0/8: 127.0.0.1:4567"
    /// );
    /// ```
    pub fn refused(source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Refused, Some(source.into()))
    }

    /// Any other failure, such as a response that is not valid HTTP. It answers `false` to
    /// every `is_*` method.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// let err = Error::other("invalid HTTP status line");
    /// assert!(!err.is_connect() && !err.is_timeout() && !err.is_tls());
    /// assert!(!err.is_invalid_request() && !err.is_body() && !err.is_refused());
    /// ```
    pub fn other(source: impl Into<BoxError>) -> Self {
        Error::new(Kind::Other, Some(source.into()))
    }

    /// True for an [`Error::connect`].
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(!Error::timeout().is_connect());
    /// ```
    pub fn is_connect(&self) -> bool {
        self.kind == Kind::Connect
    }

    /// True for an [`Error::timeout`].
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(!Error::connect("refused").is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// True for an [`Error::tls`].
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(!Error::connect("refused").is_tls());
    /// ```
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }

    /// True for an [`Error::invalid_request`].
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(!Error::connect("refused").is_invalid_request());
    /// ```
    pub fn is_invalid_request(&self) -> bool {
        self.kind == Kind::InvalidRequest
    }

    /// True for an [`Error::body`].
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(!Error::connect("refused").is_body());
    /// ```
    pub fn is_body(&self) -> bool {
        self.kind == Kind::Body
    }

    /// True for an [`Error::refused`]: the egress policy refused the address.
    ///
    /// ```
    /// # use linq_hooks_transport::Error;
    /// assert!(!Error::connect("refused").is_refused());
    /// ```
    pub fn is_refused(&self) -> bool {
        self.kind == Kind::Refused
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("transport::Error");
        d.field(&self.kind);
        if let Some(source) = &self.source {
            d.field(source);
        }
        d.finish()
    }
}

/// `{}` names the kind only, as hyper's errors do; `{:#}` adds the chain of causes
/// (`could not connect: tcp connect error: Connection refused`), for code that keeps an
/// attempt's error as text, such as an attempt record. Each cause prints its own level only
/// (ARCHITECTURE.md, "Choices"), so each is written as it comes.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Connect => "could not connect",
            Kind::Timeout => "timed out",
            Kind::Tls => "TLS handshake failed",
            Kind::InvalidRequest => "invalid request",
            Kind::Body => "could not read the response body",
            Kind::Refused => "blocked by the egress policy",
            Kind::Other => "request failed",
        })?;
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(error) = cause {
                write!(f, ": {error}")?;
                cause = error.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_send_sync_static() {
        fn check<T: Send + Sync + 'static + std::error::Error>() {}
        check::<Error>();
    }

    #[test]
    fn exactly_one_kind() {
        let errors = [
            Error::connect("x"),
            Error::timeout(),
            Error::tls("x"),
            Error::invalid_request("x"),
            Error::body("x"),
            Error::refused("x"),
            Error::other("x"),
        ];
        for (i, err) in errors.iter().enumerate() {
            let kinds = [
                err.is_connect(),
                err.is_timeout(),
                err.is_tls(),
                err.is_invalid_request(),
                err.is_body(),
                err.is_refused(),
            ];
            let expected: Vec<bool> = (0..6).map(|k| k == i).collect();
            assert_eq!(kinds.as_slice(), expected, "{err:?}");
        }
    }

    #[test]
    fn debug_shows_kind_and_source() {
        assert_eq!(
            format!("{:?}", Error::connect("refused")),
            r#"transport::Error(Connect, "refused")"#
        );
        assert_eq!(
            format!("{:?}", Error::timeout()),
            "transport::Error(Timeout)"
        );
    }
}
