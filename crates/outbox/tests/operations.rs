//! What the operations API reads and changes in the store: deliveries listed newest first
//! through the indexes by hook and state, pages of bounded work, per-hook counts of failed
//! deliveries and last attempts, retry now, recover, events, attempts' answers, and a store
//! of the format before opening with its indexes built.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use linq_hooks_delivery::{Attempt, AttemptResult, DeliveryId, HookId, Outbox, Outcome};
use linq_hooks_outbox::{
    DeliveryFilter, DeliveryState, HookRetry, Recovery, Retry, SCAN_PER_PAGE, StatusClass, Store,
};

fn filter(change: impl FnOnce(&mut DeliveryFilter)) -> DeliveryFilter {
    let mut filter = DeliveryFilter::default();
    change(&mut filter);
    filter
}

fn ids(store: &Store, filter: &DeliveryFilter) -> (Vec<DeliveryId>, Option<DeliveryId>) {
    let page = store.deliveries(filter).unwrap();
    (
        page.deliveries.iter().map(|d| d.id).collect(),
        page.next_before,
    )
}

/// Gives up the head of `hook`'s queue with `status`; returns its id.
async fn fail_head(store: &Store, hook: HookId, status: u16) -> DeliveryId {
    let delivery = head(store, hook).await;
    fail(store, &delivery, status).await;
    delivery.id
}

#[tokio::test]
async fn deliveries_are_listed_newest_first_by_workflow_hook_state_and_status() {
    let store = Store::open(store_path("ops-listing")).unwrap();
    let a = register(&store, "lab-a", 2).await;
    let b = register(&store, "lab-b", 1).await;
    // Events 0..3 fire both hooks of lab-a, 3..5 the hook of lab-b: ids 1..=6, then 7, 8.
    for i in 0..3 {
        store
            .append(vec![event(&a, &format!("a{i}"))])
            .await
            .unwrap();
    }
    for i in 0..2 {
        store
            .append(vec![event(&b, &format!("b{i}"))])
            .await
            .unwrap();
    }
    // lab-a's first hook: 1 delivered, 3 failed (422); lab-b: 7 failed (500, given up).
    deliver(&store, &head(&store, a[0]).await).await;
    assert_eq!(fail_head(&store, a[0], 422).await, 3);
    assert_eq!(fail_head(&store, b[0], 500).await, 7);

    let everything = ids(&store, &DeliveryFilter::default());
    assert_eq!(everything, (vec![8, 7, 6, 5, 4, 3, 2, 1], None));
    let cases: Vec<(&str, DeliveryFilter, Vec<DeliveryId>)> = vec![
        (
            "lab-a",
            filter(|f| f.workflow = Some("lab-a".into())),
            vec![6, 5, 4, 3, 2, 1],
        ),
        (
            "lab-b",
            filter(|f| f.workflow = Some("lab-b".into())),
            vec![8, 7],
        ),
        (
            "no such workflow",
            filter(|f| f.workflow = Some("x".into())),
            vec![],
        ),
        ("hook a0", filter(|f| f.hook = Some(a[0])), vec![5, 3, 1]),
        ("hook a1", filter(|f| f.hook = Some(a[1])), vec![6, 4, 2]),
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
            vec![7, 3],
        ),
        (
            "failed of lab-a",
            filter(|f| {
                f.state = Some(DeliveryState::Failed);
                f.workflow = Some("lab-a".into());
            }),
            vec![3],
        ),
        (
            "pending of hook a0",
            filter(|f| {
                f.state = Some(DeliveryState::Pending);
                f.hook = Some(a[0]);
            }),
            vec![5],
        ),
        (
            "4xx",
            filter(|f| f.status = Some(StatusClass::ClientError)),
            vec![3],
        ),
        (
            "5xx",
            filter(|f| f.status = Some(StatusClass::ServerError)),
            vec![7],
        ),
        (
            "2xx",
            filter(|f| f.status = Some(StatusClass::Success)),
            vec![1],
        ),
        (
            "none",
            filter(|f| f.status = Some(StatusClass::None)),
            vec![8, 6, 5, 4, 2],
        ),
        ("before 4", filter(|f| f.before = Some(4)), vec![3, 2, 1]),
        ("before 1", filter(|f| f.before = Some(1)), vec![]),
        (
            "since the future",
            filter(|f| f.since = Some(SystemTime::now() + Duration::from_secs(3600))),
            vec![],
        ),
        (
            "until the past",
            filter(|f| f.until = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1))),
            vec![],
        ),
        (
            "since the epoch, until the future",
            filter(|f| {
                f.since = Some(SystemTime::UNIX_EPOCH);
                f.until = Some(SystemTime::now() + Duration::from_secs(3600));
            }),
            vec![8, 7, 6, 5, 4, 3, 2, 1],
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(ids(&store, &filter), (expected, None), "{name}");
    }
    // The last status comes with each delivery.
    let page = store.deliveries(&DeliveryFilter::default()).unwrap();
    let statuses: Vec<Option<u16>> = page.deliveries.iter().map(|d| d.last_status).collect();
    assert_eq!(
        statuses,
        [
            None,
            Some(500),
            None,
            None,
            None,
            Some(422),
            None,
            Some(200)
        ]
    );

    // Pages: a cursor after each full page, none after the last.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let (page, next) = ids(
            &store,
            &filter(|f| {
                f.limit = 3;
                f.before = before;
            }),
        );
        pages.push(page);
        match next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, [vec![8, 7, 6], vec![5, 4, 3], vec![2, 1]]);
    // A full last page says there is nothing more.
    assert_eq!(ids(&store, &filter(|f| f.limit = 8)), (everything.0, None));
}

/// A filter the indexes cannot answer walks at most `SCAN_PER_PAGE` deliveries per page and
/// hands back a cursor; one they can answer (a hook with nothing) ends at once.
#[tokio::test]
async fn a_page_examines_a_bounded_number_of_deliveries() {
    let store = Store::open(store_path("ops-bounded")).unwrap();
    let hooks = register(&store, "lab", 2).await;
    let total = 2 * SCAN_PER_PAGE + 500;
    for chunk in 0..total / 500 {
        let events = (0..500)
            .map(|i| event(&hooks[..1], &format!("{chunk}-{i}")))
            .collect();
        store.append(events).await.unwrap();
    }
    // Nothing has an answer of 2xx: each page walks its share and says where to go on.
    let delivered = filter(|f| f.status = Some(StatusClass::Success));
    let mut pages = 0;
    let mut before = None;
    loop {
        let mut page_filter = delivered.clone();
        page_filter.before = before;
        let (page, next) = ids(&store, &page_filter);
        assert!(page.is_empty());
        pages += 1;
        match next {
            Some(next) => before = Some(next),
            None => break,
        }
        assert!(pages < 10, "the pages end");
    }
    assert_eq!(pages, 3, "{total} deliveries in pages of {SCAN_PER_PAGE}");
    // The second hook has no deliveries: its index says so at once.
    assert_eq!(
        ids(&store, &filter(|f| f.hook = Some(hooks[1]))),
        (vec![], None)
    );
    assert_eq!(
        ids(
            &store,
            &filter(|f| {
                f.hook = Some(hooks[0]);
                f.state = Some(DeliveryState::Failed);
            })
        ),
        (vec![], None)
    );
}

#[tokio::test]
async fn a_hook_counts_its_failed_deliveries_and_keeps_its_last_attempt() {
    let path = store_path("ops-counts");
    let store = Store::open(&path).unwrap();
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    let status = |store: &Store| store.hook(hook).unwrap().unwrap().status;
    assert_eq!(status(&store).failed, 0);
    assert_eq!(status(&store).last_attempt_at, None);
    for i in 0..4 {
        store
            .append(vec![event(&[hook], &i.to_string())])
            .await
            .unwrap();
    }
    let first = fail_head(&store, hook, 401).await;
    fail_head(&store, hook, 401).await;
    fail_head(&store, hook, 403).await;
    assert_eq!(status(&store).failed, 3);
    assert_eq!(status(&store).last_status, Some(403));
    assert!(status(&store).last_attempt_at.is_some());
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
    assert_eq!(status(&store).last_status, None);
    // A replay takes one off; kept across a reopening.
    assert_eq!(
        store.replay(first).await.unwrap(),
        linq_hooks_outbox::Replay::Replayed { hook }
    );
    assert_eq!(status(&store).failed, 2);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(status(&store).failed, 2);
    assert_eq!(status(&store).pending, 2);
}

#[tokio::test]
async fn recover_replays_failed_deliveries_in_id_order_among_pending_ones() {
    let store = Store::open(store_path("ops-recover")).unwrap();
    let hooks = register(&store, "lab", 2).await;
    let (hook, other) = (hooks[0], hooks[1]);
    for i in 0..3 {
        store
            .append(vec![event(&[hook], &i.to_string())])
            .await
            .unwrap();
    }
    let failed: Vec<DeliveryId> = vec![
        fail_head(&store, hook, 401).await,
        fail_head(&store, hook, 401).await,
        fail_head(&store, hook, 401).await,
    ];
    // Another hook's failure is not this hook's to recover.
    store.append(vec![event(&[other], "o")]).await.unwrap();
    let others = fail_head(&store, other, 401).await;
    // A delivery pending, waiting for its retry an hour out.
    store.append(vec![event(&[hook], "later")]).await.unwrap();
    let waiting = head(&store, hook).await;
    let at = SystemTime::now() + Duration::from_secs(3600);
    store
        .record(&waiting, attempt(503), Outcome::Retry { at })
        .await
        .unwrap();
    store.flush(waiting.hook).await.unwrap();

    let future = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(
        store.recover(hook, future).await.unwrap(),
        Recovery::Replayed(vec![])
    );
    assert_eq!(
        store.recover(hook, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::Replayed(failed.clone())
    );
    assert_eq!(store.hook(hook).unwrap().unwrap().status.failed, 0);
    assert_eq!(store.hook(other).unwrap().unwrap().status.failed, 1);
    assert_eq!(
        store.get(others).unwrap().unwrap().0.state,
        DeliveryState::Failed
    );
    // The queue is in id order: the replayed ones first, each due now with its own id, then
    // the one that was waiting, its due time kept.
    for &id in &failed {
        let next = head(&store, hook).await;
        assert_eq!(next.id, id);
        assert_eq!(next.webhook_id, format!("msg_{}_{hook}", id - 1));
        assert_eq!((next.attempts, next.next_attempt_at), (0, None));
        deliver(&store, &next).await;
    }
    let last = head(&store, hook).await;
    assert_eq!(last.id, waiting.id);
    assert!(last.next_attempt_at.is_some());
    assert_eq!(
        store.recover(999, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::NotFound
    );
}

#[tokio::test]
async fn retry_makes_a_pending_delivery_due_now_with_its_queue_head() {
    let store = Store::open(store_path("ops-retry")).unwrap();
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    for i in 0..3 {
        store
            .append(vec![event(&[hook], &i.to_string())])
            .await
            .unwrap();
    }
    let first = head(&store, hook).await;
    let at = SystemTime::now() + Duration::from_secs(3600);
    store
        .record(&first, attempt(503), Outcome::Retry { at })
        .await
        .unwrap();
    store.flush(first.hook).await.unwrap();
    assert!(head(&store, hook).await.next_attempt_at.is_some());
    // Retrying the third makes the head (the first) due now: it goes first.
    assert_eq!(
        store.retry(3).await.unwrap(),
        Retry::Now {
            hook,
            head: Some(first.id)
        }
    );
    let now_due = head(&store, hook).await;
    assert_eq!(now_due.id, first.id);
    assert_eq!(now_due.next_attempt_at, None);
    assert_eq!(now_due.attempts, 1, "the round's attempts are kept");
    // A failed one is replayed; a delivered one is refused.
    fail(&store, &now_due, 400).await;
    assert_eq!(
        store.retry(first.id).await.unwrap(),
        Retry::Replayed { hook }
    );
    deliver(&store, &head(&store, hook).await).await;
    assert_eq!(
        store.retry(first.id).await.unwrap(),
        Retry::NotRetriable(DeliveryState::Delivered)
    );
    assert_eq!(store.retry(999).await.unwrap(), Retry::NotFound);
    // The hook: its head due now, its pending count.
    let second = head(&store, hook).await;
    store
        .record(&second, attempt(503), Outcome::Retry { at })
        .await
        .unwrap();
    store.flush(second.hook).await.unwrap();
    assert_eq!(
        store.retry_hook(hook).await.unwrap(),
        HookRetry::Woken {
            pending: 2,
            head: Some(second.id)
        }
    );
    assert_eq!(head(&store, hook).await.next_attempt_at, None);
    assert_eq!(store.retry_hook(999).await.unwrap(), HookRetry::NotFound);
    // A hook a 410 disabled: its deliveries wait for it to be enabled.
    let next = head(&store, hook).await;
    store
        .record(&next, attempt(410), Outcome::HookGone)
        .await
        .unwrap();
    store.flush(next.hook).await.unwrap();
    assert_eq!(store.retry_hook(hook).await.unwrap(), HookRetry::Disabled);
    assert_eq!(
        store.retry(next.id).await.unwrap(),
        Retry::HookDisabled { hook }
    );
}

#[tokio::test]
async fn an_event_keeps_its_body_while_any_of_its_deliveries_is_kept() {
    let store = Store::open(store_path("ops-event")).unwrap();
    let hooks = register(&store, "lab", 2).await;
    let accepted = store.append(vec![event(&hooks, "e")]).await.unwrap();
    let event_id = accepted[0].id.unwrap();
    let shown = store.event(event_id).unwrap().unwrap();
    assert_eq!(shown.workflow.as_deref(), Some("lab"));
    assert_eq!(shown.body.as_deref(), Some(&br#"{"tag":"e"}"#[..]));
    assert_eq!(
        shown.deliveries.iter().map(|d| d.hook).collect::<Vec<_>>(),
        hooks
    );
    // One delivered and pruned, the other failed: the body stays with the failed one.
    deliver(&store, &head(&store, hooks[0]).await).await;
    fail_head(&store, hooks[1], 400).await;
    let later = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(store.prune(later).await.unwrap(), 1);
    let shown = store.event(event_id).unwrap().unwrap();
    assert!(shown.body.is_some());
    assert_eq!(shown.deliveries.len(), 1);
    assert_eq!(shown.deliveries[0].state, DeliveryState::Failed);
    // Replayed, delivered and pruned too: the event is gone with its body.
    store.replay(shown.deliveries[0].id).await.unwrap();
    deliver(&store, &head(&store, hooks[1]).await).await;
    assert_eq!(store.prune(later).await.unwrap(), 1);
    assert!(store.event(event_id).unwrap().is_none());
    assert!(store.event(999).unwrap().is_none());
}

#[tokio::test]
async fn an_attempt_keeps_the_start_of_its_answer() {
    let store = Store::open(store_path("ops-answer")).unwrap();
    let [hook] = register(&store, "lab", 1).await[..] else {
        unreachable!()
    };
    store.append(vec![event(&[hook], "x")]).await.unwrap();
    let delivery = head(&store, hook).await;
    let long = "x".repeat(3000);
    let answered = attempt(500).with_response_body(long.as_bytes(), false);
    let at = SystemTime::now() + Duration::from_secs(3600);
    store
        .record(&delivery, answered, Outcome::Retry { at })
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
    let (_, attempts) = store.get(delivery.id).unwrap().unwrap();
    assert_eq!(attempts[0].response_body.as_deref(), Some(&long[..1024]));
    assert!(attempts[0].response_body_truncated);
    assert_eq!(attempts[1].response_body.as_deref(), Some("bad signature"));
    assert!(!attempts[1].response_body_truncated);
}

/// Turns a store written by this version into what format 3 wrote: without the indexes by hook
/// and event and the hooks' states (format 3 kept no failed counts; a hook without a state
/// reads as enabled with nothing counted), `format` = 3.
fn as_format_3(path: &Path) {
    use redb::TableDefinition;
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(TableDefinition::<(u64, u8, u64), ()>::new("by_hook_state"))
        .unwrap();
    txn.delete_table(TableDefinition::<(u64, u64), ()>::new("event_deliveries"))
        .unwrap();
    txn.delete_table(TableDefinition::<u64, &[u8]>::new("hooks"))
        .unwrap();
    txn.open_table(TableDefinition::<&str, u64>::new("counters"))
        .unwrap()
        .insert("format", 3)
        .unwrap();
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_format_3_store_opens_with_its_indexes_and_counts_built() {
    let path = store_path("ops-format-3");
    let (hooks, event_id) = {
        let store = Store::open(&path).unwrap();
        let hooks = register(&store, "lab", 2).await;
        let accepted = store.append(vec![event(&hooks, "a")]).await.unwrap();
        store.append(vec![event(&hooks, "b")]).await.unwrap();
        fail_head(&store, hooks[0], 400).await;
        fail_head(&store, hooks[0], 400).await;
        (hooks, accepted[0].id.unwrap())
    };
    as_format_3(&path);
    let store = Store::open(&path).expect("a format-3 store opens");
    assert_eq!(store.hook(hooks[0]).unwrap().unwrap().status.failed, 2);
    assert_eq!(store.hook(hooks[1]).unwrap().unwrap().status.failed, 0);
    let (of_hook, next) = ids(&store, &filter(|f| f.hook = Some(hooks[0])));
    assert_eq!((of_hook, next), (vec![3, 1], None));
    let failed = ids(
        &store,
        &filter(|f| {
            f.workflow = Some("lab".into());
            f.state = Some(DeliveryState::Failed);
        }),
    );
    assert_eq!(failed, (vec![3, 1], None));
    assert_eq!(store.event(event_id).unwrap().unwrap().deliveries.len(), 2);
    assert_eq!(
        store
            .recover(hooks[0], SystemTime::UNIX_EPOCH)
            .await
            .unwrap(),
        Recovery::Replayed(vec![1, 3])
    );
    drop(store);
    let again = Store::open(&path).expect("and opens again, now format 5");
    assert_eq!(again.hook(hooks[0]).unwrap().unwrap().status.pending, 2);
}
