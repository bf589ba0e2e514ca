//! The PostgreSQL store ([`PgStore`], feature `postgres`): the same outbox and registry as the
//! redb [`Store`](crate::Store), in a database that several `linq-hooks serve` processes
//! share.
//!
//! - `mod.rs`: options, connecting (pool, TLS, migrations), the helpers every query uses;
//! - `migrations/`: the schema, applied at [`PgStore::connect`] by refinery (embedded);
//! - `registry.rs`: workflows, hooks and secrets; `ingest.rs`: appends and the operations on
//!   deliveries (replay, retry, recover, enable, prune); `reads.rs`: the reads of the API;
//! - `outbox.rs`: [`Outbox`](linq_hooks_delivery::Outbox) (head, record) and
//!   [`DurableOutbox`](crate::DurableOutbox);
//! - `cluster.rs`: the hooks' leases, the processes, LISTEN/NOTIFY and health.
//!
//! Every change commits in one transaction, and its `NOTIFY` (`h:<hook>,…` for hooks with new
//! or newly-due work, `w:<workflow>` for a workflow changed) is sent inside it, so that other
//! processes hear of it exactly when it is visible.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::config::SslMode;

use crate::StoreError;

mod cluster;
mod ingest;
mod outbox;
mod reads;
mod registry;

use cluster::Cluster;

mod embedded {
    refinery::embed_migrations!("src/postgres/migrations");
}

/// How long one operation on the database may take by default, whole (waiting for a
/// connection included), before it fails: a database that went away is an error, never a hang.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take (unless the URL says `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The advisory lock key the migrations run under, so that processes starting together apply
/// them once ("linq-hooks" in ASCII, truncated to 8 bytes).
const MIGRATION_LOCK: i64 = 0x6c69_6e71_2d68_6f6f;
/// The advisory lock key of the registry: registry changes hold it exclusively, ingests and
/// replays shared, so that a delivery is never stored pending for a hook being removed.
pub(crate) const REGISTRY_LOCK: i64 = 0x6c69_6e71_2d72_6567;
/// The NOTIFY channel.
pub(crate) const CHANNEL: &str = "linq_hooks";
/// The most bytes of one NOTIFY payload (PostgreSQL refuses 8000 and more).
const MAX_PAYLOAD: usize = 7900;

/// How to reach a PostgreSQL store, for [`PgStore::connect`].
///
/// The URL is libpq's (`postgres://user:password@host:port/database?param=value`); the
/// parameters tokio-postgres reads apply (`connect_timeout`, `application_name`, `options`,
/// `sslmode`, …). `sslmode=require` (or `verify-ca`, `verify-full`) connects with TLS through
/// rustls, the server's certificate verified against the platform's roots, or against the CA
/// certificates (PEM) of the file `sslrootcert=<path>` names (so `require` verifies too,
/// unlike libpq's); any other `sslmode` (or none) connects without TLS.
///
/// ```
/// use std::time::Duration;
/// use linq_hooks_outbox::PgOptions;
///
/// let options = PgOptions::new("postgres://hooks:secret@db.example/hooks?sslmode=require")?
///     .lease(Duration::from_secs(20));
/// assert_eq!(options.location(), "postgres://hooks@db.example/hooks?sslmode=require");
///
/// let err = PgOptions::new("mysql://db.example/hooks").unwrap_err();
/// assert!(err.to_string().contains("postgres://"));
/// # Ok::<(), linq_hooks_outbox::StoreError>(())
/// ```
#[derive(Clone)]
pub struct PgOptions {
    url: String,
    config: tokio_postgres::Config,
    tls: bool,
    /// `sslrootcert`: the CA certificates (PEM) to verify the server with, instead of the
    /// platform's roots.
    root_cert: Option<std::path::PathBuf>,
    lease: Duration,
    max_connections: usize,
    timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("location", &self.location())
            .field("tls", &self.tls)
            .field("root_cert", &self.root_cert)
            .field("lease", &self.lease)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PgOptions {
    /// Options for the database at `url` (`postgres://…` or `postgresql://…`), with a lease of
    /// 10 s and at most 16 connections.
    ///
    /// # Errors
    ///
    /// The URL is not a `postgres://` or `postgresql://` URL, or tokio-postgres cannot read it
    /// (the error says why).
    pub fn new(url: &str) -> Result<PgOptions, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::database(
                format!(
                    "the store URL `{}` is not a PostgreSQL URL (postgres://… or postgresql://…)",
                    redact(url)
                ),
                "a PostgreSQL store's URL is postgres://user:password@host:port/database \
                 (or postgresql://…)",
            ));
        }
        // tokio-postgres knows `disable`, `prefer` and `require`, and not `sslrootcert`;
        // libpq's verifying modes are what rustls does anyway.
        let TlsParams {
            url: parsed,
            verify,
            root_cert,
        } = tls_params(url);
        let config: tokio_postgres::Config = parsed.parse().map_err(|e| {
            StoreError::database(format!("cannot read the store URL `{}`", redact(url)), e)
        })?;
        let tls = verify || config.get_ssl_mode() == SslMode::Require;
        Ok(PgOptions {
            url: url.to_string(),
            config,
            tls,
            root_cert,
            lease: Duration::from_secs(10),
            max_connections: 16,
            timeout: OPERATION_TIMEOUT,
        })
    }

    /// How long a process's lease on a hook lasts without being renewed: a process that dies
    /// has its hooks taken over by the others within about this time (plus a third of it).
    /// Default 10 s.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = linq_hooks_outbox::PgOptions::new("postgres://localhost/hooks")?
    ///     .lease(Duration::from_secs(5));
    /// # Ok::<(), linq_hooks_outbox::StoreError>(())
    /// ```
    pub fn lease(mut self, lease: Duration) -> PgOptions {
        self.lease = lease;
        self
    }

    /// The most connections of the pool the store's work shares (default 16; at least 2). The
    /// process opens two more of its own: the LISTEN connection and the one its leases are
    /// renewed on, so that a busy pool never lets them expire.
    ///
    /// ```
    /// let options = linq_hooks_outbox::PgOptions::new("postgres://localhost/hooks")?
    ///     .max_connections(32);
    /// # Ok::<(), linq_hooks_outbox::StoreError>(())
    /// ```
    pub fn max_connections(mut self, n: usize) -> PgOptions {
        self.max_connections = n.max(2);
        self
    }

    /// How long one operation (a read, an ingest, recording an attempt) may take, waiting for
    /// a connection included, before it fails with a storage error (default 30 s): a database
    /// that stops answering without closing its connections is an error after this long,
    /// never a hang. Also the server's `statement_timeout` unless the URL sets `options`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let options = linq_hooks_outbox::PgOptions::new("postgres://localhost/hooks")?
    ///     .timeout(Duration::from_secs(10));
    /// # Ok::<(), linq_hooks_outbox::StoreError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> PgOptions {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The URL without its password, for logs: the authority without it, and of the query only
    /// libpq's connection keywords before any `password=` (what follows one may be the rest of
    /// a password with an `&`).
    ///
    /// ```
    /// let options = linq_hooks_outbox::PgOptions::new("postgresql://app:s3cret@db:5432/hooks")?;
    /// assert_eq!(options.location(), "postgresql://app@db:5432/hooks");
    /// # Ok::<(), linq_hooks_outbox::StoreError>(())
    /// ```
    pub fn location(&self) -> String {
        redact(&self.url)
    }
}

/// What [`tls_params`] takes out of a URL.
struct TlsParams {
    /// The URL as tokio-postgres reads it.
    url: String,
    /// It said `sslmode=verify-ca` or `verify-full`.
    verify: bool,
    /// Its `sslrootcert`.
    root_cert: Option<std::path::PathBuf>,
}

/// The URL with `sslmode=verify-ca`/`verify-full` read as `require` (which tokio-postgres
/// knows) and `sslrootcert` taken out (which it does not).
fn tls_params(url: &str) -> TlsParams {
    let Some((base, query)) = url.split_once('?') else {
        return TlsParams {
            url: url.to_string(),
            verify: false,
            root_cert: None,
        };
    };
    let (mut verify, mut root_cert) = (false, None);
    let params: Vec<String> = query
        .split('&')
        .filter_map(|param| match param.split_once('=') {
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                Some("sslmode=require".to_string())
            }
            Some(("sslrootcert", path)) => {
                root_cert = Some(std::path::PathBuf::from(path));
                None
            }
            _ => Some(param.to_string()),
        })
        .collect();
    let url = if params.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", params.join("&"))
    };
    TlsParams {
        url,
        verify,
        root_cert,
    }
}

/// The URL parameters `redact` keeps: libpq's connection keywords that tokio-postgres reads,
/// without `password`.
const SHOWN_PARAMETERS: &[&str] = &[
    "user",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "sslnegotiation",
];

/// `url` without its password, as [`PgOptions::location`] says.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let mut end = rest.find(['/', '?']).unwrap_or(rest.len());
    // A password with `/` or `?` not percent-encoded (base64 passwords have `/`) ends what
    // looks like the authority early: an `@` after it, with a `:` before it, ends the
    // credentials instead (showing too little rather than the password).
    if let Some(at) = rest.rfind('@')
        && at > end
        && rest[..end].contains(':')
    {
        end = at + rest[at..].find(['/', '?']).unwrap_or(rest.len() - at);
    }
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(user, _)| user);
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((path, query)) => {
            // Only the parameters libpq knows, bar the password, are shown, and none after a
            // password: one with an `&` not percent-encoded goes on in what looks like other
            // parameters (`password=a&port=5` may be the password `a&port=5`).
            let query: Vec<&str> = query
                .split('&')
                .take_while(|param| !param.starts_with("password="))
                .filter(|param| {
                    param
                        .split_once('=')
                        .is_some_and(|(key, _)| SHOWN_PARAMETERS.contains(&key))
                })
                .collect();
            if query.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", query.join("&"))
            }
        }
        None => path.to_string(),
    };
    if scheme.is_empty() {
        format!("{authority}{path}")
    } else {
        format!("{scheme}://{authority}{path}")
    }
}

/// The TLS a connection uses.
#[derive(Clone)]
pub(crate) enum Tls {
    None,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// How to open a connection: the pool's, and those of one's own (the LISTEN and lease
/// connections, the migrations').
#[derive(Clone)]
pub(crate) struct Connect {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Tls,
}

/// `application_name` of the pool's connections (unless the URL names one).
const POOL_NAME: &str = "linq-hooks";

impl Connect {
    /// This, with `name` as `application_name` unless the URL gave one: an operator tells the
    /// connections apart in `pg_stat_activity`.
    pub(crate) fn named(&self, name: &str) -> Connect {
        let mut named = self.clone();
        if named.config.get_application_name().is_none() {
            named.config.application_name(name);
        }
        named
    }

    /// A client whose connection is driven by a task of its own (ended when the client is
    /// dropped or the connection fails).
    pub(crate) async fn client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match &self.tls {
            Tls::None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                Ok(client)
            }
            Tls::Rustls(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(connection);
                Ok(client)
            }
        }
    }
}

/// A PostgreSQL store: the outbox and the registry of [`Store`](crate::Store), in a database
/// several `linq-hooks serve` processes share.
///
/// Each method means what the redb store's method of the same name means (see
/// [`DurableOutbox`](crate::DurableOutbox)); it implements
/// [`Outbox`](linq_hooks_delivery::Outbox) for the dispatcher, answering only for the hooks
/// this process holds a lease on. An ingest ([`append`](crate::DurableOutbox::append)) answers
/// once its transaction is committed. A lost connection is an error of the operation that
/// met it (never a hang: each operation is bounded, 30 s by default, [`PgOptions::timeout`]);
/// the pool connects again once the database is back.
///
/// Clones share the pool.
///
/// ```no_run
/// use linq_hooks_outbox::{DurableOutbox, PgOptions, PgStore};
///
/// # async fn run() -> Result<(), linq_hooks_outbox::StoreError> {
/// let store = PgStore::connect(PgOptions::new("postgres://hooks@127.0.0.1/hooks")?).await?;
/// let hooks = linq_hooks_model::parse_hooks(
///     r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/plans"}}]"#,
/// ).unwrap().hooks;
/// let secret = linq_hooks_signature::Secret::generate().unwrap();
/// let change = store.put_workflow("lab-a".into(), hooks, secret).await?;
/// assert_eq!(change.added.len(), 1);
/// store.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    pool: deadpool_postgres::Pool,
    cluster: Cluster,
    timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects: opens the pool, applies the migrations the database lacks (under an advisory
    /// lock, so processes starting together apply them once), registers this process and
    /// starts its lease loop and listener.
    ///
    /// # Errors
    ///
    /// The database cannot be reached (within 5 s, or the URL's `connect_timeout`), refuses
    /// the credentials, or its schema is newer than this version's or cannot be migrated.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), linq_hooks_outbox::StoreError> {
    /// use std::time::Duration;
    /// use linq_hooks_outbox::{DurableOutbox, PgOptions, PgStore};
    ///
    /// let options = PgOptions::new("postgres://hooks@db.example/hooks?sslmode=verify-full")?
    ///     .lease(Duration::from_secs(10));
    /// let store = PgStore::connect(options).await?;
    /// println!("{} deliveries pending at {}", store.pending().await?, store.location());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(options: PgOptions) -> Result<PgStore, StoreError> {
        let location = options.location();
        let mut config = options.config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_options().is_none() {
            config.options(format!(
                "-c statement_timeout={}",
                options.timeout.as_millis()
            ));
        }
        // A database that vanishes without closing the connection (a partition, a powered-off
        // machine): the connection fails once data goes unacknowledged for 20 s, or an idle
        // one fails its keepalives, so the pool replaces it instead of handing it out again.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.keepalives_interval(Duration::from_secs(10));
        config.keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(20));
        let tls =
            if options.tls {
                Tls::Rustls(rustls_connector(options.root_cert.as_deref()).map_err(|e| {
                    StoreError::database(format!("cannot set up TLS to {location}"), e)
                })?)
            } else {
                Tls::None
            };
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let connect = Connect { config, tls };
        let pooled = connect.named(POOL_NAME);
        let manager = match pooled.tls {
            Tls::None => deadpool_postgres::Manager::from_config(
                pooled.config,
                tokio_postgres::NoTls,
                manager_config,
            ),
            Tls::Rustls(tls) => {
                deadpool_postgres::Manager::from_config(pooled.config, tls, manager_config)
            }
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(options.max_connections)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::database(format!("cannot open a pool to {location}"), e))?;
        migrate(&connect)
            .await
            .map_err(|e| e.context(&format!("cannot prepare the store at {location}")))?;
        let cluster = Cluster::start(connect, options.lease).await?;
        Ok(PgStore {
            inner: Arc::new(Inner {
                location,
                pool,
                timeout: options.timeout,
                cluster,
            }),
        })
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    pub(crate) fn location_text(&self) -> String {
        self.inner.location.clone()
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Fail> {
        Ok(self.inner.pool.get().await?)
    }

    /// Runs `run` bounded by the operation timeout ([`PgOptions::timeout`]); its errors become
    /// `cannot {what}`.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        run: impl Future<Output = Result<T, Fail>>,
    ) -> Result<T, StoreError> {
        let limit = self.inner.timeout;
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result.map_err(|e| e.context(&format!("cannot {what}"))),
            Err(_) => Err(StoreError::database(
                format!("cannot {what}"),
                format!("the database did not answer within {limit:?}"),
            )),
        }
    }
}

/// A TLS connector (rustls, ring) that verifies the server against the CA certificates in
/// `root_cert` (PEM), or the platform's roots.
fn rustls_connector(
    root_cert: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "sslrootcert {} holds no certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!(
                    "no root certificates found on this machine ({} errors reading them); \
                     name the database's CA with sslrootcert=<path> in the URL",
                    found.errors.len()
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Applies the embedded migrations, once across processes (an advisory lock on a connection
/// of its own, released when it closes).
async fn migrate(connect: &Connect) -> Result<(), Fail> {
    let mut client = connect.named(POOL_NAME).client().await?;
    // A migration of a large table may take longer than a statement is otherwise allowed.
    client.batch_execute("SET statement_timeout = 0").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| Fail::Other(format!("the migrations failed: {e}")))?;
    for migration in report.applied_migrations() {
        tracing::info!(
            migration = %migration,
            "applied a migration of the PostgreSQL store"
        );
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

/// Why an operation failed, before it is given its context.
#[derive(Debug)]
pub(crate) enum Fail {
    Db(tokio_postgres::Error),
    Pool(deadpool_postgres::PoolError),
    /// Stored data that does not read (a hook's definition, a secret).
    Corrupt(String),
    Other(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Fail {
        Fail::Db(e)
    }
}

impl From<deadpool_postgres::PoolError> for Fail {
    fn from(e: deadpool_postgres::PoolError) -> Fail {
        Fail::Pool(e)
    }
}

impl Fail {
    pub(crate) fn context(self, context: &str) -> StoreError {
        match self {
            Fail::Db(e) => StoreError::database(context, e),
            Fail::Pool(e) => StoreError::database(context, e),
            Fail::Corrupt(why) => StoreError::damaged(context, why),
            Fail::Other(why) => StoreError::database(context, why),
        }
    }
}

/// Milliseconds since the UNIX epoch, as the tables keep times (0 before the epoch).
pub(crate) fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn now_ms() -> i64 {
    millis(SystemTime::now())
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// An id as the tables keep it (`bigint`).
pub(crate) fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// An id read from the tables.
pub(crate) fn id_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A delivery state's code in the tables.
pub(crate) fn state_code(state: crate::DeliveryState) -> i16 {
    use crate::DeliveryState::*;
    match state {
        Pending => 0,
        Delivered => 1,
        Failed => 2,
        Cancelled => 3,
        Quarantined => 4,
    }
}

/// The state of a code in the tables.
pub(crate) fn state_of(code: i16) -> Result<crate::DeliveryState, Fail> {
    use crate::DeliveryState::*;
    Ok(match code {
        0 => Pending,
        1 => Delivered,
        2 => Failed,
        3 => Cancelled,
        4 => Quarantined,
        other => return Err(Fail::Corrupt(format!("unknown delivery state {other}"))),
    })
}

/// Sends each payload of `$2` on channel `$1` (one statement for any number).
pub(crate) const NOTIFY: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// The payloads `h:<id>,<id>,…` that name `hooks` (several when the list is long; none for no
/// hooks).
pub(crate) fn hook_payloads(hooks: impl IntoIterator<Item = u64>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut payload = String::from("h:");
    for hook in hooks {
        let id = hook.to_string();
        if payload.len() > 2 && payload.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut payload, String::from("h:")));
        }
        if payload.len() > 2 {
            payload.push(',');
        }
        payload.push_str(&id);
    }
    if payload.len() > 2 {
        payloads.push(payload);
    }
    payloads
}

/// Sends `h:<id>,<id>,…` for `hooks` (several notifications when the list is long) inside
/// `txn`, so that it is heard when the transaction commits.
pub(crate) async fn notify_hooks(
    txn: &deadpool_postgres::Transaction<'_>,
    hooks: impl IntoIterator<Item = u64>,
) -> Result<(), Fail> {
    let payloads = hook_payloads(hooks);
    if !payloads.is_empty() {
        let statement = txn.prepare_cached(NOTIFY).await?;
        txn.execute(&statement, &[&CHANNEL, &payloads]).await?;
    }
    Ok(())
}

/// Sends `w:<workflow>` inside `txn` (a workflow id too long for one payload is cut: the
/// listeners then reload nothing, which the service's reload of everything at start covers).
pub(crate) async fn notify_workflow(
    txn: &deadpool_postgres::Transaction<'_>,
    workflow: &str,
) -> Result<(), Fail> {
    let mut payload = format!("w:{workflow}");
    if payload.len() > MAX_PAYLOAD {
        let mut end = MAX_PAYLOAD;
        while !payload.is_char_boundary(end) {
            end -= 1;
        }
        payload.truncate(end);
    }
    let statement = txn.prepare_cached(NOTIFY).await?;
    txn.execute(&statement, &[&CHANNEL, &vec![payload]]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_urls_are_accepted() {
        for url in ["postgres://localhost/db", "postgresql://u@h:5433/db"] {
            assert!(PgOptions::new(url).is_ok(), "{url}");
        }
        for url in [
            "mysql://h/db",
            "POSTGRES://h/db",
            "/var/lib/hooks.redb",
            "http://h/db",
            "postgres:/h",
        ] {
            let err = PgOptions::new(url).unwrap_err();
            assert!(err.is_storage(), "{url}");
            assert!(
                err.to_string().contains("not a PostgreSQL URL"),
                "{url}: {err}"
            );
        }
        let err = PgOptions::new("postgres://h/db?sslmode=sometimes").unwrap_err();
        assert!(
            err.to_string().starts_with("cannot read the store URL"),
            "{err}"
        );
    }

    #[test]
    fn tls_when_the_url_asks() {
        assert!(!PgOptions::new("postgres://h/db").unwrap().tls);
        assert!(
            !PgOptions::new("postgres://h/db?sslmode=disable")
                .unwrap()
                .tls
        );
        assert!(
            !PgOptions::new("postgres://h/db?sslmode=prefer")
                .unwrap()
                .tls
        );
        assert!(
            PgOptions::new("postgres://h/db?sslmode=require")
                .unwrap()
                .tls
        );
        assert!(
            PgOptions::new("postgres://h/db?sslmode=verify-full")
                .unwrap()
                .tls
        );
        let options =
            PgOptions::new("postgres://h/db?sslrootcert=/etc/ca.pem&sslmode=require").unwrap();
        assert!(options.tls);
        assert_eq!(
            options.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert!(
            PgOptions::new("postgres://h/db?application_name=x&sslmode=verify-ca")
                .unwrap()
                .tls
        );
    }

    #[test]
    fn long_hook_lists_are_split_under_8000_bytes() {
        assert!(hook_payloads([]).is_empty());
        assert_eq!(hook_payloads([3, 14]), ["h:3,14"]);
        let hooks: Vec<u64> = (1_000_000..1_002_000).collect();
        let payloads = hook_payloads(hooks.iter().copied());
        assert!(payloads.len() > 1);
        assert!(
            payloads
                .iter()
                .all(|p| p.len() < 8000 && p.starts_with("h:"))
        );
        let heard: Vec<u64> = payloads
            .iter()
            .flat_map(|p| p[2..].split(',').map(|id| id.parse::<u64>().unwrap()))
            .collect();
        assert_eq!(heard, hooks);
    }

    #[test]
    fn the_location_has_no_password() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(
            redact("postgres://h/db?sslmode=require&password=pw"),
            "postgres://h/db?sslmode=require"
        );
        // What follows a password may be the rest of it: not shown.
        assert_eq!(
            redact("postgres://h/db?password=pw&sslmode=require"),
            "postgres://h/db"
        );
        assert_eq!(redact("postgres://h/db?password=pw"), "postgres://h/db");
        // An `&` in the password, not percent-encoded: nothing of the password shows.
        assert_eq!(
            redact("postgres://h/db?sslmode=require&password=p&wd&w=x&port=5"),
            "postgres://h/db?sslmode=require"
        );
        assert_eq!(redact("postgresql://u@h"), "postgresql://u@h");
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u@h/db");
    }

    /// A password with `/`, `?` or `#` not percent-encoded (base64 passwords have `/`) is shown
    /// neither by the location nor by the error about an unreadable URL.
    #[test]
    fn a_password_with_a_slash_is_not_shown() {
        for url in [
            "postgres://u:pa/ss@h/db",
            "postgres://u:pa?ss@h/db",
            "postgres://u:pa/s?s@h:5432/db?sslmode=disable",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("pa"), "{url}: {shown}");
            assert!(shown.starts_with("postgres://u@h"), "{url}: {shown}");
            match PgOptions::new(url) {
                Ok(options) => assert!(!options.location().contains("pa"), "{url}"),
                Err(e) => {
                    let text = format!("{e}: {}", e.causes());
                    assert!(!text.contains("pa"), "{url}: {text}");
                }
            }
        }
        assert_eq!(
            redact("postgres://h/db?application_name=a@b"),
            "postgres://h/db?application_name=a@b"
        );
    }
}
