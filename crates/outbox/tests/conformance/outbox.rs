//! The outbox: append, head, record, and the dispatcher on the store.

use super::*;

pub(crate) async fn a_store_is_healthy_and_says_where_it_is(store: Store) {
    assert_eq!(store.health(), Ok(()));
    let location = store.location();
    assert!(!location.is_empty());
    // A PostgreSQL URL is shown without its password (the test server's has none: nothing to
    // check but that it stays a URL).
    assert!(!location.contains(":secret@"), "{location}");
    // Handed out once, if at all.
    let _first = store.workflow_changes();
    assert!(store.workflow_changes().is_none(), "a second receiver");
    assert!(store.workflows().await.unwrap().is_empty());
    assert_eq!(store.pending().await.unwrap(), 0);
}

pub(crate) async fn each_hook_is_a_queue_in_order(store: Store) {
    let [h0, h1] = register(&store, "w", 2).await[..] else {
        unreachable!()
    };
    let accepted = store
        .append(vec![
            event(&[h0, h1], "a"),
            event(&[], "none"),
            event(&[h1], "b"),
        ])
        .await
        .unwrap();
    assert_eq!(accepted.len(), 3);
    assert_eq!(
        (accepted[1].id, accepted[1].deliveries.len()),
        (None, 0),
        "no hook fires: nothing stored"
    );
    let (a, b) = (accepted[0].id.unwrap(), accepted[2].id.unwrap());
    assert!(a < b, "event ids grow");
    let a_ids: Vec<DeliveryId> = accepted[0].deliveries.iter().map(|d| d.id).collect();
    assert!(a_ids[0] < a_ids[1] && a_ids[1] < accepted[2].deliveries[0].id);
    assert_eq!(
        accepted[0]
            .deliveries
            .iter()
            .map(|d| (d.hook, d.webhook_id.clone()))
            .collect::<Vec<_>>(),
        [(h0, format!("msg_a_{h0}")), (h1, format!("msg_a_{h1}"))],
        "in hook order, with their webhook-ids"
    );
    assert_eq!(store.pending().await.unwrap(), 3);

    let first = head(&store, h1).await;
    assert_eq!(
        (
            first.id,
            first.webhook_id.as_str(),
            first.body.as_ref(),
            first.attempts,
            first.next_attempt_at
        ),
        (
            a_ids[1],
            format!("msg_a_{h1}").as_str(),
            br#"{"tag":"a"}"#.as_ref(),
            0,
            None
        )
    );
    assert_eq!(
        head(&store, h1).await,
        first,
        "the head stays until recorded"
    );
    deliver(&store, &first).await;
    assert_eq!(head(&store, h1).await.webhook_id, format!("msg_b_{h1}"));
    assert_eq!(head(&store, h0).await.webhook_id, format!("msg_a_{h0}"));
    assert_eq!(store.pending().await.unwrap(), 2);
    let per_hook: Vec<u64> = store
        .workflow("w")
        .await
        .unwrap()
        .unwrap()
        .hooks
        .iter()
        .map(|h| h.status.pending)
        .collect();
    assert_eq!(per_hook, [1, 1]);
    assert_eq!(store.hook(h1).await.unwrap().unwrap().status.pending, 1);
    let (info, attempts) = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(
        (info.state, info.hook, info.event, info.attempts),
        (DeliveryState::Delivered, h1, a, 1)
    );
    assert_eq!(info.last_status, Some(200));
    assert!(info.finished_at.is_some() && info.next_attempt_at.is_none());
    assert_eq!(attempts.len(), 1);

    // Nothing more for h1 once delivered; a hook never given a delivery is empty too.
    deliver(&store, &head(&store, h1).await).await;
    assert_eq!(store.head(h1).await.unwrap(), Head::Empty);
    let [unused] = register(&store, "v", 1).await[..] else {
        unreachable!()
    };
    assert_eq!(store.head(unused).await.unwrap(), Head::Empty);
}

pub(crate) async fn outcomes_are_recorded_with_their_attempts(store: Store) {
    let [h] = register(&store, "w", 1).await[..] else {
        unreachable!()
    };
    append(&store, &[h], &["a", "b"]).await;

    let a = head(&store, h).await;
    retry_later(&store, &a, 503).await;
    let a = head(&store, h).await;
    assert_eq!(a.attempts, 1);
    assert!(!a.is_due(SystemTime::now()), "the retry is an hour away");
    assert!(a.next_attempt_at.unwrap() > SystemTime::now() + Duration::from_secs(3500));
    let (info, _) = store.get(a.id).await.unwrap().unwrap();
    assert_eq!(
        (info.state, info.attempts, info.last_status),
        (DeliveryState::Pending, 1, Some(503))
    );
    assert!(info.next_attempt_at.is_some() && info.finished_at.is_none());
    let failed = Attempt::new(
        SystemTime::now(),
        Duration::from_millis(3),
        AttemptResult::Error("connect error: refused".into()),
    );
    store
        .record(
            &a,
            failed,
            Outcome::Failed {
                reason: "gave up".into(),
            },
        )
        .await
        .unwrap();
    store.flush(a.hook).await.unwrap();

    let (info, attempts) = store.get(a.id).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Failed);
    assert_eq!(info.hook, h);
    assert_eq!(info.failure.as_deref(), Some("gave up"));
    assert_eq!(info.attempts, 2);
    assert_eq!(info.last_status, None, "the last attempt got no answer");
    assert!(info.finished_at.is_some() && info.next_attempt_at.is_none());
    assert!(info.created_at <= info.finished_at.unwrap());
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, Some(503));
    assert_eq!(attempts[0].error, None);
    assert_eq!(attempts[0].latency, Duration::from_millis(3));
    assert_eq!(attempts[1].status, None);
    assert_eq!(attempts[1].error.as_deref(), Some("connect error: refused"));
    assert!(attempts[0].at <= attempts[1].at);
    assert_eq!(
        head(&store, h).await.webhook_id,
        format!("msg_b_{h}"),
        "the next one goes on"
    );
    let status = store.hook(h).await.unwrap().unwrap().status;
    assert_eq!(
        (status.consecutive_failures, status.failed, status.pending),
        (2, 1, 1)
    );
    assert!(store.get(a.id + 1_000_000).await.unwrap().is_none());
}

pub(crate) async fn an_attempt_keeps_the_start_of_its_answer(store: Store) {
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    append(&store, &[hook], &["x"]).await;
    let delivery = head(&store, hook).await;
    let long = "x".repeat(3000);
    let answered = attempt(500).with_response_body(long.as_bytes(), false);
    let at = SystemTime::now() + Duration::from_secs(3600);
    store
        .record(&delivery, answered, Outcome::Retry { at })
        .await
        .unwrap();
    store.flush(delivery.hook).await.unwrap();
    let cut = attempt(502).with_response_body("é".repeat(10).as_bytes(), true);
    store
        .record(&delivery, cut, Outcome::Retry { at })
        .await
        .unwrap();
    store.flush(delivery.hook).await.unwrap();
    store
        .record(
            &delivery,
            attempt(401).with_response_body(b"bad signature", false),
            Outcome::Failed {
                reason: "status 401".into(),
            },
        )
        .await
        .unwrap();
    store.flush(delivery.hook).await.unwrap();
    let (_, attempts) = store.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0].response_body.as_deref(), Some(&long[..1024]));
    assert!(attempts[0].response_body_truncated);
    assert_eq!(
        attempts[1].response_body.as_deref(),
        Some("é".repeat(10).as_str())
    );
    assert!(attempts[1].response_body_truncated, "as the caller said");
    assert_eq!(attempts[2].response_body.as_deref(), Some("bad signature"));
    assert!(!attempts[2].response_body_truncated);
    assert_eq!(
        attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(500), Some(502), Some(401)]
    );
}

pub(crate) async fn gone_disables_the_hook_until_enabled_and_nothing_is_dropped(store: Store) {
    let [h0, h1] = register(&store, "w", 2).await[..] else {
        unreachable!()
    };
    append(&store, &[h0, h1], &["a"]).await;
    append(&store, &[h0], &["b"]).await;
    let a = head(&store, h0).await;
    record(&store, &a, 410, Outcome::HookGone).await;
    assert_eq!(store.head(h0).await.unwrap(), Head::Disabled);
    let hooks = store.workflow("w").await.unwrap().unwrap().hooks;
    assert!(!hooks[0].status.enabled && hooks[0].status.disabled_at.is_some());
    assert_eq!(hooks[0].status.pending, 2, "its deliveries wait");
    assert!(hooks[1].status.enabled && hooks[1].status.disabled_at.is_none());
    assert_eq!(store.disabled_hooks().await.unwrap(), 1);
    assert_eq!(store.pending().await.unwrap(), 3);
    let (info, attempts) = store.get(a.id).await.unwrap().unwrap();
    assert_eq!((info.state, attempts.len()), (DeliveryState::Pending, 1));
    assert_eq!(attempts[0].status, Some(410));
    // The other hook goes on.
    assert_eq!(head(&store, h1).await.webhook_id, format!("msg_a_{h1}"));

    assert_eq!(store.enable(h0).await.unwrap(), Some(true));
    assert_eq!(
        store.enable(h0).await.unwrap(),
        Some(false),
        "already enabled"
    );
    assert_eq!(store.enable(h1 + 1000).await.unwrap(), None, "no such hook");
    assert_eq!(store.disabled_hooks().await.unwrap(), 0);
    let status = store.hook(h0).await.unwrap().unwrap().status;
    assert!(status.enabled && status.disabled_at.is_none());
    let again = head(&store, h0).await;
    assert_eq!(
        (again.id, again.attempts, again.next_attempt_at),
        (a.id, 0, None),
        "the same delivery, on a fresh schedule"
    );
    let (info, _) = store.get(a.id).await.unwrap().unwrap();
    assert_eq!(
        info.attempts, 1,
        "every attempt counted (the head counts the round's)"
    );
    deliver(&store, &again).await;
    assert_eq!(head(&store, h0).await.webhook_id, format!("msg_b_{h0}"));
}

/// Eight hooks, 60 events each firing a different subset, the heads taken in turn with some
/// attempts failing for a retry (made due again by `retry_hook`): each hook gets its own
/// deliveries, all of them, in the order they were appended. Outcomes are recorded without
/// waiting for each to be stored (as the dispatcher does); the head reflects them.
pub(crate) async fn order_holds_per_hook_over_many_deliveries_and_hooks(store: Store) {
    let hooks = register(&store, "w", 8).await;
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); hooks.len()];
    for chunk in 0..3 {
        let events = (0..20)
            .map(|i| {
                let n = chunk * 20 + i;
                let fired: Vec<HookId> = hooks
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| (n + k) % 3 != 0)
                    .map(|(_, &h)| h)
                    .collect();
                for (k, &h) in hooks.iter().enumerate() {
                    if fired.contains(&h) {
                        expected[k].push(format!("msg_{n}_{h}"));
                    }
                }
                event(&fired, &n.to_string())
            })
            .collect();
        store.append(events).await.unwrap();
    }
    let total: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(store.pending().await.unwrap(), total as u64);

    let mut sent: Vec<Vec<String>> = vec![Vec::new(); hooks.len()];
    let mut round = 0;
    loop {
        let mut any = false;
        for (k, &h) in hooks.iter().enumerate() {
            match store.head(h).await.unwrap() {
                Head::Ready(delivery) => {
                    any = true;
                    assert_eq!(delivery.hook, h);
                    if (round + k) % 7 == 0 {
                        // Tried again later, then made due now: it stays the head.
                        let at = SystemTime::now() + Duration::from_secs(3600);
                        store
                            .record(&delivery, attempt(503), Outcome::Retry { at })
                            .await
                            .unwrap();
                        store.flush(h).await.unwrap();
                        assert!(matches!(
                            store.retry_hook(h).await.unwrap(),
                            HookRetry::Woken { head: Some(id), .. } if id == delivery.id
                        ));
                    } else {
                        store
                            .record(&delivery, attempt(200), Outcome::Delivered)
                            .await
                            .unwrap();
                        sent[k].push(delivery.webhook_id);
                    }
                }
                Head::Empty => {}
                other => panic!("hook {h}: {other:?}"),
            }
        }
        round += 1;
        assert!(round < 10 * total, "the queues drain");
        if !any {
            break;
        }
    }
    for &h in &hooks {
        store.flush(h).await.unwrap();
    }
    assert_eq!(sent, expected, "each hook's deliveries, in order");
    assert_eq!(store.pending().await.unwrap(), 0);
    assert_eq!(
        store.count(DeliveryState::Delivered).await.unwrap(),
        total as u64
    );
}

pub(crate) async fn concurrent_appends_all_land(store: Store) {
    let [h] = register(&store, "w", 1).await[..] else {
        unreachable!()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..20 {
                let accepted = store
                    .append(vec![event(&[h], &format!("{task}-{i}"))])
                    .await
                    .unwrap();
                ids.push(accepted[0].deliveries[0].id);
            }
            ids
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let ids = done.unwrap();
        assert!(ids.is_sorted(), "one task's appends in order: {ids:?}");
        all.extend(ids);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 320, "each its own id");
    assert_eq!(store.pending().await.unwrap(), 320);
    assert_eq!(store.hook(h).await.unwrap().unwrap().status.pending, 320);
    // The queue is in id order.
    let mut queue = Vec::new();
    for _ in 0..320 {
        let delivery = head(&store, h).await;
        queue.push(delivery.id);
        store
            .record(&delivery, attempt(200), Outcome::Delivered)
            .await
            .unwrap();
    }
    store.flush(h).await.unwrap();
    assert_eq!(queue, all);
}

/// An ingest under an idempotency key is stored once: a repeat with the same fingerprint gets
/// the first answer, another fingerprint is refused, both storing nothing; a key whose window
/// has ended is a new ingest.
pub(crate) async fn an_idempotency_key_stores_an_ingest_once(store: Store) {
    let key = |key: &str, fingerprint: &str, window: Duration| IdempotencyKey {
        key: key.into(),
        fingerprint: fingerprint.into(),
        window,
    };
    let day = Duration::from_secs(24 * 3600);
    let hooks = register(&store, "w", 2).await;
    let Appended::Stored(first) = store
        .append_once(key("w\u{0}k1", "f1", day), vec![event(&hooks, "a")])
        .await
        .unwrap()
    else {
        panic!("stored the first time")
    };
    assert_eq!(first[0].deliveries.len(), 2);
    let again = store
        .append_once(key("w\u{0}k1", "f1", day), vec![event(&hooks, "a")])
        .await
        .unwrap();
    assert_eq!(again, Appended::Repeated(first.clone()));
    let other = store
        .append_once(key("w\u{0}k1", "f2", day), vec![event(&hooks, "b")])
        .await
        .unwrap();
    assert_eq!(other, Appended::KeyReused);
    assert_eq!(store.pending().await.unwrap(), 2, "stored once");
    // Another key is another ingest.
    let second = store
        .append_once(key("v\u{0}k1", "f1", day), vec![event(&hooks[..1], "c")])
        .await
        .unwrap();
    assert!(matches!(second, Appended::Stored(_)), "{second:?}");
    assert_eq!(store.pending().await.unwrap(), 3);
    // A key whose window has ended is a new ingest.
    for _ in 0..2 {
        let stored = store
            .append_once(
                key("w\u{0}k2", "f", Duration::ZERO),
                vec![event(&hooks, "d")],
            )
            .await
            .unwrap();
        assert!(matches!(stored, Appended::Stored(_)), "{stored:?}");
    }
    assert_eq!(store.pending().await.unwrap(), 7);
}

/// A dispatcher delivering from the store (as `Arc<dyn Outbox>`) to two hooks, the second
/// answering 500 once: everything is delivered, the retry with the same `webhook-id`.
pub(crate) async fn the_dispatcher_delivers_from_the_store(store: Store) {
    let ids = register(&store, "w", 2).await;
    store
        .append((0..10).map(|i| event(&ids, &i.to_string())).collect())
        .await
        .unwrap();
    let transport = MemoryTransport::new();
    transport.reply_to("https://b.example/", Ok(Response::new(500)));
    let config = Config::default().policy("10ms".parse().unwrap());
    let outbox: Arc<dyn Outbox> = store.clone();
    let dispatcher = Dispatcher::without_hooks(Arc::new(transport.clone()), outbox, config);
    for (id, url) in ids.iter().zip(["https://a.example/", "https://b.example/"]) {
        let parameters = HookParameters::new(url, Default::default()).unwrap();
        dispatcher.set(*id, Destination::new(parameters));
    }
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    until(30, "20 deliveries delivered", || {
        let store = store.clone();
        async move { store.count(DeliveryState::Delivered).await.unwrap() == 20 }
    })
    .await;
    dispatcher.shutdown();
    running.abort();

    assert_eq!(store.pending().await.unwrap(), 0);
    let sent = transport.requests();
    let to_b: Vec<_> = sent
        .iter()
        .filter(|r| r.url() == "https://b.example/")
        .collect();
    assert_eq!(to_b.len(), 11);
    assert_eq!(
        to_b[0].header("webhook-id"),
        to_b[1].header("webhook-id"),
        "a retry keeps its id"
    );
    let (info, attempts) = store
        .get(store.list(DeliveryState::Delivered, None, 1).await.unwrap()[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.attempts as usize, attempts.len());
}

/// Per-hook order holds through a retry in the middle of a run of deliveries (which a store may
/// read ahead): the delivery that must be tried again goes again before any that follows it,
/// and every outcome is on record once the dispatcher stops.
pub(crate) async fn order_holds_through_a_retry_amid_a_read_ahead(store: Store) {
    let h = register(&store, "w", 1).await[0];
    let n = 200;
    store
        .append((0..n).map(|i| event(&[h], &i.to_string())).collect())
        .await
        .unwrap();
    let url = "https://a.example/";
    let transport = MemoryTransport::new();
    // Deliveries 0..=99 succeed; the 101st request (delivery 100) fails once.
    for _ in 0..100 {
        transport.reply_to(url, Ok(Response::new(200)));
    }
    transport.reply_to(url, Ok(Response::new(503)));
    let config = Config::default().policy("10ms".parse().unwrap());
    let outbox: Arc<dyn Outbox> = store.clone();
    let dispatcher = Dispatcher::without_hooks(Arc::new(transport.clone()), outbox, config);
    let parameters = HookParameters::new(url, Default::default()).unwrap();
    dispatcher.set(h, Destination::new(parameters));
    dispatcher.close();
    tokio::time::timeout(Duration::from_secs(60), dispatcher.run())
        .await
        .expect("drained within 60 s");

    let sent: Vec<String> = transport
        .requests()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = (0..n).map(|i| format!("msg_{i}_{h}")).collect();
    expected.insert(100, format!("msg_100_{h}"));
    assert_eq!(
        sent, expected,
        "in order, the failed one again before the next"
    );
    // Every outcome on record once `run` returned (flushed as the worker stopped).
    assert_eq!(store.pending().await.unwrap(), 0);
    assert_eq!(
        store.count(DeliveryState::Delivered).await.unwrap(),
        n as u64
    );
}

/// What a store reads ahead after a delivered head (if it reads ahead: `None` means "ask the
/// head") is what follows in that hook's queue, in order, at most `limit`, whether or not the
/// outcome is stored yet; never anything of a disabled hook.
pub(crate) async fn reading_ahead_gives_the_rest_of_the_queue_in_order(store: Store) {
    let ids = register(&store, "w", 2).await;
    let (h, other) = (ids[0], ids[1]);
    let queue = append(&store, &[h], &["0", "1", "2", "3", "4"])
        .await
        .concat();
    append(&store, &[other], &["x"]).await;
    let first = head(&store, h).await;
    assert_eq!(first.id, queue[0]);
    // Recorded, not flushed: what follows does not depend on it.
    store
        .record(&first, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let ahead = |after: DeliveryId, limit: usize| {
        let store = store.clone();
        async move { store.after(h, after, limit).await.unwrap() }
    };
    let ids_of = |list: &[Delivery]| list.iter().map(|d| d.id).collect::<Vec<_>>();
    let second = match ahead(first.id, 2).await {
        Some(two) => {
            assert_eq!(ids_of(&two), queue[1..3]);
            // Each is sent and recorded before the worker reads on, as the dispatcher does.
            for delivery in &two {
                record(&store, delivery, 200, Outcome::Delivered).await;
            }
            let rest = ahead(queue[2], 10).await.unwrap();
            assert_eq!(
                ids_of(&rest),
                queue[3..],
                "the rest, and nothing of the other hook"
            );
            for delivery in &rest {
                record(&store, delivery, 200, Outcome::Delivered).await;
            }
            assert_eq!(
                ahead(queue[4], 10).await.as_deref().map(ids_of),
                Some(vec![]),
                "nothing follows"
            );
            let more = append(&store, &[h], &["5"]).await.concat();
            let next = head(&store, h).await;
            assert_eq!(next.id, more[0], "the head reflects the outcomes");
            next
        }
        None => {
            let next = head(&store, h).await;
            assert_eq!(next.id, queue[1], "the head reflects the outcome");
            next
        }
    };
    store.flush(h).await.unwrap();

    // A disabled hook: nothing is read ahead, the head says why.
    record(&store, &second, 410, Outcome::HookGone).await;
    let after_gone = store.after(h, second.id, 10).await.unwrap();
    assert!(
        after_gone.as_ref().is_none_or(Vec::is_empty),
        "read ahead past a 410: {after_gone:?}"
    );
    assert_eq!(store.head(h).await.unwrap(), Head::Disabled);
}

/// Everything a restart must find: the registry (hook ids, order, secrets and their rotation,
/// removed hooks), each delivery's state and attempts, hook states (disabled, failures), the
/// idempotency keys; and ids go on after the old ones. Run by `reopened::*`, not by
/// `conformance!`: it needs the store opened again.
pub(crate) async fn what_is_committed_survives_reopening(store: Store, reopen: Reopen) {
    let (first, second) = (secret(), secret());
    let created = store
        .put_workflow("w".into(), distinct_hooks(3), first.clone())
        .await
        .unwrap();
    let ids: Vec<HookId> = created.workflow.hooks.iter().map(|h| h.id).collect();
    let v = register(&store, "v", 1).await;
    let accepted = store
        .append(vec![event(&ids, "a"), event(&ids, "b")])
        .await
        .unwrap();
    let key = IdempotencyKey {
        key: "v\u{0}k".into(),
        fingerprint: "f".into(),
        window: Duration::from_secs(24 * 3600),
    };
    let Appended::Stored(keyed) = store
        .append_once(key.clone(), vec![event(&v, "k")])
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    // Hook 0: `a` delivered, then a 410 on `b`. Hook 1: `a` failed, `b` to be tried in an
    // hour. Hook 2: removed, its two deliveries cancelled.
    let delivered = head(&store, ids[0]).await;
    deliver(&store, &delivered).await;
    let gone = head(&store, ids[0]).await;
    record(&store, &gone, 410, Outcome::HookGone).await;
    let failed = fail_head(&store, ids[1], 400).await;
    let waiting = head(&store, ids[1]).await;
    retry_later(&store, &waiting, 503).await;
    let change = store
        .put_workflow("w".into(), distinct_hooks(2), secret())
        .await
        .unwrap();
    assert_eq!(change.removed, [ids[2]]);
    store
        .rotate_secret("w".into(), second.clone(), Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    let before = store.workflow("w").await.unwrap().unwrap();
    let last_event = accepted[1].id.unwrap();
    let last_delivery = keyed[0].deliveries[0].id;
    store.close().await;
    drop(store);

    let store = reopen().await;
    let names: Vec<String> = store
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(names, ["v", "w"]);
    let w = store.workflow("w").await.unwrap().unwrap();
    assert_eq!(
        (w.created_at, w.updated_at),
        (before.created_at, before.updated_at)
    );
    assert_eq!(w.hooks.iter().map(|h| h.id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(w.hooks[1].hook, distinct_hooks(2)[1]);
    assert_eq!(w.secrets.current.expose_whsec(), second.expose_whsec());
    let previous: Vec<(String, SystemTime)> = w
        .secrets
        .previous
        .iter()
        .map(|(s, until)| (s.expose_whsec(), *until))
        .collect();
    let kept: Vec<(String, SystemTime)> = before
        .secrets
        .previous
        .iter()
        .map(|(s, until)| (s.expose_whsec(), *until))
        .collect();
    assert_eq!(previous, kept);
    assert_eq!(previous[0].0, first.expose_whsec());

    // Hook 0: disabled, its delivery waiting.
    let status = &w.hooks[0].status;
    assert!(!status.enabled && status.disabled_at.is_some());
    assert_eq!(status.pending, 1);
    assert_eq!(store.head(ids[0]).await.unwrap(), Head::Disabled);
    assert_eq!(store.disabled_hooks().await.unwrap(), 1);
    let (info, attempts) = store.get(delivered.id).await.unwrap().unwrap();
    assert_eq!((info.state, attempts.len()), (DeliveryState::Delivered, 1));
    assert_eq!(attempts[0].status, Some(200));
    // Hook 1: one failed, one waiting for its retry.
    let status = &w.hooks[1].status;
    assert_eq!(
        (status.pending, status.failed, status.consecutive_failures),
        (1, 1, 2)
    );
    assert_eq!(status.last_status, Some(503));
    let next = head(&store, ids[1]).await;
    assert_eq!((next.id, next.attempts), (waiting.id, 1));
    assert!(next.next_attempt_at.is_some());
    assert_eq!(
        store.get(failed).await.unwrap().unwrap().0.state,
        DeliveryState::Failed
    );
    // Hook 2: removed, still named.
    assert!(store.hook(ids[2]).await.unwrap().is_none());
    assert_eq!(
        store.workflow_of(ids[2]).await.unwrap().as_deref(),
        Some("w")
    );
    assert_eq!(store.head(ids[2]).await.unwrap(), Head::Empty);
    let counts: Vec<u64> = {
        let mut out = Vec::new();
        for state in DeliveryState::ALL {
            out.push(store.count(state).await.unwrap());
        }
        out
    };
    assert_eq!(counts, [3, 1, 1, 2, 0]);
    // The key is remembered.
    assert_eq!(
        store.append_once(key, vec![event(&v, "k")]).await.unwrap(),
        Appended::Repeated(keyed)
    );
    // New ids go on after the old ones; a replay works on what was there.
    let more = store.append(vec![event(&v, "later")]).await.unwrap();
    assert!(more[0].id.unwrap() > last_event);
    assert!(more[0].deliveries[0].id > last_delivery);
    let added = register(&store, "u", 1).await;
    assert!(added[0] > *ids.iter().chain(&v).max().unwrap());
    assert_eq!(
        store.replay(failed).await.unwrap(),
        Replay::Replayed { hook: ids[1] }
    );
    assert_eq!(head(&store, ids[1]).await.id, failed);
}
