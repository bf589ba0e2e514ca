//! What a client can hold of the service, before authentication: a real `Service` (with a
//! token it is never given) on 127.0.0.1, spoken to over raw sockets, slowly or not at all.
//! Waits are bounded and generous; nothing asserts how long anything took.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use linq_hooks_service::{Service, ServiceConfig};
use linq_hooks_transport::MemoryTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any limit here, by far: a connection still open after it is one that the
/// limits did not close.
const BOUND: Duration = Duration::from_secs(30);

async fn start(name: &str, configure: impl FnOnce(&mut ServiceConfig)) -> SocketAddr {
    let path =
        std::env::temp_dir().join(format!("service-limits-{name}-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut config = ServiceConfig::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.token = Some("secret-token".into());
    configure(&mut config);
    let service = Service::start(config, Arc::new(MemoryTransport::new()))
        .await
        .unwrap();
    let addr = service.local_addr();
    tokio::spawn(service.run_until(std::future::pending()));
    addr
}

/// Reads until the server closes the connection (end of stream or reset), within [`BOUND`];
/// returns what was read. Panics if the connection is still open then.
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {BOUND:?}");
    String::from_utf8_lossy(&raw).into_owned()
}

/// Sends `GET /healthz` on a kept-alive connection and reads its answer (the body is short).
async fn healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if body.len() >= length {
                    return text.into_owned();
                }
            }
        }
    })
    .await
    .expect("an answer to /healthz")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_sent_at_one_byte_a_second_are_cut_off() {
    let addr = start("slow-headers", |c| {
        c.limits.header_timeout = Duration::from_secs(2);
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    // The issue's input: a request head one byte a second, 70 bytes, so 70 s unless cut off.
    let head =
        b"POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\r\n";
    let trickle = async {
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        true
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        sent_all = trickle => panic!("the whole head was sent ({sent_all}) and the connection is still open"),
        () = closed => {}
        () = tokio::time::sleep(BOUND) => panic!("still open after {BOUND:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_at_one_byte_a_second_gets_408_and_the_connection_closed() {
    let addr = start("slow-body", |c| {
        c.limits.body_timeout = Duration::from_secs(2);
        c.token = None;
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A workflow document: the handler reads the whole body before anything else.
    let body = br#"{"hooks": [{"filter": "on_run_state_change", "parameters": {"url": "http://127.0.0.1:9/run"}}]}"#;
    let head = format!(
        "PUT /v1/workflows/slow HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for byte in body {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    };
    let answer = async {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&raw).into_owned(),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    let answer = tokio::select! {
        () = trickle => unreachable!(),
        answer = answer => answer,
        () = tokio::time::sleep(BOUND) => panic!("still open after {BOUND:?}"),
    };
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("the request body did not arrive within 2s"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_kept_alive_or_never_used() {
    let addr = start("idle", |c| {
        c.limits.header_timeout = Duration::from_secs(1);
    })
    .await;
    // Kept alive: two requests on one connection, then nothing.
    let mut used = TcpStream::connect(addr).await.unwrap();
    assert!(healthz(&mut used).await.starts_with("HTTP/1.1 200 "));
    assert!(healthz(&mut used).await.starts_with("HTTP/1.1 200 "));
    let after = read_until_closed(&mut used, "an idle kept-alive connection").await;
    assert_eq!(
        after, "",
        "nothing is sent on an idle connection before it closes"
    );
    // Never used: connected, nothing sent.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    read_until_closed(&mut silent, "a connection that sends nothing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_new_connection_takes_the_place_of_a_half_sent_request() {
    let addr = start("cap-evicts", |c| {
        c.limits.max_connections = 3;
        // Only making room can close the holders.
        c.limits.header_timeout = Duration::from_secs(600);
    })
    .await;
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty")
            .await
            .unwrap();
        holders.push(stream);
    }
    // Each newcomer is served, in the place of the holder that has waited longest.
    for _ in 0..3 {
        let mut next = TcpStream::connect(addr).await.unwrap();
        assert!(healthz(&mut next).await.starts_with("HTTP/1.1 200 "));
        holders.push(next);
    }
    let first = &mut holders[0];
    read_until_closed(first, "the holder that waited longest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_with_every_connection_in_a_request_nothing_more_is_served() {
    let addr = start("cap", |c| {
        c.limits.max_connections = 3;
        // The holders' requests stay in flight for the whole test unless they leave.
        c.limits.body_timeout = Duration::from_secs(600);
        c.token = None;
    })
    .await;
    let mut holders = Vec::new();
    for n in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // A workflow whose body never finishes: the handler waits for it, in the router.
        let head = format!(
            "PUT /v1/workflows/w{n} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        holders.push(stream);
    }
    // Each of the three is in a request once a fourth has been seen not to be served, so the
    // fourth is given time to get in: were there room, it would be served at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(async move {
        let answer = healthz(&mut fourth).await;
        (answer, fourth)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !waiting.is_finished(),
        "a connection over the cap was served"
    );
    // One goes; the fourth is served.
    drop(holders.pop());
    let (answer, _fourth) = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    let addr = start("no-reader", |c| {
        c.limits.write_timeout = Duration::from_secs(2);
        c.limits.header_timeout = Duration::from_secs(600);
        c.token = None;
    })
    .await;
    // Pipelined requests for the OpenAPI document (tens of KiB each), never read: the answers
    // fill both sockets' buffers, and writing stalls.
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    let request = b"GET /v1/openapi.json HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    stuck.write_all(&request.repeat(2000)).await.unwrap();
    // Once the server has closed it, writing to it fails (reset, or a broken pipe).
    let cut_off = tokio::time::timeout(BOUND, async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let write = tokio::time::timeout(Duration::from_secs(1), stuck.write_all(request));
            if let Ok(Err(_)) = write.await {
                return;
            }
        }
    })
    .await;
    assert!(cut_off.is_ok(), "still open after {BOUND:?}");
}
