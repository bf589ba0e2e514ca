//! Test servers: hyper on 127.0.0.1, port 0, recording what they receive.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub type Body = BoxBody<Bytes, Infallible>;

/// What a test server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// Every value of header `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }
}

pub struct Server {
    scheme: &'static str,
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// How many TCP connections the server accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// POSTs `{}` to `url` with a default `HttpTransport` and returns the answer, which must come.
pub async fn post(url: String) -> linq_hooks_transport::Response {
    use linq_hooks_transport::Transport;
    let transport = linq_hooks_http::HttpTransport::new().unwrap();
    transport
        .send(linq_hooks_transport::Request::new(url, "{}"))
        .await
        .unwrap()
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

pub fn response(status: u16, body: impl Into<Bytes>) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .body(full(body))
        .unwrap()
}

/// A plain HTTP server (HTTP/1.1, and HTTP/2 with prior knowledge) answering with `handler`.
pub async fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    start("http", None, handler).await
}

/// An HTTPS server with `config`, answering with `handler`.
pub async fn serve_tls<F, Fut>(config: rustls::ServerConfig, handler: F) -> Server
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    start("https", Some(TlsAcceptor::from(Arc::new(config))), handler).await
}

async fn start<F, Fut>(scheme: &'static str, tls: Option<TlsAcceptor>, handler: F) -> Server
where
    F: Fn(Recorded) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server {
        scheme,
        addr: listener.local_addr().unwrap(),
        connections: Arc::default(),
        requests: Arc::default(),
    };
    let (connections, requests) = (server.connections.clone(), server.requests.clone());
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            let (handler, requests, tls) = (handler.clone(), requests.clone(), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<Incoming>| {
                    let (handler, requests) = (handler.clone(), requests.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let recorded = Recorded {
                            method: parts.method,
                            uri: parts.uri,
                            version: parts.version,
                            headers: parts.headers,
                            body: body.collect().await?.to_bytes(),
                        };
                        requests.lock().unwrap().push(recorded.clone());
                        Ok::<_, hyper::Error>(handler(recorded).await)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                // Errors are the client's doing (it hung up, or refused our certificate).
                let _ = match tls {
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Err(_) => return,
                    },
                };
            });
        }
    });
    server
}

/// A body of `chunks` frames of 16 KiB each, made as it is sent.
pub struct Chunks {
    pub left: usize,
}

static CHUNK: [u8; 16 * 1024] = [b'x'; 16 * 1024];

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// Lets spawned tasks run. A finished HTTP/1 connection may go back to the client's pool in a
/// task of its own; a few scheduler turns make sure it is there before the next request, so
/// that a test counting connections does not depend on the order tasks happen to run in.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The messages of `err` and of each of its sources, joined.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        out.push_str(": ");
        out.push_str(&source.to_string());
        next = source.source();
    }
    out
}
