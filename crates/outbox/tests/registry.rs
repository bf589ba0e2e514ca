//! The registry on a real file: which hooks keep their id across a replace, what a removal
//! cancels, secrets and their rotation, reopening, and the format check.

mod common;

use std::time::{Duration, SystemTime};

use common::{distinct_hooks, event, fail, head, hooks, register, secret, store_path};
use linq_hooks_delivery::{Head, HookId, Outbox};
use linq_hooks_model::HookParameters;
use linq_hooks_outbox::{DeliveryState, Replay, Store};

/// A replace of a workflow's hooks: which new hook is which old one.
struct Case {
    name: &'static str,
    old: &'static str,
    new: &'static str,
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
    fn list(items: &[&str]) -> &'static str {
        Box::leak(format!("[{}]", items.join(",")).into_boxed_str())
    }
    vec![
        Case {
            name: "the same hooks in another order",
            old: list(&[TASK_T1_T2, PLAN_A, RUN, SAFETY, LABWARE_START]),
            new: list(&[SAFETY, LABWARE_START, RUN, TASK_T1_T2, PLAN_A]),
            same_as: &[Some(3), Some(4), Some(2), Some(0), Some(1)],
        },
        Case {
            name: "a changed URL and headers",
            old: list(&[TASK_T1_T2, RUN]),
            new: list(&[
                r#"{"filter": "on_task_state_change", "task_ids": ["t1", "t2"],
                    "parameters": {"url": "https://moved.example/tasks",
                                   "headers": {"Authorization": "Bearer new"}}}"#,
                RUN,
            ]),
            same_as: &[Some(0), Some(1)],
        },
        Case {
            name: "task_ids reordered and repeated",
            old: list(&[TASK_T1_T2]),
            new: list(&[
                r#"{"filter": "on_task_state_change", "task_ids": ["t2", "t1", "t2"],
                "parameters": {"url": "https://a.example/tasks"}}"#,
            ]),
            same_as: &[Some(0)],
        },
        Case {
            name: "labware_ids reordered",
            old: list(&[LABWARE_START]),
            new: list(&[
                r#"{"filter": "on_labware_movement", "labware_ids": ["p2", "p1"],
                "trigger_on": "start", "parameters": {"url": "https://b.example/labware"}}"#,
            ]),
            same_as: &[Some(0)],
        },
        Case {
            name: "another task_ids set",
            old: list(&[TASK_T1_T2, RUN]),
            new: list(&[
                RUN,
                r#"{"filter": "on_task_state_change", "task_ids": ["t1"],
                    "parameters": {"url": "https://a.example/tasks"}}"#,
            ]),
            same_as: &[Some(1), None],
        },
        Case {
            name: "task_ids emptied (every task)",
            old: list(&[TASK_T1_T2]),
            new: list(&[r#"{"filter": "on_task_state_change", "task_ids": [],
                "parameters": {"url": "https://a.example/tasks"}}"#]),
            same_as: &[None],
        },
        Case {
            name: "another trigger_on",
            old: list(&[LABWARE_START]),
            new: list(&[
                r#"{"filter": "on_labware_movement", "labware_ids": ["p1", "p2"],
                "trigger_on": "end", "parameters": {"url": "https://a.example/labware"}}"#,
            ]),
            same_as: &[None],
        },
        Case {
            name: "another filter",
            old: list(&[PLAN_A]),
            new: list(&[r#"{"filter": "on_run_state_change",
                "parameters": {"url": "https://a.example/plan"}}"#]),
            same_as: &[None],
        },
        Case {
            name: "equal hooks pair in order, a third is new",
            old: list(&[PLAN_A, PLAN_B]),
            new: list(&[PLAN_B, PLAN_A, PLAN_A]),
            same_as: &[Some(0), Some(1), None],
        },
        Case {
            name: "of two equal hooks, the second is removed",
            old: list(&[PLAN_A, PLAN_B, RUN]),
            new: list(&[RUN, PLAN_B]),
            same_as: &[Some(2), Some(0)],
        },
        Case {
            name: "everything removed",
            old: list(&[PLAN_A, RUN]),
            new: "[]",
            same_as: &[],
        },
    ]
}

#[tokio::test]
async fn a_replace_keeps_the_ids_of_the_hooks_that_fire_alike() {
    for (n, case) in cases().into_iter().enumerate() {
        let name = case.name;
        let store = Store::open(store_path(&format!("replace-{n}"))).unwrap();
        let first = store
            .put_workflow("w", hooks(case.old), secret())
            .await
            .unwrap();
        let old: Vec<HookId> = first.workflow.hooks.iter().map(|h| h.id).collect();
        // Two pending deliveries per old hook.
        store
            .append(vec![event(&old, "a"), event(&old, "b")])
            .await
            .unwrap();

        let new_hooks = hooks(case.new);
        assert_eq!(new_hooks.len(), case.same_as.len(), "{name}: the case");
        let change = store
            .put_workflow("w", new_hooks.clone(), secret())
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
        let stored = store.workflow("w").unwrap().unwrap();
        let stored_ids: Vec<HookId> = stored.hooks.iter().map(|h| h.id).collect();
        assert_eq!(stored_ids, ids, "{name}: document order");
        for (i, hook) in stored.hooks.iter().enumerate() {
            assert_eq!(hook.hook, new_hooks[i], "{name}: hook {i} as given");
            assert_eq!(
                store.hook(hook.id).unwrap().unwrap().hook,
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
            assert_eq!(store.hook(id).unwrap().unwrap().status.pending, 2, "{name}");
        }
        for &id in &added {
            assert_eq!(store.head(id).await.unwrap(), Head::Empty, "{name}");
        }
        // Removed hooks: gone from the registry, queue empty, deliveries cancelled with a reason.
        let cancelled = store.list(DeliveryState::Cancelled, None, 100).unwrap();
        assert_eq!(cancelled.len(), 2 * removed.len(), "{name}");
        for &id in &removed {
            assert!(
                store.hook(id).unwrap().is_none(),
                "{name}: hook_{id} removed"
            );
            assert_eq!(
                store.workflow_of(id).unwrap().as_deref(),
                Some("w"),
                "{name}"
            );
            assert_eq!(store.head(id).await.unwrap(), Head::Empty, "{name}");
            let mine: Vec<_> = cancelled.iter().filter(|d| d.hook == id).collect();
            assert_eq!(mine.len(), 2, "{name}");
            for delivery in mine {
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
        assert_eq!(store.pending().unwrap(), 2 * kept.len() as u64, "{name}");
    }
}

#[tokio::test]
async fn a_kept_hook_posts_to_its_new_url_with_the_same_deliveries() {
    let store = Store::open(store_path("moved")).unwrap();
    let old = store
        .put_workflow("w", hooks(&format!("[{TASK_T1_T2}]")), secret())
        .await
        .unwrap();
    let id = old.workflow.hooks[0].id;
    store.append(vec![event(&[id], "a")]).await.unwrap();
    let before = head(&store, id).await;

    let moved = hooks(
        r#"[{"filter": "on_task_state_change", "task_ids": ["t2", "t1"],
             "parameters": {"url": "https://moved.example/", "headers": {"X-Lab": "7"}}}]"#,
    );
    let change = store.put_workflow("w", moved, secret()).await.unwrap();
    assert_eq!(
        (change.kept.as_slice(), change.cancelled_deliveries),
        ([id].as_slice(), 0)
    );
    let after = head(&store, id).await;
    assert_eq!(
        (after.id, &after.webhook_id),
        (before.id, &before.webhook_id)
    );
    let hook = store.hook(id).unwrap().unwrap();
    assert_eq!(hook.hook.parameters().url(), "https://moved.example/");
    assert_eq!(hook.hook.parameters().headers()["X-Lab"], "7");
    assert_eq!(hook.workflow, "w");
}

#[tokio::test]
async fn deleting_a_workflow_cancels_all_its_deliveries() {
    let store = Store::open(store_path("delete")).unwrap();
    let ids = register(&store, "w", 3).await;
    let other = register(&store, "other", 1).await;
    store
        .append(vec![
            event(&ids, "a"),
            event(&ids[..1], "b"),
            event(&other, "c"),
        ])
        .await
        .unwrap();

    let removal = store
        .delete_workflow("w")
        .await
        .unwrap()
        .expect("it existed");
    assert_eq!(removal.removed, ids);
    assert_eq!(removal.cancelled_deliveries, 4);
    assert!(store.workflow("w").unwrap().is_none());
    assert_eq!(
        store.delete_workflow("w").await.unwrap(),
        None,
        "a second delete"
    );
    for &id in &ids {
        assert!(store.hook(id).unwrap().is_none());
        assert_eq!(store.head(id).await.unwrap(), Head::Empty);
        assert_eq!(store.enable(id).await.unwrap(), None);
        assert_eq!(store.workflow_of(id).unwrap().as_deref(), Some("w"));
    }
    let cancelled = store.list(DeliveryState::Cancelled, None, 10).unwrap();
    assert_eq!(cancelled.len(), 4);
    assert!(
        cancelled
            .iter()
            .all(|d| d.failure.as_deref().unwrap().contains("deleted"))
    );
    // The other workflow is untouched.
    assert_eq!(store.pending().unwrap(), 1);
    assert_eq!(
        head(&store, other[0]).await.webhook_id,
        format!("msg_c_{}", other[0])
    );
    let left: Vec<String> = store
        .workflows()
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, ["other"]);
    // The id can be registered again, with new hook ids.
    let again = register(&store, "w", 1).await;
    assert!(again[0] > *ids.iter().max().unwrap());
}

#[tokio::test]
async fn a_failed_delivery_stays_replayable_while_its_hook_stays() {
    let store = Store::open(store_path("replay-edits")).unwrap();
    let ids = register(&store, "w", 2).await;
    store.append(vec![event(&ids, "a")]).await.unwrap();
    let mut failed = Vec::new();
    for &id in &ids {
        let delivery = head(&store, id).await;
        fail(&store, &delivery, 400).await;
        failed.push(delivery.id);
    }

    // New parameters: still the same hook.
    let parameters = HookParameters::new("https://elsewhere.example/", Default::default()).unwrap();
    let hook = store
        .set_parameters(ids[0], parameters.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hook.hook.parameters(), &parameters);
    assert_eq!(
        store.hook(ids[0]).unwrap().unwrap().hook.parameters(),
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
    let change = store.put_workflow("w", list, secret()).await.unwrap();
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
    let (info, _) = store.get(failed[1]).unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Failed);
    assert_eq!(store.head(ids[1]).await.unwrap(), Head::Empty);
    // And set_parameters on a removed hook does nothing.
    assert!(
        store
            .set_parameters(ids[1], parameters)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_event_for_a_removed_hook_is_stored_cancelled() {
    let store = Store::open(store_path("append-removed")).unwrap();
    let ids = register(&store, "w", 2).await;
    store
        .put_workflow("w", distinct_hooks(1), secret())
        .await
        .unwrap();
    assert!(store.hook(ids[1]).unwrap().is_none());

    let accepted = store.append(vec![event(&ids, "late")]).await.unwrap();
    let [live, dead] = &accepted[0].deliveries[..] else {
        panic!("two deliveries: {accepted:?}")
    };
    let (live, _) = store.get(live.id).unwrap().unwrap();
    let (dead, _) = store.get(dead.id).unwrap().unwrap();
    assert_eq!(live.state, DeliveryState::Pending);
    assert_eq!(dead.state, DeliveryState::Cancelled);
    assert!(
        dead.failure
            .as_deref()
            .unwrap()
            .contains(&format!("hook_{}", ids[1]))
    );
    assert_eq!(store.pending().unwrap(), 1);
    assert_eq!(store.head(ids[1]).await.unwrap(), Head::Empty);
    let listed: Vec<_> = store.list(DeliveryState::Cancelled, None, 10).unwrap();
    assert_eq!(listed.iter().map(|d| d.id).collect::<Vec<_>>(), [dead.id]);
    assert!(
        store
            .list(DeliveryState::Pending, None, 10)
            .unwrap()
            .iter()
            .all(|d| d.id != dead.id)
    );
}

#[tokio::test]
async fn the_secret_is_set_at_creation_and_changed_by_rotation_only() {
    let store = Store::open(store_path("secrets")).unwrap();
    let first = secret();
    let created = store
        .put_workflow("w", distinct_hooks(1), first.clone())
        .await
        .unwrap();
    assert_eq!(
        created.workflow.secrets.current.expose_whsec(),
        first.expose_whsec()
    );
    assert!(created.workflow.secrets.previous.is_empty());

    let ignored = secret();
    let replaced = store
        .put_workflow("w", distinct_hooks(2), ignored)
        .await
        .unwrap();
    assert_eq!(
        replaced.workflow.secrets.current.expose_whsec(),
        first.expose_whsec()
    );
    assert!(replaced.workflow.secrets.previous.is_empty());

    let second = secret();
    let grace = Duration::from_secs(24 * 3600);
    let before = SystemTime::now();
    let rotated = store
        .rotate_secret("w", second.clone(), grace)
        .await
        .unwrap()
        .unwrap();
    let after = SystemTime::now();
    for workflow in [rotated, store.workflow("w").unwrap().unwrap()] {
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
            .rotate_secret("nobody", secret(), grace)
            .await
            .unwrap()
            .is_none(),
        "no such workflow"
    );
    // A second rotation within the grace period: both earlier secrets still sign, oldest first.
    let third = secret();
    let again = store
        .rotate_secret("w", third.clone(), grace)
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
        .rotate_secret("w", fourth.clone(), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        outright.secrets.current.expose_whsec(),
        fourth.expose_whsec()
    );
    assert_eq!(
        outright.secrets.previous.len(),
        2,
        "third was replaced outright"
    );
}

#[tokio::test]
async fn the_registry_survives_reopening() {
    let path = store_path("registry-reopen");
    let first = secret();
    let second = secret();
    let (ids, removed, cancelled, failed, created_at) = {
        let store = Store::open(&path).unwrap();
        let created = store
            .put_workflow("w", distinct_hooks(3), first.clone())
            .await
            .unwrap();
        let ids: Vec<HookId> = created.workflow.hooks.iter().map(|h| h.id).collect();
        register(&store, "v", 1).await;
        store
            .append(vec![event(&ids, "a"), event(&ids, "b")])
            .await
            .unwrap();
        // Hook 0: disabled by a 410. Hook 1: its first delivery failed. Hook 2: removed.
        let gone = head(&store, ids[0]).await;
        store
            .record(
                &gone,
                common::attempt(410),
                linq_hooks_delivery::Outcome::HookGone,
            )
            .await
            .unwrap();
        store.flush(gone.hook).await.unwrap();
        let failing = head(&store, ids[1]).await;
        fail(&store, &failing, 400).await;
        let change = store
            .put_workflow("w", distinct_hooks(2), secret())
            .await
            .unwrap();
        assert_eq!(change.removed, [ids[2]]);
        store
            .rotate_secret("w", second.clone(), Duration::from_secs(3600))
            .await
            .unwrap();
        let clone = store.clone();
        drop(store);
        let created_at = clone.workflow("w").unwrap().unwrap().created_at;
        let removed = ids[2];
        (
            ids,
            removed,
            change.cancelled_deliveries,
            failing.id,
            created_at,
        )
        // the last clone is dropped here
    };
    assert_eq!(cancelled, 2);

    let store = Store::open(&path).unwrap();
    let names: Vec<String> = store
        .workflows()
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(names, ["v", "w"]);
    let w = store.workflow("w").unwrap().unwrap();
    assert_eq!(w.created_at, created_at);
    assert_eq!(w.hooks.iter().map(|h| h.id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(w.hooks[0].hook, distinct_hooks(1)[0]);
    assert_eq!(w.secrets.current.expose_whsec(), second.expose_whsec());
    let previous: Vec<String> = w
        .secrets
        .previous
        .iter()
        .map(|(s, _)| s.expose_whsec())
        .collect();
    assert_eq!(previous, [first.expose_whsec()]);
    // States: disabled with its two deliveries; one failed, one pending; removed and cancelled.
    assert!(!w.hooks[0].status.enabled && w.hooks[0].status.disabled_at.is_some());
    assert_eq!(w.hooks[0].status.pending, 2);
    assert_eq!(store.head(ids[0]).await.unwrap(), Head::Disabled);
    assert_eq!(
        (
            w.hooks[1].status.pending,
            w.hooks[1].status.consecutive_failures
        ),
        (1, 1)
    );
    assert_eq!(
        store.get(failed).unwrap().unwrap().0.state,
        DeliveryState::Failed
    );
    assert!(store.hook(removed).unwrap().is_none());
    assert_eq!(store.workflow_of(removed).unwrap().as_deref(), Some("w"));
    assert_eq!(
        store
            .list(DeliveryState::Cancelled, None, 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.replay(failed).await.unwrap(),
        Replay::Replayed { hook: ids[1] }
    );

    // Hook ids are never reused, even for the id removed before the reopening.
    let change = store
        .put_workflow("w", distinct_hooks(3), secret())
        .await
        .unwrap();
    assert_eq!(change.kept, ids[..2]);
    let max_before = ids.iter().max().unwrap() + 1; // + the hook of "v"
    assert!(
        change.added.iter().all(|&id| id > max_before),
        "{:?} after {ids:?}",
        change.added
    );
}

#[tokio::test]
async fn workflows_list_in_pages_by_id() {
    let store = Store::open(store_path("list-workflows")).unwrap();
    for name in ["c", "a", "d", "b"] {
        register(&store, name, 1).await;
    }
    let page = |after: Option<&str>| -> Vec<String> {
        store
            .list_workflows(after, 2)
            .unwrap()
            .into_iter()
            .map(|w| w.id)
            .collect()
    };
    assert_eq!(page(None), ["a", "b"]);
    assert_eq!(page(Some("b")), ["c", "d"]);
    assert!(page(Some("d")).is_empty());
}

/// Writes a store of format 1, as linq-hooks before hook ids left it: its tables (hooks named
/// by their index, a `u32`) and the counters, with `format = 1`. With `tables` false, only the
/// counters table.
fn write_format_1(path: &std::path::Path, tables: bool) {
    use redb::{Database, TableDefinition};
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut counters = txn
            .open_table(TableDefinition::<&str, u64>::new("counters"))
            .unwrap();
        counters.insert("format", 1).unwrap();
        counters.insert("next_delivery", 2).unwrap();
        if tables {
            let mut pending = txn
                .open_table(TableDefinition::<(u32, u64), ()>::new("pending"))
                .unwrap();
            pending.insert((0, 1), ()).unwrap();
            txn.open_table(TableDefinition::<u32, u64>::new("pending_counts"))
                .unwrap()
                .insert(0, 1)
                .unwrap();
            txn.open_table(TableDefinition::<u32, &[u8]>::new("hooks"))
                .unwrap();
            txn.open_table(TableDefinition::<&str, &str>::new("settings"))
                .unwrap()
                .insert("hooks", "v1")
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_format_1_store_is_refused_with_the_format_named() {
    for (name, tables) in [("format-1-counters", false), ("format-1-tables", true)] {
        let path = store_path(name);
        write_format_1(&path, tables);
        let err = Store::open(&path).expect_err("a format-1 store is refused");
        let message = err.to_string();
        assert!(message.contains("format 1"), "{name}: {message}");
        assert!(message.contains("format 2"), "{name}: {message}");
        // Refused, not changed: still format 1, and opening again says the same.
        let again = Store::open(&path).expect_err("still refused").to_string();
        assert_eq!(again, message, "{name}");
    }
}
