//! The redb store as the dispatcher's [`Outbox`]: each hook's queue head (quarantining what
//! cannot be read), the read-ahead behind it, and the record of attempts, handed to the writer
//! without waiting for their commit.

use linq_hooks_delivery::{
    Attempt, Delivery, DeliveryId, Head, HookId, Outbox, OutboxError, Outcome,
};
use linq_hooks_transport::Bytes;

use super::Store;
use super::records::*;
use super::writer::Job;
use crate::records::from_millis;
use crate::{DeliveryState, StoreError};

impl Store {
    /// The head of `hook`'s queue as the store holds it, or the first delivery of the queue
    /// that cannot be read (to be quarantined).
    fn head_now(&self, hook: HookId) -> Result<HeadRead, StoreError> {
        self.read("read a hook's queue", |txn| {
            if is_disabled(txn, hook)? {
                return Ok(HeadRead::Head(Head::Disabled));
            }
            let pending = txn.open_table(PENDING)?;
            let Some(first) = pending.range((hook, 0)..=(hook, u64::MAX))?.next() else {
                return Ok(HeadRead::Head(Head::Empty));
            };
            let id = first?.0.value().1;
            Ok(match read_queued(txn, hook, id)? {
                Ok(delivery) => HeadRead::Head(Head::Ready(delivery)),
                Err(reason) => HeadRead::Damaged { id, reason },
            })
        })
    }

    /// Up to `limit` pending deliveries of `hook` after `after`, in queue order, up to the
    /// first that cannot be read; `None` when the hook is disabled or that is the first.
    fn read_after(
        &self,
        hook: HookId,
        after: DeliveryId,
        limit: usize,
    ) -> Result<Option<Vec<Delivery>>, StoreError> {
        self.read("read a hook's queue", |txn| {
            if is_disabled(txn, hook)? {
                return Ok(None);
            }
            let pending = txn.open_table(PENDING)?;
            let mut deliveries = Vec::new();
            let Some(from) = after.checked_add(1) else {
                return Ok(Some(deliveries));
            };
            let mut bytes = 0;
            for entry in pending.range((hook, from)..=(hook, u64::MAX))?.take(limit) {
                match read_queued(txn, hook, entry?.0.value().1)? {
                    Ok(delivery) => {
                        bytes += delivery.body.len();
                        deliveries.push(delivery);
                    }
                    Err(_) if deliveries.is_empty() => return Ok(None),
                    Err(_) => break,
                }
                if bytes >= READ_AHEAD_BYTES {
                    break;
                }
            }
            Ok(Some(deliveries))
        })
    }
}

/// Whether `hook` is disabled (it answered 410 Gone).
fn is_disabled(txn: &redb::ReadTransaction, hook: HookId) -> Result<bool, ReadError> {
    Ok(match txn.open_table(HOOKS)?.get(hook)? {
        Some(value) => decode::<HookRecord>(value.value())?.disabled_ms.is_some(),
        None => false,
    })
}

/// Pending delivery `id` of `hook`'s queue, ready to send, or why it cannot be sent (its record
/// or its event's body is damaged or missing, or its record says otherwise than its queue
/// entry).
fn read_queued(
    txn: &redb::ReadTransaction,
    hook: HookId,
    id: DeliveryId,
) -> Result<Result<Delivery, String>, ReadError> {
    let record: DeliveryRecord = match txn.open_table(DELIVERIES)?.get(id)? {
        Some(value) => match decode(value.value()) {
            Ok(record) => record,
            Err(ReadError::Corrupt(reason)) => {
                return Ok(Err(format!("its record cannot be read: {reason}")));
            }
            Err(e) => return Err(e),
        },
        None => return Ok(Err("it has no record".into())),
    };
    if record.hook != hook || record.state != DeliveryState::Pending {
        return Ok(Err(format!(
            "its queue entry does not match its record ({}, hook {})",
            record.state.as_str(),
            record.hook
        )));
    }
    let body = match txn.open_table(EVENT_BODIES)?.get(record.event)? {
        Some(value) => match unseal(value.value()) {
            Ok(body) => Bytes::copy_from_slice(body),
            Err(reason) => {
                return Ok(Err(format!(
                    "the body of event {} cannot be read: {reason}",
                    record.event
                )));
            }
        },
        None => {
            return Ok(Err(format!(
                "the body of event {} is missing",
                record.event
            )));
        }
    };
    Ok(Ok(Delivery {
        id,
        hook,
        webhook_id: record.webhook_id,
        body,
        attempts: record.round_attempts,
        next_attempt_at: record.next_attempt_ms.map(from_millis),
    }))
}

/// The most body bytes one read-ahead ([`Outbox::after`]) holds, beyond its first delivery:
/// with thousands of hooks each holding what it read while it waits for capacity, a count
/// alone would let large bodies add up.
const READ_AHEAD_BYTES: usize = 256 * 1024;

/// What [`Store::head_now`] found.
enum HeadRead {
    Head(Head),
    /// The first pending delivery cannot be read (nor sent).
    Damaged {
        id: DeliveryId,
        reason: String,
    },
}

/// The most deliveries one `head` call quarantines before it gives up: a queue of damaged
/// records is a damaged store, reported as an error (and the hook's worker backs off).
const MAX_QUARANTINE_PER_HEAD: usize = 1000;

#[async_trait::async_trait]
impl Outbox for Store {
    /// The head of `hook`'s queue. A delivery whose record or body is damaged (fails its
    /// checksum, or is missing) is quarantined first, and the next one is the head: a damaged
    /// record is never sent, and it does not stop its hook.
    async fn head(&self, hook: HookId) -> Result<Head, OutboxError> {
        // The head as the hook's worker left it: its last outcomes committed.
        self.settle(hook).await.map_err(OutboxError::new)?;
        for _ in 0..MAX_QUARANTINE_PER_HEAD {
            match self.head_now(hook).map_err(OutboxError::new)? {
                HeadRead::Head(head) => return Ok(head),
                HeadRead::Damaged { id, reason } => {
                    tracing::warn!(
                        hook = %format_args!("hook_{hook}"),
                        delivery = id,
                        reason = reason.to_string().as_str(),
                        "a delivery cannot be read; quarantining it"
                    );
                    let reason = format!("quarantined: {reason}");
                    let done = self
                        .submit(|reply| Job::Quarantine(hook, id, reason, reply))
                        .await
                        .map_err(OutboxError::new)?;
                    if !done {
                        // Not pending any more (replayed or cancelled meanwhile): read again.
                        continue;
                    }
                }
            }
        }
        Err(OutboxError::new(StoreError::damaged(
            "cannot read a hook's queue",
            format!(
                "over {MAX_QUARANTINE_PER_HEAD} damaged deliveries in a row: the store file is \
                 badly damaged"
            ),
        )))
    }

    /// Up to `limit` pending deliveries of `hook` after delivery `after`, read in one
    /// transaction (fewer once their bodies pass `READ_AHEAD_BYTES`); `None` when the hook is
    /// disabled, the first of them cannot be read (the head quarantines it), or an outcome of
    /// the hook was refused by the writer (the head hands it over again, and while the store
    /// cannot write, the hook stops). Outcomes written behind need not be committed
    /// otherwise: they concern deliveries up to `after`.
    async fn after(
        &self,
        hook: HookId,
        after: DeliveryId,
        limit: usize,
    ) -> Result<Option<Vec<Delivery>>, OutboxError> {
        if self.inner.behind.refused(hook) {
            return Ok(None);
        }
        self.read_after(hook, after, limit)
            .map_err(OutboxError::new)
    }

    /// Hands the outcome to the writer and returns without waiting for its commit: many
    /// outcomes share one commit, and the hook's next delivery goes meanwhile. The hook's next
    /// [`head`](Outbox::head) waits for the commit; a crash before it only sends the delivery
    /// again, with the same `webhook-id`. Waits while the writer has
    /// `MAX_BEHIND` outcomes to commit.
    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        let waiting = self
            .hand_over(Box::new((delivery.clone(), attempt, outcome)))
            .await
            .map_err(OutboxError::new)?;
        self.inner.behind.push(delivery.hook, waiting);
        Ok(())
    }

    async fn flush(&self, hook: HookId) -> Result<(), OutboxError> {
        self.settle(hook).await.map_err(OutboxError::new)
    }
}
