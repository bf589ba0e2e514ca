//! Hooks as live data, with real processes: `serve` without `--hooks`, workflows registered and
//! edited over the API, each signed with its own secret, `serve` killed with SIGKILL between the
//! steps, and `--hooks` re-read on SIGHUP.

mod common;

use common::{Serve, eventually, hooks_file, plan, plan_hook, store};
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
use linq_hooks_tests::{Received, Receiver};
use serde_json::{Value, json};

/// A URL on 127.0.0.1 where nothing listens: connections are refused.
fn nowhere(path: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}{path}")
}

/// The distinct webhook ids a receiver got at `path`, in the order they first came.
fn first_ids(received: &[Received], path: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for r in received.iter().filter(|r| r.path == path) {
        let id = r.header("webhook-id").unwrap().to_string();
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    seen
}

fn verifies(secret: &str, request: &Received) -> bool {
    let verifier = Verifier::new([secret.parse::<Secret>().unwrap()]);
    verifier
        .verify(
            WebhookHeaders::from_fn(|name| request.header(name)),
            &request.body,
        )
        .is_ok()
}

/// `PUT /v1/workflows/{id}`; returns the answer's body after checking its status.
async fn put(serve: &Serve, id: &str, doc: Value, status: u16) -> Value {
    let reply = serve
        .call("PUT", &format!("/v1/workflows/{id}"), Some(doc))
        .await;
    assert_eq!(reply.status, status, "PUT {id}: {:?}", reply.body);
    reply.body
}

/// Posts `plan(n)` for each `n` to a workflow; returns the webhook ids, in order.
async fn post_plans(serve: &Serve, workflow: &str, plans: std::ops::Range<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for n in plans {
        let reply = serve
            .call(
                "POST",
                &format!("/v1/workflows/{workflow}/events"),
                Some(plan(n)),
            )
            .await;
        assert_eq!(reply.status, 202, "p{n}: {:?}", reply.body);
        for d in reply.body["deliveries"].as_array().unwrap() {
            ids.push(d["webhook_id"].as_str().unwrap().to_string());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_workflow_gets_its_own_events_signed_with_its_own_secret() {
    let receiver = Receiver::start(|_, _| (200, vec![])).await;
    let store = store("registry-two");
    let serve = Serve::start(&["--store", &store]).await;
    assert_eq!(serve.get("/v1/workflows").await["workflows"], json!([]));
    let a = put(&serve, "lab-a", json!([plan_hook(receiver.url("/a"))]), 201).await;
    let b = put(
        &serve,
        "0b7e3c1e-8a4f-4d61-9f7a-2f1d3c9e5a10",
        json!({"workflow": {"hooks": [plan_hook(receiver.url("/b"))], "tasks": {}}}),
        201,
    )
    .await;
    let (secret_a, secret_b) = (a["secret"].as_str().unwrap(), b["secret"].as_str().unwrap());
    assert_ne!(secret_a, secret_b);
    assert!(a["hooks"][0]["id"].as_str().unwrap().starts_with("hook_"));
    // The secret is there to read again, and a second PUT does not show or change it.
    let read = serve.get("/v1/workflows/lab-a/secret").await;
    assert_eq!(read["secret"], a["secret"]);
    let again = put(&serve, "lab-a", json!([plan_hook(receiver.url("/a"))]), 200).await;
    assert!(again.get("secret").is_none());
    assert_eq!(again["hooks"][0]["id"], a["hooks"][0]["id"]);

    let to_a = post_plans(&serve, "lab-a", 0..3).await;
    let to_b = post_plans(&serve, "0b7e3c1e-8a4f-4d61-9f7a-2f1d3c9e5a10", 3..5).await;
    eventually("every webhook arrives", || async {
        receiver.received().len() >= 5
    })
    .await;
    let received = receiver.received();
    assert_eq!(first_ids(&received, "/a"), to_a);
    assert_eq!(first_ids(&received, "/b"), to_b);
    for request in &received {
        let (own, other) = if request.path == "/a" {
            (secret_a, secret_b)
        } else {
            (secret_b, secret_a)
        };
        assert!(verifies(own, request), "signed with its workflow's secret");
        assert!(
            !verifies(other, request),
            "another workflow's secret must not verify"
        );
    }
    // Rotation: for the grace period each webhook carries two signatures, one per secret.
    let rotated = serve
        .call("POST", "/v1/workflows/lab-a/secret/rotate", None)
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let new_a = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_a, secret_a);
    assert_eq!(rotated.body["previous"][0]["secret"], secret_a);
    let after = post_plans(&serve, "lab-a", 5..6).await;
    eventually("the webhook after the rotation arrives", || async {
        first_ids(&receiver.received(), "/a").contains(&after[0])
    })
    .await;
    let received = receiver.received();
    let signed = received
        .iter()
        .find(|r| r.header("webhook-id") == Some(after[0].as_str()))
        .unwrap();
    assert_eq!(
        signed
            .header("webhook-signature")
            .unwrap()
            .matches("v1,")
            .count(),
        2
    );
    assert!(verifies(&new_a, signed) && verifies(secret_a, signed));
    assert!(!verifies(secret_b, signed));
    // A second rotation within the grace period: a receiver still on the first secret goes on
    // verifying (three signatures now).
    let again = serve
        .call("POST", "/v1/workflows/lab-a/secret/rotate", None)
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["previous"].as_array().unwrap().len(), 2);
    let later = post_plans(&serve, "lab-a", 6..7).await;
    eventually("the webhook after the second rotation arrives", || async {
        first_ids(&receiver.received(), "/a").contains(&later[0])
    })
    .await;
    let received = receiver.received();
    let signed = received
        .iter()
        .find(|r| r.header("webhook-id") == Some(later[0].as_str()))
        .unwrap();
    assert_eq!(
        signed
            .header("webhook-signature")
            .unwrap()
            .matches("v1,")
            .count(),
        3
    );
    assert!(
        verifies(secret_a, signed),
        "the first secret still verifies"
    );
    // Unknown workflow: 404, nothing stored.
    let reply = serve
        .call("POST", "/v1/workflows/nope/events", Some(plan(9)))
        .await;
    assert_eq!(reply.status, 404);
    // An invalid document changes nothing and names the path.
    let reply = serve
        .call(
            "PUT",
            "/v1/workflows/lab-a",
            Some(json!({"workflow": {"hooks": [{"filter": "on_new_plan", "parameters": {"url": "ftp://x"}}]}})),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.body["errors"][0]["path"],
        "workflow.hooks[0].parameters.url"
    );
    assert_eq!(
        serve.get("/v1/workflows/lab-a").await["hooks"][0]["id"],
        a["hooks"][0]["id"]
    );
    serve.kill().await;
}

/// With the receiver's URL wrong, 20 events wait; the URL is corrected by `edit` (a PUT of the
/// whole workflow, or a PATCH of the hook): the 20 arrive at the new URL in order, with their
/// original `webhook-id`s. `serve` is killed with SIGKILL and restarted between the steps.
async fn corrected_url_takes_the_waiting_deliveries(name: &str, by_patch: bool) {
    let receiver = Receiver::start(|_, _| (200, vec![])).await;
    let store = store(name);
    let args = ["--store", store.as_str(), "--retry-schedule", "1h"];
    let serve = Serve::start(&args).await;
    let wrong = nowhere("/plans");
    let removed = nowhere("/gone");
    let created = put(
        &serve,
        "lims",
        json!([
            plan_hook(wrong.clone()),
            {"filter": "on_run_state_change", "parameters": {"url": removed}}
        ]),
        201,
    )
    .await;
    let hook = created["hooks"][0]["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    let mut ids = post_plans(&serve, "lims", 0..20).await;
    let run = serve
        .call(
            "POST",
            "/v1/workflows/lims/events",
            Some(json!({"event": "run_state_change", "run_id": "r1", "state": "started", "timestamp": "2025-04-17T09:30:00Z"})),
        )
        .await;
    assert_eq!(run.status, 202);
    let run_delivery = run.body["deliveries"][0]["id"].as_u64().unwrap();
    ids.truncate(20);
    serve.kill().await;

    let serve = Serve::start(&args).await;
    let pending = serve.get(&format!("/v1/hooks/{hook}")).await;
    assert_eq!(pending["state"]["pending"], 20, "{pending}");
    if by_patch {
        let reply = serve
            .call(
                "PATCH",
                &format!("/v1/hooks/{hook}"),
                Some(json!({"parameters": {"url": receiver.url("/plans"), "headers": {"X-Lab": "3"}}})),
            )
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["id"], hook.as_str());
        // Only parameters can be patched.
        let reply = serve
            .call(
                "PATCH",
                &format!("/v1/hooks/{hook}"),
                Some(json!({"filter": "on_run_state_change"})),
            )
            .await;
        assert_eq!(reply.status, 400);
    } else {
        let replaced = put(
            &serve,
            "lims",
            json!({"workflow": {"hooks": [{"filter": "on_new_plan", "parameters": {"url": receiver.url("/plans"), "headers": {"X-Lab": "3"}}}]}}),
            200,
        )
        .await;
        assert_eq!(
            replaced["hooks"][0]["id"],
            hook.as_str(),
            "the same hook keeps its id"
        );
        assert_eq!(replaced["changes"]["kept"], json!([hook]));
        assert_eq!(replaced["changes"]["removed"].as_array().unwrap().len(), 1);
        assert_eq!(replaced["changes"]["cancelled_deliveries"], 1);
    }
    // SIGKILL right after the answer: the edit was committed before it was answered.
    serve.kill().await;
    let serve = Serve::start(&args).await;
    let edited = serve.get(&format!("/v1/hooks/{hook}")).await;
    assert_eq!(
        edited["parameters"]["url"],
        receiver.url("/plans"),
        "{edited}"
    );
    eventually("the 20 arrive at the new URL", || async {
        first_ids(&receiver.received(), "/plans").len() >= 20
    })
    .await;
    // Their outcomes are recorded (a SIGKILL now could lose the last 200 ms of attempt records,
    // which only means sending again with the same ids); a clean stop keeps them all.
    eventually("the 20 are recorded as delivered", || async {
        serve.get(&format!("/v1/hooks/{hook}")).await["state"]["pending"] == 0
    })
    .await;
    assert_eq!(serve.terminate().await.0, Some(0));
    let received = receiver.received();
    assert_eq!(
        first_ids(&received, "/plans"),
        ids,
        "in order, with the original webhook-ids"
    );
    for request in &received {
        assert_eq!(request.header("x-lab"), Some("3"), "the new headers");
        assert!(verifies(&secret, request));
    }
    if by_patch {
        // The run hook is still there; deleting the workflow cancels its delivery.
        let serve = Serve::start(&args).await;
        let reply = serve.call("DELETE", "/v1/workflows/lims", None).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["cancelled_deliveries"], 1);
        assert_eq!(
            serve.call("GET", "/v1/workflows/lims", None).await.status,
            404
        );
        serve.kill().await;
    }

    // After another SIGKILL, the removed hook's delivery is on record as cancelled.
    let serve = Serve::start(&args).await;
    let cancelled = serve.get("/v1/deliveries?state=cancelled").await;
    let list = cancelled["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{cancelled}");
    assert_eq!(list[0]["id"], run_delivery);
    assert!(
        list[0]["failure"].as_str().unwrap().contains("removed"),
        "{cancelled}"
    );
    assert_eq!(
        serve.get("/v1/deliveries?state=pending").await["deliveries"],
        json!([])
    );
    serve.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_the_url_corrected_delivers_the_waiting_twenty_in_order() {
    corrected_url_takes_the_waiting_deliveries("registry-put", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_with_the_url_corrected_sends_to_the_new_url() {
    corrected_url_takes_the_waiting_deliveries("registry-patch", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_edited_hook_file_without_a_restart() {
    let receiver = Receiver::start(|_, _| (200, vec![])).await;
    let store = store("registry-hup");
    let file = hooks_file("registry-hup", json!([plan_hook(nowhere("/plans"))]));
    let serve = Serve::start(&[
        "--store",
        &store,
        "--hooks",
        &file,
        "--retry-schedule",
        "1h",
    ])
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let reply = serve.post_events(plan(n)).await;
        assert_eq!(reply.status, 202);
        ids.push(
            reply.body["deliveries"][0]["webhook_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let pid = serve.child.id().unwrap().to_string();
    let hangup = || {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    // An invalid file changes nothing, and says why.
    let invalid = r#"[{"filter": "on_new_plan", "parameters": {"url": "nowhere"}}]"#;
    std::fs::write(&file, invalid).unwrap();
    hangup();
    eventually("the invalid file is refused", || async {
        serve.stderr.lock().unwrap().contains("is not applied")
    })
    .await;
    assert!(serve.stderr.lock().unwrap().contains("[0].parameters.url"));
    std::fs::write(
        &file,
        json!([plan_hook(receiver.url("/plans"))]).to_string(),
    )
    .unwrap();
    hangup();
    eventually("the 3 arrive at the new URL", || async {
        first_ids(&receiver.received(), "/plans").len() >= 3
    })
    .await;
    assert_eq!(first_ids(&receiver.received(), "/plans"), ids);
    let (code, stderr) = serve.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("SIGHUP: reloaded"), "{stderr}");
}

/// `--secret` is the `default` workflow's secret, and stays it: run without `--secret` after a
/// run with one, and the workflow keeps the last one given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_given_to_serve_is_the_default_workflows_and_is_kept() {
    let store = store("registry-secret");
    let file = hooks_file("registry-secret", json!([plan_hook(nowhere("/plans"))]));
    let (s1, s2) = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    );
    for secret in [s1, s2] {
        let serve = Serve::start(&["--store", &store, "--hooks", &file, "--secret", secret]).await;
        assert_eq!(
            serve.get("/v1/workflows/default/secret").await["secret"],
            secret
        );
        let rotate = serve
            .call("POST", "/v1/workflows/default/secret/rotate", None)
            .await;
        assert_eq!(rotate.status, 409, "--secret decides: {:?}", rotate.body);
        serve.kill().await;
    }
    let serve = Serve::start(&["--store", &store, "--hooks", &file]).await;
    let kept = serve.get("/v1/workflows/default/secret").await;
    assert_eq!(kept["secret"], s2, "{kept}");
    assert_eq!(kept["previous"], json!([]), "S1 was replaced outright");
    serve.kill().await;
}
