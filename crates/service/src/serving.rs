//! Serving an axum `Router` over HTTP/1.1 with limits on what a client can hold: how long its
//! request headers and body may take, how long an idle keep-alive connection stays, and how many
//! connections are open at once. All apply before a request is routed, so before
//! authentication: a client without a token cannot hold more than anyone else.
//!
//! hyper's HTTP/1 connection builder does the protocol; hyper-util gives the timer and the
//! graceful shutdown of each connection. `axum::serve` is not used because it sets no timeouts
//! and accepts without bound.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower_service::Service as _;

use crate::api::error::{Problem, error_response};

/// What a client may hold of a server, all enforced before a request is routed (so before the
/// bearer token is checked). Used by `linq-hooks serve` ([`ServiceConfig::limits`](crate::ServiceConfig::limits))
/// and by `linq-hooks listen`.
///
/// | field | default | what happens when it is reached |
/// | --- | --- | --- |
/// | `header_timeout` | 10 s | the connection is closed |
/// | `body_timeout` | 30 s | 408 is answered and the connection closed |
/// | `write_timeout` | 30 s | the connection is closed |
/// | `max_connections` | 1024 | a new connection takes the place of the one that has waited longest for a request; with every one in a request, it waits |
///
/// ```
/// use std::time::Duration;
/// let mut limits = linq_hooks_service::Limits::default();
/// assert_eq!(limits.header_timeout, Duration::from_secs(10));
/// limits.max_connections = 64;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// How long a connection may wait for a complete request head (request line and headers),
    /// counted from when it is ready for one: from its accept, and again from the end of each
    /// answer. So this is also how long an idle keep-alive connection is kept. Reached: the
    /// connection is closed without an answer. Default 10 s.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive in full, counted from the end of its head
    /// (not reset by each piece that arrives, so a trickle cannot stretch it). Reached: 408
    /// Request Timeout, and the connection is closed. Default 30 s, enough for the largest body
    /// (1 MiB) at 35 KB/s.
    pub body_timeout: Duration,
    /// How long writing an answer may make no progress, because the client does not read it
    /// (a client can pipeline requests and never read the answers, filling the socket's
    /// buffers). Reached: the connection is closed. Default 30 s.
    pub write_timeout: Duration,
    /// At most this many connections open at once. At the cap, a newly accepted connection
    /// takes the place of the one that has waited longest for a request (idle, or its head
    /// still incomplete), which is closed: clients holding half-sent requests cannot keep
    /// everyone else out. If every connection is in a request, nothing more is accepted until
    /// one closes (further clients wait in the kernel's listen backlog, holding none of this
    /// process's descriptors). Default 1024; at least 1.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it is in (idle ones are closed at once),
/// and returns when all are closed. Dropping the returned future closes every connection at
/// once (bound it with a timeout for a grace period).
///
/// Every accepted connection gets `TCP_NODELAY` (answers go out at once, not held back by
/// Nagle's algorithm). An accept that fails (out of file descriptors, say) is logged and
/// retried after a pause, never fatal.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
/// let router = axum::Router::new().fallback(|| async { "hello" });
/// let limits = linq_hooks_service::Limits::default();
/// linq_hooks_service::serve(listener, router, limits, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await;
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let open = Arc::new(Open::default());
    let graceful = GracefulShutdown::new();
    // Dropping the set (this future dropped) aborts every connection.
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept(&listener) => accepted,
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => tokio::select! {
                () = &mut shutdown => break,
                slot = make_room(&open, &slots) => slot,
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = e.to_string().as_str(), "cannot set TCP_NODELAY");
        }
        let idle = open.add();
        let service = hyper::service::service_fn({
            let (router, limits, idle) = (router.clone(), Arc::clone(&limits), Arc::clone(&idle));
            move |request| {
                handle(
                    router.clone(),
                    Arc::clone(&limits),
                    Arc::clone(&idle),
                    request,
                )
            }
        });
        let stream = WriteDeadline {
            inner: stream,
            limit: limits.write_timeout,
            stalled: None,
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let open = Arc::clone(&open);
        connections.spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = e.to_string().as_str(), "connection closed");
                    }
                }
                () = idle.evicted() => tracing::debug!(%peer, "closed to make room for a new connection"),
            }
            open.remove(idle.id);
            drop(slot);
        });
    }
    drop(listener);
    tokio::join!(graceful.shutdown(), async {
        while connections.join_next().await.is_some() {}
    });
}

/// At the cap, with a connection accepted: the connection that has waited longest for a
/// request (idle, or its head still incomplete) is closed to make room, so that clients holding
/// half-sent requests cannot keep everyone else out; when every connection is in a request,
/// this waits for one to close.
async fn make_room(open: &Open, slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    loop {
        open.evict_longest_waiting();
        let slot = Arc::clone(slots).acquire_owned();
        if let Ok(slot) = tokio::time::timeout(Duration::from_millis(100), slot).await {
            return slot.expect("the semaphore is never closed");
        }
    }
}

/// The open connections, each with whether it waits for a request and since when.
#[derive(Default)]
struct Open {
    next: std::sync::atomic::AtomicU64,
    all: std::sync::Mutex<std::collections::HashMap<u64, Arc<Idle>>>,
}

impl Open {
    fn add(&self) -> Arc<Idle> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let idle = Arc::new(Idle {
            id,
            waiting: AtomicBool::new(true),
            since: std::sync::Mutex::new(tokio::time::Instant::now()),
            close: tokio::sync::Notify::new(),
        });
        self.all.lock().unwrap().insert(id, Arc::clone(&idle));
        idle
    }

    fn remove(&self, id: u64) {
        self.all.lock().unwrap().remove(&id);
    }

    fn evict_longest_waiting(&self) {
        let all = self.all.lock().unwrap();
        let longest = all
            .values()
            .filter(|idle| idle.waiting.load(Ordering::Relaxed))
            .min_by_key(|idle| *idle.since.lock().unwrap());
        if let Some(idle) = longest {
            idle.close.notify_one();
        }
    }
}

/// One connection's state between requests.
struct Idle {
    id: u64,
    /// No request of this connection is in the router.
    waiting: AtomicBool,
    /// Since its accept or the end of its last request.
    since: std::sync::Mutex<tokio::time::Instant>,
    close: tokio::sync::Notify,
}

impl Idle {
    fn busy(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    fn done(&self) {
        *self.since.lock().unwrap() = tokio::time::Instant::now();
        self.waiting.store(true, Ordering::Relaxed);
    }

    /// Completes when asked to make room while waiting for a request.
    async fn evicted(&self) {
        loop {
            self.close.notified().await;
            if self.waiting.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// Waits for a connection. Errors are logged and retried: with the descriptors exhausted
/// (EMFILE) accept fails at once, so it pauses rather than spin.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "cannot accept a connection"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Errors of one connection that went away before it was accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// One request: its body gets the body deadline, then the router answers. If the deadline
/// passed while the router read the body, the answer is 408 and the connection is closed.
async fn handle(
    router: Router,
    limits: Arc<Limits>,
    idle: Arc<Idle>,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    idle.busy();
    let response = answer(router, limits, request).await?;
    // Waiting again once the answer's body is written (or the connection gone).
    Ok(response.map(|body| Body::new(Answering { body, idle })))
}

/// An answer's body; its connection counts as waiting for a request once it is dropped.
struct Answering {
    body: Body,
    idle: Arc<Idle>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.idle.done();
    }
}

impl http_body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

async fn answer(
    mut router: Router,
    limits: Arc<Limits>,
    request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limits.body_timeout)),
            limit: limits.body_timeout,
            expired: Arc::clone(&expired),
        })
    });
    let response = router.call(request).await?;
    if !expired.load(Ordering::Relaxed) {
        return Ok(response);
    }
    let mut response = error_response(
        StatusCode::REQUEST_TIMEOUT,
        vec![Problem {
            path: None,
            message: format!(
                "the request body did not arrive within {}",
                humanize(limits.body_timeout)
            ),
        }],
    );
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    Ok(response)
}

/// `30s`, `1.5s`.
fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A request body that fails once its deadline has passed, however much of it has arrived.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    expired: Arc<AtomicBool>,
}

/// The error of a body whose deadline passed.
#[derive(Debug)]
struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {}",
            humanize(self.0)
        )
    }
}

impl std::error::Error for BodyTimeout {}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        // The deadline first: a body that keeps arriving must not keep it from being checked.
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimeout(this.limit).into())));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once they have made no progress for `limit` (the client
/// stopped reading); reads are untouched (the header and body timeouts bound those).
struct WriteDeadline {
    inner: TcpStream,
    limit: Duration,
    /// Since when writing has been pending, as a timer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    /// `poll` is a write that returned `Pending` or not; a pending one arms the timer (once) and
    /// fails when it rings, anything else disarms it.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing of the answer for {}",
                    humanize(limit)
                ),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, poll)
    }
}
