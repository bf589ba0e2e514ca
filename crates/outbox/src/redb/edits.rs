//! The writer's edits of the delivery tables, one function per job, and the format check at
//! opening. Each runs inside the writer's transaction.

use std::collections::BTreeMap;

use linq_hooks_delivery::{Attempt, AttemptResult, Delivery, DeliveryId, HookId, Outcome};
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::records::*;
use super::views::decode_record;
use crate::records::*;
use crate::{
    AcceptedDelivery, AcceptedEvent, Appended, HookRetry, IdempotencyKey, NewEvent, Recovery,
    Replay, Retry, StoreError,
};

/// The on-disk format; a store of another format is refused, but formats 2 to 4 are upgraded
/// in place. Format 1 (before hook ids) named hooks by their index in a hook file; format 2
/// stored records as bare JSON; format 3 seals each record with its checksum
/// (`records::seal`); format 4 adds the indexes of deliveries by hook and by event and the
/// per-hook counts of failed deliveries (`upgrade_to_4`). Records of format 4 have fields
/// format 3 lacks, all optional (serde defaults), so older records read as they are. Format 5
/// writes deliveries, attempts and hook states in a compact binary encoding (`wire`; the JSON
/// records of older formats are read as they are, never rewritten in bulk) and keeps pending
/// deliveries out of the index by hook and state, where the queues (`PENDING`) stand for them
/// (`upgrade_to_5`).
const FORMAT: u64 = 5;

pub(crate) enum Opened {
    Storage(redb::Error),
    Refused(StoreError),
}

impl<E: Into<redb::Error>> From<E> for Opened {
    fn from(e: E) -> Opened {
        Opened::Storage(e.into())
    }
}

/// Checks the format (sealing a format-2 store in the same transaction), then creates the
/// tables. The format is read first: an older store's tables have other key types (format 1
/// keyed hooks by a `u32` index), which opening them with this version's definitions would
/// refuse as a type mismatch, hiding the reason.
pub(crate) fn check_format(txn: &WriteTransaction) -> Result<(), Opened> {
    let format = {
        let counters = txn.open_table(COUNTERS)?;
        let format = counters.get("format")?.map(|v| v.value());
        (format, counters.len()?)
    };
    match format {
        (None, 0) => {
            txn.open_table(COUNTERS)?.insert("format", FORMAT)?;
        }
        (Some(FORMAT), _) => {}
        (Some(2), _) => {
            let sealed = seal_format_2(txn)?;
            let indexed = upgrade_to_4(txn)?;
            txn.open_table(COUNTERS)?.insert("format", FORMAT)?;
            tracing::info!(
                "the store was upgraded from format 2 to {FORMAT}: {sealed} records sealed with their checksums, {indexed} deliveries indexed by hook and event"
            );
        }
        (Some(3), _) => {
            let indexed = upgrade_to_4(txn)?;
            txn.open_table(COUNTERS)?.insert("format", FORMAT)?;
            tracing::info!(
                "the store was upgraded from format 3 to {FORMAT}: {indexed} deliveries indexed by hook and event"
            );
        }
        (Some(4), _) => {
            let dropped = upgrade_to_5(txn)?;
            txn.open_table(COUNTERS)?.insert("format", FORMAT)?;
            tracing::info!(
                "the store was upgraded from format 4 to {FORMAT}: {dropped} pending deliveries left to their queues in the index by hook and state; records written from now on are binary"
            );
        }
        (found, _) => {
            let found = found.unwrap_or(1);
            return Err(Opened::Refused(StoreError::corrupt(format!(
                "the store has format {found}; this version reads format {FORMAT} and upgrades \
                 format 2, 3 or 4 in place \
                 (format 1 named hooks by their place in a hook file: drain it with the \
                 version that wrote it, or start a new store)"
            ))));
        }
    }
    txn.open_table(DELIVERIES)?;
    txn.open_table(EVENT_BODIES)?;
    txn.open_table(EVENT_REFS)?;
    txn.open_table(PENDING)?;
    txn.open_table(BY_STATE)?;
    txn.open_table(BY_HOOK_STATE)?;
    txn.open_table(EVENT_DELIVERIES)?;
    txn.open_table(DELIVERED_AT)?;
    txn.open_table(ATTEMPTS)?;
    txn.open_table(HOOKS)?;
    txn.open_table(PENDING_COUNTS)?;
    txn.open_table(WORKFLOWS)?;
    txn.open_table(HOOK_DEFS)?;
    txn.open_table(IDEMPOTENCY)?;
    txn.open_table(IDEMPOTENCY_EXPIRY)?;
    txn.open_table(DAMAGED)?;
    Ok(())
}

/// Format 2 → 3: seals every record of the tables of records with its checksum, in the
/// opening's transaction (all or nothing). Returns how many records it sealed.
fn seal_format_2(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    /// Reads a table's records, then writes each back sealed. `$owned` is the key as owned
    /// data, `$key` turns a stored key into it, `$borrow` an owned key into the table's key.
    macro_rules! seal_table {
        ($table:expr, $owned:ty, $key:expr, $borrow:expr) => {{
            let mut table = txn.open_table($table)?;
            let records: Vec<($owned, Vec<u8>)> = table
                .iter()?
                .map(|entry| entry.map(|(k, v)| ($key(k.value()), seal(v.value()))))
                .collect::<Result<_, _>>()?;
            for (key, sealed) in &records {
                table.insert($borrow(key), sealed.as_slice())?;
            }
            records.len() as u64
        }};
    }
    let same = |k: u64| k;
    let by_value = |k: &u64| *k;
    let mut sealed = 0;
    sealed += seal_table!(WORKFLOWS, String, |k: &str| k.to_string(), String::as_str);
    sealed += seal_table!(IDEMPOTENCY, String, |k: &str| k.to_string(), String::as_str);
    sealed += seal_table!(HOOK_DEFS, u64, same, by_value);
    sealed += seal_table!(EVENT_BODIES, u64, same, by_value);
    sealed += seal_table!(DELIVERIES, u64, same, by_value);
    sealed += seal_table!(HOOKS, u64, same, by_value);
    sealed += seal_table!(ATTEMPTS, (u64, u32), |k: (u64, u32)| k, |k: &(u64, u32)| *k);
    Ok(sealed)
}

/// Format 3 → 4, in the opening's transaction (all or nothing): indexes every delivery by
/// (hook, state) (but pending ones: format 5's `PENDING` stands for them) and by event, and counts each hook's failed deliveries into its state. Reads
/// each delivery record once; a record that cannot be read is left out (the queue check and
/// `head` quarantine it when its hook reaches it). Returns how many deliveries it indexed.
fn upgrade_to_4(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    let mut by_hook_state = txn.open_table(BY_HOOK_STATE)?;
    let mut by_event = txn.open_table(EVENT_DELIVERIES)?;
    let mut failed: BTreeMap<u64, u64> = BTreeMap::new();
    let mut indexed = 0;
    for entry in txn.open_table(DELIVERIES)?.iter()? {
        let (id, value) = entry?;
        let id = id.value();
        let Ok(record) = decode_record::<DeliveryRecord>(value.value()) else {
            continue;
        };
        if record.state != DeliveryState::Pending {
            by_hook_state.insert((record.hook, record.state.code(), id), ())?;
        }
        if record.event != 0 {
            by_event.insert((record.event, id), ())?;
        }
        if record.state == DeliveryState::Failed {
            *failed.entry(record.hook).or_default() += 1;
        }
        indexed += 1;
    }
    drop((by_hook_state, by_event));
    for (hook, n) in failed {
        update_hook(txn, hook, |h| h.failed = n)?;
    }
    Ok(indexed)
}

/// Format 4 → 5, in the opening's transaction: drops the pending deliveries' entries of the
/// index by hook and state (each hook's queue in `PENDING` is that list). Records stay as they
/// are (JSON), and are read as such. Returns how many entries it dropped.
fn upgrade_to_5(txn: &WriteTransaction) -> Result<u64, redb::Error> {
    let pending = DeliveryState::Pending.code();
    let mut dropped = 0;
    txn.open_table(BY_HOOK_STATE)?.retain(|(_, state, _), ()| {
        let keep = state != pending;
        dropped += u64::from(!keep);
        keep
    })?;
    Ok(dropped)
}

fn next_id(counters: &mut redb::Table<'_, &str, u64>, name: &str) -> Result<u64, redb::Error> {
    let id = counters.get(name)?.map_or(1, |v| v.value());
    counters.insert(name, id + 1)?;
    Ok(id)
}

pub(crate) fn next_counter(txn: &WriteTransaction, name: &str) -> Result<u64, redb::Error> {
    next_id(&mut txn.open_table(COUNTERS)?, name)
}

/// Whether a hook is in the registry (not removed).
fn is_live(txn: &WriteTransaction, hook: HookId) -> Result<bool, redb::Error> {
    Ok(match txn.open_table(HOOK_DEFS)?.get(hook)? {
        Some(def) => decode_record::<Removal>(def.value())?.removed_ms.is_none(),
        None => false,
    })
}

/// The one field of a [`HookDef`] that says whether the hook was removed: read alone, so that
/// checking a hook on every append does not read (and validate) the whole hook.
#[derive(serde::Deserialize)]
struct Removal {
    removed_ms: Option<u64>,
}

impl super::wire::JsonRecord for Removal {}

pub(crate) fn append(
    txn: &WriteTransaction,
    events: &[NewEvent],
    now: u64,
) -> Result<Vec<AcceptedEvent>, redb::Error> {
    let mut counters = txn.open_table(COUNTERS)?;
    let mut bodies = txn.open_table(EVENT_BODIES)?;
    let mut refs = txn.open_table(EVENT_REFS)?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut pending = txn.open_table(PENDING)?;
    let mut by_state = txn.open_table(BY_STATE)?;
    let mut by_hook_state = txn.open_table(BY_HOOK_STATE)?;
    let mut by_event = txn.open_table(EVENT_DELIVERIES)?;
    let defs = txn.open_table(HOOK_DEFS)?;
    let mut live: BTreeMap<HookId, bool> = BTreeMap::new();
    let mut accepted = Vec::with_capacity(events.len());
    let mut added: BTreeMap<u64, u64> = BTreeMap::new();
    for event in events {
        if event.deliveries.is_empty() {
            accepted.push(AcceptedEvent {
                id: None,
                deliveries: Vec::new(),
            });
            continue;
        }
        let event_id = next_id(&mut counters, "next_event")?;
        bodies.insert(event_id, seal(&event.body).as_slice())?;
        refs.insert(
            event_id,
            u32::try_from(event.deliveries.len()).unwrap_or(u32::MAX),
        )?;
        let mut made = Vec::with_capacity(event.deliveries.len());
        for new in &event.deliveries {
            let id = next_id(&mut counters, "next_delivery")?;
            let hook = new.hook;
            let is_live = match live.get(&hook) {
                Some(&known) => known,
                None => {
                    let known = match defs.get(hook)? {
                        Some(def) => decode_record::<Removal>(def.value())?.removed_ms.is_none(),
                        None => false,
                    };
                    live.insert(hook, known);
                    known
                }
            };
            let (state, finished_ms, failure) = if is_live {
                (DeliveryState::Pending, None, None)
            } else {
                // Matched against a hook removed meanwhile: on record, never sent.
                (
                    DeliveryState::Cancelled,
                    Some(now),
                    Some(format!(
                        "hook_{hook} was removed before the event was stored"
                    )),
                )
            };
            let record = DeliveryRecord {
                hook,
                event: event_id,
                webhook_id: new.webhook_id.clone(),
                state,
                round_attempts: 0,
                attempts: 0,
                created_ms: now,
                next_attempt_ms: None,
                finished_ms,
                failure,
                last_attempt_ms: None,
                last_status: None,
            };
            deliveries.insert(id, encode(&record).as_slice())?;
            if is_live {
                pending.insert((hook, id), ())?;
                *added.entry(hook).or_default() += 1;
            }
            by_state.insert((state.code(), id), ())?;
            if !is_live {
                by_hook_state.insert((hook, state.code(), id), ())?;
            }
            by_event.insert((event_id, id), ())?;
            made.push(AcceptedDelivery {
                id,
                hook,
                webhook_id: new.webhook_id.clone(),
            });
        }
        accepted.push(AcceptedEvent {
            id: Some(event_id),
            deliveries: made,
        });
    }
    drop((
        counters,
        bodies,
        refs,
        deliveries,
        pending,
        by_state,
        by_hook_state,
        by_event,
        defs,
    ));
    for (hook, n) in added {
        count_pending(txn, hook, |count| count + n)?;
    }
    Ok(accepted)
}

/// [`append`], once per idempotency key (see `Store::append_once`).
pub(crate) fn append_once(
    txn: &WriteTransaction,
    key: &IdempotencyKey,
    events: &[NewEvent],
    now: u64,
) -> Result<Appended, redb::Error> {
    let known: Option<IdempotencyRecord> =
        match txn.open_table(IDEMPOTENCY)?.get(key.key.as_str())? {
            Some(value) => Some(decode_record(value.value())?),
            None => None,
        };
    if let Some(known) = &known
        && known.expires_ms > now
    {
        if known.fingerprint != key.fingerprint {
            return Ok(Appended::KeyReused);
        }
        let accepted = known
            .accepted
            .iter()
            .map(|(id, deliveries)| AcceptedEvent {
                id: *id,
                deliveries: deliveries
                    .iter()
                    .map(|(id, hook, webhook_id)| AcceptedDelivery {
                        id: *id,
                        hook: *hook,
                        webhook_id: webhook_id.clone(),
                    })
                    .collect(),
            })
            .collect();
        return Ok(Appended::Repeated(accepted));
    }
    let accepted = append(txn, events, now)?;
    let expires_ms = now.saturating_add(u64::try_from(key.window.as_millis()).unwrap_or(u64::MAX));
    let record = IdempotencyRecord {
        fingerprint: key.fingerprint.clone(),
        expires_ms,
        accepted: accepted
            .iter()
            .map(|event| {
                let deliveries = event
                    .deliveries
                    .iter()
                    .map(|d| (d.id, d.hook, d.webhook_id.clone()))
                    .collect();
                (event.id, deliveries)
            })
            .collect(),
    };
    let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
    if let Some(old) = &known {
        expiry.remove((old.expires_ms, key.key.as_str()))?;
    }
    expiry.insert((expires_ms, key.key.as_str()), ())?;
    txn.open_table(IDEMPOTENCY)?
        .insert(key.key.as_str(), encode(&record).as_slice())?;
    Ok(Appended::Stored(accepted))
}

/// Forgets idempotency keys whose window ended before `now` (at most a batch per call).
fn forget_keys(txn: &WriteTransaction, now: u64) -> Result<usize, redb::Error> {
    let mut expiry = txn.open_table(IDEMPOTENCY_EXPIRY)?;
    let old: Vec<(u64, String)> = expiry
        .range((0, "")..(now, ""))?
        .take(PRUNE_BATCH)
        .map(|entry| entry.map(|(key, _)| (key.value().0, key.value().1.to_string())))
        .collect::<Result<_, _>>()?;
    let mut keys = txn.open_table(IDEMPOTENCY)?;
    for (at, key) in &old {
        expiry.remove((*at, key.as_str()))?;
        keys.remove(key.as_str())?;
    }
    Ok(old.len())
}

pub(crate) fn count_pending(
    txn: &WriteTransaction,
    hook: HookId,
    change: impl FnOnce(u64) -> u64,
) -> Result<(), redb::Error> {
    change_pending_count(&mut txn.open_table(PENDING_COUNTS)?, hook, change)
}

/// [`count_pending`] with the table open.
fn change_pending_count(
    counts: &mut redb::Table<'_, u64, u64>,
    hook: HookId,
    change: impl FnOnce(u64) -> u64,
) -> Result<(), redb::Error> {
    let count = change(counts.get(hook)?.map_or(0, |v| v.value()));
    if count == 0 {
        counts.remove(hook)?;
    } else {
        counts.insert(hook, count)?;
    }
    Ok(())
}

fn load(
    deliveries: &redb::Table<'_, u64, &[u8]>,
    id: u64,
) -> Result<Option<DeliveryRecord>, redb::Error> {
    let Some(value) = deliveries.get(id)? else {
        return Ok(None);
    };
    match decode_record(value.value()) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::warn!(
                delivery = id,
                reason = e.to_string().as_str(),
                "a delivery record cannot be read; leaving it alone"
            );
            Ok(None)
        }
    }
}

/// Moves delivery `id` of `hook` from state `from` to `to` in the indexes by state. The index
/// by hook and state has no pending deliveries (the queue entry, which the caller keeps, is
/// theirs).
fn set_state(
    txn: &WriteTransaction,
    id: u64,
    hook: HookId,
    from: DeliveryState,
    to: DeliveryState,
) -> Result<(), redb::Error> {
    move_state(
        &mut txn.open_table(BY_STATE)?,
        &mut txn.open_table(BY_HOOK_STATE)?,
        id,
        hook,
        from,
        to,
    )
}

/// [`set_state`] with the tables open.
fn move_state(
    by_state: &mut redb::Table<'_, (u8, u64), ()>,
    by_hook_state: &mut redb::Table<'_, (u64, u8, u64), ()>,
    id: u64,
    hook: HookId,
    from: DeliveryState,
    to: DeliveryState,
) -> Result<(), redb::Error> {
    by_state.remove((from.code(), id))?;
    by_state.insert((to.code(), id), ())?;
    if from != DeliveryState::Pending {
        by_hook_state.remove((hook, from.code(), id))?;
    }
    if to != DeliveryState::Pending {
        by_hook_state.insert((hook, to.code(), id), ())?;
    }
    Ok(())
}

/// `hook`'s state as stored (the default when it has none, or it does not read).
fn hook_record(
    hooks: &redb::Table<'_, u64, &[u8]>,
    hook: HookId,
) -> Result<HookRecord, redb::Error> {
    Ok(hooks
        .get(hook)?
        .and_then(|v| decode_record(v.value()).ok())
        .unwrap_or_default())
}

fn update_hook(
    txn: &WriteTransaction,
    hook: HookId,
    change: impl FnOnce(&mut HookRecord),
) -> Result<HookRecord, redb::Error> {
    let mut hooks = txn.open_table(HOOKS)?;
    let mut record = hook_record(&hooks, hook)?;
    let before = record.clone();
    change(&mut record);
    if record != before {
        hooks.insert(hook, encode(&record).as_slice())?;
    }
    Ok(before)
}

/// Records attempts and their outcomes, in order, in one transaction: each table is opened
/// once for them all, and each hook's record and pending count are read and written once (the
/// writer hands it every outcome of a commit together; a commit's outcomes are many when a
/// hook delivers fast).
pub(crate) fn record_many<'a>(
    txn: &WriteTransaction,
    outcomes: impl IntoIterator<Item = (&'a Delivery, &'a Attempt, &'a Outcome)>,
    now: u64,
) -> Result<(), redb::Error> {
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut attempts = txn.open_table(ATTEMPTS)?;
    let mut queues = txn.open_table(PENDING)?;
    let mut by_state = txn.open_table(BY_STATE)?;
    let mut by_hook_state = txn.open_table(BY_HOOK_STATE)?;
    let mut delivered_at = txn.open_table(DELIVERED_AT)?;
    let mut hook_records = txn.open_table(HOOKS)?;
    // Per hook: its record as it was and as it becomes, and how many deliveries left its
    // queue; written once at the end.
    let mut hooks: BTreeMap<HookId, (HookRecord, HookRecord, u64)> = BTreeMap::new();
    for (delivery, attempt, outcome) in outcomes {
        let id = delivery.id;
        let Some(mut record) = load(&deliveries, id)? else {
            tracing::warn!(
                delivery = id,
                "an attempt was recorded for a delivery that is gone"
            );
            continue;
        };
        let (status, error) = match &attempt.result {
            // A status with a note (its body broke off): both are kept.
            AttemptResult::Status(status) => (Some(*status), attempt.note.clone()),
            AttemptResult::Error(error) => (None, Some(error.clone())),
        };
        let at_ms = millis(attempt.at);
        let stored = AttemptRecord {
            at_ms,
            latency_us: u64::try_from(attempt.latency.as_micros()).unwrap_or(u64::MAX),
            status,
            error,
            response_body: attempt.response_body.clone(),
            response_body_truncated: attempt.response_body_truncated,
        };
        record.last_attempt_ms = Some(at_ms);
        record.last_status = status;
        record.attempts += 1;
        attempts.insert((id, record.attempts), encode(&stored).as_slice())?;
        if record.state != DeliveryState::Pending {
            // Cancelled while the attempt was in flight (its hook was removed): the attempt
            // goes on record, the state stays.
            deliveries.insert(id, encode(&record).as_slice())?;
            continue;
        }
        record.round_attempts += 1;
        let hook = record.hook;
        let (_, h, left) = match hooks.entry(hook) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let stored = hook_record(&hook_records, hook)?;
                entry.insert((stored.clone(), stored, 0))
            }
        };
        // The hook's record: its last attempt, and what the outcome does to its counts.
        h.last_attempt_ms = Some(at_ms);
        h.last_status = status;
        let settled = match outcome {
            Outcome::Delivered => {
                h.consecutive_failures = 0;
                record.state = DeliveryState::Delivered;
                delivered_at.insert((now, id), ())?;
                true
            }
            Outcome::Retry { at } => {
                h.consecutive_failures += 1;
                record.next_attempt_ms = Some(millis(*at));
                false
            }
            Outcome::Failed { reason } => {
                h.consecutive_failures += 1;
                h.failed += 1;
                record.state = DeliveryState::Failed;
                record.failure = Some(reason.clone());
                true
            }
            Outcome::HookGone => {
                // The delivery waits with the hook; enabling starts it on a fresh schedule.
                h.consecutive_failures += 1;
                h.disabled_ms = Some(now);
                record.round_attempts = 0;
                record.next_attempt_ms = None;
                false
            }
        };
        if settled {
            record.finished_ms = Some(now);
            record.next_attempt_ms = None;
            queues.remove((hook, id))?;
            *left += 1;
            move_state(
                &mut by_state,
                &mut by_hook_state,
                id,
                hook,
                DeliveryState::Pending,
                record.state,
            )?;
        }
        deliveries.insert(id, encode(&record).as_slice())?;
    }
    drop((
        deliveries,
        attempts,
        queues,
        by_state,
        by_hook_state,
        delivered_at,
    ));
    let mut counts = txn.open_table(PENDING_COUNTS)?;
    for (hook, (before, after, left)) in hooks {
        if after != before {
            hook_records.insert(hook, encode(&after).as_slice())?;
        }
        if left > 0 {
            change_pending_count(&mut counts, hook, |count| count.saturating_sub(left))?;
        }
    }
    Ok(())
}

pub(crate) fn replay(txn: &WriteTransaction, id: DeliveryId) -> Result<Replay, redb::Error> {
    let deliveries = txn.open_table(DELIVERIES)?;
    let Some(record) = load(&deliveries, id)? else {
        return Ok(Replay::NotFound);
    };
    if record.state != DeliveryState::Failed {
        return Ok(Replay::NotFailed(record.state));
    }
    if !is_live(txn, record.hook)? {
        return Ok(Replay::HookRemoved { hook: record.hook });
    }
    drop(deliveries);
    let hook = record.hook;
    make_pending_again(txn, id, record)?;
    Ok(Replay::Replayed { hook })
}

/// Makes failed delivery `id` (its `record`, of a hook in the registry) pending again: same
/// `webhook-id`, a fresh retry schedule. Its queue entry is keyed by its id, so it takes its
/// place in id order: behind older deliveries still waiting, ahead of newer ones.
fn make_pending_again(
    txn: &WriteTransaction,
    id: DeliveryId,
    mut record: DeliveryRecord,
) -> Result<(), redb::Error> {
    let hook = record.hook;
    record.state = DeliveryState::Pending;
    record.round_attempts = 0;
    record.next_attempt_ms = None;
    record.finished_ms = None;
    record.failure = None;
    txn.open_table(DELIVERIES)?
        .insert(id, encode(&record).as_slice())?;
    txn.open_table(PENDING)?.insert((hook, id), ())?;
    count_pending(txn, hook, |count| count + 1)?;
    set_state(txn, id, hook, DeliveryState::Failed, DeliveryState::Pending)?;
    update_hook(txn, hook, |h| h.failed = h.failed.saturating_sub(1))?;
    Ok(())
}

/// Retries delivery `id`: a pending one is made due now (with the head of its hook's queue,
/// which goes first), a failed one is replayed (see [`replay`]).
pub(crate) fn retry(txn: &WriteTransaction, id: DeliveryId) -> Result<Retry, redb::Error> {
    let record = {
        let deliveries = txn.open_table(DELIVERIES)?;
        load(&deliveries, id)?
    };
    let Some(record) = record else {
        return Ok(Retry::NotFound);
    };
    match record.state {
        DeliveryState::Failed => Ok(match replay(txn, id)? {
            Replay::Replayed { hook } => Retry::Replayed { hook },
            Replay::HookRemoved { hook } => Retry::HookRemoved { hook },
            Replay::NotFailed(state) => Retry::NotRetriable(state),
            _ => Retry::NotFound,
        }),
        DeliveryState::Pending => {
            let hook = record.hook;
            if is_disabled(txn, hook)? {
                return Ok(Retry::HookDisabled { hook });
            }
            let head = due_now(txn, hook)?;
            if head != Some(id) {
                make_due(txn, id, false)?;
            }
            Ok(Retry::Now { hook, head })
        }
        other => Ok(Retry::NotRetriable(other)),
    }
}

/// Makes the head of `hook`'s queue due now (its round's attempts kept); says what was done.
pub(crate) fn retry_hook(txn: &WriteTransaction, hook: HookId) -> Result<HookRetry, redb::Error> {
    if !is_live(txn, hook)? {
        return Ok(HookRetry::NotFound);
    }
    if is_disabled(txn, hook)? {
        return Ok(HookRetry::Disabled);
    }
    let head = due_now(txn, hook)?;
    let pending = txn
        .open_table(PENDING_COUNTS)?
        .get(hook)?
        .map_or(0, |v| v.value());
    Ok(HookRetry::Woken { pending, head })
}

/// Replays every failed delivery of `hook` created at `since_ms` or later, in id order (see
/// [`make_pending_again`] for where each goes in the queue). Walks the hook's failed
/// deliveries only (the index by hook and state).
pub(crate) fn recover(
    txn: &WriteTransaction,
    hook: HookId,
    since_ms: u64,
) -> Result<Recovery, redb::Error> {
    if !is_live(txn, hook)? {
        return Ok(Recovery::NotFound);
    }
    let failed = DeliveryState::Failed.code();
    let ids: Vec<u64> = txn
        .open_table(BY_HOOK_STATE)?
        .range((hook, failed, 0)..=(hook, failed, u64::MAX))?
        .map(|entry| entry.map(|(key, _)| key.value().2))
        .collect::<Result<_, _>>()?;
    let mut replayed = Vec::new();
    for id in ids {
        let record = {
            let deliveries = txn.open_table(DELIVERIES)?;
            load(&deliveries, id)?
        };
        let Some(record) = record else { continue };
        if record.state != DeliveryState::Failed
            || record.hook != hook
            || record.created_ms < since_ms
        {
            continue;
        }
        make_pending_again(txn, id, record)?;
        replayed.push(id);
    }
    Ok(Recovery::Replayed(replayed))
}

/// Whether a 410 disabled `hook`.
fn is_disabled(txn: &WriteTransaction, hook: HookId) -> Result<bool, redb::Error> {
    Ok(match txn.open_table(HOOKS)?.get(hook)? {
        Some(value) => decode_record::<HookRecord>(value.value())
            .map(|h| h.disabled_ms.is_some())
            .unwrap_or(false),
        None => false,
    })
}

/// The first delivery of `hook`'s queue, if any.
fn queue_head(txn: &WriteTransaction, hook: HookId) -> Result<Option<DeliveryId>, redb::Error> {
    Ok(txn
        .open_table(PENDING)?
        .range((hook, 0)..=(hook, u64::MAX))?
        .next()
        .transpose()?
        .map(|(key, _)| key.value().1))
}

/// Makes the head of `hook`'s queue due now, keeping its round's attempts; returns its id.
fn due_now(txn: &WriteTransaction, hook: HookId) -> Result<Option<DeliveryId>, redb::Error> {
    let head = queue_head(txn, hook)?;
    if let Some(id) = head {
        make_due(txn, id, false)?;
    }
    Ok(head)
}

/// Clears pending delivery `id`'s due time, if it has one; with `fresh_schedule`, its retry
/// schedule starts again from its first wait.
fn make_due(
    txn: &WriteTransaction,
    id: DeliveryId,
    fresh_schedule: bool,
) -> Result<(), redb::Error> {
    let mut deliveries = txn.open_table(DELIVERIES)?;
    if let Some(mut record) = load(&deliveries, id)?
        && record.state == DeliveryState::Pending
        && record.next_attempt_ms.is_some()
    {
        record.next_attempt_ms = None;
        if fresh_schedule {
            record.round_attempts = 0;
        }
        deliveries.insert(id, encode(&record).as_slice())?;
    }
    Ok(())
}

pub(crate) fn enable(txn: &WriteTransaction, hook: HookId) -> Result<Option<bool>, redb::Error> {
    if !is_live(txn, hook)? {
        return Ok(None);
    }
    let before = update_hook(txn, hook, |h| {
        h.disabled_ms = None;
        h.consecutive_failures = 0;
    })?;
    Ok(Some(before.disabled_ms.is_some()))
}

/// Sets aside delivery `id` of `hook`'s queue, which cannot be read (`reason`): out of the
/// queue, in the state `quarantined`, never sent. Its record is rewritten from what can be read
/// of it (nothing but its hook and id when the record itself is damaged); the bytes found are
/// kept in the `damaged` table. `false` if it was no longer pending.
pub(crate) fn quarantine(
    txn: &WriteTransaction,
    hook: HookId,
    id: DeliveryId,
    reason: &str,
    now: u64,
) -> Result<bool, redb::Error> {
    if txn.open_table(PENDING)?.remove((hook, id))?.is_none() {
        return Ok(false);
    }
    count_pending(txn, hook, |count| count.saturating_sub(1))?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let found: Option<Vec<u8>> = deliveries.get(id)?.map(|v| v.value().to_vec());
    let readable = found
        .as_deref()
        .and_then(|bytes| decode_record::<DeliveryRecord>(bytes).ok());
    // A queue entry that names a delivery never made, or one of another hook or no longer
    // pending, is itself the damage (a flipped bit in its key): the record it names is left
    // alone, and the delivery whose entry it was is put back in its queue.
    if is_stray(txn, hook, id, found.is_some(), readable.as_ref())? {
        drop(deliveries);
        tracing::warn!(
            hook = %format_args!("hook_{hook}"),
            delivery = id,
            reason = reason.to_string().as_str(),
            "a damaged queue entry was dropped; putting back what it stood for"
        );
        requeue_orphans(txn)?;
        return Ok(true);
    }
    let record = match readable {
        Some(record) => DeliveryRecord {
            state: DeliveryState::Quarantined,
            next_attempt_ms: None,
            finished_ms: Some(now),
            failure: Some(reason.to_string()),
            ..record
        },
        None => {
            if let Some(found) = &found {
                txn.open_table(DAMAGED)?.insert(id, found.as_slice())?;
            }
            let attempts = txn
                .open_table(ATTEMPTS)?
                .range((id, 0)..=(id, u32::MAX))?
                .next_back()
                .transpose()?
                .map_or(0, |(key, _)| key.value().1);
            DeliveryRecord {
                hook,
                event: 0,
                webhook_id: String::new(),
                state: DeliveryState::Quarantined,
                round_attempts: 0,
                attempts,
                created_ms: now,
                next_attempt_ms: None,
                finished_ms: Some(now),
                failure: Some(reason.to_string()),
                last_attempt_ms: None,
                last_status: None,
            }
        }
    };
    deliveries.insert(id, encode(&record).as_slice())?;
    drop(deliveries);
    set_state(
        txn,
        id,
        hook,
        DeliveryState::Pending,
        DeliveryState::Quarantined,
    )?;
    // The damage may have moved another delivery's entry too.
    requeue_orphans(txn)?;
    Ok(true)
}

/// Whether the queue entry `(hook, id)` is damage rather than a delivery: it names a delivery
/// never made (no record, an id the counter has not reached), or one whose sound record is of
/// another hook or no longer pending. `found`: whether there is a record; `readable`: it, if
/// it passed its seal. An unreadable record is a delivery, to quarantine, not a stray.
fn is_stray(
    txn: &WriteTransaction,
    hook: HookId,
    id: u64,
    found: bool,
    readable: Option<&DeliveryRecord>,
) -> Result<bool, redb::Error> {
    if let Some(record) = readable {
        return Ok(record.hook != hook || record.state != DeliveryState::Pending);
    }
    Ok(!found
        && txn
            .open_table(COUNTERS)?
            .get("next_delivery")?
            .is_none_or(|next| id >= next.value()))
}

/// Checks the queues when a store is opened, before any worker reads one. A hook whose
/// entries do not number what its pending count says (an entry moved to another hook's queue
/// by a flipped bit in its key changes both) has each entry checked against its record, and
/// stray ones dropped; then every pending delivery without an entry is put back
/// ([`requeue_orphans`]), and the counts of the hooks checked are made right. Reads the keys
/// of the queues and the counts, and records only of the hooks found wrong.
pub(crate) fn check_queues(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let mut entries: BTreeMap<u64, u64> = BTreeMap::new();
    let mut queued: Vec<u64> = Vec::new();
    for entry in txn.open_table(PENDING)?.iter()? {
        let (hook, id) = entry?.0.value();
        *entries.entry(hook).or_default() += 1;
        queued.push(id);
    }
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for entry in txn.open_table(PENDING_COUNTS)?.iter()? {
        let (hook, count) = entry?;
        counts.insert(hook.value(), count.value());
    }
    let mut suspects: Vec<u64> = entries.keys().chain(counts.keys()).copied().collect();
    suspects.sort_unstable();
    suspects.dedup();
    suspects.retain(|hook| entries.get(hook) != counts.get(hook));
    for &hook in &suspects {
        let ids: Vec<u64> = txn
            .open_table(PENDING)?
            .range((hook, 0)..=(hook, u64::MAX))?
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        for id in ids {
            let found: Option<Vec<u8>> = txn
                .open_table(DELIVERIES)?
                .get(id)?
                .map(|v| v.value().to_vec());
            let readable = found
                .as_deref()
                .and_then(|bytes| decode_record::<DeliveryRecord>(bytes).ok());
            if is_stray(txn, hook, id, found.is_some(), readable.as_ref())? {
                txn.open_table(PENDING)?.remove((hook, id))?;
                // Its id no longer has a place (unless another entry names it too).
                if let Some(at) = queued.iter().position(|&queued| queued == id) {
                    queued.swap_remove(at);
                }
                tracing::warn!(
                    hook = %format_args!("hook_{hook}"),
                    delivery = id,
                    "a damaged queue entry was dropped at opening (it does not match its record)"
                );
            }
        }
    }
    requeue_missing(txn, queued)?;
    for hook in suspects {
        let actual = txn
            .open_table(PENDING)?
            .range((hook, 0)..=(hook, u64::MAX))?
            .count() as u64;
        count_pending(txn, hook, |_| actual)?;
    }
    Ok(())
}

/// Puts back in its hook's queue every pending delivery that has no queue entry (the entry was
/// lost to damage: a flipped bit in its key moves it to another key), in id order as always;
/// returns them as `(hook, delivery)`. Reads the keys of the pending index and of the queues,
/// and the record of each delivery found missing: run when a store is opened, and when damage
/// to a queue is found.
pub(crate) fn requeue_orphans(txn: &WriteTransaction) -> Result<Vec<(HookId, u64)>, redb::Error> {
    let mut queued: Vec<u64> = Vec::new();
    for entry in txn.open_table(PENDING)?.iter()? {
        queued.push(entry?.0.value().1);
    }
    requeue_missing(txn, queued)
}

/// [`requeue_orphans`], given the ids that have a queue entry.
fn requeue_missing(
    txn: &WriteTransaction,
    mut queued: Vec<u64>,
) -> Result<Vec<(HookId, u64)>, redb::Error> {
    queued.sort_unstable();
    let pending = DeliveryState::Pending.code();
    let mut missing = Vec::new();
    for entry in txn
        .open_table(BY_STATE)?
        .range((pending, 0)..=(pending, u64::MAX))?
    {
        let id = entry?.0.value().1;
        if queued.binary_search(&id).is_err() {
            missing.push(id);
        }
    }
    let mut requeued = Vec::new();
    for id in missing {
        let record = {
            let deliveries = txn.open_table(DELIVERIES)?;
            load(&deliveries, id)?
        };
        let Some(record) = record.filter(|r| r.state == DeliveryState::Pending) else {
            continue;
        };
        txn.open_table(PENDING)?.insert((record.hook, id), ())?;
        count_pending(txn, record.hook, |count| count + 1)?;
        tracing::warn!(
            hook = %format_args!("hook_{}", record.hook),
            delivery = id,
            "a pending delivery had lost its place in its hook's queue; put back"
        );
        requeued.push((record.hook, id));
    }
    Ok(requeued)
}

/// Makes the first delivery of `hook`'s queue due now, on a fresh retry schedule: its hook's
/// URL or headers changed, which is new reason to expect it through (the edit that fixes a
/// typo or follows a moved receiver). Its `webhook-id` and attempt history stay.
pub(crate) fn retry_now(txn: &WriteTransaction, hook: HookId) -> Result<(), redb::Error> {
    if let Some(id) = queue_head(txn, hook)? {
        make_due(txn, id, true)?;
    }
    Ok(())
}

/// Cancels every pending delivery of `hook` (being removed), with `reason`; returns how many.
pub(crate) fn cancel_pending(
    txn: &WriteTransaction,
    hook: HookId,
    reason: &str,
    now: u64,
) -> Result<u64, redb::Error> {
    let mut pending = txn.open_table(PENDING)?;
    let ids: Vec<u64> = pending
        .range((hook, 0)..=(hook, u64::MAX))?
        .map(|entry| entry.map(|(key, _)| key.value().1))
        .collect::<Result<_, _>>()?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    for &id in &ids {
        pending.remove((hook, id))?;
        if let Some(mut record) = load(&deliveries, id)? {
            record.state = DeliveryState::Cancelled;
            record.finished_ms = Some(now);
            record.next_attempt_ms = None;
            record.failure = Some(reason.to_string());
            deliveries.insert(id, encode(&record).as_slice())?;
        }
        set_state(
            txn,
            id,
            hook,
            DeliveryState::Pending,
            DeliveryState::Cancelled,
        )?;
    }
    txn.open_table(PENDING_COUNTS)?.remove(hook)?;
    txn.open_table(HOOKS)?.remove(hook)?;
    Ok(ids.len() as u64)
}

/// Prunes at most this many deliveries per job, so one job never holds the writer long.
const PRUNE_BATCH: usize = 10_000;

pub(crate) fn prune(txn: &WriteTransaction, cutoff: u64, now: u64) -> Result<usize, redb::Error> {
    forget_keys(txn, now)?;
    let mut delivered_at = txn.open_table(DELIVERED_AT)?;
    let old: Vec<(u64, u64)> = delivered_at
        .range((0, 0)..(cutoff, 0))?
        .take(PRUNE_BATCH)
        .map(|entry| entry.map(|(key, _)| key.value()))
        .collect::<Result<_, _>>()?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut attempts = txn.open_table(ATTEMPTS)?;
    let mut by_state = txn.open_table(BY_STATE)?;
    let mut refs = txn.open_table(EVENT_REFS)?;
    let mut bodies = txn.open_table(EVENT_BODIES)?;
    let mut by_hook_state = txn.open_table(BY_HOOK_STATE)?;
    let mut by_event = txn.open_table(EVENT_DELIVERIES)?;
    for &(at, id) in &old {
        delivered_at.remove((at, id))?;
        by_state.remove((DeliveryState::Delivered.code(), id))?;
        let record = load(&deliveries, id)?;
        let event = record.as_ref().map(|r| r.event);
        if let Some(record) = &record {
            by_hook_state.remove((record.hook, DeliveryState::Delivered.code(), id))?;
            by_event.remove((record.event, id))?;
        }
        deliveries.remove(id)?;
        attempts.retain_in((id, 0)..=(id, u32::MAX), |_, _| false)?;
        if let Some(event) = event {
            let left = refs.get(event)?.map_or(0, |v| v.value()).saturating_sub(1);
            if left == 0 {
                refs.remove(event)?;
                bodies.remove(event)?;
            } else {
                refs.insert(event, left)?;
            }
        }
    }
    Ok(old.len())
}
