//! Operational webhooks over real HTTP on 127.0.0.1: a hook whose receiver keeps timing out is
//! paused by its circuit breaker, and once it delivers again `hook.recovered` arrives, signed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linq_hooks_delivery::{Config, HookParameters, RetryPolicy};
use linq_hooks_service::{OpsWebhooks, Service, ServiceConfig};
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OPS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request read from a connection: its headers (names in lower case) and body.
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 request (headers, then a `content-length` body); `None` at the end.
async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some(Request { headers, body })
}

/// A receiver on 127.0.0.1 whose first `hang` connections are accepted and never answered;
/// after those, every request gets 200 and is kept.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Request>>>,
    accepted: Arc<AtomicUsize>,
}

async fn receiver(hang: usize) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Request>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let (got, accepted) = (got.clone(), accepted.clone());
        async move {
            let mut hanging = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                if accepted.fetch_add(1, Ordering::SeqCst) < hang {
                    hanging.push(stream);
                    continue;
                }
                let got = got.clone();
                tokio::spawn(async move {
                    while let Some(request) = read_request(&mut stream).await {
                        got.lock().unwrap().push(request);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    Receiver { url, got, accepted }
}

async fn call(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_paused_for_timing_out_reports_its_recovery() {
    // Two attempts time out (the breaker opens after 2), then the receiver answers.
    let hook = receiver(2).await;
    let ops = receiver(0).await;
    let store = std::env::temp_dir().join(format!("service-ops-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&store);
    let mut config = ServiceConfig::new(&store);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.delivery = Config::default()
        .breaker(2, Duration::from_millis(100))
        .policy(RetryPolicy::new(vec![Duration::from_millis(10); 5]));
    config.ops = Some(OpsWebhooks::new(
        HookParameters::new(ops.url.clone(), Default::default()).unwrap(),
        OPS_SECRET.parse().unwrap(),
    ));
    let transport = linq_hooks_http::HttpTransport::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let service = Service::start(config, Arc::new(transport)).await.unwrap();
    let addr = service.local_addr();
    let running = tokio::spawn(service.run_until(std::future::pending()));

    let hooks = format!(
        r#"[{{"filter": "on_new_plan", "parameters": {{"url": "{}"}}}}]"#,
        hook.url
    );
    let put = call(addr, "PUT", "/v1/workflows/lab", &hooks).await;
    assert!(put.starts_with("HTTP/1.1 201"), "{put}");
    let event = r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let posted = call(addr, "POST", "/v1/workflows/lab/events", event).await;
    assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");

    tokio::time::timeout(Duration::from_secs(60), async {
        while ops.got.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("hook.recovered arrives");
    assert_eq!(hook.got.lock().unwrap().len(), 1, "delivered once");
    assert_eq!(hook.accepted.load(Ordering::SeqCst), 3, "2 timed out");

    let got = ops.got.lock().unwrap();
    let [sent] = got.as_slice() else {
        panic!("one operational webhook, not {}", got.len());
    };
    let verifier = Verifier::new([OPS_SECRET.parse::<Secret>().unwrap()]);
    let headers = WebhookHeaders::from_fn(|name| sent.header(name));
    verifier
        .verify(headers, &sent.body)
        .expect("signed with the ops secret");
    let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["type"], "hook.recovered", "{body}");
    assert_eq!(body["data"]["workflow_id"], "lab");
    assert_eq!(body["data"]["hook"], "hook_1");
    assert_eq!(body["data"]["after"], serde_json::json!(["hook.paused"]));
    running.abort();
}
