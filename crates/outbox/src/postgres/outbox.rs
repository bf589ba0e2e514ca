//! [`Outbox`] (head, read-ahead, record: what the dispatcher asks) and [`DurableOutbox`] (what
//! `serve` asks) for [`PgStore`].

use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{
    Attempt, AttemptResult, Delivery, DeliveryId, Head, HookId, HookWaker, Outbox, OutboxError,
    Outcome,
};
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;
use linq_hooks_transport::Bytes;
use tokio_postgres::Row;

use super::reads::{self, execute, limit_of, query, query_opt};
use super::{Fail, PgStore, from_millis, id_of, ingest, millis, now_ms, registry, sql_id};
use crate::{
    AcceptedEvent, Appended, AttemptInfo, DeliveryFilter, DeliveryInfo, DeliveryPage,
    DeliveryState, DurableOutbox, EventInfo, HookRetry, IdempotencyKey, NewEvent, Recovery, Replay,
    Retry, StoreError, StoredHook, StoredWorkflow, WorkflowChange, WorkflowRemoval,
};

/// The most body bytes one read-ahead ([`Outbox::after`]) holds beyond its first delivery (as
/// the redb store).
const READ_AHEAD_BYTES: usize = 256 * 1024;
/// The most deliveries one `head` sets aside (their event's body missing) before it gives up.
const MAX_QUARANTINE_PER_HEAD: usize = 1000;

/// Runs `$body` (an expression using the transaction `$txn`) in a transaction on a pooled
/// connection and commits it, bounded in time; errors become `cannot $what`.
macro_rules! in_txn {
    ($store:expr, $what:expr, |$txn:ident| $body:expr) => {
        $store
            .timed($what, async {
                let mut client = $store.client().await?;
                let $txn = client.transaction().await?;
                let answer = $body.await?;
                $txn.commit().await?;
                Ok(answer)
            })
            .await
    };
}

/// Runs `$body` (an expression using the client `$client`) on a pooled connection.
macro_rules! on_client {
    ($store:expr, $what:expr, |$client:ident| $body:expr) => {
        $store
            .timed($what, async {
                let client = $store.client().await?;
                let $client = &client;
                $body.await
            })
            .await
    };
}

/// A pending delivery from a row of (id, webhook_id, body, round_attempts, next_attempt_ms).
fn queued(hook: HookId, row: &Row, body: Vec<u8>) -> Delivery {
    let attempts: i32 = row.get(3);
    Delivery {
        id: id_of(row.get(0)),
        hook,
        webhook_id: row.get(1),
        body: Bytes::from(body),
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at: row.get::<_, Option<i64>>(4).map(from_millis),
    }
}

/// What the head of a queue is, as read.
enum HeadRead {
    Head(Head),
    /// Its event's body is missing: it cannot be sent.
    Damaged(i64, String),
}

async fn read_head(store: &PgStore, hook: HookId) -> Result<HeadRead, StoreError> {
    on_client!(store, "read a hook's queue", |client| async move {
        let row = query_opt(
            client,
            "SELECT h.disabled_ms IS NOT NULL, d.id, d.webhook_id, e.body, d.round_attempts, \
                 d.next_attempt_ms, d.event \
             FROM hooks h \
             LEFT JOIN LATERAL (SELECT id, webhook_id, event, round_attempts, next_attempt_ms \
                 FROM deliveries WHERE hook = h.id AND state = 0 ORDER BY id LIMIT 1) d ON true \
             LEFT JOIN events e ON e.id = d.event \
             WHERE h.id = $1",
            &[&sql_id(hook)],
        )
        .await?;
        let Some(row) = row else {
            return Ok(HeadRead::Head(Head::Empty));
        };
        if row.get::<_, bool>(0) {
            return Ok(HeadRead::Head(Head::Disabled));
        }
        let Some(id) = row.get::<_, Option<i64>>(1) else {
            return Ok(HeadRead::Head(Head::Empty));
        };
        let Some(body) = row.get::<_, Option<Vec<u8>>>(3) else {
            let event: i64 = row.get(6);
            return Ok(HeadRead::Damaged(
                id,
                format!("the body of event {event} is missing"),
            ));
        };
        // The row's columns from 1 on are those `queued` reads from 0 on.
        Ok(HeadRead::Head(Head::Ready(Delivery {
            id: id_of(id),
            hook,
            webhook_id: row.get(2),
            body: Bytes::from(body),
            attempts: u32::try_from(row.get::<_, i32>(4)).unwrap_or(0),
            next_attempt_at: row.get::<_, Option<i64>>(5).map(from_millis),
        })))
    })
}

/// Sets aside pending delivery `id`, which cannot be sent; `false` if it was no longer pending.
async fn quarantine(store: &PgStore, id: i64, reason: &str) -> Result<bool, StoreError> {
    let reason = format!("quarantined: {reason}");
    on_client!(store, "set aside a delivery", |client| async move {
        Ok(execute(
            client,
            "UPDATE deliveries SET state = 4, next_attempt_ms = NULL, finished_ms = $2, \
                 failure = $3 WHERE id = $1 AND state = 0",
            &[&id, &now_ms(), &reason],
        )
        .await?
            > 0)
    })
}

/// What an outcome does to a pending delivery and its hook.
struct Change<'a> {
    state: i16,
    next_attempt: Option<i64>,
    finished: Option<i64>,
    failure: Option<&'a str>,
    /// The delivery starts a new round (its attempts for the retry policy start again).
    new_round: bool,
    /// The hook succeeded: its consecutive failures start again.
    success: bool,
    /// The hook is disabled (by a 410) at this time.
    disabled: Option<i64>,
}

impl Change<'_> {
    /// The same changes as the redb store's `record_many`.
    fn of(outcome: &Outcome, now: i64) -> Change<'_> {
        let mut change = Change {
            state: 0,
            next_attempt: None,
            finished: None,
            failure: None,
            new_round: false,
            success: false,
            disabled: None,
        };
        match outcome {
            Outcome::Delivered => {
                change.state = 1;
                change.finished = Some(now);
                change.success = true;
            }
            Outcome::Retry { at } => change.next_attempt = Some(millis(*at)),
            Outcome::Failed { reason } => {
                change.state = 2;
                change.finished = Some(now);
                change.failure = Some(reason);
            }
            // The delivery waits with the hook; enabling starts it on a fresh schedule.
            Outcome::HookGone => {
                change.new_round = true;
                change.disabled = Some(now);
            }
        }
        change
    }
}

/// Records an attempt and its outcome in one statement (one round trip, its own
/// transaction), fenced by `hook`'s lease: nothing is written unless this process holds it,
/// and the lease row is locked `FOR SHARE` until the commit, so a process taking the hook over
/// waits for it. The attempt always goes on record; the delivery's state changes only if it is
/// still pending (one cancelled while the attempt was in flight keeps its state).
///
/// The commit does not wait for the WAL to reach the disk (`synchronous_commit` off for this
/// transaction only), as the redb store writes outcomes behind: a crash of the database may
/// lose the last outcomes (at most the WAL writer's delay, 200 ms by default), whose deliveries
/// are then sent again with the same `webhook-id`. Ingests and registry changes wait for it.
const RECORD: &str = "\
WITH fence AS (
    SELECT hook FROM leases WHERE hook = $1 AND owner = $2 FOR SHARE
), cur AS (
    SELECT d.id, d.state, d.attempts FROM deliveries d, fence WHERE d.id = $3 FOR UPDATE OF d
), attempt AS (
    INSERT INTO attempts (delivery, number, at_ms, latency_us, status, error, response_body,
        response_body_truncated)
    SELECT id, attempts + 1, $4, $5, $6, $7, $8, $9 FROM cur
), hook AS (
    UPDATE hooks SET last_attempt_ms = $4, last_status = $6,
        consecutive_failures = CASE WHEN $10 THEN 0 ELSE consecutive_failures + 1 END,
        disabled_ms = COALESCE($11, disabled_ms)
    WHERE id = $1 AND EXISTS (SELECT 1 FROM cur WHERE state = 0)
), delivery AS (
    UPDATE deliveries d SET attempts = cur.attempts + 1, last_attempt_ms = $4, last_status = $6,
        state = CASE WHEN cur.state = 0 THEN $12 ELSE cur.state END,
        next_attempt_ms = CASE WHEN cur.state = 0 THEN $13 ELSE d.next_attempt_ms END,
        finished_ms = CASE WHEN cur.state = 0 THEN $14 ELSE d.finished_ms END,
        failure = CASE WHEN cur.state = 0 THEN COALESCE($15, d.failure) ELSE d.failure END,
        round_attempts = CASE WHEN cur.state <> 0 THEN d.round_attempts
            WHEN $16 THEN 0 ELSE d.round_attempts + 1 END
    FROM cur WHERE d.id = cur.id
)
SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM cur),
    set_config('synchronous_commit', 'off', true)";

/// Records an attempt (see [`RECORD`]): `Ok(false)` if this process no longer holds the
/// hook's lease (nothing written).
async fn record_attempt<C: deadpool_postgres::GenericClient>(
    client: &C,
    owner: uuid::Uuid,
    delivery: &Delivery,
    attempt: &Attempt,
    outcome: &Outcome,
    now: i64,
) -> Result<bool, Fail> {
    let (status, error) = match &attempt.result {
        // A status with a note (its body broke off): both are kept.
        AttemptResult::Status(status) => (Some(i32::from(*status)), attempt.note.clone()),
        AttemptResult::Error(error) => (None, Some(error.clone())),
    };
    let at = millis(attempt.at);
    let latency = i64::try_from(attempt.latency.as_micros()).unwrap_or(i64::MAX);
    let change = Change::of(outcome, now);
    let rows = query(
        client,
        RECORD,
        &[
            &sql_id(delivery.hook),
            &owner,
            &sql_id(delivery.id),
            &at,
            &latency,
            &status,
            &error,
            &attempt.response_body,
            &attempt.response_body_truncated,
            &change.success,
            &change.disabled,
            &change.state,
            &change.next_attempt,
            &change.finished,
            &change.failure,
            &change.new_round,
        ],
    )
    .await?;
    let (held, found): (i64, i64) = (rows[0].get(0), rows[0].get(1));
    if held > 0 && found == 0 {
        tracing::warn!(
            delivery = delivery.id,
            "an attempt was recorded for a delivery that is gone"
        );
    }
    Ok(held > 0)
}

#[async_trait::async_trait]
impl Outbox for PgStore {
    /// The head of `hook`'s queue if this process holds the hook's lease (taking it if it is
    /// free and this process is below its share); [`Head::Empty`] if another process holds
    /// it. A delivery whose event's body is missing is quarantined, and the next is the head.
    async fn head(&self, hook: HookId) -> Result<Head, OutboxError> {
        if !self.cluster().holds(hook).await.map_err(OutboxError::new)? {
            // Nothing handed out: what the worker read ahead, if anything, it has dropped.
            self.cluster().sent(hook, 0, true);
            return Ok(Head::Empty);
        }
        for _ in 0..MAX_QUARANTINE_PER_HEAD {
            match read_head(self, hook).await.map_err(OutboxError::new)? {
                HeadRead::Head(head) => {
                    match &head {
                        Head::Ready(delivery) => self.cluster().sending(hook, delivery.id),
                        // Nothing handed out: a read-ahead dropped meanwhile is over.
                        _ => self.cluster().sent(hook, 0, true),
                    }
                    return Ok(head);
                }
                HeadRead::Damaged(id, reason) => {
                    tracing::warn!(
                        hook = %format_args!("hook_{hook}"),
                        delivery = id,
                        reason = reason.as_str(),
                        "a delivery cannot be sent; quarantining it"
                    );
                    quarantine(self, id, &reason)
                        .await
                        .map_err(OutboxError::new)?;
                }
            }
        }
        Err(OutboxError::new(StoreError::damaged(
            "cannot read a hook's queue",
            format!("over {MAX_QUARANTINE_PER_HEAD} deliveries in a row without their event"),
        )))
    }

    /// Up to `limit` pending deliveries of `hook` after `after`, in queue order (fewer once
    /// their bodies pass 256 KiB); `None` when the hook is disabled, this process no longer
    /// holds it, the first cannot be sent (the head quarantines it), or a pending delivery
    /// comes at or before `after`.
    ///
    /// That last case is what keeps per-hook order with concurrent ingests. Delivery ids are
    /// taken (`nextval`) before an ingest commits, so two ingests that overlap get interleaved
    /// ids, and the one that commits later may show deliveries *behind* the point this hook
    /// has reached. Reading only `id > after` would then send that ingest's higher ids before
    /// its lower ones. So the read starts at the queue's head, as [`head`](Outbox::head)
    /// does, and goes on only when the head follows `after`; what it hands out is then the
    /// lowest pending deliveries when they were read, and an ingest, visible all at once, goes
    /// out in its own order. `after` has been recorded when the dispatcher asks (this store records
    /// before it returns), so it is no longer pending itself.
    async fn after(
        &self,
        hook: HookId,
        after: DeliveryId,
        limit: usize,
    ) -> Result<Option<Vec<Delivery>>, OutboxError> {
        if !self.cluster().holds(hook).await.map_err(OutboxError::new)? {
            return Ok(None);
        }
        on_client!(self, "read a hook's queue", |client| async move {
            let disabled = query_opt(
                client,
                "SELECT 1 FROM hooks WHERE id = $1 AND disabled_ms IS NOT NULL",
                &[&sql_id(hook)],
            )
            .await?;
            if disabled.is_some() {
                return Ok(None);
            }
            let rows = query(
                client,
                "SELECT d.id, d.webhook_id, e.body, d.round_attempts, d.next_attempt_ms \
                 FROM deliveries d LEFT JOIN events e ON e.id = d.event \
                 WHERE d.hook = $1 AND d.state = 0 ORDER BY d.id LIMIT $2",
                &[&sql_id(hook), &limit_of(limit)],
            )
            .await?;
            if rows
                .first()
                .is_some_and(|row| row.get::<_, i64>(0) <= sql_id(after))
            {
                // Something came to the queue behind the point reached: the head sends it.
                return Ok(None);
            }
            let mut deliveries = Vec::new();
            let mut bytes = 0;
            for row in &rows {
                let Some(body) = row.get::<_, Option<Vec<u8>>>(2) else {
                    if deliveries.is_empty() {
                        return Ok(None);
                    }
                    break;
                };
                bytes += body.len();
                deliveries.push(queued(hook, row, body));
                if bytes >= READ_AHEAD_BYTES {
                    break;
                }
            }
            Ok(Some(deliveries))
        })
        .map_err(OutboxError::new)
        .inspect(|read| {
            if let Some(last) = read.as_ref().and_then(|d| d.last()) {
                // The worker sends these next: the hook is mid-attempt until the last is
                // recorded.
                self.cluster().sending(hook, last.id);
            }
        })
    }

    /// Records the attempt and its outcome before returning, in one statement fenced by the
    /// hook's lease (see `RECORD` in the source: its commit does not wait for the disk): if
    /// another process has taken the hook over meanwhile, the outcome is
    /// dropped (with a warning) and the new owner sends the delivery again, with the same
    /// `webhook-id`.
    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        let owner = self.cluster().owner();
        let now = now_ms();
        let recorded = on_client!(self, "record an attempt", |client| record_attempt(
            client, owner, delivery, &attempt, &outcome, now
        ));
        match recorded {
            Ok(true) => {
                // After a retry or a disabled hook, the dispatcher drops the rest of a
                // read-ahead. (Not after a failed write: the dispatcher records again, and the
                // hook stays mid-attempt meanwhile.)
                let done = matches!(outcome, Outcome::Retry { .. } | Outcome::HookGone);
                self.cluster().sent(delivery.hook, delivery.id, done);
                Ok(())
            }
            Ok(false) => {
                self.cluster().lost(delivery.hook);
                tracing::warn!(
                    hook = %format_args!("hook_{}", delivery.hook),
                    delivery = delivery.id,
                    outcome = outcome.as_str(),
                    "this process no longer holds the hook's lease: the outcome is dropped, \
                     and the delivery goes again from the process that holds it"
                );
                Ok(())
            }
            Err(e) => Err(OutboxError::new(e)),
        }
    }

    /// Records nothing (`record` stores before it returns); the hook's worker has stopped (the
    /// hook removed, or a shutdown), so the hook is no longer mid-attempt, whatever it had
    /// read ahead: rebalancing may release it, and a removed hook's lease is let go. (The mark
    /// is the hook's, not the worker's: this assumes one worker per hook at a time, as in
    /// `serve`, where a hook id is never used again once removed.)
    async fn flush(&self, hook: HookId) -> Result<(), OutboxError> {
        self.cluster().sent(hook, 0, true);
        Ok(())
    }

    /// Hands the waker to the cluster, which wakes a hook's worker when this process takes
    /// its lease or hears of new work for it.
    fn subscribe(&self, waker: HookWaker) {
        self.cluster().subscribe(waker);
    }
}

#[async_trait::async_trait]
impl DurableOutbox for PgStore {
    fn location(&self) -> String {
        self.location_text()
    }
    fn health(&self) -> Result<(), String> {
        self.cluster().health()
    }
    fn workflow_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.cluster().workflow_changes()
    }
    async fn close(&self) {
        self.cluster().close().await;
    }
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AcceptedEvent>, StoreError> {
        let now = now_ms();
        in_txn!(self, "store events", |txn| ingest::append(
            &txn, &events, now
        ))
    }
    async fn append_once(
        &self,
        key: IdempotencyKey,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let now = now_ms();
        in_txn!(self, "store events", |txn| ingest::append_once(
            &txn, &key, &events, now
        ))
    }
    async fn replay(&self, id: DeliveryId) -> Result<Replay, StoreError> {
        in_txn!(self, "replay a delivery", |txn| ingest::replay(&txn, id))
    }
    async fn retry(&self, id: DeliveryId) -> Result<Retry, StoreError> {
        in_txn!(self, "retry a delivery", |txn| ingest::retry(&txn, id))
    }
    async fn retry_hook(&self, hook: HookId) -> Result<HookRetry, StoreError> {
        in_txn!(self, "retry a hook", |txn| ingest::retry_hook(&txn, hook))
    }
    async fn recover(&self, hook: HookId, since: SystemTime) -> Result<Recovery, StoreError> {
        let since = millis(since);
        in_txn!(self, "recover a hook's deliveries", |txn| ingest::recover(
            &txn, hook, since
        ))
    }
    async fn enable(&self, hook: HookId) -> Result<Option<bool>, StoreError> {
        in_txn!(self, "enable a hook", |txn| ingest::enable(&txn, hook))
    }
    async fn prune(&self, before: SystemTime) -> Result<usize, StoreError> {
        let (cutoff, now) = (millis(before), now_ms());
        in_txn!(self, "prune deliveries", |txn| ingest::prune(
            &txn, cutoff, now
        ))
    }
    async fn put_workflow(
        &self,
        id: String,
        hooks: Vec<Hook>,
        secret: Secret,
    ) -> Result<WorkflowChange, StoreError> {
        let now = now_ms();
        in_txn!(self, "store a workflow", |txn| registry::put_workflow(
            &txn, &id, &hooks, &secret, now
        ))
    }
    async fn delete_workflow(&self, id: String) -> Result<Option<WorkflowRemoval>, StoreError> {
        let now = now_ms();
        in_txn!(self, "delete a workflow", |txn| registry::delete_workflow(
            &txn, &id, now
        ))
    }
    async fn set_parameters(
        &self,
        hook: HookId,
        parameters: HookParameters,
    ) -> Result<Option<StoredHook>, StoreError> {
        let now = now_ms();
        in_txn!(self, "change a hook", |txn| registry::set_parameters(
            &txn,
            hook,
            &parameters,
            now
        ))
    }
    async fn rotate_secret(
        &self,
        workflow: String,
        secret: Secret,
        grace: Duration,
    ) -> Result<Option<StoredWorkflow>, StoreError> {
        let now = now_ms();
        in_txn!(self, "rotate a secret", |txn| registry::rotate_secret(
            &txn, &workflow, &secret, grace, now
        ))
    }
    async fn workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        on_client!(self, "list workflows", |client| reads::list_workflows(
            client,
            None,
            usize::MAX
        ))
    }
    async fn list_workflows(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        on_client!(self, "list workflows", |client| reads::list_workflows(
            client,
            after.as_deref(),
            limit
        ))
    }
    async fn workflow(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        on_client!(self, "read a workflow", |client| reads::workflow(
            client, id
        ))
    }
    async fn list_hooks(
        &self,
        after: Option<HookId>,
        limit: usize,
    ) -> Result<Vec<StoredHook>, StoreError> {
        on_client!(self, "list hooks", |client| reads::list_hooks(
            client, after, limit
        ))
    }
    async fn hook(&self, id: HookId) -> Result<Option<StoredHook>, StoreError> {
        on_client!(self, "read a hook", |client| reads::hook(client, id))
    }
    async fn workflow_of(&self, hook: HookId) -> Result<Option<String>, StoreError> {
        on_client!(self, "read a hook", |client| reads::workflow_of(
            client, hook
        ))
    }
    async fn list(
        &self,
        state: DeliveryState,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        on_client!(self, "list deliveries", |client| reads::list(
            client, state, after, limit
        ))
    }
    async fn get(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryInfo, Vec<AttemptInfo>)>, StoreError> {
        on_client!(self, "read a delivery", |client| reads::get(client, id))
    }
    async fn disabled_hooks(&self) -> Result<usize, StoreError> {
        on_client!(self, "read the hooks", |client| reads::disabled_hooks(
            client
        ))
    }
    async fn pending(&self) -> Result<u64, StoreError> {
        on_client!(self, "count pending deliveries", |client| reads::count(
            client,
            DeliveryState::Pending
        ))
    }
    async fn count(&self, state: DeliveryState) -> Result<u64, StoreError> {
        on_client!(self, "count deliveries", |client| reads::count(
            client, state
        ))
    }
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage, StoreError> {
        on_client!(self, "list deliveries", |client| reads::deliveries(
            client, filter
        ))
    }
    async fn event(&self, id: u64) -> Result<Option<EventInfo>, StoreError> {
        on_client!(self, "read an event", |client| reads::event(client, id))
    }
}
