//! Format 4 → 5 (issue 12, item 2): a store written by the version before opens with this one,
//! upgraded in place (its pending deliveries leave the index by hook and state, its JSON records
//! stay and read as they are), and everything in it lists, delivers and replays.

mod common;

use std::path::Path;
use std::time::SystemTime;

use common::{deliver, fail, head, store_path};
use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_outbox::{DeliveryFilter, DeliveryState, Recovery, Replay, Store};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
const BY_HOOK_STATE: TableDefinition<'_, (u64, u8, u64), ()> =
    TableDefinition::new("by_hook_state");

/// A copy of `tests/fixtures/format-4.redb` (made as its README says) at a fresh path.
fn format_4_store(name: &str) -> std::path::PathBuf {
    let path = store_path(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-4.redb"),
        &path,
    )
    .unwrap();
    path
}

/// The store's format, and the (hook, state, delivery) entries of its index by hook and state.
fn format_and_index(path: &Path) -> (u64, Vec<(u64, u8, u64)>) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let format = txn
        .open_table(COUNTERS)
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap()
        .value();
    let index = txn
        .open_table(BY_HOOK_STATE)
        .unwrap()
        .iter()
        .unwrap()
        .map(|entry| entry.unwrap().0.value())
        .collect();
    (format, index)
}

/// Ids of the first page of deliveries that `narrow` selects, newest first.
fn ids(store: &Store, narrow: impl FnOnce(&mut DeliveryFilter)) -> Vec<DeliveryId> {
    let mut filter = DeliveryFilter::default();
    narrow(&mut filter);
    let page = store.deliveries(&filter).unwrap();
    assert_eq!(page.next_before, None);
    page.deliveries.iter().map(|d| d.id).collect()
}

fn of_hook(hook: HookId, state: Option<DeliveryState>) -> impl FnOnce(&mut DeliveryFilter) {
    move |f| {
        f.hook = Some(hook);
        f.state = state;
    }
}

#[test]
fn the_format_4_fixture_is_what_its_readme_says() {
    // Checked on the file itself, so that the test below upgrades what it claims to.
    let (format, index) = format_and_index(&format_4_store("fixture-format-4-raw"));
    assert_eq!(format, 4);
    let pending: Vec<u64> = index
        .iter()
        .filter(|(_, state, _)| *state == 0)
        .map(|(_, _, id)| *id)
        .collect();
    assert_eq!(pending, [4, 6, 8, 5, 7, 9], "pending, by hook then id");
}

#[tokio::test]
async fn a_format_4_store_is_upgraded_in_place_and_lists_delivers_and_replays() {
    let path = format_4_store("fixture-format-4");
    let store = Store::open(&path).expect("a format-4 store opens");

    // Upgraded: the pending deliveries left the index by hook and state, nothing else did.
    drop(store);
    let (format, index) = format_and_index(&path);
    assert_eq!(format, 5);
    assert_eq!(
        index,
        [(1, 1, 1), (1, 1, 2), (2, 2, 3)],
        "delivered 1, 2; failed 3"
    );
    let store = Store::open(&path).expect("and opens again, now format 5");

    // Lists: by hook (the pending ones now from the queues), by workflow, by state.
    assert_eq!(store.pending().unwrap(), 6);
    assert_eq!(ids(&store, of_hook(3, None)), [8, 6, 4]);
    assert_eq!(
        ids(&store, of_hook(3, Some(DeliveryState::Pending))),
        [8, 6, 4]
    );
    assert_eq!(ids(&store, of_hook(3, Some(DeliveryState::Failed))), [0; 0]);
    assert_eq!(ids(&store, of_hook(1, None)), [2, 1]);
    assert_eq!(
        ids(&store, of_hook(1, Some(DeliveryState::Pending))),
        [0; 0]
    );
    assert_eq!(
        ids(&store, |f| f.workflow = Some("lab-b".into())),
        [9, 8, 7, 6, 5, 4]
    );
    assert_eq!(
        ids(&store, |f| {
            f.workflow = Some("default".into());
            f.state = Some(DeliveryState::Failed);
        }),
        [3]
    );
    assert_eq!(
        ids(&store, |f| f.state = Some(DeliveryState::Delivered)),
        [2, 1]
    );
    let pending = store.list(DeliveryState::Pending, None, 10).unwrap();
    let pending_ids: Vec<u64> = pending.iter().map(|d| d.id).collect();
    assert_eq!(pending_ids, [4, 5, 6, 7, 8, 9]);
    for delivery in &pending {
        assert!(
            delivery.webhook_id.starts_with("msg_") && delivery.webhook_id.len() == 36,
            "{delivery:?}"
        );
    }
    let event = store.event(4).unwrap().expect("event 4 is kept");
    assert_eq!(event.workflow.as_deref(), Some("lab-b"));
    let of_event: Vec<u64> = event.deliveries.iter().map(|d| d.id).collect();
    assert_eq!(of_event, [4, 5], "one body, two deliveries");
    let body: serde_json::Value = serde_json::from_slice(event.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["plan_id"], "plan-3");
    let hook_3 = store.hook(3).unwrap().unwrap();
    assert_eq!((hook_3.status.pending, hook_3.status.failed), (3, 0));
    assert_eq!(store.hook(2).unwrap().unwrap().status.failed, 1);

    // Delivers: the head of hook 3 is delivery 4 (JSON, one attempt on record); its outcome
    // is written in the new encoding, with the same webhook-id.
    let before = pending[0].clone();
    let first = head(&store, 3).await;
    assert_eq!((first.id, first.attempts), (4, 1));
    assert_eq!(first.webhook_id, before.webhook_id);
    let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["plan_id"], "plan-3");
    deliver(&store, &first).await;
    let (info, attempts) = store.get(4).unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Delivered);
    assert_eq!(info.webhook_id, before.webhook_id);
    assert_eq!(info.last_status, Some(200));
    assert_eq!(attempts.len(), 2, "the JSON attempt and the new one");
    assert!(attempts[0].error.is_some() && attempts[0].status.is_none());
    assert_eq!(attempts[1].status, Some(200));
    assert_eq!(head(&store, 3).await.id, 6);
    assert_eq!(
        ids(&store, of_hook(3, Some(DeliveryState::Pending))),
        [8, 6]
    );
    assert_eq!(ids(&store, of_hook(3, Some(DeliveryState::Delivered))), [4]);
    assert_eq!(store.hook(3).unwrap().unwrap().status.pending, 2);

    // Replays: failed delivery 3 is pending again, its hook's head; failed again, recovered.
    assert_eq!(store.replay(3).await.unwrap(), Replay::Replayed { hook: 2 });
    assert_eq!(ids(&store, of_hook(2, None)), [3]);
    assert_eq!(ids(&store, of_hook(2, Some(DeliveryState::Pending))), [3]);
    let replayed = head(&store, 2).await;
    assert_eq!((replayed.id, replayed.attempts), (3, 0));
    fail(&store, &replayed, 400).await;
    assert_eq!(ids(&store, of_hook(2, Some(DeliveryState::Failed))), [3]);
    assert_eq!(
        store.recover(2, SystemTime::UNIX_EPOCH).await.unwrap(),
        Recovery::Replayed(vec![3])
    );
    assert_eq!(store.get(3).unwrap().unwrap().1.len(), 2);

    // The idempotency key of the format-4 ingest is remembered.
    let key = linq_hooks_outbox::IdempotencyKey {
        key: "default\u{0}batch-1".into(),
        fingerprint: "another body".into(),
        window: std::time::Duration::from_secs(3600),
    };
    assert_eq!(
        store.append_once(key, vec![]).await.unwrap(),
        linq_hooks_outbox::Appended::KeyReused
    );

    // And what it holds now reads again after reopening.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.pending().unwrap(), 6, "5 of lab-b's left, 3 again");
    assert_eq!(
        store.get(4).unwrap().unwrap().0.webhook_id,
        before.webhook_id
    );
    let (_, index) = format_and_index_after(store, &path);
    assert!(
        index.iter().all(|(_, state, _)| *state != 0),
        "no pending entry: {index:?}"
    );
}

/// [`format_and_index`] once `store` is closed.
fn format_and_index_after(store: Store, path: &Path) -> (u64, Vec<(u64, u8, u64)>) {
    drop(store);
    format_and_index(path)
}

#[test]
fn a_store_of_a_newer_format_is_refused_with_the_formats_named() {
    let path = store_path("format-6");
    drop(Store::open(&path).unwrap());
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(COUNTERS)
            .unwrap()
            .insert("format", 6)
            .unwrap();
        txn.commit().unwrap();
    }
    let message = Store::open(&path)
        .expect_err("a newer format is refused")
        .to_string();
    assert!(message.contains("format 6"), "{message}");
    assert!(message.contains("reads format 5"), "{message}");
    assert!(message.contains("2, 3 or 4"), "{message}");
    assert_eq!(format_and_index(&path).0, 6, "refused, not changed");
}
