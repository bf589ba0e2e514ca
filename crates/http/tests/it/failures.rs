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
