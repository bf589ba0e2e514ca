//! `linq-hooks simulate`: the events of simulated workcell runs, printed or posted to `serve`.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use linq_hooks_delivery::{RetryPolicy, Verdict};
use linq_hooks_events::{Event, Timestamp};
use linq_hooks_http::HttpTransport;
use linq_hooks_simulator::Simulation;
use linq_hooks_transport::{Bytes, Request, Transport};

use crate::output::errln;
use crate::{Outcome, report};

/// The most events in one request to `serve` when not pacing.
const BATCH: usize = 100;

/// Simulate LINQ workcell runs and print their events, one JSON object per line (NDJSON), or
/// post them to a running `linq-hooks serve`.
///
/// The events are those of whole runs in a plausible order: the run starts, a plan is made,
/// tasks start and succeed (or fail) with the labware moving between instruments, a safety
/// alert pauses the run, the run stops. The same --seed and --runs give the same events, byte
/// for byte, so `linq-hooks simulate --seed 3 | linq-hooks dispatch ...` can be replayed.
///
/// Timestamps: without --rate the first run starts at the fixed instant
/// 2025-04-17T09:30:00.000Z, so the output is reproducible. With --rate the first run starts
/// now, as a live workcell would; later timestamps advance by simulated durations (a run spans
/// minutes to hours), not by the pacing, so they run ahead of the clock.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every event printed (or accepted by the server), 1 the server \
refused events (a 4xx; its answer is printed), 2 usage or I/O error, or the server still \
unreachable or failing (connection errors, 5xx) after the retries.\n\nWith --ingest, events \
go to URL/v1/events (or to URL itself when it ends in /events) as JSON: batches of up to 100 as an array, or one object per request with \
--rate. 202 Accepted (any 2xx) means taken; connection errors, timeouts, 408, 429 and 5xx are \
retried on --retry-schedule (a Retry-After is honoured)."
)]
pub(crate) struct Args {
    /// The seed: the same seed gives the same runs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// How many runs, one after the other.
    #[arg(long, value_name = "N", default_value_t = 1)]
    runs: usize,
    /// Send this many events per second, evenly spaced (fractions allowed: 0.5 is one every
    /// 2 s). By default events go out as fast as they can be written. Starts the first run now.
    #[arg(long, value_name = "EVENTS_PER_S", value_parser = parse_rate)]
    rate: Option<Duration>,
    /// Post the events to a running `linq-hooks serve` instead of printing them: a base URL
    /// (http://127.0.0.1:8625, posting to its /v1/events), or an endpoint's whole URL
    /// (http://127.0.0.1:8625/v1/events, or …/v1/workflows/ID/events for a workflow's).
    #[arg(long, value_name = "URL")]
    ingest: Option<String>,
    /// With --ingest, send `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "LINQ_HOOKS_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// With --ingest, the delays between attempts of a request that could not connect or got
    /// a 5xx, after the first.
    #[arg(long, value_name = "DELAYS", default_value = "250ms,1s,4s")]
    retry_schedule: RetryPolicy,
}

/// `--rate`: a positive number of events per second, as the interval between two events.
fn parse_rate(text: &str) -> Result<Duration, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| "expected a number of events per second, such as 10 or 0.5".to_string())?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err("the rate must be a positive number of events per second".into());
    }
    Duration::try_from_secs_f64(1.0 / rate).map_err(|_| "the rate is too low".into())
}

pub(crate) fn run(args: Args) -> Outcome {
    let mut simulation = Simulation::new(args.seed).runs(args.runs);
    if args.rate.is_some() {
        simulation = simulation.start(Timestamp::now());
    }
    let events = simulation.events();
    let pacer = args.rate.map(Pacer::new);
    match &args.ingest {
        None => print(events, pacer),
        Some(url) => {
            let transport = match HttpTransport::new() {
                Ok(transport) => transport,
                Err(e) => {
                    errln!("error: cannot set up HTTP: {}", report::chain(&e));
                    return Outcome::UsageOrIo;
                }
            };
            let ingest = Ingest {
                url: events_url(url),
                token: args.token.clone(),
                policy: args.retry_schedule.clone(),
                transport,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a Tokio runtime starts");
            runtime.block_on(ingest.post_all(events, pacer))
        }
    }
}

/// Where `--ingest URL` posts: the URL itself when it names an events endpoint
/// (`…/v1/events`, `…/v1/workflows/{id}/events`), else the base URL's `/v1/events`.
fn events_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.ends_with("/events") {
        url.to_string()
    } else {
        format!("{url}/v1/events")
    }
}

/// Even spacing of events: the first at once, then one per interval. When sending falls
/// behind, the next goes at once and spacing resumes from there (no burst to catch up).
struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            next: None,
        }
    }

    /// When the next event is due.
    fn due(&mut self) -> Instant {
        let now = Instant::now();
        let due = self.next.map_or(now, |next| next.max(now));
        self.next = Some(due + self.interval);
        due
    }
}

/// Prints the events as NDJSON; each line is flushed at once when pacing.
fn print(events: impl Iterator<Item = Event>, mut pacer: Option<Pacer>) -> Outcome {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let write = || -> std::io::Result<()> {
        for event in events {
            if let Some(pacer) = &mut pacer {
                std::thread::sleep(pacer.due().saturating_duration_since(Instant::now()));
            }
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
            if pacer.is_some() {
                out.flush()?;
            }
        }
        out.flush()
    };
    match write() {
        Ok(()) => Outcome::Success,
        // A reader that stopped (`simulate | head`) is its choice, not an error; `output`
        // decides, for every command alike.
        Err(e) => {
            crate::output::failed(e);
            Outcome::Success
        }
    }
}

/// Posting events to `serve`.
struct Ingest {
    url: String,
    token: Option<String>,
    policy: RetryPolicy,
    transport: HttpTransport,
}

impl Ingest {
    async fn post_all(&self, events: impl Iterator<Item = Event>, pacer: Option<Pacer>) -> Outcome {
        let (mut sent, mut requests) = (0, 0);
        // One `Idempotency-Key` per request, the same on each of its retries: a retry of a
        // request whose answer was lost stores nothing twice. Unique to this run.
        let run = linq_hooks_signature::new_message_id();
        let mut events = events.peekable();
        let mut pacer = pacer;
        while events.peek().is_some() {
            // Paced: one event per request, on time. Otherwise: batches, as fast as accepted.
            let batch: Vec<Event> = match &mut pacer {
                Some(pacer) => {
                    tokio::time::sleep_until(pacer.due().into()).await;
                    events.next().into_iter().collect()
                }
                None => events.by_ref().take(BATCH).collect(),
            };
            let body = match (&pacer, batch.as_slice()) {
                (Some(_), [event]) => event.to_json_bytes(),
                _ => serde_json::to_vec(&batch).expect("events serialize"),
            };
            let key = format!("{run}-{requests}");
            if let Err(outcome) = self.post(body, &key, sent, batch.len()).await {
                return outcome;
            }
            sent += batch.len();
            requests += 1;
        }
        let _ = crate::output::outln!(
            "{}: {sent} event{} accepted in {requests} request{}",
            self.url,
            if sent == 1 { "" } else { "s" },
            if requests == 1 { "" } else { "s" },
        );
        Outcome::Success
    }

    /// Posts one body (events `first + 1 ..= first + count` of the stream) under the
    /// idempotency `key`, retrying as the policy says. The error is the outcome to exit with; the reason is on stderr.
    async fn post(
        &self,
        body: Vec<u8>,
        key: &str,
        first: usize,
        count: usize,
    ) -> Result<(), Outcome> {
        let body = Bytes::from(body);
        let events = if count == 1 {
            format!("event {}", first + 1)
        } else {
            format!("events {}-{}", first + 1, first + count)
        };
        let mut attempts = 0;
        loop {
            let mut request =
                Request::new(self.url.as_str(), body.clone()).with_header("idempotency-key", key);
            if let Some(token) = &self.token {
                request = request.with_header("authorization", format!("Bearer {token}"));
            }
            let result = self.transport.send(request).await;
            attempts += 1;
            let why = match (&result, Verdict::of(&result)) {
                (Ok(response), Verdict::Delivered) => {
                    if response.status() != 202 {
                        tracing::warn!(status = response.status(), "expected 202 Accepted");
                    }
                    return Ok(());
                }
                (_, Verdict::Retry { retry_after }) => {
                    let why = match &result {
                        Ok(response) => format!("status {}", response.status()),
                        Err(e) => report::chain(e),
                    };
                    if let Some(delay) = self.policy.delay_after(attempts, retry_after) {
                        tracing::warn!(
                            url = %self.url,
                            events = events.to_string().as_str(),
                            reason = why.to_string().as_str(),
                            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                            "posting events failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    why
                }
                (Ok(response), _) => {
                    let answer = String::from_utf8_lossy(response.body());
                    errln!(
                        "error: {}: {events} refused with status {}{}",
                        self.url,
                        response.status(),
                        if answer.trim().is_empty() { "" } else { ":" }
                    );
                    if !answer.trim().is_empty() {
                        errln!("{}", answer.trim_end());
                    }
                    return Err(Outcome::Invalid);
                }
                (Err(e), _) => {
                    errln!("error: {}: {}", self.url, report::chain(e));
                    return Err(Outcome::UsageOrIo);
                }
            };
            errln!(
                "error: {}: {events} not accepted after {attempts} attempt{}: {why}",
                self.url,
                if attempts == 1 { "" } else { "s" }
            );
            return Err(Outcome::UsageOrIo);
        }
    }
}
