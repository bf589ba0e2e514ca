//! A transport that sends nothing: it records requests and answers from a script.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Error, Request, Response, Transport};

/// A transport for tests: it records every request and answers from a script.
///
/// Each call to [`send`](Transport::send) takes the next answer queued for the request's URL
/// ([`reply_to`](MemoryTransport::reply_to)), else the next answer of the global queue
/// ([`reply`](MemoryTransport::reply)), else answers `200` with an empty body. URLs are
/// compared as written.
///
/// Clones share the same record and script: give one to the code under test and keep another
/// to script and inspect.
///
/// Needs the cargo feature `memory` (off by default). A crate enables it for its own tests
/// only:
///
/// ```toml
/// [dev-dependencies]
/// linq-hooks-transport = { workspace = true, features = ["memory"] }
/// ```
///
/// ```
/// use linq_hooks_transport::{Error, MemoryTransport, Request, Response, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let memory = MemoryTransport::new();
/// memory
///     .reply(Ok(Response::new(503).with_retry_after("30")))
///     .reply(Err(Error::timeout()))
///     .reply_to("https://b.example/", Ok(Response::new(410)));
///
/// let transport = memory.clone(); // what the code under test gets
/// let send = |url: &str| {
///     transport.send(Request::new(url, "{}").with_header("webhook-id", "msg_1"))
/// };
/// assert_eq!(send("https://a.example/").await?.status(), 503);
/// assert_eq!(send("https://b.example/").await?.status(), 410);
/// assert!(send("https://a.example/").await.unwrap_err().is_timeout());
/// assert_eq!(send("https://a.example/").await?.status(), 200); // the script is used up
///
/// let sent = memory.requests();
/// assert_eq!(sent.len(), 4);
/// assert_eq!(sent[1].url(), "https://b.example/");
/// assert_eq!(sent[1].header("webhook-id"), Some("msg_1"));
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryTransport {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<Request>,
    global: VecDeque<Result<Response, Error>>,
    by_url: HashMap<String, VecDeque<Result<Response, Error>>>,
}

impl MemoryTransport {
    /// A transport with nothing sent and an empty script: every request is answered `200`.
    ///
    /// ```
    /// # use linq_hooks_transport::MemoryTransport;
    /// let memory = MemoryTransport::new();
    /// assert!(memory.requests().is_empty());
    /// ```
    pub fn new() -> Self {
        MemoryTransport::default()
    }

    /// Queues an answer for the next request whose URL has no answer of its own queued.
    ///
    /// ```
    /// # use linq_hooks_transport::{Error, MemoryTransport, Response};
    /// let memory = MemoryTransport::new();
    /// memory.reply(Ok(Response::new(500))).reply(Err(Error::connect("refused")));
    /// assert_eq!(memory.unused_replies(), 2);
    /// ```
    pub fn reply(&self, answer: Result<Response, Error>) -> &Self {
        self.lock().global.push_back(answer);
        self
    }

    /// Queues an answer for the next request to `url`.
    ///
    /// ```
    /// # use linq_hooks_transport::{MemoryTransport, Response};
    /// let memory = MemoryTransport::new();
    /// memory.reply_to("https://lims.example/hook", Ok(Response::new(202)));
    /// ```
    pub fn reply_to(&self, url: impl Into<String>, answer: Result<Response, Error>) -> &Self {
        self.lock()
            .by_url
            .entry(url.into())
            .or_default()
            .push_back(answer);
        self
    }

    /// Every request sent so far, oldest first.
    ///
    /// ```
    /// # use linq_hooks_transport::{MemoryTransport, Request, Transport};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let memory = MemoryTransport::new();
    /// memory.send(Request::new("https://lims.example/", "{}")).await.unwrap();
    /// assert_eq!(memory.requests()[0].url(), "https://lims.example/");
    /// # });
    /// ```
    pub fn requests(&self) -> Vec<Request> {
        self.lock().sent.clone()
    }

    /// Every request sent so far, oldest first, forgetting them.
    ///
    /// ```
    /// # use linq_hooks_transport::{MemoryTransport, Request, Transport};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let memory = MemoryTransport::new();
    /// memory.send(Request::new("https://lims.example/", "{}")).await.unwrap();
    /// assert_eq!(memory.take_requests().len(), 1);
    /// assert!(memory.requests().is_empty());
    /// # });
    /// ```
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().sent)
    }

    /// How many scripted answers are still queued (global and per URL): a test can check that
    /// its script was used up.
    ///
    /// ```
    /// # use linq_hooks_transport::{MemoryTransport, Response};
    /// let memory = MemoryTransport::new();
    /// memory.reply_to("https://a.example/", Ok(Response::new(500)));
    /// assert_eq!(memory.unused_replies(), 1);
    /// ```
    pub fn unused_replies(&self) -> usize {
        let state = self.lock();
        state.global.len() + state.by_url.values().map(VecDeque::len).sum::<usize>()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left no half-made change behind: every
        // change above is a single push or pop.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[crate::async_trait]
impl Transport for MemoryTransport {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        let mut state = self.lock();
        let answer = state
            .by_url
            .get_mut(request.url())
            .and_then(VecDeque::pop_front)
            .or_else(|| state.global.pop_front())
            .unwrap_or_else(|| Ok(Response::new(200)));
        state.sent.push(request);
        answer
    }
}
