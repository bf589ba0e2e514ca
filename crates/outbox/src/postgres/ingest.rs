//! Appends (ingests) and the operations on deliveries: replay, retry, recover, enable, prune.
//! Each runs in the caller's transaction and sends its `h:` notification in it.

use std::collections::BTreeSet;

use deadpool_postgres::Transaction;
use linq_hooks_delivery::{DeliveryId, HookId};

use super::reads::{execute, limit_of, query, query_opt};
use super::{
    CHANNEL, Fail, NOTIFY, REGISTRY_LOCK, hook_payloads, id_of, notify_hooks, sql_id, state_of,
};
use crate::{
    AcceptedDelivery, AcceptedEvent, Appended, DeliveryState, HookRetry, IdempotencyKey, NewEvent,
    Recovery, Replay, Retry,
};

/// A statement's parameter.
type Param<'a> = dyn tokio_postgres::types::ToSql + Sync + 'a;

/// Prunes at most this many deliveries per call, so that one call never holds locks long.
const PRUNE_BATCH: i64 = 10_000;

/// Holds the registry lock shared for the rest of `txn`: no hook is removed meanwhile, so a
/// delivery is stored pending only for a hook that stays in the registry until it commits.
async fn registry_shared(txn: &Transaction<'_>) -> Result<(), Fail> {
    execute(
        txn,
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&REGISTRY_LOCK],
    )
    .await?;
    Ok(())
}

/// Stores `events` and their deliveries (a delivery for a hook not in the registry is stored
/// cancelled), and notifies the hooks with new work.
pub(crate) async fn append(
    txn: &Transaction<'_>,
    events: &[NewEvent],
    now: i64,
) -> Result<Vec<AcceptedEvent>, Fail> {
    let stored: Vec<&NewEvent> = events.iter().filter(|e| !e.deliveries.is_empty()).collect();
    if stored.is_empty() {
        return Ok(events
            .iter()
            .map(|_| AcceptedEvent {
                id: None,
                deliveries: Vec::new(),
            })
            .collect());
    }
    let hooks: Vec<i64> = stored
        .iter()
        .flat_map(|e| e.deliveries.iter().map(|d| sql_id(d.hook)))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n_events = limit_of(stored.len());
    let n_deliveries = limit_of(stored.iter().map(|e| e.deliveries.len()).sum());
    // Sent together (one round trip), executed in this order: the registry lock first, so
    // that the hooks are read once no removal can be under way.
    //
    // Delivery ids are per-hook order. They are taken before the commit, so ingests that
    // overlap interleave theirs (`PgStore::after` copes); one that starts after another
    // committed gets higher ids only because the sequences have no CACHE (each `nextval` is
    // the next value for every connection): a migration must not add one.
    let (lock, live, ids) = tokio::try_join!(
        txn.prepare_cached("SELECT pg_advisory_xact_lock_shared($1)"),
        txn.prepare_cached("SELECT id FROM hooks WHERE id = ANY($1) AND removed_ms IS NULL"),
        txn.prepare_cached(
            "SELECT ARRAY(SELECT nextval('event_ids') AS id \
                     FROM generate_series(1, $1::bigint) ORDER BY id), \
                 ARRAY(SELECT nextval('delivery_ids') AS id \
                     FROM generate_series(1, $2::bigint) ORDER BY id)"
        ),
    )?;
    let live_params: [&Param<'_>; 1] = [&hooks];
    let id_params: [&Param<'_>; 2] = [&n_events, &n_deliveries];
    let (_, live, ids) = tokio::try_join!(
        txn.execute(&lock, &[&REGISTRY_LOCK]),
        txn.query(&live, &live_params),
        txn.query_one(&ids, &id_params),
    )?;
    let live: BTreeSet<u64> = live.iter().map(|row| id_of(row.get(0))).collect();
    let (event_ids, delivery_ids): (Vec<i64>, Vec<i64>) = (ids.get(0), ids.get(1));
    let bodies: Vec<&[u8]> = stored.iter().map(|e| e.body.as_ref()).collect();
    let received = vec![now; stored.len()];
    let mut columns = DeliveryColumns::default();
    let mut accepted = Vec::with_capacity(events.len());
    let mut woken = BTreeSet::new();
    let (mut next_event, mut next_delivery) = (event_ids.iter(), delivery_ids.iter());
    for event in events {
        if event.deliveries.is_empty() {
            accepted.push(AcceptedEvent {
                id: None,
                deliveries: Vec::new(),
            });
            continue;
        }
        let event_id = *next_event.next().expect("one id per event stored");
        let mut made = Vec::with_capacity(event.deliveries.len());
        for new in &event.deliveries {
            let id = *next_delivery.next().expect("one id per delivery");
            let is_live = live.contains(&new.hook);
            columns.id.push(id);
            columns.hook.push(sql_id(new.hook));
            columns.event.push(event_id);
            columns.webhook_id.push(new.webhook_id.as_str());
            if is_live {
                woken.insert(new.hook);
                columns.state.push(0);
                columns.finished.push(None);
                columns.failure.push(None);
            } else {
                // Matched against a hook removed meanwhile: on record, never sent.
                columns.state.push(3);
                columns.finished.push(Some(now));
                columns.failure.push(Some(format!(
                    "hook_{} was removed before the event was stored",
                    new.hook
                )));
            }
            made.push(AcceptedDelivery {
                id: id_of(id),
                hook: new.hook,
                webhook_id: new.webhook_id.clone(),
            });
        }
        accepted.push(AcceptedEvent {
            id: Some(id_of(event_id)),
            deliveries: made,
        });
    }
    let created = vec![now; columns.id.len()];
    let (events_insert, deliveries_insert, notify) = tokio::try_join!(
        txn.prepare_cached(
            "INSERT INTO events (id, body, received_ms) \
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[])"
        ),
        txn.prepare_cached(
            "INSERT INTO deliveries (id, hook, event, webhook_id, state, created_ms, \
                 finished_ms, failure) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], \
                 $5::smallint[], $6::bigint[], $7::bigint[], $8::text[])"
        ),
        txn.prepare_cached(NOTIFY),
    )?;
    let payloads = hook_payloads(woken);
    let event_params: [&Param<'_>; 3] = [&event_ids, &bodies, &received];
    let delivery_params: [&Param<'_>; 8] = [
        &columns.id,
        &columns.hook,
        &columns.event,
        &columns.webhook_id,
        &columns.state,
        &created,
        &columns.finished,
        &columns.failure,
    ];
    let notify_params: [&Param<'_>; 2] = [&CHANNEL, &payloads];
    tokio::try_join!(
        txn.execute(&events_insert, &event_params),
        txn.execute(&deliveries_insert, &delivery_params),
        txn.execute(&notify, &notify_params),
    )?;
    Ok(accepted)
}

/// The deliveries of an append, column by column (for `unnest`).
#[derive(Default)]
struct DeliveryColumns<'a> {
    id: Vec<i64>,
    hook: Vec<i64>,
    event: Vec<i64>,
    webhook_id: Vec<&'a str>,
    state: Vec<i16>,
    finished: Vec<Option<i64>>,
    failure: Vec<Option<String>>,
}

/// What an idempotent ingest stored, as remembered: per event, its id and its deliveries as
/// (id, hook, webhook-id).
type Remembered = Vec<(Option<u64>, Vec<(u64, u64, String)>)>;

/// [`append`], once per idempotency key: the key is stored in the same transaction. Concurrent
/// ingests with the same key wait for each other (an advisory lock on the key's CRC-32, in a
/// space of its own: the other locks' keys are above 2^32).
pub(crate) async fn append_once(
    txn: &Transaction<'_>,
    key: &IdempotencyKey,
    events: &[NewEvent],
    now: i64,
) -> Result<Appended, Fail> {
    let bytes = key.key.as_bytes();
    let lock = i64::from(crc32fast::hash(bytes));
    execute(txn, "SELECT pg_advisory_xact_lock($1)", &[&lock]).await?;
    let known = query_opt(
        txn,
        "SELECT fingerprint, accepted FROM idempotency_keys WHERE key = $1 AND expires_ms > $2",
        &[&bytes, &now],
    )
    .await?;
    if let Some(row) = known {
        if row.get::<_, &str>(0) != key.fingerprint {
            return Ok(Appended::KeyReused);
        }
        let remembered: Remembered = serde_json::from_str(row.get(1)).map_err(|e| {
            Fail::Corrupt(format!("an idempotency key's record does not read: {e}"))
        })?;
        let accepted = remembered
            .into_iter()
            .map(|(id, deliveries)| AcceptedEvent {
                id,
                deliveries: deliveries
                    .into_iter()
                    .map(|(id, hook, webhook_id)| AcceptedDelivery {
                        id,
                        hook,
                        webhook_id,
                    })
                    .collect(),
            })
            .collect();
        return Ok(Appended::Repeated(accepted));
    }
    let accepted = append(txn, events, now).await?;
    let expires = now.saturating_add(i64::try_from(key.window.as_millis()).unwrap_or(i64::MAX));
    let remembered: Remembered = accepted
        .iter()
        .map(|event| {
            let deliveries = event
                .deliveries
                .iter()
                .map(|d| (d.id, d.hook, d.webhook_id.clone()))
                .collect();
            (event.id, deliveries)
        })
        .collect();
    let remembered = serde_json::to_string(&remembered)
        .map_err(|e| Fail::Other(format!("cannot write an idempotency key's record: {e}")))?;
    execute(
        txn,
        "INSERT INTO idempotency_keys (key, fingerprint, expires_ms, accepted) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE \
         SET fingerprint = $2, expires_ms = $3, accepted = $4",
        &[&bytes, &key.fingerprint, &expires, &remembered],
    )
    .await?;
    Ok(Appended::Stored(accepted))
}

/// Whether `hook` is in the registry (not removed).
async fn is_live(txn: &Transaction<'_>, hook: i64) -> Result<bool, Fail> {
    Ok(query_opt(
        txn,
        "SELECT 1 FROM hooks WHERE id = $1 AND removed_ms IS NULL",
        &[&hook],
    )
    .await?
    .is_some())
}

/// Whether a 410 disabled `hook`.
async fn is_disabled(txn: &Transaction<'_>, hook: i64) -> Result<bool, Fail> {
    Ok(query_opt(
        txn,
        "SELECT 1 FROM hooks WHERE id = $1 AND disabled_ms IS NOT NULL",
        &[&hook],
    )
    .await?
    .is_some())
}

/// Delivery `id`'s hook and state, its row locked for the rest of `txn`.
async fn lock_delivery(
    txn: &Transaction<'_>,
    id: DeliveryId,
) -> Result<Option<(i64, DeliveryState)>, Fail> {
    match query_opt(
        txn,
        "SELECT hook, state FROM deliveries WHERE id = $1 FOR UPDATE",
        &[&sql_id(id)],
    )
    .await?
    {
        Some(row) => Ok(Some((row.get(0), state_of(row.get(1))?))),
        None => Ok(None),
    }
}

/// Makes failed deliveries `ids` pending again: same `webhook-id`, a fresh retry schedule,
/// each in its place in its hook's queue by id.
async fn make_pending_again(txn: &Transaction<'_>, ids: &[i64]) -> Result<(), Fail> {
    execute(
        txn,
        "UPDATE deliveries SET state = 0, round_attempts = 0, next_attempt_ms = NULL, \
             finished_ms = NULL, failure = NULL \
         WHERE id = ANY($1) AND state = 2",
        &[&ids],
    )
    .await?;
    Ok(())
}

pub(crate) async fn replay(txn: &Transaction<'_>, id: DeliveryId) -> Result<Replay, Fail> {
    registry_shared(txn).await?;
    let Some((hook, state)) = lock_delivery(txn, id).await? else {
        return Ok(Replay::NotFound);
    };
    if state != DeliveryState::Failed {
        return Ok(Replay::NotFailed(state));
    }
    if !is_live(txn, hook).await? {
        return Ok(Replay::HookRemoved { hook: id_of(hook) });
    }
    make_pending_again(txn, &[sql_id(id)]).await?;
    notify_hooks(txn, [id_of(hook)]).await?;
    Ok(Replay::Replayed { hook: id_of(hook) })
}

/// The head of `hook`'s queue, if any.
async fn queue_head(txn: &Transaction<'_>, hook: i64) -> Result<Option<i64>, Fail> {
    Ok(query_opt(
        txn,
        "SELECT id FROM deliveries WHERE hook = $1 AND state = 0 ORDER BY id LIMIT 1",
        &[&hook],
    )
    .await?
    .map(|row| row.get(0)))
}

/// Clears pending delivery `id`'s due time (its round's attempts kept).
async fn make_due(txn: &Transaction<'_>, id: i64) -> Result<(), Fail> {
    execute(
        txn,
        "UPDATE deliveries SET next_attempt_ms = NULL \
         WHERE id = $1 AND state = 0 AND next_attempt_ms IS NOT NULL",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Makes the head of `hook`'s queue due now; returns its id.
async fn due_now(txn: &Transaction<'_>, hook: i64) -> Result<Option<i64>, Fail> {
    let head = queue_head(txn, hook).await?;
    if let Some(id) = head {
        make_due(txn, id).await?;
    }
    Ok(head)
}

pub(crate) async fn retry(txn: &Transaction<'_>, id: DeliveryId) -> Result<Retry, Fail> {
    registry_shared(txn).await?;
    let Some((hook, state)) = lock_delivery(txn, id).await? else {
        return Ok(Retry::NotFound);
    };
    match state {
        DeliveryState::Failed => Ok(match replay(txn, id).await? {
            Replay::Replayed { hook } => Retry::Replayed { hook },
            Replay::HookRemoved { hook } => Retry::HookRemoved { hook },
            Replay::NotFailed(state) => Retry::NotRetriable(state),
            _ => Retry::NotFound,
        }),
        DeliveryState::Pending => {
            if is_disabled(txn, hook).await? {
                return Ok(Retry::HookDisabled { hook: id_of(hook) });
            }
            let head = due_now(txn, hook).await?;
            if head != Some(sql_id(id)) {
                make_due(txn, sql_id(id)).await?;
            }
            notify_hooks(txn, [id_of(hook)]).await?;
            Ok(Retry::Now {
                hook: id_of(hook),
                head: head.map(id_of),
            })
        }
        other => Ok(Retry::NotRetriable(other)),
    }
}

pub(crate) async fn retry_hook(txn: &Transaction<'_>, hook: HookId) -> Result<HookRetry, Fail> {
    let hook = sql_id(hook);
    if !is_live(txn, hook).await? {
        return Ok(HookRetry::NotFound);
    }
    if is_disabled(txn, hook).await? {
        return Ok(HookRetry::Disabled);
    }
    let head = due_now(txn, hook).await?;
    let row = query(
        txn,
        "SELECT count(*) FROM deliveries WHERE hook = $1 AND state = 0",
        &[&hook],
    )
    .await?;
    notify_hooks(txn, [id_of(hook)]).await?;
    Ok(HookRetry::Woken {
        pending: id_of(row[0].get(0)),
        head: head.map(id_of),
    })
}

pub(crate) async fn recover(
    txn: &Transaction<'_>,
    hook: HookId,
    since_ms: i64,
) -> Result<Recovery, Fail> {
    registry_shared(txn).await?;
    let hook = sql_id(hook);
    if !is_live(txn, hook).await? {
        return Ok(Recovery::NotFound);
    }
    let ids: Vec<i64> = query(
        txn,
        "SELECT id FROM deliveries WHERE hook = $1 AND state = 2 AND created_ms >= $2 \
         ORDER BY id FOR UPDATE",
        &[&hook, &since_ms],
    )
    .await?
    .iter()
    .map(|row| row.get(0))
    .collect();
    if !ids.is_empty() {
        make_pending_again(txn, &ids).await?;
        notify_hooks(txn, [id_of(hook)]).await?;
    }
    Ok(Recovery::Replayed(ids.into_iter().map(id_of).collect()))
}

pub(crate) async fn enable(txn: &Transaction<'_>, hook: HookId) -> Result<Option<bool>, Fail> {
    let hook = sql_id(hook);
    let Some(row) = query_opt(
        txn,
        "SELECT disabled_ms FROM hooks WHERE id = $1 AND removed_ms IS NULL FOR UPDATE",
        &[&hook],
    )
    .await?
    else {
        return Ok(None);
    };
    let was_disabled = row.get::<_, Option<i64>>(0).is_some();
    execute(
        txn,
        "UPDATE hooks SET disabled_ms = NULL, consecutive_failures = 0 WHERE id = $1",
        &[&hook],
    )
    .await?;
    notify_hooks(txn, [id_of(hook)]).await?;
    Ok(Some(was_disabled))
}

/// Forgets idempotency keys whose window has ended, then removes delivered deliveries
/// finished before `cutoff_ms` (at most [`PRUNE_BATCH`]), their attempts, and the bodies of
/// events none of whose deliveries is left.
pub(crate) async fn prune(txn: &Transaction<'_>, cutoff_ms: i64, now: i64) -> Result<usize, Fail> {
    execute(
        txn,
        "DELETE FROM idempotency_keys WHERE expires_ms <= $1",
        &[&now],
    )
    .await?;
    let rows = query(
        txn,
        "DELETE FROM deliveries WHERE id IN ( \
             SELECT id FROM deliveries WHERE state = 1 AND finished_ms < $1 LIMIT $2) \
         RETURNING id, event",
        &[&cutoff_ms, &PRUNE_BATCH],
    )
    .await?;
    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let events: Vec<i64> = rows
        .iter()
        .map(|row| row.get::<_, i64>(1))
        .collect::<BTreeSet<i64>>()
        .into_iter()
        .collect();
    execute(
        txn,
        "DELETE FROM attempts WHERE delivery = ANY($1)",
        &[&ids],
    )
    .await?;
    execute(
        txn,
        "DELETE FROM events e WHERE e.id = ANY($1) \
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event = e.id)",
        &[&events],
    )
    .await?;
    Ok(ids.len())
}
