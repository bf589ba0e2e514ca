//! `linq-hooks listen`: a webhook receiver for trying hooks out, one line per request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use linq_hooks_events::ops::{OpsData, OpsEvent};
use linq_hooks_events::{Event, Timestamp};
use linq_hooks_receiver::{Verifier, headers_from_map, parse_body, receive};
use linq_hooks_service::Limits;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::options::Secrets;
use crate::output::errln;
use crate::{Outcome, report, signal};

/// The largest body read; a larger one gets 413.
const MAX_BODY: usize = 1 << 20;
/// How many webhook ids are remembered to count attempts; the oldest is forgotten first.
const REMEMBERED_IDS: usize = 100_000;
/// How long connections may take to finish their request once asked to stop.
const DRAIN: Duration = Duration::from_secs(2);

/// Receive webhooks and print one line per request: a receiver for trying hooks out.
///
/// Listens for HTTP POSTs on any path, checks the Standard Webhooks signature when given a
/// --secret, reads the body as an event, answers, and prints what came and what it answered.
/// It never stops on a bad request: it answers 4xx and says why. SIGINT (Ctrl-C) or SIGTERM
/// stops it.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// The address to listen on. The default accepts connections from this machine only.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    #[command(flatten)]
    secrets: Secrets,
    /// Print one JSON object per request instead of a line (NDJSON, for scripts): received,
    /// method, path, status, attempt, webhook_id, verified (true, false, or null without
    /// --secret), event, error, ignored, forwarded (the --forward-to URL, or null), headers,
    /// and body (as JSON; body_text when it is not JSON).
    #[arg(long)]
    json: bool,
    /// The status to answer a webhook that passes.
    #[arg(long, value_name = "CODE", default_value_t = 204, value_parser = clap::value_parser!(u16).range(200..=599))]
    status: u16,
    /// Answer 503 to the first N attempts of each webhook-id, then --status: to watch
    /// retries. Requests without a webhook-id are not failed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    fail_first: u32,
    /// Relay each webhook that passes (with --secret: whose signature verifies) to the app at
    /// this http:// URL, as `stripe listen --forward-to` does: a POST of the same body with the
    /// webhook-*, content-type and user-agent headers, so the app can verify it. The app's
    /// answer (status, content-type, body) is the answer to the sender, and its status is the
    /// one printed. An app that cannot be reached gets the sender a 502 (504 after 30 s
    /// without an answer) saying why; a refused webhook (401, 400, ...) or one failed on
    /// purpose (--fail-first) is not forwarded.
    #[arg(long, value_name = "URL")]
    forward_to: Option<String>,
}

const AFTER_HELP: &str = "\
Output: one line per request on standard output, flushed at once, in columns:

  2025-04-17T09:30:00.000Z  204  ✓ signed          attempt=1   task_state_change    run=run-3-1 task=read-plate-1 state=failed path=/tasks id=msg_4c0f…

  1. when it was received (UTC, milliseconds)
  2. the status answered
  3. the signature: ✓ signed, ✗ bad signature, ✗ stale, ✗ missing header or ✗ invalid
     header; `- unchecked` without --secret
  4. which attempt of its webhook-id this is (attempt=- without a webhook-id)
  5. the event kind, or an operational webhook's type (`-` when the body is neither)
  6. key=value fields: run, task, labware (with phase, from, to), plan, workflow, workcell,
     state; path; id (the webhook-id); error=\"...\" when refused; ignored=\"...\" when
     acknowledged unread; forwarded=URL when relayed by --forward-to. A value with spaces or
     quotes is written as a JSON string.

Answers: 405 to methods other than POST, 413 to bodies over 1 MiB, 401 when the signature does
not verify (with --secret), 400 when the body is not an event (not JSON, a missing field) nor
an operational webhook of `serve --ops-url` (hook.disabled, delivery.failed, hook.recovered:
shown with workflow, hook and delivery, and answered as an event is), 204
to an event of a kind this version does not know (a newer sender's: acknowledged and ignored,
so it is not retried), 503 to the first --fail-first attempts of a webhook-id, then --status.
With --forward-to, a webhook that passes gets the app's answer instead, or 502 (504 after 30 s)
when the app cannot be reached.

Exit codes: 0 stopped by SIGINT or SIGTERM, 2 usage error or cannot listen on the address.";

pub(crate) fn run(args: Args) -> Outcome {
    let secrets = match args.secrets.parse() {
        Ok(secrets) => secrets,
        Err(outcome) => return outcome,
    };
    let secret_count = secrets.len();
    let forward = match args.forward_to.as_deref().map(Forward::new).transpose() {
        Ok(forward) => forward,
        Err(message) => {
            errln!("error: {message}");
            return Outcome::UsageOrIo;
        }
    };
    let shared = Arc::new(Shared {
        verifier: (!secrets.is_empty()).then(|| Verifier::new(secrets)),
        json: args.json,
        status: StatusCode::from_u16(args.status).expect("clap checked the range"),
        fail_first: args.fail_first,
        attempts: Mutex::default(),
        stop: Notify::new(),
        forward,
    });
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime starts");
    runtime.block_on(serve(args.listen, shared, secret_count))
}

async fn serve(addr: SocketAddr, shared: Arc<Shared>, secret_count: usize) -> Outcome {
    // Signal handlers first: once the port accepts connections, SIGTERM is a clean stop.
    let stop_signal = match signal::stop_signal() {
        Ok(stop_signal) => stop_signal,
        Err(e) => {
            errln!("error: cannot handle signals: {}", report::chain(&e));
            return Outcome::UsageOrIo;
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            errln!("error: cannot listen on {addr}: {}", report::chain(&e));
            return Outcome::UsageOrIo;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let checking = match secret_count {
        0 => "signatures not checked (no --secret)".to_string(),
        1 => "checking signatures with 1 secret".to_string(),
        n => format!("checking signatures with {n} secrets"),
    };
    errln!("listening on http://{local}; {checking}; Ctrl-C stops");

    // Any method, any path: one handler answers everything.
    let router = Router::new().fallback(handle).with_state(shared.clone());
    let stopping = Arc::new(Notify::new());
    let shutdown = {
        let (shared, stopping) = (shared.clone(), stopping.clone());
        async move {
            tokio::select! {
                () = stop_signal => {}
                () = shared.stop.notified() => {}
            }
            stopping.notify_one();
        }
    };
    // The same serving as `serve`'s, with its default limits: a slow or idle client cannot
    // hold a connection for long, nor open without bound.
    let server = linq_hooks_service::serve(listener, router, Limits::default(), shutdown);
    // Once stopping, requests in flight get DRAIN to finish; a stalled client does not hold
    // the exit.
    let drained = async {
        stopping.notified().await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        () = server => {}
        () = drained => {}
    }
    Outcome::Success
}

/// What every request handler shares.
struct Shared {
    verifier: Option<Verifier>,
    json: bool,
    status: StatusCode,
    fail_first: u32,
    attempts: Mutex<Attempts>,
    /// Notified when standard output fails: there is no one left to tell.
    stop: Notify,
    /// `--forward-to`: where webhooks that pass are relayed.
    forward: Option<Forward>,
}

/// How long the app of `--forward-to` may take to answer; then 504.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// The request headers relayed to the app besides the `webhook-*` ones.
const RELAYED: [&str; 2] = ["content-type", "user-agent"];

/// `--forward-to`: relays webhooks to a local app over the workspace's HTTP client (hyper-util),
/// one connection pool for all of them.
struct Forward {
    url: axum::http::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Forward {
    fn new(url: &str) -> Result<Forward, String> {
        let parsed: axum::http::Uri = url
            .parse()
            .map_err(|e| format!("--forward-to {url}: not a URL: {e}"))?;
        if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
            return Err(format!(
                "--forward-to {url}: expected an http:// URL with a host, such as http://127.0.0.1:3000/webhooks"
            ));
        }
        Ok(Forward {
            url: parsed,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// POSTs the webhook (its body as received, its `webhook-*`, content-type and user-agent
    /// headers) to the app, and makes the app's answer (status, content-type, body) the answer
    /// to the sender. An app that cannot be reached or does not answer in time makes a 502
    /// (504 on the timeout) that says so.
    async fn relay(&self, record: &mut Record, headers: &HeaderMap, body: Bytes) {
        let mut request = axum::http::Request::post(self.url.clone());
        for (name, value) in headers {
            if name.as_str().starts_with("webhook-") || RELAYED.contains(&name.as_str()) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Full::new(body))
            .expect("a request from a valid URI and received headers");
        let answer = async {
            let response = self.client.request(request).await.map_err(|e| {
                (
                    StatusCode::BAD_GATEWAY,
                    format!("cannot forward to {}: {}", self.url, report::chain(&e)),
                )
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
                (
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "cannot read the answer of {}: {}",
                        self.url,
                        report::chain(&*e)
                    ),
                )
            })?;
            Ok::<_, (StatusCode, String)>((parts, body.to_bytes()))
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, answer).await {
            Ok(Ok((parts, body))) => {
                record.status = Some(parts.status);
                record.ignored = None;
                record.forwarded = Some(Forwarded {
                    to: self.url.to_string(),
                    content_type: parts.headers.get(CONTENT_TYPE).cloned(),
                    body,
                });
            }
            Ok(Err((status, why))) => record.refuse(status, why),
            Err(_) => record.refuse(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "cannot forward to {}: no answer in {}s",
                    self.url,
                    FORWARD_TIMEOUT.as_secs()
                ),
            ),
        }
    }
}

/// The answer of the `--forward-to` app, passed on to the sender.
struct Forwarded {
    /// Where it was forwarded.
    to: String,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Shared {
    /// Checks a webhook's signature (with secrets) and its body, and decides the answer.
    /// Whether it passed: not refused, not failed on purpose (--fail-first), so it may be
    /// forwarded.
    fn judge(&self, record: &mut Record, headers: &HeaderMap, body: Bytes) -> bool {
        let webhook_headers = headers_from_map(headers);
        let result = match &self.verifier {
            Some(verifier) => receive(verifier, webhook_headers, &body).map(|w| w.event),
            None => parse_body(&body),
        };
        record.signature = match &self.verifier {
            Some(_) => Signature::Signed,
            None => Signature::Unchecked,
        };
        match result {
            Ok(event) => {
                record.kind = Some(event.kind().name().to_string());
                record.event = Some(event);
            }
            Err(err) => {
                // `serve --ops-url` posts operational webhooks (`{"type", "timestamp",
                // "data"}`), signed the same way: not lab events, but what a receiver of them
                // expects, so they pass like any event.
                let ops = serde_json::from_slice::<OpsEvent>(&body).ok();
                if err.is_unverified() {
                    record.signature = Signature::refused(&err);
                    // Shown for what it says, though nobody vouches for it.
                    match parse_body(&body) {
                        Ok(event) => {
                            record.kind = Some(event.kind().name().to_string());
                            record.event = Some(event);
                        }
                        Err(body_err) => {
                            record.kind = body_err.unknown_event().map(str::to_owned);
                            if let Some(ops) = ops {
                                record.kind = Some(ops.data.type_name().to_string());
                                record.ops = Some(ops);
                            }
                        }
                    }
                } else if let Some(ops) = ops {
                    record.kind = Some(ops.data.type_name().to_string());
                    record.ops = Some(ops);
                } else {
                    record.kind = err.unknown_event().map(str::to_owned);
                }
                let status = err.status();
                if record.ops.is_some() && !err.is_unverified() {
                    // Passed: answered below as an event is.
                } else if status.is_success() {
                    // An unknown kind of event: acknowledged and ignored, as receivers should.
                    record.status = Some(status);
                    record.ignored = Some(report::chain(&err));
                } else {
                    record.refuse(status, report::chain(&err));
                }
            }
        }
        record.body = Some(body);
        let failing = record.attempt.is_some_and(|n| n <= self.fail_first);
        if record.status.is_none() {
            record.status = Some(if failing {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                self.status
            });
        }
        record.error.is_none() && !failing
    }

    /// Prints the record; when standard output is gone, asks the server to stop (how that
    /// ends is `output`'s to say: a closed pipe exits 0, as `listen | head` should).
    fn print(&self, record: &Record) {
        let text = if self.json {
            record.json().to_string()
        } else {
            record.line()
        };
        if crate::output::outln!("{text}").is_err() {
            self.stop.notify_one();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut record = Record::new(&parts);
    if parts.method != Method::POST {
        let why = format!("method {} not allowed: webhooks are POSTed", parts.method);
        record.refuse(StatusCode::METHOD_NOT_ALLOWED, why);
    } else {
        if let Some(id) = &record.webhook_id {
            record.attempt = Some(shared.attempts.lock().unwrap().count(id));
        }
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => {
                let body = body.to_bytes();
                let passed = shared.judge(&mut record, &parts.headers, body.clone());
                if passed && let Some(forward) = &shared.forward {
                    forward.relay(&mut record, &parts.headers, body).await;
                }
            }
            Err(e) if e.is::<LengthLimitError>() => {
                record.refuse(StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB".into());
            }
            Err(e) => {
                let why = format!("cannot read the body: {}", report::chain(&*e));
                record.refuse(StatusCode::BAD_REQUEST, why);
            }
        }
    }
    shared.print(&record);
    record.response()
}

/// How many times each webhook id came, for the most recent ids.
#[derive(Default)]
struct Attempts {
    counts: HashMap<String, u32>,
    order: VecDeque<String>,
}

impl Attempts {
    /// Counts one more attempt of `id`; returns its number, from 1.
    fn count(&mut self, id: &str) -> u32 {
        if let Some(n) = self.counts.get_mut(id) {
            *n = n.saturating_add(1);
            return *n;
        }
        if self.order.len() >= REMEMBERED_IDS
            && let Some(oldest) = self.order.pop_front()
        {
            self.counts.remove(&oldest);
        }
        self.order.push_back(id.to_string());
        self.counts.insert(id.to_string(), 1);
        1
    }
}

/// What was checked of the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signature {
    /// No --secret, or the request was refused before the check.
    Unchecked,
    Signed,
    /// Refused, with a short reason.
    Refused(&'static str),
}

impl Signature {
    fn refused(err: &linq_hooks_receiver::Error) -> Signature {
        Signature::Refused(if err.is_bad_signature() {
            "bad signature"
        } else if err.is_stale_timestamp() {
            "stale"
        } else if err.is_missing_header() {
            "missing header"
        } else if err.is_invalid_header() {
            "invalid header"
        } else {
            "not verified"
        })
    }

    fn column(self) -> String {
        match self {
            Signature::Unchecked => "- unchecked".into(),
            Signature::Signed => "✓ signed".into(),
            Signature::Refused(why) => format!("✗ {why}"),
        }
    }
}

/// One request: what came, what was found, what was answered.
struct Record {
    received: Timestamp,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    webhook_id: Option<String>,
    attempt: Option<u32>,
    signature: Signature,
    /// The event kind, or the `event` value of an unknown kind.
    kind: Option<String>,
    event: Option<Event>,
    /// An operational webhook of `serve --ops-url`, when the body is one.
    ops: Option<OpsEvent>,
    body: Option<Bytes>,
    /// `None` until decided.
    status: Option<StatusCode>,
    error: Option<String>,
    /// Why a request that was acknowledged was not read (an unknown kind of event).
    ignored: Option<String>,
    /// The answer of the `--forward-to` app, when relayed.
    forwarded: Option<Forwarded>,
}

impl Record {
    fn new(parts: &Parts) -> Record {
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        let webhook_id = parts
            .headers
            .get(linq_hooks_receiver::WEBHOOK_ID)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        Record {
            received: Timestamp::now(),
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.to_string()),
            headers,
            webhook_id,
            attempt: None,
            signature: Signature::Unchecked,
            kind: None,
            event: None,
            ops: None,
            body: None,
            status: None,
            error: None,
            ignored: None,
            forwarded: None,
        }
    }

    fn refuse(&mut self, status: StatusCode, why: String) {
        self.status = Some(status);
        self.error = Some(why);
    }

    fn status(&self) -> StatusCode {
        self.status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The answer: the status, and for a refusal `{"error": "..."}`; a relayed webhook gets
    /// the app's answer.
    fn response(&self) -> Response {
        if let Some(forwarded) = &self.forwarded {
            let mut response = Response::new(Body::from(forwarded.body.clone()));
            *response.status_mut() = self.status();
            if let Some(content_type) = &forwarded.content_type {
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, content_type.clone());
            }
            return response;
        }
        let body = match &self.error {
            Some(error) => Bytes::from(serde_json::json!({ "error": error }).to_string()),
            None => Bytes::new(),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        if self.error.is_some() {
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response
    }

    /// The line format documented in `--help`.
    fn line(&self) -> String {
        let attempt = match self.attempt {
            Some(n) => format!("attempt={n}"),
            None => "attempt=-".to_string(),
        };
        let kind = self.kind.as_deref().map_or_else(|| "-".to_string(), quoted);
        let mut fields = self
            .event
            .as_ref()
            .map(Event::key_fields)
            .or_else(|| self.ops.as_ref().map(ops_fields))
            .unwrap_or_default();
        fields.push(("path", self.path.clone()));
        if let Some(id) = &self.webhook_id {
            fields.push(("id", id.clone()));
        }
        let mut line = format!(
            "{}  {}  {:<16}  {attempt:<10}  {kind:<19} ",
            self.received,
            self.status().as_u16(),
            self.signature.column(),
        );
        for (key, value) in fields {
            line.push(' ');
            line.push_str(key);
            line.push('=');
            line.push_str(&quoted(&value));
        }
        if let Some(error) = &self.error {
            line.push_str(" error=");
            line.push_str(&serde_json::Value::from(error.as_str()).to_string());
        }
        if let Some(ignored) = &self.ignored {
            line.push_str(" ignored=");
            line.push_str(&serde_json::Value::from(ignored.as_str()).to_string());
        }
        if let Some(forwarded) = &self.forwarded {
            line.push_str(" forwarded=");
            line.push_str(&quoted(&forwarded.to));
        }
        line
    }

    /// The `--json` record.
    fn json(&self) -> Value {
        let mut headers = Map::new();
        for (name, value) in &self.headers {
            match headers.get_mut(name) {
                // A repeated header: its values joined as HTTP allows.
                Some(Value::String(earlier)) => {
                    earlier.push_str(", ");
                    earlier.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::from(value.as_str()));
                }
            }
        }
        let verified = match self.signature {
            Signature::Unchecked => Value::Null,
            Signature::Signed => Value::Bool(true),
            Signature::Refused(_) => Value::Bool(false),
        };
        let mut record = Map::new();
        record.insert("received".into(), self.received.to_string().into());
        record.insert("method".into(), self.method.clone().into());
        record.insert("path".into(), self.path.clone().into());
        record.insert("status".into(), self.status().as_u16().into());
        record.insert("attempt".into(), self.attempt.into());
        record.insert("webhook_id".into(), self.webhook_id.clone().into());
        record.insert("verified".into(), verified);
        record.insert("event".into(), self.kind.clone().into());
        record.insert("error".into(), self.error.clone().into());
        record.insert("ignored".into(), self.ignored.clone().into());
        record.insert(
            "forwarded".into(),
            self.forwarded.as_ref().map(|f| f.to.clone()).into(),
        );
        record.insert("headers".into(), Value::Object(headers));
        if let Some(body) = &self.body {
            match serde_json::from_slice::<Value>(body) {
                Ok(json) => record.insert("body".into(), json),
                Err(_) => record.insert(
                    "body_text".into(),
                    String::from_utf8_lossy(body).into_owned().into(),
                ),
            };
        }
        Value::Object(record)
    }
}

/// The key fields of an operational webhook: its workflow, hook and delivery.
fn ops_fields(event: &OpsEvent) -> Vec<(&'static str, String)> {
    let (workflow, hook, delivery) = match &event.data {
        OpsData::HookDisabled(d) => (&d.workflow_id, &d.hook, d.delivery),
        OpsData::DeliveryFailed(d) => (&d.workflow_id, &d.hook, d.delivery),
        OpsData::HookRecovered(d) => (&d.workflow_id, &d.hook, d.delivery),
        _ => return Vec::new(),
    };
    vec![
        ("workflow", workflow.clone()),
        ("hook", hook.clone()),
        ("delivery", delivery.to_string()),
    ]
}

/// A value as it is, or as a JSON string when it is empty or holds spaces, quotes, `=` or
/// control characters: a line stays one line, and splits on spaces.
fn quoted(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
    if plain {
        value.to_string()
    } else {
        Value::from(value).to_string()
    }
}
