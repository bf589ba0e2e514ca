//! Counts and reads: pending, counts by state, a hook's status, listings and pages.

use super::*;

/// `pending`, `count` of each state and `disabled_hooks` follow every change.
pub(crate) async fn counts_follow_each_state(store: Store) {
    type Counts = [u64; 5];
    async fn counts(store: &Store) -> Counts {
        let mut out = [0; 5];
        for (n, state) in DeliveryState::ALL.into_iter().enumerate() {
            out[n] = store.count(state).await.unwrap();
        }
        assert_eq!(
            store.pending().await.unwrap(),
            out[0],
            "pending = count(Pending)"
        );
        out
    }
    let order = DeliveryState::ALL.map(|s| s.as_str());
    assert_eq!(
        order,
        ["pending", "delivered", "failed", "cancelled", "quarantined"]
    );
    assert_eq!(counts(&store).await, [0; 5]);
    assert_eq!(store.disabled_hooks().await.unwrap(), 0);
    let hooks = register(&store, "w", 3).await;
    append(&store, &hooks, &["a", "b", "c"]).await;
    assert_eq!(counts(&store).await, [9, 0, 0, 0, 0]);
    deliver(&store, &head(&store, hooks[0]).await).await;
    fail_head(&store, hooks[0], 400).await;
    assert_eq!(counts(&store).await, [7, 1, 1, 0, 0]);
    let gone = head(&store, hooks[1]).await;
    record(&store, &gone, 410, Outcome::HookGone).await;
    assert_eq!(store.disabled_hooks().await.unwrap(), 1);
    assert_eq!(
        counts(&store).await,
        [7, 1, 1, 0, 0],
        "disabled: still pending"
    );
    // hooks[2] removed: its three deliveries cancelled.
    let mut kept = distinct_hooks(3);
    kept.truncate(2);
    let change = store
        .put_workflow("w".into(), kept, secret())
        .await
        .unwrap();
    assert_eq!(change.removed, [hooks[2]]);
    assert_eq!(change.cancelled_deliveries, 3);
    assert_eq!(counts(&store).await, [4, 1, 1, 3, 0]);
    // Deleting the workflow cancels the rest, the disabled hook's included.
    let removal = store.delete_workflow("w".into()).await.unwrap().unwrap();
    assert_eq!(removal.cancelled_deliveries, 4);
    assert_eq!(counts(&store).await, [0, 1, 1, 7, 0]);
    assert_eq!(
        store.disabled_hooks().await.unwrap(),
        0,
        "a removed hook is not counted"
    );
}

pub(crate) async fn a_hook_counts_its_failed_deliveries_and_keeps_its_last_attempt(store: Store) {
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    let status = |store: Store| async move { store.hook(hook).await.unwrap().unwrap().status };
    let fresh = status(store.clone()).await;
    assert_eq!(
        (fresh.failed, fresh.last_attempt_at, fresh.last_status),
        (0, None, None)
    );
    assert!(fresh.enabled && fresh.consecutive_failures == 0 && fresh.pending == 0);
    append(&store, &[hook], &["0", "1", "2", "3", "4"]).await;
    let first = fail_head(&store, hook, 401).await;
    fail_head(&store, hook, 401).await;
    fail_head(&store, hook, 403).await;
    let now = status(store.clone()).await;
    assert_eq!(
        (now.failed, now.last_status, now.consecutive_failures),
        (3, Some(403), 3)
    );
    assert!(now.last_attempt_at.is_some());
    // An attempt without an answer: no status.
    let fourth = head(&store, hook).await;
    let at = SystemTime::now() + Duration::from_secs(3600);
    let no_answer = Attempt::new(
        SystemTime::now(),
        Duration::from_millis(5),
        AttemptResult::Error("could not connect".into()),
    );
    store
        .record(&fourth, no_answer, Outcome::Retry { at })
        .await
        .unwrap();
    store.flush(fourth.hook).await.unwrap();
    let now = status(store.clone()).await;
    assert_eq!((now.last_status, now.consecutive_failures), (None, 4));
    // A replay takes one off.
    assert_eq!(
        store.replay(first).await.unwrap(),
        Replay::Replayed { hook }
    );
    let now = status(store.clone()).await;
    assert_eq!((now.failed, now.pending), (2, 3));
    // A success resets the run of failures.
    deliver(&store, &head(&store, hook).await).await;
    let now = status(store.clone()).await;
    assert_eq!(
        (now.consecutive_failures, now.last_status, now.pending),
        (0, Some(200), 2)
    );
}

pub(crate) async fn listing_by_state_pages_oldest_first(store: Store) {
    let [h] = register(&store, "w", 1).await[..] else {
        unreachable!()
    };
    let tags: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let ids = append(&store, &[h], &tags).await.concat();
    let first = store.list(DeliveryState::Pending, None, 10).await.unwrap();
    let second = store
        .list(DeliveryState::Pending, Some(first.last().unwrap().id), 10)
        .await
        .unwrap();
    let third = store
        .list(DeliveryState::Pending, Some(second.last().unwrap().id), 10)
        .await
        .unwrap();
    let listed: Vec<DeliveryId> = [first, second, third]
        .iter()
        .flat_map(|page| page.iter().map(|d| d.id))
        .collect();
    assert_eq!(listed, ids, "every pending one, oldest first, in pages");
    assert!(
        store
            .list(DeliveryState::Delivered, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    deliver(&store, &head(&store, h).await).await;
    fail_head(&store, h, 400).await;
    let delivered = store
        .list(DeliveryState::Delivered, None, 10)
        .await
        .unwrap();
    let failed = store.list(DeliveryState::Failed, None, 10).await.unwrap();
    assert_eq!(
        (
            delivered.len(),
            delivered[0].id,
            delivered[0].webhook_id.as_str()
        ),
        (1, ids[0], format!("msg_0_{h}").as_str())
    );
    assert_eq!((failed.len(), failed[0].id), (1, ids[1]));
    assert_eq!(
        store
            .list(DeliveryState::Pending, None, 100)
            .await
            .unwrap()
            .len(),
        23
    );
    assert!(
        store
            .list(DeliveryState::Pending, Some(ids[24]), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn deliveries_are_listed_newest_first_by_each_filter(store: Store) {
    let a = register(&store, "lab-a", 2).await;
    let b = register(&store, "lab-b", 1).await;
    // Three events fire both hooks of lab-a, two the hook of lab-b.
    let of_a = append(&store, &a, &["a0", "a1", "a2"]).await;
    let of_b = append(&store, &b, &["b0", "b1"]).await;
    // In id order: a0 (hooks a0, a1), a1, a2, b0, b1.
    let [a00, a01] = of_a[0][..] else {
        unreachable!()
    };
    let [a10, a11] = of_a[1][..] else {
        unreachable!()
    };
    let [a20, a21] = of_a[2][..] else {
        unreachable!()
    };
    let (b0, b1) = (of_b[0][0], of_b[1][0]);
    // lab-a's first hook: a00 delivered, a10 failed (422); lab-b: b0 failed (500).
    deliver(&store, &head(&store, a[0]).await).await;
    assert_eq!(fail_head(&store, a[0], 422).await, a10);
    assert_eq!(fail_head(&store, b[0], 500).await, b0);

    let everything = vec![b1, b0, a21, a20, a11, a10, a01, a00];
    let mut sorted = everything.clone();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(sorted, everything, "appended later: a higher id");
    assert_eq!(
        page(&store, &DeliveryFilter::default()).await,
        (everything.clone(), None)
    );
    let hour = Duration::from_secs(3600);
    let cases: Vec<(&str, DeliveryFilter, Vec<DeliveryId>)> = vec![
        (
            "lab-a",
            filter(|f| f.workflow = Some("lab-a".into())),
            vec![a21, a20, a11, a10, a01, a00],
        ),
        (
            "lab-b",
            filter(|f| f.workflow = Some("lab-b".into())),
            vec![b1, b0],
        ),
        (
            "no such workflow",
            filter(|f| f.workflow = Some("x".into())),
            vec![],
        ),
        (
            "hook a0",
            filter(|f| f.hook = Some(a[0])),
            vec![a20, a10, a00],
        ),
        (
            "hook a1",
            filter(|f| f.hook = Some(a[1])),
            vec![a21, a11, a01],
        ),
        (
            "no such hook",
            filter(|f| f.hook = Some(b[0] + 999)),
            vec![],
        ),
        (
            "hook a0 in lab-b",
            filter(|f| {
                f.hook = Some(a[0]);
                f.workflow = Some("lab-b".into());
            }),
            vec![],
        ),
        (
            "failed",
            filter(|f| f.state = Some(DeliveryState::Failed)),
            vec![b0, a10],
        ),
        (
            "delivered",
            filter(|f| f.state = Some(DeliveryState::Delivered)),
            vec![a00],
        ),
        (
            "failed of lab-a",
            filter(|f| {
                f.state = Some(DeliveryState::Failed);
                f.workflow = Some("lab-a".into());
            }),
            vec![a10],
        ),
        (
            "pending of hook a0",
            filter(|f| {
                f.state = Some(DeliveryState::Pending);
                f.hook = Some(a[0]);
            }),
            vec![a20],
        ),
        (
            "4xx",
            filter(|f| f.status = Some(StatusClass::ClientError)),
            vec![a10],
        ),
        (
            "5xx",
            filter(|f| f.status = Some(StatusClass::ServerError)),
            vec![b0],
        ),
        (
            "2xx",
            filter(|f| f.status = Some(StatusClass::Success)),
            vec![a00],
        ),
        (
            "3xx",
            filter(|f| f.status = Some(StatusClass::Redirect)),
            vec![],
        ),
        (
            "none",
            filter(|f| f.status = Some(StatusClass::None)),
            vec![b1, a21, a20, a11, a01],
        ),
        (
            "4xx of lab-b",
            filter(|f| {
                f.status = Some(StatusClass::ClientError);
                f.workflow = Some("lab-b".into());
            }),
            vec![],
        ),
        (
            "before a20",
            filter(|f| f.before = Some(a20)),
            vec![a11, a10, a01, a00],
        ),
        ("before the first", filter(|f| f.before = Some(a00)), vec![]),
        (
            "before a20, of hook a1",
            filter(|f| {
                f.before = Some(a20);
                f.hook = Some(a[1]);
            }),
            vec![a11, a01],
        ),
        (
            "since the future",
            filter(|f| f.since = Some(SystemTime::now() + hour)),
            vec![],
        ),
        (
            "until the past",
            filter(|f| f.until = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1))),
            vec![],
        ),
        (
            "since an hour ago, until an hour from now",
            filter(|f| {
                f.since = Some(SystemTime::now() - hour);
                f.until = Some(SystemTime::now() + hour);
            }),
            everything.clone(),
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(page(&store, &filter).await, (expected, None), "{name}");
    }
    // The last status comes with each delivery, and its state.
    let listed = store.deliveries(&DeliveryFilter::default()).await.unwrap();
    let statuses: Vec<(Option<u16>, DeliveryState)> = listed
        .deliveries
        .iter()
        .map(|d| (d.last_status, d.state))
        .collect();
    use DeliveryState::{Delivered, Failed, Pending};
    assert_eq!(
        statuses,
        [
            (None, Pending),
            (Some(500), Failed),
            (None, Pending),
            (None, Pending),
            (None, Pending),
            (Some(422), Failed),
            (None, Pending),
            (Some(200), Delivered),
        ]
    );

    // Pages: a cursor after each full page, none after the last.
    let mut pages = Vec::new();
    let mut before = None;
    for _ in 0..10 {
        let (ids, next) = page(
            &store,
            &filter(|f| {
                f.limit = 3;
                f.before = before;
            }),
        )
        .await;
        pages.push(ids);
        match next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            everything[..3].to_vec(),
            everything[3..6].to_vec(),
            everything[6..].to_vec()
        ]
    );
    // A full last page says there is nothing more.
    assert_eq!(
        page(&store, &filter(|f| f.limit = 8)).await,
        (everything, None)
    );
}

/// Over more deliveries and a filter that matches a few: following `next_before` gives each
/// matching delivery once, newest first, whatever the page size.
pub(crate) async fn following_next_before_visits_every_delivery_once(store: Store) {
    let hooks = register(&store, "lab", 3).await;
    let mut all = Vec::new();
    for chunk in 0..4 {
        let tags: Vec<String> = (0..50).map(|i| format!("{chunk}-{i}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        for ids in append(&store, &hooks, &tags).await {
            all.extend(ids);
        }
    }
    // Every tenth delivery of the second hook failed.
    let mut failed = Vec::new();
    for i in 0..200 {
        let delivery = head(&store, hooks[1]).await;
        if i % 10 == 0 {
            fail(&store, &delivery, 404).await;
            failed.push(delivery.id);
        } else {
            deliver(&store, &delivery).await;
        }
    }
    all.reverse();
    failed.reverse();
    for limit in [1, 7, 100, 1000] {
        let every = all_pages(&store, &filter(|f| f.limit = limit)).await;
        assert_eq!(every, all, "limit {limit}");
        let of_hook = all_pages(
            &store,
            &filter(|f| {
                f.limit = limit;
                f.hook = Some(hooks[1]);
                f.status = Some(StatusClass::ClientError);
            }),
        )
        .await;
        assert_eq!(of_hook, failed, "limit {limit}");
        let by_state = all_pages(
            &store,
            &filter(|f| {
                f.limit = limit;
                f.state = Some(DeliveryState::Failed);
                f.workflow = Some("lab".into());
            }),
        )
        .await;
        assert_eq!(by_state, failed, "limit {limit}");
    }
}

/// `since` (inclusive) and `until` (exclusive) bound a delivery's creation time, as the store
/// tells it.
pub(crate) async fn since_and_until_bound_the_creation_time(store: Store) {
    let hooks = register(&store, "lab", 1).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.extend(append(&store, &hooks, &[&i.to_string()]).await.concat());
        // Apart in time, so that some are created after others (no time is asserted).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut created = Vec::new();
    for &id in &ids {
        created.push(store.get(id).await.unwrap().unwrap().0.created_at);
    }
    let newest_first = |keep: &dyn Fn(SystemTime) -> bool| -> Vec<DeliveryId> {
        let mut out: Vec<DeliveryId> = ids
            .iter()
            .zip(&created)
            .filter(|(_, at)| keep(**at))
            .map(|(id, _)| *id)
            .collect();
        out.reverse();
        out
    };
    let (from, to) = (created[1], created[3]);
    let since = newest_first(&|at| at >= from);
    let until = newest_first(&|at| at < to);
    let both = newest_first(&|at| at >= from && at < to);
    assert!(
        since.contains(&ids[1]) && !since.contains(&ids[0]),
        "{created:?}"
    );
    assert!(
        until.contains(&ids[2]) && !until.contains(&ids[3]),
        "{created:?}"
    );
    assert_eq!(
        page(&store, &filter(|f| f.since = Some(from))).await,
        (since, None)
    );
    assert_eq!(
        page(&store, &filter(|f| f.until = Some(to))).await,
        (until, None)
    );
    let bounded = filter(|f| {
        f.since = Some(from);
        f.until = Some(to);
    });
    assert_eq!(page(&store, &bounded).await, (both, None));
}
