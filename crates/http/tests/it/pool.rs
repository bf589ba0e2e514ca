//! Connections are reused, up to the configured number of idle ones.

use linq_hooks_http::HttpTransport;
use linq_hooks_transport::{Request, Transport};

use crate::util::{response, serve, settle};

#[tokio::test]
async fn one_connection_serves_several_requests() {
    let server = serve(|_| async { response(200, "ok") }).await;
    let transport = HttpTransport::new().unwrap();
    for i in 0..5 {
        let answer = transport
            .send(Request::new(server.url("/"), format!("{{\"n\":{i}}}")))
            .await
            .unwrap();
        assert_eq!(answer.body().as_ref(), b"ok");
        settle().await;
    }
    assert_eq!(server.requests().len(), 5);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn clones_share_the_pool() {
    let server = serve(|_| async { response(200, "") }).await;
    let transport = HttpTransport::new().unwrap();
    transport
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap();
    settle().await;
    let clone = transport.clone();
    clone
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn no_idle_connections_kept_means_a_new_connection_each_time() {
    let server = serve(|_| async { response(200, "") }).await;
    let transport = HttpTransport::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        transport
            .send(Request::new(server.url("/"), "{}"))
            .await
            .unwrap();
        settle().await;
    }
    assert_eq!(server.connections(), 3);
}
