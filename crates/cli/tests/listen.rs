//! `linq-hooks listen` as a real process, fed by `simulate` and `dispatch` and by hand-made
//! HTTP requests, and stopped with SIGTERM or SIGINT.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{linq_hooks, temp_file, text};
use linq_hooks_events::{Event, Timestamp, parse_event};
use linq_hooks_signature::{Secret, new_message_id, sign};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `linq-hooks listen`.
struct Listen {
    child: Child,
    addr: SocketAddr,
}

impl Listen {
    /// Starts `linq-hooks listen --listen 127.0.0.1:<free port> ARGS` and waits until it
    /// accepts connections.
    async fn start(args: &[&str]) -> Listen {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_linq-hooks"))
            .arg("listen")
            .args(["--listen", &addr.to_string()])
            .args(args)
            .env_remove("LINQ_HOOKS_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        for _ in 0..500 {
            if TcpStream::connect(addr).await.is_ok() {
                return Listen { child, addr };
            }
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().await.unwrap();
                panic!("listen exited with {status}: {}", text(&out.stderr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("listen never accepted a connection on {addr}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `signal`, then waits for the exit: the status and what it printed.
    async fn stop_with(self, signal: Signal) -> (ExitStatus, String, String) {
        let pid = Pid::from_raw(self.child.id().unwrap() as i32);
        kill(pid, signal).unwrap();
        let out = self.child.wait_with_output().await.unwrap();
        (out.status, text(&out.stdout), text(&out.stderr))
    }

    /// Stops it with SIGTERM and checks it exited 0; returns its standard output.
    async fn stop(self) -> String {
        let (status, stdout, stderr) = self.stop_with(Signal::SIGTERM).await;
        assert_eq!(status.code(), Some(0), "stderr: {stderr}\nstdout: {stdout}");
        stdout
    }

    /// One HTTP/1.1 request over a fresh connection; the answer's status and body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // A server refusing a large body may stop reading it; its answer still comes.
        let _ = stream.write_all(body).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let answer = text(&answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_string();
        (status, body)
    }

    /// POSTs `body` signed with `secret` now, with a fresh webhook id and extra headers.
    async fn post_signed(
        &self,
        secret: &str,
        body: &[u8],
        extra: &[(&str, String)],
    ) -> (u16, String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let id = new_message_id();
        let signature = sign(&[secret.parse::<Secret>().unwrap()], &id, now, body);
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("webhook-id", id),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", signature),
        ];
        headers.extend(extra.iter().cloned());
        self.request("POST", "/hooks", &headers, body).await
    }
}

/// One line of `listen`'s output, split into its columns.
#[derive(Debug)]
struct Line {
    received: String,
    status: u16,
    signature: String,
    attempt: String,
    kind: String,
    /// The key=value fields, in order.
    fields: Vec<(String, String)>,
}

impl Line {
    fn parse(line: &str) -> Line {
        let mut rest = line;
        let received = token(&mut rest).to_string();
        let status = token(&mut rest)
            .parse()
            .unwrap_or_else(|_| panic!("a status: {line}"));
        let mut signature = vec![token(&mut rest)];
        while !rest.trim_start().starts_with("attempt=") {
            assert!(!rest.is_empty(), "an attempt column: {line}");
            signature.push(token(&mut rest));
        }
        let attempt = token(&mut rest).to_string();
        let kind = token(&mut rest).to_string();
        let mut fields = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest
                .split_once('=')
                .unwrap_or_else(|| panic!("key=value at {rest:?} in {line}"));
            rest = after;
            let value = if rest.starts_with('"') {
                // A JSON string: read exactly one, then go on after it.
                let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<String>();
                let value = strings
                    .next()
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{e} in {line}"));
                rest = &rest[strings.byte_offset()..];
                value
            } else {
                token(&mut rest).to_string()
            };
            fields.push((key.to_string(), value));
        }
        Line {
            received,
            status,
            signature: signature.join(" "),
            attempt,
            kind,
            fields,
        }
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The fields that describe the event (not path, id, error or ignored).
    fn event_fields(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|(k, _)| !["path", "id", "error", "ignored"].contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

/// The next space-separated word of `rest`, which moves past it.
fn token<'a>(rest: &mut &'a str) -> &'a str {
    let trimmed = rest.trim_start();
    let end = trimmed.find(' ').unwrap_or(trimmed.len());
    let (word, after) = trimmed.split_at(end);
    *rest = after;
    word
}

fn lines(stdout: &str) -> Vec<Line> {
    stdout.lines().map(Line::parse).collect()
}

/// The key fields `listen --help` promises for each kind of event.
fn expected_fields(event: &Event) -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = match event {
        Event::RunStateChange(e) => vec![("run", e.run_id.clone()), ("state", e.state.to_string())],
        Event::TaskStateChange(e) => vec![
            ("run", e.run_id.clone()),
            ("task", e.task_id.clone()),
            ("state", e.state.to_string()),
        ],
        Event::SafetyStateChange(e) => {
            let mut pairs = Vec::new();
            if let Some(run) = &e.run_id {
                pairs.push(("run", run.clone()));
            }
            if let Some(workcell) = &e.workcell_id {
                pairs.push(("workcell", workcell.clone()));
            }
            pairs.push(("state", e.state.to_string()));
            pairs
        }
        Event::LabwareMovement(e) => vec![
            ("run", e.run_id.clone()),
            ("labware", e.labware_id.clone()),
            ("phase", e.phase.as_str().to_string()),
            ("from", format!("{}/{}", e.source.instrument, e.source.slot)),
            (
                "to",
                format!("{}/{}", e.destination.instrument, e.destination.slot),
            ),
        ],
        Event::NewPlan(e) => {
            let mut pairs = Vec::new();
            if let Some(run) = &e.run_id {
                pairs.push(("run", run.clone()));
            }
            pairs.push(("plan", e.plan_id.clone()));
            if let Some(workflow) = &e.workflow_id {
                pairs.push(("workflow", workflow.clone()));
            }
            pairs
        }
        other => panic!("no key fields known for {:?}", other.kind()),
    };
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// With one hook per kind: each kind's lines carry the key fields of that kind's events, in
/// event order (the hooks themselves run side by side).
fn assert_each_kind_in_order(events: &[Event], lines: &[Line]) {
    let mut want: BTreeMap<&str, Vec<Vec<(String, String)>>> = BTreeMap::new();
    for event in events {
        want.entry(event.kind().name())
            .or_default()
            .push(expected_fields(event));
    }
    let mut got: BTreeMap<&str, Vec<Vec<(String, String)>>> = BTreeMap::new();
    for line in lines {
        got.entry(line.kind.as_str())
            .or_default()
            .push(line.event_fields());
    }
    assert_eq!(got, want);
}

/// A hook file with one hook per kind of event, each firing on every event of its kind, at
/// `/<kind>` of the listener.
fn hooks_for_every_event(listen: &Listen, name: &str) -> String {
    let hook = |filter: &str, path: &str| serde_json::json!({"filter": filter, "parameters": {"url": listen.url(path)}});
    let mut task = hook("on_task_state_change", "/task_state_change");
    task["task_ids"] = serde_json::json!([]);
    let mut labware = hook("on_labware_movement", "/labware_movement");
    labware["labware_ids"] = serde_json::json!([]);
    labware["trigger_on"] = "both".into();
    let hooks = serde_json::json!([
        hook("on_run_state_change", "/run_state_change"),
        task,
        hook("on_safety_state_change", "/safety_state_change"),
        labware,
        hook("on_new_plan", "/new_plan"),
    ]);
    temp_file(name, &hooks.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_shows_every_event_simulate_sent_through_dispatch_once_verified() {
    let listen = Listen::start(&["--secret", SECRET]).await;
    let hooks = hooks_for_every_event(&listen, "every-event-hooks.json");

    let simulated = linq_hooks(&["simulate", "--seed", "3"], "").await;
    assert_eq!(
        simulated.status.code(),
        Some(0),
        "{}",
        text(&simulated.stderr)
    );
    let ndjson = text(&simulated.stdout);
    let events: Vec<Event> = ndjson.lines().map(|l| parse_event(l).unwrap()).collect();
    assert!(events.len() > 20, "a whole run: {}", events.len());

    let dispatched = linq_hooks(
        &["dispatch", "--hooks", &hooks, "--secret", SECRET, "-"],
        &ndjson,
    )
    .await;
    assert_eq!(
        dispatched.status.code(),
        Some(0),
        "{}",
        text(&dispatched.stderr)
    );

    let stdout = listen.stop().await;
    let lines = lines(&stdout);
    assert_eq!(lines.len(), events.len(), "one line per event:\n{stdout}");
    let mut ids = std::collections::HashSet::new();
    for line in &lines {
        assert_eq!(line.status, 204, "{line:?}");
        assert_eq!(line.signature, "✓ signed", "{line:?}");
        assert_eq!(line.attempt, "attempt=1", "{line:?}");
        assert_eq!(line.field("path"), Some(format!("/{}", line.kind).as_str()));
        assert!(
            ids.insert(line.field("id").unwrap().to_string()),
            "each webhook once: {line:?}"
        );
        assert_eq!(line.received.len(), "2025-04-17T09:30:00.000Z".len());
        line.received.parse::<Timestamp>().unwrap();
    }
    // Each hook gets its kind in event order; the hooks run side by side.
    assert_each_kind_in_order(&events, &lines);
    let kinds: std::collections::BTreeSet<_> = lines.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds.len(), 5, "every kind of event came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_first_makes_dispatch_retry_and_the_lines_count_attempts() {
    let listen = Listen::start(&["--secret", SECRET, "--fail-first", "2"]).await;
    let hooks = hooks_for_every_event(&listen, "fail-first-hooks.json");
    let out = linq_hooks(
        &["dispatch", "--hooks", &hooks, "--secret", SECRET, "--retry-schedule", "10ms,10ms,10ms", "-"],
        r#"{"event": "new_plan", "plan_id": "p1", "run_id": "r1", "timestamp": "2025-04-17T09:30:00Z"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // SIGINT stops it as cleanly as SIGTERM.
    let (status, stdout, stderr) = listen.stop_with(Signal::SIGINT).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines = lines(&stdout);
    let seen: Vec<(u16, &str)> = lines
        .iter()
        .map(|l| (l.status, l.attempt.as_str()))
        .collect();
    assert_eq!(
        seen,
        [(503, "attempt=1"), (503, "attempt=2"), (204, "attempt=3")],
        "{stdout}"
    );
    let id = lines[0].field("id").unwrap();
    assert!(id.starts_with("msg_"));
    for line in &lines {
        assert_eq!(line.field("id"), Some(id), "one webhook, three attempts");
        assert_eq!(line.signature, "✓ signed");
        assert_eq!(line.kind, "new_plan");
        assert_eq!(line.field("plan"), Some("p1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_records_carry_headers_verification_and_body() {
    let listen = Listen::start(&["--secret", SECRET, "--json", "--status", "200"]).await;
    let event = r#"{"event":"task_state_change","run_id":"r1","task_id":"read-plate","state":"failed","error":"lid stuck","timestamp":"2025-04-17T09:30:00.000Z"}"#;
    let (status, _) = listen
        .post_signed(
            SECRET,
            event.as_bytes(),
            &[("X-Lab", "bench-3".to_string())],
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = listen
        .post_signed(OTHER_SECRET, event.as_bytes(), &[])
        .await;
    assert_eq!(status, 401);
    assert!(answer.contains("no webhook signature matches"), "{answer}");
    let (status, _) = listen.request("POST", "/raw", &[], b"not json").await;
    assert_eq!(status, 401, "unsigned, with --secret");
    let (status, answer) = listen
        .post_signed(SECRET, br#"{"event": "run_exploded"}"#, &[])
        .await;
    assert_eq!(
        (status, answer.as_str()),
        (204, ""),
        "an unknown kind is acknowledged with 204, whatever --status says"
    );

    let stdout = listen.stop().await;
    let records: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    assert_eq!(records.len(), 4, "{stdout}");

    let ok = &records[0];
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["path"], "/hooks");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["attempt"], 1);
    assert_eq!(ok["verified"], true);
    assert_eq!(ok["event"], "task_state_change");
    assert_eq!(ok["error"], serde_json::Value::Null);
    assert_eq!(ok["ignored"], serde_json::Value::Null);
    assert_eq!(ok["headers"]["x-lab"], "bench-3");
    assert_eq!(ok["headers"]["content-type"], "application/json");
    assert_eq!(ok["headers"]["webhook-id"], ok["webhook_id"]);
    assert!(
        ok["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1,")
    );
    assert_eq!(
        ok["body"],
        serde_json::from_str::<serde_json::Value>(event).unwrap()
    );
    ok["received"]
        .as_str()
        .unwrap()
        .parse::<Timestamp>()
        .unwrap();

    let forged = &records[1];
    assert_eq!(forged["status"], 401);
    assert_eq!(forged["verified"], false);
    assert_eq!(
        forged["event"], "task_state_change",
        "shown, though unverified"
    );
    assert!(
        forged["error"]
            .as_str()
            .unwrap()
            .contains("no webhook signature matches")
    );

    let raw = &records[2];
    assert_eq!(raw["verified"], false);
    assert_eq!(raw["webhook_id"], serde_json::Value::Null);
    assert_eq!(raw["attempt"], serde_json::Value::Null);
    assert_eq!(raw["body_text"], "not json");
    assert!(
        raw["error"]
            .as_str()
            .unwrap()
            .contains("missing header `webhook-id`")
    );

    let unknown = &records[3];
    assert_eq!(unknown["status"], 204);
    assert_eq!(unknown["verified"], true);
    assert_eq!(unknown["event"], "run_exploded");
    assert_eq!(unknown["error"], serde_json::Value::Null);
    assert!(
        unknown["ignored"]
            .as_str()
            .unwrap()
            .starts_with("unknown event kind"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_with_the_reason_unknown_kinds_2xx_and_listen_keeps_going() {
    let listen = Listen::start(&["--secret", SECRET]).await;
    let event = br#"{"event": "run_state_change", "run_id": "r1", "state": "paused", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let cases: Vec<(u16, (u16, String))> = vec![
        (400, listen.post_signed(SECRET, b"{\"event\": ", &[]).await),
        // An unknown kind is a newer sender's event: acknowledged, not refused.
        (
            204,
            listen
                .post_signed(SECRET, br#"{"event": "foo"}"#, &[])
                .await,
        ),
        (
            400,
            listen
                .post_signed(SECRET, br#"{"event": "new_plan", "plan_id": 7}"#, &[])
                .await,
        ),
        (401, listen.post_signed(OTHER_SECRET, event, &[]).await),
        (401, listen.request("POST", "/", &[], event).await),
        (405, listen.request("GET", "/", &[], b"").await),
        (
            413,
            listen
                .post_signed(SECRET, &vec![b' '; (1 << 20) + 1], &[])
                .await,
        ),
        (204, listen.post_signed(SECRET, event, &[]).await),
    ];
    for (i, (want, (status, answer))) in cases.iter().enumerate() {
        assert_eq!(status, want, "request {i}: {answer}");
        if *want >= 400 {
            let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
            assert!(answer["error"].is_string(), "request {i}: {answer}");
        }
    }

    let stdout = listen.stop().await;
    let lines = lines(&stdout);
    let statuses: Vec<u16> = lines.iter().map(|l| l.status).collect();
    assert_eq!(
        statuses,
        [400, 204, 400, 401, 401, 405, 413, 204],
        "{stdout}"
    );
    let signatures: Vec<&str> = lines.iter().map(|l| l.signature.as_str()).collect();
    assert_eq!(
        signatures,
        [
            "✓ signed",
            "✓ signed",
            "✓ signed",
            "✗ bad signature",
            "✗ missing header",
            "- unchecked",
            "- unchecked",
            "✓ signed"
        ]
    );
    let kinds: Vec<&str> = lines.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "-",
            "foo",
            "-",
            "run_state_change",
            "run_state_change",
            "-",
            "-",
            "run_state_change"
        ]
    );
    let errors: Vec<&str> = lines
        .iter()
        .map(|l| l.field("error").unwrap_or(""))
        .collect();
    assert!(
        errors[0].starts_with("malformed webhook body: not JSON: EOF while parsing"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[1], "");
    let ignored = lines[1].field("ignored").unwrap_or("");
    assert!(
        ignored.starts_with(r#"unknown event kind: event: unknown event "foo""#),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| (i == 1) == l.field("ignored").is_some()),
        "only the unknown kind is ignored: {stdout}"
    );
    assert_eq!(
        errors[2],
        "malformed webhook body: not an event: plan_id: invalid type: integer `7`, expected a string"
    );
    assert_eq!(
        errors[3],
        "webhook not verified: no webhook signature matches"
    );
    assert_eq!(
        errors[4],
        "webhook not verified: missing header `webhook-id`"
    );
    assert_eq!(errors[5], "method GET not allowed: webhooks are POSTed");
    assert_eq!(errors[6], "body over 1 MiB");
    assert_eq!(errors[7], "");
}

/// The README points `serve --ops-url` at `listen --secret`: an operational webhook verified
/// with the secret passes (a 400 would make `serve` give it up), shown by its type and its
/// hook; one that does not verify is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_webhooks_of_serve_pass_and_show_their_type() {
    let listen = Listen::start(&["--secret", SECRET]).await;
    let failed = br#"{"timestamp": "2026-11-30T02:46:42.123Z", "type": "delivery.failed",
      "data": {"workflow_id": "lab", "hook": "hook_3", "delivery": 17, "webhook_id": "msg_1",
               "attempts": 8, "last_status": 503, "reason": "gave up after 8 attempts"}}"#;
    let recovered = br#"{"timestamp": "2026-11-30T02:47:00.000Z", "type": "hook.recovered",
      "data": {"workflow_id": "lab", "hook": "hook_3", "delivery": 18,
               "since": "2026-11-30T02:46:42.123Z", "after": ["delivery.failed"]}}"#;
    let disabled = br#"{"timestamp": "2026-11-30T02:48:00.000Z", "type": "hook.disabled",
      "data": {"workflow_id": "lab", "hook": "hook_4", "delivery": 19, "webhook_id": "msg_2",
               "reason": "the receiver answered 410 Gone"}}"#;
    assert_eq!(listen.post_signed(SECRET, failed, &[]).await.0, 204);
    assert_eq!(listen.post_signed(SECRET, recovered, &[]).await.0, 204);
    assert_eq!(listen.post_signed(OTHER_SECRET, failed, &[]).await.0, 401);
    assert_eq!(listen.post_signed(SECRET, disabled, &[]).await.0, 204);

    let stdout = listen.stop().await;
    let lines = lines(&stdout);
    let seen: Vec<(u16, &str, Option<&str>, Option<&str>)> = lines
        .iter()
        .map(|l| {
            (
                l.status,
                l.kind.as_str(),
                l.field("hook"),
                l.field("delivery"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (204, "delivery.failed", Some("hook_3"), Some("17")),
            (204, "hook.recovered", Some("hook_3"), Some("18")),
            (401, "delivery.failed", Some("hook_3"), Some("17")),
            (204, "hook.disabled", Some("hook_4"), Some("19")),
        ],
        "{stdout}"
    );
    assert_eq!(lines[0].field("workflow"), Some("lab"), "{stdout}");
    assert!(lines[0].field("error").is_none(), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_bodies_are_read_unchecked() {
    let listen = Listen::start(&[]).await;
    let event = br#"{"event": "safety_state_change", "state": "emergency_stop", "workcell_id": "cell a", "timestamp": "2025-04-17T09:30:00Z"}"#;
    assert_eq!(listen.request("POST", "/safety", &[], event).await.0, 204);
    assert_eq!(
        listen.request("POST", "/safety", &[], b"[1, 2]").await.0,
        400
    );
    let stdout = listen.stop().await;
    let lines = lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0].signature, "- unchecked");
    assert_eq!(lines[0].attempt, "attempt=-");
    assert_eq!(lines[0].kind, "safety_state_change");
    // A value with a space is quoted as JSON, so the line still splits on spaces.
    assert_eq!(lines[0].field("workcell"), Some("cell a"), "{stdout}");
    assert!(
        stdout
            .lines()
            .next()
            .unwrap()
            .contains(r#"workcell="cell a" state=emergency_stop path=/safety"#),
        "{stdout}"
    );
    assert_eq!(lines[1].status, 400);
    assert_eq!(
        lines[1].field("error"),
        Some("malformed webhook body: not an event: $: expected an event object, found an array")
    );
}

/// `--forward-to`: a verified webhook reaches the app as it came (method, body, signature
/// headers), and the app's answer is the sender's; an unverified one never reaches the app; an
/// app that is down makes a 502 that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_relays_verified_webhooks_and_answers_with_the_apps_answer() {
    let app = linq_hooks_tests::Receiver::start_with_body(|_, _| {
        (
            (201, vec![("content-type", "text/plain".to_string())]),
            b"taken by the app".to_vec(),
        )
    })
    .await;
    let listen = Listen::start(&["--secret", SECRET, "--forward-to", &app.url("/webhooks")]).await;
    let body = br#"{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let (status, answer) = listen.post_signed(SECRET, body, &[]).await;
    assert_eq!((status, answer.as_str()), (201, "taken by the app"));
    let relayed = app.received();
    assert_eq!(relayed.len(), 1);
    let request = &relayed[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/webhooks")
    );
    assert_eq!(request.body, body);
    assert_eq!(request.header("content-type"), Some("application/json"));
    // The app can verify it: the signature headers came along, unchanged.
    let verifier = linq_hooks_receiver::Verifier::new(vec![SECRET.parse::<Secret>().unwrap()]);
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in &request.headers {
        headers.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let headers = linq_hooks_receiver::headers_from_map(&headers);
    linq_hooks_receiver::receive(&verifier, headers, &request.body).expect("verifies at the app");

    // Signed with another secret: refused here, never forwarded.
    let (status, _) = listen.post_signed(OTHER_SECRET, body, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(
        app.received().len(),
        1,
        "an unverified webhook is not forwarded"
    );

    let stdout = listen.stop().await;
    let lines = lines(&stdout);
    assert_eq!(lines[0].status, 201, "{stdout}");
    assert_eq!(
        lines[0].field("forwarded"),
        Some(app.url("/webhooks").as_str()),
        "{stdout}"
    );
    assert_eq!(lines[1].status, 401, "{stdout}");

    // The app is down: 502, naming where it could not forward.
    let down = format!("http://127.0.0.1:{}/webhooks", free_port());
    let listen = Listen::start(&["--secret", SECRET, "--forward-to", &down]).await;
    let (status, answer) = listen.post_signed(SECRET, body, &[]).await;
    assert_eq!(status, 502, "{answer}");
    let error: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot forward to {down}: ")),
        "{answer}"
    );
    listen.stop().await;

    // Only http:// URLs.
    let out = linq_hooks(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--forward-to",
            "localhost:3000",
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("expected an http:// URL"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_taken_port_or_a_bad_secret_exits_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = linq_hooks(&["listen", "--listen", &addr], "").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with(&format!("error: cannot listen on {addr}: ")),
        "{}",
        text(&out.stderr)
    );

    let out = linq_hooks(
        &[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--secret",
            "whsec_not-base64!",
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--secret number 1"), "{stderr}");
    assert!(
        !stderr.contains("not-base64"),
        "secrets are never echoed: {stderr}"
    );

    for args in [
        ["--status", "99"],
        ["--status", "600"],
        ["--fail-first", "-1"],
    ] {
        let out = linq_hooks(
            &[&["listen", "--listen", "127.0.0.1:0"][..], &args].concat(),
            "",
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn help_documents_the_line_format() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_linq-hooks"))
        .args(["listen", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("✓ signed"), "{help}");
    assert!(help.contains("attempt=1"), "{help}");
    for flag in ["--listen", "--secret", "--json", "--status", "--fail-first"] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

/// The first-run demo as three real processes: `listen` receives, `serve` delivers,
/// `simulate --ingest` feeds `serve`. What `listen` prints must be what `simulate` sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serve_and_simulate_together() {
    let listen = Listen::start(&["--secret", SECRET]).await;
    let hooks = hooks_for_every_event(&listen, "demo-hooks.json");
    let store = common::store("demo");
    let serve = common::Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store,
        "--secret",
        SECRET,
        "--token",
        "demo-token",
    ])
    .await;

    let simulated = linq_hooks(&["simulate", "--seed", "5", "--runs", "2"], "").await;
    let events: Vec<Event> = text(&simulated.stdout)
        .lines()
        .map(|l| parse_event(l).unwrap())
        .collect();
    let ingested = linq_hooks(
        &[
            "simulate",
            "--seed",
            "5",
            "--runs",
            "2",
            "--ingest",
            &serve.base,
            "--token",
            "demo-token",
        ],
        "",
    )
    .await;
    assert_eq!(
        ingested.status.code(),
        Some(0),
        "{}",
        text(&ingested.stderr)
    );

    // Every event fires exactly one hook here; wait until serve has delivered them all.
    common::eventually("serve delivers everything", || async {
        let url = format!("{}/v1/deliveries?state=delivered&limit=1000", serve.base);
        let reply = linq_hooks_tests::request("GET", &url, None, Some("demo-token"))
            .await
            .unwrap();
        reply.body["deliveries"]
            .as_array()
            .is_some_and(|d| d.len() == events.len())
    })
    .await;

    let stdout = listen.stop().await;
    let lines = lines(&stdout);
    assert_eq!(
        lines.len(),
        events.len(),
        "one webhook per event, each once:\n{stdout}"
    );
    for line in &lines {
        assert_eq!(
            (line.status, line.signature.as_str(), line.attempt.as_str()),
            (204, "✓ signed", "attempt=1"),
            "{line:?}"
        );
    }
    // Per hook (one per kind here), the key fields of the simulated events, in order.
    assert_each_kind_in_order(&events, &lines);
}
