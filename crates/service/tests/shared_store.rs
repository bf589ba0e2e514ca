//! Services sharing one PostgreSQL database, as several `serve` processes on several machines
//! do: the registry changed through one is followed by the others, each webhook is delivered by
//! one of them, in order per hook, and `/healthz` reports a lost database and recovers.
//!
//! They need a PostgreSQL: `LINQ_HOOKS_TEST_POSTGRES` (`.ci/run` starts one); without it they
//! say loudly that they were skipped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linq_hooks_service::{Service, ServiceConfig};
use linq_hooks_transport::MemoryTransport;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../outbox/tests/common/postgres.rs"]
mod postgres;

/// Sends one request (`Connection: close`); the status and the JSON answer.
async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head[9..12].parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Runs `sql` on the test server's maintenance database (as its superuser), not on a test's
/// own database, which the SQL may lock out.
async fn admin(sql: &str) {
    let server = std::env::var(postgres::VARIABLE).unwrap();
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute(sql).await.unwrap();
}

/// A service on `url` with a short lease, sending through `transport`.
async fn start(url: &str, transport: Arc<MemoryTransport>) -> SocketAddr {
    let mut config = ServiceConfig::new(url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.lease = Duration::from_secs(2);
    let service = Service::start(config, transport).await.unwrap();
    let addr = service.local_addr();
    tokio::spawn(service.run_until(std::future::pending()));
    addr
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn new_plan(seq: usize) -> String {
    json!({"event": "new_plan", "plan_id": format!("p{seq}"), "timestamp": "2025-04-17T09:30:00Z"})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_on_one_database_share_the_registry_and_deliver_each_webhook_once_in_order() {
    let Some(url) = postgres::fresh_database() else {
        return;
    };
    let transport = Arc::new(MemoryTransport::new());
    let (a, b) = (
        start(&url, Arc::clone(&transport)).await,
        start(&url, Arc::clone(&transport)).await,
    );

    // The workflow is made through A; B follows it (NOTIFY) and takes events for it.
    let hooks: Vec<Value> = (0..6)
        .map(|i| {
            json!({"filter": "on_new_plan", "parameters": {"url": format!("https://lims.example/{i}")}})
        })
        .collect();
    let (status, _) = send(
        a,
        "PUT",
        "/v1/workflows/lab",
        &Value::from(hooks).to_string(),
    )
    .await;
    assert_eq!(status, 201);
    eventually(Duration::from_secs(20), "B knows the workflow", || async {
        // An event no hook fires for: 202 once B knows the workflow, 404 before.
        let event = r#"{"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#;
        send(b, "POST", "/v1/workflows/lab/events", event).await.0 == 202
    })
    .await;

    // Events posted to both, alternately; only those answered 202 count.
    let events = 60;
    for seq in 0..events {
        let addr = if seq % 2 == 0 { a } else { b };
        let (status, _) = send(addr, "POST", "/v1/workflows/lab/events", &new_plan(seq)).await;
        assert_eq!(status, 202, "event {seq}");
    }

    let arrivals = || {
        let mut by_url: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for request in transport.requests() {
            let body: Value = serde_json::from_slice(request.body()).unwrap();
            by_url.entry(request.url().to_string()).or_default().push((
                request.header("webhook-id").unwrap().to_string(),
                body["plan_id"].as_str().unwrap().to_string(),
            ));
        }
        by_url
    };
    eventually(
        Duration::from_secs(60),
        "every webhook delivered",
        || async {
            let got = arrivals();
            got.len() == 6
                && got.values().all(|list| {
                    let plans: std::collections::HashSet<&String> =
                        list.iter().map(|(_, p)| p).collect();
                    plans.len() == events
                })
        },
    )
    .await;

    for (url, list) in arrivals() {
        // A webhook arrives twice only with the same webhook-id, and first arrivals keep the
        // order the events were acknowledged in.
        let mut id_of: HashMap<&str, &str> = HashMap::new();
        let mut first = Vec::new();
        for (webhook_id, plan) in &list {
            match id_of.insert(plan, webhook_id) {
                None => first.push(plan.clone()),
                Some(before) => {
                    assert_eq!(before, webhook_id, "{url}: {plan} resent with another id")
                }
            }
        }
        let expected: Vec<String> = (0..events).map(|seq| format!("p{seq}")).collect();
        assert_eq!(first, expected, "{url}: out of order");
    }
    // Either answers for the whole registry.
    let (_, hooks) = send(b, "GET", "/v1/hooks", "").await;
    assert_eq!(hooks["hooks"].as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_a_lost_database_and_recovers() {
    let Some(url) = postgres::fresh_database() else {
        return;
    };
    let addr = start(&url, Arc::new(MemoryTransport::new())).await;
    assert_eq!(send(addr, "GET", "/healthz", "").await.0, 200);

    // The database refuses connections and drops the service's: what a lost server looks like.
    let database = url.rsplit('/').next().unwrap().to_string();
    admin(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ))
    .await;
    eventually(Duration::from_secs(60), "healthz 503", || async {
        let (status, body) = send(addr, "GET", "/healthz", "").await;
        status == 503 && body["reason"].is_string()
    })
    .await;

    admin(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
    ))
    .await;
    eventually(Duration::from_secs(60), "healthz 200 again", || async {
        send(addr, "GET", "/healthz", "").await.0 == 200
    })
    .await;
    // And it serves again: a workflow can be made.
    let (status, _) = send(
        addr,
        "PUT",
        "/v1/workflows/lab",
        r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/a"}}]"#,
    )
    .await;
    assert_eq!(status, 201);
}

/// A workflow made through one process while another's LISTEN connection was cut off (its
/// `w:` notification unheard) is known to the other once it is back: it accepts events for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_made_while_a_listener_was_cut_off_is_followed_once_it_is_back() {
    let Some(url) = postgres::fresh_database() else {
        return;
    };
    // B connects as a role of its own, so that it alone can be locked out.
    let database = url.rsplit('/').next().unwrap().to_string();
    let role = format!("rv_{database}");
    admin(&format!("CREATE ROLE \"{role}\" LOGIN SUPERUSER")).await;
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let url_b = format!("{scheme}://{role}@{host}");

    let a = start(&url, Arc::new(MemoryTransport::new())).await;
    let b = start(&url_b, Arc::new(MemoryTransport::new())).await;
    assert_eq!(send(b, "GET", "/healthz", "").await.0, 200);

    admin(&format!(
        "ALTER ROLE \"{role}\" NOLOGIN; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    ))
    .await;
    eventually(Duration::from_secs(60), "B's healthz 503", || async {
        send(b, "GET", "/healthz", "").await.0 == 503
    })
    .await;
    let (status, _) = send(
        a,
        "PUT",
        "/v1/workflows/late",
        r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/late"}}]"#,
    )
    .await;
    assert_eq!(status, 201);
    admin(&format!("ALTER ROLE \"{role}\" LOGIN")).await;
    eventually(Duration::from_secs(60), "B's healthz 200 again", || async {
        send(b, "GET", "/healthz", "").await.0 == 200
    })
    .await;

    eventually(
        Duration::from_secs(30),
        "B accepts events for the workflow made while it was cut off",
        || async {
            send(b, "POST", "/v1/workflows/late/events", &new_plan(1))
                .await
                .0
                == 202
        },
    )
    .await;
    // Roles outlive databases: leave none behind on a shared server.
    admin(&format!(
        "ALTER ROLE \"{role}\" NOLOGIN; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
         DROP ROLE \"{role}\""
    ))
    .await;
}

/// A store URL with a mistyped scheme (`POSTGRES://`, `postgress://`, `pg://`) is not taken for
/// a file's path: it is refused as not a PostgreSQL URL, and its password is not shown.
#[tokio::test]
async fn a_mistyped_store_url_is_refused_without_showing_its_password() {
    for text in [
        "POSTGRES://hooks:pw-s3cret@127.0.0.1:9/db",
        "postgress://hooks:pw-s3cret@127.0.0.1:9/db",
        "pg://hooks:pw-s3cret@127.0.0.1:9/db",
    ] {
        let mut config = ServiceConfig::new(text);
        config.listen = "127.0.0.1:0".parse().unwrap();
        let err = match Service::start(config, Arc::new(MemoryTransport::new())).await {
            Ok(_) => panic!("{text}: started"),
            Err(err) => err,
        };
        let mut shown = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(e) = source {
            shown.push_str(&format!(": {e}"));
            source = e.source();
        }
        assert!(!shown.contains("s3cret"), "{text}: {shown}");
        assert!(shown.contains("not a PostgreSQL URL"), "{text}: {shown}");
    }
}
