//! The operations API on a real `linq-hooks serve`: retry now, hook retry and recover, the
//! deliveries listing, events, and what an attempt keeps of the answer; real receivers on
//! 127.0.0.1 and a real store file.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{PROXY_VARIABLES, Serve, eventually, hooks_file, plan, plan_hook, store};
use linq_hooks_tests::{Received, Receiver};
use serde_json::{Value, json};

/// `serve` with these arguments and `RUST_LOG=info`, so that its log of operations is seen.
async fn serve_logging(args: &[&str]) -> Serve {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_linq-hooks"));
    command
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    Serve::start_command(command).await
}

/// The ids of a listing page, in the order given.
fn ids(page: &Value) -> Vec<u64> {
    page["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

/// (plan id, webhook-id) of each request a receiver got, in order.
fn arrivals(received: &[Received]) -> Vec<(String, String)> {
    received
        .iter()
        .map(|r| {
            (
                r.json()["plan_id"].as_str().unwrap().to_string(),
                r.header("webhook-id").unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_delivers_a_pending_delivery_at_once() {
    let (receiver, up) = common::switchable(503).await;
    let hooks = hooks_file("retry-now", json!([plan_hook(receiver.url("/"))]));
    // The retry after the first failure is an hour out.
    let serve = serve_logging(&[
        "--hooks",
        &hooks,
        "--store",
        &store("retry-now"),
        "--retry-schedule",
        "1h",
    ])
    .await;
    let reply = serve.post_events(plan(0)).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let id = reply.body["deliveries"][0]["id"].as_u64().unwrap();
    eventually("the first attempt fails and a retry is planned", || async {
        serve.get(&format!("/v1/deliveries/{id}")).await["next_attempt_at"].is_string()
    })
    .await;
    let waiting = serve.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(waiting["state"], "pending");
    assert_eq!(waiting["last_status"], 503);
    let hook = &serve.get("/v1/hooks/hook_1").await["state"];
    assert_eq!(hook["last_status"], 503);
    assert!(hook["last_attempt_at"].is_string(), "{hook}");

    up.store(true, Ordering::SeqCst);
    let retried = serve
        .call("POST", &format!("/v1/deliveries/{id}/retry"), None)
        .await;
    assert_eq!(retried.status, 202, "{:?}", retried.body);
    assert_eq!(retried.body, json!({"id": id, "state": "pending"}));
    // Well within the hour the schedule said.
    eventually("the delivery is delivered now", || async {
        serve.get(&format!("/v1/deliveries/{id}")).await["state"] == "delivered"
    })
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    let detail = serve.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(detail["last_status"], 200);
    assert_eq!(detail["attempt_log"].as_array().unwrap().len(), 2);
    assert_eq!(
        serve.get("/v1/hooks/hook_1").await["state"]["last_status"],
        200
    );

    // Delivered: nothing to retry.
    let again = serve
        .call("POST", &format!("/v1/deliveries/{id}/retry"), None)
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let log = serve.stderr.lock().unwrap().clone();
    assert!(
        log.lines().any(|l| l.contains("retry now")
            && l.contains("hook_1")
            && l.contains(&format!("delivery={id}"))),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_retry_wakes_its_queue_now() {
    let (receiver, up) = common::switchable(503).await;
    let hooks = hooks_file("hook-retry", json!([plan_hook(receiver.url("/"))]));
    let serve = serve_logging(&[
        "--hooks",
        &hooks,
        "--store",
        &store("hook-retry"),
        "--retry-schedule",
        "1h",
    ])
    .await;
    serve.post_plans(0..3).await;
    eventually("the first delivery waits for its retry", || async {
        serve.get("/v1/deliveries/1").await["next_attempt_at"].is_string()
    })
    .await;
    up.store(true, Ordering::SeqCst);
    let woken = serve.call("POST", "/v1/hooks/hook_1/retry", None).await;
    assert_eq!(woken.status, 202, "{:?}", woken.body);
    assert_eq!(woken.body, json!({"hook": "hook_1", "pending": 3}));
    eventually("all three are delivered, in order", || async {
        serve.get("/v1/hooks/hook_1").await["state"]["pending"] == 0
    })
    .await;
    let plans: Vec<String> = arrivals(&receiver.received())
        .into_iter()
        .map(|(plan, _)| plan)
        .collect();
    assert_eq!(plans, ["p0", "p0", "p1", "p2"]);
    assert_eq!(
        serve
            .call("POST", "/v1/hooks/hook_9/retry", None)
            .await
            .status,
        404
    );
    let log = serve.stderr.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("hook retry") && l.contains("hook_1") && l.contains("pending=3")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_replays_a_hooks_failed_deliveries_in_order() {
    // 401 with a reason (not retried: each delivery fails at once), then 503 (retried an hour
    // later), then 200.
    let mode = Arc::new(Mutex::new(401));
    let receiver = Receiver::start_with_body({
        let mode = mode.clone();
        move |_, _| {
            let status = *mode.lock().unwrap();
            let body = if status == 401 {
                b"signature mismatch: check the workflow's secret".to_vec()
            } else {
                Vec::new()
            };
            ((status, vec![]), body)
        }
    })
    .await;
    let hooks = hooks_file("recover", json!([plan_hook(receiver.url("/"))]));
    let serve = serve_logging(&[
        "--hooks",
        &hooks,
        "--store",
        &store("recover"),
        "--retry-schedule",
        "1h",
    ])
    .await;
    let before = "2020-01-01T00:00:00Z";
    serve.post_plans(0..3).await;
    eventually("three deliveries fail", || async {
        serve.get("/v1/hooks/hook_1").await["state"]["failed"] == 3
    })
    .await;
    let failed = serve.get("/v1/deliveries/1").await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["last_status"], 401);
    assert_eq!(
        failed["attempt_log"][0]["response_body"],
        "signature mismatch: check the workflow's secret"
    );
    assert_eq!(failed["attempt_log"][0]["response_body_truncated"], false);

    // The receiver now answers 503: the fourth delivery waits an hour for its retry.
    *mode.lock().unwrap() = 503;
    serve.post_plans(3..4).await;
    eventually("the fourth waits for its retry", || async {
        serve.get("/v1/deliveries/4").await["next_attempt_at"].is_string()
    })
    .await;
    let first_ids: Vec<(String, String)> = arrivals(&receiver.received());
    assert_eq!(first_ids.len(), 4);

    *mode.lock().unwrap() = 200;
    // A time after everything: nothing to replay.
    let none = serve
        .call(
            "POST",
            "/v1/hooks/hook_1/recover?since=2999-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(none.status, 202, "{:?}", none.body);
    assert_eq!(none.body, json!({"hook": "hook_1", "replayed": []}));
    let recovered = serve
        .call(
            "POST",
            &format!("/v1/hooks/hook_1/recover?since={before}"),
            None,
        )
        .await;
    assert_eq!(recovered.status, 202, "{:?}", recovered.body);
    assert_eq!(
        recovered.body,
        json!({"hook": "hook_1", "replayed": [1, 2, 3]})
    );
    // The replayed ones go by id, ahead of the fourth, which keeps its due time (an hour out).
    eventually("the three replayed are delivered", || async {
        receiver.received().len() == 7
    })
    .await;
    assert_eq!(serve.get("/v1/deliveries/4").await["state"], "pending");
    assert_eq!(serve.get("/v1/hooks/hook_1").await["state"]["failed"], 0);
    // Then a retry of the hook sends the fourth now.
    assert_eq!(
        serve
            .call("POST", "/v1/hooks/hook_1/retry", None)
            .await
            .status,
        202
    );
    eventually("the fourth is delivered", || async {
        serve.get("/v1/deliveries/4").await["state"] == "delivered"
    })
    .await;
    let after: Vec<(String, String)> = arrivals(&receiver.received())[4..].to_vec();
    let expected: Vec<(String, String)> = first_ids.clone();
    assert_eq!(after, expected, "in order, with the same webhook-ids");

    // `since` is required and must be a time; the hook must exist.
    for (query, status, path) in [
        ("", 400, Some("since")),
        ("?since=yesterday", 400, Some("since")),
        ("?since=2020-01-01T00:00:00Z&colour=red", 400, None),
    ] {
        let reply = serve
            .call("POST", &format!("/v1/hooks/hook_1/recover{query}"), None)
            .await;
        assert_eq!(reply.status, status, "{query}: {:?}", reply.body);
        if let Some(path) = path {
            assert_eq!(reply.body["errors"][0]["path"], path, "{query}");
        }
    }
    assert_eq!(
        serve
            .call(
                "POST",
                "/v1/hooks/hook_9/recover?since=2020-01-01T00:00:00Z",
                None
            )
            .await
            .status,
        404
    );
    let log = serve.stderr.lock().unwrap().clone();
    assert!(
        log.lines()
            .any(|l| l.contains("recover: failed deliveries replayed")
                && l.contains("hook=hook_1")
                && l.contains("count=3")
                && l.contains("first_delivery=1 last_delivery=3")),
        "{log}"
    );
    // `hook recovered` is the line of a hook that delivers again, not of the request; and the
    // request's line stays one short line whatever the number replayed.
    assert!(
        !log.lines().any(|l| l.contains("hook recovered: failed")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_keeps_the_first_kib_of_the_answer_marked_when_cut() {
    let receiver = Receiver::start_with_body(|request, _| {
        let body = if request.path == "/long" {
            // 1 500 bytes, multi-byte characters across the 1 KiB mark.
            "é".repeat(750).into_bytes()
        } else {
            b"no such plan".to_vec()
        };
        ((422, vec![]), body)
    })
    .await;
    let hooks = hooks_file(
        "answer-body",
        json!([
            plan_hook(receiver.url("/long")),
            plan_hook(receiver.url("/short"))
        ]),
    );
    let serve = Serve::start(&["--hooks", &hooks, "--store", &store("answer-body")]).await;
    serve.post_plans(0..1).await;
    eventually("both fail", || async {
        ids(&serve.get("/v1/deliveries?state=failed").await).len() == 2
    })
    .await;
    let long = serve.get("/v1/deliveries/1").await;
    let kept = long["attempt_log"][0]["response_body"].as_str().unwrap();
    assert_eq!(kept, "é".repeat(512), "1 024 bytes, cut between characters");
    assert_eq!(long["attempt_log"][0]["response_body_truncated"], true);
    let short = serve.get("/v1/deliveries/2").await;
    assert_eq!(short["attempt_log"][0]["response_body"], "no such plan");
    assert_eq!(short["attempt_log"][0]["response_body_truncated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_listed_newest_first_filtered_and_paged() {
    let receiver = Receiver::start(|request, _| {
        if request.path == "/bad" {
            (422, vec![])
        } else {
            (200, vec![])
        }
    })
    .await;
    let hooks = hooks_file("listing", json!([plan_hook(receiver.url("/ok"))]));
    let serve = Serve::start(&["--hooks", &hooks, "--store", &store("listing")]).await;
    let put = serve
        .call(
            "PUT",
            "/v1/workflows/lab-b",
            Some(json!([plan_hook(receiver.url("/bad"))])),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    serve.post_plans(0..5).await;
    eventually("five delivered", || async {
        ids(&serve.get("/v1/deliveries?state=delivered").await).len() == 5
    })
    .await;
    for n in 5..8 {
        let reply = serve
            .call("POST", "/v1/workflows/lab-b/events", Some(plan(n)))
            .await;
        assert_eq!(reply.status, 202, "{:?}", reply.body);
    }
    eventually("three failed", || async {
        ids(&serve.get("/v1/deliveries?state=failed").await).len() == 3
    })
    .await;

    // Every state by default, newest first.
    let all = serve.get("/v1/deliveries").await;
    assert_eq!(ids(&all), [8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(all["deliveries"][0]["workflow_id"], "lab-b");
    assert_eq!(all["deliveries"][0]["last_status"], 422);

    // Paged with the cursor.
    let mut pages = Vec::new();
    let mut path = "/v1/deliveries?limit=3".to_string();
    loop {
        let page = serve.get(&path).await;
        pages.push(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/deliveries?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, [vec![8, 7, 6], vec![5, 4, 3], vec![2, 1]]);

    // The filters, alone and together.
    let created: Vec<String> = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["created_at"].as_str().unwrap().to_string())
        .collect();
    let sixth = &created[2]; // delivery 6
    let expect_since: Vec<u64> = ids(&all)
        .into_iter()
        .zip(&created)
        .filter(|(_, at)| at.as_str() >= sixth.as_str())
        .map(|(id, _)| id)
        .collect();
    let expect_until: Vec<u64> = ids(&all)
        .into_iter()
        .zip(&created)
        .filter(|(_, at)| at.as_str() < sixth.as_str())
        .map(|(id, _)| id)
        .collect();
    let cases: Vec<(String, Vec<u64>)> = vec![
        ("workflow=lab-b".into(), vec![8, 7, 6]),
        ("workflow=default".into(), vec![5, 4, 3, 2, 1]),
        ("workflow=nowhere".into(), vec![]),
        ("hook=hook_1".into(), vec![5, 4, 3, 2, 1]),
        ("hook=hook_2".into(), vec![8, 7, 6]),
        ("hook=hook_2&workflow=default".into(), vec![]),
        ("hook=hook_77".into(), vec![]),
        ("state=failed".into(), vec![8, 7, 6]),
        ("state=pending".into(), vec![]),
        ("workflow=default&state=failed".into(), vec![]),
        ("hook=hook_1&state=delivered&limit=2".into(), vec![5, 4]),
        ("status=4xx".into(), vec![8, 7, 6]),
        ("status=2xx".into(), vec![5, 4, 3, 2, 1]),
        ("status=5xx".into(), vec![]),
        ("status=none".into(), vec![]),
        (format!("since={sixth}"), expect_since),
        (format!("until={sixth}"), expect_until),
        ("since=2999-01-01T00:00:00Z".into(), vec![]),
        ("until=2000-01-01T00:00:00Z".into(), vec![]),
        // An offset's `+` sent unencoded arrives as a space; it is read as the `+` it was.
        (
            "since=2000-01-01T00:00:00+02:00".into(),
            vec![8, 7, 6, 5, 4, 3, 2, 1],
        ),
    ];
    for (query, expected) in cases {
        let page = serve.get(&format!("/v1/deliveries?{query}")).await;
        assert_eq!(ids(&page), expected, "{query}");
        if query != "hook=hook_1&state=delivered&limit=2" {
            assert_eq!(page["next_cursor"], Value::Null, "{query}");
        }
    }

    // Bad parameters: 400 naming the parameter.
    for (query, parameter) in [
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        ("limit=ten", Some("limit")),
        ("state=lost", Some("state")),
        ("status=6xx", Some("status")),
        ("status=404", Some("status")),
        ("since=yesterday", Some("since")),
        ("until=2025-04-17", Some("until")),
        ("cursor=zz", Some("cursor")),
        ("cursor=c0", Some("cursor")),
        ("hook=12", Some("hook")),
        ("workflow=", Some("workflow")),
        ("after=3", None),
    ] {
        let reply = serve
            .call("GET", &format!("/v1/deliveries?{query}"), None)
            .await;
        assert_eq!(reply.status, 400, "{query}: {:?}", reply.body);
        let message = reply.body["errors"][0]["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{query}");
        if let Some(parameter) = parameter {
            assert_eq!(reply.body["errors"][0]["path"], parameter, "{query}");
        }
    }

    // An event: its body, and its deliveries.
    let first = serve.get("/v1/deliveries/1").await;
    let event = first["event"].as_u64().unwrap();
    let shown = serve.get(&format!("/v1/events/{event}")).await;
    assert_eq!(shown["id"], event);
    assert_eq!(shown["workflow_id"], "default");
    assert_eq!(shown["body"]["plan_id"], "p0");
    assert_eq!(shown["body"]["event"], "new_plan");
    assert!(shown["received_at"].is_string());
    assert_eq!(ids(&shown), [1]);
    assert_eq!(shown["deliveries"][0]["state"], "delivered");
    let failed_event = serve.get("/v1/deliveries/8").await["event"]
        .as_u64()
        .unwrap();
    let shown = serve.get(&format!("/v1/events/{failed_event}")).await;
    assert_eq!(shown["workflow_id"], "lab-b");
    assert_eq!(shown["body"]["plan_id"], "p7");
    assert_eq!(shown["deliveries"][0]["state"], "failed");
    for missing in ["/v1/events/999", "/v1/events/abc", "/v1/events/01"] {
        assert_eq!(
            serve.call("GET", missing, None).await.status,
            404,
            "{missing}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_delivery_of_a_disabled_hook_says_to_enable_it() {
    let gone = Arc::new(AtomicBool::new(true));
    let receiver = Receiver::start({
        let gone = gone.clone();
        move |_, _| {
            (
                if gone.load(Ordering::SeqCst) {
                    410
                } else {
                    200
                },
                vec![],
            )
        }
    })
    .await;
    let hooks = hooks_file("gone", json!([plan_hook(receiver.url("/"))]));
    let serve = Serve::start(&["--hooks", &hooks, "--store", &store("gone")]).await;
    serve.post_plans(0..1).await;
    eventually("a 410 disables the hook", || async {
        serve.get("/v1/hooks/hook_1").await["state"]["enabled"] == false
    })
    .await;
    let retry = serve.call("POST", "/v1/deliveries/1/retry", None).await;
    assert_eq!(retry.status, 409, "{:?}", retry.body);
    assert!(
        retry.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/hooks/hook_1/enable"),
        "{:?}",
        retry.body
    );
    let hook_retry = serve.call("POST", "/v1/hooks/hook_1/retry", None).await;
    assert_eq!(hook_retry.status, 409, "{:?}", hook_retry.body);
    gone.store(false, Ordering::SeqCst);
    let enabled = serve.call("POST", "/v1/hooks/hook_1/enable", None).await;
    assert_eq!(enabled.status, 200);
    eventually("delivered once enabled", || async {
        serve.get("/v1/deliveries/1").await["state"] == "delivered"
    })
    .await;
}
