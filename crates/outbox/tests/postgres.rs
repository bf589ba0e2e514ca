//! The PostgreSQL store (`PgStore`) on a real PostgreSQL: each test on a database of its own,
//! made from `LINQ_HOOKS_TEST_POSTGRES` (a superuser URL on a maintenance database). Without
//! it the tests say loudly that they were skipped (and fail with `CI=true`).
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{
    Attempt, AttemptResult, Delivery, Head, HookId, NewDelivery, Outbox, Outcome,
};
use linq_hooks_model::Hook;
use linq_hooks_outbox::{
    Appended, DeliveryFilter, DeliveryState, DurableOutbox, HookRetry, IdempotencyKey, NewEvent,
    PgOptions, PgStore, Recovery, Replay, Retry,
};
use linq_hooks_signature::Secret;

#[path = "common/postgres.rs"]
mod postgres;
use postgres::fresh_database;

async fn store() -> Option<PgStore> {
    let url = fresh_database()?;
    Some(
        PgStore::connect(PgOptions::new(&url).unwrap())
            .await
            .unwrap(),
    )
}

/// `n` hooks that do not fire alike, posting to `https://lims.example/0`, ….
fn distinct_hooks(n: usize) -> Vec<Hook> {
    let list: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"filter": "on_task_state_change", "task_ids": ["t{i}"],
                    "parameters": {{"url": "https://lims.example/{i}"}}}}"#
            )
        })
        .collect();
    linq_hooks_model::parse_hooks(&format!("[{}]", list.join(",")))
        .unwrap()
        .hooks
}

fn secret() -> Secret {
    Secret::generate().unwrap()
}

async fn register(store: &PgStore, workflow: &str, n: usize) -> Vec<HookId> {
    let change = store
        .put_workflow(workflow.into(), distinct_hooks(n), secret())
        .await
        .unwrap();
    assert!(change.created);
    assert_eq!(change.added.len(), n);
    change.workflow.hooks.iter().map(|h| h.id).collect()
}

fn event(hooks: &[HookId], tag: &str) -> NewEvent {
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

/// A plain connection to the test's database, for what the tests do behind the store's back.
async fn sql_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn head(store: &PgStore, hook: HookId) -> Delivery {
    match store.head(hook).await.unwrap() {
        Head::Ready(delivery) => delivery,
        other => panic!("hook {hook}: expected a delivery, got {other:?}"),
    }
}

fn attempt(status: u16) -> Attempt {
    Attempt::new(
        SystemTime::now(),
        Duration::from_millis(3),
        AttemptResult::Status(status),
    )
}

async fn fail(store: &PgStore, delivery: &Delivery) {
    let outcome = Outcome::Failed {
        reason: "status 400".into(),
    };
    store.record(delivery, attempt(400), outcome).await.unwrap();
}

#[tokio::test]
async fn hooks_keep_their_ids_across_a_replace_and_removed_ones_are_cancelled() {
    let Some(store) = store().await else { return };
    let ids = register(&store, "lab-a", 3).await;
    assert_eq!(ids, [1, 2, 3]);
    store
        .append(vec![event(&ids, "e1"), event(&ids[2..], "e2")])
        .await
        .unwrap();

    // Keep hooks 0 and 1 (1 with a new URL, in another place), drop 2, add a new one.
    let mut new = distinct_hooks(2);
    new.swap(0, 1);
    let moved = linq_hooks_model::parse_hooks(
        r#"[{"filter": "on_task_state_change", "task_ids": ["t1"],
            "parameters": {"url": "https://moved.example/1"}}]"#,
    )
    .unwrap()
    .hooks;
    new[0] = moved[0].clone();
    new.push(
        linq_hooks_model::parse_hooks(
            r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/plan"}}]"#,
        )
        .unwrap()
        .hooks
        .remove(0),
    );
    let change = store
        .put_workflow("lab-a".into(), new, secret())
        .await
        .unwrap();
    assert!(!change.created);
    assert_eq!(change.kept, [2, 1]);
    assert_eq!(change.added, [4]);
    assert_eq!(change.removed, [3]);
    assert_eq!(change.cancelled_deliveries, 2);
    let listed: Vec<HookId> = change.workflow.hooks.iter().map(|h| h.id).collect();
    assert_eq!(listed, [2, 1, 4]);
    assert_eq!(
        change.workflow.hooks[0].hook.parameters().url(),
        "https://moved.example/1"
    );
    assert_eq!(change.workflow.hooks[0].status.pending, 1);

    assert!(store.hook(3).await.unwrap().is_none());
    assert_eq!(
        store.workflow_of(3).await.unwrap().as_deref(),
        Some("lab-a")
    );
    let cancelled = store
        .list(DeliveryState::Cancelled, None, 10)
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 2);
    assert!(cancelled.iter().all(|d| d.hook == 3));
    assert!(
        cancelled[0]
            .failure
            .as_deref()
            .unwrap()
            .contains("no longer in workflow lab-a"),
        "{cancelled:?}"
    );
    assert_eq!(store.pending().await.unwrap(), 2);

    // A delivery for a removed hook is stored cancelled.
    let accepted = store.append(vec![event(&[3], "late")]).await.unwrap();
    let (late, _) = store
        .get(accepted[0].deliveries[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.state, DeliveryState::Cancelled);

    // Ids are never reused: a deleted workflow's ids stay taken.
    let removal = store
        .delete_workflow("lab-a".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removal.removed, [2, 1, 4]);
    assert_eq!(removal.cancelled_deliveries, 2);
    assert!(
        store
            .delete_workflow("lab-a".into())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(register(&store, "lab-b", 1).await, [5]);
    assert_eq!(store.workflows().await.unwrap().len(), 1);
    assert_eq!(store.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn workflows_list_in_order_with_parameters_and_secrets() {
    let Some(store) = store().await else { return };
    for id in ["b", "a", "c"] {
        register(&store, id, 1).await;
    }
    let all: Vec<String> = store
        .workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(all, ["a", "b", "c"]);
    let page: Vec<String> = store
        .list_workflows(Some("a".into()), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(page, ["b"]);
    let hooks: Vec<HookId> = store
        .list_hooks(Some(1), 10)
        .await
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(hooks, [2, 3]);

    let workflow = store.workflow("a").await.unwrap().unwrap();
    let hook = workflow.hooks[0].id;
    let parameters: linq_hooks_model::HookParameters =
        serde_json::from_str(r#"{"url": "https://elsewhere.example/x"}"#).unwrap();
    let changed = store
        .set_parameters(hook, parameters)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        changed.hook.parameters().url(),
        "https://elsewhere.example/x"
    );
    assert_eq!(
        store
            .hook(hook)
            .await
            .unwrap()
            .unwrap()
            .hook
            .parameters()
            .url(),
        "https://elsewhere.example/x"
    );

    // Rotation: the old secret signs for the grace period; a zero grace replaces outright.
    let first = workflow.secrets.current.expose_whsec();
    let second = secret();
    let rotated = store
        .rotate_secret("a".into(), second.clone(), Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rotated.secrets.current.expose_whsec(),
        second.expose_whsec()
    );
    assert_eq!(rotated.secrets.previous.len(), 1);
    assert_eq!(rotated.secrets.previous[0].0.expose_whsec(), first);
    assert!(rotated.secrets.previous[0].1 > SystemTime::now());
    let third = secret();
    let again = store
        .rotate_secret("a".into(), third.clone(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        again.secrets.previous.len(),
        1,
        "the first is still in its grace"
    );
    assert!(
        store
            .rotate_secret("nope".into(), third, Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    // The secret given to a replace of an existing workflow is unused.
    let change = store
        .put_workflow("a".into(), distinct_hooks(1), secret())
        .await
        .unwrap();
    assert_eq!(
        change.workflow.secrets.current.expose_whsec(),
        again.secrets.current.expose_whsec()
    );
}

#[tokio::test]
async fn head_and_record_follow_every_outcome() {
    let Some(store) = store().await else { return };
    let hooks = register(&store, "lab", 2).await;
    let (a, b) = (hooks[0], hooks[1]);
    let accepted = store
        .append(vec![
            event(&hooks, "1"),
            event(&[a], "2"),
            event(&[], "none"),
        ])
        .await
        .unwrap();
    assert_eq!(accepted.len(), 3);
    assert_eq!(accepted[2].id, None);
    assert_eq!(store.pending().await.unwrap(), 3);

    // Delivered, with the start of the answer's body kept.
    let first = head(&store, a).await;
    assert_eq!(first.webhook_id, format!("msg_1_{a}"));
    assert_eq!(&first.body[..], br#"{"tag":"1"}"#);
    let long = "x".repeat(3000);
    store
        .record(
            &first,
            attempt(200).with_response_body(long.as_bytes(), false),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    let (info, attempts) = store.get(first.id).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Delivered);
    assert_eq!(info.last_status, Some(200));
    assert!(info.finished_at.is_some());
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].response_body.as_deref().unwrap().len(), 1024);
    assert!(attempts[0].response_body_truncated);

    // Retry at a time: the head says when.
    let second = head(&store, a).await;
    assert_eq!(second.webhook_id, format!("msg_2_{a}"));
    let later = SystemTime::now() + Duration::from_secs(600);
    store
        .record(&second, attempt(503), Outcome::Retry { at: later })
        .await
        .unwrap();
    let again = head(&store, a).await;
    assert_eq!(again.id, second.id);
    assert_eq!(again.attempts, 1);
    assert!(!again.is_due(SystemTime::now()));
    let status = store.hook(a).await.unwrap().unwrap().status;
    assert_eq!(status.consecutive_failures, 1);
    assert_eq!(status.last_status, Some(503));
    assert_eq!(status.pending, 1);

    // Failed.
    fail(&store, &again).await;
    assert!(matches!(store.head(a).await.unwrap(), Head::Empty));
    let status = store.hook(a).await.unwrap().unwrap().status;
    assert_eq!((status.failed, status.consecutive_failures), (1, 2));
    let (info, attempts) = store.get(second.id).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Failed);
    assert_eq!(info.failure.as_deref(), Some("status 400"));
    assert_eq!(attempts.len(), 2);

    // Gone: the hook is disabled, its delivery waits with it.
    let third = head(&store, b).await;
    store
        .record(&third, attempt(410), Outcome::HookGone)
        .await
        .unwrap();
    assert!(matches!(store.head(b).await.unwrap(), Head::Disabled));
    assert_eq!(store.disabled_hooks().await.unwrap(), 1);
    assert!(!store.hook(b).await.unwrap().unwrap().status.enabled);
    assert_eq!(
        store.retry(third.id).await.unwrap(),
        Retry::HookDisabled { hook: b }
    );
    assert_eq!(store.retry_hook(b).await.unwrap(), HookRetry::Disabled);
    assert_eq!(store.enable(b).await.unwrap(), Some(true));
    assert_eq!(store.enable(b).await.unwrap(), Some(false));
    assert_eq!(store.enable(999).await.unwrap(), None);
    let resumed = head(&store, b).await;
    assert_eq!((resumed.id, resumed.attempts), (third.id, 0));
    assert_eq!(store.count(DeliveryState::Failed).await.unwrap(), 1);
}

#[tokio::test]
async fn an_attempt_in_flight_when_its_hook_is_removed_goes_on_record_and_the_state_stays() {
    let Some(store) = store().await else { return };
    let hook = register(&store, "lab", 1).await[0];
    store.append(vec![event(&[hook], "1")]).await.unwrap();
    let delivery = head(&store, hook).await;
    store
        .put_workflow("lab".into(), distinct_hooks(0), secret())
        .await
        .unwrap();
    store
        .record(&delivery, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let (info, attempts) = store.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Cancelled);
    assert_eq!((info.attempts, info.last_status), (1, Some(200)));
    assert_eq!(attempts.len(), 1);
}

#[tokio::test]
async fn replay_retry_and_recover() {
    let Some(store) = store().await else { return };
    let hook = register(&store, "lab", 1).await[0];
    let accepted = store
        .append((0..4).map(|i| event(&[hook], &i.to_string())).collect())
        .await
        .unwrap();
    let ids: Vec<u64> = accepted.iter().map(|e| e.deliveries[0].id).collect();
    for _ in 0..3 {
        let delivery = head(&store, hook).await;
        fail(&store, &delivery).await;
    }
    // 0, 1, 2 failed; 3 pending.
    assert_eq!(
        store.replay(ids[3]).await.unwrap(),
        Replay::NotFailed(DeliveryState::Pending)
    );
    assert_eq!(store.replay(999).await.unwrap(), Replay::NotFound);
    assert_eq!(
        store.replay(ids[1]).await.unwrap(),
        Replay::Replayed { hook }
    );
    // The replayed one is first in the queue again (id order), on a fresh schedule.
    let first = head(&store, hook).await;
    assert_eq!((first.id, first.attempts), (ids[1], 0));
    assert_eq!(store.hook(hook).await.unwrap().unwrap().status.failed, 2);

    // Retry of a pending one that waits: the head is made due too.
    store
        .record(
            &first,
            attempt(503),
            Outcome::Retry {
                at: SystemTime::now() + Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.retry(ids[3]).await.unwrap(),
        Retry::Now {
            hook,
            head: Some(ids[1])
        }
    );
    let due = head(&store, hook).await;
    assert!(due.is_due(SystemTime::now()));
    assert_eq!(due.attempts, 1, "the round's attempts are kept");
    assert_eq!(store.retry(ids[0]).await.unwrap(), Retry::Replayed { hook });
    assert_eq!(
        store.retry_hook(hook).await.unwrap(),
        HookRetry::Woken {
            pending: 3,
            head: Some(ids[0])
        }
    );
    assert_eq!(store.retry_hook(77).await.unwrap(), HookRetry::NotFound);

    // Recover: the failed ones since a time, in id order.
    assert_eq!(
        store
            .recover(hook, SystemTime::now() + Duration::from_secs(60))
            .await
            .unwrap(),
        Recovery::Replayed(vec![])
    );
    assert_eq!(
        store.recover(hook, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::Replayed(vec![ids[2]])
    );
    assert_eq!(
        store.recover(77, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::NotFound
    );
    assert_eq!(store.count(DeliveryState::Failed).await.unwrap(), 0);
    assert_eq!(store.pending().await.unwrap(), 4);

    // A failed delivery of a removed hook cannot be replayed.
    let delivery = head(&store, hook).await;
    fail(&store, &delivery).await;
    store
        .put_workflow("lab".into(), distinct_hooks(0), secret())
        .await
        .unwrap();
    assert_eq!(
        store.replay(delivery.id).await.unwrap(),
        Replay::HookRemoved { hook }
    );
    assert_eq!(
        store.retry(delivery.id).await.unwrap(),
        Retry::HookRemoved { hook }
    );
    assert_eq!(
        store.retry(ids[3]).await.unwrap(),
        Retry::NotRetriable(DeliveryState::Cancelled)
    );
}

#[tokio::test]
async fn idempotency_keys_repeat_refuse_and_expire() {
    let Some(store) = store().await else { return };
    let hook = register(&store, "lab", 1).await[0];
    let key = |fingerprint: &str, window: Duration| IdempotencyKey {
        key: "lab\u{0}batch-1".into(),
        fingerprint: fingerprint.into(),
        window,
    };
    let hour = Duration::from_secs(3600);
    let Appended::Stored(first) = store
        .append_once(key("f1", hour), vec![event(&[hook], "a")])
        .await
        .unwrap()
    else {
        panic!("first use stores")
    };
    assert_eq!(
        store
            .append_once(key("f1", hour), vec![event(&[hook], "b")])
            .await
            .unwrap(),
        Appended::Repeated(first.clone())
    );
    assert_eq!(
        store
            .append_once(key("f2", hour), vec![event(&[hook], "c")])
            .await
            .unwrap(),
        Appended::KeyReused
    );
    assert_eq!(store.pending().await.unwrap(), 1);

    // A window that has ended: a new ingest.
    let other = IdempotencyKey {
        key: "lab\u{0}batch-2".into(),
        fingerprint: "f".into(),
        window: Duration::ZERO,
    };
    store
        .append_once(other.clone(), vec![event(&[hook], "d")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_once(other, vec![event(&[hook], "e")])
            .await
            .unwrap(),
        Appended::Stored(_)
    ));
    assert_eq!(store.pending().await.unwrap(), 3);
    // Pruning forgets ended windows, not live ones.
    store.prune(SystemTime::now()).await.unwrap();
    assert_eq!(
        store.append_once(key("f1", hour), vec![]).await.unwrap(),
        Appended::Repeated(first)
    );
}

#[tokio::test]
async fn deliveries_page_newest_first_and_events_show_their_deliveries() {
    let Some(store) = store().await else { return };
    let a = register(&store, "wa", 2).await;
    let b = register(&store, "wb", 1).await;
    let mut all = Vec::new();
    for i in 0..5 {
        let accepted = store
            .append(vec![event(&[a[0], a[1], b[0]], &i.to_string())])
            .await
            .unwrap();
        all.extend(accepted[0].deliveries.iter().map(|d| d.id));
    }
    // Everything, newest first, in pages of 4.
    let mut filter = DeliveryFilter::default();
    filter.limit = 4;
    let mut seen = Vec::new();
    loop {
        let page = store.deliveries(&filter).await.unwrap();
        seen.extend(page.deliveries.iter().map(|d| d.id));
        match page.next_before {
            Some(before) => filter.before = Some(before),
            None => break,
        }
    }
    let mut newest_first = all.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // By workflow and state.
    let delivery = head(&store, a[0]).await;
    fail(&store, &delivery).await;
    let mut filter = DeliveryFilter::default();
    filter.workflow = Some("wa".into());
    assert_eq!(
        store.deliveries(&filter).await.unwrap().deliveries.len(),
        10
    );
    filter.state = Some(DeliveryState::Failed);
    let failed = store.deliveries(&filter).await.unwrap();
    assert_eq!(failed.deliveries.len(), 1);
    assert_eq!(failed.deliveries[0].id, delivery.id);
    assert_eq!(failed.next_before, None);
    filter.status = Some("5xx".parse().unwrap());
    assert!(
        store
            .deliveries(&filter)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    let mut filter = DeliveryFilter::default();
    filter.workflow = Some("wb".into());
    filter.hook = Some(a[0]);
    assert!(
        store
            .deliveries(&filter)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    filter.hook = Some(b[0]);
    filter.status = Some("none".parse().unwrap());
    assert_eq!(store.deliveries(&filter).await.unwrap().deliveries.len(), 5);
    filter.until = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
    assert!(
        store
            .deliveries(&filter)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );

    // An event with its body and deliveries.
    let info = store.get(all[0]).await.unwrap().unwrap().0;
    let shown = store.event(info.event).await.unwrap().unwrap();
    assert_eq!(shown.workflow.as_deref(), Some("wa"));
    assert_eq!(shown.body.as_deref(), Some(&br#"{"tag":"0"}"#[..]));
    assert_eq!(shown.deliveries.len(), 3);
    assert!(store.event(9999).await.unwrap().is_none());
    let listed = store
        .list(DeliveryState::Pending, Some(all[0]), 2)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        [all[1], all[2]]
    );
}

#[tokio::test]
async fn prune_removes_delivered_deliveries_and_their_bodies() {
    let Some(store) = store().await else { return };
    let hooks = register(&store, "lab", 2).await;
    let accepted = store
        .append(vec![event(&hooks, "1"), event(&hooks[..1], "2")])
        .await
        .unwrap();
    let event_1 = accepted[0].id.unwrap();
    for _ in 0..2 {
        let delivery = head(&store, hooks[0]).await;
        store
            .record(&delivery, attempt(200), Outcome::Delivered)
            .await
            .unwrap();
    }
    assert_eq!(store.prune(SystemTime::UNIX_EPOCH).await.unwrap(), 0);
    let pruned = store
        .prune(SystemTime::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    // Event 1 keeps its body for its pending delivery to hook 2; event 2 is gone.
    let shown = store.event(event_1).await.unwrap().unwrap();
    assert_eq!(shown.deliveries.len(), 1);
    assert!(shown.body.is_some());
    assert!(
        store
            .event(accepted[1].id.unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(accepted[1].deliveries[0].id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        head(&store, hooks[1]).await.webhook_id,
        format!("msg_1_{}", hooks[1])
    );
}

#[tokio::test]
async fn an_outcome_is_dropped_once_another_process_holds_the_lease() {
    let Some(url) = fresh_database() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    store.append(vec![event(&[hook], "1")]).await.unwrap();
    let delivery = head(&store, hook).await;
    // Another process takes the lease over (this one's expired, say).
    let client = sql_client(&url).await;
    let other = uuid::Uuid::new_v4();
    client
        .execute(
            "UPDATE leases SET owner = $1 WHERE hook = $2",
            &[&other, &(hook as i64)],
        )
        .await
        .unwrap();
    store
        .record(&delivery, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let (info, attempts) = store.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(
        info.state,
        DeliveryState::Pending,
        "the outcome was dropped"
    );
    assert!(attempts.is_empty());
    // (When this process lets go of the hook locally is the cluster's: its lease loop finds
    // the lease lost at its next renewal.)
}

#[tokio::test]
async fn changes_are_notified_when_they_commit() {
    let Some(url) = fresh_database() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    let (client, mut connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (sender, mut heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = message {
                let _ = sender.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    client.batch_execute("LISTEN linq_hooks").await.unwrap();
    let hooks = register(&store, "lab-n", 2).await;
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("a notification within 10 s")
            .unwrap()
    };
    assert_eq!(next().await, ("linq_hooks".into(), "w:lab-n".into()));
    store
        .append(vec![event(&hooks, "1"), event(&hooks[1..], "2")])
        .await
        .unwrap();
    assert_eq!(next().await.1, format!("h:{},{}", hooks[0], hooks[1]));
    store.enable(hooks[0]).await.unwrap();
    assert_eq!(next().await.1, format!("h:{}", hooks[0]));
}

/// A throwaway PostgreSQL cluster of this test's own (initdb, pg_ctl as the `postgres` user),
/// stopped and removed on drop.
struct OwnServer {
    dir: std::path::PathBuf,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(command: &str) -> std::process::Output {
    std::process::Command::new("su")
        .args(["postgres", "-c", command])
        .output()
        .unwrap()
}

impl OwnServer {
    fn start() -> Option<OwnServer> {
        OwnServer::start_with(None)
    }

    /// A server that takes TLS connections only (`hostssl`), with a certificate for
    /// `127.0.0.1` signed by a CA of the test's own; the CA's PEM is in `ca.pem`.
    fn start_tls() -> Option<OwnServer> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "linq-hooks test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        OwnServer::start_with(Some((
            ca_cert.pem(),
            leaf_cert.pem(),
            leaf_key.serialize_pem(),
        )))
    }

    fn ca_path(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    /// `tls`: the CA's, the server's certificate and the server's key, PEM.
    fn start_with(tls: Option<(String, String, String)>) -> Option<OwnServer> {
        if !std::path::Path::new(PG_BIN).join("initdb").exists() {
            eprintln!("SKIPPED: the lost-connection test needs {PG_BIN}/initdb");
            return None;
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("p1-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::process::Command::new("chown")
            .args(["postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        let out = as_postgres(&format!(
            "{PG_BIN}/initdb -D {} -A trust -U postgres --no-sync >/dev/null",
            dir.join("data").display()
        ));
        assert!(out.status.success(), "initdb: {out:?}");
        let data = dir.join("data");
        if let Some((ca, cert, key)) = tls {
            std::fs::write(dir.join("ca.pem"), ca).unwrap();
            std::fs::write(data.join("server.crt"), cert).unwrap();
            std::fs::write(data.join("server.key"), key).unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            std::fs::write(
                data.join("postgresql.auto.conf"),
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )
            .unwrap();
            let out = std::process::Command::new("chown")
                .args(["-R", "postgres", data.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "chown: {out:?}");
            let out = std::process::Command::new("chmod")
                .args(["600", data.join("server.key").to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "chmod: {out:?}");
        }
        let server = OwnServer { dir, port };
        server.run();
        Some(server)
    }

    fn run(&self) {
        let out = as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {} -l {} -w -o '-p {} -k {} -c listen_addresses=127.0.0.1' start",
            self.dir.join("data").display(),
            self.dir.join("log").display(),
            self.port,
            self.dir.display()
        ));
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    fn stop(&self) {
        let out = as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {} -m fast -w stop",
            self.dir.join("data").display()
        ));
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    /// Sends `signal` (`STOP`, `CONT`) to this server's processes: its postmaster and its
    /// children, by pid.
    fn signal(&self, signal: &str) {
        let pidfile = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        let postmaster = pidfile.lines().next().unwrap().trim().to_string();
        let children = std::process::Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8(children.stdout)
                .unwrap()
                .split_whitespace()
                .map(str::to_string),
        );
        let out = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .output()
            .unwrap();
        assert!(out.status.success(), "kill -{signal}: {out:?}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {} -m immediate -w stop",
            self.dir.join("data").display()
        ));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_lost_database_is_an_error_and_the_store_works_again_once_it_is_back() {
    if std::env::var("LINQ_HOOKS_TEST_POSTGRES").is_err() {
        eprintln!("SKIPPED: PostgreSQL tests: LINQ_HOOKS_TEST_POSTGRES is not set");
        return;
    }
    let Some(server) = OwnServer::start() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&server.url()).unwrap())
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    store.append(vec![event(&[hook], "before")]).await.unwrap();

    server.stop();
    let err = store
        .append(vec![event(&[hook], "while down")])
        .await
        .unwrap_err();
    assert!(err.is_storage(), "{err:?}");
    assert!(err.to_string().starts_with("cannot store events"), "{err}");
    assert!(store.pending().await.is_err());
    assert!(store.head(hook).await.is_err());

    server.run();
    // Connections the server closed are replaced; give it a bounded number of tries.
    let mut pending = None;
    for _ in 0..50 {
        match store.pending().await {
            Ok(n) => {
                pending = Some(n);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(pending, Some(1), "the acknowledged event is still there");
    store.append(vec![event(&[hook], "after")]).await.unwrap();
    assert_eq!(
        head(&store, hook).await.webhook_id,
        format!("msg_before_{hook}")
    );
    assert_eq!(store.pending().await.unwrap(), 2);
}

#[tokio::test]
async fn tls_when_the_url_asks_verified_against_its_ca() {
    if std::env::var("LINQ_HOOKS_TEST_POSTGRES").is_err() {
        eprintln!("SKIPPED: PostgreSQL tests: LINQ_HOOKS_TEST_POSTGRES is not set");
        return;
    }
    let Some(server) = OwnServer::start_tls() else {
        return;
    };
    let ca = server.ca_path();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        server.url(),
        ca.display()
    );
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    register(&store, "lab", 1).await;
    assert_eq!(store.workflows().await.unwrap().len(), 1);
    store.close().await;

    // The server takes TLS only: without it, refused.
    let plain = PgStore::connect(PgOptions::new(&server.url()).unwrap())
        .await
        .unwrap_err();
    assert!(plain.is_storage(), "{plain:?}");
    // With TLS but the platform's roots, which do not know the test's CA: refused.
    let unknown =
        PgStore::connect(PgOptions::new(&format!("{}?sslmode=require", server.url())).unwrap())
            .await
            .unwrap_err();
    assert!(unknown.is_storage());
    let chain = format!("{unknown:?}");
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("no root certificates"),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_left_pending_for_a_hook_removed_while_events_arrive() {
    let Some(store) = store().await else { return };
    let task_hook = |i: usize| {
        linq_hooks_model::parse_hooks(&format!(
            r#"[{{"filter": "on_task_state_change", "task_ids": ["t{i}"],
                "parameters": {{"url": "https://lims.example/{i}"}}}}]"#
        ))
        .unwrap()
        .hooks
    };
    let mut hook = store
        .put_workflow("lab".into(), task_hook(0), secret())
        .await
        .unwrap()
        .added[0];
    for round in 1..=20 {
        let (appending, replacing) = (store.clone(), store.clone());
        let append = tokio::spawn(async move {
            let events = (0..5)
                .map(|i| event(&[hook], &format!("{round}_{i}")))
                .collect();
            appending.append(events).await.unwrap()
        });
        let replace = tokio::spawn(async move {
            replacing
                .put_workflow("lab".into(), task_hook(round), secret())
                .await
                .unwrap()
        });
        let (accepted, change) = (append.await.unwrap(), replace.await.unwrap());
        assert_eq!(change.removed, [hook]);
        for event in &accepted {
            let (info, _) = store.get(event.deliveries[0].id).await.unwrap().unwrap();
            assert_eq!(info.state, DeliveryState::Cancelled, "round {round}");
        }
        assert_eq!(store.pending().await.unwrap(), 0, "round {round}");
        hook = change.added[0];
    }
}

#[tokio::test]
async fn a_page_examines_at_most_scan_per_page_deliveries() {
    let Some(store) = store().await else { return };
    let hook = register(&store, "lab", 1).await[0];
    let n = linq_hooks_outbox::SCAN_PER_PAGE + 50;
    let accepted = store
        .append((0..n).map(|i| event(&[hook], &i.to_string())).collect())
        .await
        .unwrap();
    let ids: Vec<u64> = accepted.iter().map(|e| e.deliveries[0].id).collect();
    // A filter nothing matches: a page of nothing, with where to go on from.
    let mut filter = DeliveryFilter::default();
    filter.status = Some("4xx".parse().unwrap());
    let first = store.deliveries(&filter).await.unwrap();
    assert!(first.deliveries.is_empty());
    assert_eq!(first.next_before, Some(ids[49] + 1));
    filter.before = first.next_before;
    let second = store.deliveries(&filter).await.unwrap();
    assert!(second.deliveries.is_empty());
    assert_eq!(second.next_before, None);
    // What matches is found across the cut.
    filter.status = Some("none".parse().unwrap());
    filter.limit = 60;
    let page = store.deliveries(&filter).await.unwrap();
    assert_eq!(page.deliveries.len(), 50);
    assert_eq!(page.deliveries[0].id, ids[49]);
    assert_eq!(page.next_before, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_migrate_once_and_share_the_store() {
    let Some(url) = fresh_database() else {
        return;
    };
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(PgOptions::new(&url).unwrap()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().unwrap());
    }
    let hook = register(&stores[0], "lab", 1).await[0];
    stores[1].append(vec![event(&[hook], "1")]).await.unwrap();
    assert_eq!(stores[2].pending().await.unwrap(), 1);
    assert_eq!(
        stores[2].workflow_of(hook).await.unwrap().as_deref(),
        Some("lab")
    );
}

#[tokio::test]
async fn the_queue_is_read_ahead_and_a_delivery_without_its_body_is_set_aside() {
    let Some(url) = fresh_database() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    let accepted = store
        .append((0..4).map(|i| event(&[hook], &i.to_string())).collect())
        .await
        .unwrap();
    let ids: Vec<u64> = accepted.iter().map(|e| e.deliveries[0].id).collect();
    let first = head(&store, hook).await;
    store
        .record(&first, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let ahead = store.after(hook, first.id, 2).await.unwrap().unwrap();
    assert_eq!(
        ahead.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1], ids[2]]
    );
    assert_eq!(&ahead[0].body[..], br#"{"tag":"1"}"#);

    // The body of the second event goes missing: it is quarantined, never sent, and the hook
    // goes on with the next.
    let client = sql_client(&url).await;
    let event_id = accepted[1].id.unwrap() as i64;
    client
        .execute("DELETE FROM events WHERE id = $1", &[&event_id])
        .await
        .unwrap();
    assert_eq!(store.after(hook, first.id, 2).await.unwrap(), None);
    let next = head(&store, hook).await;
    assert_eq!(next.id, ids[2]);
    let (info, _) = store.get(ids[1]).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Quarantined);
    assert!(
        info.failure.as_deref().unwrap().contains("is missing"),
        "{info:?}"
    );

    // A disabled hook reads nothing ahead.
    store
        .record(&next, attempt(410), Outcome::HookGone)
        .await
        .unwrap();
    assert_eq!(store.after(hook, next.id, 2).await.unwrap(), None);
}

/// Delivery ids are taken before an ingest commits, so an ingest that commits late shows
/// deliveries *behind* the point a hook's worker has reached. The read-ahead must not go past
/// them (with three processes and concurrent posters, it once sent the later events of one
/// request before its earlier ones): it sends the worker back to the head, which sends them in
/// their order. A real ingest is held back here, after it took its ids, by an uncommitted row
/// holding the event id it is about to insert.
#[tokio::test]
async fn an_ingest_that_commits_late_is_not_passed_by_the_read_ahead() {
    let Some(url) = fresh_database() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    let mut client = sql_client(&url).await;
    let watcher = sql_client(&url).await;

    let blocker = client.transaction().await.unwrap();
    hold_back_ingests(&blocker, 1).await;
    let late = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append(vec![event(&[hook], "a1"), event(&[hook], "a2")])
                .await
                .unwrap()
        }
    });
    // The late ingest has its ids once it waits for the blocker's row.
    wait_for_lock_waiters(&watcher, 1).await;

    let early = store.append(vec![event(&[hook], "b1")]).await.unwrap();
    let b1 = head(&store, hook).await;
    assert_eq!(b1.id, early[0].deliveries[0].id);
    store
        .record(&b1, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    blocker.rollback().await.unwrap();
    let late = late.await.unwrap();
    let (a1, a2) = (late[0].deliveries[0].id, late[1].deliveries[0].id);
    assert!(a1 < a2 && a2 < b1.id, "the late ingest took its ids first");

    assert_eq!(
        store.after(hook, b1.id, 32).await.unwrap(),
        None,
        "read ahead past deliveries behind it"
    );
    let next = head(&store, hook).await;
    assert_eq!((next.id, &next.body[..]), (a1, &br#"{"tag":"a1"}"#[..]));
    store
        .record(&next, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let rest = store.after(hook, a1, 32).await.unwrap().unwrap();
    assert_eq!(rest.iter().map(|d| d.id).collect::<Vec<_>>(), [a2]);
}

/// Another way a delivery comes to the queue behind the point a worker has reached: an
/// operator replays an older, failed one (same id, pending again). Whatever wakes the worker
/// or not, its read-ahead goes back to the head, which sends the replayed one first.
#[tokio::test]
async fn a_replayed_older_delivery_is_not_passed_by_the_read_ahead() {
    let Some(store) = store().await else {
        return;
    };
    let hook = register(&store, "lab", 1).await[0];
    let accepted = store
        .append((0..3).map(|i| event(&[hook], &i.to_string())).collect())
        .await
        .unwrap();
    let ids: Vec<u64> = accepted.iter().map(|e| e.deliveries[0].id).collect();
    fail(&store, &head(&store, hook).await).await;
    let second = head(&store, hook).await;
    store
        .record(&second, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    assert_eq!(
        store.replay(ids[0]).await.unwrap(),
        Replay::Replayed { hook }
    );
    assert_eq!(
        store.after(hook, second.id, 32).await.unwrap(),
        None,
        "read ahead past the replayed delivery"
    );
    assert_eq!(head(&store, hook).await.id, ids[0]);
}

/// A process renews its leases on a connection of its own: workers holding every connection of
/// the store's pool (here one, held by an ingest waiting on a row lock) do not make its leases
/// expire, which would let another process send its hooks at the same time.
#[tokio::test]
async fn leases_are_renewed_while_the_pool_is_busy() {
    let Some(url) = fresh_database() else {
        return;
    };
    let lease = Duration::from_secs(2);
    let options = PgOptions::new(&url)
        .unwrap()
        .lease(lease)
        .max_connections(2);
    let store = PgStore::connect(options).await.unwrap();
    let hook = register(&store, "lab", 1).await[0];
    assert!(matches!(store.head(hook).await.unwrap(), Head::Empty));
    let mut client = sql_client(&url).await;
    let watcher = sql_client(&url).await;
    let unexpired = async || -> i64 {
        watcher
            .query_one(
                "SELECT count(*) FROM leases WHERE hook = $1 AND expires_at > now()",
                &[&(hook as i64)],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert_eq!(unexpired().await, 1, "the hook is held");

    // Two ingests take the pool's two connections, each waiting on a row this test holds: an
    // uncommitted event with the id it is about to insert.
    let blocker = client.transaction().await.unwrap();
    hold_back_ingests(&blocker, 2).await;
    let mut ingests = Vec::new();
    for n in 1..=2 {
        ingests.push(tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .append(vec![event(&[hook], &format!("held {n}"))])
                    .await
            }
        }));
        wait_for_lock_waiters(&watcher, n).await;
    }
    // Three leases long: a lease not renewed meanwhile has expired.
    tokio::time::sleep(3 * lease).await;
    assert!(
        ingests.iter().all(|ingest| !ingest.is_finished()),
        "the ingests were held back"
    );
    assert_eq!(
        unexpired().await,
        1,
        "the lease expired while the pool was busy"
    );
    assert_eq!(store.health(), Ok(()));
    blocker.rollback().await.unwrap();
    for ingest in ingests {
        ingest.await.unwrap().unwrap();
    }
    assert_eq!(head(&store, hook).await.body, &br#"{"tag":"held 1"}"#[..]);
}

/// A hook removed while its worker had deliveries read ahead: the worker stops (the dispatcher
/// calls `flush`), and the process lets the hook's lease go instead of renewing it for good.
#[tokio::test]
async fn a_hook_removed_mid_read_ahead_has_its_lease_let_go() {
    let Some(url) = fresh_database() else {
        return;
    };
    let lease = Duration::from_secs(1);
    let store = PgStore::connect(PgOptions::new(&url).unwrap().lease(lease))
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    store
        .append((0..3).map(|i| event(&[hook], &i.to_string())).collect())
        .await
        .unwrap();
    let first = head(&store, hook).await;
    store
        .record(&first, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let ahead = store.after(hook, first.id, 32).await.unwrap().unwrap();
    assert_eq!(ahead.len(), 2);
    store
        .record(&ahead[0], attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    // The hook is removed; its worker stops after the attempt in flight, the rest unsent.
    store.delete_workflow("lab".into()).await.unwrap().unwrap();
    store.flush(hook).await.unwrap();

    let client = sql_client(&url).await;
    let deadline = std::time::Instant::now() + 10 * lease;
    loop {
        let leased: i64 = client
            .query_one(
                "SELECT count(*) FROM leases WHERE hook = $1",
                &[&(hook as i64)],
            )
            .await
            .unwrap()
            .get(0);
        if leased == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removed hook's lease is still held after ten leases"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes the next `n` events ingested wait, once their ingest has taken its ids, until
/// `blocker` ends: it inserts, uncommitted, an event with each id they are about to take.
async fn hold_back_ingests(blocker: &tokio_postgres::Transaction<'_>, n: i64) {
    blocker
        .execute(
            "WITH next AS (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END \
                 AS id FROM event_ids) \
             INSERT INTO events (id, body, received_ms) \
             SELECT taken, ''::bytea, 0 FROM next, generate_series(next.id, next.id + $1 - 1) \
                 AS taken",
            &[&n],
        )
        .await
        .unwrap();
}

/// Waits (at most 30 s) until `n` connections to this database wait for a lock.
async fn wait_for_lock_waiters(client: &tokio_postgres::Client, n: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} of {n} connections wait for a lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_database_that_stops_answering_is_an_error_after_the_timeout_not_a_hang() {
    if std::env::var("LINQ_HOOKS_TEST_POSTGRES").is_err() {
        eprintln!("SKIPPED: PostgreSQL tests: LINQ_HOOKS_TEST_POSTGRES is not set");
        return;
    }
    let Some(server) = OwnServer::start() else {
        return;
    };
    let options = PgOptions::new(&server.url())
        .unwrap()
        .timeout(Duration::from_secs(2));
    let store = PgStore::connect(options).await.unwrap();
    let hook = register(&store, "lab", 1).await[0];
    store.append(vec![event(&[hook], "before")]).await.unwrap();

    // Its processes stopped: connections stay open, nothing answers.
    server.signal("STOP");
    let outcome = tokio::time::timeout(
        Duration::from_secs(60),
        store.append(vec![event(&[hook], "while stopped")]),
    )
    .await;
    let answered_while_stopped = tokio::time::timeout(Duration::from_secs(60), store.pending())
        .await
        .expect("an answer within 60 s");
    server.signal("CONT");
    let err = outcome.expect("an answer within 60 s").unwrap_err();
    assert!(err.is_storage(), "{err:?}");
    assert!(format!("{err:?}").contains("did not answer"), "{err:?}");
    assert!(answered_while_stopped.is_err());

    // Working again once it answers (a bounded number of tries).
    let mut pending = None;
    for _ in 0..50 {
        match store.pending().await {
            Ok(n) => {
                pending = Some(n);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // The append that timed out may have committed once the server went on: 1 or 2.
    let pending = pending.expect("the store works again");
    assert!((1..=2).contains(&pending), "{pending}");
    store.append(vec![event(&[hook], "after")]).await.unwrap();
}

/// A read-ahead batch is mid-attempt until its last delivery is recorded, not only its first:
/// rebalancing (a second process joins) must not release the hook under the rest of the batch,
/// or the new owner sends them while this process still does, out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalancing_does_not_release_a_hook_under_the_rest_of_a_read_ahead_batch() {
    let Some(url) = fresh_database() else {
        return;
    };
    let lease = Duration::from_secs(1);
    let a = PgStore::connect(PgOptions::new(&url).unwrap().lease(lease))
        .await
        .unwrap();
    let hooks = register(&a, "lab", 2).await;
    let (busy, idle) = (hooks[0], hooks[1]);
    // A holds both: `idle` with nothing to send, `busy` in the middle of a batch.
    assert!(matches!(a.head(idle).await.unwrap(), Head::Empty));
    for tag in ["1", "2", "3"] {
        a.append(vec![event(&[busy], tag)]).await.unwrap();
    }
    let first = head(&a, busy).await;
    a.record(&first, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let batch = a.after(busy, first.id, 32).await.unwrap().unwrap();
    assert_eq!(batch.len(), 2);
    a.record(&batch[0], attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    // batch[1] is still in A's hands. Now `idle` gets work, and B joins: A's share drops to one.
    a.append(vec![event(&[idle], "4")]).await.unwrap();
    let _b = b_takes_only_the_idle_hook(
        &url,
        lease,
        busy,
        idle,
        "A still sends it from its read-ahead",
    )
    .await;
    a.record(&batch[1], attempt(200), Outcome::Delivered)
        .await
        .unwrap();
}

/// A second process, B, joins a database where process A holds `busy` (mid-attempt: `why`) and
/// `idle`, both with work: waits (at most 30 s) until A has let go of `idle` and B sends it,
/// and panics if B ever gets a delivery of `busy` meanwhile. Returns B.
async fn b_takes_only_the_idle_hook(
    url: &str,
    lease: Duration,
    busy: HookId,
    idle: HookId,
    why: &str,
) -> PgStore {
    let b = PgStore::connect(PgOptions::new(url).unwrap().lease(lease))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // A head may fail on a loaded machine (taking a lease is bounded by the lease): asked
        // again at the next turn.
        if let Ok(Head::Ready(delivery)) = b.head(busy).await {
            panic!("B got delivery {} of hook {busy} while {why}", delivery.id);
        }
        if matches!(b.head(idle).await, Ok(Head::Ready(_))) {
            return b; // A let go of the hook it could: the idle one.
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B took none of A's hooks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both of A's hooks are mid-read-ahead when B joins: A marks one draining (no new attempt,
/// to move once its attempt is recorded). Its worker, woken, drops the rest of its batch and
/// asks for the head, which is refused: the hook is then no longer mid-attempt, so it moves
/// to B. (Before, the mark of the dropped batch stayed, and the hook stayed draining for good.)
#[tokio::test]
async fn a_draining_hook_whose_worker_dropped_its_read_ahead_moves() {
    let Some(url) = fresh_database() else {
        return;
    };
    let lease = Duration::from_secs(1);
    let a = PgStore::connect(PgOptions::new(&url).unwrap().lease(lease))
        .await
        .unwrap();
    let hooks = register(&a, "lab", 2).await;
    for &hook in &hooks {
        for tag in ["1", "2", "3"] {
            a.append(vec![event(&[hook], tag)]).await.unwrap();
        }
        let first = head(&a, hook).await;
        a.record(&first, attempt(200), Outcome::Delivered)
            .await
            .unwrap();
        let batch = a.after(hook, first.id, 32).await.unwrap().unwrap();
        assert_eq!(batch.len(), 2);
        a.record(&batch[0], attempt(200), Outcome::Delivered)
            .await
            .unwrap();
    }
    let _b = PgStore::connect(PgOptions::new(&url).unwrap().lease(lease))
        .await
        .unwrap();
    let client = sql_client(&url).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Each worker, woken, asks for its head: A's draining hook is refused. (A head may fail
        // on a loaded machine, taking a lease being bounded by the lease: asked again next turn.)
        for &hook in &hooks {
            let _ = a.head(hook).await;
        }
        let shares: Vec<i64> = client
            .query(
                "SELECT count(*) FROM leases WHERE expires_at > now() GROUP BY owner ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        if shares == [1, 1] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no hook moved to B: leases per process {shares:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record that fails (here: it waits on a row lock past the store's timeout) leaves the hook
/// mid-attempt: the dispatcher records again, and meanwhile rebalancing must not hand the hook
/// to another process, which would send the delivery while this one still holds its outcome.
#[tokio::test]
async fn a_hook_whose_record_failed_is_not_moved_by_rebalancing() {
    let Some(url) = fresh_database() else {
        return;
    };
    let lease = Duration::from_secs(1);
    let a = PgStore::connect(
        PgOptions::new(&url)
            .unwrap()
            .lease(lease)
            .timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let hooks = register(&a, "lab", 2).await;
    let (busy, idle) = (hooks[0], hooks[1]);
    assert!(matches!(a.head(idle).await.unwrap(), Head::Empty));
    a.append(vec![event(&[busy], "1")]).await.unwrap();
    let delivery = head(&a, busy).await;
    let mut client = sql_client(&url).await;
    let blocker = client.transaction().await.unwrap();
    blocker
        .execute(
            "SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE",
            &[&(delivery.id as i64)],
        )
        .await
        .unwrap();
    let failed = a.record(&delivery, attempt(200), Outcome::Delivered).await;
    assert!(failed.is_err(), "the record waited past the timeout");
    blocker.rollback().await.unwrap();

    // B joins: A's share drops to one, and it may let go only of the idle hook.
    a.append(vec![event(&[idle], "2")]).await.unwrap();
    let _b = b_takes_only_the_idle_hook(&url, lease, busy, idle, "A still has to record it").await;
    // The dispatcher records again, and this time it is stored.
    a.record(&delivery, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    let (info, _) = a.get(delivery.id).await.unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Delivered);
}

/// Once a record finds the hook's lease taken by another process, this process stops sending
/// the hook at once: no read-ahead, no head (not only at its lease loop's next renewal, while
/// the new owner sends the same deliveries).
#[tokio::test]
async fn a_process_that_finds_its_lease_lost_stops_sending_the_hook() {
    let Some(url) = fresh_database() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    for tag in ["1", "2", "3"] {
        store.append(vec![event(&[hook], tag)]).await.unwrap();
    }
    let delivery = head(&store, hook).await;
    let client = sql_client(&url).await;
    let other = uuid::Uuid::new_v4();
    client
        .execute(
            "UPDATE leases SET owner = $1, expires_at = now() + interval '1 hour' \
             WHERE hook = $2",
            &[&other, &(hook as i64)],
        )
        .await
        .unwrap();
    store
        .record(&delivery, attempt(200), Outcome::Delivered)
        .await
        .unwrap();
    assert!(
        store.after(hook, delivery.id, 32).await.unwrap().is_none(),
        "read ahead for a hook another process holds"
    );
    assert!(
        matches!(store.head(hook).await.unwrap(), Head::Empty),
        "a head for a hook another process holds"
    );
}

/// A transport that answers 200 and, at the second request, has another process take the
/// hook's lease over (as after this process was cut off for longer than the lease).
struct TakenOverAtTheSecond {
    url: String,
    hook: i64,
    sent: std::sync::Mutex<Vec<String>>,
}

#[linq_hooks_transport::async_trait]
impl linq_hooks_transport::Transport for TakenOverAtTheSecond {
    async fn send(
        &self,
        request: linq_hooks_transport::Request,
    ) -> Result<linq_hooks_transport::Response, linq_hooks_transport::Error> {
        let n = {
            let mut sent = self.sent.lock().unwrap();
            sent.push(request.header("webhook-id").unwrap_or_default().to_string());
            sent.len()
        };
        if n == 2 {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .execute(
                    "UPDATE leases SET owner = $1, expires_at = now() + interval '1 hour' \
                     WHERE hook = $2",
                    &[&uuid::Uuid::new_v4(), &self.hook],
                )
                .await
                .unwrap();
        }
        Ok(linq_hooks_transport::Response::new(200))
    }
}

/// A process whose lease is taken over in the middle of a read-ahead batch stops sending the
/// rest of the batch (the new owner sends it), instead of sending it alongside the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_mid_batch_stops_the_rest_of_the_batch() {
    let Some(url) = fresh_database() else {
        return;
    };
    let store = PgStore::connect(PgOptions::new(&url).unwrap())
        .await
        .unwrap();
    let hook = register(&store, "lab", 1).await[0];
    for tag in ["1", "2", "3", "4", "5"] {
        store.append(vec![event(&[hook], tag)]).await.unwrap();
    }
    let transport = Arc::new(TakenOverAtTheSecond {
        url: url.clone(),
        hook: hook as i64,
        sent: std::sync::Mutex::new(Vec::new()),
    });
    let dispatcher = linq_hooks_delivery::Dispatcher::without_hooks(
        transport.clone(),
        Arc::new(store.clone()),
        linq_hooks_delivery::Config::default(),
    );
    let parameters = linq_hooks_delivery::HookParameters::new(
        "https://lims.example/0".to_string(),
        Default::default(),
    )
    .unwrap();
    dispatcher.set(hook, linq_hooks_delivery::Destination::new(parameters));
    let running = dispatcher.clone();
    tokio::spawn(async move { running.run().await });

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while transport.sent.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not two requests in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for the rest of the batch to go, were it to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = transport.sent.lock().unwrap().clone();
    assert_eq!(
        sent,
        ["msg_1_1", "msg_2_1"],
        "sent after the lease was taken over"
    );
    dispatcher.shutdown();
}
