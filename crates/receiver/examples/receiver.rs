//! A complete webhook receiver: verifies each delivery, prints its event, answers.
//!
//! ```sh
//! LINQ_HOOKS_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \
//!   cargo run -p linq-hooks-receiver --example receiver
//! # and in another terminal:
//! cargo run -q -p linq-hooks -- simulate | cargo run -q -p linq-hooks -- dispatch \
//!   --hooks examples/workflow.json --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
//! ```
//!
//! 204 for an event (and for a kind of event this version does not know: a newer sender's, to
//! ignore), 401 when the signature does not verify, 400 for a body that is not an event. A real
//! receiver would also remember the webhook ids it has handled, to skip retries, and cap the
//! body size.

use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use linq_hooks_receiver::{Verifier, headers_from_map, receive};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("LINQ_HOOKS_SECRET").map_err(|_| "set LINQ_HOOKS_SECRET")?;
    let verifier = Arc::new(Verifier::new([secret.parse()?]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
    println!("listening on http://127.0.0.1:9000");
    loop {
        let (stream, _) = listener.accept().await?;
        let verifier = verifier.clone();
        let service = hyper::service::service_fn(move |request| {
            let verifier = verifier.clone();
            async move { Ok::<_, hyper::Error>(handle(&verifier, request).await) }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

async fn handle(verifier: &Verifier, request: Request<Incoming>) -> Response<Empty<Bytes>> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let headers = headers_from_map(&parts.headers);
    match receive(verifier, headers, &body) {
        Ok(webhook) => {
            println!("{} {:?}", webhook.id, webhook.event);
            answer(StatusCode::NO_CONTENT)
        }
        Err(err) => {
            if let Some(kind) = err.unknown_event() {
                println!("ignored an event of a kind this version does not know: {kind}");
            }
            // 401 unverified, 400 malformed, 204 for an unknown kind of event.
            answer(err.status())
        }
    }
}

fn answer(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}
