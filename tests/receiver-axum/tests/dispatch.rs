//! An axum receiver written as an integrator would, with `linq-hooks-receiver` as its only
//! crate of ours, receiving what the real `linq-hooks dispatch` sends.
//!
//! The binary: `cargo test --workspace` builds `linq-hooks` into the same target directory
//! before it runs any test, and the test finds it beside its own executable
//! (`target/<profile>/deps/<test>` → `target/<profile>/linq-hooks`). Cargo has no stable way
//! for one package to depend on another's binary (artifact dependencies are unstable), and a
//! test that runs `cargo build` itself would wait on the lock of the `cargo test` running it.
//! Alone, run `cargo build -p linq-hooks` first, or point `LINQ_HOOKS_BIN` at a binary.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use linq_hooks_receiver::{
    Event, NewPlan, RunState, RunStateChange, StatusCode, Verifier, Webhook, headers_from_map,
    receive,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// What the receiver got: the verified webhooks, and the statuses of the refusals.
#[derive(Clone)]
struct Inbox {
    verifier: Arc<Verifier>,
    webhooks: Arc<Mutex<Vec<Webhook>>>,
    refused: Arc<Mutex<Vec<StatusCode>>>,
}

/// The handler an integrator writes: verify, keep, and answer what the error says.
async fn webhook(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match receive(&inbox.verifier, headers_from_map(&headers), &body) {
        Ok(webhook) => {
            inbox.webhooks.lock().unwrap().push(webhook);
            StatusCode::NO_CONTENT
        }
        Err(err) => {
            inbox.refused.lock().unwrap().push(err.status());
            err.status()
        }
    }
}

/// An axum receiver on 127.0.0.1, and its address.
async fn start() -> (Inbox, String) {
    let inbox = Inbox {
        verifier: Arc::new(Verifier::new([SECRET.parse().unwrap()])),
        webhooks: Arc::default(),
        refused: Arc::default(),
    };
    let app = Router::new()
        .route("/{hook}", post(webhook))
        .with_state(inbox.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (inbox, address)
}

/// The `linq-hooks` binary of this build (see the module docs).
fn linq_hooks_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LINQ_HOOKS_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile_dir.join(format!("linq-hooks{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "no `linq-hooks` binary at {}: `cargo test --workspace` builds it; to run this package \
         alone, `cargo build -p linq-hooks` first (or set LINQ_HOOKS_BIN)",
        bin.display()
    );
    bin
}

/// Runs `linq-hooks dispatch` with these hooks and secret, the events on standard input.
async fn dispatch(hooks: &str, secret: &str, events: &str) -> Output {
    let hooks_path = std::env::temp_dir().join(format!(
        "linq-hooks-receiver-axum-{}-{}.json",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&hooks_path, hooks).unwrap();
    let mut child = tokio::process::Command::new(linq_hooks_bin())
        .args(["dispatch", "--hooks"])
        .arg(&hooks_path)
        .args(["--secret", secret, "--retry-schedule", "10ms", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start linq-hooks");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(events.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    std::fs::remove_file(&hooks_path).ok();
    out
}

fn hooks(address: &str) -> String {
    format!(
        r#"[
            {{"filter": "on_new_plan", "parameters": {{"url": "http://{address}/plans"}}}},
            {{"filter": "on_run_state_change", "parameters": {{"url": "http://{address}/runs"}}}}
        ]"#
    )
}

const EVENTS: &str = r#"{"event": "new_plan", "plan_id": "p1", "run_id": "r1", "timestamp": "2025-04-17T09:30:00Z"}
{"event": "run_state_change", "run_id": "r1", "state": "paused", "timestamp": "2025-04-17T09:31:00Z"}
{"event": "run_state_change", "run_id": "r1", "state": "hibernating", "timestamp": "2025-04-17T09:32:00Z"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatched_events_arrive_verified_and_typed() {
    let (inbox, address) = start().await;
    let out = dispatch(&hooks(&address), SECRET, EVENTS).await;
    assert!(
        out.status.success(),
        "dispatch failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );

    let webhooks = inbox.webhooks.lock().unwrap().clone();
    assert_eq!(webhooks.len(), 3, "{webhooks:#?}");
    assert!(inbox.refused.lock().unwrap().is_empty());
    let mut plans = Vec::new();
    let mut run_states = Vec::new();
    for webhook in &webhooks {
        assert!(webhook.id.starts_with("msg_"), "{}", webhook.id);
        match &webhook.event {
            Event::NewPlan(NewPlan {
                plan_id, run_id, ..
            }) => plans.push((plan_id.clone(), run_id.clone())),
            Event::RunStateChange(RunStateChange { run_id, state, .. }) => {
                assert_eq!(run_id, "r1");
                run_states.push(state.clone());
            }
            // `Event` is non-exhaustive: a newer sender may send kinds this receiver ignores.
            other => panic!("no hook for {other:?}"),
        }
    }
    assert_eq!(plans, [("p1".to_string(), Some("r1".to_string()))]);
    // One hook's webhooks arrive in event order; a state this version does not know is kept.
    assert_eq!(
        run_states,
        [RunState::Paused, RunState::Other("hibernating".into())]
    );
    let mut ids: Vec<&str> = webhooks.iter().map(|w| w.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one id per delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_answered_401_and_fails_the_delivery_at_once() {
    let (inbox, address) = start().await;
    let one_event = EVENTS.lines().next().unwrap();
    let out = dispatch(&hooks(&address), OTHER_SECRET, one_event).await;
    // 3: a delivery failed. 401 is not retried.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(inbox.webhooks.lock().unwrap().is_empty());
    assert_eq!(*inbox.refused.lock().unwrap(), [StatusCode::UNAUTHORIZED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_tampered_requests_are_answered_401() {
    let (inbox, address) = start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = EVENTS.lines().next().unwrap();
    let signed = format!(
        "webhook-id: msg_1\r\nwebhook-timestamp: {now}\r\nwebhook-signature: v1,bm90IGEgc2lnbmF0dXJl\r\n"
    );
    for headers in ["", signed.as_str()] {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "POST /plans HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    }
    assert!(inbox.webhooks.lock().unwrap().is_empty());
    assert_eq!(inbox.refused.lock().unwrap().len(), 2);
}
