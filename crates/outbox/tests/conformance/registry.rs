//! The registry: workflows and their hooks, edits, removals, secrets.

use super::*;

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
pub(crate) async fn a_replace_keeps_the_ids_of_the_hooks_that_fire_alike(store: Store) {
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

pub(crate) async fn a_kept_hook_posts_to_its_new_url_with_the_same_deliveries(store: Store) {
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

pub(crate) async fn deleting_a_workflow_cancels_all_its_deliveries(store: Store) {
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

pub(crate) async fn a_failed_delivery_stays_replayable_while_its_hook_stays(store: Store) {
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

pub(crate) async fn an_event_for_a_removed_hook_is_stored_cancelled(store: Store) {
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

pub(crate) async fn the_secret_is_set_at_creation_and_changed_by_rotation_only(store: Store) {
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

pub(crate) async fn workflows_and_hooks_list_in_pages_by_id(store: Store) {
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
