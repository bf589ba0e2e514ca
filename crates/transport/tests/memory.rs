//! The in-memory transport: scripted answers, recorded requests.
#![cfg(feature = "memory")]

use std::sync::Arc;

use linq_hooks_transport::{Error, MemoryTransport, Request, Response, Transport};

fn request(url: &str, body: &'static str) -> Request {
    Request::new(url, body)
}

#[tokio::test]
async fn answers_200_without_a_script() {
    let memory = MemoryTransport::new();
    let response = memory
        .send(request("https://a.example/", "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.body().is_empty());
    assert_eq!(memory.unused_replies(), 0);
}

#[tokio::test]
async fn per_url_answers_come_before_global_ones() {
    let memory = MemoryTransport::new();
    memory
        .reply(Ok(Response::new(500)))
        .reply(Ok(Response::new(501)))
        .reply_to("https://b.example/", Ok(Response::new(410)))
        .reply_to("https://b.example/", Err(Error::connect("refused")));

    let status = |r: Result<Response, Error>| r.map(|r| r.status());
    assert_eq!(
        status(memory.send(request("https://b.example/", "1")).await).unwrap(),
        410
    );
    assert_eq!(
        status(memory.send(request("https://a.example/", "2")).await).unwrap(),
        500
    );
    assert!(
        memory
            .send(request("https://b.example/", "3"))
            .await
            .unwrap_err()
            .is_connect()
    );
    // b's queue is empty now: the global queue answers.
    assert_eq!(
        status(memory.send(request("https://b.example/", "4")).await).unwrap(),
        501
    );
    assert_eq!(
        status(memory.send(request("https://b.example/", "5")).await).unwrap(),
        200
    );
    assert_eq!(memory.unused_replies(), 0);

    let bodies: Vec<_> = memory.requests().iter().map(|r| r.body().clone()).collect();
    assert_eq!(bodies, ["1", "2", "3", "4", "5"]);
}

#[tokio::test]
async fn clones_share_the_record_and_the_script() {
    let memory = MemoryTransport::new();
    let transport: Arc<dyn Transport> = Arc::new(memory.clone());
    memory.reply(Err(Error::timeout()));

    let sent = request("https://a.example/", "{\"x\":1}")
        .with_header("webhook-id", "msg_1")
        .with_header("X-Lab", "north");
    assert!(transport.send(sent).await.unwrap_err().is_timeout());
    assert!(
        transport
            .send(request("https://a.example/", "{}"))
            .await
            .unwrap()
            .is_success()
    );

    let recorded = memory.take_requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].header("webhook-id"), Some("msg_1"));
    assert_eq!(
        recorded[0].headers(),
        [
            ("webhook-id".to_string(), "msg_1".to_string()),
            ("X-Lab".to_string(), "north".to_string()),
        ]
    );
    assert!(memory.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_all_recorded() {
    let memory = MemoryTransport::new();
    for _ in 0..50 {
        memory.reply(Ok(Response::new(202)));
    }
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let transport = memory.clone();
            tokio::spawn(async move {
                transport
                    .send(Request::new(format!("https://h{i}.example/"), "{}"))
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 202).count(), 50);
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 50);
    assert_eq!(memory.requests().len(), 100);
}

#[test]
fn the_alternate_form_of_an_error_adds_its_causes() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
    let error = linq_hooks_transport::Error::connect(io);
    assert_eq!(error.to_string(), "could not connect");
    assert_eq!(
        format!("{error:#}"),
        "could not connect: Connection refused"
    );
    let nested = std::io::Error::other(linq_hooks_transport::Error::timeout());
    let error = linq_hooks_transport::Error::other(nested);
    assert_eq!(format!("{error:#}"), "request failed: timed out");
    let chained = linq_hooks_transport::Error::body(Outer(std::io::Error::other("reset")));
    assert_eq!(
        format!("{chained:#}"),
        "could not read the response body: outer: reset"
    );
}

/// An error that follows the rule: its own level in `Display`, the rest in `source()`.
#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
