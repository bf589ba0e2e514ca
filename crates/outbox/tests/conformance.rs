//! The conformance suite: what `serve` relies on of a store, the same test functions run against
//! each store through [`DurableOutbox`] (`Arc<dyn DurableOutbox>`, as the service holds it):
//! `redb::<test>` on a fresh redb file, `postgres::<test>` on a fresh PostgreSQL database
//! (feature `postgres`; the server named by `LINQ_HOOKS_TEST_POSTGRES`, which `.ci/run` starts:
//! without it those tests say `SKIPPED` and pass, unless `CI=true`).
//!
//! Each test function takes a fresh, empty store. Outcomes are [`Outbox::record`]ed then
//! [`Outbox::flush`]ed (the redb store writes them behind) before anything but the head reads
//! them. Ids are never assumed: what a store hands out is read from its answers, and only their
//! order is relied on (a delivery appended later has a higher id).
//!
//! Run one store: `cargo test -p linq-hooks-outbox --features postgres --test conformance postgres::`.

mod common;
#[path = "common/postgres.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{attempt, distinct_hooks, event, hooks, secret, store_path};
use linq_hooks_delivery::{
    Attempt, AttemptResult, Config, Delivery, DeliveryId, Destination, Dispatcher, Head, HookId,
    Outbox, Outcome,
};
use linq_hooks_model::HookParameters;
use linq_hooks_outbox::{
    Appended, DeliveryFilter, DeliveryState, DurableOutbox, HookRetry, IdempotencyKey, Recovery,
    Replay, Retry, StatusClass,
};
use linq_hooks_transport::{MemoryTransport, Response};

/// A store as `serve` holds it.
type Store = Arc<dyn DurableOutbox>;

/// A fresh redb store for test `name`.
fn redb_store(name: &str) -> Store {
    let path = store_path(&format!("conformance-{name}"));
    Arc::new(linq_hooks_outbox::Store::open(path).expect("a fresh redb store"))
}

/// A PostgreSQL store on a fresh database; `None` (said loudly) when there is no test server.
#[cfg(feature = "postgres")]
async fn postgres_store() -> Option<Store> {
    let url = pg::fresh_database()?;
    let options = linq_hooks_outbox::PgOptions::new(&url).expect("the test database's URL");
    let store = linq_hooks_outbox::PgStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"));
    Some(Arc::new(store))
}

/// For each `async fn name(store: Store)` listed: the tests `redb::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        /// Each test on a fresh redb file.
        mod redb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::redb_store(stringify!($name))).await;
                }
            )*
        }

        /// Each test on a fresh PostgreSQL database.
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(store) = super::postgres_store().await else {
                        return;
                    };
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

conformance!(
    a_store_is_healthy_and_says_where_it_is,
    // The outbox: append, head, record.
    each_hook_is_a_queue_in_order,
    outcomes_are_recorded_with_their_attempts,
    an_attempt_keeps_the_start_of_its_answer,
    gone_disables_the_hook_until_enabled_and_nothing_is_dropped,
    order_holds_per_hook_over_many_deliveries_and_hooks,
    concurrent_appends_all_land,
    an_idempotency_key_stores_an_ingest_once,
    the_dispatcher_delivers_from_the_store,
    order_holds_through_a_retry_amid_a_read_ahead,
    reading_ahead_gives_the_rest_of_the_queue_in_order,
    // Operations: replay, retry, recover, enable, prune.
    a_failed_delivery_replays_with_its_id,
    retry_answers_for_each_state_of_a_delivery,
    retry_hook_makes_the_head_due_now,
    recover_replays_failed_deliveries_in_id_order_among_pending_ones,
    recover_takes_the_deliveries_created_since,
    a_failed_delivery_of_a_disabled_hook_replays_to_wait_for_it,
    pruning_removes_old_delivered_records_only,
    an_event_keeps_its_body_while_any_of_its_deliveries_is_kept,
    // Counts and reads.
    counts_follow_each_state,
    a_hook_counts_its_failed_deliveries_and_keeps_its_last_attempt,
    listing_by_state_pages_oldest_first,
    deliveries_are_listed_newest_first_by_each_filter,
    following_next_before_visits_every_delivery_once,
    since_and_until_bound_the_creation_time,
    // The registry.
    a_replace_keeps_the_ids_of_the_hooks_that_fire_alike,
    a_kept_hook_posts_to_its_new_url_with_the_same_deliveries,
    deleting_a_workflow_cancels_all_its_deliveries,
    a_failed_delivery_stays_replayable_while_its_hook_stays,
    an_event_for_a_removed_hook_is_stored_cancelled,
    the_secret_is_set_at_creation_and_changed_by_rotation_only,
    workflows_and_hooks_list_in_pages_by_id,
);

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Registers workflow `workflow` with `n` distinct hooks; returns their ids in order.
async fn register(store: &Store, workflow: &str, n: usize) -> Vec<HookId> {
    let change = store
        .put_workflow(workflow.into(), distinct_hooks(n), secret())
        .await
        .unwrap();
    assert!(change.created, "{workflow}: created");
    assert_eq!(change.added.len(), n);
    change.workflow.hooks.iter().map(|h| h.id).collect()
}

/// The ids of the deliveries `append` stored for `tags` (one event each, to `hooks`).
async fn append(store: &Store, hooks: &[HookId], tags: &[&str]) -> Vec<Vec<DeliveryId>> {
    let accepted = store
        .append(tags.iter().map(|tag| event(hooks, tag)).collect())
        .await
        .unwrap();
    assert_eq!(accepted.len(), tags.len());
    accepted
        .iter()
        .map(|e| e.deliveries.iter().map(|d| d.id).collect())
        .collect()
}

/// The head of `hook`'s queue, which must be a delivery.
async fn head(store: &Store, hook: HookId) -> Delivery {
    match store.head(hook).await.unwrap() {
        Head::Ready(delivery) => delivery,
        other => panic!("hook {hook}: expected a delivery, got {other:?}"),
    }
}

/// Records `outcome` for `delivery` after an attempt answered `status`, and waits until it is
/// stored.
async fn record(store: &Store, delivery: &Delivery, status: u16, outcome: Outcome) {
    store
        .record(delivery, attempt(status), outcome)
        .await
        .unwrap();
    store.flush(delivery.hook).await.unwrap();
}

/// A 200: delivered.
async fn deliver(store: &Store, delivery: &Delivery) {
    record(store, delivery, 200, Outcome::Delivered).await;
}

/// `status`, given up.
async fn fail(store: &Store, delivery: &Delivery, status: u16) {
    let reason = format!("status {status}");
    record(store, delivery, status, Outcome::Failed { reason }).await;
}

/// `status`, to be tried again in an hour.
async fn retry_later(store: &Store, delivery: &Delivery, status: u16) {
    let at = SystemTime::now() + Duration::from_secs(3600);
    record(store, delivery, status, Outcome::Retry { at }).await;
}

/// Gives up the head of `hook`'s queue with `status`; returns its id.
async fn fail_head(store: &Store, hook: HookId, status: u16) -> DeliveryId {
    let delivery = head(store, hook).await;
    fail(store, &delivery, status).await;
    delivery.id
}

fn filter(change: impl FnOnce(&mut DeliveryFilter)) -> DeliveryFilter {
    let mut filter = DeliveryFilter::default();
    change(&mut filter);
    filter
}

/// One page: its ids and its cursor.
async fn page(store: &Store, filter: &DeliveryFilter) -> (Vec<DeliveryId>, Option<DeliveryId>) {
    let page = store.deliveries(filter).await.unwrap();
    (
        page.deliveries.iter().map(|d| d.id).collect(),
        page.next_before,
    )
}

/// Every delivery `filter` matches, following the cursor to the end (a page may be short, even
/// empty, and still have a cursor).
async fn all_pages(store: &Store, filter: &DeliveryFilter) -> Vec<DeliveryId> {
    let mut ids = Vec::new();
    let mut next = filter.clone();
    for _ in 0..1000 {
        let (page, cursor) = page(store, &next).await;
        ids.extend(page);
        match cursor {
            Some(before) => next.before = Some(before),
            None => return ids,
        }
    }
    panic!("the pages of {filter:?} do not end");
}

/// Waits, at most `seconds`, until `done` holds.
async fn until<F: Future<Output = bool>>(seconds: u64, what: &str, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {seconds} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The store itself.

async fn a_store_is_healthy_and_says_where_it_is(store: Store) {
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

// ---------------------------------------------------------------------------------------------
// The outbox: append, head, record.

async fn each_hook_is_a_queue_in_order(store: Store) {
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

async fn outcomes_are_recorded_with_their_attempts(store: Store) {
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

async fn an_attempt_keeps_the_start_of_its_answer(store: Store) {
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

async fn gone_disables_the_hook_until_enabled_and_nothing_is_dropped(store: Store) {
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
async fn order_holds_per_hook_over_many_deliveries_and_hooks(store: Store) {
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

async fn concurrent_appends_all_land(store: Store) {
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
async fn an_idempotency_key_stores_an_ingest_once(store: Store) {
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
async fn the_dispatcher_delivers_from_the_store(store: Store) {
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
async fn order_holds_through_a_retry_amid_a_read_ahead(store: Store) {
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
async fn reading_ahead_gives_the_rest_of_the_queue_in_order(store: Store) {
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
        async move {
            store
                .after(h, after, limit)
                .await
                .unwrap()
                .map(|list| list.into_iter().map(|d| d.id).collect::<Vec<_>>())
        }
    };
    if let Some(two) = ahead(first.id, 2).await {
        assert_eq!(two, queue[1..3]);
        assert_eq!(
            ahead(queue[2], 10).await.unwrap(),
            queue[3..],
            "the rest, and nothing of the other hook"
        );
        assert_eq!(ahead(queue[4], 10).await, Some(vec![]), "nothing follows");
    }
    let second = head(&store, h).await;
    assert_eq!(second.id, queue[1], "the head reflects the outcome");
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

// ---------------------------------------------------------------------------------------------
// Operations: replay, retry, recover, enable, prune.

async fn a_failed_delivery_replays_with_its_id(store: Store) {
    let [h] = register(&store, "w", 1).await[..] else {
        unreachable!()
    };
    append(&store, &[h], &["a"]).await;
    let a = head(&store, h).await;
    assert_eq!(
        store.replay(a.id).await.unwrap(),
        Replay::NotFailed(DeliveryState::Pending)
    );
    retry_later(&store, &a, 500).await;
    fail(&store, &head(&store, h).await, 400).await;
    assert_eq!(store.head(h).await.unwrap(), Head::Empty);
    assert_eq!(store.hook(h).await.unwrap().unwrap().status.failed, 1);

    assert_eq!(
        store.replay(a.id).await.unwrap(),
        Replay::Replayed { hook: h }
    );
    let again = head(&store, h).await;
    assert_eq!(
        (
            again.id,
            again.webhook_id.as_str(),
            again.attempts,
            again.next_attempt_at
        ),
        (a.id, format!("msg_a_{h}").as_str(), 0, None)
    );
    let (info, attempts) = store.get(a.id).await.unwrap().unwrap();
    assert_eq!(
        (info.state, info.failure, info.finished_at),
        (DeliveryState::Pending, None, None)
    );
    assert_eq!(attempts.len(), 2, "the attempts before are kept");
    assert_eq!(
        (info.attempts, info.last_status),
        (2, Some(400)),
        "every attempt counted (the head counts the new round's); the last status kept"
    );
    assert_eq!(store.hook(h).await.unwrap().unwrap().status.failed, 0);
    assert_eq!(
        store.replay(a.id).await.unwrap(),
        Replay::NotFailed(DeliveryState::Pending)
    );
    deliver(&store, &again).await;
    assert_eq!(
        store.replay(a.id).await.unwrap(),
        Replay::NotFailed(DeliveryState::Delivered)
    );
    assert_eq!(store.replay(a.id + 12345).await.unwrap(), Replay::NotFound);
}

/// `retry`'s answer for a delivery in each state: pending (due now with its queue's head),
/// failed (replayed), delivered, unknown, of a disabled hook, of a removed hook.
async fn retry_answers_for_each_state_of_a_delivery(store: Store) {
    let [hook, other] = register(&store, "lab", 2).await[..] else {
        unreachable!()
    };
    let ids: Vec<DeliveryId> = append(&store, &[hook], &["0", "1", "2"]).await.concat();
    let first = head(&store, hook).await;
    assert_eq!(first.id, ids[0]);
    retry_later(&store, &first, 503).await;
    assert!(head(&store, hook).await.next_attempt_at.is_some());
    // Retrying the third makes the head (the first) due now: it goes first.
    assert_eq!(
        store.retry(ids[2]).await.unwrap(),
        Retry::Now {
            hook,
            head: Some(first.id)
        }
    );
    let now_due = head(&store, hook).await;
    assert_eq!(now_due.id, first.id);
    assert_eq!(now_due.next_attempt_at, None);
    assert_eq!(now_due.attempts, 1, "the round's attempts are kept");
    // The head itself.
    assert_eq!(
        store.retry(first.id).await.unwrap(),
        Retry::Now {
            hook,
            head: Some(first.id)
        }
    );
    // A failed one is replayed; a delivered one is refused.
    fail(&store, &now_due, 400).await;
    assert_eq!(
        store.retry(first.id).await.unwrap(),
        Retry::Replayed { hook }
    );
    assert_eq!(head(&store, hook).await.id, first.id);
    deliver(&store, &head(&store, hook).await).await;
    assert_eq!(
        store.retry(first.id).await.unwrap(),
        Retry::NotRetriable(DeliveryState::Delivered)
    );
    assert_eq!(store.retry(ids[2] + 999).await.unwrap(), Retry::NotFound);

    // A hook a 410 disabled: its deliveries wait for it to be enabled.
    let next = head(&store, hook).await;
    record(&store, &next, 410, Outcome::HookGone).await;
    assert_eq!(
        store.retry(next.id).await.unwrap(),
        Retry::HookDisabled { hook }
    );
    assert_eq!(store.enable(hook).await.unwrap(), Some(true));
    assert_eq!(
        store.retry(ids[2]).await.unwrap(),
        Retry::Now {
            hook,
            head: Some(next.id)
        }
    );

    // The other hook: failed, then removed: nowhere to send it; cancelled ones are refused.
    let [o1, o2] = append(&store, &[other], &["o1", "o2"]).await.concat()[..] else {
        unreachable!()
    };
    assert_eq!(fail_head(&store, other, 400).await, o1);
    let change = store
        .put_workflow("lab".into(), distinct_hooks(1), secret())
        .await
        .unwrap();
    assert_eq!(change.removed, [other]);
    assert_eq!(
        store.retry(o1).await.unwrap(),
        Retry::HookRemoved { hook: other }
    );
    assert_eq!(
        store.retry(o2).await.unwrap(),
        Retry::NotRetriable(DeliveryState::Cancelled)
    );
}

async fn retry_hook_makes_the_head_due_now(store: Store) {
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    assert_eq!(
        store.retry_hook(hook).await.unwrap(),
        HookRetry::Woken {
            pending: 0,
            head: None
        },
        "nothing pending"
    );
    append(&store, &[hook], &["0", "1"]).await;
    let first = head(&store, hook).await;
    retry_later(&store, &first, 503).await;
    assert_eq!(
        store.retry_hook(hook).await.unwrap(),
        HookRetry::Woken {
            pending: 2,
            head: Some(first.id)
        }
    );
    let now = head(&store, hook).await;
    assert_eq!(
        (now.id, now.next_attempt_at, now.attempts),
        (first.id, None, 1)
    );
    assert_eq!(
        store.retry_hook(hook + 999).await.unwrap(),
        HookRetry::NotFound
    );
    // Disabled by a 410: enable it first.
    record(&store, &now, 410, Outcome::HookGone).await;
    assert_eq!(store.retry_hook(hook).await.unwrap(), HookRetry::Disabled);
    // Removed: not found.
    store.delete_workflow("lab".into()).await.unwrap().unwrap();
    assert_eq!(store.retry_hook(hook).await.unwrap(), HookRetry::NotFound);
}

async fn recover_replays_failed_deliveries_in_id_order_among_pending_ones(store: Store) {
    let hooks = register(&store, "lab", 2).await;
    let (hook, other) = (hooks[0], hooks[1]);
    append(&store, &[hook], &["0", "1", "2"]).await;
    let failed: Vec<DeliveryId> = vec![
        fail_head(&store, hook, 401).await,
        fail_head(&store, hook, 401).await,
        fail_head(&store, hook, 401).await,
    ];
    // Another hook's failure is not this hook's to recover.
    append(&store, &[other], &["o"]).await;
    let others = fail_head(&store, other, 401).await;
    // A delivery pending, waiting for its retry an hour out.
    append(&store, &[hook], &["later"]).await;
    let waiting = head(&store, hook).await;
    retry_later(&store, &waiting, 503).await;

    let future = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(
        store.recover(hook, future).await.unwrap(),
        Recovery::Replayed(vec![]),
        "none created since"
    );
    assert_eq!(
        store.recover(hook, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::Replayed(failed.clone())
    );
    assert_eq!(store.hook(hook).await.unwrap().unwrap().status.failed, 0);
    assert_eq!(store.hook(other).await.unwrap().unwrap().status.failed, 1);
    assert_eq!(
        store.get(others).await.unwrap().unwrap().0.state,
        DeliveryState::Failed
    );
    // The queue is in id order: the replayed ones first, each due now with its own id, then
    // the one that was waiting, its due time kept.
    for (i, &id) in failed.iter().enumerate() {
        let next = head(&store, hook).await;
        assert_eq!(next.id, id);
        assert_eq!(next.webhook_id, format!("msg_{i}_{hook}"));
        assert_eq!((next.attempts, next.next_attempt_at), (0, None));
        deliver(&store, &next).await;
    }
    let last = head(&store, hook).await;
    assert_eq!(last.id, waiting.id);
    assert!(last.next_attempt_at.is_some());
    assert_eq!(
        store
            .recover(other + 999, SystemTime::UNIX_EPOCH)
            .await
            .unwrap(),
        Recovery::NotFound
    );
}

/// `recover(hook, since)` replays the failed deliveries created at `since` or later (creation
/// times as the store tells them), in id order.
async fn recover_takes_the_deliveries_created_since(store: Store) {
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    let mut failed = Vec::new();
    for i in 0..4 {
        append(&store, &[hook], &[&i.to_string()]).await;
        failed.push(fail_head(&store, hook, 500).await);
        // Apart in time, so that some are created after others (no time is asserted).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut created = Vec::new();
    for &id in &failed {
        created.push(store.get(id).await.unwrap().unwrap().0.created_at);
    }
    let since = created[2];
    let expected: Vec<DeliveryId> = failed
        .iter()
        .zip(&created)
        .filter(|(_, at)| **at >= since)
        .map(|(id, _)| *id)
        .collect();
    assert!(expected.contains(&failed[2]) && expected.contains(&failed[3]));
    assert!(!expected.contains(&failed[0]), "20 ms apart: {created:?}");
    assert_eq!(
        store.recover(hook, since).await.unwrap(),
        Recovery::Replayed(expected.clone())
    );
    for &id in &failed {
        let state = store.get(id).await.unwrap().unwrap().0.state;
        let replayed = expected.contains(&id);
        assert_eq!(
            state,
            if replayed {
                DeliveryState::Pending
            } else {
                DeliveryState::Failed
            },
            "{id}"
        );
    }
    assert_eq!(
        store.hook(hook).await.unwrap().unwrap().status.failed,
        (failed.len() - expected.len()) as u64
    );
    assert_eq!(head(&store, hook).await.id, expected[0]);
    assert_eq!(
        store.recover(hook, since).await.unwrap(),
        Recovery::Replayed(vec![]),
        "nothing failed since any more"
    );
}

/// A failed delivery of a hook a 410 disabled is replayed: it waits, pending, for the hook to
/// be enabled (no delivery is sent to a disabled hook).
async fn a_failed_delivery_of_a_disabled_hook_replays_to_wait_for_it(store: Store) {
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    let ids = append(&store, &[hook], &["a", "b"]).await.concat();
    assert_eq!(fail_head(&store, hook, 400).await, ids[0]);
    let b = head(&store, hook).await;
    record(&store, &b, 410, Outcome::HookGone).await;
    assert_eq!(store.head(hook).await.unwrap(), Head::Disabled);
    assert_eq!(
        store.replay(ids[0]).await.unwrap(),
        Replay::Replayed { hook }
    );
    assert_eq!(store.head(hook).await.unwrap(), Head::Disabled);
    assert_eq!(store.hook(hook).await.unwrap().unwrap().status.pending, 2);
    assert_eq!(
        store.recover(hook, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::Replayed(vec![]),
        "nothing failed any more"
    );
    assert_eq!(store.enable(hook).await.unwrap(), Some(true));
    assert_eq!(head(&store, hook).await.id, ids[0], "in id order");
}

async fn pruning_removes_old_delivered_records_only(store: Store) {
    let [h0, h1] = register(&store, "w", 2).await[..] else {
        unreachable!()
    };
    append(&store, &[h0, h1], &["a"]).await;
    append(&store, &[h0], &["b"]).await;
    append(&store, &[h1], &["c"]).await;
    let a0 = head(&store, h0).await;
    deliver(&store, &a0).await;
    let b0 = head(&store, h0).await;
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
    assert!(store.get(a0.id).await.unwrap().is_none());
    assert!(
        store.get(b0.id).await.unwrap().is_some(),
        "failed deliveries stay, replayable"
    );
    assert_eq!(store.count(DeliveryState::Delivered).await.unwrap(), 0);
    // The body of `a` is still needed by the second hook's delivery.
    assert_eq!(head(&store, h1).await.body.as_ref(), br#"{"tag":"a"}"#);
    assert_eq!(store.pending().await.unwrap(), 2);
    assert_eq!(
        store
            .prune(SystemTime::now() + Duration::from_secs(1))
            .await
            .unwrap(),
        0,
        "nothing more"
    );
}

async fn an_event_keeps_its_body_while_any_of_its_deliveries_is_kept(store: Store) {
    let hooks = register(&store, "lab", 2).await;
    let accepted = store.append(vec![event(&hooks, "e")]).await.unwrap();
    let event_id = accepted[0].id.unwrap();
    let shown = store.event(event_id).await.unwrap().unwrap();
    assert_eq!(shown.id, event_id);
    assert_eq!(shown.workflow.as_deref(), Some("lab"));
    assert_eq!(shown.body.as_deref(), Some(&br#"{"tag":"e"}"#[..]));
    assert!(shown.received_at <= SystemTime::now());
    assert_eq!(
        shown.deliveries.iter().map(|d| d.hook).collect::<Vec<_>>(),
        hooks
    );
    assert_eq!(
        shown.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(),
        accepted[0]
            .deliveries
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    );
    assert!(shown.deliveries.iter().all(|d| d.event == event_id));
    // One delivered and pruned, the other failed: the body stays with the failed one.
    deliver(&store, &head(&store, hooks[0]).await).await;
    fail_head(&store, hooks[1], 400).await;
    let later = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(store.prune(later).await.unwrap(), 1);
    let shown = store.event(event_id).await.unwrap().unwrap();
    assert!(shown.body.is_some());
    assert_eq!(shown.deliveries.len(), 1);
    assert_eq!(shown.deliveries[0].state, DeliveryState::Failed);
    // Replayed, delivered and pruned too: the event is gone with its body.
    store.replay(shown.deliveries[0].id).await.unwrap();
    deliver(&store, &head(&store, hooks[1]).await).await;
    assert_eq!(store.prune(later).await.unwrap(), 1);
    assert!(store.event(event_id).await.unwrap().is_none());
    assert!(store.event(event_id + 999).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Counts and reads.

/// `pending`, `count` of each state and `disabled_hooks` follow every change.
async fn counts_follow_each_state(store: Store) {
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

async fn a_hook_counts_its_failed_deliveries_and_keeps_its_last_attempt(store: Store) {
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

async fn listing_by_state_pages_oldest_first(store: Store) {
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

async fn deliveries_are_listed_newest_first_by_each_filter(store: Store) {
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
async fn following_next_before_visits_every_delivery_once(store: Store) {
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
async fn since_and_until_bound_the_creation_time(store: Store) {
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

// ---------------------------------------------------------------------------------------------
// The registry.

/// A replace of a workflow's hooks: which new hook is which old one.
struct Case {
    name: &'static str,
    old: Vec<&'static str>,
    new: Vec<&'static str>,
    /// For each new hook, the index of the old hook it is (keeps its id), or `None` (new id).
    same_as: &'static [Option<usize>],
}

const TASK_T1_T2: &str = r#"{"filter": "on_task_state_change", "task_ids": ["t1", "t2"],
    "parameters": {"url": "https://a.example/tasks"}}"#;
const PLAN_A: &str =
    r#"{"filter": "on_new_plan", "parameters": {"url": "https://a.example/plan"}}"#;
const PLAN_B: &str =
    r#"{"filter": "on_new_plan", "parameters": {"url": "https://b.example/plan"}}"#;
const RUN: &str =
    r#"{"filter": "on_run_state_change", "parameters": {"url": "https://a.example/run"}}"#;
const SAFETY: &str =
    r#"{"filter": "on_safety_state_change", "parameters": {"url": "https://a.example/safety"}}"#;
const LABWARE_START: &str = r#"{"filter": "on_labware_movement", "labware_ids": ["p1", "p2"],
    "trigger_on": "start", "parameters": {"url": "https://a.example/labware"}}"#;

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "the same hooks in another order",
            old: vec![TASK_T1_T2, PLAN_A, RUN, SAFETY, LABWARE_START],
            new: vec![SAFETY, LABWARE_START, RUN, TASK_T1_T2, PLAN_A],
            same_as: &[Some(3), Some(4), Some(2), Some(0), Some(1)],
        },
        Case {
            name: "a changed URL and headers",
            old: vec![TASK_T1_T2, RUN],
            new: vec![
                r#"{"filter": "on_task_state_change", "task_ids": ["t1", "t2"],
                    "parameters": {"url": "https://moved.example/tasks",
                                   "headers": {"Authorization": "Bearer new"}}}"#,
                RUN,
            ],
            same_as: &[Some(0), Some(1)],
        },
        Case {
            name: "task_ids reordered and repeated",
            old: vec![TASK_T1_T2],
            new: vec![
                r#"{"filter": "on_task_state_change", "task_ids": ["t2", "t1", "t2"],
                "parameters": {"url": "https://a.example/tasks"}}"#,
            ],
            same_as: &[Some(0)],
        },
        Case {
            name: "labware_ids reordered",
            old: vec![LABWARE_START],
            new: vec![
                r#"{"filter": "on_labware_movement", "labware_ids": ["p2", "p1"],
                "trigger_on": "start", "parameters": {"url": "https://b.example/labware"}}"#,
            ],
            same_as: &[Some(0)],
        },
        Case {
            name: "another task_ids set",
            old: vec![TASK_T1_T2, RUN],
            new: vec![
                RUN,
                r#"{"filter": "on_task_state_change", "task_ids": ["t1"],
                    "parameters": {"url": "https://a.example/tasks"}}"#,
            ],
            same_as: &[Some(1), None],
        },
        Case {
            name: "task_ids emptied (every task)",
            old: vec![TASK_T1_T2],
            new: vec![
                r#"{"filter": "on_task_state_change", "task_ids": [],
                "parameters": {"url": "https://a.example/tasks"}}"#,
            ],
            same_as: &[None],
        },
        Case {
            name: "another trigger_on",
            old: vec![LABWARE_START],
            new: vec![
                r#"{"filter": "on_labware_movement", "labware_ids": ["p1", "p2"],
                "trigger_on": "end", "parameters": {"url": "https://a.example/labware"}}"#,
            ],
            same_as: &[None],
        },
        Case {
            name: "another filter",
            old: vec![PLAN_A],
            new: vec![
                r#"{"filter": "on_run_state_change",
                "parameters": {"url": "https://a.example/plan"}}"#,
            ],
            same_as: &[None],
        },
        Case {
            name: "equal hooks pair in order, a third is new",
            old: vec![PLAN_A, PLAN_B],
            new: vec![PLAN_B, PLAN_A, PLAN_A],
            same_as: &[Some(0), Some(1), None],
        },
        Case {
            name: "of two equal hooks, the second is removed",
            old: vec![PLAN_A, PLAN_B, RUN],
            new: vec![RUN, PLAN_B],
            same_as: &[Some(2), Some(0)],
        },
        Case {
            name: "everything removed",
            old: vec![PLAN_A, RUN],
            new: vec![],
            same_as: &[],
        },
    ]
}

/// Each case on its own workflow of one store.
async fn a_replace_keeps_the_ids_of_the_hooks_that_fire_alike(store: Store) {
    let list = |items: &[&str]| hooks(&format!("[{}]", items.join(",")));
    for (n, case) in cases().into_iter().enumerate() {
        let name = case.name;
        let workflow = format!("w{n}");
        let first = store
            .put_workflow(workflow.clone(), list(&case.old), secret())
            .await
            .unwrap();
        assert!(first.created, "{name}");
        let old: Vec<HookId> = first.workflow.hooks.iter().map(|h| h.id).collect();
        assert_eq!(first.added, old, "{name}: all added");
        // Two pending deliveries per old hook.
        append(&store, &old, &["a", "b"]).await;

        let new_hooks = list(&case.new);
        assert_eq!(new_hooks.len(), case.same_as.len(), "{name}: the case");
        let change = store
            .put_workflow(workflow.clone(), new_hooks.clone(), secret())
            .await
            .unwrap();
        assert!(!change.created, "{name}");
        let ids: Vec<HookId> = change.workflow.hooks.iter().map(|h| h.id).collect();
        assert_eq!(ids.len(), new_hooks.len(), "{name}");

        let mut kept = Vec::new();
        let mut added = Vec::new();
        for (i, same_as) in case.same_as.iter().enumerate() {
            match same_as {
                Some(o) => {
                    assert_eq!(ids[i], old[*o], "{name}: new hook {i} is old hook {o}");
                    kept.push(ids[i]);
                }
                None => {
                    assert!(!old.contains(&ids[i]), "{name}: new hook {i} has a new id");
                    assert!(ids[i] > *old.iter().max().unwrap(), "{name}: ids grow");
                    added.push(ids[i]);
                }
            }
        }
        let removed: Vec<HookId> = (0..old.len())
            .filter(|o| !case.same_as.contains(&Some(*o)))
            .map(|o| old[o])
            .collect();
        assert_eq!(change.kept, kept, "{name}: kept");
        assert_eq!(change.added, added, "{name}: added");
        assert_eq!(change.removed, removed, "{name}: removed");
        assert_eq!(
            change.cancelled_deliveries,
            2 * removed.len() as u64,
            "{name}: cancelled"
        );

        // The stored workflow is the new list, in its order, with the new parameters.
        let stored = store.workflow(&workflow).await.unwrap().unwrap();
        let stored_ids: Vec<HookId> = stored.hooks.iter().map(|h| h.id).collect();
        assert_eq!(stored_ids, ids, "{name}: document order");
        assert_eq!(stored.created_at, first.workflow.created_at, "{name}");
        assert!(stored.updated_at >= stored.created_at, "{name}");
        for (i, hook) in stored.hooks.iter().enumerate() {
            assert_eq!(hook.hook, new_hooks[i], "{name}: hook {i} as given");
            assert_eq!(hook.workflow, workflow, "{name}");
            assert_eq!(
                store.hook(hook.id).await.unwrap().unwrap().hook,
                new_hooks[i],
                "{name}"
            );
        }

        // Kept hooks keep their queue: the same deliveries, in order.
        for &id in &kept {
            assert_eq!(
                head(&store, id).await.webhook_id,
                format!("msg_a_{id}"),
                "{name}"
            );
            assert_eq!(
                store.hook(id).await.unwrap().unwrap().status.pending,
                2,
                "{name}"
            );
        }
        for &id in &added {
            assert_eq!(store.head(id).await.unwrap(), Head::Empty, "{name}");
        }
        // Removed hooks: gone from the registry, queue empty, deliveries cancelled with a reason.
        for &id in &removed {
            assert!(
                store.hook(id).await.unwrap().is_none(),
                "{name}: hook_{id} removed"
            );
            assert_eq!(
                store.workflow_of(id).await.unwrap().as_deref(),
                Some(workflow.as_str()),
                "{name}"
            );
            assert_eq!(store.head(id).await.unwrap(), Head::Empty, "{name}");
            let mine = store
                .deliveries(&filter(|f| f.hook = Some(id)))
                .await
                .unwrap()
                .deliveries;
            assert_eq!(mine.len(), 2, "{name}");
            for delivery in mine {
                assert_eq!(delivery.state, DeliveryState::Cancelled, "{name}");
                let reason = delivery.failure.as_deref().unwrap_or_default();
                assert!(reason.contains(&format!("hook_{id}")), "{name}: {reason}");
                assert!(delivery.finished_at.is_some(), "{name}");
                assert_eq!(
                    store.replay(delivery.id).await.unwrap(),
                    Replay::NotFailed(DeliveryState::Cancelled),
                    "{name}"
                );
            }
        }
        let pending: u64 = stored.hooks.iter().map(|h| h.status.pending).sum();
        assert_eq!(pending, 2 * kept.len() as u64, "{name}");
    }
    assert_eq!(
        store
            .deliveries(&filter(|f| f.state = Some(DeliveryState::Cancelled)))
            .await
            .unwrap()
            .deliveries
            .len() as u64,
        store.count(DeliveryState::Cancelled).await.unwrap()
    );
}

async fn a_kept_hook_posts_to_its_new_url_with_the_same_deliveries(store: Store) {
    let old = store
        .put_workflow("w".into(), hooks(&format!("[{TASK_T1_T2}]")), secret())
        .await
        .unwrap();
    let id = old.workflow.hooks[0].id;
    append(&store, &[id], &["a"]).await;
    let before = head(&store, id).await;

    let moved = hooks(
        r#"[{"filter": "on_task_state_change", "task_ids": ["t2", "t1"],
             "parameters": {"url": "https://moved.example/", "headers": {"X-Lab": "7"}}}]"#,
    );
    let change = store
        .put_workflow("w".into(), moved, secret())
        .await
        .unwrap();
    assert_eq!(
        (change.kept.as_slice(), change.cancelled_deliveries),
        ([id].as_slice(), 0)
    );
    assert!(change.added.is_empty() && change.removed.is_empty());
    let after = head(&store, id).await;
    assert_eq!(
        (after.id, &after.webhook_id),
        (before.id, &before.webhook_id)
    );
    let hook = store.hook(id).await.unwrap().unwrap();
    assert_eq!(hook.hook.parameters().url(), "https://moved.example/");
    assert_eq!(hook.hook.parameters().headers()["X-Lab"], "7");
    assert_eq!(hook.workflow, "w");
    assert_eq!(store.workflow_of(id).await.unwrap().as_deref(), Some("w"));
}

async fn deleting_a_workflow_cancels_all_its_deliveries(store: Store) {
    let ids = register(&store, "w", 3).await;
    let other = register(&store, "other", 1).await;
    append(&store, &ids, &["a"]).await;
    append(&store, &ids[..1], &["b"]).await;
    append(&store, &other, &["c"]).await;

    let removal = store
        .delete_workflow("w".into())
        .await
        .unwrap()
        .expect("it existed");
    assert_eq!(removal.removed, ids);
    assert_eq!(removal.cancelled_deliveries, 4);
    assert!(store.workflow("w").await.unwrap().is_none());
    assert_eq!(
        store.delete_workflow("w".into()).await.unwrap(),
        None,
        "a second delete"
    );
    for &id in &ids {
        assert!(store.hook(id).await.unwrap().is_none());
        assert_eq!(store.head(id).await.unwrap(), Head::Empty);
        assert_eq!(store.enable(id).await.unwrap(), None);
        assert_eq!(store.workflow_of(id).await.unwrap().as_deref(), Some("w"));
    }
    let cancelled = store
        .list(DeliveryState::Cancelled, None, 10)
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 4);
    assert!(
        cancelled
            .iter()
            .all(|d| d.failure.as_deref().unwrap().contains("deleted")),
        "{cancelled:?}"
    );
    // Still listed under the deleted workflow.
    let listed = store
        .deliveries(&filter(|f| f.workflow = Some("w".into())))
        .await
        .unwrap();
    assert_eq!(listed.deliveries.len(), 4);
    // The other workflow is untouched.
    assert_eq!(store.pending().await.unwrap(), 1);
    assert_eq!(
        head(&store, other[0]).await.webhook_id,
        format!("msg_c_{}", other[0])
    );
    let left: Vec<String> = store
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, ["other"]);
    // The id can be registered again, with new hook ids.
    let again = register(&store, "w", 1).await;
    assert!(again[0] > *ids.iter().chain(&other).max().unwrap());
    assert_eq!(
        store.workflow_of(ids[0]).await.unwrap().as_deref(),
        Some("w")
    );
    assert_eq!(store.workflow_of(again[0] + 999).await.unwrap(), None);
}

async fn a_failed_delivery_stays_replayable_while_its_hook_stays(store: Store) {
    let ids = register(&store, "w", 2).await;
    append(&store, &ids, &["a"]).await;
    let mut failed = Vec::new();
    for &id in &ids {
        failed.push(fail_head(&store, id, 400).await);
    }

    // New parameters: still the same hook.
    let parameters = HookParameters::new("https://elsewhere.example/", Default::default()).unwrap();
    let hook = store
        .set_parameters(ids[0], parameters.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hook.hook.parameters(), &parameters);
    assert_eq!((hook.id, hook.workflow.as_str()), (ids[0], "w"));
    assert_eq!(
        store.hook(ids[0]).await.unwrap().unwrap().hook.parameters(),
        &parameters
    );
    assert_eq!(
        store.workflow("w").await.unwrap().unwrap().hooks[0]
            .hook
            .parameters(),
        &parameters
    );
    assert_eq!(
        store.replay(failed[0]).await.unwrap(),
        Replay::Replayed { hook: ids[0] }
    );
    assert_eq!(head(&store, ids[0]).await.id, failed[0]);

    // A PUT that keeps hook 0 (moved elsewhere) and drops hook 1.
    let mut list = distinct_hooks(2);
    list[0] = list[0].clone().with_parameters(
        HookParameters::new("https://third.example/", Default::default()).unwrap(),
    );
    list.truncate(1);
    let change = store
        .put_workflow("w".into(), list, secret())
        .await
        .unwrap();
    assert_eq!((change.kept, change.removed), (vec![ids[0]], vec![ids[1]]));
    // The replayed delivery was pending: kept in the queue, not cancelled.
    assert_eq!(change.cancelled_deliveries, 0);
    let again = head(&store, ids[0]).await;
    fail(&store, &again, 400).await;
    assert_eq!(
        store.replay(failed[0]).await.unwrap(),
        Replay::Replayed { hook: ids[0] }
    );

    // Hook 1 is gone: its failed delivery stays failed, on record, and cannot be replayed.
    assert_eq!(
        store.replay(failed[1]).await.unwrap(),
        Replay::HookRemoved { hook: ids[1] }
    );
    let (info, _) = store.get(failed[1]).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Failed);
    assert_eq!(store.head(ids[1]).await.unwrap(), Head::Empty);
    // And set_parameters on a removed or unknown hook does nothing.
    assert!(
        store
            .set_parameters(ids[1], parameters.clone())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .set_parameters(ids[1] + 999, parameters)
            .await
            .unwrap()
            .is_none()
    );
}

async fn an_event_for_a_removed_hook_is_stored_cancelled(store: Store) {
    let ids = register(&store, "w", 2).await;
    store
        .put_workflow("w".into(), distinct_hooks(1), secret())
        .await
        .unwrap();
    assert!(store.hook(ids[1]).await.unwrap().is_none());

    let accepted = store.append(vec![event(&ids, "late")]).await.unwrap();
    let [live, dead] = &accepted[0].deliveries[..] else {
        panic!("two deliveries: {accepted:?}")
    };
    let (live, _) = store.get(live.id).await.unwrap().unwrap();
    let (dead, _) = store.get(dead.id).await.unwrap().unwrap();
    assert_eq!(live.state, DeliveryState::Pending);
    assert_eq!(dead.state, DeliveryState::Cancelled);
    assert!(
        dead.failure
            .as_deref()
            .unwrap()
            .contains(&format!("hook_{}", ids[1]))
    );
    assert_eq!(store.pending().await.unwrap(), 1);
    assert_eq!(store.head(ids[1]).await.unwrap(), Head::Empty);
    let listed = store
        .list(DeliveryState::Cancelled, None, 10)
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|d| d.id).collect::<Vec<_>>(), [dead.id]);
    assert!(
        store
            .list(DeliveryState::Pending, None, 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id != dead.id)
    );
}

async fn the_secret_is_set_at_creation_and_changed_by_rotation_only(store: Store) {
    let first = secret();
    let created = store
        .put_workflow("w".into(), distinct_hooks(1), first.clone())
        .await
        .unwrap();
    assert_eq!(
        created.workflow.secrets.current.expose_whsec(),
        first.expose_whsec()
    );
    assert!(created.workflow.secrets.previous.is_empty());

    let replaced = store
        .put_workflow("w".into(), distinct_hooks(2), secret())
        .await
        .unwrap();
    assert_eq!(
        replaced.workflow.secrets.current.expose_whsec(),
        first.expose_whsec(),
        "a replace keeps the secret"
    );
    assert!(replaced.workflow.secrets.previous.is_empty());

    let second = secret();
    let grace = Duration::from_secs(24 * 3600);
    let before = SystemTime::now();
    let rotated = store
        .rotate_secret("w".into(), second.clone(), grace)
        .await
        .unwrap()
        .unwrap();
    let after = SystemTime::now();
    for workflow in [rotated, store.workflow("w").await.unwrap().unwrap()] {
        assert_eq!(
            workflow.secrets.current.expose_whsec(),
            second.expose_whsec()
        );
        let [(previous, until)] = &workflow.secrets.previous[..] else {
            panic!("the old secret still signs, alone");
        };
        let (previous, until) = (previous.clone(), *until);
        assert_eq!(previous.expose_whsec(), first.expose_whsec());
        // Stored to the millisecond: allow for the rounding down.
        assert!(
            until + Duration::from_millis(1) >= before + grace,
            "{until:?} {before:?}"
        );
        assert!(until <= after + grace, "{until:?} {after:?}");
        assert!(workflow.updated_at >= workflow.created_at);
    }
    assert!(
        store
            .rotate_secret("nobody".into(), secret(), grace)
            .await
            .unwrap()
            .is_none(),
        "no such workflow"
    );
    // A second rotation within the grace period: both earlier secrets still sign, oldest first.
    let third = secret();
    let again = store
        .rotate_secret("w".into(), third.clone(), grace)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.secrets.current.expose_whsec(), third.expose_whsec());
    let previous: Vec<String> = again
        .secrets
        .previous
        .iter()
        .map(|(s, _)| s.expose_whsec())
        .collect();
    assert_eq!(previous, [first.expose_whsec(), second.expose_whsec()]);
    // A zero grace replaces the secret outright, and forgets none still in their grace.
    let fourth = secret();
    let outright = store
        .rotate_secret("w".into(), fourth.clone(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outright.secrets.current.expose_whsec(),
        fourth.expose_whsec()
    );
    let previous: Vec<String> = outright
        .secrets
        .previous
        .iter()
        .map(|(s, _)| s.expose_whsec())
        .collect();
    assert_eq!(
        previous,
        [first.expose_whsec(), second.expose_whsec()],
        "third was replaced outright"
    );
    // What `workflows` loads at start has it too.
    let loaded = store.workflows().await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].secrets.current.expose_whsec(),
        fourth.expose_whsec()
    );
    assert_eq!(loaded[0].secrets.previous.len(), 2);
}

async fn workflows_and_hooks_list_in_pages_by_id(store: Store) {
    let mut ids = Vec::new();
    for (name, n) in [("c", 1), ("a", 2), ("d", 1), ("b", 3)] {
        ids.extend(register(&store, name, n).await);
    }
    let page = |after: Option<&'static str>| {
        let store = store.clone();
        async move {
            store
                .list_workflows(after.map(String::from), 2)
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(page(None).await, ["a", "b"]);
    assert_eq!(page(Some("b")).await, ["c", "d"]);
    assert_eq!(page(Some("bb")).await, ["c", "d"], "after a name not there");
    assert!(page(Some("d")).await.is_empty());
    let listed = store.list_workflows(None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|w| w.hooks.len()).collect::<Vec<_>>(),
        [2, 3, 1, 1],
        "with their hooks"
    );
    let all: Vec<String> = store
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(all, ["a", "b", "c", "d"]);
    assert!(store.workflow("e").await.unwrap().is_none());

    // Hooks in id order, over every workflow, removed ones left out.
    let change = store
        .put_workflow("b".into(), distinct_hooks(1), secret())
        .await
        .unwrap();
    assert_eq!(change.removed.len(), 2);
    let mut live: Vec<HookId> = ids
        .iter()
        .copied()
        .filter(|id| !change.removed.contains(id))
        .collect();
    live.sort_unstable();
    let mut paged = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let hooks = store.list_hooks(after, 2).await.unwrap();
        assert!(hooks.len() <= 2);
        let Some(last) = hooks.last() else { break };
        after = Some(last.id);
        for hook in &hooks {
            assert_eq!(
                store.workflow_of(hook.id).await.unwrap().as_deref(),
                Some(hook.workflow.as_str())
            );
        }
        paged.extend(hooks.iter().map(|h| h.id));
    }
    assert_eq!(paged, live);
    assert_eq!(
        store
            .list_hooks(None, 100)
            .await
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect::<Vec<_>>(),
        live
    );
    assert!(
        store
            .list_hooks(Some(*live.last().unwrap()), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// The test helper itself.

#[test]
fn the_test_database_url_names_the_new_database() {
    let cases = [
        (
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@127.0.0.1:5432/t_1",
        ),
        (
            "postgresql://u:p@h/db?sslmode=require",
            "postgresql://u:p@h/t_1?sslmode=require",
        ),
        ("postgres://h:1", "postgres://h:1/t_1"),
        (
            "postgres://h:1?application_name=x",
            "postgres://h:1/t_1?application_name=x",
        ),
    ];
    for (url, expected) in cases {
        assert_eq!(pg::with_database(url, "t_1"), expected, "{url}");
    }
    assert_ne!(pg::random(), pg::random());
}

/// Each call makes its own empty database on the test PostgreSQL, reachable at the URL given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fresh_database_is_new_and_empty() {
    let Some(first) = pg::fresh_database() else {
        return;
    };
    let second = pg::fresh_database().unwrap();
    assert_ne!(first, second);
    for url in [first, second] {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let connection = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT current_database(), \
                 (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
                &[],
            )
            .await
            .unwrap();
        let (name, tables): (String, i64) = (row.get(0), row.get(1));
        assert!(url.ends_with(&format!("/{name}")), "{url}: {name}");
        assert!(name.starts_with("t_"), "{name}");
        assert_eq!(tables, 0, "{name}: empty");
        drop(client);
        connection.await.unwrap().unwrap();
    }
}
