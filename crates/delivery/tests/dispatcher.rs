//! The dispatcher's rules, with the in-memory outbox and transports a test controls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linq_hooks_delivery::{Config, Dispatcher, MemoryOutbox, NewDelivery, Outbox, RetryPolicy};
use linq_hooks_model::{Hook, parse_hooks};
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
use linq_hooks_transport::{Error, MemoryTransport, Request, Response, Transport, async_trait};

fn hooks(urls: &[&str]) -> Arc<[Hook]> {
    let list: Vec<String> = urls
        .iter()
        .map(|url| format!(r#"{{"filter": "on_new_plan", "parameters": {{"url": "{url}", "headers": {{"X-Lab": "bench-3"}}}}}}"#))
        .collect();
    parse_hooks(&format!("[{}]", list.join(",")))
        .unwrap()
        .hooks
        .into()
}

/// Queues `n` deliveries for `hook`, with bodies `{"n":0}`, `{"n":1}`, ...
fn push(outbox: &MemoryOutbox, hook: u64, n: usize) {
    for i in 0..n {
        outbox.push(NewDelivery {
            hook,
            webhook_id: format!("msg_{hook}_{i}"),
            body: format!(r#"{{"n":{i}}}"#).into(),
        });
    }
}

/// A fast schedule, so tests of retries do not wait.
fn quick(retries: usize) -> RetryPolicy {
    RetryPolicy::new(vec![Duration::from_millis(5); retries])
}

async fn run_to_end(
    hooks: Arc<[Hook]>,
    transport: Arc<dyn Transport>,
    outbox: Arc<MemoryOutbox>,
    config: Config,
) {
    let dispatcher = Dispatcher::new(hooks, transport, outbox, config).unwrap();
    dispatcher.close();
    dispatcher.run().await;
}

fn bodies_to(sent: &[Request], url: &str) -> Vec<String> {
    sent.iter()
        .filter(|r| r.url() == url)
        .map(|r| String::from_utf8(r.body().to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn deliveries_to_a_hook_go_in_order_and_retries_keep_their_id() {
    let (a, b) = ("https://a.example/", "https://b.example/");
    let outbox = Arc::new(MemoryOutbox::new(2));
    push(&outbox, 0, 20);
    push(&outbox, 1, 20);
    let transport = MemoryTransport::new();
    transport
        .reply_to(a, Ok(Response::new(503)))
        .reply_to(a, Err(Error::connect("refused")))
        .reply_to(b, Ok(Response::new(429)));
    let config = Config::default().policy(quick(3));
    run_to_end(
        hooks(&[a, b]),
        Arc::new(transport.clone()),
        outbox.clone(),
        config,
    )
    .await;

    let sent = transport.requests();
    let expected: Vec<String> = (0..20).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    // The first delivery to `a` was tried three times, then the rest in order.
    let to_a = bodies_to(&sent, a);
    assert_eq!(to_a[..3], [r#"{"n":0}"#; 3]);
    assert_eq!(to_a[2..], expected[..]);
    let ids: Vec<_> = sent
        .iter()
        .filter(|r| r.url() == a)
        .take(3)
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids, ["msg_0_0"; 3]);
    let to_b = bodies_to(&sent, b);
    assert_eq!(to_b[1..], expected[..]);

    let reports = outbox.reports();
    assert_eq!(
        (
            reports[0].delivered,
            reports[0].attempts,
            reports[0].pending
        ),
        (20, 22, 0)
    );
    assert_eq!((reports[1].delivered, reports[1].attempts), (20, 21));
}

#[tokio::test]
async fn every_request_carries_the_hook_headers_and_a_verifiable_signature() {
    let secrets: Vec<Secret> = [
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 3);
    let transport = MemoryTransport::new();
    let config = Config::default().secrets(secrets.clone());
    run_to_end(
        hooks(&["https://a.example/"]),
        Arc::new(transport.clone()),
        outbox,
        config,
    )
    .await;

    let sent = transport.requests();
    assert_eq!(sent.len(), 3);
    for request in &sent {
        assert_eq!(request.header("X-Lab"), Some("bench-3"));
        let signature = request.header("webhook-signature").unwrap();
        assert_eq!(signature.split(' ').count(), 2, "one signature per secret");
        // Each secret alone verifies it (a receiver mid-rotation has one or the other).
        for secret in &secrets {
            let headers = WebhookHeaders::from_fn(|name| request.header(name));
            Verifier::new([secret.clone()])
                .verify(headers, request.body())
                .unwrap();
        }
    }
}

#[tokio::test]
async fn without_secrets_there_is_no_signature_header() {
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 1);
    let transport = MemoryTransport::new();
    run_to_end(
        hooks(&["https://a.example/"]),
        Arc::new(transport.clone()),
        outbox,
        Config::default(),
    )
    .await;
    let request = &transport.requests()[0];
    assert_eq!(request.header("webhook-id"), Some("msg_0_0"));
    assert!(
        request
            .header("webhook-timestamp")
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert_eq!(request.header("webhook-signature"), None);
}

#[tokio::test]
async fn client_errors_and_redirects_fail_at_once_and_the_next_delivery_goes_on() {
    let url = "https://a.example/";
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 3);
    let transport = MemoryTransport::new();
    transport
        .reply_to(url, Ok(Response::new(400)))
        .reply_to(url, Ok(Response::new(302)));
    run_to_end(
        hooks(&[url]),
        Arc::new(transport.clone()),
        outbox.clone(),
        Config::default().policy(quick(5)),
    )
    .await;

    assert_eq!(transport.requests().len(), 3, "no retries");
    let report = &outbox.reports()[0];
    assert_eq!(report.delivered, 1);
    let reasons: Vec<_> = report
        .failed
        .iter()
        .map(|f| (f.webhook_id.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("msg_0_0", "status 400"),
            ("msg_0_1", "redirect 302 (redirects are not followed)")
        ]
    );
}

#[tokio::test]
async fn a_delivery_is_given_up_when_the_schedule_is_used_up() {
    let url = "https://a.example/";
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 2);
    let transport = MemoryTransport::new();
    for _ in 0..3 {
        transport.reply_to(url, Ok(Response::new(500)));
    }
    run_to_end(
        hooks(&[url]),
        Arc::new(transport.clone()),
        outbox.clone(),
        Config::default().policy(quick(2)),
    )
    .await;

    let report = &outbox.reports()[0];
    assert_eq!(report.failed.len(), 1);
    assert_eq!(
        report.failed[0].reason,
        "gave up after 3 attempts; the last: status 500"
    );
    assert_eq!(report.delivered, 1, "the next delivery still goes");
    assert_eq!(report.attempts, 4);
}

#[tokio::test]
async fn gone_disables_the_hook_and_keeps_its_deliveries() {
    let (a, b) = ("https://a.example/", "https://b.example/");
    let outbox = Arc::new(MemoryOutbox::new(2));
    push(&outbox, 0, 5);
    push(&outbox, 1, 5);
    let transport = MemoryTransport::new();
    transport
        .reply_to(a, Ok(Response::new(200)))
        .reply_to(a, Ok(Response::new(410)));
    run_to_end(
        hooks(&[a, b]),
        Arc::new(transport.clone()),
        outbox.clone(),
        Config::default(),
    )
    .await;

    assert_eq!(
        bodies_to(&transport.requests(), a).len(),
        2,
        "nothing sent after the 410"
    );
    let reports = outbox.reports();
    assert!(reports[0].gone);
    assert_eq!(
        (reports[0].delivered, reports[0].pending),
        (1, 4),
        "the 410'd delivery and the rest wait"
    );
    assert!(!reports[1].gone);
    assert_eq!(reports[1].delivered, 5);
    assert_eq!(
        outbox.head(0).await.unwrap(),
        linq_hooks_delivery::Head::Disabled
    );
}

/// A transport that counts requests in flight, and holds `hang_url`'s requests until released.
#[derive(Default)]
struct Gate {
    in_flight: AtomicUsize,
    most: AtomicUsize,
    delivered: Mutex<Vec<String>>,
    hang_url: Option<String>,
    release: tokio::sync::Notify,
}

#[async_trait]
impl Transport for Gate {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        if self.hang_url.as_deref() == Some(request.url()) {
            self.release.notified().await;
        } else {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.delivered
            .lock()
            .unwrap()
            .push(request.url().to_string());
        Ok(Response::new(200))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_stay_within_the_concurrency_bound() {
    let urls: Vec<String> = (0..10).map(|i| format!("https://h{i}.example/")).collect();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let outbox = Arc::new(MemoryOutbox::new(10));
    for hook in 0..10 {
        push(&outbox, hook, 20);
    }
    let gate = Arc::new(Gate::default());
    run_to_end(
        hooks(&url_refs),
        gate.clone(),
        outbox.clone(),
        Config::default().concurrency(3),
    )
    .await;
    assert_eq!(gate.delivered.lock().unwrap().len(), 200);
    let most = gate.most.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "at most 3 in flight, saw {most}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_holds_up_only_its_own_hook() {
    let (slow, fast) = ("https://slow.example/", "https://fast.example/");
    let outbox = Arc::new(MemoryOutbox::new(2));
    push(&outbox, 0, 3);
    push(&outbox, 1, 30);
    let gate = Arc::new(Gate {
        hang_url: Some(slow.to_string()),
        ..Gate::default()
    });
    let dispatcher = Dispatcher::new(
        hooks(&[slow, fast]),
        gate.clone(),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    dispatcher.close();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    // Every delivery to the fast hook arrives while the slow one hangs on its first.
    while outbox.reports()[1].delivered < 30 {
        tokio::task::yield_now().await;
    }
    assert_eq!(outbox.reports()[0].delivered, 0);
    assert_eq!(
        gate.in_flight.load(Ordering::SeqCst),
        1,
        "the slow hook's first request"
    );
    // Released one by one, the slow hook catches up.
    let delivered_to_slow = || {
        gate.delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|url| *url == slow)
            .count()
    };
    for released in 1..=3 {
        gate.release.notify_one();
        while delivered_to_slow() < released {
            tokio::task::yield_now().await;
        }
    }
    running.await.unwrap();
    assert_eq!(outbox.reports()[0].delivered, 3);
}

#[tokio::test]
async fn shutdown_stops_new_attempts_and_leaves_the_rest_in_the_outbox() {
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 3);
    let transport = MemoryTransport::new();
    transport.reply(Ok(Response::new(503)));
    // A long retry delay: the worker sleeps, and shutdown must end that sleep.
    let config = Config::default().policy(RetryPolicy::new([Duration::from_secs(3600)]));
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/"]),
        Arc::new(transport.clone()),
        outbox.clone(),
        config,
    )
    .unwrap();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    while transport.requests().is_empty() {
        tokio::task::yield_now().await;
    }
    dispatcher.shutdown();
    running.await.unwrap();
    assert_eq!(transport.requests().len(), 1);
    assert_eq!(outbox.pending(), 3, "nothing lost");
}

#[test]
fn schedules_parse_and_refuse_nonsense() {
    let policy: RetryPolicy = "500ms, 2m,1h".parse().unwrap();
    assert_eq!(policy.max_attempts(), 4);
    assert_eq!(policy.to_string(), "500ms,2m,1h");
    assert_eq!("".parse::<RetryPolicy>().unwrap().max_attempts(), 1);
    assert!("5".parse::<RetryPolicy>().is_err());
    assert!("1s,,2s".parse::<RetryPolicy>().is_err());
    for _ in 0..100 {
        let delay = RetryPolicy::service_default().delay_after(2, None).unwrap();
        assert!(
            delay >= Duration::from_secs(240) && delay <= Duration::from_secs(360),
            "5 min ± 20 %: {delay:?}"
        );
    }
    // Retry-After is a minimum, and only while attempts remain.
    let policy = RetryPolicy::dispatch_default();
    assert_eq!(
        policy.delay_after(1, Some(Duration::from_secs(7))),
        Some(Duration::from_secs(7))
    );
    let longer = policy.delay_after(3, Some(Duration::from_secs(7))).unwrap();
    assert!(
        longer >= Duration::from_secs(24),
        "the schedule's 30 s ± 20 % is longer: {longer:?}"
    );
    assert_eq!(policy.delay_after(4, Some(Duration::from_secs(7))), None);
}

/// Hooks are live data: a destination changed while a delivery waits for its retry takes the
/// retry (same `webhook-id`), a hook added while the dispatcher runs gets a worker, and a
/// removed hook's worker stops.
#[tokio::test]
async fn hooks_change_while_the_dispatcher_runs() {
    use linq_hooks_delivery::Destination;
    use linq_hooks_model::HookParameters;
    let (old, new, late) = (
        "https://old.example/",
        "https://new.example/",
        "https://late.example/",
    );
    let destination =
        |url: &str| Destination::new(HookParameters::new(url, Default::default()).unwrap());
    let outbox = Arc::new(MemoryOutbox::new(3));
    let transport = MemoryTransport::new();
    transport.reply_to(old, Err(Error::connect("refused")));
    // A long first delay: the retry waits until the destination changes and wakes it.
    let config = Config::default().policy(RetryPolicy::new(vec![Duration::from_secs(3600); 3]));
    let dispatcher = Dispatcher::without_hooks(Arc::new(transport.clone()), outbox.clone(), config);
    dispatcher.set(0, destination(old));
    push(&outbox, 0, 3);
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    while transport.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The retry is an hour away; the destination changes; the delivery waits for its time.
    dispatcher.set(0, destination(new));
    dispatcher.set(1, destination(late));
    push(&outbox, 1, 2);
    dispatcher.wake(1);
    while outbox.reports()[1].delivered < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        bodies_to(&transport.requests(), new).is_empty(),
        "the retry is not due yet"
    );
    dispatcher.remove(1);
    push(&outbox, 1, 1);
    dispatcher.wake(1);
    dispatcher.close();
    // Hook 0 still waits for its retry: stop, then check what went where.
    tokio::time::sleep(Duration::from_millis(50)).await;
    dispatcher.shutdown();
    running.await.unwrap();
    let sent = transport.requests();
    assert_eq!(bodies_to(&sent, old), [r#"{"n":0}"#]);
    assert_eq!(bodies_to(&sent, late), [r#"{"n":0}"#, r#"{"n":1}"#]);
    assert_eq!(
        outbox.reports()[1].pending,
        1,
        "a removed hook's worker sends nothing more"
    );
}

#[tokio::test]
async fn a_changed_destination_takes_the_next_attempt_with_the_same_id() {
    use linq_hooks_delivery::Destination;
    use linq_hooks_model::HookParameters;
    let (old, new) = ("https://old.example/", "https://new.example/");
    let destination =
        |url: &str| Destination::new(HookParameters::new(url, Default::default()).unwrap());
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 3);
    let transport = MemoryTransport::new();
    transport.reply_to(old, Err(Error::connect("refused")));
    let config = Config::default().policy(RetryPolicy::new(vec![Duration::from_secs(3600); 3]));
    let dispatcher = Dispatcher::without_hooks(Arc::new(transport.clone()), outbox.clone(), config);
    dispatcher.set(0, destination(old));
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    while transport.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Make the retry due now (as a replay or a retry-now would), at the new destination.
    let head = match outbox.head(0).await.unwrap() {
        linq_hooks_delivery::Head::Ready(d) => d,
        other => panic!("{other:?}"),
    };
    outbox
        .record(
            &head,
            linq_hooks_delivery::Attempt::new(
                std::time::SystemTime::now(),
                Duration::ZERO,
                linq_hooks_delivery::AttemptResult::Status(503),
            ),
            linq_hooks_delivery::Outcome::Retry {
                at: std::time::SystemTime::now(),
            },
        )
        .await
        .unwrap();
    dispatcher.set(0, destination(new));
    dispatcher.close();
    running.await.unwrap();
    let sent = transport.requests();
    let ids: Vec<_> = sent
        .iter()
        .map(|r| {
            (
                r.url().to_string(),
                r.header("webhook-id").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ids[0], (old.to_string(), "msg_0_0".to_string()));
    assert_eq!(
        bodies_to(&sent, new),
        [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]
    );
    assert_eq!(ids[1], (new.to_string(), "msg_0_0".to_string()));
}

#[test]
fn an_outbox_made_for_fewer_hooks_is_refused_when_the_dispatcher_is_built() {
    let three = hooks(&[
        "https://a.example/",
        "https://b.example/",
        "https://c.example/",
    ]);
    let transport = Arc::new(MemoryTransport::new());
    let err = Dispatcher::new(
        three.clone(),
        transport.clone(),
        Arc::new(MemoryOutbox::new(2)),
        Config::default(),
    )
    .unwrap_err();
    assert!(err.is_hook_not_accepted());
    assert_eq!(err.hook(), Some(2));
    assert!(err.to_string().contains("hook 2"), "{err}");

    let outbox = Arc::new(MemoryOutbox::new(3));
    assert!(Dispatcher::new(three, transport, outbox.clone(), Config::default()).is_ok());
    // Any hook id can be pushed to: nothing is indexed by position.
    push(&outbox, 1_000_000, 1);
    assert_eq!(outbox.report(1_000_000).pending, 1);
    assert_eq!(outbox.reports().len(), 3);
}

#[test]
fn run_without_timers_panics_once_saying_what_is_missing() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 1);
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/"]),
        Arc::new(MemoryTransport::new()),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    dispatcher.close();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(dispatcher.run());
    }))
    .unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("needs a Tokio runtime with time enabled"),
        "{message}"
    );
    assert_eq!(outbox.pending(), 1);
    assert_eq!(dispatcher.health().worker_restarts, 0);
}

/// Panics on its first `panics` calls, then answers 200.
struct Panicking {
    panics: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl Transport for Panicking {
    async fn send(&self, _: Request) -> Result<Response, Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        assert!(
            call >= self.panics,
            "the test transport panics on call {call}"
        );
        Ok(Response::new(200))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_panics_is_restarted_after_a_back_off_and_delivers() {
    let outbox = Arc::new(MemoryOutbox::new(2));
    push(&outbox, 0, 2);
    push(&outbox, 1, 1);
    let transport = Arc::new(Panicking {
        panics: 1,
        calls: AtomicUsize::new(0),
    });
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/", "https://b.example/"]),
        transport.clone(),
        outbox.clone(),
        Config::default().concurrency(1),
    )
    .unwrap();
    dispatcher.close();
    dispatcher.run().await;

    // The attempt that panicked was not recorded: its delivery was attempted again.
    let health = dispatcher.health();
    assert_eq!(health.worker_restarts, 1);
    assert!(health.is_healthy(), "{health:?}");
    assert_eq!(outbox.pending(), 0);
    assert_eq!(outbox.settled(), 3);
    assert_eq!(transport.calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_in_back_off_is_reported_failing() {
    let outbox = Arc::new(MemoryOutbox::new(2));
    push(&outbox, 1, 1);
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/", "https://b.example/"]),
        Arc::new(Panicking {
            panics: usize::MAX,
            calls: AtomicUsize::new(0),
        }),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    let health = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let health = dispatcher.health();
            if health.worker_restarts > 0 {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the worker panics");
    assert_eq!(health.failing, [1]);
    assert!(!health.is_healthy());
    dispatcher.shutdown();
    running.await.unwrap();
    assert_eq!(outbox.pending(), 1);
}

#[tokio::test]
async fn a_push_into_a_running_dispatcher_is_delivered_without_a_wake() {
    let outbox = Arc::new(MemoryOutbox::new(1));
    let transport = Arc::new(MemoryTransport::new());
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/"]),
        transport.clone(),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    let settled = |n| {
        let outbox = outbox.clone();
        tokio::time::timeout(Duration::from_secs(10), async move {
            while outbox.settled() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // The first delivery is sent; then the worker finds its queue empty and waits.
    push(&outbox, 0, 1);
    settled(1).await.expect("the first delivery is sent");
    tokio::task::yield_now().await;
    // No `wake`: the push itself tells the worker.
    outbox.push(NewDelivery {
        hook: 0,
        webhook_id: "msg_late".into(),
        body: "{}".into(),
    });
    settled(2).await.expect("a push wakes the worker");
    assert_eq!(
        transport.requests()[1].header("webhook-id"),
        Some("msg_late")
    );
    dispatcher.close();
    running.await.unwrap();
}

/// Answers the first request to `old` only when told to, with the given error; every other
/// request 200. Records the URLs it was asked for, in order.
struct HeldFirst {
    release: tokio::sync::Notify,
    held: tokio::sync::Notify,
    first: Mutex<bool>,
    urls: Mutex<Vec<String>>,
}

#[async_trait]
impl Transport for HeldFirst {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        self.urls.lock().unwrap().push(request.url().to_string());
        let hold = std::mem::replace(&mut *self.first.lock().unwrap(), false);
        if hold {
            self.held.notify_one();
            self.release.notified().await;
            return Ok(Response::new(404));
        }
        Ok(Response::new(200))
    }
}

/// The hook is pointed elsewhere while an attempt to the old URL is in flight; the old URL then
/// answers 404 (which would fail the delivery for good): that answer is not held against the
/// new URL, which gets the delivery at once, under its own id.
#[tokio::test]
async fn an_attempt_in_flight_when_the_hook_moves_does_not_settle_the_delivery() {
    use linq_hooks_delivery::Destination;
    use linq_hooks_model::HookParameters;
    let (old, new) = ("https://old.example/", "https://new.example/");
    let destination =
        |url: &str| Destination::new(HookParameters::new(url, Default::default()).unwrap());
    let outbox = Arc::new(MemoryOutbox::new(1));
    push(&outbox, 0, 2);
    let transport = Arc::new(HeldFirst {
        release: tokio::sync::Notify::new(),
        held: tokio::sync::Notify::new(),
        first: Mutex::new(true),
        urls: Mutex::new(Vec::new()),
    });
    let config = Config::default().policy(RetryPolicy::new(vec![Duration::from_secs(3600); 3]));
    let dispatcher = Dispatcher::without_hooks(transport.clone(), outbox.clone(), config);
    dispatcher.set(0, destination(old));
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    transport.held.notified().await;
    dispatcher.set(0, destination(new));
    transport.release.notify_one();
    dispatcher.close();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("both delivered at once, not in an hour")
        .unwrap();
    assert_eq!(*transport.urls.lock().unwrap(), [old, new, new]);
    let report = &outbox.reports()[0];
    assert_eq!((report.delivered, report.failed.len()), (2, 0));
}

/// An outbox whose reads fail while `broken` is set (a store that cannot be read), counting
/// them; otherwise the memory outbox.
struct Unreadable {
    inner: MemoryOutbox,
    broken: std::sync::atomic::AtomicBool,
    reads: AtomicUsize,
}

#[async_trait]
impl Outbox for Unreadable {
    async fn head(
        &self,
        hook: u64,
    ) -> Result<linq_hooks_delivery::Head, linq_hooks_delivery::OutboxError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Err(linq_hooks_delivery::OutboxError::new(
                "the store file is damaged",
            ));
        }
        self.inner.head(hook).await
    }

    fn accepts(&self, hook: u64) -> bool {
        self.inner.accepts(hook)
    }

    fn subscribe(&self, waker: linq_hooks_delivery::HookWaker) {
        self.inner.subscribe(waker);
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

/// The field fault behind a damaged store's spin: a worker that cannot read its outbox asks
/// again after 1 s, doubling up to 60 s, and says so in `health`; once the outbox reads again,
/// the health clears and delivery resumes. Time is Tokio's paused clock: ten minutes of it pass
/// at once, and the reads are counted (about 16 with the back-off; 600 at one a second).
#[tokio::test(start_paused = true)]
async fn a_worker_that_cannot_read_its_outbox_backs_off_and_health_says_so() {
    let outbox = Arc::new(Unreadable {
        inner: MemoryOutbox::new(1),
        broken: true.into(),
        reads: AtomicUsize::new(0),
    });
    push(&outbox.inner, 0, 1);
    let transport = Arc::new(MemoryTransport::new());
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/"]),
        transport.clone(),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    tokio::time::sleep(Duration::from_secs(600)).await;
    let reads = outbox.reads.load(Ordering::SeqCst);
    assert!((10..=20).contains(&reads), "{reads} reads in 10 minutes");
    let health = dispatcher.health();
    assert!(!health.is_healthy());
    assert_eq!(health.outbox_failing.len(), 1, "{health:?}");
    assert_eq!(health.outbox_failing[0].0, 0);
    assert!(health.outbox_failing[0].1.contains("damaged"), "{health:?}");

    outbox.broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(
        dispatcher.health().is_healthy(),
        "{:?}",
        dispatcher.health()
    );
    assert_eq!(
        transport.requests().len(),
        1,
        "delivered once it reads again"
    );
    dispatcher.shutdown();
    running.await.unwrap();
}

/// An outbox that reads ahead and never finds anything after a delivery (as a store whose
/// snapshot did not yet show a delivery committed later with a smaller id): only its head
/// shows new deliveries.
struct NothingAfter {
    inner: MemoryOutbox,
}

#[async_trait]
impl Outbox for NothingAfter {
    async fn head(
        &self,
        hook: u64,
    ) -> Result<linq_hooks_delivery::Head, linq_hooks_delivery::OutboxError> {
        self.inner.head(hook).await
    }

    fn subscribe(&self, waker: linq_hooks_delivery::HookWaker) {
        self.inner.subscribe(waker);
    }

    async fn after(
        &self,
        _hook: u64,
        _after: u64,
        _limit: usize,
    ) -> Result<Option<Vec<linq_hooks_delivery::Delivery>>, linq_hooks_delivery::OutboxError> {
        Ok(Some(Vec::new()))
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

/// A wake through the outbox's `HookWaker` makes the worker read its head, as
/// `Dispatcher::wake` does: a worker that only read ahead again would not see a delivery that
/// became visible behind the one it last sent (found with the PostgreSQL store and several
/// processes ingesting at once: such deliveries stayed pending).
#[tokio::test]
async fn a_wake_through_the_outbox_reads_the_head_not_only_what_follows() {
    let outbox = Arc::new(NothingAfter {
        inner: MemoryOutbox::new(1),
    });
    let transport = Arc::new(MemoryTransport::new());
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/"]),
        transport.clone(),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    push(&outbox.inner, 0, 1);
    let delivered = |n: usize| {
        let transport = transport.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while transport.requests().len() < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .is_ok()
        }
    };
    assert!(delivered(1).await, "the first delivery goes");
    // The worker has read ahead after it (nothing); the push wakes it through its waker.
    tokio::time::sleep(Duration::from_millis(100)).await;
    outbox.inner.push(NewDelivery {
        hook: 0,
        webhook_id: "msg_0_1".into(),
        body: r#"{"n":1}"#.into(),
    });
    assert!(delivered(2).await, "the second delivery waits for nothing");
    dispatcher.shutdown();
    running.await.unwrap();
}

/// An outbox that cannot be read, then can again and says so through its `HookWaker` (as the
/// PostgreSQL store does once its connection is back): the worker, backing off for up to a
/// minute, reads at once instead of at the end of its back-off. Tokio's paused clock: the
/// back-off has grown to 60 s; one second after the wake, the delivery is sent.
#[tokio::test(start_paused = true)]
async fn a_worker_backing_off_reads_again_at_once_when_the_outbox_wakes_it() {
    struct Waking {
        unreadable: Unreadable,
        waker: Mutex<Option<linq_hooks_delivery::HookWaker>>,
    }
    #[async_trait]
    impl Outbox for Waking {
        async fn head(
            &self,
            hook: u64,
        ) -> Result<linq_hooks_delivery::Head, linq_hooks_delivery::OutboxError> {
            self.unreadable.head(hook).await
        }
        fn accepts(&self, hook: u64) -> bool {
            self.unreadable.accepts(hook)
        }
        fn subscribe(&self, waker: linq_hooks_delivery::HookWaker) {
            *self.waker.lock().unwrap() = Some(waker.clone());
            self.unreadable.subscribe(waker);
        }
        async fn record(
            &self,
            delivery: &linq_hooks_delivery::Delivery,
            attempt: linq_hooks_delivery::Attempt,
            outcome: linq_hooks_delivery::Outcome,
        ) -> Result<(), linq_hooks_delivery::OutboxError> {
            self.unreadable.record(delivery, attempt, outcome).await
        }
    }
    let outbox = Arc::new(Waking {
        unreadable: Unreadable {
            inner: MemoryOutbox::new(1),
            broken: true.into(),
            reads: AtomicUsize::new(0),
        },
        waker: Mutex::new(None),
    });
    push(&outbox.unreadable.inner, 0, 1);
    let transport = Arc::new(MemoryTransport::new());
    let dispatcher = Dispatcher::new(
        hooks(&["https://a.example/"]),
        transport.clone(),
        outbox.clone(),
        Config::default(),
    )
    .unwrap();
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    // 1 + 2 + 4 + 8 + 16 + 32 s of back-off, then into the 60 s one.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert!(transport.requests().is_empty());

    outbox.unreadable.broken.store(false, Ordering::SeqCst);
    let waker = outbox.waker.lock().unwrap().clone().expect("subscribed");
    waker.wake(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        transport.requests().len(),
        1,
        "delivered once the outbox said it reads again"
    );
    dispatcher.shutdown();
    running.await.unwrap();
}
