//! A real forward proxy for tests: a hyper server on 127.0.0.1 that records every request,
//! forwards absolute-form requests (`POST http://host/path`) and tunnels `CONNECT host:port`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// One request as the proxy got it.
#[derive(Clone, Debug)]
pub struct Proxied {
    /// The method (`CONNECT` for a tunnel).
    pub method: String,
    /// The request target as written: an absolute URL, or `host:port` for `CONNECT`.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A running forward proxy. It stops when dropped.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let proxy = linq_hooks_tests::ForwardProxy::start(None).await;
/// assert!(proxy.url().starts_with("http://127.0.0.1:"));
/// assert!(proxy.requests().is_empty());
/// # });
/// ```
pub struct ForwardProxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Proxied>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ForwardProxy {
    /// Starts a proxy on a free port of 127.0.0.1. With `authorization`, requests whose
    /// `Proxy-Authorization` is not exactly that value get 407 (and are recorded).
    pub async fn start(authorization: Option<&str>) -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Proxied>>> = Arc::default();
        let required: Option<Arc<str>> = authorization.map(Arc::from);
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (log, required, client) = (log.clone(), required.clone(), client.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request: hyper::Request<Incoming>| {
                            let (log, required, client) =
                                (log.clone(), required.clone(), client.clone());
                            async move {
                                Ok::<_, hyper::Error>(
                                    handle(request, &log, required.as_deref(), &client).await,
                                )
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    });
                }
            }
        });
        ForwardProxy { addr, log, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in the order they came.
    pub fn requests(&self) -> Vec<Proxied> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn handle(
    mut request: hyper::Request<Incoming>,
    log: &Mutex<Vec<Proxied>>,
    required: Option<&str>,
    client: &Client<HttpConnector, Full<Bytes>>,
) -> hyper::Response<Full<Bytes>> {
    let authorization = request
        .headers_mut()
        .remove(hyper::header::PROXY_AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    let is_connect = request.method() == hyper::Method::CONNECT;
    let target = if is_connect {
        request
            .uri()
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default()
    } else {
        request.uri().to_string()
    };
    log.lock().unwrap().push(Proxied {
        method: request.method().to_string(),
        target: target.clone(),
        authorization: authorization.clone(),
    });
    if required.is_some() && authorization.as_deref() != required {
        return answer(407, "proxy authorization required");
    }

    if is_connect {
        let Ok(upstream) = TcpStream::connect(target.as_str()).await else {
            return answer(502, "cannot reach the target");
        };
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(request).await {
                let mut upstream = upstream;
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut upstream).await;
            }
        });
        return answer(200, "");
    }

    if request.uri().scheme().is_none() {
        return answer(
            400,
            "not a proxy request: the target is not an absolute URL",
        );
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await else {
        return answer(400, "the body broke off");
    };
    let mut forward = hyper::Request::from_parts(parts, Full::new(body.to_bytes()));
    forward.headers_mut().remove(hyper::header::CONNECTION);
    match client.request(forward).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            match body.collect().await {
                Ok(body) => hyper::Response::from_parts(parts, Full::new(body.to_bytes())),
                Err(_) => answer(502, "the target's body broke off"),
            }
        }
        Err(_) => answer(502, "cannot reach the target"),
    }
}
