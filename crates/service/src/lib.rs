//! The dispatcher service behind `linq-hooks serve`.
//!
//! A scheduler registers workflows and their hooks over HTTP (`PUT /v1/workflows/{id}`), then
//! hands the service each event of a workflow's runs; the service stores it with one delivery
//! per hook that fires in a durable outbox ([`linq_hooks_outbox::Store`]), answers 202 once that
//! is committed, and delivers in the background with the
//! [`Dispatcher`]: in order per hook, retrying for hours,
//! signed with the workflow's own secret, surviving restarts. Hooks are live data: a workflow
//! can be replaced while deliveries wait, and a hook that stays keeps its id and its queue.
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `PUT /v1/workflows/{workflow_id}` | creates (201, with the secret) or replaces (200) a workflow's hooks |
//! | `GET /v1/workflows`, `GET`/`DELETE /v1/workflows/{workflow_id}` | the registry |
//! | `GET /v1/workflows/{workflow_id}/secret`, `POST …/secret/rotate` | the workflow's signing secret |
//! | `POST /v1/workflows/{workflow_id}/events` | events of that workflow: 202 after a durable commit |
//! | `POST /v1/events` | events of the workflow `default` |
//! | `GET /v1/hooks`, `GET`/`PATCH /v1/hooks/{hook_id}`, `POST /v1/hooks/{hook_id}/enable` | hooks by id |
//! | `POST /v1/hooks/{hook_id}/retry`, `POST /v1/hooks/{hook_id}/recover?since=…` | a hook's queue now; its failed deliveries replayed |
//! | `GET /v1/deliveries?workflow=…&hook=…&state=…&since=…&until=…&status=…&cursor=…`, `GET /v1/deliveries/{id}`, `POST /v1/deliveries/{id}/retry` | deliveries, newest first; retry now or replay |
//! | `GET /v1/events/{id}` | an event's body and its deliveries |
//! | `GET /healthz`, `GET /metrics`, `GET /v1/openapi.json` | operations |
//! | `GET /v1/stats/deliveries?minutes=…&hook=…` | attempts per hook per minute, the last hour |
//! | `GET /ui` (`GET /` redirects there) | the web dashboard: HTML, script and style embedded in the binary, no token needed to load it |
//!
//! With [`ServiceConfig::ops`], events about the dispatcher itself (`hook.disabled`,
//! `delivery.failed`, `hook.recovered`; [`linq_hooks_events::ops`]) are posted to one more URL.
//!
//! The whole API is described by [`openapi`] (also `schemas/openapi.json`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use linq_hooks_service::{Service, ServiceConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = Arc::new(linq_hooks_http::HttpTransport::new()?);
//! let service = Service::start(ServiceConfig::new("linq-hooks.redb"), transport).await?;
//! println!("listening on {}", service.local_addr());
//! service.run_until(async { tokio::signal::ctrl_c().await.unwrap() }).await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod api;
mod live;
mod metrics;
mod observe;
mod ops;
mod serving;
mod stats;
mod ui;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{Config, Dispatcher, RetryPolicy};
use linq_hooks_model::Hook;
use linq_hooks_outbox::{DurableOutbox, Store, StoreError, WorkflowChange};
use linq_hooks_transport::Transport;
use tokio::net::TcpListener;

use crate::api::AppState;
pub use crate::api::openapi;
pub use crate::live::DEFAULT_WORKFLOW;
use crate::live::{ChangeError, Live};
use crate::metrics::Metrics;
use crate::observe::{ObservedOutbox, Observer};
use crate::ops::OpsSender;
pub use crate::ops::OpsWebhooks;
pub use crate::serving::{Limits, serve};

/// How often delivered records older than the retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How the service runs. Every field has the documented default of `linq-hooks serve`.
///
/// ```
/// let config = linq_hooks_service::ServiceConfig::new("store.redb");
/// assert_eq!(config.listen.to_string(), "127.0.0.1:8625");
/// assert_eq!(config.delivery.policy.to_string(), "5s,5m,30m,2h,5h,10h,10h");
/// assert_eq!(config.limits.max_connections, 1024);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Hooks to make the workflow [`DEFAULT_WORKFLOW`] at start (`serve --hooks FILE`), applied
    /// with the same rules as a `PUT`: hooks that stay keep their ids and queues. `None` leaves
    /// the registry as stored.
    pub default_hooks: Option<Vec<Hook>>,
    /// Where events, deliveries and the registry are kept: a redb file (the default, for one
    /// machine) or a PostgreSQL database several `serve` processes share.
    pub store: StoreLocation,
    /// How long a process's lease on a hook lasts without being renewed, with a PostgreSQL
    /// store: when a process dies, the others take over its hooks within this time (and a
    /// third of it). Default 10 s; a redb store ignores it.
    pub lease: Duration,
    /// Where the API listens (default `127.0.0.1:8625`).
    pub listen: SocketAddr,
    /// When set, every endpoint but `/healthz` and the dashboard (`/ui`, which holds no data)
    /// requires `Authorization: Bearer <token>`.
    /// Required to listen on anything but a loopback address.
    pub token: Option<String>,
    /// Requests in flight and the retry schedule (default for the service: 5s, 5m, 30m, 2h, 5h,
    /// 10h, 10h). Its secrets, when given (`--secret`), are the `default` workflow's; every
    /// other workflow has its own, made when it is created.
    pub delivery: Config,
    /// How long requests in flight may take to finish at shutdown (default 10 s).
    pub shutdown_grace: Duration,
    /// How long delivered records are kept (default 7 days).
    pub retention: Duration,
    /// How long an ingest's `Idempotency-Key` is remembered: a repeat within it stores nothing
    /// and gets the first answer (default 24 h).
    pub idempotency_window: Duration,
    /// What a client may hold, before authentication: header (and idle), body and write
    /// timeouts, and the cap on open connections (defaults 10 s, 30 s, 30 s, 1024; see
    /// [`Limits`]).
    pub limits: Limits,
    /// Where to post operational webhooks (`hook.disabled`, `delivery.failed`,
    /// `hook.recovered`; `serve --ops-url`), if anywhere (default: nowhere).
    pub ops: Option<OpsWebhooks>,
}

impl ServiceConfig {
    /// The defaults, for this store: a file path, or a `postgres://` URL (see
    /// [`StoreLocation::parse`]).
    pub fn new(store: impl Into<StoreLocation>) -> ServiceConfig {
        ServiceConfig {
            default_hooks: None,
            store: store.into(),
            lease: Duration::from_secs(10),
            listen: SocketAddr::from(([127, 0, 0, 1], 8625)),
            token: None,
            delivery: Config::default().policy(RetryPolicy::service_default()),
            shutdown_grace: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            idempotency_window: Duration::from_secs(24 * 60 * 60),
            limits: Limits::default(),
            ops: None,
        }
    }
}

/// Where the service keeps its data: a redb file, or a PostgreSQL database.
///
/// ```
/// use linq_hooks_service::StoreLocation;
/// assert!(matches!(StoreLocation::parse("store.redb"), StoreLocation::File(_)));
/// assert!(matches!(
///     StoreLocation::parse("postgres://hooks@db.lab.example/hooks"),
///     StoreLocation::Postgres(_)
/// ));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreLocation {
    /// A redb file on this machine, created if missing; one `serve` at a time uses it.
    File(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`, as libpq reads it:
    /// `postgres://user:password@host:port/database?sslmode=require`), shared by every `serve`
    /// given it.
    Postgres(String),
}

impl StoreLocation {
    /// A `postgres://` or `postgresql://` URL is a PostgreSQL database; anything else is the
    /// path of a redb file, but for a text that looks like a URL of another scheme
    /// (`scheme://…`, a mistyped `POSTGRES://` or `pg://`, say), taken as a PostgreSQL URL so
    /// that opening it says it is none, without showing its password.
    ///
    /// ```
    /// use linq_hooks_service::StoreLocation;
    /// assert!(matches!(StoreLocation::parse("pg://u:pw@db/hooks"), StoreLocation::Postgres(_)));
    /// assert!(matches!(StoreLocation::parse("./hooks.redb"), StoreLocation::File(_)));
    /// ```
    pub fn parse(text: &str) -> StoreLocation {
        let looks_like_url = text.split_once("://").is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if looks_like_url {
            StoreLocation::Postgres(text.to_string())
        } else {
            StoreLocation::File(PathBuf::from(text))
        }
    }

    /// Opens the store. A PostgreSQL database gets its tables (or their newer versions) first;
    /// `lease` is how long this process's hook leases last there.
    async fn open(&self, lease: Duration) -> Result<Arc<dyn DurableOutbox>, StoreError> {
        match self {
            StoreLocation::File(path) => Ok(Arc::new(Store::open(path)?)),
            StoreLocation::Postgres(url) => {
                let options = linq_hooks_outbox::PgOptions::new(url)?.lease(lease);
                Ok(Arc::new(
                    linq_hooks_outbox::PgStore::connect(options).await?,
                ))
            }
        }
    }
}

impl From<&str> for StoreLocation {
    fn from(text: &str) -> StoreLocation {
        StoreLocation::parse(text)
    }
}

impl From<String> for StoreLocation {
    fn from(text: String) -> StoreLocation {
        StoreLocation::parse(&text)
    }
}

impl From<PathBuf> for StoreLocation {
    fn from(path: PathBuf) -> StoreLocation {
        StoreLocation::File(path)
    }
}

impl From<&std::path::Path> for StoreLocation {
    fn from(path: &std::path::Path) -> StoreLocation {
        StoreLocation::File(path.to_path_buf())
    }
}

impl From<&PathBuf> for StoreLocation {
    fn from(path: &PathBuf) -> StoreLocation {
        StoreLocation::File(path.clone())
    }
}

/// Why the service could not start.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let mut config = linq_hooks_service::ServiceConfig::new("unused.redb");
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
    Default(RegistryError),
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

    /// The store could not be opened (unwritable, locked by another `serve`, another format),
    /// or the `default` workflow could not be stored in it.
    pub fn is_store(&self) -> bool {
        matches!(
            self.kind,
            StartErrorKind::Store(_) | StartErrorKind::Default(_)
        )
    }

    /// The store file is held by another process (another `linq-hooks serve` on the same
    /// `--store`): see [`StoreError::is_in_use`](linq_hooks_outbox::StoreError::is_in_use).
    /// Also [`is_store`](StartError::is_store).
    pub fn is_store_in_use(&self) -> bool {
        matches!(&self.kind, StartErrorKind::Store(e) if e.is_in_use())
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
            StartErrorKind::Bind(addr, _) => write!(f, "cannot listen on {addr}"),
            StartErrorKind::Store(_) => f.write_str("cannot use the store"),
            StartErrorKind::Default(_) => {
                f.write_str("cannot register the hook file as the workflow `default`")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            StartErrorKind::Insecure(_) | StartErrorKind::EmptyToken => None,
            StartErrorKind::Bind(_, e) => Some(e),
            StartErrorKind::Store(e) => Some(e),
            StartErrorKind::Default(e) => Some(e),
        }
    }
}

/// A started service: the store is open, the port bound, the dispatcher running.
pub struct Service {
    listener: TcpListener,
    state: Arc<AppState>,
    dispatching: tokio::task::JoinHandle<()>,
    /// The operational webhooks' own dispatcher, when `--ops-url` is set.
    ops_dispatching: Option<tokio::task::JoinHandle<()>>,
    pruning: tokio::task::JoinHandle<()>,
    /// Follows other processes' registry changes (a shared store only).
    following: Option<tokio::task::JoinHandle<()>>,
    shutdown_grace: Duration,
    limits: Limits,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("listen", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// A handle on a running service's registry, for changes from outside the API (`serve`
/// re-reading its `--hooks` file on SIGHUP). Clones share the service.
///
/// ```no_run
/// # async fn reload(service: &linq_hooks_service::Service) -> Result<(), Box<dyn std::error::Error>> {
/// let hooks = linq_hooks_model::parse_hooks(&std::fs::read_to_string("hooks.json")?)?.hooks;
/// let change = service.registry().put(linq_hooks_service::DEFAULT_WORKFLOW, hooks).await?;
/// println!("{} kept, {} added, {} removed", change.kept.len(), change.added.len(), change.removed.len());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Registry {
    live: Arc<Live>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Why a registry change failed.
///
/// ```
/// fn explain(e: &linq_hooks_service::RegistryError) -> String {
///     format!("not applied: {e}")
/// }
/// ```
#[derive(Debug)]
pub struct RegistryError(ChangeError);

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ChangeError::NotFound => f.write_str("no such workflow or hook"),
            ChangeError::Store(_) => f.write_str("the store failed"),
            ChangeError::Random(_) => f.write_str("no random source for a secret"),
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            ChangeError::NotFound => None,
            ChangeError::Store(e) => Some(e),
            ChangeError::Random(e) => Some(e),
        }
    }
}

impl RegistryError {
    /// No such workflow or hook.
    pub fn is_not_found(&self) -> bool {
        matches!(self.0, ChangeError::NotFound)
    }

    /// The store failed (nothing was changed).
    pub fn is_store(&self) -> bool {
        matches!(self.0, ChangeError::Store(_))
    }
}

impl Registry {
    /// Creates or replaces workflow `id` with `hooks`, as `PUT /v1/workflows/{id}` does (hooks
    /// that fire like one already there keep its id and queue; the others' pending deliveries
    /// are cancelled), committed durably before it returns. See [`Registry`] for an example.
    ///
    /// # Errors
    ///
    /// The store failed ([`RegistryError::is_store`]); nothing was changed.
    pub async fn put(&self, id: &str, hooks: Vec<Hook>) -> Result<WorkflowChange, RegistryError> {
        self.live
            .put(id.to_string(), hooks)
            .await
            .map_err(RegistryError)
    }
}

impl Service {
    /// Binds the address, opens the store, applies [`ServiceConfig::default_hooks`] and starts
    /// delivering what the store holds. The address is bound first, so a port in use leaves no
    /// new store file behind.
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
        let store_error = |e| StartError {
            kind: StartErrorKind::Store(e),
        };
        // The address first: a port in use must not leave a new, empty store file behind.
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError {
                kind: StartErrorKind::Bind(config.listen, e),
            })?;
        let store = config.store.open(config.lease).await.map_err(store_error)?;
        // Taken before the registry is loaded: a change another process makes meanwhile is
        // kept for `follow` (before the take, the store drops what it hears).
        let workflow_changes = store.workflow_changes();
        let metrics = Arc::new(Metrics::new());
        let ops = config
            .ops
            .map(|ops| OpsSender::new(ops, Arc::clone(&transport), metrics.ops_dropped.clone()));
        let observer = Arc::new(Observer::new(metrics.clone(), ops));
        let outbox = Arc::new(ObservedOutbox {
            store: Arc::clone(&store),
            observer: observer.clone(),
        });
        let default_secrets =
            (!config.delivery.secrets.is_empty()).then(|| config.delivery.secrets.clone());
        let dispatcher = Dispatcher::without_hooks(transport, outbox, config.delivery);
        let live = Arc::new(
            Live::load(
                Arc::clone(&store),
                dispatcher.clone(),
                default_secrets,
                observer.clone(),
            )
            .await
            .map_err(store_error)?,
        );
        if let Some(hooks) = config.default_hooks {
            let change = live
                .put(DEFAULT_WORKFLOW.to_string(), hooks)
                .await
                .map_err(|e| StartError {
                    kind: StartErrorKind::Default(RegistryError(e)),
                })?;
            log_change(&change);
        }
        live.store_pinned_secret().await.map_err(store_error)?;
        let dispatching = tokio::spawn({
            let dispatcher = dispatcher.clone();
            async move { dispatcher.run().await }
        });
        let ops_dispatching = observer.ops().map(|ops| {
            let dispatcher = ops.dispatcher.clone();
            tokio::spawn(async move { dispatcher.run().await })
        });
        let pruning = tokio::spawn(prune_forever(Arc::clone(&store), config.retention));
        let following =
            workflow_changes.map(|changes| tokio::spawn(follow(Arc::clone(&live), changes)));
        let state = Arc::new(AppState {
            live,
            metrics,
            token: config.token,
            idempotency_window: config.idempotency_window,
        });
        Ok(Service {
            listener,
            state,
            dispatching,
            ops_dispatching,
            pruning,
            following,
            shutdown_grace: config.shutdown_grace,
            limits: config.limits,
        })
    }

    /// The address the API listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where the store is, for logs: the file's path, or the PostgreSQL URL without its
    /// password.
    pub fn store_location(&self) -> String {
        self.state.live.store.location()
    }

    /// A handle for registry changes while the service runs (example on [`Registry`]).
    pub fn registry(&self) -> Registry {
        Registry {
            live: Arc::clone(&self.state.live),
        }
    }

    /// Serves until `shutdown` completes; then stops accepting, lets requests and attempts in
    /// flight finish for up to the shutdown grace, and returns. Nothing pending is lost: it
    /// stays in the store for the next start.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = api::router(Arc::clone(&self.state));
        let mut serving = tokio::spawn(serve(self.listener, app, self.limits, async move {
            let _ = stopped.await;
        }));
        tokio::select! {
            result = &mut serving => {
                tracing::error!(result = ?result, "the API stopped serving");
            }
            () = shutdown => {}
        }
        tracing::info!("shutting down: finishing requests and attempts in flight");
        let _ = stop.send(());
        self.state.live.dispatcher.shutdown();
        if let Some(ops) = self.state.live.observer.ops() {
            // What it has not sent is lost: operational webhooks are kept in memory only.
            ops.dispatcher.shutdown();
        }
        self.pruning.abort();
        if let Some(following) = &self.following {
            following.abort();
        }
        let finish = async {
            let _ = (&mut serving).await;
            let _ = self.dispatching.await;
            if let Some(ops) = self.ops_dispatching {
                let _ = ops.await;
            }
        };
        if tokio::time::timeout(self.shutdown_grace, finish)
            .await
            .is_err()
        {
            serving.abort();
            tracing::warn!(
                "the shutdown grace ran out; what was in flight stays pending in the store"
            );
        }
        // Lets the other processes sharing the store take this one's hooks over at once.
        self.state.live.store.close().await;
    }
}

/// One line for a registry change, at `info`: the workflow, whether it was created, the hooks
/// kept, added and removed (`hook_N`, comma-separated) and the pending deliveries cancelled.
///
/// ```no_run
/// # async fn reload(service: &linq_hooks_service::Service, hooks: Vec<linq_hooks_model::Hook>) {
/// let change = service.registry().put("default", hooks).await.unwrap();
/// linq_hooks_service::log_change(&change);
/// // INFO workflow registered workflow=default created=false kept=hook_1 added=hook_4 removed=hook_2 cancelled_deliveries=3
/// # }
/// ```
pub fn log_change(change: &WorkflowChange) {
    let names = |hooks: &[linq_hooks_delivery::HookId]| {
        hooks
            .iter()
            .map(|hook| format!("hook_{hook}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        workflow = %change.workflow.id,
        created = change.created,
        kept = names(&change.kept).as_str(),
        added = names(&change.added).as_str(),
        removed = names(&change.removed).as_str(),
        cancelled_deliveries = change.cancelled_deliveries,
        "workflow registered"
    );
}

/// Keeps this process's registry in step with the workflows other processes sharing the store
/// change.
async fn follow(live: Arc<Live>, mut changes: tokio::sync::mpsc::UnboundedReceiver<String>) {
    while let Some(id) = changes.recv().await {
        if let Err(e) = live.reload(id.clone()).await {
            // The next change of it, or a restart, brings it in step.
            tracing::warn!(
                workflow = %id,
                error = &e as &dyn std::error::Error,
                "cannot read a workflow another process changed"
            );
        }
    }
}

async fn prune_forever(store: Arc<dyn DurableOutbox>, retention: Duration) {
    loop {
        let cutoff = SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        loop {
            match store.prune(cutoff).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(
                    pruned = n,
                    "pruned delivered records older than the retention"
                ),
                Err(e) => {
                    // The subscriber prints the error's sources too (`error.sources=[…]`).
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot prune the store"
                    );
                    break;
                }
            }
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}
