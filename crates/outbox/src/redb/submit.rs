//! The redb store's changes: each is a job handed to the writer thread (`writer`), answered
//! once its commit is durable; and the hand-over of attempt outcomes, which the writer commits
//! behind the dispatcher (`behind`).

use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;
use tokio::sync::oneshot;

use super::Store;
use super::behind::{Outcomes, Waiting};
use super::writer::Job;
use crate::records::millis;
use crate::{
    AcceptedEvent, Appended, HookRetry, IdempotencyKey, NewEvent, Recovery, Replay, Retry,
    StoreError, StoredHook, StoredWorkflow, WorkflowChange, WorkflowRemoval,
};

/// Where the writer answers a job.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

impl Store {
    /// Stores events and their deliveries; returns once they are durably committed. Every
    /// delivery's hook must be a hook of the registry (the caller matched the event against
    /// it); a delivery for a hook that was removed meanwhile is stored as cancelled.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AcceptedEvent>, StoreError> {
        self.submit(|reply| Job::Append(events, reply)).await
    }

    /// Like [`append`](Store::append), once per idempotency key: the key is stored in the same
    /// commit as the events, so a repeat (a client retrying a request whose answer it lost)
    /// stores nothing and gets the first answer, even after a crash.
    pub async fn append_once(
        &self,
        key: IdempotencyKey,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.submit(|reply| Job::AppendOnce(Box::new(key), events, reply))
            .await
    }

    /// Makes a failed delivery pending again (same `webhook-id`, a fresh retry schedule). It goes
    /// to its hook's current URL and headers.
    pub async fn replay(&self, id: DeliveryId) -> Result<Replay, StoreError> {
        self.submit(|reply| Job::Replay(id, reply)).await
    }

    /// Retries delivery `id` now. A pending one is made due now, keeping the attempts of its
    /// round (so a failure goes on with its retry schedule); since a hook's deliveries go in
    /// order, the head of its hook's queue is made due now too, and goes first. A failed one
    /// is replayed ([`replay`](Store::replay)). Then tell the dispatcher
    /// ([`Dispatcher::retry_now`](linq_hooks_delivery::Dispatcher::retry_now) for
    /// [`Retry::Now`], `wake` for [`Retry::Replayed`]).
    pub async fn retry(&self, id: DeliveryId) -> Result<Retry, StoreError> {
        self.submit(|reply| Job::Retry(id, reply)).await
    }

    /// Makes the head of `hook`'s queue due now, keeping the attempts of its round; then call
    /// [`Dispatcher::retry_now`](linq_hooks_delivery::Dispatcher::retry_now).
    pub async fn retry_hook(&self, hook: HookId) -> Result<HookRetry, StoreError> {
        self.submit(|reply| Job::RetryHook(hook, reply)).await
    }

    /// Replays every failed delivery of `hook` created at `since` or later, in id order, in
    /// one transaction: each is pending again with its own `webhook-id` and a fresh retry
    /// schedule. A hook's queue is in id order, so each takes its place among the deliveries
    /// already pending by id: behind older ones, ahead of newer ones (the hook's deliveries
    /// still go in the order they were created). Walks only the hook's failed deliveries (an
    /// index by hook and state). Then wake the hook.
    pub async fn recover(&self, hook: HookId, since: SystemTime) -> Result<Recovery, StoreError> {
        let since = millis(since);
        self.submit(|reply| Job::Recover(hook, since, reply)).await
    }

    /// Enables a hook disabled by a 410; `Some(false)` if it was not disabled, `None` if there is
    /// no such hook. Its pending deliveries resume: wake the hook.
    pub async fn enable(&self, hook: HookId) -> Result<Option<bool>, StoreError> {
        self.submit(|reply| Job::Enable(hook, reply)).await
    }

    /// Removes delivered records (and their attempts, and event bodies no delivery needs)
    /// delivered before `before`. Returns how many deliveries it removed.
    pub async fn prune(&self, before: SystemTime) -> Result<usize, StoreError> {
        let cutoff = millis(before);
        self.submit(|reply| Job::Prune(cutoff, reply)).await
    }

    /// Creates or replaces workflow `id` with `hooks`, durably, in one transaction.
    ///
    /// A hook of the new list that [fires like](Hook::fires_like) a hook of the old one (among
    /// several alike, in order) *is* that hook: it keeps its id, its queue, its state and its
    /// history, and takes the new parameters, so its pending deliveries go to the new URL and
    /// headers from their next attempt on. Hooks of the old list left unpaired are removed:
    /// their pending deliveries become [`Cancelled`](crate::DeliveryState::Cancelled), with the
    /// reason. `secret` becomes the workflow's secret when it is created, and is unused
    /// otherwise.
    pub async fn put_workflow(
        &self,
        id: impl Into<String>,
        hooks: Vec<Hook>,
        secret: Secret,
    ) -> Result<WorkflowChange, StoreError> {
        let id = id.into();
        self.submit(|reply| Job::PutWorkflow(id, hooks, secret, reply))
            .await
    }

    /// Removes workflow `id` and all its hooks (their pending deliveries are cancelled); `None`
    /// if there is no such workflow.
    pub async fn delete_workflow(
        &self,
        id: impl Into<String>,
    ) -> Result<Option<WorkflowRemoval>, StoreError> {
        let id = id.into();
        self.submit(|reply| Job::DeleteWorkflow(id, reply)).await
    }

    /// Changes where a hook posts: its pending deliveries go to the new URL and headers from
    /// their next attempt on. `None` if there is no such hook (or it was removed).
    pub async fn set_parameters(
        &self,
        hook: HookId,
        parameters: HookParameters,
    ) -> Result<Option<StoredHook>, StoreError> {
        self.submit(|reply| Job::SetParameters(hook, parameters, reply))
            .await
    }

    /// Makes `secret` the workflow's secret; the one before keeps signing for `grace` (as do
    /// earlier ones still in their own grace period), so that receivers can switch over. A zero
    /// `grace` replaces the secret outright. `None` if there is no such workflow.
    pub async fn rotate_secret(
        &self,
        workflow: impl Into<String>,
        secret: Secret,
        grace: Duration,
    ) -> Result<Option<StoredWorkflow>, StoreError> {
        let workflow = workflow.into();
        self.submit(|reply| Job::RotateSecret(workflow, secret, grace, reply))
            .await
    }

    pub(super) async fn submit<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(job(reply))?;
        answer.await.map_err(|_| StoreError::closed())?
    }

    /// Hands `job` to the writer.
    fn send(&self, job: Job) -> Result<(), StoreError> {
        match &*self.inner.jobs.lock().expect("not poisoned") {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(StoreError::closed()),
        }
    }

    /// Hands an attempt's outcomes to the writer without waiting for the commit (once there
    /// is room: see [`MAX_BEHIND`](super::behind::MAX_BEHIND)).
    pub(super) async fn hand_over(&self, outcomes: Outcomes) -> Result<Waiting, StoreError> {
        let room = self.inner.behind.room().await;
        let (reply, answer) = oneshot::channel();
        self.send(Job::Record(outcomes.clone(), room, reply))?;
        Ok(Waiting::new(outcomes, answer))
    }

    /// Waits until the outcomes recorded for `hook` are committed. One whose commit failed is
    /// handed over again, first in the hook's line, and its error returned: it is not forgotten.
    pub(super) async fn settle(&self, hook: HookId) -> Result<(), StoreError> {
        let Err((outcomes, e)) = self.inner.behind.settle(hook).await else {
            return Ok(());
        };
        if let Ok(waiting) = self.hand_over(outcomes).await {
            self.inner.behind.push_front(hook, waiting);
        }
        Err(e)
    }
}
