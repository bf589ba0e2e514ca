//! `linq-hooks serve`: the dispatcher service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use linq_hooks_delivery::{Config, RetryPolicy};
use linq_hooks_model::HookParameters;
use linq_hooks_service::{
    DEFAULT_WORKFLOW, OpsWebhooks, Registry, Service, ServiceConfig, StoreLocation, log_change,
};
use linq_hooks_signature::Secret;

use crate::Outcome;
use crate::input::{Input, read_hooks};
use crate::limits;
use crate::options::{Secrets, Sending, positive_duration};
use crate::output::errln;
use crate::report::chain;
use crate::signal::{self, Hangups};
use crate::transports;

/// Run the dispatcher service: workflows and their hooks registered over HTTP, events accepted
/// and stored durably, webhooks delivered.
///
/// A scheduler registers each workflow's hooks with `PUT /v1/workflows/{id}` (any document
/// `validate` reads; the answer of the PUT that creates it holds the workflow's signing secret),
/// then posts each event of a run to `POST /v1/workflows/{id}/events`; the answer (202) comes
/// once the event and its deliveries are committed to the store (a redb file, or PostgreSQL with --store postgres://…), so nothing acknowledged
/// is lost, even if `serve` is killed. Deliveries go out in order per hook, retried on the
/// schedule for hours, over HTTP for `http(s)://` hook URLs and MQTT 5 for `mqtt(s)://` ones
/// (QoS 1 to the broker, signature headers as user properties). A workflow can be replaced while deliveries wait: a hook that fires for
/// the same events keeps its id and its queue, and its waiting deliveries go to its new URL.
///
/// With --hooks FILE, FILE is the workflow `default` (its events go to `POST /v1/events`),
/// applied at start and again on SIGHUP. The whole API: `GET /v1/openapi.json`. A web
/// dashboard of hooks and deliveries, with retry and replay buttons: open `/ui` in a browser.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 stopped by SIGTERM or SIGINT, 1 invalid hook file, 2 usage error, \
or the store or address cannot be used (a store another `linq-hooks serve` holds is named as \
such; the address is bound first, so a taken one leaves no new store file).\n\nSignals: SIGTERM, SIGINT stop gracefully; SIGHUP re-reads --hooks.\n\n\
Limits: at start the soft limit on open files is raised to the hard limit. A connection that \
is too slow with its headers (--header-timeout) or body (--body-timeout), idle for \
--header-timeout, or not reading its answers (--write-timeout), is closed; at --max-connections, \
a new connection takes the place of the one that has waited longest for a request.\n\n\
Logs: by default linq-hooks' own lines at info (give-ups, 410s, recoveries, registry changes) \
and libraries' at warn; RUST_LOG=debug for every attempt; --log-format json (or \
LINQ_HOOKS_LOG_FORMAT=json) for one JSON object a line.\n\n\
Operational webhooks: with --ops-url, `hook.disabled`, `delivery.failed` and `hook.recovered` \
are posted there, signed with --ops-secret (schemas/ops-event.schema.json)."
)]
pub(crate) struct Args {
    /// A hook file to serve as the workflow `default` (one hook, an array of hooks, or a LINQ
    /// workflow document), re-read on SIGHUP. Without it, workflows come over the API.
    #[arg(long, value_name = "FILE")]
    hooks: Option<PathBuf>,
    /// Where to keep events, deliveries and the registry: a redb file (created if missing; one
    /// `serve` at a time), or a PostgreSQL URL such as `postgres://hooks@db.lab.example/hooks`
    /// (add `?sslmode=require` for TLS), which several `serve` processes share: each hook is
    /// delivered by one of them at a time, and the others take a dead one's hooks over.
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "LINQ_HOOKS_STORE",
        default_value = "linq-hooks.redb",
        hide_env_values = true
    )]
    store: String,
    /// With a PostgreSQL store: how long this process's lease on a hook lasts unrenewed (it
    /// renews every third of it). When a process dies, the others deliver its hooks again
    /// within this time and a third.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = lease)]
    lease: Duration,
    /// Where the API listens. Anything but a loopback address needs --token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8625")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on every endpoint but /healthz and the dashboard's
    /// page (/ui), which asks for the token and sends it on each API call.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LINQ_HOOKS_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(flatten)]
    secrets: Secrets,
    /// The delays between attempts, after the first (±20% jitter; Retry-After honoured).
    #[arg(long, value_name = "DELAYS", default_value = "5s,5m,30m,2h,5h,10h,10h")]
    retry_schedule: RetryPolicy,
    #[command(flatten)]
    sending: Sending,
    #[command(flatten)]
    mqtt: transports::Mqtt,
    /// At shutdown, how long requests and attempts in flight may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// How long delivered records are kept before they are pruned (failed ones are kept).
    #[arg(long, value_name = "DURATION", default_value = "7days", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// How long an ingest's `Idempotency-Key` is remembered: a repeat within it (a client
    /// retrying a request whose answer it lost) stores nothing and gets the first answer.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    idempotency_window: Duration,
    /// How long a connection may take to send a request's headers, counted from when it is
    /// ready for one (accepted, or its previous answer sent): so also how long an idle
    /// keep-alive connection stays open. Then it is closed. Applies before --token is checked.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    header_timeout: Duration,
    /// How long a request body may take to arrive in full, from the end of its headers (a
    /// trickle does not extend it). Then 408, and the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    body_timeout: Duration,
    /// How long writing an answer may make no progress because the client does not read it.
    /// Then the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    write_timeout: Duration,
    /// At most this many API connections open at once. At the cap, a new connection takes the
    /// place of the one that has waited longest for a request (idle, or its headers unfinished);
    /// if every one is in a request, new ones wait to be accepted. Lowered, with
    /// a warning, to leave file descriptors for deliveries and the store (a quarter of the
    /// open-file limit, at least 256, is kept for them; the limit is raised to its hard
    /// maximum at start).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Post operational webhooks to this URL: `hook.disabled` (a receiver answered 410 Gone),
    /// `delivery.failed` (a delivery given up) and `hook.recovered` (a hook that had either, or
    /// was paused for timing out, delivered again). Signed like every webhook, with
    /// --ops-secret; sent by a dispatcher of their own, from a queue in memory (1 000 at most,
    /// the oldest dropped when full), retried after 5s, 30s, 2m, 10m, 30m.
    #[arg(long, value_name = "URL", requires = "ops_secret")]
    ops_url: Option<String>,
    /// The secret operational webhooks are signed with (`whsec_` and base64; make one as for
    /// any receiver). Required with --ops-url.
    #[arg(
        long,
        value_name = "whsec_...",
        env = "LINQ_HOOKS_OPS_SECRET",
        hide_env_values = true,
        requires = "ops_url"
    )]
    ops_secret: Option<String>,
}

/// `--ops-url` and `--ops-secret`, checked; the problem printed on stderr. The secret is
/// parsed here, not by clap, whose errors would quote it.
fn ops_webhooks(args: &Args) -> Result<Option<OpsWebhooks>, Outcome> {
    let (Some(url), Some(secret)) = (&args.ops_url, &args.ops_secret) else {
        return Ok(None);
    };
    let parameters = HookParameters::new(url.clone(), Default::default()).map_err(|e| {
        errln!("error: --ops-url: {}", chain(&e));
        Outcome::UsageOrIo
    })?;
    let secret: Secret = secret.parse().map_err(|e| {
        errln!("error: --ops-secret: {}", chain(&e));
        Outcome::UsageOrIo
    })?;
    Ok(Some(OpsWebhooks::new(parameters, secret)))
}

/// Where `serve`'s own lines go (listening, SIGHUP reloads, stopped, and the errors that stop
/// it): plain lines on stderr for a person, or, with `--log-format json`, log events at `info`
/// (`error` for errors), so that a log pipeline reads nothing but JSON objects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Notices {
    json: bool,
}

impl Notices {
    pub(crate) fn new(json: bool) -> Notices {
        Notices { json }
    }

    fn say(self, line: &str) {
        if self.json {
            tracing::info!("{line}");
        } else {
            errln!("linq-hooks serve: {line}");
        }
    }

    fn error(self, line: &str) {
        if self.json {
            tracing::error!("{line}");
        } else {
            errln!("error: {line}");
        }
    }
}

pub(crate) fn run(args: Args, open_files: Option<u64>, notices: Notices) -> Outcome {
    let secrets = match args.secrets.parse() {
        Ok(secrets) => secrets,
        Err(outcome) => return outcome,
    };
    let default_hooks = match &args.hooks {
        Some(path) => match read_hooks(&Input::new(Some(path.clone()))) {
            Ok(parsed) => Some(parsed.hooks),
            Err(outcome) => return outcome,
        },
        None => None,
    };
    let ops = match ops_webhooks(&args) {
        Ok(ops) => ops,
        Err(outcome) => return outcome,
    };
    let transport = match transports::by_scheme(&args.sending, &args.mqtt) {
        Ok(transport) => transport,
        Err(outcome) => return outcome,
    };
    let mut config = ServiceConfig::new(StoreLocation::parse(&args.store));
    config.lease = args.lease;
    config.default_hooks = default_hooks;
    config.listen = args.listen;
    config.token = args.token;
    config.delivery = Config::default()
        .concurrency(args.sending.concurrency as usize)
        .policy(args.retry_schedule)
        .secrets(secrets);
    config.shutdown_grace = args.shutdown_grace;
    config.retention = args.retention;
    config.idempotency_window = args.idempotency_window;
    config.limits.header_timeout = args.header_timeout;
    config.limits.body_timeout = args.body_timeout;
    config.limits.write_timeout = args.write_timeout;
    config.limits.max_connections =
        limits::connection_cap(args.max_connections as usize, open_files);
    config.ops = ops;

    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime starts");
    runtime.block_on(async {
        // Handlers first: from here on SIGTERM stops cleanly and SIGHUP reloads.
        let signals = signal::stop_signal().and_then(|stop| Ok((stop, Hangups::new()?)));
        let (stop, hangups) = match signals {
            Ok(signals) => signals,
            Err(e) => {
                notices.error(&format!("cannot install signal handlers: {e}"));
                return Outcome::UsageOrIo;
            }
        };
        let service = match Service::start(config, Arc::new(transport)).await {
            Ok(service) => service,
            Err(e) if e.is_store_in_use() => {
                notices.error(&format!(
                    "the store {} is in use: another `linq-hooks serve` holds it (one \
                     process at a time; a PostgreSQL store is shared); stop that one, or give \
                     this one another --store",
                    args.store
                ));
                return Outcome::UsageOrIo;
            }
            Err(e) => {
                notices.error(&chain(&e));
                return Outcome::UsageOrIo;
            }
        };
        notices.say(&format!(
            "listening on http://{}, store {}{}",
            service.local_addr(),
            service.store_location(),
            match &args.hooks {
                Some(path) => format!(", workflow `default` from {}", path.display()),
                None => String::new(),
            }
        ));
        if let Some(path) = args.hooks.clone() {
            tokio::spawn(reload_on_hangup(path, service.registry(), hangups, notices));
        }
        service.run_until(stop).await;
        notices.say("stopped");
        Outcome::Success
    })
}

/// On each SIGHUP, reads the hook file again and applies it to the workflow `default` with the
/// rules of a PUT. An invalid file changes nothing (its problems are printed).
async fn reload_on_hangup(
    path: PathBuf,
    registry: Registry,
    mut hangups: Hangups,
    notices: Notices,
) {
    loop {
        hangups.next().await;
        let input = Input::new(Some(path.clone()));
        let read = tokio::task::spawn_blocking(move || read_hooks(&input))
            .await
            .expect("reading does not panic");
        let Ok(parsed) = read else {
            notices.say(&format!(
                "SIGHUP: {} is not applied; the workflow `{DEFAULT_WORKFLOW}` is unchanged",
                path.display()
            ));
            continue;
        };
        match registry.put(DEFAULT_WORKFLOW, parsed.hooks).await {
            Ok(change) => {
                log_change(&change);
                notices.say(&format!(
                    "SIGHUP: reloaded {}: {} hook(s) kept, {} added, {} removed ({} pending deliveries cancelled)",
                    path.display(),
                    change.kept.len(),
                    change.added.len(),
                    change.removed.len(),
                    change.cancelled_deliveries
                ));
            }
            Err(e) => notices.say(&format!(
                "SIGHUP: cannot apply {}: {}",
                path.display(),
                chain(&e)
            )),
        }
    }
}

/// `--lease`: a duration of at least a second (renewed every third of it, so shorter would be
/// a busy loop) and at most an hour.
fn lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if lease < Duration::from_secs(1) || lease > Duration::from_secs(3600) {
        return Err(format!("{text} is outside 1s..=1h"));
    }
    Ok(lease)
}
