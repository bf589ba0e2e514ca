//! Faults `serve` must survive: receivers that misbehave, bad ingest, a full disk.

mod common;

use std::time::Duration;

use common::{Serve, eventually, hooks_file, plan, plan_hook, store};
use linq_hooks_tests::{Receiver, request};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn millis(rfc3339: &Value) -> i64 {
    rfc3339
        .as_str()
        .unwrap()
        .parse::<linq_hooks_events::Timestamp>()
        .unwrap()
        .unix_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_with_retry_after_is_honoured() {
    // 429 "come back in an hour"; the schedule alone would retry after 10 ms.
    let receiver = Receiver::start(|_, _| (429, vec![("retry-after", "3600".into())])).await;
    let hooks = hooks_file("f-429", json!([plan_hook(receiver.url("/"))]));
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("f-429"),
        "--retry-schedule",
        "10ms,10ms",
    ])
    .await;
    let id = serve.post_events(plan(1)).await.body["deliveries"][0]["id"]
        .as_u64()
        .unwrap();
    eventually("the first attempt is recorded", || async {
        serve.get(&format!("/v1/deliveries/{id}")).await["next_attempt_at"].is_string()
    })
    .await;
    let delivery = serve.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(delivery["attempt_log"][0]["status"], 429);
    let waits = millis(&delivery["next_attempt_at"]) - millis(&delivery["attempt_log"][0]["at"]);
    assert!(
        waits >= 3_600_000,
        "the next attempt waits the hour the receiver asked for: {waits} ms"
    );
    assert_eq!(receiver.received().len(), 1);
}

/// A raw TCP receiver: the first connection gets half a response and a hang-up; later ones a
/// proper 200. Returns its URL and a log of the webhook ids it saw.
async fn half_then_whole() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut first = true;
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0; 64 * 1024];
                let n = stream.read(&mut request).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&request[..n]).to_string();
                if let Some(id) = text.lines().find_map(|l| l.strip_prefix("webhook-id: ")) {
                    seen.lock().unwrap().push(id.trim().to_string());
                }
                if first {
                    first = false;
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly part of it",
                        )
                        .await;
                } else {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                }
                let _ = stream.shutdown().await;
            }
        }
    });
    (url, seen)
}

/// The field fault: a receiver that answers `200 OK` with `Content-Length: 1000` and hangs up
/// after a few bytes was retried, and marked failed when the retries ran out, sending the same
/// webhook again each time. A 2xx is delivered (Standard Webhooks); the broken body is noted on
/// the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_breaks_off_is_delivered_at_once() {
    let (url, seen) = half_then_whole().await;
    let hooks = hooks_file("f-half", json!([plan_hook(url)]));
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("f-half"),
        "--retry-schedule",
        "20ms",
    ])
    .await;
    let id = serve.post_events(plan(1)).await.body["deliveries"][0]["id"]
        .as_u64()
        .unwrap();
    eventually("delivered", || async {
        serve.get(&format!("/v1/deliveries/{id}")).await["state"] == "delivered"
    })
    .await;
    let delivery = serve.get(&format!("/v1/deliveries/{id}")).await;
    let log = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "one attempt: {delivery}");
    assert_eq!(log[0]["status"], 200, "{delivery}");
    assert!(
        log[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("body broke off")),
        "the broken body is noted: {delivery}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "sent once");
}

/// Sends raw bytes to the API and returns what came back (possibly nothing).
async fn raw(base: &str, bytes: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ingest_is_answered_and_stores_nothing() {
    let hooks = hooks_file("f-ingest", json!([plan_hook("http://127.0.0.1:9/".into())]));
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("f-ingest"),
        "--retry-schedule",
        "1h",
    ])
    .await;
    let post = |body: Vec<u8>| {
        let url = format!("{}/v1/events", serve.base);
        async move {
            request("POST", &url, Some(body), None)
                .await
                .unwrap()
                .status
        }
    };
    // Invalid JSON, wrong types, unknown kinds.
    assert_eq!(post(b"{\"event\": ".to_vec()).await, 400);
    assert_eq!(post(br#"{"event": "run_state_change", "run_id": ["r"], "state": "paused", "timestamp": "2025-04-17T09:30:00Z"}"#.to_vec()).await, 400);
    assert_eq!(post(br#"{"event": "run_state_change", "run_id": "r", "state": 5, "timestamp": "2025-04-17T09:30:00Z"}"#.to_vec()).await, 400);
    assert_eq!(
        post(br#"{"event": "coffee_break", "timestamp": "2025-04-17T09:30:00Z"}"#.to_vec()).await,
        400
    );
    // 10 MiB: refused from its Content-Length, before the upload ends.
    let mut huge = format!(
        "POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        10 * 1024 * 1024
    )
    .into_bytes();
    huge.extend(vec![b' '; 64 * 1024]);
    let answer = raw(&serve.base, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // A body cut short: it announces 1 000 bytes, sends 20 and hangs up.
    let truncated = format!(
        "POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{}",
        r#"{"event": "new_plan","#
    );
    let answer = raw(&serve.base, truncated.as_bytes()).await;
    assert!(
        !answer.contains(" 202 "),
        "a truncated body is never accepted: {answer}"
    );

    // Unharmed, and nothing stored.
    assert_eq!(serve.call("GET", "/healthz", None).await.status, 200);
    serve.assert_nothing_stored().await;
    assert_eq!(serve.post_events(plan(1)).await.status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_nothing_unstored_is_acknowledged() {
    let hooks = hooks_file("f-full", json!([plan_hook("http://127.0.0.1:9/".into())]));
    let store = store("f-full");
    let bin = env!("CARGO_BIN_EXE_linq-hooks");
    // The file size limit stands in for a full disk: writes past it fail with EFBIG (SIGXFSZ
    // is ignored, as a process on a full disk gets ENOSPC rather than a signal).
    let mut command = tokio::process::Command::new("sh");
    command.args([
        "-c",
        r#"trap "" XFSZ; ulimit -f 2048; exec "$0" serve "$@""#,
        bin,
    ]);
    command.args([
        "--hooks",
        &hooks,
        "--store",
        &store,
        "--listen",
        "127.0.0.1:0",
        "--retry-schedule",
        "1h",
    ]);
    let serve = Serve::start_command(command).await;

    let padding = "x".repeat(4000);
    let mut acked = Vec::new();
    let mut refused = None;
    for n in 0..2000 {
        let event = json!({"event": "new_plan", "plan_id": format!("p{n}"), "message": padding, "timestamp": "2025-04-17T09:30:00Z"});
        let reply = serve.post_events(event).await;
        match reply.status {
            202 => acked.push(n),
            503 => {
                refused = Some(reply.body);
                break;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    let refused = refused.expect("the limit is reached within 2 000 events of 4 KB");
    let message = refused["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("not stored, so not accepted"), "{message}");
    assert!(!acked.is_empty());
    // Still up and answering, and its health says why it is failing, for a supervisor.
    let health = serve.call("GET", "/healthz", None).await;
    assert_eq!(health.status, 503, "{:?}", health.body);
    assert!(
        health.body["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot write the store"),
        "{:?}",
        health.body
    );
    serve.kill().await;

    // Without the limit, every acknowledged event is there.
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store,
        "--retry-schedule",
        "1h",
    ])
    .await;
    let mut stored = 0;
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(id) => format!("/v1/deliveries?state=pending&limit=1000&after={id}"),
            None => "/v1/deliveries?state=pending&limit=1000".to_string(),
        };
        let page = serve.get(&path).await;
        stored += page["deliveries"].as_array().unwrap().len();
        match page["next_after"].as_u64() {
            Some(id) => after = Some(id),
            None => break,
        }
    }
    assert!(
        stored >= acked.len(),
        "{stored} stored, {} acknowledged",
        acked.len()
    );
}

/// Flips `mask` in the byte at `offset` of every copy of `needle` in the file at `path` (redb
/// writes pages anew, so older copies stay in free pages); returns how many it changed.
fn damage_every_copy(path: &str, needle: &[u8], offset: usize, mask: u8) -> usize {
    let mut file = std::fs::read(path).unwrap();
    let copies: Vec<usize> = (0..=file.len() - needle.len())
        .filter(|&i| &file[i..i + needle.len()] == needle)
        .collect();
    for &at in &copies {
        file[at + offset] ^= mask;
    }
    std::fs::write(path, &file).unwrap();
    copies.len()
}

/// The field fault: a store truncated to 0 bytes silently started empty. An existing empty
/// store file is refused, naming the file and what to do; nothing is written to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_truncated_to_nothing_is_refused() {
    let store = store("f-empty");
    std::fs::write(&store, b"").unwrap();
    let out =
        common::linq_hooks(&["serve", "--store", &store, "--listen", "127.0.0.1:0"], "").await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&store), "names the file: {stderr}");
    assert!(stderr.contains("is empty"), "{stderr}");
    assert!(stderr.contains("restore it from a backup"), "{stderr}");
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0);
}

/// The field fault: bit flips in the store file. Before, the damaged body was sent (validly
/// signed), then the hook stopped for good. Now the damaged delivery is quarantined (listed,
/// counted by /healthz, never sent) and its hook goes on with the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_delivery_is_quarantined_and_its_hook_goes_on() {
    let store = store("f-flip");
    let down = hooks_file(
        "f-flip-down",
        json!([plan_hook("http://127.0.0.1:9/".into())]),
    );
    let serve = Serve::start(&[
        "--hooks",
        &down,
        "--store",
        &store,
        "--retry-schedule",
        "1h",
    ])
    .await;
    serve.post_plans(0..3).await;
    let (code, stderr) = serve.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    // "p1" becomes "p3": valid JSON, another plan.
    let changed = damage_every_copy(&store, br#""plan_id":"p1""#, 12, 0x02);
    assert!(changed >= 1);

    let receiver = Receiver::start(|_, _| (200, vec![])).await;
    let up = hooks_file("f-flip-up", json!([plan_hook(receiver.url("/"))]));
    let serve = Serve::start(&["--hooks", &up, "--store", &store, "--retry-schedule", "1h"]).await;
    eventually("the queue drains", || async {
        serve.get("/healthz").await["quarantined"] == 1
            && serve.get("/v1/deliveries?state=pending").await["deliveries"]
                .as_array()
                .unwrap()
                .is_empty()
    })
    .await;
    let plans: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["plan_id"].to_string())
        .collect();
    assert_eq!(
        plans,
        [r#""p0""#, r#""p2""#],
        "the damaged body is never sent"
    );
    let quarantined = serve.get("/v1/deliveries?state=quarantined").await;
    let list = quarantined["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{quarantined}");
    assert_eq!(list[0]["state"], "quarantined");
    assert!(
        list[0]["failure"].as_str().unwrap().contains("checksum"),
        "{quarantined}"
    );
    let health = serve.call("GET", "/healthz", None).await;
    assert_eq!(health.status, 200, "{:?}", health.body);
}

/// The field fault: 4 KiB zeroed in the middle of the store file made a redb panic repeat
/// without pause (1.17 million in 20 s, 11 MB of log a second) while /healthz said ok. Now the
/// damage is reported: `serve` refuses the file (naming it), or it runs and /healthz answers
/// 503 naming the store; either way the log stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_page_is_contained_and_reported() {
    let store = store("f-zero");
    let down = hooks_file(
        "f-zero-down",
        json!([plan_hook("http://127.0.0.1:9/".into())]),
    );
    let serve = Serve::start(&[
        "--hooks",
        &down,
        "--store",
        &store,
        "--retry-schedule",
        "1h",
    ])
    .await;
    let events: Vec<Value> = (0..400).map(plan).collect();
    assert_eq!(serve.post_events(Value::Array(events)).await.status, 202);
    let (code, stderr) = serve.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    let mut file = std::fs::read(&store).unwrap();
    let middle = file.len() / 2 / 4096 * 4096;
    file[middle..middle + 4096].fill(0);
    std::fs::write(&store, &file).unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_linq-hooks"))
        .args([
            "serve",
            "--hooks",
            &down,
            "--store",
            &store,
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let out = match status {
        Ok(_) => Ok(child.wait_with_output().await.unwrap()),
        Err(_) => {
            child.kill().await.unwrap();
            Err(())
        }
    };
    match out {
        Ok(out) => {
            // Refused at opening (what a debug build of redb finds there).
            let stderr = common::text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(
                stderr.contains(&store) && stderr.contains("damaged"),
                "{stderr}"
            );
            assert!(stderr.contains("restore it from a backup"), "{stderr}");
            assert!(
                stderr.len() < 64 * 1024,
                "a bounded report: {} bytes",
                stderr.len()
            );
            // redb's panic is caught and reported as the error above, not printed as a panic.
            assert!(!stderr.contains("panicked at"), "{stderr}");
        }
        Err(_) => {
            // It runs: the damage shows when the store is read.
            let serve = Serve::start(&["--hooks", &down, "--store", &store]).await;
            eventually("/healthz reports the damage", || async {
                let health = serve.call("GET", "/healthz", None).await;
                health.status == 503 && health.body["reason"].to_string().contains("damaged")
            })
            .await;
            let logged = serve.stderr.lock().unwrap().len();
            assert!(logged < 1024 * 1024, "a bounded log: {logged} bytes");
            // redb's panics are caught and logged as errors, not printed as panics.
            let log = serve.stderr.lock().unwrap().clone();
            assert!(!log.contains("panicked at"), "{log}");
        }
    }
}
