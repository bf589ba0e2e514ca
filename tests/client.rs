//! A plain HTTP client for tests that talk to `linq-hooks serve`.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An answer: the status and the body, parsed as JSON when it is JSON (else a JSON string).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: serde_json::Value,
}

/// Sends one request; `token` goes as `Authorization: Bearer`. Connection errors are `Err`.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let reply = linq_hooks_tests::request("GET", "http://127.0.0.1:8625/healthz", None, None).await?;
/// assert_eq!(reply.status, 200);
/// # Ok(()) }
/// ```
pub async fn request(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    token: Option<&str>,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    Ok(Reply { status, body })
}
