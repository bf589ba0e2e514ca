//! Configuring an [`HttpTransport`]: timeouts, trusted roots, the connection pool, proxies and
//! the egress policy.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::connect::{Connector, Guarded};
use crate::{EgressPolicy, HttpTransport, Proxies};

/// Builds an [`HttpTransport`]; start with [`HttpTransport::builder`].
///
/// Every setting has a default, listed with its method.
///
/// ```
/// use std::time::Duration;
/// use linq_hooks_http::HttpTransport;
///
/// let transport = HttpTransport::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .timeout(Duration::from_secs(10))
///     .pool_max_idle_per_host(4)
///     .build()?;
/// # Ok::<(), linq_hooks_http::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Builder {
    connect_timeout: Duration,
    timeout: Duration,
    extra_roots_pem: Vec<Vec<u8>>,
    pool_max_idle_per_host: usize,
    pool_idle_timeout: Duration,
    proxies: Proxies,
    egress: EgressPolicy,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            extra_roots_pem: Vec::new(),
            pool_max_idle_per_host: 8,
            pool_idle_timeout: Duration::from_secs(90),
            proxies: Proxies::none(),
            egress: EgressPolicy::new(),
        }
    }
}

impl Builder {
    /// How long opening a TCP connection may take (default 5 s); when a host name resolves to
    /// several addresses, they share it. Running out is a connect error
    /// ([`is_connect`](linq_hooks_transport::Error::is_connect)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use linq_hooks_http::HttpTransport;
    /// let builder = HttpTransport::builder().connect_timeout(Duration::from_millis(500));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a whole attempt may take: connecting, the TLS handshake, sending, waiting for
    /// the response and reading its body (default 15 s). Running out is
    /// [`is_timeout`](linq_hooks_transport::Error::is_timeout).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use linq_hooks_http::HttpTransport;
    /// let builder = HttpTransport::builder().timeout(Duration::from_secs(30));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trusts the CA certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----`
    /// blocks; other blocks are ignored), on top of the platform's root certificates. For labs
    /// that run an internal CA. May be called more than once; the PEM is checked by
    /// [`build`](Builder::build).
    ///
    /// ```no_run
    /// # use linq_hooks_http::HttpTransport;
    /// let pem = std::fs::read("/etc/lab/ca.pem")?;
    /// let transport = HttpTransport::builder().extra_root_pem(&pem).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn extra_root_pem(mut self, pem: &[u8]) -> Self {
        self.extra_roots_pem.push(pem.to_vec());
        self
    }

    /// How many idle connections to keep per host for reuse (default 8). `0` turns reuse off.
    ///
    /// ```
    /// # use linq_hooks_http::HttpTransport;
    /// let builder = HttpTransport::builder().pool_max_idle_per_host(2);
    /// ```
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// How long an idle connection is kept for reuse (default 90 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use linq_hooks_http::HttpTransport;
    /// let builder = HttpTransport::builder().pool_idle_timeout(Duration::from_secs(30));
    /// ```
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The proxies to send through (default [`Proxies::none`]: every request connects
    /// directly; the environment is read only if you ask, with [`Proxies::from_env`]).
    ///
    /// ```
    /// use linq_hooks_http::{HttpTransport, Proxies};
    ///
    /// let proxies = Proxies::all("http://proxy.lab:3128", "localhost,.lab.internal")?;
    /// let transport = HttpTransport::builder().proxies(proxies).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn proxies(mut self, proxies: Proxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Which addresses may be connected to (default [`EgressPolicy::new`]: all). A refused
    /// attempt fails with [`is_refused`](linq_hooks_transport::Error::is_refused) before
    /// anything is sent; its source names the rule and the address.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use linq_hooks_http::{EgressPolicy, HttpTransport};
    /// use linq_hooks_transport::{Request, Transport};
    ///
    /// let transport = HttpTransport::builder()
    ///     .egress(EgressPolicy::new().deny_private())
    ///     .build()?;
    /// let err = transport
    ///     .send(Request::new("http://169.254.169.254/latest/meta-data/", "{}"))
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_refused());
    /// assert_eq!(
    ///     format!("{err:#}"),
    ///     "blocked by the egress policy: refused by --deny-private (link-local 169.254.0.0/16): 169.254.169.254:80"
    /// );
    /// # Ok(())
    /// # }
    /// ```
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = policy;
        self
    }

    /// Loads the root certificates and builds the transport.
    ///
    /// Fails when an extra CA bundle is not valid PEM, holds no certificate or holds one that
    /// cannot be a trust anchor, and when there is no root certificate at all (the platform
    /// has none and no extra CA was given). Needs no runtime; sending does.
    ///
    /// ```
    /// # use linq_hooks_http::HttpTransport;
    /// let err = HttpTransport::builder()
    ///     .extra_root_pem(b"not a certificate")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().starts_with("extra CA bundle #1: no certificate in it"));
    /// ```
    pub fn build(self) -> Result<HttpTransport, BuildError> {
        let mut roots = RootCertStore::empty();
        // The platform store may hold a few certificates that webpki cannot use (expired,
        // odd encodings); they are skipped, as browsers do.
        let platform = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(platform.certs);
        for (index, pem) in self.extra_roots_pem.iter().enumerate() {
            let bundle = index + 1;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert =
                    cert.map_err(|e| BuildError::pem(bundle, format!("not valid PEM: {e}")))?;
                found += 1;
                roots.add(cert).map_err(|e| {
                    BuildError::pem(
                        bundle,
                        format!("certificate {found} is not a usable CA: {e}"),
                    )
                })?;
            }
            if found == 0 {
                return Err(BuildError::pem(
                    bundle,
                    "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
                ));
            }
        }
        if roots.is_empty() {
            return Err(BuildError(Kind::NoRoots {
                platform_errors: platform.errors.iter().map(ToString::to_string).collect(),
            }));
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError(Kind::Tls(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let policy = (!self.egress.allows_everything()).then(|| Arc::new(self.egress));
        let resolver = Guarded::resolver(policy.clone());
        let mut tcp = HttpConnector::new_with_resolver(resolver.clone());
        tcp.set_connect_timeout(Some(self.connect_timeout));
        tcp.set_nodelay(true);
        let guarded = Guarded::new(tcp, policy.clone());
        // To a proxy: http/1.1 only (CONNECT and absolute-form requests are HTTP/1).
        let to_proxy = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(guarded.clone());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2() // offers h2 and http/1.1 by ALPN
            .wrap_connector(Connector {
                direct: guarded,
                to_proxy,
                proxies: self.proxies.clone(),
                policy,
                resolver,
            });

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_idle_timeout(self.pool_idle_timeout)
            .build(connector);

        Ok(HttpTransport {
            client,
            timeout: self.timeout,
            proxies: self.proxies,
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("extra_root_pem_bundles", &self.extra_roots_pem.len())
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("proxies", &self.proxies)
            .field("egress", &self.egress)
            .finish()
    }
}

/// Why [`Builder::build`] failed: a bad extra CA bundle, or no root certificate at all.
///
/// ```
/// # use linq_hooks_http::HttpTransport;
/// let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
/// let err = HttpTransport::builder().extra_root_pem(pem).build().unwrap_err();
/// assert!(err.is_invalid_pem());
/// assert!(err.to_string().starts_with("extra CA bundle #1: certificate 1 is not a usable CA"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BuildError(Kind);

#[derive(Debug, thiserror::Error)]
enum Kind {
    /// Bundle number (from 1, in the order given) and what is wrong with it.
    #[error("extra CA bundle #{0}: {1}")]
    Pem(usize, String),
    #[error(
        "no trusted root certificate: the platform store has none and no extra CA was given{}",
        platform_note(platform_errors)
    )]
    NoRoots { platform_errors: Vec<String> },
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// The first problem met loading the platform's store, if any, as a note to the message.
fn platform_note(platform_errors: &[String]) -> String {
    platform_errors
        .first()
        .map(|first| format!(" (loading the platform store: {first})"))
        .unwrap_or_default()
}

impl BuildError {
    fn pem(bundle: usize, message: String) -> Self {
        BuildError(Kind::Pem(bundle, message))
    }

    /// True when an extra CA bundle given to [`Builder::extra_root_pem`] is unusable.
    ///
    /// ```
    /// # use linq_hooks_http::HttpTransport;
    /// let err = HttpTransport::builder().extra_root_pem(b"").build().unwrap_err();
    /// assert!(err.is_invalid_pem());
    /// ```
    pub fn is_invalid_pem(&self) -> bool {
        matches!(self.0, Kind::Pem(..))
    }
}
