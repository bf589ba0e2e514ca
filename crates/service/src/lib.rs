//! The dispatcher service behind `linq-hooks serve`.
//!
//! The scheduler hands each event to the service over HTTP; the service stores it with one
//! delivery per hook that fires in a durable outbox ([`linq_hooks_outbox::Store`]), answers
//! 202 once that is committed, and delivers in the background with the
//! [`Dispatcher`](linq_hooks_delivery::Dispatcher): in order per hook, retrying for hours,
//! surviving restarts.
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `POST /v1/events` | one event or an array; 202 after a durable commit, 400 (nothing stored) for an invalid body, 413 over 1 MiB |
//! | `GET /v1/deliveries?state=pending\|delivered\|failed&limit=N&after=ID` | deliveries by state, paged |
//! | `GET /v1/deliveries/{id}` | a delivery with its attempts |
//! | `POST /v1/deliveries/{id}/retry` | replays a failed delivery (same `webhook-id`) |
//! | `GET /v1/hooks` | each hook and its state |
//! | `POST /v1/hooks/{index}/enable` | enables a hook a 410 disabled |
//! | `GET /healthz` | 200 when ready (never needs the token) |
//! | `GET /metrics` | Prometheus text |
//!
//! ```no_run
//! use std::sync::Arc;
//! use linq_hooks_service::{Service, ServiceConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hooks = linq_hooks_model::parse_hooks(&std::fs::read_to_string("hooks.json")?)?.hooks;
//! let transport = Arc::new(linq_hooks_http::HttpTransport::new()?);
//! let config = ServiceConfig::new(hooks, "linq-hooks.redb");
//! let service = Service::start(config, transport).await?;
//! println!("listening on {}", service.local_addr());
//! service.run_until(async { tokio::signal::ctrl_c().await.unwrap() }).await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod api;
mod metrics;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use linq_hooks_delivery::{Config, Dispatcher, RetryPolicy};
use linq_hooks_filter::Matcher;
use linq_hooks_model::Hook;
use linq_hooks_outbox::Store;
use linq_hooks_transport::Transport;
use sha2::Digest;
use tokio::net::TcpListener;

use crate::api::State;
use crate::metrics::{MeteredOutbox, Metrics};

/// How often delivered records older than the retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How the service runs. Every field has the documented default of `linq-hooks serve`.
///
/// ```
/// let config = linq_hooks_service::ServiceConfig::new(Vec::new(), "store.redb");
/// assert_eq!(config.listen.to_string(), "127.0.0.1:8625");
/// assert_eq!(config.delivery.policy.to_string(), "5s,5m,30m,2h,5h,10h,10h");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// The hooks; deliveries refer to them by index.
    pub hooks: Vec<Hook>,
    /// The store file.
    pub store: PathBuf,
    /// Where the API listens (default `127.0.0.1:8625`).
    pub listen: SocketAddr,
    /// When set, every endpoint but `/healthz` requires `Authorization: Bearer <token>`.
    /// Required to listen on anything but a loopback address.
    pub token: Option<String>,
    /// Signing secrets, requests in flight, and the retry schedule (default for the service:
    /// 5s, 5m, 30m, 2h, 5h, 10h, 10h).
    pub delivery: Config,
    /// How long requests in flight may take to finish at shutdown (default 10 s).
    pub shutdown_grace: Duration,
    /// How long delivered records are kept (default 7 days).
    pub retention: Duration,
}

impl ServiceConfig {
    /// The defaults, for these hooks and this store file.
    pub fn new(hooks: Vec<Hook>, store: impl Into<PathBuf>) -> ServiceConfig {
        ServiceConfig {
            hooks,
            store: store.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8625)),
            token: None,
            delivery: Config::default().policy(RetryPolicy::service_default()),
            shutdown_grace: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// Why the service could not start.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut config = linq_hooks_service::ServiceConfig::new(Vec::new(), "unused.redb");
/// config.listen = "0.0.0.0:0".parse().unwrap();
/// let transport = std::sync::Arc::new(NoTransport);
/// let err = linq_hooks_service::Service::start(config, transport).await.unwrap_err();
/// assert!(err.is_insecure());
/// # });
/// # struct NoTransport;
/// # #[linq_hooks_transport::async_trait]
/// # impl linq_hooks_transport::Transport for NoTransport {
/// #     async fn send(&self, _: linq_hooks_transport::Request) -> Result<linq_hooks_transport::Response, linq_hooks_transport::Error> { unreachable!() }
/// # }
/// ```
#[derive(Debug)]
pub struct StartError {
    kind: StartErrorKind,
}

#[derive(Debug)]
enum StartErrorKind {
    Insecure(SocketAddr),
    EmptyToken,
    Bind(SocketAddr, std::io::Error),
    Store(linq_hooks_outbox::StoreError),
}

impl StartError {
    /// Asked to listen beyond loopback without a token, or given an empty token.
    pub fn is_insecure(&self) -> bool {
        matches!(
            self.kind,
            StartErrorKind::Insecure(_) | StartErrorKind::EmptyToken
        )
    }

    /// The address could not be bound (in use, not ours).
    pub fn is_bind(&self) -> bool {
        matches!(self.kind, StartErrorKind::Bind(..))
    }

    /// The store could not be opened (unwritable, locked by another `serve`, or holding
    /// deliveries for a different hook list).
    pub fn is_store(&self) -> bool {
        matches!(self.kind, StartErrorKind::Store(_))
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StartErrorKind::Insecure(addr) => write!(
                f,
                "refusing to listen on {addr} without a token: anyone who can reach it could post events; \
                 set --token (or LINQ_HOOKS_TOKEN), or listen on 127.0.0.1"
            ),
            StartErrorKind::EmptyToken => {
                f.write_str("the token is empty; give a real one, or none")
            }
            StartErrorKind::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartErrorKind::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            StartErrorKind::Insecure(_) | StartErrorKind::EmptyToken => None,
            StartErrorKind::Bind(_, e) => Some(e),
            StartErrorKind::Store(e) => Some(e),
        }
    }
}

/// A started service: the store is open, the port bound, the dispatcher running.
pub struct Service {
    listener: TcpListener,
    state: Arc<State>,
    dispatching: tokio::task::JoinHandle<()>,
    pruning: tokio::task::JoinHandle<()>,
    shutdown_grace: Duration,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("listen", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Opens the store, binds the address and starts delivering what the store holds.
    pub async fn start(
        config: ServiceConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Service, StartError> {
        if config.token.as_deref().is_some_and(str::is_empty) {
            return Err(StartError {
                kind: StartErrorKind::EmptyToken,
            });
        }
        if !config.listen.ip().is_loopback() && config.token.is_none() {
            return Err(StartError {
                kind: StartErrorKind::Insecure(config.listen),
            });
        }
        let hooks: Arc<[Hook]> = config.hooks.into();
        let store = Store::open(&config.store, hooks.len(), &fingerprint(&hooks)).map_err(|e| {
            StartError {
                kind: StartErrorKind::Store(e),
            }
        })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError {
                kind: StartErrorKind::Bind(config.listen, e),
            })?;
        let metrics = Arc::new(Metrics::new());
        let outbox = Arc::new(MeteredOutbox {
            store: store.clone(),
            metrics: metrics.clone(),
        });
        let dispatcher = Dispatcher::new(hooks.clone(), transport, outbox, config.delivery);
        let dispatching = tokio::spawn({
            let dispatcher = dispatcher.clone();
            async move { dispatcher.run().await }
        });
        let pruning = tokio::spawn(prune_forever(store.clone(), config.retention));
        let state = Arc::new(State {
            matcher: Matcher::new(&*hooks),
            hooks,
            store,
            dispatcher,
            metrics,
            token: config.token,
        });
        Ok(Service {
            listener,
            state,
            dispatching,
            pruning,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address the API listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then stops accepting, lets requests and attempts in
    /// flight finish for up to the shutdown grace, and returns. Nothing pending is lost: it
    /// stays in the store for the next start.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let builder = hyper::server::conn::http1::Builder::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors, say: wait rather than spin.
                            tracing::warn!("cannot accept a connection: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let state = self.state.clone();
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(api::handle(state, request).await) }
                    });
                    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("connection ended: {e}");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        tracing::info!("shutting down: finishing requests and attempts in flight");
        self.state.dispatcher.shutdown();
        self.pruning.abort();
        let finish = async {
            graceful.shutdown().await;
            let _ = self.dispatching.await;
        };
        if tokio::time::timeout(self.shutdown_grace, finish)
            .await
            .is_err()
        {
            tracing::warn!(
                "the shutdown grace ran out; what was in flight stays pending in the store"
            );
        }
    }
}

/// Identifies a hook list, so that a store's deliveries are never sent to a different list's
/// hooks: the SHA-256 of the hooks' canonical JSON.
fn fingerprint(hooks: &[Hook]) -> String {
    let canonical = serde_json::to_vec(hooks).expect("hooks serialize");
    let digest = sha2::Sha256::digest(&canonical);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn prune_forever(store: Store, retention: Duration) {
    loop {
        let cutoff = SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        loop {
            match store.prune(cutoff).await {
                Ok(0) => break,
                Ok(n) => tracing::info!("pruned {n} delivered records older than the retention"),
                Err(e) => {
                    tracing::warn!("cannot prune the store: {e}");
                    break;
                }
            }
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}
