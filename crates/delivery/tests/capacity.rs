//! Capacity under receivers that hang, over real HTTP on 127.0.0.1: a stuck receiver must not
//! take the capacity of those that answer (issue 11, item 5), and a hook whose receiver keeps
//! timing out pauses with its queue kept. Also: retry waits on the monotonic clock (item 9).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use linq_hooks_delivery::{
    Config, Dispatcher, MemoryOutbox, NewDelivery, RetryPolicy, transport::Transport,
};
use linq_hooks_http::HttpTransport;
use linq_hooks_model::{Hook, parse_hooks};
use linq_hooks_transport::{MemoryTransport, Response};
use tokio::net::{TcpListener, TcpStream};

/// A receiver on 127.0.0.1: the first `hang` connections are accepted and never answered (kept
/// open until the receiver is dropped); after those, every request gets 200 and its body is
/// noted, in arrival order.
struct Receiver {
    addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Bodies answered with 200, in order.
    bodies: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(hang: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (accepted, bodies) = (accepted.clone(), bodies.clone());
            async move {
                let mut hanging: Vec<TcpStream> = Vec::new();
                while let Ok((stream, _)) = listener.accept().await {
                    if accepted.fetch_add(1, Ordering::SeqCst) < hang {
                        hanging.push(stream);
                        continue;
                    }
                    let bodies = bodies.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request: hyper::Request<Incoming>| {
                            let bodies = bodies.clone();
                            async move {
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                bodies
                                    .lock()
                                    .unwrap()
                                    .push(String::from_utf8_lossy(&body).into_owned());
                                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Receiver {
            addr,
            accepted,
            bodies,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Closes the listener and the hanging connections with it.
        self.task.abort();
    }
}

fn hooks(urls: &[String]) -> Arc<[Hook]> {
    let list: Vec<String> = urls
        .iter()
        .map(|url| format!(r#"{{"filter": "on_new_plan", "parameters": {{"url": "{url}"}}}}"#))
        .collect();
    parse_hooks(&format!("[{}]", list.join(",")))
        .unwrap()
        .hooks
        .into()
}

fn push(outbox: &MemoryOutbox, hook: u64, n: usize) {
    for i in 0..n {
        outbox.push(NewDelivery {
            hook,
            webhook_id: format!("msg_{hook}_{i}"),
            body: format!(r#"{{"n":{i}}}"#).into(),
        });
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect()
}

fn http(timeout: Duration) -> Arc<dyn Transport> {
    Arc::new(HttpTransport::builder().timeout(timeout).build().unwrap())
}

/// Waits until `done` holds, polling; panics with `what` after 60 s (a bound, not a measure).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn spawn_run(dispatcher: &Dispatcher) -> tokio::task::JoinHandle<()> {
    let dispatcher = dispatcher.clone();
    tokio::spawn(async move { dispatcher.run().await })
}

/// `stuck` receivers that never answer, each its own origin, with one delivery each already
/// hanging; then `healthy` deliveries to one receiver that answers: all of them arrive, in
/// order, while every stuck request is still hanging (none of them has finished an attempt).
async fn healthy_hook_beside_stuck_receivers(stuck: usize, shared_origin: usize, config: Config) {
    let mut receivers = Vec::new();
    for _ in 0..stuck {
        receivers.push(Receiver::start(usize::MAX).await);
    }
    // Hooks that all point at one more stuck receiver (another path each: the same origin).
    let crowded = Receiver::start(usize::MAX).await;
    let healthy = Receiver::start(0).await;
    let mut urls: Vec<String> = receivers.iter().map(Receiver::url).collect();
    urls.extend((0..shared_origin).map(|i| format!("http://{}/path-{i}", crowded.addr)));
    urls.push(healthy.url());
    let concurrency = config.concurrency;
    let outbox = Arc::new(MemoryOutbox::new(urls.len()));
    let dispatcher = Dispatcher::new(
        hooks(&urls),
        http(Duration::from_secs(300)),
        outbox.clone(),
        config,
    )
    .unwrap();
    let running = spawn_run(&dispatcher);
    let stuck_hooks = (stuck + shared_origin) as u64;
    for hook in 0..stuck_hooks {
        push(&outbox, hook, 2);
    }
    // Every stuck receiver holds a request (the crowded origin: as many as one origin may).
    let at_crowded = shared_origin.min(concurrency);
    until("every stuck receiver holds a request", || {
        receivers.iter().all(|r| r.accepted() == 1) && crowded.accepted() == at_crowded
    })
    .await;

    push(&outbox, stuck_hooks, 50);
    until("the healthy hook's webhooks arrive", || {
        healthy.bodies().len() == 50
    })
    .await;
    assert_eq!(healthy.bodies(), expected(50), "in order, once each");
    // Meanwhile no stuck request ended: none has an attempt recorded, and no hook to the
    // crowded origin got past the bound on requests in flight per origin.
    let reports = outbox.reports();
    for (hook, report) in reports[..stuck_hooks as usize].iter().enumerate() {
        assert_eq!(
            (report.attempts, report.pending),
            (0, 2),
            "stuck hook {hook} still hangs on its first delivery"
        );
    }
    assert_eq!(crowded.accepted(), at_crowded);
    assert!(dispatcher.health().paused.is_empty());
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eighty_stuck_receivers_do_not_hold_up_a_healthy_hook() {
    // The field fault: 80 receivers that never answer, one that does, the default limits.
    healthy_hook_beside_stuck_receivers(80, 0, Config::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_stuck_receivers_than_the_concurrency_bound_and_one_crowded_origin() {
    // 12 stuck origins and 6 hooks on a 13th, against a shared pool of 4 and 4 per origin.
    let config = Config::default()
        .concurrency(4)
        .slow_after(Duration::from_millis(50));
    healthy_hook_beside_stuck_receivers(12, 6, config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_slow_lane_full_the_shared_pool_is_what_is_left() {
    // A slow lane of 2 (max_in_flight 4, concurrency 2): the two stuck requests that do not fit
    // keep their places in the shared pool, so a healthy hook waits behind them. This is the
    // documented limit of the slow lane; the breaker is what frees it (next test).
    let receivers = [
        Receiver::start(usize::MAX).await,
        Receiver::start(usize::MAX).await,
        Receiver::start(usize::MAX).await,
        Receiver::start(usize::MAX).await,
    ];
    let healthy = Receiver::start(0).await;
    let mut urls: Vec<String> = receivers.iter().map(Receiver::url).collect();
    urls.push(healthy.url());
    let outbox = Arc::new(MemoryOutbox::new(urls.len()));
    let config = Config::default()
        .concurrency(2)
        .max_in_flight(4)
        .slow_after(Duration::from_millis(20));
    let dispatcher = Dispatcher::new(
        hooks(&urls),
        http(Duration::from_secs(300)),
        outbox.clone(),
        config,
    )
    .unwrap();
    let running = spawn_run(&dispatcher);
    for hook in 0..4 {
        push(&outbox, hook, 1);
    }
    until("all four stuck receivers hold a request", || {
        receivers.iter().all(|r| r.accepted() == 1)
    })
    .await;
    push(&outbox, 4, 1);
    // The healthy delivery cannot start: nothing is free until a stuck request ends. Closing
    // one stuck receiver's connection ends its request, and the healthy hook goes on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(healthy.accepted(), 0, "no place left for the healthy hook");
    drop(receivers);
    until("the healthy webhook arrives", || {
        healthy.bodies().len() == 1
    })
    .await;
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_keeps_timing_out_pauses_and_resumes_with_its_queue_in_order() {
    // The first 3 connections hang (each attempt times out), then the receiver answers.
    let receiver = Receiver::start(3).await;
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 5);
    let config = Config::default()
        .breaker(2, Duration::from_millis(300))
        .policy(RetryPolicy::new(vec![Duration::from_millis(10); 10]));
    let dispatcher = Dispatcher::new(
        hooks(&[receiver.url()]),
        http(Duration::from_millis(200)),
        outbox.clone(),
        config,
    )
    .unwrap();
    dispatcher.close();
    let running = spawn_run(&dispatcher);

    // Two timeouts in a row: paused, with all five deliveries kept.
    until("the hook pauses after two attempts", || {
        dispatcher.health().paused == [0] && outbox.report(0).attempts == 2
    })
    .await;
    assert_eq!(outbox.report(0).pending, 5);
    // The probe after the cool-down times out too (the third hanging connection): paused
    // again; the next probe gets an answer, which ends the pause.
    running.await.unwrap();
    assert_eq!(receiver.bodies(), expected(5), "every delivery, in order");
    let report = outbox.report(0);
    assert_eq!((report.delivered, report.attempts), (5, 8));
    assert_eq!(
        receiver.accepted(),
        4,
        "3 hanging, then one kept-alive connection"
    );
    assert!(dispatcher.health().paused.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_any_status_is_not_held_against_the_breaker() {
    // 503 on and on: the receiver is there, so the hook never pauses; the retry schedule
    // decides alone.
    let transport = MemoryTransport::new();
    for _ in 0..6 {
        transport.reply(Ok(Response::new(503)));
    }
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 1);
    let config = Config::default()
        .breaker(2, Duration::from_secs(3600))
        .policy(RetryPolicy::new(vec![Duration::from_millis(5); 6]));
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/".to_string()]),
        Arc::new(transport.clone()),
        outbox.clone(),
        config,
    )
    .unwrap();
    dispatcher.close();
    dispatcher.run().await; // an hour's pause would not end here
    let report = outbox.report(0);
    assert_eq!((report.delivered, report.attempts), (1, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_back_does_not_delay_a_retry() {
    // The wall clock the dispatcher reads, `offset` seconds behind the system's.
    let offset = Arc::new(AtomicI64::new(0));
    let clock = {
        let offset = offset.clone();
        move || {
            SystemTime::now() - Duration::from_secs(offset.load(Ordering::SeqCst).unsigned_abs())
        }
    };
    let transport = MemoryTransport::new();
    transport.reply(Ok(Response::new(503))); // then 200
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 1);
    let config = Config::default()
        .policy(RetryPolicy::new([Duration::from_secs(1)]).with_jitter_percent(0))
        .wall_clock(clock);
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/".to_string()]),
        Arc::new(transport.clone()),
        outbox.clone(),
        config,
    )
    .unwrap();
    dispatcher.close();
    let running = spawn_run(&dispatcher);
    until("the first attempt is recorded", || {
        outbox.report(0).attempts == 1
    })
    .await;
    // The clock steps back an hour; the worker is woken, so it works out its wait again.
    offset.store(3600, Ordering::SeqCst);
    dispatcher.wake(0);
    // Waiting for the step would take an hour; `until` gives up after a minute.
    until("the retry is made", || outbox.report(0).delivered == 1).await;
    running.await.unwrap();
    assert_eq!(transport.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_refused_at_once_does_not_pause_the_hook() {
    // Nothing listens: each attempt fails at once, holding nothing, so the retry schedule alone
    // spaces them; a breaker that counted them would pause the hook for an hour here.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 2);
    let config = Config::default()
        .breaker(2, Duration::from_secs(3600))
        .policy(RetryPolicy::new(vec![Duration::from_millis(5); 3]));
    let dispatcher = Dispatcher::new(
        hooks(&[format!("http://127.0.0.1:{port}/")]),
        http(Duration::from_secs(5)),
        outbox.clone(),
        config,
    )
    .unwrap();
    dispatcher.close();
    tokio::time::timeout(Duration::from_secs(60), dispatcher.run())
        .await
        .expect("no pause: both deliveries are given up on their schedule");
    let report = outbox.report(0);
    assert_eq!((report.failed.len(), report.attempts), (2, 8));
    assert!(dispatcher.health().paused.is_empty());
}

/// A [`MemoryOutbox`] that does not wake the dispatcher itself (as the service's store does
/// not) and counts how often its queues are read.
struct Quiet {
    inner: Arc<MemoryOutbox>,
    heads: AtomicUsize,
}

#[linq_hooks_delivery::async_trait]
impl linq_hooks_delivery::Outbox for Quiet {
    async fn head(
        &self,
        hook: linq_hooks_delivery::HookId,
    ) -> Result<linq_hooks_delivery::Head, linq_hooks_delivery::OutboxError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(hook).await
    }

    async fn record(
        &self,
        delivery: &linq_hooks_delivery::Delivery,
        attempt: linq_hooks_delivery::Attempt,
        outcome: linq_hooks_delivery::Outcome,
    ) -> Result<(), linq_hooks_delivery::OutboxError> {
        self.inner.record(delivery, attempt, outcome).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_wakes_an_idle_worker_and_leaves_one_waiting_for_a_retry_alone() {
    let transport = MemoryTransport::new();
    transport.reply_to("https://b.example/", Ok(Response::new(503))); // b waits an hour
    let outbox = Arc::new(Quiet {
        inner: Arc::new(MemoryOutbox::new(2)),
        heads: AtomicUsize::new(0),
    });
    let config = Config::default().policy(RetryPolicy::new([Duration::from_secs(3600)]));
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/".into(), "https://b.example/".into()]),
        Arc::new(transport.clone()),
        outbox.clone(),
        config,
    )
    .unwrap();
    let running = spawn_run(&dispatcher);
    // Hook 0 is idle; told of its delivery, it sends it.
    push(&outbox.inner, 0, 1);
    dispatcher.appended(0);
    until("the idle hook's delivery", || {
        outbox.inner.report(0).delivered == 1
    })
    .await;
    // Hook 1's first delivery gets 503 and waits an hour to be retried.
    push(&outbox.inner, 1, 1);
    dispatcher.appended(1);
    until("hook 1's first attempt is recorded", || {
        outbox.inner.report(1).attempts == 1
    })
    .await;
    until("hook 1 waits for its retry", || {
        // Hook 0: empty, its delivery, empty; hook 1: empty, its delivery, the same not due.
        outbox.heads.load(Ordering::SeqCst) == 6
    })
    .await;
    let reads = outbox.heads.load(Ordering::SeqCst);
    // A burst appended behind the waiting delivery: nobody reads a queue for it...
    for _ in 0..100 {
        push(&outbox.inner, 1, 1);
        dispatcher.appended(1);
    }
    // ...while a `wake` does (the queue might have changed in front), and is answered.
    dispatcher.wake(1);
    until("the woken worker reads its queue", || {
        outbox.heads.load(Ordering::SeqCst) > reads
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(outbox.heads.load(Ordering::SeqCst), reads + 1);
    assert_eq!(outbox.inner.report(1).pending, 101);
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_wakes_a_hook_the_breaker_paused() {
    // The first 2 connections hang (each attempt times out), then the receiver answers.
    let receiver = Receiver::start(2).await;
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 3);
    // Paused for an hour after two timeouts in a row.
    let config = Config::default()
        .breaker(2, Duration::from_secs(3600))
        .policy(RetryPolicy::new(vec![Duration::from_millis(10); 10]));
    let dispatcher = Dispatcher::new(
        hooks(&[receiver.url()]),
        http(Duration::from_millis(200)),
        outbox.clone(),
        config,
    )
    .unwrap();
    dispatcher.close();
    let running = spawn_run(&dispatcher);
    until("the hook pauses after two attempts", || {
        dispatcher.health().paused == [0] && outbox.report(0).attempts == 2
    })
    .await;
    // An operator's retry now: the pause ends, the head is the probe, and it gets through.
    dispatcher.retry_now(0);
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("delivered long before the hour's pause would end")
        .unwrap();
    assert_eq!(receiver.bodies(), expected(3), "every delivery, in order");
    assert_eq!(outbox.report(0).delivered, 3);
    assert!(dispatcher.health().paused.is_empty());
}
