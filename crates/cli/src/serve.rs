//! `linq-hooks serve`: the dispatcher service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use linq_hooks_delivery::{Config, RetryPolicy};
use linq_hooks_service::{Service, ServiceConfig};

use crate::Outcome;
use crate::input::{Input, read_hooks};
use crate::options::{Secrets, Sending};

/// Run the dispatcher service: accept events over HTTP, store them durably, deliver them.
///
/// The scheduler posts each event to `POST /v1/events`; the answer (202) comes once the event
/// and its deliveries are committed to the store file, so nothing acknowledged is lost, even
/// if `serve` is killed. Deliveries go out in order per hook, retried on the schedule for
/// hours; a 410 Gone disables a hook until `POST /v1/hooks/{index}/enable`. Restarted on the
/// same store, `serve` picks up where it stopped (what was in flight is sent again, with the
/// same `webhook-id`).
///
/// Other endpoints: `GET /v1/deliveries?state=pending|delivered|failed&limit=N&after=ID`,
/// `GET /v1/deliveries/{id}`, `POST /v1/deliveries/{id}/retry`, `GET /v1/hooks`,
/// `GET /healthz`, `GET /metrics` (Prometheus).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 stopped by SIGTERM or SIGINT, 1 invalid hook file, 2 usage error, \
or the store or address cannot be used.\n\nLogs: RUST_LOG=info (or debug, for every attempt)."
)]
pub(crate) struct Args {
    /// The hook file: one hook, an array of hooks, or a LINQ workflow document.
    #[arg(long, value_name = "FILE")]
    hooks: PathBuf,
    /// The store file (created if missing).
    #[arg(long, value_name = "PATH", default_value = "linq-hooks.redb")]
    store: PathBuf,
    /// Where the API listens. Anything but a loopback address needs --token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8625")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on every endpoint but /healthz.
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
    /// At shutdown, how long requests and attempts in flight may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// How long delivered records are kept before they are pruned (failed ones are kept).
    #[arg(long, value_name = "DURATION", default_value = "7days", value_parser = humantime::parse_duration)]
    retention: Duration,
}

pub(crate) fn run(args: Args) -> Outcome {
    let secrets = match args.secrets.parse() {
        Ok(secrets) => secrets,
        Err(outcome) => return outcome,
    };
    let hooks = match read_hooks(&Input::new(Some(args.hooks.clone()))) {
        Ok(parsed) => parsed.hooks,
        Err(outcome) => return outcome,
    };
    let transport = match args.sending.transport() {
        Ok(transport) => transport,
        Err(outcome) => return outcome,
    };
    let hook_count = hooks.len();
    let mut config = ServiceConfig::new(hooks, &args.store);
    config.listen = args.listen;
    config.token = args.token;
    config.delivery = Config::default()
        .concurrency(args.sending.concurrency as usize)
        .policy(args.retry_schedule)
        .secrets(secrets);
    config.shutdown_grace = args.shutdown_grace;
    config.retention = args.retention;

    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime starts");
    runtime.block_on(async {
        let service = match Service::start(config, Arc::new(transport)).await {
            Ok(service) => service,
            Err(e) => {
                eprintln!("error: {e}");
                return Outcome::UsageOrIo;
            }
        };
        eprintln!(
            "linq-hooks serve: listening on http://{}, store {}, {hook_count} hook(s)",
            service.local_addr(),
            args.store.display()
        );
        service.run_until(stop_signal()).await;
        eprintln!("linq-hooks serve: stopped");
        Outcome::Success
    })
}

/// Completes on SIGTERM or SIGINT.
async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
