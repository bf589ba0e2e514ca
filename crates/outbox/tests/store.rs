//! The store on a real file: order, outcomes, reopening, replay, hooks, pruning, and the
//! dispatcher delivering from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{
    Attempt, AttemptResult, Config, Delivery, Dispatcher, Head, NewDelivery, Outbox, Outcome,
};
use linq_hooks_outbox::{DeliveryState, NewEvent, Replay, Store};
use linq_hooks_transport::{MemoryTransport, Response};

/// A fresh store file for one test.
fn store_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("linq-hooks-outbox-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.redb"));
    let _ = std::fs::remove_file(&path);
    path
}

fn event(hooks: &[usize], tag: &str) -> NewEvent {
    NewEvent {
        body: format!(r#"{{"tag":"{tag}"}}"#).into(),
        deliveries: hooks
            .iter()
            .map(|&hook| NewDelivery {
                hook,
                webhook_id: format!("msg_{tag}_{hook}"),
                body: format!(r#"{{"tag":"{tag}"}}"#).into(),
            })
            .collect(),
    }
}

async fn head(store: &Store, hook: usize) -> Delivery {
    match store.head(hook).await.unwrap() {
        Head::Ready(delivery) => delivery,
        other => panic!("hook {hook}: expected a delivery, got {other:?}"),
    }
}

/// Records a 200 for `delivery`: delivered.
async fn deliver(store: &Store, delivery: &Delivery) {
    store
        .record(delivery, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
}

/// Records `status` for `delivery` and gives it up.
async fn fail(store: &Store, delivery: &Delivery, status: u16) {
    let outcome = Outcome::Failed {
        reason: format!("status {status}"),
    };
    store
        .record(delivery, attempt(status), outcome)
        .await
        .unwrap();
}

fn attempt(status: u16) -> Attempt {
    Attempt {
        at: SystemTime::now(),
        latency: Duration::from_millis(3),
        result: AttemptResult::Status(status),
    }
}

#[tokio::test]
async fn each_hook_is_a_queue_in_order() {
    let store = Store::open(store_path("order"), 2, "v1").unwrap();
    let accepted = store
        .append(vec![
            event(&[0, 1], "a"),
            event(&[], "none"),
            event(&[1], "b"),
        ])
        .await
        .unwrap();
    assert_eq!(accepted.len(), 3);
    assert_eq!(
        accepted[1].deliveries.len(),
        0,
        "no hook fires: nothing stored"
    );
    assert_eq!(store.pending().unwrap(), 3);

    let first = head(&store, 1).await;
    assert_eq!(
        (first.webhook_id.as_str(), first.body.as_ref()),
        ("msg_a_1", br#"{"tag":"a"}"#.as_ref())
    );
    deliver(&store, &first).await;
    assert_eq!(head(&store, 1).await.webhook_id, "msg_b_1");
    assert_eq!(head(&store, 0).await.webhook_id, "msg_a_0");
    assert_eq!(store.pending().unwrap(), 2);
    let per_hook: Vec<u64> = store.hooks().unwrap().iter().map(|h| h.pending).collect();
    assert_eq!(per_hook, [1, 1]);
}

#[tokio::test]
async fn outcomes_are_recorded_with_their_attempts() {
    let store = Store::open(store_path("outcomes"), 1, "v1").unwrap();
    store
        .append(vec![event(&[0], "a"), event(&[0], "b")])
        .await
        .unwrap();

    let a = head(&store, 0).await;
    let later = SystemTime::now() + Duration::from_secs(3600);
    store
        .record(&a, attempt(503), Outcome::Retry { at: later })
        .await
        .unwrap();
    let a = head(&store, 0).await;
    assert_eq!(a.attempts, 1);
    assert!(!a.is_due(SystemTime::now()), "the retry is an hour away");
    let failed = Attempt {
        result: AttemptResult::Error("connect error: refused".into()),
        ..attempt(0)
    };
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

    let (info, attempts) = store.get(a.id).unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Failed);
    assert_eq!(info.failure.as_deref(), Some("gave up"));
    assert_eq!(info.attempts, 2);
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, Some(503));
    assert_eq!(attempts[1].error.as_deref(), Some("connect error: refused"));
    assert_eq!(
        store.list(DeliveryState::Failed, None, 10).unwrap().len(),
        1
    );
    assert_eq!(
        head(&store, 0).await.webhook_id,
        "msg_b_0",
        "the next one goes on"
    );
    assert!(store.get(9999).unwrap().is_none());
}

#[tokio::test]
async fn listing_pages_by_state() {
    let store = Store::open(store_path("paging"), 1, "v1").unwrap();
    store
        .append((0..25).map(|i| event(&[0], &i.to_string())).collect())
        .await
        .unwrap();
    let first = store.list(DeliveryState::Pending, None, 10).unwrap();
    let second = store
        .list(DeliveryState::Pending, Some(first.last().unwrap().id), 10)
        .unwrap();
    let third = store
        .list(DeliveryState::Pending, Some(second.last().unwrap().id), 10)
        .unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (10, 10, 5));
    assert!(first.last().unwrap().id < second[0].id);
    assert!(
        store
            .list(DeliveryState::Delivered, None, 10)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn what_is_committed_survives_reopening() {
    let path = store_path("reopen");
    let ids = {
        let store = Store::open(&path, 2, "v1").unwrap();
        let accepted = store
            .append(vec![event(&[0, 1], "a"), event(&[0], "b")])
            .await
            .unwrap();
        let a0 = head(&store, 0).await;
        deliver(&store, &a0).await;
        accepted
    };
    let store = Store::open(&path, 2, "v1").unwrap();
    assert_eq!(store.pending().unwrap(), 2);
    assert_eq!(head(&store, 0).await.webhook_id, "msg_b_0");
    assert_eq!(head(&store, 1).await.id, ids[0].deliveries[1].id);
    // New ids continue after the old ones.
    let more = store.append(vec![event(&[1], "c")]).await.unwrap();
    assert!(more[0].deliveries[0].id > ids[1].deliveries[0].id);
}

#[tokio::test]
async fn a_different_hook_list_is_refused_while_deliveries_wait() {
    let path = store_path("fingerprint");
    {
        let store = Store::open(&path, 1, "v1").unwrap();
        store.append(vec![event(&[0], "a")]).await.unwrap();
    }
    let err = Store::open(&path, 1, "v2").expect_err("refused");
    assert!(err.is_hooks_changed(), "{err}");
    assert!(err.to_string().contains("1 pending deliveries"), "{err}");
    {
        let store = Store::open(&path, 1, "v1").unwrap();
        let a = head(&store, 0).await;
        deliver(&store, &a).await;
    }
    // Drained: a new hook list is fine.
    Store::open(&path, 1, "v2").unwrap();
}

#[tokio::test]
async fn a_failed_delivery_of_an_old_hook_list_is_not_replayed_to_a_new_one() {
    let path = store_path("generation");
    let failed = {
        let store = Store::open(&path, 1, "v1").unwrap();
        store.append(vec![event(&[0], "a")]).await.unwrap();
        let a = head(&store, 0).await;
        fail(&store, &a, 400).await;
        a.id
    };
    let store = Store::open(&path, 1, "v2").unwrap();
    assert_eq!(store.replay(failed).await.unwrap(), Replay::OtherHookList);
    assert!(matches!(store.head(0).await.unwrap(), Head::Empty));
}

#[tokio::test]
async fn a_failed_delivery_replays_with_its_id() {
    let store = Store::open(store_path("replay"), 1, "v1").unwrap();
    store.append(vec![event(&[0], "a")]).await.unwrap();
    let a = head(&store, 0).await;
    assert_eq!(
        store.replay(a.id).await.unwrap(),
        Replay::NotFailed(DeliveryState::Pending)
    );
    fail(&store, &a, 400).await;
    assert!(matches!(store.head(0).await.unwrap(), Head::Empty));

    assert_eq!(
        store.replay(a.id).await.unwrap(),
        Replay::Replayed { hook: 0 }
    );
    let again = head(&store, 0).await;
    assert_eq!(
        (again.id, again.webhook_id.as_str(), again.attempts),
        (a.id, "msg_a_0", 0)
    );
    assert_eq!(store.replay(12345).await.unwrap(), Replay::NotFound);
}

#[tokio::test]
async fn gone_disables_the_hook_until_enabled_and_nothing_is_dropped() {
    let store = Store::open(store_path("gone"), 2, "v1").unwrap();
    store
        .append(vec![event(&[0, 1], "a"), event(&[0], "b")])
        .await
        .unwrap();
    let a = head(&store, 0).await;
    store
        .record(&a, attempt(410), Outcome::HookGone)
        .await
        .unwrap();
    assert_eq!(store.head(0).await.unwrap(), Head::Disabled);
    let hooks = store.hooks().unwrap();
    assert!(!hooks[0].enabled && hooks[0].disabled_at.is_some());
    assert_eq!(hooks[0].pending, 2);
    assert!(hooks[1].enabled);

    assert!(store.enable(0).await.unwrap());
    assert!(!store.enable(0).await.unwrap(), "already enabled");
    let again = head(&store, 0).await;
    assert_eq!(
        (again.id, again.attempts),
        (a.id, 0),
        "the same delivery, on a fresh schedule"
    );
}

#[tokio::test]
async fn pruning_removes_old_delivered_records_only() {
    let store = Store::open(store_path("prune"), 2, "v1").unwrap();
    store
        .append(vec![
            event(&[0, 1], "a"),
            event(&[0], "b"),
            event(&[1], "c"),
        ])
        .await
        .unwrap();
    let a0 = head(&store, 0).await;
    deliver(&store, &a0).await;
    let b0 = head(&store, 0).await;
    fail(&store, &b0, 404).await;

    assert_eq!(
        store
            .prune(SystemTime::now() - Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(
        store
            .prune(SystemTime::now() + Duration::from_secs(1))
            .await
            .unwrap(),
        1
    );
    assert!(store.get(a0.id).unwrap().is_none());
    assert!(
        store.get(b0.id).unwrap().is_some(),
        "failed deliveries stay, replayable"
    );
    // The body of `a` is still needed by hook 1's delivery.
    assert_eq!(head(&store, 1).await.body.as_ref(), br#"{"tag":"a"}"#);
    assert_eq!(store.pending().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_all_land() {
    let store = Store::open(store_path("group"), 1, "v1").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..32 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..20 {
                store
                    .append(vec![event(&[0], &format!("{task}-{i}"))])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(store.pending().unwrap(), 640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_delivers_from_the_store() {
    let store = Arc::new(Store::open(store_path("dispatch"), 2, "v1").unwrap());
    store
        .append((0..10).map(|i| event(&[0, 1], &i.to_string())).collect())
        .await
        .unwrap();
    let hooks: Arc<[_]> = linq_hooks_model::parse_hooks(
        r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example/"}},
            {"filter": "on_new_plan", "parameters": {"url": "https://b.example/"}}]"#,
    )
    .unwrap()
    .hooks
    .into();
    let transport = MemoryTransport::new();
    transport.reply_to("https://b.example/", Ok(Response::new(500)));
    let config = Config::default().policy("10ms".parse().unwrap());
    let dispatcher = Dispatcher::new(hooks, Arc::new(transport.clone()), store.clone(), config);
    dispatcher.close();
    dispatcher.run().await;

    assert_eq!(store.pending().unwrap(), 0);
    assert_eq!(
        store
            .list(DeliveryState::Delivered, None, 100)
            .unwrap()
            .len(),
        20
    );
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
}

#[test]
fn an_unusable_path_is_a_clear_error() {
    let err = Store::open("/proc/no-such-dir/store.redb", 1, "v1").expect_err("refused");
    assert!(err.is_storage());
    assert!(
        err.to_string()
            .starts_with("cannot open the store /proc/no-such-dir/store.redb: "),
        "{err}"
    );
}
