//! `linq-hooks dispatch` as a real process, delivering to real receivers on 127.0.0.1.

mod common;

use std::collections::BTreeMap;

use common::{linq_hooks, temp_file, text};
use linq_hooks_events::Event;
use linq_hooks_model::Hook;
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
use linq_hooks_simulator::Simulation;
use linq_hooks_tests::{Received, Receiver};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Answers 401 unless the request carries a valid signature for SECRET.
fn verifying(request: &Received) -> u16 {
    let verifier = Verifier::new([SECRET.parse::<Secret>().unwrap()]);
    let headers = WebhookHeaders::from_fn(|name| request.header(name));
    if verifier.verify(headers, &request.body).is_ok() {
        200
    } else {
        401
    }
}

/// The distinct webhook ids a receiver got, in the order they first came, with their bodies.
fn distinct(received: &[Received]) -> Vec<(String, serde_json::Value)> {
    let mut seen = Vec::<(String, serde_json::Value)>::new();
    for request in received {
        let id = request.header("webhook-id").unwrap().to_string();
        if !seen.iter().any(|(s, _)| *s == id) {
            seen.push((id, request.json()));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_hundred_events_reach_every_matching_hook_once_in_order_signed() {
    let steady = Receiver::start(|request, _| (verifying(request), vec![])).await;
    // 503 to the first two attempts of every webhook, then the signature check.
    let flaky = Receiver::start(|request, earlier| {
        let id = request.header("webhook-id");
        let tries = earlier
            .iter()
            .filter(|r| r.header("webhook-id") == id)
            .count();
        if tries < 2 {
            (503, vec![])
        } else {
            (verifying(request), vec![])
        }
    })
    .await;
    let hooks_json = serde_json::json!({"hooks": [
        {"filter": "on_run_state_change", "parameters": {"url": steady.url("/runs"), "headers": {"X-Lab": "bench-3"}}},
        {"filter": "on_task_state_change", "parameters": {"url": steady.url("/tasks"), "headers": {"Authorization": "Bearer t0ken"}}, "task_ids": []},
        {"filter": "on_labware_movement", "parameters": {"url": steady.url("/labware")}, "labware_ids": ["plate-1"], "trigger_on": "end"},
        {"filter": "on_safety_state_change", "parameters": {"url": flaky.url("/safety")}},
        {"filter": "on_new_plan", "parameters": {"url": flaky.url("/plans"), "headers": {"X-Lab": "bench-3"}}},
        {"filter": "on_task_state_change", "parameters": {"url": flaky.url("/failures")}, "task_ids": ["read-plate-1", "incubate-1"]}
    ]});
    let hooks_path = temp_file("hooks.json", &hooks_json.to_string());
    let hooks: Vec<Hook> = linq_hooks_model::parse_hooks(&hooks_json.to_string())
        .unwrap()
        .hooks;
    let events: Vec<Event> = Simulation::new(7).runs(10).events().collect();
    assert!(
        events.len() >= 200,
        "a few hundred events: {}",
        events.len()
    );
    let ndjson: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();

    let out = linq_hooks(
        &[
            "dispatch",
            "--hooks",
            &hooks_path,
            "--secret",
            SECRET,
            "--retry-schedule",
            "10ms,10ms,10ms",
            "--concurrency",
            "8",
            "-",
        ],
        &ndjson,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}\nstdout: {}",
        text(&out.stderr),
        text(&out.stdout)
    );

    // What each hook should have got, in event order.
    let mut expected: BTreeMap<usize, Vec<serde_json::Value>> = BTreeMap::new();
    for event in &events {
        for hook in linq_hooks_filter::matching_linear(&hooks, event) {
            expected
                .entry(hook)
                .or_default()
                .push(serde_json::to_value(event).unwrap());
        }
    }
    let paths = [
        "/runs",
        "/tasks",
        "/labware",
        "/safety",
        "/plans",
        "/failures",
    ];
    let all: Vec<Received> = steady
        .received()
        .into_iter()
        .chain(flaky.received())
        .collect();
    for (hook, path) in paths.iter().enumerate() {
        let got: Vec<Received> = all.iter().filter(|r| r.path == *path).cloned().collect();
        let bodies: Vec<serde_json::Value> =
            distinct(&got).into_iter().map(|(_, body)| body).collect();
        let want = expected.remove(&hook).unwrap_or_default();
        assert!(!want.is_empty(), "hook {hook} fires at least once");
        assert_eq!(
            bodies, want,
            "hook {hook} ({path}): every webhook once, in event order"
        );
        for request in &got {
            assert_eq!(request.method, "POST");
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert!(
                request
                    .header("user-agent")
                    .unwrap()
                    .starts_with("linq-hooks/")
            );
        }
        let flaky_hook = *path == "/safety" || *path == "/plans" || *path == "/failures";
        // The flaky receiver saw every webhook three times, with one id.
        let per_id = if flaky_hook { 3 } else { 1 };
        assert_eq!(got.len(), bodies.len() * per_id, "hook {hook}: attempts");
    }
    // The hooks' own headers went along.
    assert!(
        all.iter()
            .filter(|r| r.path == "/runs" || r.path == "/plans")
            .all(|r| r.header("x-lab") == Some("bench-3"))
    );
    assert!(
        all.iter()
            .filter(|r| r.path == "/tasks")
            .all(|r| r.header("authorization") == Some("Bearer t0ken"))
    );
    // The summary lists each hook.
    let summary = text(&out.stdout);
    assert!(
        summary.lines().next().unwrap().contains("delivered"),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 1 + paths.len(), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_stops_a_hook_and_exits_3_with_each_failure_listed() {
    let gone = Receiver::start(|_, _| (410, vec![])).await;
    let ok = Receiver::start(|_, _| (204, vec![])).await;
    let hooks_path = temp_file(
        "gone-hooks.json",
        &serde_json::json!([
            {"filter": "on_task_state_change", "parameters": {"url": gone.url("/gone")}, "task_ids": []},
            {"filter": "on_task_state_change", "parameters": {"url": ok.url("/ok")}, "task_ids": []}
        ])
        .to_string(),
    );
    let events: String = (0..5)
        .map(|i| format!(r#"{{"event": "task_state_change", "run_id": "r", "task_id": "t{i}", "state": "started", "timestamp": "2025-04-17T09:30:0{i}Z"}}"#) + "\n")
        .collect();
    let out = linq_hooks(
        &[
            "dispatch",
            "--hooks",
            &hooks_path,
            &temp_file("gone-events.ndjson", &events),
        ],
        "",
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(gone.received().len(), 1, "nothing after the 410");
    assert_eq!(ok.received().len(), 5);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("5 webhook(s) not delivered: the receiver answered 410 Gone"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_fail_at_once_and_are_listed() {
    let refusing = Receiver::start(|_, _| (422, vec![])).await;
    let hooks_path = temp_file(
        "422-hooks.json",
        &serde_json::json!([{"filter": "on_new_plan", "parameters": {"url": refusing.url("/")}}])
            .to_string(),
    );
    let out = linq_hooks(
        &["dispatch", "--hooks", &hooks_path],
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(refusing.received().len(), 1, "a 422 is not retried");
    let stderr = text(&out.stderr);
    let id = refusing.received()[0]
        .header("webhook-id")
        .unwrap()
        .to_string();
    assert!(
        stderr.contains(&format!(
            "failed: hook 0 ({}): {id}: status 422",
            refusing.url("/")
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_connection_failures_are_retried() {
    // 429 with Retry-After: 0 first, then 200: retried (after the schedule's 1 s, the longer).
    let limited = Receiver::start(|_, earlier| {
        if earlier.is_empty() {
            (429, vec![("retry-after", "0".into())])
        } else {
            (200, vec![])
        }
    })
    .await;
    let hooks_path = temp_file(
        "429-hooks.json",
        &serde_json::json!([{"filter": "on_new_plan", "parameters": {"url": limited.url("/")}}])
            .to_string(),
    );
    let out = linq_hooks(
        &["dispatch", "--hooks", &hooks_path],
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = limited.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));

    // Nobody listens: every attempt fails to connect, then it is given up.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let hooks_path = temp_file(
        "down-hooks.json",
        &serde_json::json!([{"filter": "on_new_plan", "parameters": {"url": url}}]).to_string(),
    );
    let out = linq_hooks(
        &[
            "dispatch",
            "--hooks",
            &hooks_path,
            "--retry-schedule",
            "5ms,5ms",
        ],
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("gave up after 3 attempts"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_named_by_number_and_the_rest_is_delivered() {
    let ok = Receiver::start(|_, _| (200, vec![])).await;
    let hooks_path = temp_file(
        "bad-lines-hooks.json",
        &serde_json::json!([{"filter": "on_new_plan", "parameters": {"url": ok.url("/")}}])
            .to_string(),
    );
    let events = [
        r#"{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"}"#,
        r#"{"event": "new_plan", "plan_id": 2, "timestamp": "2025-04-17T09:30:00Z"}"#,
        "",
        "not json",
        r#"{"event": "new_plan", "plan_id": "p3", "timestamp": "2025-04-17T09:30:00Z"}"#,
    ]
    .join("\n");
    let out = linq_hooks(&["dispatch", "--hooks", &hooks_path, "-"], &events).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: <stdin>:2: plan_id: invalid type: integer `2`, expected a string"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: <stdin>:4: invalid JSON"),
        "{stderr}"
    );
    let plans: Vec<String> = ok
        .received()
        .iter()
        .map(|r| r.json()["plan_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(plans, ["p1", "p3"]);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let hooks_path = temp_file(
        "usage-hooks.json",
        r#"[{"filter": "on_new_plan", "parameters": {"url": "http://127.0.0.1:9/"}}]"#,
    );
    for args in [
        vec![
            "dispatch",
            "--hooks",
            &hooks_path,
            "--secret",
            "not-a-secret!",
        ],
        vec![
            "dispatch",
            "--hooks",
            &hooks_path,
            "--retry-schedule",
            "soon",
        ],
        vec!["dispatch", "--hooks", &hooks_path, "--concurrency", "0"],
        vec!["dispatch", "--hooks", &hooks_path, "--timeout", "forever"],
        // Found in review: accepted, then every attempt "timed out" at once (exit 3).
        vec!["dispatch", "--hooks", &hooks_path, "--timeout", "0s"],
        vec!["dispatch", "--hooks", &hooks_path, "no/such/events.ndjson"],
        vec![
            "dispatch",
            "--hooks",
            &hooks_path,
            "--ca-file",
            "no/such/ca.pem",
        ],
    ] {
        let out = linq_hooks(&args, "").await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("not-a-secret"),
            "secrets are never echoed"
        );
    }
}

/// The field fault, as reported: a receiver that answers `200 OK` with `Content-Length: 100`
/// and closes after 10 bytes made `dispatch` retry three times and exit 3. A 2xx is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_breaks_off_is_delivered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn({
        let requests = requests.clone();
        async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = vec![0; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                let _ = stream.shutdown().await;
            }
        }
    });
    let hooks_path = temp_file(
        "broken-body-hooks.json",
        &serde_json::json!([{"filter": "on_new_plan", "parameters": {"url": url}}]).to_string(),
    );
    let out = linq_hooks(
        &["dispatch", "--hooks", &hooks_path],
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "sent once"
    );
}
