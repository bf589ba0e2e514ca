//! The writer: one thread takes every job waiting, applies them in one transaction and commits
//! once (group commit), then answers each.

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::OwnedSemaphorePermit;

use super::behind::Outcomes;
use super::submit::Reply;
use super::{edits, panic_message, registry};
use crate::records::*;
use crate::{
    AcceptedEvent, Appended, HookRetry, IdempotencyKey, NewEvent, Recovery, Replay, Retry,
    StoreError,
};

/// The most jobs one commit takes; more wait for the next.
const MAX_BATCH: usize = 4096;
/// About how many bytes one commit takes at most (one larger job still goes alone).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Attempt outcomes alone are committed without fsync, unless the last durable commit is older
/// than this: losing them in a crash only means sending again, with the same `webhook-id`.
const RECORD_SYNC_INTERVAL: Duration = Duration::from_millis(200);

/// What the writer is asked to do, and where to send the answer.
pub(crate) enum Job {
    Append(Vec<NewEvent>, Reply<Vec<AcceptedEvent>>),
    AppendOnce(Box<IdempotencyKey>, Vec<NewEvent>, Reply<Appended>),
    /// An attempt's outcomes, with its place among those the writer has to commit
    /// ([`MAX_BEHIND`](super::behind::MAX_BEHIND)), given back once answered.
    Record(Outcomes, OwnedSemaphorePermit, Reply<()>),
    Replay(DeliveryId, Reply<Replay>),
    Retry(DeliveryId, Reply<Retry>),
    RetryHook(HookId, Reply<HookRetry>),
    Recover(HookId, u64, Reply<Recovery>),
    Enable(HookId, Reply<Option<bool>>),
    Prune(u64, Reply<usize>),
    PutWorkflow(String, Vec<Hook>, Secret, Reply<WorkflowChange>),
    DeleteWorkflow(String, Reply<Option<WorkflowRemoval>>),
    SetParameters(HookId, HookParameters, Reply<Option<StoredHook>>),
    RotateSecret(String, Secret, Duration, Reply<Option<StoredWorkflow>>),
    Quarantine(HookId, DeliveryId, String, Reply<bool>),
}

/// A job's result, kept until its commit is done.
enum Done {
    Append(Vec<AcceptedEvent>),
    AppendOnce(Appended),
    Record,
    Replay(Replay),
    Retry(Retry),
    RetryHook(HookRetry),
    Recover(Recovery),
    Enable(Option<bool>),
    Prune(usize),
    PutWorkflow(Box<WorkflowChange>),
    DeleteWorkflow(Option<WorkflowRemoval>),
    SetParameters(Option<Box<StoredHook>>),
    RotateSecret(Option<Box<StoredWorkflow>>),
    Quarantine(bool),
}

/// Takes the jobs waiting (up to a count and a byte budget), applies them in one transaction,
/// commits once, then answers each. Ends when every `Store` is dropped.
pub(crate) fn write_loop(
    db: &Database,
    jobs: &mpsc::Receiver<Job>,
    broken: &Mutex<Option<String>>,
) {
    let mut last_durable = Instant::now();
    // Whether a commit since the last durable one skipped the fsync.
    let mut unsynced = false;
    let mut carried = None;
    while let Some(first) = carried.take().or_else(|| jobs.recv().ok()) {
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    bytes += job.bytes();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        if bytes > MAX_BATCH_BYTES && batch.len() > 1 {
            carried = batch.pop();
        }
        let only_records = batch.iter().all(|job| matches!(job, Job::Record(..)));
        let durable = !only_records || last_durable.elapsed() >= RECORD_SYNC_INTERVAL;
        match commit(db, &batch, durable, broken) {
            Ok(done) => {
                if durable {
                    last_durable = Instant::now();
                }
                unsynced = !durable;
                for (job, done) in batch.into_iter().zip(done) {
                    answer(job, Ok(done));
                }
            }
            Err(e) if is_io(&e) => {
                tracing::error!(
                    jobs = batch.len(),
                    error = e.to_string().as_str(),
                    "the store could not commit"
                );
                let reason = format!("cannot write the store: {e}");
                broken
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| reason.clone());
                for job in batch {
                    answer(job, Err(StoreError::corrupt(reason.clone())));
                }
            }
            Err(_) => {
                // Not the disk: one job is at fault. Commit each on its own, so the others in
                // the batch (other clients' events) are not refused for it.
                for job in batch {
                    let result = commit(db, std::slice::from_ref(&job), true, broken);
                    match result {
                        Ok(mut done) => answer(job, Ok(done.remove(0))),
                        Err(e) => {
                            tracing::error!(
                                jobs = 1,
                                error = e.to_string().as_str(),
                                "the store could not commit"
                            );
                            answer(job, Err(StoreError::storage("cannot write the store", e)));
                        }
                    }
                }
                last_durable = Instant::now();
                unsynced = false;
            }
        }
    }
    // Closing: make the attempts recorded without fsync durable too, so that after a clean
    // shutdown every attempt is on record (only a crash may lose the last 200 ms of them).
    if unsynced && let Err(e) = commit(db, &[], true, broken) {
        tracing::error!(
            error = e.to_string().as_str(),
            "the store could not sync the last attempt records"
        );
    }
}

/// Whether a failure came from the disk (after which redb refuses writes until reopened).
fn is_io(error: &redb::Error) -> bool {
    matches!(error, redb::Error::Io(_) | redb::Error::PreviousIo)
}

impl Job {
    /// The bytes a job brings into a transaction, for the batch budget.
    fn bytes(&self) -> usize {
        match self {
            Job::Append(events, _) | Job::AppendOnce(_, events, _) => events
                .iter()
                .map(|e| e.body.len() + 200 * e.deliveries.len())
                .sum(),
            Job::PutWorkflow(_, hooks, _, _) => 500 * hooks.len(),
            _ => 200,
        }
    }
}

/// Applies `batch` in one transaction and commits it. A panic of redb's (a damaged file) is
/// caught here: the transaction unwinds (aborted) and the batch fails as a damaged store.
/// The store is then marked `broken` (for its health): a write that panics needs a look at the
/// file, though later writes are still tried.
fn commit(
    db: &Database,
    batch: &[Job],
    durable: bool,
    broken: &Mutex<Option<String>>,
) -> Result<Vec<Done>, redb::Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        commit_unguarded(db, batch, durable)
    }))
    .unwrap_or_else(|panic| {
        let reason = format!(
            "the store file is damaged (redb panicked: {})",
            panic_message(&*panic)
        );
        broken
            .lock()
            .expect("not poisoned")
            .get_or_insert_with(|| reason.clone());
        Err(redb::Error::Corrupted(reason))
    })
}

fn commit_unguarded(db: &Database, batch: &[Job], durable: bool) -> Result<Vec<Done>, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    let now = millis(SystemTime::now());
    let mut done = Vec::with_capacity(batch.len());
    let mut jobs = batch.iter().peekable();
    while let Some(job) = jobs.next() {
        let Job::Record(first, ..) = job else {
            done.push(apply(&txn, job, now)?);
            continue;
        };
        // A run of attempt outcomes is recorded together (each table opened once for them).
        let mut run = vec![first];
        while let Some(Job::Record(next, ..)) = jobs.peek() {
            run.push(next);
            jobs.next();
        }
        edits::record_many(&txn, run.iter().map(|r| (&r.0, &r.1, &r.2)), now)?;
        done.extend(run.iter().map(|_| Done::Record));
    }
    txn.commit()?;
    Ok(done)
}

fn answer(job: Job, result: Result<Done, StoreError>) {
    // A caller that stopped waiting is no error of the store's.
    macro_rules! reply {
        ($reply:expr, $pattern:pat => $value:expr) => {{
            let _ = $reply.send(result.map(|done| match done {
                $pattern => $value,
                _ => unreachable!("each job gets its own kind of result"),
            }));
        }};
    }
    match job {
        Job::Append(_, reply) => reply!(reply, Done::Append(accepted) => accepted),
        Job::AppendOnce(.., reply) => reply!(reply, Done::AppendOnce(appended) => appended),
        Job::Record(_, room, reply) => {
            reply!(reply, Done::Record => ());
            drop(room); // after the answer: the waiting outcome is known committed first
        }
        Job::Replay(_, reply) => reply!(reply, Done::Replay(replay) => replay),
        Job::Retry(_, reply) => reply!(reply, Done::Retry(retry) => retry),
        Job::RetryHook(_, reply) => reply!(reply, Done::RetryHook(retry) => retry),
        Job::Recover(.., reply) => reply!(reply, Done::Recover(recovery) => recovery),
        Job::Enable(_, reply) => reply!(reply, Done::Enable(was) => was),
        Job::Prune(_, reply) => reply!(reply, Done::Prune(n) => n),
        Job::PutWorkflow(.., reply) => reply!(reply, Done::PutWorkflow(change) => *change),
        Job::DeleteWorkflow(_, reply) => reply!(reply, Done::DeleteWorkflow(removal) => removal),
        Job::SetParameters(.., reply) => {
            reply!(reply, Done::SetParameters(hook) => hook.map(|h| *h))
        }
        Job::RotateSecret(.., reply) => reply!(reply, Done::RotateSecret(w) => w.map(|w| *w)),
        Job::Quarantine(.., reply) => reply!(reply, Done::Quarantine(done) => done),
    }
}

fn apply(txn: &WriteTransaction, job: &Job, now: u64) -> Result<Done, redb::Error> {
    Ok(match job {
        Job::Append(events, _) => Done::Append(edits::append(txn, events, now)?),
        Job::AppendOnce(key, events, _) => {
            Done::AppendOnce(edits::append_once(txn, key, events, now)?)
        }
        Job::Record(record, ..) => {
            let (delivery, attempt, outcome) = &**record;
            edits::record_many(txn, [(delivery, attempt, outcome)], now)?;
            Done::Record
        }
        Job::Replay(id, _) => Done::Replay(edits::replay(txn, *id)?),
        Job::Retry(id, _) => Done::Retry(edits::retry(txn, *id)?),
        Job::RetryHook(hook, _) => Done::RetryHook(edits::retry_hook(txn, *hook)?),
        Job::Recover(hook, since, _) => Done::Recover(edits::recover(txn, *hook, *since)?),
        Job::Enable(hook, _) => Done::Enable(edits::enable(txn, *hook)?),
        Job::Prune(cutoff, _) => Done::Prune(edits::prune(txn, *cutoff, now)?),
        Job::PutWorkflow(id, hooks, secret, _) => Done::PutWorkflow(Box::new(
            registry::put_workflow(txn, id, hooks, secret, now)?,
        )),
        Job::DeleteWorkflow(id, _) => {
            Done::DeleteWorkflow(registry::delete_workflow(txn, id, now)?)
        }
        Job::SetParameters(hook, parameters, _) => Done::SetParameters(
            registry::set_parameters(txn, *hook, parameters, now)?.map(Box::new),
        ),
        Job::RotateSecret(workflow, secret, grace, _) => Done::RotateSecret(
            registry::rotate_secret(txn, workflow, secret, *grace, now)?.map(Box::new),
        ),
        Job::Quarantine(hook, id, reason, _) => {
            Done::Quarantine(edits::quarantine(txn, *hook, *id, reason, now)?)
        }
    })
}
