//! The HTTP transport of linq-hooks: [`HttpTransport`] sends webhook requests with hyper.
//!
//! - Connections are pooled per host and reused (hyper-util's client, with a pool timer and a
//!   cap on idle connections per host).
//! - TLS is rustls with the *ring* provider, trusting the platform's root certificates plus any
//!   extra CA given in PEM ([`Builder::extra_root_pem`]). HTTP/2 is used when the server
//!   offers it by ALPN, HTTP/1.1 otherwise.
//! - Every request is a `POST` with `content-type: application/json` and
//!   `user-agent: linq-hooks/<version>` ([`USER_AGENT`]), then the request's own headers (a
//!   request header named `content-type` or `user-agent` replaces the default).
//! - Redirects are not followed: a `3xx` comes back as a response, and the caller counts it
//!   as a failed attempt.
//! - At most [`MAX_RESPONSE_BODY`] bytes of the response body are read; reading stops there
//!   and the connection is dropped.
//! - One [`timeout`](Builder::timeout) bounds the whole attempt, body included.
//! - Proxies ([`Builder::proxies`], [`Proxies`]): none unless given; [`Proxies::from_env`]
//!   reads `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` as curl does. `http://`
//!   targets go to an HTTP proxy in absolute form, `https://` targets through a `CONNECT`
//!   tunnel with TLS to the target inside it; SOCKS5 proxies (`socks5://`, `socks5h://`)
//!   tunnel every target.
//! - An egress policy ([`Builder::egress`], [`EgressPolicy`]): opt-in rules on the addresses
//!   connected to, checked after name resolution, against server-side request forgery.
//! - Once the status has arrived it stands: a body that then breaks off (the connection closes
//!   early, the time runs out) is noted on the response ([`Response::body_error`]), not turned
//!   into an error. A 2xx whose body breaks off is delivered; taking it for a failure would send
//!   the webhook again.
//!
//! [`Response::body_error`]: linq_hooks_transport::Response::body_error
//!
//! Sending needs a Tokio runtime with the time driver enabled.
//!
//! # Errors
//!
//! Failures are sorted into the kinds of [`linq_hooks_transport::Error`], with hyper's error
//! kept as the source:
//!
//! | what happened | kind |
//! | --- | --- |
//! | name resolution failed, connection refused or unreachable, [`connect_timeout`](Builder::connect_timeout) ran out | `is_connect` |
//! | the TLS handshake failed: an untrusted or wrong certificate, a server that does not speak TLS | `is_tls` |
//! | no answer came within [`timeout`](Builder::timeout) | `is_timeout` |
//! | the URL or a header cannot be sent (nothing is sent) | `is_invalid_request` |
//! | the [`EgressPolicy`] refuses the address (nothing is sent; the source names the rule) | `is_refused` |
//! | anything else, such as a server that hangs up without answering | none of these |
//!
//! ```no_run
//! use linq_hooks_http::HttpTransport;
//! use linq_hooks_transport::{Request, Transport};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = HttpTransport::new()?;
//! let request = Request::new("https://lims.example/hooks", r#"{"event": "run_state_change"}"#)
//!     .with_header("Authorization", "Bearer abc");
//! match transport.send(request).await {
//!     Ok(response) if response.is_success() => println!("delivered"),
//!     Ok(response) => println!("refused with {}", response.status()),
//!     Err(e) if e.is_timeout() => println!("no answer in time"),
//!     Err(e) => println!("failed: {e}"),
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod builder;
mod connect;
mod error;
mod proxy;

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use linq_hooks_transport::{Error, MAX_RESPONSE_BODY, Request, Response, Transport, async_trait};

pub use builder::{BuildError, Builder};
/// The egress policy lives in the transport crate, shared by every transport that connects to
/// addresses; re-exported here for the HTTP transport's users.
pub use linq_hooks_transport::{EgressPolicy, IpNet, PRIVATE_RANGES, PrivateRange, Refused};
pub use proxy::{Proxies, ProxyError};

/// The `user-agent` of every request: `linq-hooks/` and this crate's version.
///
/// ```
/// assert!(linq_hooks_http::USER_AGENT.starts_with("linq-hooks/"));
/// ```
pub const USER_AGENT: &str = concat!("linq-hooks/", env!("CARGO_PKG_VERSION"));

/// Headers a request may not set: the HTTP layer owns them (hook validation refuses them too).
const OWNED_HEADERS: [HeaderName; 4] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// The HTTP(S) [`Transport`]: hyper with a connection pool and rustls.
///
/// Cheap to clone; clones share the connection pool. Build one with [`HttpTransport::new`]
/// (defaults) or [`HttpTransport::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use linq_hooks_http::HttpTransport;
/// use linq_hooks_transport::{Request, Transport};
///
/// let transport = HttpTransport::new()?;
/// let err = transport.send(Request::new("ftp://lims.example/", "{}")).await.unwrap_err();
/// assert!(err.is_invalid_request());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<HttpsConnector<connect::Connector>, Full<Bytes>>,
    timeout: Duration,
    proxies: Proxies,
}

impl HttpTransport {
    /// A transport with every default of [`Builder`].
    ///
    /// ```
    /// let transport = linq_hooks_http::HttpTransport::new()?;
    /// # Ok::<(), linq_hooks_http::BuildError>(())
    /// ```
    pub fn new() -> Result<Self, BuildError> {
        Builder::default().build()
    }

    /// A [`Builder`] to set timeouts, extra CAs and the pool.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let transport = linq_hooks_http::HttpTransport::builder()
    ///     .timeout(Duration::from_secs(5))
    ///     .build()?;
    /// # Ok::<(), linq_hooks_http::BuildError>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    async fn attempt(
        &self,
        request: http::Request<Full<Bytes>>,
        deadline: tokio::time::Instant,
    ) -> Result<Response, Error> {
        let response = match tokio::time::timeout_at(deadline, self.client.request(request)).await {
            Ok(response) => response.map_err(error::from_client)?,
            Err(_elapsed) => return Err(Error::timeout()),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);

        // Read one byte past the limit, so that the response knows it was cut, then stop:
        // dropping the body closes the connection instead of draining a huge body. The status
        // has arrived: from here on a broken body is noted on the response, not an error (a 2xx
        // is delivered even if its body breaks off; taking it for a failure would send again).
        let mut body = response.into_body();
        let mut kept = BytesMut::new();
        let mut broken = None;
        while kept.len() <= MAX_RESPONSE_BODY {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    broken = Some(format!("{:#}", Error::body(e)));
                    break;
                }
                Err(_elapsed) => {
                    broken = Some("the time for the attempt ran out while reading the body".into());
                    break;
                }
            };
            if let Ok(data) = frame.into_data() {
                let room = MAX_RESPONSE_BODY + 1 - kept.len();
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }

        let mut out = Response::new(status).with_body(kept.freeze());
        if let Some(value) = retry_after {
            out = out.with_retry_after(value);
        }
        if let Some(broken) = broken {
            out = out.with_body_error(broken);
        }
        Ok(out)
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        let mut request = to_http(request)?;
        // An http target through an HTTP proxy: the proxy reads the request, credentials
        // included (an https target's go on the CONNECT).
        if request.uri().scheme_str() == Some("http")
            && let Some(auth) = self
                .proxies
                .intercept(request.uri())
                .and_then(|proxy| proxy.basic_auth().cloned())
        {
            request
                .headers_mut()
                .insert(header::PROXY_AUTHORIZATION, auth);
        }
        // One deadline for the whole attempt: the answer's head, then its body.
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.attempt(request, deadline).await
    }
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("timeout", &self.timeout)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

/// The hyper request for `request`, or why it cannot be sent.
fn to_http(request: Request) -> Result<http::Request<Full<Bytes>>, Error> {
    let uri = uri(request.url())?;

    let mut headers = HeaderMap::with_capacity(2 + request.headers().len());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    let mut replaced = Vec::new();
    for (name, value) in request.headers() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::invalid_request(format!("invalid header name `{name}`")))?;
        if OWNED_HEADERS.contains(&name) {
            return Err(Error::invalid_request(format!(
                "header `{name}` is set by the HTTP transport"
            )));
        }
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| Error::invalid_request(format!("invalid value for header `{name}`")))?;
        let is_default = name == header::CONTENT_TYPE || name == header::USER_AGENT;
        if is_default && !replaced.contains(&name) {
            replaced.push(name.clone());
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }

    let mut out = http::Request::new(Full::new(request.body().clone()));
    *out.method_mut() = http::Method::POST;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The request URI: an absolute `http` or `https` URL, in the ASCII form the wire needs
/// (international host names in punycode, other characters percent-encoded), without its
/// fragment.
fn uri(text: &str) -> Result<http::Uri, Error> {
    let invalid = |why: String| Error::invalid_request(format!("URL `{text}`: {why}"));
    let mut url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme is not http or https".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials in URLs are not sent".into()));
    }
    url.set_fragment(None);
    url.as_str()
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(request: Request) -> Vec<(String, String)> {
        to_http(request)
            .unwrap()
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn default_headers_then_the_request_headers() {
        let request = Request::new("https://lims.example/hook", "{}")
            .with_header("X-Lab", "north")
            .with_header("X-Lab", "south")
            .with_header("webhook-id", "msg_1");
        let headers = headers_of(request);
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("content-type", "application/json"),
                ("user-agent", USER_AGENT),
                ("x-lab", "north"),
                ("x-lab", "south"),
                ("webhook-id", "msg_1"),
            ]
        );
    }

    #[test]
    fn request_headers_replace_the_defaults() {
        let request = Request::new("https://lims.example/hook", "{}")
            .with_header("User-Agent", "lab-bot/2")
            .with_header("Content-Type", "application/cloudevents+json")
            .with_header("user-agent", "extra");
        let headers = headers_of(request);
        let user_agents: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "user-agent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(user_agents, ["lab-bot/2", "extra"]);
        let content_types: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "content-type")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(content_types, ["application/cloudevents+json"]);
    }

    #[test]
    fn method_uri_and_body() {
        let request = to_http(Request::new(
            "https://Lims.Example:8443/a b?q=1#frag",
            "[1]",
        ))
        .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://lims.example:8443/a%20b?q=1");
        let request = to_http(Request::new("http://bücher.example/", "")).unwrap();
        assert_eq!(request.uri().host(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn refused_requests() {
        let refused = [
            Request::new("ftp://lims.example/", ""),
            Request::new("/relative", ""),
            Request::new("not a url", ""),
            Request::new("https://user:pw@lims.example/", ""),
            Request::new("https://lims.example/", "").with_header("Host", "other.example"),
            Request::new("https://lims.example/", "").with_header("content-length", "3"),
            Request::new("https://lims.example/", "").with_header("Transfer-Encoding", "chunked"),
            Request::new("https://lims.example/", "").with_header("Connection", "close"),
            Request::new("https://lims.example/", "").with_header("bad name", "x"),
            Request::new("https://lims.example/", "").with_header("X-A", "a\r\nX-B: b"),
        ];
        for request in refused {
            let shown = format!("{request:?}");
            let err = to_http(request).unwrap_err();
            assert!(err.is_invalid_request(), "{shown}: {err:?}");
        }
    }
}
