//! The MQTT transport of linq-hooks: [`MqttTransport`] publishes webhooks to an MQTT 5 broker.
//!
//! A hook whose URL is `mqtt://host[:port]/topic/levels` (port 1883 by default) or
//! `mqtts://…` (TLS, port 8883 by default) is delivered by publishing to that broker, on the
//! topic the URL's path names (`lab/runs` for `mqtt://broker/lab/runs`; percent-decoded;
//! no wildcards).
//!
//! - **Payload:** the request body, unchanged (the webhook's JSON), with the MQTT 5
//!   `content-type` property `application/json` (a hook's `Content-Type` header replaces it)
//!   and the payload format indicator set (UTF-8).
//! - **User properties:** every request header but `Authorization` and `Content-Type`, names
//!   in lower case, in order: the hook's own headers, then `webhook-id`,
//!   `webhook-timestamp` and `webhook-signature`. A subscriber verifies them exactly as an HTTP
//!   receiver verifies headers (`linq-hooks-receiver`'s `headers_from_pairs`).
//! - **Delivered** means the broker's PUBACK (QoS 1): a reason *success* is answered as
//!   status 200, *no matching subscribers* as 202 (accepted; nobody was subscribed). A PUBACK
//!   refusing the message is answered as the HTTP status that means the same (see below), so the
//!   caller's retry policy judges it as it judges HTTP answers.
//! - **Connections:** one per broker (host, port, TLS, credentials), opened on the first publish
//!   and reused by every hook that publishes there; a lost connection is opened again by the
//!   next publish. Publishes on one connection keep their order (MQTT keeps it per topic on a
//!   connection), and the dispatcher sends a hook's next webhook only after the PUBACK of the one
//!   before. A publish is never re-sent by the transport itself: when the connection breaks
//!   before the PUBACK, the attempt fails and the caller's retry sends it again (a subscriber may
//!   then see a `webhook-id` twice, which is why receivers deduplicate on it).
//! - **Credentials** never come from the URL (hook validation refuses userinfo). A request's
//!   `Authorization: Basic <base64 of user:password>` header is the broker's user name and
//!   password; without one, those of [`Builder::credentials`] (the CLI's
//!   `--mqtt-credentials`), else none. `Authorization` is never forwarded as a user property.
//!
//! # Results
//!
//! | what happened | result |
//! | --- | --- |
//! | PUBACK success | `Ok`, status 200 |
//! | PUBACK no matching subscribers | `Ok`, status 202 |
//! | PUBACK not authorized | `Ok`, status 403 |
//! | PUBACK topic name invalid, payload format invalid | `Ok`, status 400 |
//! | PUBACK quota exceeded | `Ok`, status 429 |
//! | PUBACK unspecified or implementation-specific error, packet id in use | `Ok`, status 503 |
//! | CONNACK bad user name or password, bad authentication method | `Ok`, status 401 |
//! | CONNACK not authorized, banned | `Ok`, status 403 |
//! | the connection could not be made, was refused for another reason, or broke before the PUBACK | `is_connect` |
//! | the TLS handshake failed | `is_tls` |
//! | no PUBACK within [`timeout`](Builder::timeout) | `is_timeout` |
//! | the URL or the `Authorization` header cannot be used (nothing is sent) | `is_invalid_request` |
//! | the [egress policy](Builder::egress) refuses every address of the broker (nothing is sent) | `is_refused` |
//!
//! A refusal's body names the MQTT reason (and the broker's reason string, if it sent one),
//! so attempt records show it.
//!
//! ```no_run
//! use linq_hooks_mqtt::MqttTransport;
//! use linq_hooks_transport::{Request, Transport};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = MqttTransport::new()?;
//! let request = Request::new("mqtt://broker.lab:1883/lab/runs", r#"{"event": "new_plan"}"#)
//!     .with_header("webhook-id", "msg_1");
//! match transport.send(request).await {
//!     Ok(response) if response.is_success() => println!("the broker has it"),
//!     Ok(response) => println!("refused: {}", String::from_utf8_lossy(response.body())),
//!     Err(e) => println!("failed: {e:#}"),
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod builder;
mod connection;
mod target;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linq_hooks_transport::{EgressPolicy, Error, Request, Response, Transport, async_trait};
use rumqttc::v5::MqttOptions;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAck, PubAckReason, PublishProperties};
use rumqttc::{TlsConfiguration, Transport as Link};

pub use builder::{BuildError, Builder};

use connection::{Ack, Connection, Lost};
use target::{Broker, Credentials};

/// The URL schemes this transport delivers to.
///
/// ```
/// assert_eq!(linq_hooks_mqtt::SCHEMES, ["mqtt", "mqtts"]);
/// ```
pub const SCHEMES: [&str; 2] = ["mqtt", "mqtts"];

/// The `content-type` property of every publish unless the request sets `Content-Type`.
const CONTENT_TYPE: &str = "application/json";

/// The MQTT 5 [`Transport`]: QoS 1 publishes, one reused connection per broker, rustls.
///
/// Cheap to clone; clones share the connections. Build one with [`MqttTransport::new`]
/// (defaults) or [`MqttTransport::builder`]. Sending needs a Tokio runtime with the time
/// driver; each connection runs a task on the runtime of the send that opened it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use linq_hooks_mqtt::MqttTransport;
/// use linq_hooks_transport::{Request, Transport};
///
/// let transport = MqttTransport::new()?;
/// let err = transport.send(Request::new("mqtt://broker/lab/#", "{}")).await.unwrap_err();
/// assert!(err.is_invalid_request()); // a wildcard is no topic to publish to
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MqttTransport {
    inner: Arc<Inner>,
}

struct Inner {
    timeout: Duration,
    connect_timeout_secs: u64,
    keep_alive: Duration,
    tls: Arc<rustls::ClientConfig>,
    credentials: Option<Credentials>,
    /// `None` when the policy allows everything: nothing to check.
    egress: Option<Arc<EgressPolicy>>,
    connections: Mutex<HashMap<Key, Arc<Connection>>>,
}

/// One connection per broker and credentials.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    broker: Broker,
    credentials: Option<Credentials>,
}

/// A request made ready to publish.
struct Publish {
    key: Key,
    topic: String,
    properties: PublishProperties,
}

impl MqttTransport {
    /// A transport with every default of [`Builder`].
    ///
    /// ```
    /// let transport = linq_hooks_mqtt::MqttTransport::new()?;
    /// # Ok::<(), linq_hooks_mqtt::BuildError>(())
    /// ```
    pub fn new() -> Result<Self, BuildError> {
        Builder::default().build()
    }

    /// A [`Builder`] to set timeouts, extra CAs and default credentials.
    ///
    /// ```
    /// let builder = linq_hooks_mqtt::MqttTransport::builder();
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Reads the URL and headers; nothing is sent when they cannot be used.
    fn prepare(&self, request: &Request) -> Result<Publish, Error> {
        let target = target::parse(request.url()).map_err(Error::invalid_request)?;
        let mut credentials = self.inner.credentials.clone();
        let mut properties = PublishProperties {
            content_type: Some(CONTENT_TYPE.into()),
            ..PublishProperties::default()
        };
        if std::str::from_utf8(request.body()).is_ok() {
            properties.payload_format_indicator = Some(1);
        }
        for (name, value) in request.headers() {
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "authorization" => {
                    credentials = Some(
                        Credentials::from_authorization(value).map_err(Error::invalid_request)?,
                    );
                }
                "content-type" => properties.content_type = Some(value.clone()),
                _ => properties.user_properties.push((name, value.clone())),
            }
        }
        Ok(Publish {
            key: Key {
                broker: target.broker,
                credentials,
            },
            topic: target.topic,
            properties,
        })
    }

    /// The open connection for `key`, or a new one in place of a lost one: where a new one goes
    /// is checked by the egress policy first.
    async fn connection(&self, key: &Key) -> Result<Arc<Connection>, Error> {
        if let Some(connection) = self.live(key) {
            return Ok(connection);
        }
        let host = self.checked_host(&key.broker).await?;
        let mut connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another publish may have opened it while this one was resolving.
        if let Some(connection) = connections.get(key)
            && !connection.is_lost()
        {
            return Ok(connection.clone());
        }
        let connection = Arc::new(Connection::open(self.options(key, host)));
        connections.insert(key.clone(), connection.clone());
        Ok(connection)
    }

    fn live(&self, key: &Key) -> Option<Arc<Connection>> {
        let connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connections
            .get(key)
            .filter(|connection| !connection.is_lost())
            .cloned()
    }

    /// The host a new connection to `broker` is opened to. Without an egress policy, the
    /// broker's own. With one, the broker's name is resolved here and each address checked;
    /// `mqtt://` then connects to the first allowed address itself (no second lookup), while
    /// `mqtts://` keeps the name, which TLS verifies the broker's certificate against (the MQTT
    /// client resolves it again: see the crate docs).
    async fn checked_host(&self, broker: &Broker) -> Result<String, Error> {
        let Some(policy) = &self.inner.egress else {
            return Ok(bracketed(&broker.host));
        };
        let addrs = tokio::net::lookup_host((broker.host.as_str(), broker.port))
            .await
            .map_err(|e| Error::connect(format!("{broker}: cannot resolve the name: {e}")))?;
        let mut refused = None;
        for addr in addrs {
            match policy.check(addr) {
                Ok(()) if broker.tls => return Ok(bracketed(&broker.host)),
                Ok(()) => return Ok(bracketed(&addr.ip().to_string())),
                Err(refusal) => {
                    refused.get_or_insert(refusal);
                }
            }
        }
        Err(match refused {
            Some(refusal) => Error::refused(refusal),
            None => Error::connect(format!("{broker}: the name resolves to no address")),
        })
    }

    fn options(&self, key: &Key, host: String) -> MqttOptions {
        // Unique per connection: a broker drops the older of two connections with one id.
        let id = format!("linq-hooks-{:016x}", fastrand::u64(..));
        let mut options = MqttOptions::new(id, host, key.broker.port);
        options
            .set_keep_alive(self.inner.keep_alive)
            .set_clean_start(true)
            .set_connection_timeout(self.inner.connect_timeout_secs);
        if key.broker.tls {
            options.set_transport(Link::Tls(TlsConfiguration::Rustls(self.inner.tls.clone())));
        }
        if let Some(credentials) = &key.credentials {
            options.set_credentials(credentials.user.clone(), credentials.password.clone());
        }
        options
    }

    async fn attempt(&self, request: Request, publish: Publish) -> Result<Response, Error> {
        let broker = &publish.key.broker;
        let connection = self.connection(&publish.key).await?;
        let ack = match connection
            .publish(&publish.topic, request.body().clone(), publish.properties)
            .await
        {
            Ok(ack) => ack.await,
            Err(lost) => return of_lost(broker, lost),
        };
        match ack {
            Ok(Ack::PubAck(ack)) => Ok(of_puback(&ack)),
            Ok(Ack::Lost(lost)) => of_lost(broker, lost),
            Err(_closed) => Err(Error::connect(format!(
                "{broker}: the connection was closed"
            ))),
        }
    }
}

#[async_trait]
impl Transport for MqttTransport {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        let publish = self.prepare(&request)?;
        match tokio::time::timeout(self.inner.timeout, self.attempt(request, publish)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Error::timeout()),
        }
    }
}

/// An IPv6 address in brackets, as the MQTT client joins host and port with `:`.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl fmt::Debug for MqttTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connections = self
            .inner
            .connections
            .lock()
            .map(|c| c.len())
            .unwrap_or_default();
        f.debug_struct("MqttTransport")
            .field("timeout", &self.inner.timeout)
            .field("connections", &connections)
            .finish_non_exhaustive()
    }
}

/// A PUBACK as the HTTP status that means the same to a retry policy.
fn of_puback(ack: &PubAck) -> Response {
    let (status, reason) = match ack.reason {
        PubAckReason::Success => return Response::new(200),
        PubAckReason::NoMatchingSubscribers => (202, "no matching subscribers"),
        PubAckReason::NotAuthorized => (403, "not authorized"),
        PubAckReason::TopicNameInvalid => (400, "topic name invalid"),
        PubAckReason::PayloadFormatInvalid => (400, "payload format invalid"),
        PubAckReason::QuotaExceeded => (429, "quota exceeded"),
        PubAckReason::UnspecifiedError => (503, "unspecified error"),
        PubAckReason::ImplementationSpecificError => (503, "implementation specific error"),
        PubAckReason::PacketIdentifierInUse => (503, "packet identifier in use"),
    };
    let said = ack
        .properties
        .as_ref()
        .and_then(|p| p.reason_string.as_deref())
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    Response::new(status).with_body(format!("PUBACK: {reason}{said}"))
}

/// A lost connection: a refusal of the credentials is an answer (401, 403: not retried, as
/// over HTTP); anything else is a connect or TLS error, retried.
fn of_lost(broker: &Broker, lost: Lost) -> Result<Response, Error> {
    match lost {
        Lost::Refused(code) => {
            let status = match code {
                ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::BadAuthenticationMethod => 401,
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::Banned => 403,
                other => {
                    return Err(Error::connect(format!(
                        "{broker}: the broker refused the connection: {other:?}"
                    )));
                }
            };
            Ok(Response::new(status).with_body(format!(
                "CONNACK: the broker refused the connection: {code:?}"
            )))
        }
        Lost::Tls(message) => Err(Error::tls(format!("{broker}: {message}"))),
        Lost::Connect(message) => Err(Error::connect(format!("{broker}: {message}"))),
    }
}
