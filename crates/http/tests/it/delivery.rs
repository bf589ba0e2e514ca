//! What goes out on the wire, and what comes back.

use std::time::Duration;

use linq_hooks_http::{HttpTransport, USER_AGENT};
use linq_hooks_transport::{Request, Transport};

use crate::util::{post, response, serve};

#[tokio::test]
async fn posts_json_with_the_request_headers_and_body() {
    let server = serve(|_| async { response(204, "") }).await;
    let transport = HttpTransport::new().unwrap();
    let body = r#"{"event":"run_state_change","run_id":"r1"}"#;
    let request = Request::new(server.url("/hooks/lims?lab=north"), body)
        .with_header("Authorization", "Bearer abc")
        .with_header("X-Lab", "north")
        .with_header("X-Lab", "south")
        .with_header("webhook-id", "msg_1")
        .with_header("webhook-timestamp", "1700000000")
        .with_header("webhook-signature", "v1,abc=");

    let answer = transport.send(request).await.unwrap();
    assert_eq!(answer.status(), 204);
    assert!(answer.is_success());

    let received = server.requests();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.uri, "/hooks/lims?lab=north");
    assert_eq!(got.version, http::Version::HTTP_11);
    assert_eq!(got.body, body.as_bytes());
    assert_eq!(got.header_values("content-type"), ["application/json"]);
    assert_eq!(got.header_values("user-agent"), [USER_AGENT]);
    assert_eq!(
        got.header_values("content-length"),
        [body.len().to_string()]
    );
    assert_eq!(got.header_values("host"), [server.addr.to_string()]);
    assert_eq!(got.header_values("authorization"), ["Bearer abc"]);
    assert_eq!(got.header_values("x-lab"), ["north", "south"]);
    assert_eq!(got.header_values("webhook-id"), ["msg_1"]);
    assert_eq!(got.header_values("webhook-timestamp"), ["1700000000"]);
    assert_eq!(got.header_values("webhook-signature"), ["v1,abc="]);
}

#[tokio::test]
async fn a_hook_header_replaces_a_default_one() {
    let server = serve(|_| async { response(200, "") }).await;
    let transport = HttpTransport::new().unwrap();
    let request = Request::new(server.url("/"), "{}")
        .with_header("User-Agent", "lab-bridge/3")
        .with_header("Content-Type", "application/json; charset=utf-8");
    transport.send(request).await.unwrap();
    let got = &server.requests()[0];
    assert_eq!(got.header_values("user-agent"), ["lab-bridge/3"]);
    assert_eq!(
        got.header_values("content-type"),
        ["application/json; charset=utf-8"]
    );
}

#[tokio::test]
async fn any_status_comes_back_with_retry_after_and_body() {
    let server = serve(|_| async {
        http::Response::builder()
            .status(503)
            .header("Retry-After", "120")
            .body(crate::util::full(r#"{"error":"maintenance"}"#))
            .unwrap()
    })
    .await;
    let answer = post(server.url("/")).await;
    assert_eq!(answer.status(), 503);
    assert!(!answer.is_success());
    assert_eq!(answer.retry_after_header(), Some("120"));
    assert_eq!(answer.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(answer.body().as_ref(), br#"{"error":"maintenance"}"#);
    assert!(!answer.is_body_truncated());
}
