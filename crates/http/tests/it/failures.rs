//! Each failure is reported as its kind.

use std::time::Duration;

use linq_hooks_http::HttpTransport;
use linq_hooks_transport::{Request, Transport};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::util::{chain, serve};

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let transport = HttpTransport::new().unwrap();
    let err = transport
        .send(Request::new(format!("http://{addr}/hook"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(!err.is_timeout() && !err.is_tls(), "{err:?}");
    let chain = chain(&err);
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
}

#[tokio::test]
async fn a_server_that_never_answers_runs_into_the_timeout() {
    let server = serve(|_| std::future::pending()).await;
    let transport = HttpTransport::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = transport
        .send(Request::new(server.url("/slow"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(!err.is_connect(), "{err:?}");
    // The request itself did arrive: the wait was for the answer.
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_server_that_hangs_up_without_answering_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0; 1024];
        let _ = stream.read(&mut buf).await;
        // Dropped here: the connection closes before any response.
    });
    let transport = HttpTransport::new().unwrap();
    let err = transport
        .send(Request::new(format!("http://{addr}/"), "{}"))
        .await
        .unwrap_err();
    assert!(!err.is_timeout() && !err.is_invalid_request(), "{err:?}");
}

#[tokio::test]
async fn an_unusable_url_is_an_invalid_request_and_sends_nothing() {
    let server = serve(|_| async { crate::util::response(200, "") }).await;
    let transport = HttpTransport::new().unwrap();
    let port = server.addr.port();
    for url in [
        format!("ftp://127.0.0.1:{port}/"),
        format!("127.0.0.1:{port}/hook"),
        format!("http://user:pw@127.0.0.1:{port}/"),
    ] {
        let err = transport
            .send(Request::new(url.as_str(), "{}"))
            .await
            .unwrap_err();
        assert!(err.is_invalid_request(), "{url}: {err:?}");
    }
    assert_eq!(server.connections(), 0);
}

/// A raw server that answers every request with `head` then `body` bytes and hangs up, or,
/// when `hold` is set, keeps the connection open without sending more.
async fn answer_then(head_and_body: &'static [u8], hold: bool) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(head_and_body).await;
                if hold {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    addr
}

/// The field fault: `200 OK` with `Content-Length: 100`, then the connection closed after 10
/// bytes, was taken for a failed attempt, retried and sent again. The status decides; the body
/// that broke off is noted on the response. The same holds for any status (a 503 stays a 503),
/// and for a body that stops coming until the attempt's time runs out.
#[tokio::test]
async fn a_status_stands_when_its_body_breaks_off() {
    let cases: [(&'static [u8], bool, u16); 3] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",
            false,
            200,
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\nbusy",
            false,
            503,
        ),
        (
            b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
            true,
            202,
        ),
    ];
    let transport = HttpTransport::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for (answer, hold, status) in cases {
        let addr = answer_then(answer, hold).await;
        let response = transport
            .send(Request::new(format!("http://{addr}/"), "{}"))
            .await
            .unwrap_or_else(|e| panic!("status {status}: the status arrived, yet {e:?}"));
        assert_eq!(response.status(), status);
        assert!(
            response.body_error().is_some(),
            "status {status}: the break is noted"
        );
    }
}
