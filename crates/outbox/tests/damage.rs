//! A store file damaged on disk (issue 11, item 15): each kind of damage is made on a real store
//! file, which is then opened and read by the real code. Damage is contained (no panic leaves
//! the store), reported (`StoreError::is_damaged`), and a damaged delivery is quarantined, never
//! sent, while its hook goes on.

mod common;

use std::path::Path;

use common::{deliver, event, head, register, store_path};
use linq_hooks_delivery::{Head, HookId, Outbox};
use linq_hooks_outbox::{DeliveryState, Store};

/// Where `needle` first occurs in the file.
fn find(file: &[u8], needle: &[u8]) -> usize {
    file.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{} not in the file", String::from_utf8_lossy(needle)))
}

/// A store with one hook and `n` events for it, tagged `e0`, `e1`, … (bodies `{"tag":"eN"}`),
/// closed. Returns the hook.
async fn filled(path: &Path, n: usize) -> HookId {
    let store = Store::open(path).unwrap();
    let hook = register(&store, "lab", 1).await[0];
    for i in 0..n {
        store
            .append(vec![event(&[hook], &format!("e{i}"))])
            .await
            .unwrap();
    }
    hook
}

#[tokio::test]
async fn an_existing_empty_store_file_is_refused_and_a_missing_one_is_created() {
    let path = store_path("empty");
    std::fs::write(&path, b"").unwrap(); // a store truncated to 0 bytes
    let err = Store::open(&path).expect_err("an empty file is refused");
    assert!(err.is_damaged() && err.is_storage(), "{err:?}");
    let message = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("empty"), "{message}");
    assert!(message.contains("remove the file"), "{message}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");

    std::fs::remove_file(&path).unwrap();
    let store = Store::open(&path).expect("a missing file is a new store");
    assert_eq!(store.pending().unwrap(), 0);
}

#[tokio::test]
async fn a_flipped_bit_in_a_body_quarantines_that_delivery_and_its_hook_goes_on() {
    let path = store_path("flip-body");
    let hook = filled(&path, 3).await;
    let mut file = std::fs::read(&path).unwrap();
    // Every copy: redb writes pages anew, so older copies of the body stay in free pages, and
    // which copy comes first in the file depends on the layout.
    let body = br#"{"tag":"e1"}"#;
    let copies: Vec<usize> = (0..file.len() - body.len())
        .filter(|&i| &file[i..i + body.len()] == body)
        .collect();
    assert!(!copies.is_empty());
    for at in copies {
        file[at + 8] ^= 0x04; // "e1" becomes "a1": valid JSON, a different body
    }
    std::fs::write(&path, &file).unwrap();

    let store = Store::open(&path).unwrap();
    let first = head(&store, hook).await;
    assert_eq!(&first.body[..], br#"{"tag":"e0"}"#);
    deliver(&store, &first).await;
    let next = head(&store, hook).await;
    assert_eq!(
        &next.body[..],
        br#"{"tag":"e2"}"#,
        "the damaged one is skipped, not sent"
    );
    let quarantined = store.list(DeliveryState::Quarantined, None, 10).unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].webhook_id, format!("msg_e1_{hook}"));
    let failure = quarantined[0].failure.as_deref().unwrap();
    assert!(failure.contains("checksum"), "{failure}");
    assert_eq!(store.count(DeliveryState::Quarantined).unwrap(), 1);
    assert_eq!(store.pending().unwrap(), 1);
}

#[tokio::test]
async fn a_flipped_bit_in_a_delivery_record_quarantines_it() {
    let path = store_path("flip-record");
    let hook = filled(&path, 2).await;
    let mut file = std::fs::read(&path).unwrap();
    // Every copy: redb writes pages anew, so older copies of the record stay in free pages.
    let copies: Vec<usize> = (0..file.len() - 7)
        .filter(|&i| &file[i..i + 7] == b"msg_e0_")
        .collect();
    assert!(!copies.is_empty());
    for at in copies {
        file[at + 4] ^= 0x01;
    }
    std::fs::write(&path, &file).unwrap();

    let store = Store::open(&path).unwrap();
    let next = head(&store, hook).await;
    assert_eq!(&next.body[..], br#"{"tag":"e1"}"#);
    let quarantined = store.list(DeliveryState::Quarantined, None, 10).unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].hook, hook);
    assert!(quarantined[0].webhook_id.is_empty(), "not known any more");
    let (info, _) = store.get(quarantined[0].id).unwrap().unwrap();
    assert_eq!(info.state, DeliveryState::Quarantined);
}

/// A small xorshift generator: reproducible damage without a dependency.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// The field fault: random bit flips. Before, damaged bodies were sent (validly signed), then
/// the hook stopped for good. Bits are flipped at random in the records (bodies and delivery
/// records), 20 seeds of 6 flips each: whatever a hook's queue gives is an original body
/// byte for byte, and the queue drains (damaged deliveries quarantined) or reports damage.
#[tokio::test]
async fn random_bit_flips_in_records_never_send_a_damaged_body() {
    let original = store_path("flip-random-original");
    let n = 12;
    let hook = filled(&original, n).await;
    let clean = std::fs::read(&original).unwrap();
    let bodies: Vec<String> = (0..n).map(|i| format!(r#"{{"tag":"e{i}"}}"#)).collect();
    // The bytes of every body and delivery record (as far as their webhook id).
    let mut spans = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        spans.push((find(&clean, body.as_bytes()), body.len()));
        spans.push((find(&clean, format!("msg_e{i}_").as_bytes()), 8));
    }
    for seed in 1..=20u64 {
        let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut file = clean.clone();
        for _ in 0..6 {
            let (start, len) = spans[dice.below(spans.len())];
            file[start + dice.below(len)] ^= 1 << dice.below(8);
        }
        let path = store_path(&format!("flip-random-{seed}"));
        std::fs::write(&path, &file).unwrap();
        let store = Store::open(&path).unwrap();
        let mut sent = 0;
        loop {
            match store.head(hook).await {
                Ok(Head::Ready(delivery)) => {
                    let body = String::from_utf8(delivery.body.to_vec()).unwrap();
                    assert!(
                        bodies.contains(&body),
                        "seed {seed}: a damaged body: {body}"
                    );
                    deliver(&store, &delivery).await;
                    sent += 1;
                }
                Ok(Head::Empty) => break,
                Ok(Head::Disabled) => panic!("seed {seed}: disabled"),
                Err(e) => panic!("seed {seed}: damage only in records is quarantined: {e}"),
            }
        }
        let quarantined = store.count(DeliveryState::Quarantined).unwrap();
        assert_eq!(
            sent + quarantined as usize,
            n,
            "seed {seed}: every delivery accounted for"
        );
        assert!(quarantined >= 1, "seed {seed}: some damage was found");
    }
}

/// The field fault: 4 KiB zeroed in the middle of the file. Before, a redb panic repeated
/// without pause. The store must report damage as an error, at opening or when reading, and no
/// panic may leave it.
#[tokio::test]
async fn a_zeroed_page_is_reported_as_damage_not_a_panic() {
    let path = store_path("zeroed");
    let hook = filled(&path, 300).await;
    let mut file = std::fs::read(&path).unwrap();
    let middle = file.len() / 2 / 4096 * 4096;
    file[middle..middle + 4096].fill(0);
    std::fs::write(&path, &file).unwrap();

    let reported = match Store::open(&path) {
        Err(e) => {
            let message = format!("{e}: {}", std::error::Error::source(&e).unwrap());
            assert!(e.is_damaged(), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("backup"), "{message}");
            true
        }
        Ok(store) => {
            let mut reported = false;
            for _ in 0..400 {
                match store.head(hook).await {
                    Ok(Head::Ready(delivery)) => deliver(&store, &delivery).await,
                    Ok(_) => break,
                    Err(e) => {
                        reported = true;
                        assert!(e.to_string().contains("damaged"), "{e}");
                        break;
                    }
                }
            }
            reported |= store.list(DeliveryState::Pending, None, 1000).is_err()
                || store.count(DeliveryState::Quarantined).unwrap_or(1) > 0;
            reported
        }
    };
    assert!(reported, "the damage is reported");
}

/// Turns a store written by this version back into what format 2 wrote: every record bare
/// (no seal: its first 4 bytes, the checksum, dropped), `format` = 2, no `damaged` table. Its
/// deliveries, attempts and hook states are format 5's binary records rather than format 2's
/// JSON (both read the same once sealed): this tests the sealing; `format-2.redb`, written by
/// format 2 itself, tests its JSON.
fn as_format_2(path: &Path) {
    use redb::{ReadableTable, TableDefinition};
    fn strip<K: redb::Key + 'static>(
        txn: &redb::WriteTransaction,
        name: &str,
        owned: impl Fn(K::SelfType<'_>) -> Vec<u8>,
        insert: impl Fn(&mut redb::Table<'_, K, &'static [u8]>, &[u8], &[u8]),
    ) {
        let mut table = txn
            .open_table(TableDefinition::<K, &[u8]>::new(name))
            .unwrap();
        let records: Vec<(Vec<u8>, Vec<u8>)> = table
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (owned(k.value()), v.value()[4..].to_vec())
            })
            .collect();
        for (key, value) in &records {
            insert(&mut table, key, value);
        }
    }
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    let u64_key = |k: u64| k.to_le_bytes().to_vec();
    let u64_put = |t: &mut redb::Table<'_, u64, &'static [u8]>, k: &[u8], v: &[u8]| {
        t.insert(u64::from_le_bytes(k.try_into().unwrap()), v)
            .unwrap();
    };
    let str_key = |k: &str| k.as_bytes().to_vec();
    let str_put = |t: &mut redb::Table<'_, &'static str, &'static [u8]>, k: &[u8], v: &[u8]| {
        t.insert(std::str::from_utf8(k).unwrap(), v).unwrap();
    };
    for name in ["hook_defs", "event_bodies", "deliveries", "hooks"] {
        strip::<u64>(&txn, name, u64_key, u64_put);
    }
    for name in ["workflows", "idempotency"] {
        strip::<&str>(&txn, name, str_key, str_put);
    }
    strip::<(u64, u32)>(
        &txn,
        "attempts",
        |(id, n)| [id.to_le_bytes().as_slice(), &n.to_le_bytes()].concat(),
        |t, k, v| {
            let id = u64::from_le_bytes(k[..8].try_into().unwrap());
            let n = u32::from_le_bytes(k[8..].try_into().unwrap());
            t.insert((id, n), v).unwrap();
        },
    );
    txn.delete_table(TableDefinition::<u64, &[u8]>::new("damaged"))
        .unwrap();
    txn.open_table(TableDefinition::<&str, u64>::new("counters"))
        .unwrap()
        .insert("format", 2)
        .unwrap();
    txn.commit().unwrap();
}

/// A format-2 store (records without checksums) opens: its records are sealed in place, in the
/// opening's transaction, and read as before: workflows, queues, attempts, bodies.
#[tokio::test]
async fn a_format_2_store_is_sealed_in_place_and_reads_as_before() {
    let path = store_path("format-2");
    let hook = {
        let hook = filled(&path, 3).await;
        let store = Store::open(&path).unwrap();
        let first = head(&store, hook).await;
        common::fail(&store, &first, 400).await;
        hook
    };
    as_format_2(&path);
    // Without the seals, this version's reads would fail every record: what follows shows
    // that the opening sealed them.
    let store = Store::open(&path).expect("format 2 opens");
    let workflows = store.workflows().unwrap();
    assert_eq!(workflows.len(), 1);
    assert_eq!(workflows[0].hooks[0].id, hook);
    assert_eq!(store.pending().unwrap(), 2);
    assert_eq!(&head(&store, hook).await.body[..], br#"{"tag":"e1"}"#);
    let failed = store.list(DeliveryState::Failed, None, 10).unwrap();
    let (_, attempts) = store.get(failed[0].id).unwrap().unwrap();
    assert_eq!(attempts[0].status, Some(400));
    assert_eq!(store.count(DeliveryState::Quarantined).unwrap(), 0);
    drop(store);
    let again = Store::open(&path).expect("and opens again, now format 3");
    assert_eq!(again.pending().unwrap(), 2);
}

/// A store written by the version before (format 2: `tests/fixtures/format-2.redb`, made as its
/// README says) opens with this one: sealed in place, everything in it read back.
#[tokio::test]
async fn a_store_written_by_the_version_before_opens() {
    let path = store_path("fixture-format-2");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-2.redb"),
        &path,
    )
    .unwrap();
    let store = Store::open(&path).expect("a format-2 store opens");
    let workflows = store.workflows().unwrap();
    let names: Vec<(&str, Vec<HookId>)> = workflows
        .iter()
        .map(|w| (w.id.as_str(), w.hooks.iter().map(|h| h.id).collect()))
        .collect();
    assert_eq!(names, [("default", vec![1, 2]), ("lab-b", vec![3])]);
    assert_eq!(store.pending().unwrap(), 4);
    let plan = head(&store, 2).await;
    assert_eq!(plan.id, 1);
    let body: serde_json::Value = serde_json::from_slice(&plan.body).unwrap();
    assert_eq!(body["plan_id"], "plan-1");
    assert_eq!(plan.attempts, 1);
    let (info, attempts) = store.get(4).unwrap().unwrap();
    assert_eq!((info.hook, info.state), (1, DeliveryState::Pending));
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].error.is_some(), "{attempts:?}");
    let key = linq_hooks_outbox::IdempotencyKey {
        key: "default\u{0}batch-1".into(),
        fingerprint: "another body".into(),
        window: std::time::Duration::from_secs(3600),
    };
    let again = store.append_once(key, vec![]).await.unwrap();
    assert_eq!(
        again,
        linq_hooks_outbox::Appended::KeyReused,
        "the key is remembered"
    );
    deliver(&store, &plan).await;
    assert_eq!(store.pending().unwrap(), 3);
    // Format 4's indexes were built at opening: by hook (newest first), by event; its
    // records, without the fields format 4 added, read with their defaults.
    let mut of_hook_2 = linq_hooks_outbox::DeliveryFilter::default();
    of_hook_2.hook = Some(2);
    let page = store.deliveries(&of_hook_2).unwrap();
    let ids: Vec<u64> = page.deliveries.iter().map(|d| d.id).collect();
    assert_eq!(ids, [3, 2, 1]);
    assert_eq!(page.deliveries[2].state, DeliveryState::Delivered);
    assert_eq!(
        page.deliveries[1].last_status, None,
        "no answer from port 9"
    );
    let event = store.event(4).unwrap().expect("event 4 is kept");
    assert_eq!(event.workflow.as_deref(), Some("default"));
    assert_eq!(event.deliveries.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(event.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["event"], "run_state_change");
    let (_, attempts) = store.get(4).unwrap().unwrap();
    assert_eq!(attempts[0].response_body, None);
    let hook = store.hook(2).unwrap().unwrap();
    assert_eq!((hook.status.failed, hook.status.pending), (0, 2));
}

/// Rewrites the queue entry `from` (hook, delivery) of the store file at `path` as `to`: what a
/// flipped bit in the entry's key does, made exactly (where such a bit falls in the file
/// depends on the B-tree's layout).
fn move_queue_entry(path: &Path, from: (u64, u64), to: (u64, u64)) {
    let queues = redb::TableDefinition::<(u64, u64), ()>::new("pending");
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(queues).unwrap();
        assert!(table.remove(from).unwrap().is_some(), "{from:?} is queued");
        table.insert(to, ()).unwrap();
    }
    txn.commit().unwrap();
}

/// Takes every delivery of `hook`'s queue in turn and delivers it; returns their bodies.
async fn drain(store: &Store, hook: HookId) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Head::Ready(delivery) = store.head(hook).await.unwrap() {
        bodies.push(String::from_utf8(delivery.body.to_vec()).unwrap());
        deliver(store, &delivery).await;
    }
    bodies
}

/// The reviewer's input: one bit (17) flipped in the delivery id of a queue entry. The entry
/// then names a delivery never made, and the delivery it stood for, whose record is sound,
/// was pending for ever, never sent, with its hook's queue empty and `/healthz` ok. Now the
/// delivery is put back in its place when the store opens, the stray entry is dropped when
/// reached, and nothing is quarantined: nothing was lost.
#[tokio::test]
async fn a_flipped_bit_in_a_queue_entry_loses_no_delivery() {
    let path = store_path("flip-queue-id");
    let hook = filled(&path, 5).await;
    // Deliveries 1..=5 are e0..e4; e1's entry now names delivery 2 | 1 << 17.
    move_queue_entry(&path, (hook, 2), (hook, 2 | 1 << 17));

    let store = Store::open(&path).unwrap();
    assert_eq!(
        drain(&store, hook).await,
        (0..5)
            .map(|i| format!(r#"{{"tag":"e{i}"}}"#))
            .collect::<Vec<_>>(),
        "every delivery, in order"
    );
    assert_eq!(store.count(DeliveryState::Quarantined).unwrap(), 0);
    assert_eq!(store.count(DeliveryState::Delivered).unwrap(), 5);
    assert_eq!(store.pending().unwrap(), 0);
}

/// Other bits of the same kind: the entry names another hook (its delivery would have gone to
/// the wrong receiver, or its own hook sent later ones first), or a delivery that is no longer
/// pending (which would have been sent again). The stray entry is dropped, the delivery it
/// names is left as it is, and the one it stood for is back in its own hook's queue, in order.
#[tokio::test]
async fn a_queue_entry_moved_to_another_hook_or_delivery_is_not_followed() {
    let path = store_path("flip-queue-hook");
    let store = Store::open(&path).unwrap();
    let hooks = register(&store, "lab", 2).await;
    let (a, b) = (hooks[0], hooks[1]);
    for i in 0..4 {
        store
            .append(vec![event(&[a], &format!("e{i}"))])
            .await
            .unwrap();
    }
    // e0 (delivery 1) is delivered; the others wait.
    deliver(&store, &head(&store, a).await).await;
    drop(store);
    move_queue_entry(&path, (a, 3), (b, 3)); // e2's entry in hook b's queue
    move_queue_entry(&path, (a, 4), (a, 1)); // e3's entry names the delivered e0

    let store = Store::open(&path).unwrap();
    // Hook a first: its order holds from the opening on (the counts of a and b no longer
    // matched their entries, so their entries were checked against their records).
    assert_eq!(
        drain(&store, a).await,
        [r#"{"tag":"e1"}"#, r#"{"tag":"e2"}"#, r#"{"tag":"e3"}"#],
    );
    assert!(
        matches!(store.head(b).await.unwrap(), Head::Empty),
        "hook b is not sent hook a's delivery"
    );
    assert_eq!(store.pending().unwrap(), 0);
    assert_eq!(store.count(DeliveryState::Delivered).unwrap(), 4);
    assert_eq!(store.count(DeliveryState::Quarantined).unwrap(), 0);
}
