//! The store's handle: opening, the jobs it sends to the writer, and its reads (redb's MVCC read
//! transactions, from any thread).

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{
    Attempt, Delivery, DeliveryId, Head, HookId, Outbox, OutboxError, Outcome,
};
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;
use linq_hooks_transport::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::oneshot;

use crate::redb::behind::{Behind, Outcomes, Waiting};
use crate::redb::edits::check_format;
use crate::error::StoreError;
use crate::query::info_of;
use crate::records::*;
use crate::redb::views::{hook_view, workflow_view};
use crate::redb::wire::{Decode, Encode};
use crate::redb::writer::{Job, write_loop};

mod behind;
mod edits;
mod registry;
mod views;
pub(crate) mod wire;
mod writer;

/// Memory for redb's page cache. A backlog lives on disk: the cache only has to hold each hook's
/// queue head and the pages being written, not the backlog.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// An event to store with its deliveries (those of the hooks that fire for it).
///
/// ```
/// let new = linq_hooks_outbox::NewEvent { body: r#"{"event":"new_plan"}"#.into(), deliveries: vec![] };
/// assert!(new.deliveries.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The event's JSON, exactly as every delivery will post it.
    pub body: Bytes,
    /// One per hook that fires.
    pub deliveries: Vec<linq_hooks_delivery::NewDelivery>,
}

/// The idempotency key of an ingest ([`Store::append_once`]): a repeat with the same key
/// within `window` stores nothing and gets the first answer.
///
/// ```
/// use std::time::Duration;
/// let key = linq_hooks_outbox::IdempotencyKey {
///     key: "lab-a\u{0}batch-17".into(),
///     fingerprint: "sha256-of-the-body".into(),
///     window: Duration::from_secs(24 * 3600),
/// };
/// assert_eq!(key.window.as_secs(), 86_400);
/// ```
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    /// The key, as the caller scopes it (say, the workflow and the client's key).
    pub key: String,
    /// What identifies the request's content (a digest of its body): the same key with another
    /// fingerprint is refused.
    pub fingerprint: String,
    /// How long the key is remembered.
    pub window: Duration,
}

/// What [`Store::append_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Appended {
    /// The events were stored, and the key with them.
    Stored(Vec<AcceptedEvent>),
    /// The key was used before, within its window, for the same content: nothing was stored;
    /// this is what the first ingest stored.
    Repeated(Vec<AcceptedEvent>),
    /// The key was used before, within its window, for other content: nothing was stored.
    KeyReused,
}

/// What [`Store::append`] stored for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptedEvent {
    /// The event's number (`None` when no hook fires: nothing is stored).
    pub id: Option<u64>,
    /// The deliveries made for it, in hook order (none when no hook fires).
    pub deliveries: Vec<AcceptedDelivery>,
}

/// One delivery [`Store::append`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcceptedDelivery {
    /// Its number.
    pub id: DeliveryId,
    /// Its hook.
    pub hook: HookId,
    /// Its `webhook-id`.
    pub webhook_id: String,
}

/// What became of a replay request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replay {
    /// The failed delivery is pending again, first in its hook's queue; wake that hook.
    Replayed {
        /// Its hook.
        hook: HookId,
    },
    /// No such delivery (or it was pruned).
    NotFound,
    /// Only failed deliveries can be replayed; this one is in another state.
    NotFailed(DeliveryState),
    /// Its hook was removed from its workflow: there is nowhere to send it.
    HookRemoved {
        /// The removed hook.
        hook: HookId,
    },
}

/// What became of a retry request ([`Store::retry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// The pending delivery is due now (and so is the head of its hook's queue, which goes
    /// first): call [`Dispatcher::retry_now`](linq_hooks_delivery::Dispatcher::retry_now)
    /// for its hook.
    Now {
        /// Its hook.
        hook: HookId,
        /// The head of the hook's queue, which is attempted first (the delivery itself when
        /// it is the head).
        head: Option<DeliveryId>,
    },
    /// The failed delivery is pending again, as [`Store::replay`] does; wake its hook.
    Replayed {
        /// Its hook.
        hook: HookId,
    },
    /// No such delivery (or it was pruned).
    NotFound,
    /// Delivered, cancelled or quarantined: nothing to retry.
    NotRetriable(DeliveryState),
    /// A failed delivery whose hook was removed: there is nowhere to send it.
    HookRemoved {
        /// The removed hook.
        hook: HookId,
    },
    /// A pending delivery whose hook a 410 Gone disabled: it waits until the hook is enabled.
    HookDisabled {
        /// The disabled hook.
        hook: HookId,
    },
}

/// What became of a hook retry ([`Store::retry_hook`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookRetry {
    /// The head of its queue (if any) is due now: call
    /// [`Dispatcher::retry_now`](linq_hooks_delivery::Dispatcher::retry_now).
    Woken {
        /// Its pending deliveries.
        pending: u64,
        /// The head of its queue, now due.
        head: Option<DeliveryId>,
    },
    /// No such hook (or it was removed).
    NotFound,
    /// A 410 Gone disabled it: enable it first.
    Disabled,
}

/// What a recovery did ([`Store::recover`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// These failed deliveries are pending again, in id order (none if there were none).
    Replayed(Vec<DeliveryId>),
    /// No such hook (or it was removed).
    NotFound,
}

/// A durable outbox in one redb file: events, their deliveries and attempts, and the registry
/// of workflows and their hooks.
///
/// - [`append`](Store::append) returns only after the events and their deliveries are durably
///   committed (fsync). Appends arriving together share one commit (group commit), so
///   throughput is not one fsync per event. Registry changes ([`put_workflow`](Store::put_workflow)
///   and the rest) are committed durably the same way.
/// - It implements [`Outbox`] for the [`Dispatcher`](linq_hooks_delivery::Dispatcher): each
///   hook's oldest pending delivery, and the record of every attempt. A delivery in flight at a
///   crash is still pending on restart, and is sent again with the same `webhook-id`.
/// - Delivered records are removed by [`prune`](Store::prune); failed and cancelled ones stay.
///
/// Clones share the store.
///
/// ```
/// use linq_hooks_delivery::{Head, NewDelivery, Outbox};
/// use linq_hooks_outbox::{NewEvent, Store};
/// use linq_hooks_signature::Secret;
///
/// # let dir = std::env::temp_dir().join(format!("outbox-doc-store-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let _ = std::fs::remove_file(dir.join("store.redb"));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Store::open(dir.join("store.redb"))?;
/// let hooks = linq_hooks_model::parse_hooks(
///     r#"[{"filter": "on_new_plan", "parameters": {"url": "https://lims.example/plans"}}]"#,
/// ).unwrap().hooks;
/// let change = store.put_workflow("lab-a", hooks, Secret::generate().unwrap()).await?;
/// let hook = change.workflow.hooks[0].id;
///
/// let delivery = NewDelivery { hook, webhook_id: "msg_1".into(), body: "{}".into() };
/// let accepted = store.append(vec![NewEvent { body: "{}".into(), deliveries: vec![delivery] }]).await?;
/// let id = accepted[0].deliveries[0].id;
///
/// let Head::Ready(head) = store.head(hook).await.unwrap() else { panic!() };
/// assert_eq!((head.id, head.webhook_id.as_str()), (id, "msg_1"));
/// # Ok::<(), linq_hooks_outbox::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: std::path::PathBuf,
    db: Arc<Database>,
    /// Set when a commit failed on I/O: redb refuses every later write until the file is
    /// opened again, so the store is unusable until `serve` restarts.
    broken: Arc<Mutex<Option<String>>>,
    /// `None` once closing.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Attempt outcomes handed to the writer, until their commit is known.
    behind: Behind,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Drop for Inner {
    /// Closes the store for real: the writer finishes the jobs it has and lets go of the file,
    /// so the same path can be opened again at once.
    fn drop(&mut self) {
        self.jobs.lock().expect("not poisoned").take();
        if let Some(writer) = self.writer.lock().expect("not poisoned").take() {
            let _ = writer.join();
        }
    }
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

impl Store {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be created or read, another process has it open, or it was written in
    /// another format (an older linq-hooks).
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let context = || format!("cannot open the store {}", path.display());
        if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
            // redb would make a new store in it: a store truncated to nothing would silently
            // start empty, and what it held would be forgotten.
            return Err(StoreError::damaged(
                format!("the store file {} is empty (0 bytes)", path.display()),
                "a store linq-hooks has opened is never empty, so this one was truncated or \
                 replaced: restore it from a backup, or remove the file to start a new, empty \
                 store",
            ));
        }
        let db = contained(&context(), || {
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)
                .map_err(|e| StoreError::storage(context(), e))?;
            let txn = db
                .begin_write()
                .map_err(|e| StoreError::storage(context(), e))?;
            check_format(&txn).map_err(|e| match e {
                crate::redb::edits::Opened::Storage(e) => StoreError::storage(context(), e),
                crate::redb::edits::Opened::Refused(e) => e,
            })?;
            // A queue entry damaged on disk must not strand its delivery nor send it to
            // another hook: checked before any worker reads a queue.
            crate::redb::edits::check_queues(&txn).map_err(|e| StoreError::storage(context(), e))?;
            txn.commit()
                .map_err(|e| StoreError::storage(context(), e))?;
            Ok(db)
        })
        .map_err(|e| {
            if e.is_damaged() {
                StoreError::damaged(
                    context(),
                    format!(
                        "{}; restore it from a backup, or move it aside to start a new store",
                        e.causes()
                    ),
                )
            } else {
                e
            }
        })?;

        let db = Arc::new(db);
        let (sender, receiver) = mpsc::channel();
        let writer_db = Arc::clone(&db);
        let broken: Arc<Mutex<Option<String>>> = Arc::default();
        let writer_broken = Arc::clone(&broken);
        let writer = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || {
                write_loop(&writer_db, &receiver, &writer_broken);
                // Whatever ended the loop, a store that cannot write is not healthy.
                writer_broken
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| "the store's writer stopped".into());
            })
            .map_err(|e| StoreError::corrupt(format!("cannot start the store's writer: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db,
                broken,
                jobs: Mutex::new(Some(sender)),
                behind: Behind::new(),
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// The store file's path, as given to [`open`](Store::open).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("outbox-doc-path-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let store = linq_hooks_outbox::Store::open(dir.join("path.redb")).unwrap();
    /// assert!(store.path().ends_with("path.redb"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `Err` with the reason once the store cannot write any more (an I/O failure such as a
    /// full disk: redb refuses writes until the file is opened again, so restart).
    pub fn health(&self) -> Result<(), String> {
        match &*self.inner.broken.lock().expect("not poisoned") {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

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
    /// their pending deliveries become [`Cancelled`](DeliveryState::Cancelled), with the reason.
    /// `secret` becomes the workflow's secret when it is created, and is unused otherwise.
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

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
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
    /// is room: see [`MAX_BEHIND`](crate::redb::behind::MAX_BEHIND)).
    async fn hand_over(&self, outcomes: Outcomes) -> Result<Waiting, StoreError> {
        let room = self.inner.behind.room().await;
        let (reply, answer) = oneshot::channel();
        self.send(Job::Record(outcomes.clone(), room, reply))?;
        Ok(Waiting::new(outcomes, answer))
    }

    /// Waits until the outcomes recorded for `hook` are committed. One whose commit failed is
    /// handed over again, first in the hook's line, and its error returned: it is not forgotten.
    async fn settle(&self, hook: HookId) -> Result<(), StoreError> {
        let Err((outcomes, e)) = self.inner.behind.settle(hook).await else {
            return Ok(());
        };
        if let Ok(waiting) = self.hand_over(outcomes).await {
            self.inner.behind.push_front(hook, waiting);
        }
        Err(e)
    }

    /// Every workflow with its hooks, ordered by id (what a service loads at start).
    pub fn workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        self.list_workflows(None, usize::MAX)
    }

    /// Workflows ordered by id, after `after` (for paging), at most `limit`.
    pub fn list_workflows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        self.read("list workflows", |txn| {
            let workflows = txn.open_table(WORKFLOWS)?;
            let range = match after {
                Some(after) => workflows.range::<&str>((
                    std::ops::Bound::Excluded(after),
                    std::ops::Bound::Unbounded,
                ))?,
                None => workflows.range::<&str>(..)?,
            };
            let mut out = Vec::new();
            for entry in range.take(limit) {
                let (id, record) = entry?;
                out.push(read_workflow(txn, id.value(), &decode(record.value())?)?);
            }
            Ok(out)
        })
    }

    /// One workflow with its hooks.
    pub fn workflow(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        self.read("read a workflow", |txn| {
            let Some(record) = txn.open_table(WORKFLOWS)?.get(id)? else {
                return Ok(None);
            };
            Ok(Some(read_workflow(txn, id, &decode(record.value())?)?))
        })
    }

    /// Hooks of every workflow in id order, after the hook `after` (for paging), at most
    /// `limit`; removed hooks are left out.
    pub fn list_hooks(
        &self,
        after: Option<HookId>,
        limit: usize,
    ) -> Result<Vec<StoredHook>, StoreError> {
        self.read("list hooks", |txn| {
            let defs = txn.open_table(HOOK_DEFS)?;
            let (states, counts) = (txn.open_table(HOOKS)?, txn.open_table(PENDING_COUNTS)?);
            let start = after.map_or(0, |id| id.saturating_add(1));
            let mut out = Vec::new();
            for entry in defs.range(start..)? {
                if out.len() == limit {
                    break;
                }
                let (id, def) = entry?;
                let def: HookDef = decode(def.value())?;
                if def.removed_ms.is_none() {
                    out.push(hook_view(&states, &counts, id.value(), def)?);
                }
            }
            Ok(out)
        })
    }

    /// One hook of the registry (`None` if unknown or removed).
    pub fn hook(&self, id: HookId) -> Result<Option<StoredHook>, StoreError> {
        self.read("read a hook", |txn| {
            let Some(def) = txn.open_table(HOOK_DEFS)?.get(id)? else {
                return Ok(None);
            };
            let def: HookDef = decode(def.value())?;
            if def.removed_ms.is_some() {
                return Ok(None);
            }
            let (states, counts) = (txn.open_table(HOOKS)?, txn.open_table(PENDING_COUNTS)?);
            Ok(Some(hook_view(&states, &counts, id, def)?))
        })
    }

    /// The workflow a hook belongs (or belonged) to; kept after the hook is removed, so old
    /// deliveries still name theirs.
    pub fn workflow_of(&self, hook: HookId) -> Result<Option<String>, StoreError> {
        self.read("read a hook", |txn| {
            Ok(match txn.open_table(HOOK_DEFS)?.get(hook)? {
                Some(def) => Some(decode::<HookDef>(def.value())?.workflow),
                None => None,
            })
        })
    }

    /// Deliveries in a state, oldest first, after the delivery `after` (for paging).
    pub fn list(
        &self,
        state: DeliveryState,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        self.read("list deliveries", |txn| {
            let by_state = txn.open_table(BY_STATE)?;
            let deliveries = txn.open_table(DELIVERIES)?;
            let attempts = txn.open_table(ATTEMPTS)?;
            let start = after.map_or(0, |id| id.saturating_add(1));
            let mut out = Vec::new();
            for entry in by_state
                .range((state.code(), start)..=(state.code(), u64::MAX))?
                .take(limit)
            {
                let id = entry?.0.value().1;
                if let Some(record) = deliveries.get(id)? {
                    let record = decode(record.value()).map_err(|e| match e {
                        ReadError::Corrupt(why) => {
                            ReadError::Corrupt(format!("delivery {id}: {why}"))
                        }
                        other => other,
                    })?;
                    out.push(info_of(&attempts, id, &record)?);
                }
            }
            Ok(out)
        })
    }

    /// One delivery and its attempts, oldest first.
    pub fn get(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryInfo, Vec<AttemptInfo>)>, StoreError> {
        self.read("read a delivery", |txn| {
            let Some(record) = txn.open_table(DELIVERIES)?.get(id)? else {
                return Ok(None);
            };
            let record: DeliveryRecord = decode(record.value())?;
            let attempts = txn.open_table(ATTEMPTS)?;
            let mut list = Vec::new();
            for entry in attempts.range((id, 0)..=(id, u32::MAX))? {
                let attempt: AttemptRecord = decode(entry?.1.value())?;
                list.push(AttemptInfo::from(&attempt));
            }
            Ok(Some((info_of(&attempts, id, &record)?, list)))
        })
    }

    /// How many hooks a 410 Gone disabled.
    pub fn disabled_hooks(&self) -> Result<usize, StoreError> {
        self.read("read the hooks", |txn| {
            let mut disabled = 0;
            for entry in txn.open_table(HOOKS)?.iter()? {
                let record: HookRecord = decode(entry?.1.value())?;
                disabled += usize::from(record.disabled_ms.is_some());
            }
            Ok(disabled)
        })
    }

    /// How many deliveries are pending, over all hooks.
    pub fn pending(&self) -> Result<u64, StoreError> {
        self.read("count pending deliveries", |txn| {
            Ok(txn.open_table(PENDING)?.len()?)
        })
    }

    /// Runs `f` in a read transaction; redb's panics on a damaged file come back as errors.
    pub(crate) fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, ReadError>,
    ) -> Result<T, StoreError> {
        let context = format!("cannot {what}");
        contained(&context, || {
            let txn = self
                .inner
                .db
                .begin_read()
                .map_err(|e| StoreError::storage(context.clone(), e))?;
            f(&txn).map_err(|e| match e {
                ReadError::Storage(e) => StoreError::storage(context.clone(), e),
                ReadError::Corrupt(message) => StoreError::damaged(context.clone(), message),
            })
        })
    }

    /// How many deliveries are in `state` (walks that state's index: meant for the rare
    /// states, such as [`Quarantined`](DeliveryState::Quarantined)).
    pub fn count(&self, state: DeliveryState) -> Result<u64, StoreError> {
        self.read("count deliveries", |txn| {
            let by_state = txn.open_table(BY_STATE)?;
            let mut n = 0;
            for entry in by_state.range((state.code(), 0)..=(state.code(), u64::MAX))? {
                entry?;
                n += 1;
            }
            Ok(n)
        })
    }

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

/// Runs `f`, turning a panic (redb's, on a file damaged in a way it assumes cannot happen)
/// into an error that says the store is damaged. redb's structures are only read by the
/// panicking call, and a write transaction that unwinds is dropped (aborted), so the store
/// stays usable for what is not damaged.
pub(crate) fn contained<T>(
    context: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(StoreError::damaged(
            context,
            format!(
                "the store file is damaged (redb: {})",
                panic_message(&*panic)
            ),
        ))
    })
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".into()
    }
}

/// A workflow's record with its hooks read in.
fn read_workflow(
    txn: &redb::ReadTransaction,
    id: &str,
    record: &WorkflowRecord,
) -> Result<StoredWorkflow, ReadError> {
    let (defs, states, counts) = (
        txn.open_table(HOOK_DEFS)?,
        txn.open_table(HOOKS)?,
        txn.open_table(PENDING_COUNTS)?,
    );
    Ok(workflow_view(&defs, &states, &counts, id, record)?)
}

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
    /// transaction (fewer once their bodies pass [`READ_AHEAD_BYTES`]); `None` when the hook is
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
    /// [`MAX_BEHIND`](crate::redb::behind::MAX_BEHIND) outcomes to commit.
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

/// A read's failure: redb's, or a record that does not decode.
pub(crate) enum ReadError {
    Storage(redb::Error),
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for ReadError {
    fn from(e: E) -> ReadError {
        ReadError::Storage(e.into())
    }
}

/// A sealed record's value: its checksum checked, then its bytes read (`wire`).
pub(crate) fn decode<T: Decode>(bytes: &[u8]) -> Result<T, ReadError> {
    T::decode(unseal(bytes).map_err(ReadError::Corrupt)?)
        .map_err(|e| ReadError::Corrupt(format!("a record does not decode: {e}")))
}

/// A record as stored: its bytes (`wire`), sealed with its checksum.
pub(crate) fn encode<T: Encode>(value: &T) -> Vec<u8> {
    seal(&value.encode())
}
