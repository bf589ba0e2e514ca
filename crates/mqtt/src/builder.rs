//! Configuring an [`MqttTransport`]: timeouts, trusted roots, default credentials.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use linq_hooks_transport::EgressPolicy;

use crate::target::Credentials;
use crate::{Inner, MqttTransport};

/// Builds an [`MqttTransport`]; start with [`MqttTransport::builder`].
///
/// Every setting has a default, listed with its method. The TLS options are those of the HTTP
/// transport (`linq-hooks-http`): the platform's root certificates plus extra CA bundles in PEM.
///
/// ```
/// use std::time::Duration;
/// use linq_hooks_mqtt::MqttTransport;
///
/// let transport = MqttTransport::builder()
///     .timeout(Duration::from_secs(10))
///     .credentials("lab", "s3cret")
///     .build()?;
/// # Ok::<(), linq_hooks_mqtt::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Builder {
    timeout: Duration,
    connect_timeout: Duration,
    keep_alive: Duration,
    extra_roots_pem: Vec<Vec<u8>>,
    credentials: Option<Credentials>,
    egress: EgressPolicy,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(30),
            extra_roots_pem: Vec::new(),
            credentials: None,
            egress: EgressPolicy::new(),
        }
    }
}

impl Builder {
    /// How long a whole attempt may take: connecting if needed, publishing, and the broker's
    /// PUBACK (default 15 s). Running out is
    /// [`is_timeout`](linq_hooks_transport::Error::is_timeout), retried like any timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = linq_hooks_mqtt::MqttTransport::builder().timeout(Duration::from_secs(30));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long opening a connection (TCP, TLS, CONNECT and CONNACK) may take, in whole seconds
    /// rounded up (default 5 s). Running out is a connect error.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = linq_hooks_mqtt::MqttTransport::builder().connect_timeout(Duration::from_secs(2));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The MQTT keep-alive of each connection (default 30 s): an idle connection is pinged,
    /// so a broker that went away is noticed and the next publish opens a new connection.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let builder = linq_hooks_mqtt::MqttTransport::builder().keep_alive(Duration::from_secs(60));
    /// ```
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Also trusts the CA certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----`
    /// blocks; other blocks are ignored) for `mqtts://` brokers, on top of the platform's
    /// root certificates. May be called more than once; the PEM is checked by
    /// [`build`](Builder::build).
    ///
    /// ```no_run
    /// let pem = std::fs::read("/etc/lab/ca.pem")?;
    /// let transport = linq_hooks_mqtt::MqttTransport::builder().extra_root_pem(&pem).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn extra_root_pem(mut self, pem: &[u8]) -> Self {
        self.extra_roots_pem.push(pem.to_vec());
        self
    }

    /// The user name and password to connect with when a request has no `Authorization`
    /// header (default: none, an anonymous connection). A request's `Authorization: Basic …`
    /// takes precedence.
    ///
    /// ```
    /// let builder = linq_hooks_mqtt::MqttTransport::builder().credentials("lab", "s3cret");
    /// ```
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Which addresses a broker may have (default [`EgressPolicy::new`]: all), the same policy
    /// as the HTTP transport's. It is checked when a connection is opened: the broker's name
    /// is resolved and each address checked; a publish whose broker has no allowed address
    /// fails with [`is_refused`](linq_hooks_transport::Error::is_refused), naming the rule, and
    /// nothing is sent. An `mqtt://` connection goes to the allowed address itself, so the name
    /// is not looked up again (DNS rebinding cannot slip through). An `mqtts://` connection is
    /// opened by name, which TLS checks the broker's certificate against, so the MQTT client
    /// looks the name up again: a name that resolves to an allowed address when checked and
    /// another one a moment later could slip through; give such brokers by IP address, or
    /// keep their names in a DNS you trust.
    ///
    /// ```
    /// use linq_hooks_transport::EgressPolicy;
    ///
    /// let builder = linq_hooks_mqtt::MqttTransport::builder()
    ///     .egress(EgressPolicy::new().deny_private());
    /// ```
    pub fn egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = policy;
        self
    }

    /// Loads the root certificates and builds the transport.
    ///
    /// Fails when an extra CA bundle is not valid PEM, holds no certificate or holds one that
    /// cannot be a trust anchor, and when there is no root certificate at all (the platform
    /// has none and no extra CA was given). Needs no runtime; sending needs a Tokio runtime
    /// with the time driver enabled.
    ///
    /// ```
    /// let err = linq_hooks_mqtt::MqttTransport::builder()
    ///     .extra_root_pem(b"not a certificate")
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.is_invalid_pem());
    /// assert!(err.to_string().starts_with("extra CA bundle #1: no certificate in it"));
    /// ```
    pub fn build(self) -> Result<MqttTransport, BuildError> {
        let mut roots = RootCertStore::empty();
        // As the HTTP transport does: the platform's unusable certificates are skipped.
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
            return Err(BuildError(Kind::NoRoots));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError(Kind::Tls(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MqttTransport {
            inner: Arc::new(Inner {
                timeout: self.timeout,
                connect_timeout_secs: self.connect_timeout.as_secs_f64().ceil().max(1.0) as u64,
                keep_alive: self.keep_alive,
                tls: Arc::new(tls),
                credentials: self.credentials,
                egress: (!self.egress.allows_everything()).then(|| Arc::new(self.egress)),
                connections: Mutex::new(HashMap::new()),
            }),
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("extra_root_pem_bundles", &self.extra_roots_pem.len())
            .field("credentials", &self.credentials)
            .field("egress", &self.egress)
            .finish()
    }
}

/// Why [`Builder::build`] failed: a bad extra CA bundle, or no root certificate at all.
///
/// ```
/// let err = linq_hooks_mqtt::MqttTransport::builder().extra_root_pem(b"").build().unwrap_err();
/// assert!(err.is_invalid_pem());
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BuildError(Kind);

#[derive(Debug, thiserror::Error)]
enum Kind {
    /// Bundle number (from 1, in the order given) and what is wrong with it.
    #[error("extra CA bundle #{0}: {1}")]
    Pem(usize, String),
    #[error("no trusted root certificate: the platform store has none and no extra CA was given")]
    NoRoots,
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
}

impl BuildError {
    fn pem(bundle: usize, message: String) -> Self {
        BuildError(Kind::Pem(bundle, message))
    }

    /// True when an extra CA bundle given to [`Builder::extra_root_pem`] is unusable.
    ///
    /// ```
    /// let err = linq_hooks_mqtt::MqttTransport::builder().extra_root_pem(b"x").build().unwrap_err();
    /// assert!(err.is_invalid_pem());
    /// ```
    pub fn is_invalid_pem(&self) -> bool {
        matches!(self.0, Kind::Pem(..))
    }
}
