//! Routing each request to the transport for its URL's scheme.

use std::fmt;
use std::sync::Arc;

use crate::{Error, Request, Response, Transport, async_trait};

/// A [`Transport`] that hands each request to the transport registered for its URL's scheme
/// (`http`, `mqtt`, …; compared case-insensitively), so that one dispatcher delivers over
/// several transports. A request whose scheme has no transport is an
/// [`invalid request`](Error::is_invalid_request) naming the schemes it knows; nothing is
/// sent.
///
/// Routing only reads the text before the first `:`; each transport still checks the whole URL.
///
/// ```
/// use linq_hooks_transport::{ByScheme, MemoryTransport, Request, Response, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let web = MemoryTransport::new();
/// let broker = MemoryTransport::new();
/// broker.reply(Ok(Response::new(202)));
/// let transport = ByScheme::new()
///     .route(["http", "https"], web.clone())
///     .route(["mqtt", "mqtts"], broker.clone());
/// assert_eq!(transport.schemes().collect::<Vec<_>>(), ["http", "https", "mqtt", "mqtts"]);
///
/// transport.send(Request::new("https://lims.example/hook", "{}")).await?;
/// let answer = transport.send(Request::new("MQTT://broker/lab/runs", "{}")).await?;
/// assert_eq!(answer.status(), 202);
/// assert_eq!((web.requests().len(), broker.requests().len()), (1, 1));
///
/// let err = transport.send(Request::new("ftp://files.example/", "{}")).await.unwrap_err();
/// assert!(err.is_invalid_request());
/// assert_eq!(
///     format!("{err:#}"),
///     "invalid request: no transport for URL scheme `ftp:`; this sender knows http, https, mqtt, mqtts"
/// );
/// # Ok::<(), linq_hooks_transport::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct ByScheme {
    routes: Vec<(String, Arc<dyn Transport>)>,
}

impl ByScheme {
    /// A router without routes: every request is refused until [`route`](ByScheme::route)
    /// adds some.
    ///
    /// ```
    /// assert_eq!(linq_hooks_transport::ByScheme::new().schemes().count(), 0);
    /// ```
    pub fn new() -> Self {
        ByScheme::default()
    }

    /// Sends requests whose URL scheme is one of `schemes` with `transport`. A scheme given
    /// again is routed to the transport given last.
    ///
    /// ```
    /// # use linq_hooks_transport::{ByScheme, MemoryTransport};
    /// let router = ByScheme::new().route(["file"], MemoryTransport::new());
    /// assert!(router.handles("FILE"));
    /// ```
    pub fn route<S: AsRef<str>>(
        mut self,
        schemes: impl IntoIterator<Item = S>,
        transport: impl Transport + 'static,
    ) -> Self {
        let transport: Arc<dyn Transport> = Arc::new(transport);
        for scheme in schemes {
            let scheme = scheme.as_ref().to_ascii_lowercase();
            self.routes.retain(|(known, _)| *known != scheme);
            self.routes.push((scheme, transport.clone()));
        }
        self
    }

    /// The schemes routed, in lower case, in the order they were added.
    ///
    /// ```
    /// # use linq_hooks_transport::{ByScheme, MemoryTransport};
    /// let router = ByScheme::new().route(["https", "http"], MemoryTransport::new());
    /// assert_eq!(router.schemes().collect::<Vec<_>>(), ["https", "http"]);
    /// ```
    pub fn schemes(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(scheme, _)| scheme.as_str())
    }

    /// True when `scheme` (compared case-insensitively) has a transport.
    ///
    /// ```
    /// # use linq_hooks_transport::{ByScheme, MemoryTransport};
    /// assert!(!ByScheme::new().handles("http"));
    /// ```
    pub fn handles(&self, scheme: &str) -> bool {
        self.transport_for(scheme).is_some()
    }

    fn transport_for(&self, scheme: &str) -> Option<&Arc<dyn Transport>> {
        self.routes
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(scheme))
            .map(|(_, transport)| transport)
    }
}

#[async_trait]
impl Transport for ByScheme {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        let scheme = request
            .url()
            .split_once(':')
            .map_or("", |(scheme, _)| scheme);
        match self.transport_for(scheme) {
            Some(transport) => transport.send(request).await,
            None => Err(Error::invalid_request(format!(
                "no transport for URL scheme `{scheme}:`; this sender knows {}",
                self.schemes().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

impl fmt::Debug for ByScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByScheme")
            .field("schemes", &self.schemes().collect::<Vec<_>>())
            .finish()
    }
}
