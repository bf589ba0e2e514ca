//! A real webhook receiver for tests: a hyper server on 127.0.0.1 that records every request
//! and answers as the test says.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The headers, names in lower case, in the order they came.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the receiver answers: a status and extra headers. Status 0 means: never answer (hold
/// the request open until the client gives up), for hanging receivers.
pub type Answer = (u16, Vec<(&'static str, String)>);

type Respond = dyn Fn(&Received, &[Received]) -> (Answer, Vec<u8>) + Send + Sync;

/// A running receiver. It stops when dropped.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let receiver = linq_hooks_tests::Receiver::start(|_request, _earlier| (204, vec![])).await;
/// assert!(receiver.url("/hook").starts_with("http://127.0.0.1:"));
/// assert!(receiver.received().is_empty());
/// # });
/// ```
pub struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1. `respond` gets each request and the ones
    /// received before it (to answer, say, 503 to the first two attempts of each `webhook-id`).
    pub async fn start(
        respond: impl Fn(&Received, &[Received]) -> Answer + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap(), respond).await
    }

    /// Like [`start`](Receiver::start), on a given address (to come back on the same port).
    pub async fn start_on(
        addr: SocketAddr,
        respond: impl Fn(&Received, &[Received]) -> Answer + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::serve(
            addr,
            Arc::new(move |request: &Received, earlier: &[Received]| {
                (respond(request, earlier), Vec::new())
            }),
        )
        .await
    }

    /// Like [`start`](Receiver::start), answering with a body too (to say why it refuses).
    pub async fn start_with_body(
        respond: impl Fn(&Received, &[Received]) -> (Answer, Vec<u8>) + Send + Sync + 'static,
    ) -> Receiver {
        Receiver::serve("127.0.0.1:0".parse().unwrap(), Arc::new(respond)).await
    }

    async fn serve(addr: SocketAddr, respond: Arc<Respond>) -> Receiver {
        let listener = TcpListener::bind(addr).await.expect("a free port");
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (log, respond) = (log.clone(), respond.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request: hyper::Request<Incoming>| {
                            let (log, respond) = (log.clone(), respond.clone());
                            async move { Ok::<_, hyper::Error>(handle(request, &log, &*respond).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Receiver { addr, log, task }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in the order they came.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: hyper::Request<Incoming>,
    log: &Mutex<Vec<Received>>,
    respond: &Respond,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let ((status, headers), body) = {
        let mut log = log.lock().unwrap();
        let answer = respond(&received, &log);
        log.push(received);
        answer
    };
    if status == 0 {
        std::future::pending::<()>().await;
    }
    let mut response = hyper::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Full::new(Bytes::from(body))).unwrap()
}
