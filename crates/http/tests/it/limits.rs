//! Redirects are not followed; response bodies are read up to the limit only.

use http_body_util::BodyExt;
use linq_hooks_transport::MAX_RESPONSE_BODY;

use crate::util::{Chunks, post, response, serve};

#[tokio::test]
async fn a_redirect_comes_back_and_is_not_followed() {
    let target = serve(|_| async { response(200, "should never be asked") }).await;
    let location = target.url("/moved");
    let redirector = serve(move |_| {
        let location = location.clone();
        async move {
            http::Response::builder()
                .status(302)
                .header("Location", location)
                .body(crate::util::full(""))
                .unwrap()
        }
    })
    .await;

    let answer = post(redirector.url("/hook")).await;
    assert_eq!(answer.status(), 302);
    assert!(answer.is_redirect() && !answer.is_success());
    assert_eq!(redirector.requests().len(), 1);
    assert_eq!(target.connections(), 0);
    assert!(target.requests().is_empty());
}

#[tokio::test]
async fn only_the_first_20_kib_of_a_large_body_is_kept() {
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = big.clone();
    let server = serve(move |_| {
        let body = sent.clone();
        async move { response(200, body) }
    })
    .await;
    let answer = post(server.url("/")).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body().len(), MAX_RESPONSE_BODY);
    assert_eq!(answer.body().as_ref(), &big[..MAX_RESPONSE_BODY]);
    assert!(answer.is_body_truncated());
}

#[tokio::test]
async fn reading_stops_at_the_limit_of_an_endless_body() {
    // 1 GiB in 16 KiB frames, made on demand: a client that read it all would run into its
    // timeout (an error) instead of returning the start of the body.
    let server = serve(|_| async {
        let body = Chunks { left: 64 * 1024 }.boxed();
        http::Response::builder().status(500).body(body).unwrap()
    })
    .await;
    let answer = post(server.url("/")).await;
    assert_eq!(answer.status(), 500);
    assert_eq!(answer.body().len(), MAX_RESPONSE_BODY);
    assert!(answer.body().iter().all(|&b| b == b'x'));
    assert!(answer.is_body_truncated());
}

#[tokio::test]
async fn a_body_of_exactly_the_limit_is_whole() {
    let server = serve(|_| async { response(200, vec![b'y'; MAX_RESPONSE_BODY]) }).await;
    let answer = post(server.url("/")).await;
    assert_eq!(answer.body().len(), MAX_RESPONSE_BODY);
    assert!(!answer.is_body_truncated());
}
