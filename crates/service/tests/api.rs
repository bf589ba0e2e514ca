//! The API's edges, in process: a real `Service` on 127.0.0.1 over a real store file, spoken to
//! in raw HTTP/1.1 so that status lines and headers are seen as a client sees them.

use std::sync::Arc;
use std::time::Duration;

use linq_hooks_service::{Service, ServiceConfig};
use linq_hooks_transport::MemoryTransport;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Sends one request (`Connection: close`) and reads the whole answer.
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str("host: 127.0.0.1\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head[9..12].parse().unwrap();
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn start(
    name: &str,
    token: Option<&str>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let path = std::env::temp_dir().join(format!("service-api-{name}-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut config = ServiceConfig::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.token = token.map(str::to_string);
    let service = Service::start(config, Arc::new(MemoryTransport::new()))
        .await
        .unwrap();
    let addr = service.local_addr();
    let running = tokio::spawn(service.run_until(std::future::pending()));
    (addr, running)
}

/// Every error has the shape `{"errors": [{"path"?, "message"}]}`.
fn problems(answer: &Answer) -> Vec<(Option<String>, String)> {
    answer.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("not the error shape: {} {}", answer.head, answer.body))
        .iter()
        .map(|e| {
            (
                e["path"].as_str().map(str::to_string),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_the_error_shape_and_names_where() {
    let (addr, running) = start("shape", None).await;
    // (method, path, body, status, the path the first problem names)
    let cases: &[(&str, &str, &str, u16, Option<&str>)] = &[
        ("GET", "/nowhere", "", 404, None),
        ("GET", "/v1/deliveries?limit=abc", "", 400, Some("limit")),
        ("GET", "/v1/deliveries?limit=0", "", 400, Some("limit")),
        ("GET", "/v1/deliveries?state=lost", "", 400, Some("state")),
        ("GET", "/v1/deliveries?colour=red", "", 400, None),
        ("GET", "/v1/workflows?limit=5000", "", 400, Some("limit")),
        (
            "GET",
            "/v1/workflows/has%20space",
            "",
            400,
            Some("workflow_id"),
        ),
        (
            "PUT",
            "/v1/workflows/a",
            r#"{"workflow": {"hooks": [{"filter": "on_new_plan", "parameters": {"url": "relative"}}]}}"#,
            400,
            Some("workflow.hooks[0].parameters.url"),
        ),
        ("PUT", "/v1/workflows/a", "{not json", 400, Some("$")),
        (
            "PUT",
            "/v1/workflows/a",
            r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example", "headers": {"X-Lab-Site": "Zürich"}}}]"#,
            400,
            Some("[0].parameters.headers.X-Lab-Site"),
        ),
        ("GET", "/v1/workflows/none", "", 404, None),
        (
            "POST",
            "/v1/workflows/none/events",
            r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
            404,
            None,
        ),
        (
            "POST",
            "/v1/events",
            r#"[{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}, {"event": "new_plan"}]"#,
            400,
            Some("[1].plan_id"),
        ),
        ("GET", "/v1/hooks/hook_77", "", 404, None),
        ("GET", "/v1/hooks/77", "", 404, None),
        (
            "PATCH",
            "/v1/hooks/hook_77",
            r#"{"parameters": {"url": "https://x.example"}}"#,
            404,
            None,
        ),
        ("POST", "/v1/hooks/hook_77/enable", "", 404, None),
        ("GET", "/v1/deliveries/12", "", 404, None),
        ("GET", "/v1/hooks?bogus=1", "", 400, Some("bogus")),
        (
            "PUT",
            "/v1/workflows/%2E%2E",
            "[]",
            400,
            Some("workflow_id"),
        ),
        ("PUT", "/v1/workflows/.", "[]", 400, Some("workflow_id")),
        ("POST", "/v1/deliveries/12/retry", "", 404, None),
        ("GET", "/v1/deliveries?status=6xx", "", 400, Some("status")),
        (
            "GET",
            "/v1/deliveries?since=yesterday",
            "",
            400,
            Some("since"),
        ),
        ("GET", "/v1/deliveries?until=2025", "", 400, Some("until")),
        ("GET", "/v1/deliveries?cursor=zz", "", 400, Some("cursor")),
        ("GET", "/v1/deliveries?hook=12", "", 400, Some("hook")),
        ("GET", "/v1/deliveries?after=12", "", 400, Some("after")),
        ("POST", "/v1/hooks/hook_77/retry", "", 404, None),
        ("POST", "/v1/hooks/hook_77/recover", "", 400, Some("since")),
        (
            "POST",
            "/v1/hooks/hook_77/recover?since=2025-04-17T09:30:00Z",
            "",
            404,
            None,
        ),
        ("GET", "/v1/events/77", "", 404, None),
        ("GET", "/v1/events/x", "", 404, None),
    ];
    for &(method, path, body, status, at) in cases {
        let answer = send(addr, method, path, &[JSON], body).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        let problems = problems(&answer);
        if let Some(at) = at {
            assert_eq!(
                problems[0].0.as_deref(),
                Some(at),
                "{method} {path}: {problems:?}"
            );
        }
        assert!(!problems[0].1.is_empty());
    }
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_405_with_allow_in_the_error_shape() {
    let (addr, running) = start("allow", None).await;
    let answer = send(addr, "POST", "/v1/workflows/a/secret", &[], "").await;
    assert_eq!(answer.status, 405);
    assert!(answer.head.contains("\r\nallow: get"), "{}", answer.head);
    assert!(problems(&answer)[0].1.contains("POST"));
    let answer = send(addr, "DELETE", "/v1/events", &[], "").await;
    assert_eq!(answer.status, 405);
    assert!(answer.head.contains("allow: post"), "{}", answer.head);
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_is_checked_like_a_workflow_and_changes_only_parameters() {
    let (addr, running) = start("patch", None).await;
    let put = send(
        addr,
        "PUT",
        "/v1/workflows/lab",
        &[JSON],
        r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#,
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let hook = put.body["hooks"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/hooks/{hook}");
    // (headers, body, status, the path the first problem names)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u16, Option<&'a str>);
    let cases: &[Case<'_>] = &[
        (
            &[JSON],
            r#"{"parameters": {"url": "ftp://x.example"}}"#,
            400,
            Some("parameters.url"),
        ),
        (
            &[JSON],
            r#"{"parameters": {"url": "https://b.example", "headers": {"Host": "x"}}}"#,
            400,
            Some("parameters.headers.Host"),
        ),
        (&[JSON], r#"{"filter": "on_run_state_change"}"#, 400, None),
        (&[JSON], r#"{}"#, 400, None),
        (
            &[],
            r#"{"parameters": {"url": "https://b.example"}}"#,
            415,
            None,
        ),
    ];
    for &(headers, body, status, at) in cases {
        let answer = send(addr, "PATCH", &path, headers, body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        if let Some(at) = at {
            assert_eq!(problems(&answer)[0].0.as_deref(), Some(at), "{body}");
        }
    }
    // Nothing changed by the refusals; then a good PATCH changes the URL and keeps the id.
    let got = send(addr, "GET", &path, &[], "").await;
    assert_eq!(got.body["parameters"]["url"], "https://a.example");
    let ok = send(
        addr,
        "PATCH",
        &path,
        &[JSON],
        r#"{"parameters": {"url": "https://b.example", "headers": {"X-Key": "k"}}}"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["id"], hook.as_str());
    assert_eq!(
        ok.body["parameters"],
        json!({"url": "https://b.example", "headers": {"X-Key": "k"}})
    );
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
    let (addr, running) = start("token", Some("s3cret")).await;
    for (authorization, status) in [
        ("Bearer s3cret", 200),
        ("bearer s3cret", 200),
        ("BEARER   s3cret", 200),
        ("Bearer S3CRET", 401),
        ("Bearer s3cre", 401),
        ("Basic s3cret", 401),
        ("Bearers3cret", 401),
    ] {
        let answer = send(
            addr,
            "GET",
            "/v1/workflows",
            &[("authorization", authorization)],
            "",
        )
        .await;
        assert_eq!(answer.status, status, "{authorization}");
        if status == 401 {
            assert!(
                answer.head.contains("www-authenticate: bearer"),
                "{}",
                answer.head
            );
            problems(&answer);
        }
    }
    assert_eq!(send(addr, "GET", "/healthz", &[], "").await.status, 200);
    running.abort();
}

/// A page in a browser on this machine must not drive the API: a body that is not declared JSON
/// (what a page may send across sites unasked) gets 415, a cross-site `Origin` 403, and without
/// a token a `Host` that is not a loopback name 403 (DNS rebinding) — and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_web_page_could_forge_are_refused() {
    let (addr, running) = start("guard", None).await;
    let event = r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let hooks = r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#;
    let local = format!("http://{addr}");
    // (method, path, headers, body, status)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, u16);
    let cases: &[Case<'_>] = &[
        (
            "PUT",
            "/v1/workflows/default",
            &[("content-type", "text/plain")],
            hooks,
            415,
        ),
        ("PUT", "/v1/workflows/default", &[], hooks, 415),
        (
            "PUT",
            "/v1/workflows/default",
            &[JSON, ("origin", "https://evil.example")],
            hooks,
            403,
        ),
        (
            "PUT",
            "/v1/workflows/default",
            &[JSON, ("origin", "null")],
            hooks,
            403,
        ),
        (
            "GET",
            "/v1/workflows",
            &[("host", "rebind.evil.example")],
            "",
            403,
        ),
        (
            "GET",
            "/v1/workflows",
            &[("host", "evil.example:8625")],
            "",
            403,
        ),
        (
            "POST",
            "/v1/workflows/default/secret/rotate",
            &[("origin", "https://evil.example")],
            "",
            403,
        ),
    ];
    for &(method, path, headers, body, status) in cases {
        let answer = send(addr, method, path, headers, body).await;
        assert_eq!(
            answer.status, status,
            "{method} {path} {headers:?}: {}",
            answer.body
        );
        problems(&answer);
    }
    assert_eq!(
        send(addr, "GET", "/v1/workflows/default", &[], "")
            .await
            .status,
        404,
        "nothing was created"
    );
    // The same requests, as the API's own clients send them, pass.
    let authority = addr.to_string();
    let origin = [
        JSON,
        ("origin", local.as_str()),
        ("host", authority.as_str()),
    ];
    assert_eq!(
        send(addr, "PUT", "/v1/workflows/default", &origin, hooks)
            .await
            .status,
        201
    );
    let json_utf8 = [("content-type", "Application/JSON; charset=utf-8")];
    assert_eq!(
        send(addr, "POST", "/v1/events", &json_utf8, event)
            .await
            .status,
        202
    );
    for host in ["localhost:1", "[::1]:8625", "127.0.0.2"] {
        let answer = send(addr, "GET", "/v1/workflows", &[("host", host)], "").await;
        assert_eq!(answer.status, 200, "{host}");
    }
    running.abort();

    // With a token, any Host may be used (a reverse proxy's name), the token is what counts.
    let (addr, running) = start("guard-token", Some("t0ken")).await;
    let by_name = [
        ("host", "hooks.lab.example"),
        ("authorization", "Bearer t0ken"),
    ];
    assert_eq!(
        send(addr, "GET", "/v1/workflows", &by_name, "")
            .await
            .status,
        200
    );
    running.abort();
}

/// Each id has one spelling: a number with a sign or a leading zero names nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_have_one_spelling_and_warnings_come_back() {
    let (addr, running) = start("spelling", None).await;
    let doc = r#"[{"filter": "on_task_state_change", "task_ids": [], "taskid": "t1", "parameters": {"url": "https://a.example"}}]"#;
    let put = send(addr, "PUT", "/v1/workflows/lab", &[JSON], doc).await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(
        put.body["warnings"][0]["path"], "[0].taskid",
        "{}",
        put.body
    );
    let hook = put.body["hooks"][0]["id"].as_str().unwrap().to_string();
    let event = r#"{"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let posted = send(addr, "POST", "/v1/workflows/lab/events", &[JSON], event).await;
    assert_eq!(posted.status, 202, "{}", posted.body);
    let delivery = posted.body["deliveries"][0]["id"].as_u64().unwrap();
    assert_eq!(
        send(addr, "GET", &format!("/v1/hooks/{hook}"), &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        send(addr, "GET", &format!("/v1/deliveries/{delivery}"), &[], "")
            .await
            .status,
        200
    );
    let number = hook.strip_prefix("hook_").unwrap();
    for path in [
        format!("/v1/hooks/hook_0{number}"),
        format!("/v1/hooks/hook_+{number}"),
        format!("/v1/deliveries/0{delivery}"),
        format!("/v1/deliveries/+{delivery}"),
    ] {
        assert_eq!(
            send(addr, "GET", &path, &[], "").await.status,
            404,
            "{path}"
        );
    }
    // A PATCH with a misspelt field keeps the hook's headers as they were given (none) and says
    // which field it ignored.
    let patch =
        r#"{"parameters": {"url": "https://b.example", "header": {"Authorization": "Bearer x"}}}"#;
    let patched = send(addr, "PATCH", &format!("/v1/hooks/{hook}"), &[JSON], patch).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.body["warnings"][0]["path"], "parameters.header",
        "{}",
        patched.body
    );
    running.abort();
}

/// Panics on every call.
struct Panicking;

#[linq_hooks_transport::async_trait]
impl linq_hooks_transport::Transport for Panicking {
    async fn send(
        &self,
        _: linq_hooks_transport::Request,
    ) -> Result<linq_hooks_transport::Response, linq_hooks_transport::Error> {
        panic!("the test transport panics")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_in_back_off_makes_healthz_503_naming_its_hook_and_is_counted() {
    let path = std::env::temp_dir().join(format!("service-api-panics-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut config = ServiceConfig::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let service = Service::start(config, Arc::new(Panicking)).await.unwrap();
    let addr = service.local_addr();
    let running = tokio::spawn(service.run_until(std::future::pending()));
    let put = send(
        addr,
        "PUT",
        "/v1/workflows/lab",
        &[JSON],
        r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#,
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let hook = put.body["hooks"][0]["id"].as_str().unwrap().to_string();
    let event = r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let posted = send(addr, "POST", "/v1/workflows/lab/events", &[JSON], event).await;
    assert_eq!(posted.status, 202, "{}", posted.body);

    // The worker panics on each attempt and waits longer each time: 503 most of the time.
    let health = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let health = send(addr, "GET", "/healthz", &[], "").await;
            if health.status == 503 {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("healthz says 503 while the worker is in back-off");
    let reason = health.body["reason"].as_str().unwrap();
    assert!(reason.contains(&hook), "{reason}");
    let metrics = send(addr, "GET", "/metrics", &[], "").await;
    let text = metrics.body.as_str().unwrap();
    let restarts = text
        .lines()
        .find_map(|line| line.strip_prefix("linq_hooks_worker_restarts_total "))
        .expect("the restart counter");
    assert!(restarts.parse::<u64>().unwrap() >= 1, "{text}");
    running.abort();
}

/// An ingest body that starts with a UTF-8 byte order mark is read as if it had none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_body_with_a_byte_order_mark_is_accepted() {
    let (addr, running) = start("bom", None).await;
    let hooks =
        "\u{feff}[{\"filter\": \"on_new_plan\", \"parameters\": {\"url\": \"https://a.example\"}}]";
    assert_eq!(
        send(addr, "PUT", "/v1/workflows/default", &[JSON], hooks)
            .await
            .status,
        201
    );
    let event = "\u{feff}{\"event\": \"new_plan\", \"plan_id\": \"p\", \"timestamp\": \"2025-04-17T09:30:00Z\"}";
    let answer = send(addr, "POST", "/v1/events", &[JSON], event).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["accepted"], 1);
    running.abort();
}

/// `GET /v1/hooks` is paged like the other lists (the field fault: 100 000 hooks came back as
/// one 15 MB answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_list_is_paged() {
    let (addr, running) = start("hooks-paged", None).await;
    let hooks = r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}},
                    {"filter": "on_run_state_change", "parameters": {"url": "https://b.example"}},
                    {"filter": "on_safety_state_change", "parameters": {"url": "https://c.example"}}]"#;
    assert_eq!(
        send(addr, "PUT", "/v1/workflows/lab", &[JSON], hooks)
            .await
            .status,
        201
    );
    let mut seen = Vec::new();
    let mut path = "/v1/hooks?limit=2".to_string();
    for _ in 0..5 {
        let page = send(addr, "GET", &path, &[], "").await;
        assert_eq!(page.status, 200, "{}", page.body);
        for hook in page.body["hooks"].as_array().unwrap() {
            seen.push(hook["parameters"]["url"].as_str().unwrap().to_string());
        }
        match page.body["next_after"].as_str() {
            Some(after) => path = format!("/v1/hooks?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "https://a.example",
            "https://b.example",
            "https://c.example"
        ]
    );
    for bad in [
        "/v1/hooks?limit=0",
        "/v1/hooks?after=12",
        "/v1/hooks?after=hook_x",
    ] {
        assert_eq!(send(addr, "GET", bad, &[], "").await.status, 400, "{bad}");
    }
    running.abort();
}

/// The field fault: a proxy reset the client after `serve` had sent its 202, the client
/// retried, and every event was stored twice under new webhook-ids. With an `Idempotency-Key`,
/// a repeat stores nothing and gets the first answer; the same key with another body is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_makes_a_retried_ingest_store_nothing() {
    let (addr, running) = start("idempotency", None).await;
    let hooks = r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#;
    assert_eq!(
        send(addr, "PUT", "/v1/workflows/lab", &[JSON], hooks)
            .await
            .status,
        201
    );
    let events = r#"[{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"},
                     {"event": "new_plan", "plan_id": "p2", "timestamp": "2025-04-17T09:30:01Z"}]"#;
    let key = [JSON, ("idempotency-key", "batch-7f3a")];
    let first = send(addr, "POST", "/v1/workflows/lab/events", &key, events).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let again = send(addr, "POST", "/v1/workflows/lab/events", &key, events).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(
        again.body, first.body,
        "the first answer, the same webhook-ids"
    );
    assert!(
        again.head.contains("idempotent-replayed: true"),
        "{}",
        again.head
    );
    assert_eq!(stored(addr).await, 2, "stored once");
    // The same key for other events: refused, nothing stored.
    let other = r#"{"event": "new_plan", "plan_id": "p3", "timestamp": "2025-04-17T09:30:02Z"}"#;
    let reused = send(addr, "POST", "/v1/workflows/lab/events", &key, other).await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(problems(&reused)[0].0.as_deref(), Some("Idempotency-Key"));
    // Keys are per workflow, and a malformed key is refused.
    let key_b = [JSON, ("idempotency-key", "batch-7f3a")];
    assert_eq!(
        send(addr, "PUT", "/v1/workflows/other", &[JSON], hooks)
            .await
            .status,
        201
    );
    assert_eq!(
        send(addr, "POST", "/v1/workflows/other/events", &key_b, other)
            .await
            .status,
        202
    );
    let bad = [JSON, ("idempotency-key", "has space")];
    assert_eq!(
        send(addr, "POST", "/v1/workflows/lab/events", &bad, other)
            .await
            .status,
        400
    );
    assert_eq!(stored(addr).await, 3);
    running.abort();
}

/// How many deliveries the store holds, once none is pending (the test transport answers 200;
/// counting pending and delivered in two reads could count one that moved between them twice).
async fn stored(addr: std::net::SocketAddr) -> usize {
    let count = |state: &'static str| async move {
        let list = send(
            addr,
            "GET",
            &format!("/v1/deliveries?state={state}"),
            &[],
            "",
        )
        .await;
        list.body["deliveries"].as_array().unwrap().len()
    };
    for _ in 0..500 {
        if count("pending").await == 0 {
            return count("delivered").await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("deliveries still pending after 5 s");
}

/// The field fault: a 1 MiB ingest body of invalid events got a 57 MB error answer. An answer
/// lists at most a hundred problems, then counts the rest; a workflow document likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lists_a_hundred_problems_then_counts_the_rest() {
    let (addr, running) = start("bounded", None).await;
    let hooks = r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#;
    assert_eq!(
        send(addr, "PUT", "/v1/workflows/default", &[JSON], hooks)
            .await
            .status,
        201
    );
    // About 1 MiB: many events, each invalid (a long unknown kind, quoted back in its message).
    let bad = format!(r#"{{"event": "{}", "timestamp": "nope"}}"#, "x".repeat(200));
    let n = (1000 * 1024) / (bad.len() + 1);
    let body = format!("[{}]", vec![bad.as_str(); n].join(","));
    assert!(body.len() <= 1024 * 1024);
    let answer = send(addr, "POST", "/v1/events", &[JSON], &body).await;
    assert_eq!(answer.status, 400);
    let listed = problems(&answer);
    assert_eq!(listed.len(), 101, "a hundred, then the count");
    assert_eq!(listed[0].0.as_deref(), Some("[0].event"));
    assert_eq!(
        listed[100].1,
        format!("and {} more problems not listed", n - 100)
    );
    assert!(answer.body.to_string().len() < 64 * 1024, "a small answer");
    // A workflow document with thousands of problems.
    let hook = r#"{"filter": "on_new_plan", "parameters": {"url": "relative"}}"#;
    let doc = format!("[{}]", vec![hook; 5000].join(","));
    let answer = send(addr, "PUT", "/v1/workflows/many", &[JSON], &doc).await;
    assert_eq!(answer.status, 400);
    let listed = problems(&answer);
    assert_eq!(listed.len(), 101);
    assert_eq!(listed[100].1, "and 4900 more problems not listed");
    running.abort();
}
