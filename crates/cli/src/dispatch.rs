//! `linq-hooks dispatch`: deliver a stream of events to the hooks that fire, then report.

use std::future::Future;
use std::io::{BufRead, IsTerminal};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use linq_hooks_delivery::{Config, Dispatcher, HookReport, MemoryOutbox, NewDelivery, RetryPolicy};
use linq_hooks_filter::Matcher;
use linq_hooks_model::Hook;
use linq_hooks_transport::ByScheme;

use crate::input::{EventLines, Input, read_event_lines, read_hooks};
use crate::options::{Secrets, Sending};
use crate::output::errln;
use crate::output::outln;
use crate::{Outcome, report, signal, transports};

/// Deliver events to the hooks that fire for them, over HTTP or MQTT (by the hook URL's
/// scheme), and report per hook.
///
/// Reads one JSON event per line. Per hook, webhooks go in event order: a hook's next webhook
/// waits until the previous one was delivered or given up; different hooks proceed side by
/// side. A 2xx is success; connection errors, timeouts, 408, 429 and 5xx are retried on the
/// schedule (±20% jitter; a Retry-After header is honoured); other answers fail at once, and
/// 410 Gone also stops further deliveries to that hook. Every request is signed (Standard
/// Webhooks) with each --secret. An `mqtt://host[:port]/topic` hook (`mqtts://` for TLS) is
/// published with QoS 1, the signature headers as MQTT 5 user properties; the broker's PUBACK
/// is success, a lost connection or no PUBACK in time is retried.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every webhook delivered, 1 invalid input (bad lines are listed with \
their line number and nothing is sent for them; the rest are delivered), 2 usage or I/O error, \
3 some webhooks failed for good (each is listed), 130 interrupted by SIGINT (Ctrl-C) or SIGTERM: \
no new attempt starts, those in flight finish, and the summary of what was settled is printed \
(webhooks not settled are counted on stderr and not sent).\n\nOn a terminal, stderr shows progress: \
webhooks settled, and how many wait for a retry.\n\nLogs: RUST_LOG=debug shows every attempt."
)]
pub(crate) struct Args {
    /// The hook file: one hook, an array of hooks, `{"hooks": [...]}`, or the LINQ API's
    /// workflow document (hooks at `workflow.hooks`).
    #[arg(long, value_name = "FILE")]
    hooks: PathBuf,
    #[command(flatten)]
    secrets: Secrets,
    /// The delays between attempts, after the first.
    #[arg(long, value_name = "DELAYS", default_value = "1s,5s,30s")]
    retry_schedule: RetryPolicy,
    #[command(flatten)]
    sending: Sending,
    #[command(flatten)]
    mqtt: transports::Mqtt,
    /// The events, one JSON object per line; `-` or nothing reads standard input.
    events: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> Outcome {
    let secrets = match args.secrets.parse() {
        Ok(secrets) => secrets,
        Err(outcome) => return outcome,
    };
    let hooks: Arc<[Hook]> = match read_hooks(&Input::new(Some(args.hooks.clone()))) {
        Ok(parsed) => parsed.hooks.into(),
        Err(outcome) => return outcome,
    };
    let transport = match transports::by_scheme(&args.sending, &args.mqtt) {
        Ok(transport) => transport,
        Err(outcome) => return outcome,
    };
    let events = Input::new(args.events.clone()).of("events");
    let config = Config::default()
        .concurrency(args.sending.concurrency as usize)
        .policy(args.retry_schedule)
        .secrets(secrets);
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime starts");
    // Handlers first, before anything is sent: from here on Ctrl-C ends with the summary.
    let stop = match runtime.block_on(async { signal::stop_signal() }) {
        Ok(stop) => stop,
        Err(e) => {
            errln!("error: cannot handle signals: {}", report::chain(&e));
            return Outcome::UsageOrIo;
        }
    };
    let reader = match events.open() {
        Ok(reader) => reader,
        Err(message) => {
            errln!("error: {message}");
            return Outcome::UsageOrIo;
        }
    };
    let delivered = runtime.block_on(deliver(
        hooks.clone(),
        Arc::new(transport),
        config,
        events.name(),
        reader,
        stop,
    ));
    // The reading thread may still wait on a stream that never ends (interrupted): it is not
    // waited for.
    runtime.shutdown_background();
    let Delivered {
        reports,
        read,
        interrupted,
    } = match delivered {
        Ok(delivered) => delivered,
        Err(outcome) => return outcome,
    };
    print_summary(&hooks, &reports);
    let failed = report_failures(&hooks, &reports);
    if interrupted {
        let unsettled: usize = reports.iter().filter(|r| !r.gone).map(|r| r.pending).sum();
        errln!(
            "interrupted: {unsettled} webhook(s) not settled were not sent further; the summary \
             above counts what was settled"
        );
        return Outcome::Interrupted;
    }
    if read.invalid > 0 {
        errln!(
            "{}: {} invalid line(s); nothing was sent for them",
            events.name(),
            read.invalid
        );
        Outcome::Invalid
    } else if failed > 0 {
        Outcome::DeliveryFailed
    } else {
        Outcome::Success
    }
}

/// What a run of the dispatcher came to.
struct Delivered {
    reports: Vec<HookReport>,
    read: EventLines,
    /// Stopped by SIGINT or SIGTERM before every webhook was settled.
    interrupted: bool,
}

async fn deliver(
    hooks: Arc<[Hook]>,
    transport: Arc<ByScheme>,
    config: Config,
    name: String,
    reader: Box<dyn BufRead + Send>,
    stop: impl Future<Output = ()>,
) -> Result<Delivered, Outcome> {
    let outbox = Arc::new(MemoryOutbox::new(hooks.len()));
    let dispatcher = Dispatcher::new(hooks.clone(), transport, outbox.clone(), config)
        .expect("the outbox is made for these hooks");
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    let progress = Progress::start(outbox.clone());

    // Read on a blocking thread, so deliveries start while the stream is still coming
    // (`simulate --rate 10 | dispatch` delivers as events arrive).
    let reading = tokio::task::spawn_blocking({
        let (dispatcher, outbox, progress) =
            (dispatcher.clone(), outbox.clone(), progress.bar.clone());
        move || {
            let matcher = Matcher::new(hooks.iter());
            read_event_lines(
                reader,
                &name,
                |problem| progress.suspend(|| errln!("{problem}")),
                |event| {
                    for delivery in NewDelivery::for_event(&matcher, &event) {
                        let hook = delivery.hook;
                        outbox.push(delivery);
                        progress.inc_length(1);
                        dispatcher.wake(hook);
                    }
                    ControlFlow::Continue(())
                },
            )
        }
    });
    let work = async {
        let read = reading.await.expect("the reader does not panic");
        dispatcher.close();
        read
    };
    let mut running = running;
    tokio::pin!(stop);
    let (read, interrupted) = tokio::select! {
        read = work => {
            tokio::select! {
                done = &mut running => {
                    done.expect("the dispatcher does not panic");
                    (read, false)
                }
                () = &mut stop => (read, true),
            }
        }
        () = &mut stop => (Ok(EventLines::default()), true),
    };
    if interrupted {
        // No new attempt starts; those in flight finish (bounded by --timeout).
        dispatcher.shutdown();
        running.await.expect("the dispatcher does not panic");
    }
    progress.finish();
    match read {
        Ok(read) => Ok(Delivered {
            reports: outbox.reports(),
            read,
            interrupted,
        }),
        Err(message) => {
            errln!("error: {message}");
            Err(Outcome::UsageOrIo)
        }
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct Progress {
    bar: indicatif::ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(outbox: Arc<MemoryOutbox>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: indicatif::ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} webhooks settled{msg} {wide_bar} {elapsed}",
            )
            .expect("a valid template"),
        );
        let ticker = tokio::spawn({
            let bar = bar.clone();
            async move {
                loop {
                    bar.set_position(outbox.settled() as u64);
                    bar.set_message(match outbox.retrying() {
                        0 => String::new(),
                        n => format!(", {n} waiting to retry"),
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Progress {
            bar,
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// The table on standard output; a reader that is gone (`| head -1`) ends it quietly.
fn print_summary(hooks: &[Hook], reports: &[HookReport]) {
    let _ = print_table(hooks, reports);
}

fn print_table(hooks: &[Hook], reports: &[HookReport]) -> Result<(), crate::output::Stopped> {
    outln!(
        "{:>4}  {:<40}  {:>9}  {:>6}  {:>8}  {:>9}  {:>9}",
        "hook",
        "url",
        "delivered",
        "failed",
        "attempts",
        "p50",
        "p99"
    )?;
    for (i, (hook, report)) in hooks.iter().zip(reports).enumerate() {
        let failed = report.failed.len() + gone_pending(report);
        let mut latencies = report.latencies.clone();
        latencies.sort_unstable();
        outln!(
            "{i:>4}  {:<40}  {:>9}  {failed:>6}  {:>8}  {:>9}  {:>9}",
            hook.parameters().url(),
            report.delivered,
            report.attempts,
            percentile(&latencies, 50),
            percentile(&latencies, 99),
        )?;
    }
    Ok(())
}

/// The deliveries a hook's 410 Gone left unsent (failed); without one, those still pending
/// were not settled (an interrupted run).
fn gone_pending(report: &HookReport) -> usize {
    if report.gone { report.pending } else { 0 }
}

/// The `p`th percentile of sorted latencies (nearest rank), in milliseconds; `-` for none.
fn percentile(sorted: &[Duration], p: usize) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    format!("{:.1}ms", sorted[rank - 1].as_secs_f64() * 1000.0)
}

/// Lists every webhook that was not delivered on stderr; returns how many.
fn report_failures(hooks: &[Hook], reports: &[HookReport]) -> usize {
    let mut failed = 0;
    for (i, (hook, report)) in hooks.iter().zip(reports).enumerate() {
        let url = hook.parameters().url();
        for delivery in &report.failed {
            errln!(
                "failed: hook {i} ({url}): {}: {}",
                delivery.webhook_id,
                delivery.reason
            );
        }
        if gone_pending(report) > 0 {
            errln!(
                "failed: hook {i} ({url}): {} webhook(s) not delivered: the receiver answered 410 Gone",
                report.pending
            );
        }
        failed += report.failed.len() + gone_pending(report);
    }
    failed
}
