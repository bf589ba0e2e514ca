//! The redb store: a durable outbox in one [redb](https://www.redb.org) file.
//!
//! - this file: the handle ([`Store`]), opening, and its reads (redb's MVCC read transactions,
//!   from any thread);
//! - `submit`: its changes, each a job handed to the writer, and the hand-over of attempt
//!   outcomes written behind (`behind`);
//! - `writer`: the writer thread, which applies the jobs waiting in one transaction and commits
//!   once (group commit); `edits` and `registry`: each job's table edits, and the format check
//!   at opening;
//! - `outbox`: the dispatcher's side ([`Outbox`](linq_hooks_delivery::Outbox)): each hook's
//!   queue head, read-ahead, and the record of attempts;
//! - `query`: the operations API's reads ([`Store::deliveries`], [`Store::event`]);
//! - `records`, `wire`, `views`: the tables, their records and how their bytes are read.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use linq_hooks_delivery::{DeliveryId, HookId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::{AttemptInfo, DeliveryInfo, DeliveryState, StoreError, StoredHook, StoredWorkflow};
use behind::Behind;
use query::info_of;
use records::*;
use views::{hook_view, workflow_view};
use writer::{Job, write_loop};

mod behind;
mod durable;
mod edits;
mod outbox;
mod query;
mod records;
mod registry;
mod submit;
mod views;
mod wire;
mod writer;

/// Memory for redb's page cache. A backlog lives on disk: the cache only has to hold each hook's
/// queue head and the pages being written, not the backlog.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A durable outbox in one redb file: events, their deliveries and attempts, and the registry
/// of workflows and their hooks.
///
/// - [`append`](Store::append) returns only after the events and their deliveries are durably
///   committed (fsync). Appends arriving together share one commit (group commit), so
///   throughput is not one fsync per event. Registry changes ([`put_workflow`](Store::put_workflow)
///   and the rest) are committed durably the same way.
/// - It implements [`Outbox`](linq_hooks_delivery::Outbox) for the
///   [`Dispatcher`](linq_hooks_delivery::Dispatcher): each hook's oldest pending delivery, and
///   the record of every attempt. A delivery in flight at a crash is still pending on restart,
///   and is sent again with the same `webhook-id`.
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
            edits::check_format(&txn).map_err(|e| match e {
                edits::Opened::Storage(e) => StoreError::storage(context(), e),
                edits::Opened::Refused(e) => e,
            })?;
            // A queue entry damaged on disk must not strand its delivery nor send it to
            // another hook: checked before any worker reads a queue.
            edits::check_queues(&txn).map_err(|e| StoreError::storage(context(), e))?;
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
}

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
