//! Operations: replay, retry, recover, enable, prune.

use super::*;

pub(crate) async fn a_failed_delivery_replays_with_its_id(store: Store) {
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
pub(crate) async fn retry_answers_for_each_state_of_a_delivery(store: Store) {
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

pub(crate) async fn retry_hook_makes_the_head_due_now(store: Store) {
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

pub(crate) async fn recover_replays_failed_deliveries_in_id_order_among_pending_ones(store: Store) {
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
pub(crate) async fn recover_takes_the_deliveries_created_since(store: Store) {
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
pub(crate) async fn a_failed_delivery_of_a_disabled_hook_replays_to_wait_for_it(store: Store) {
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

pub(crate) async fn pruning_removes_old_delivered_records_only(store: Store) {
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

pub(crate) async fn an_event_keeps_its_body_while_any_of_its_deliveries_is_kept(store: Store) {
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
