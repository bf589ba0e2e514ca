//! The store: a redb file, one writer thread that commits in groups, readers anywhere.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use linq_hooks_delivery::{
    Attempt, AttemptResult, Delivery, DeliveryId, Head, NewDelivery, Outbox, OutboxError, Outcome,
};
use linq_hooks_transport::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction,
};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::records::*;

/// The most jobs one commit takes; more wait for the next.
const MAX_BATCH: usize = 4096;
/// About how many bytes one commit takes at most (one larger job still goes alone).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Attempt outcomes alone are committed without fsync, unless the last durable commit is older
/// than this: losing them in a crash only means sending again, with the same `webhook-id`.
const RECORD_SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// Memory for redb's page cache. A backlog lives on disk: the cache only has to hold each hook's
/// queue head and the pages being written, not the backlog.
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// The on-disk format; a store of another format is refused.
const FORMAT: u64 = 1;

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
    pub deliveries: Vec<NewDelivery>,
}

/// What [`Store::append`] stored for one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AcceptedEvent {
    /// The deliveries made for it, in hook order (none when no hook fires).
    pub deliveries: Vec<AcceptedDelivery>,
}

/// One delivery [`Store::append`] stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AcceptedDelivery {
    /// Its number.
    pub id: DeliveryId,
    /// Its hook's index.
    pub hook: u32,
    /// Its `webhook-id`.
    pub webhook_id: String,
}

/// What became of a replay request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// The failed delivery is pending again, first in its hook's queue; wake that hook.
    Replayed {
        /// Its hook's index.
        hook: u32,
    },
    /// No such delivery (or it was pruned).
    NotFound,
    /// Only failed deliveries can be replayed; this one is in another state.
    NotFailed(DeliveryState),
    /// It was made for a different hook list (the hook file changed since): its hook index
    /// would now point at another hook.
    OtherHookList,
}

/// A durable outbox in one redb file.
///
/// - [`append`](Store::append) returns only after the events and their deliveries are durably
///   committed (fsync). Appends arriving together share one commit (group commit), so
///   throughput is not one fsync per event.
/// - It implements [`Outbox`] for the [`Dispatcher`](linq_hooks_delivery::Dispatcher): each
///   hook's oldest pending delivery, and the record of every attempt. A delivery in flight at a
///   crash is still pending on restart, and is sent again with the same `webhook-id`.
/// - Delivered records are removed by [`prune`](Store::prune); failed ones stay, replayable.
///
/// Clones share the store.
///
/// ```
/// use linq_hooks_delivery::{Head, NewDelivery, Outbox};
/// use linq_hooks_outbox::{NewEvent, Store};
///
/// # let dir = std::env::temp_dir().join(format!("outbox-doc-store-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let _ = std::fs::remove_file(dir.join("store.redb"));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Store::open(dir.join("store.redb"), 1, "hooks-v1")?;
/// let delivery = NewDelivery { hook: 0, webhook_id: "msg_1".into(), body: "{}".into() };
/// let accepted = store.append(vec![NewEvent { body: "{}".into(), deliveries: vec![delivery] }]).await?;
/// let id = accepted[0].deliveries[0].id;
///
/// let Head::Ready(head) = store.head(0).await.unwrap() else { panic!() };
/// assert_eq!((head.id, head.webhook_id.as_str()), (id, "msg_1"));
/// # Ok::<(), linq_hooks_outbox::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// Set when a commit failed on I/O: redb refuses every later write until the file is
    /// opened again, so the store is unusable until `serve` restarts.
    broken: Arc<Mutex<Option<String>>>,
    /// `None` once closing.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    hooks: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("hooks", &self.inner.hooks)
            .finish_non_exhaustive()
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

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Append(Vec<NewEvent>, Reply<Vec<AcceptedEvent>>),
    Record(Box<(Delivery, Attempt, Outcome)>, Reply<()>),
    Replay(DeliveryId, Reply<Replay>),
    Enable(u32, Reply<bool>),
    Prune(u64, Reply<usize>),
}

/// A job's result, kept until its commit is done.
enum Done {
    Append(Vec<AcceptedEvent>),
    Record,
    Replay(Replay),
    Enable(bool),
    Prune(usize),
}

impl Store {
    /// Opens (or creates) the store at `path` for a list of `hooks` hooks whose identity is
    /// `fingerprint` (say, a hash of the hook file's canonical form).
    ///
    /// Refused when the store holds pending deliveries made for a different fingerprint:
    /// their hook indices would point at other hooks.
    pub fn open(
        path: impl AsRef<Path>,
        hooks: usize,
        fingerprint: &str,
    ) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let context = || format!("cannot open the store {}", path.display());
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::storage(context(), e))?;
        let txn = db
            .begin_write()
            .map_err(|e| StoreError::storage(context(), e))?;
        check_format_and_hooks(&txn, fingerprint).map_err(|e| match e {
            Opened::Storage(e) => StoreError::storage(context(), e),
            Opened::Refused(e) => e,
        })?;
        txn.commit()
            .map_err(|e| StoreError::storage(context(), e))?;

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
                db,
                broken,
                jobs: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                hooks,
            }),
        })
    }

    /// `Err` with the reason once the store cannot write any more (an I/O failure such as a
    /// full disk: redb refuses writes until the file is opened again, so restart).
    pub fn health(&self) -> Result<(), String> {
        match &*self.inner.broken.lock().expect("not poisoned") {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    /// Stores events and their deliveries; returns once they are durably committed.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AcceptedEvent>, StoreError> {
        self.submit(|reply| Job::Append(events, reply)).await
    }

    /// Makes a failed delivery pending again (same `webhook-id`, a fresh retry schedule).
    pub async fn replay(&self, id: DeliveryId) -> Result<Replay, StoreError> {
        self.submit(|reply| Job::Replay(id, reply)).await
    }

    /// Enables a hook disabled by a 410; `false` if it was not disabled. Its pending
    /// deliveries resume: wake the hook.
    pub async fn enable(&self, hook: u32) -> Result<bool, StoreError> {
        self.submit(|reply| Job::Enable(hook, reply)).await
    }

    /// Removes delivered records (and their attempts, and event bodies no delivery needs)
    /// delivered before `before`. Returns how many deliveries it removed.
    pub async fn prune(&self, before: SystemTime) -> Result<usize, StoreError> {
        let cutoff = millis(before);
        self.submit(|reply| Job::Prune(cutoff, reply)).await
    }

    async fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sent = match &*self.inner.jobs.lock().expect("not poisoned") {
            Some(jobs) => jobs.send(job(reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::closed());
        }
        answer.await.map_err(|_| StoreError::closed())?
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
            let start = after.map_or(0, |id| id.saturating_add(1));
            let mut out = Vec::new();
            for entry in by_state
                .range((state.code(), start)..=(state.code(), u64::MAX))?
                .take(limit)
            {
                let id = entry?.0.value().1;
                if let Some(record) = deliveries.get(id)? {
                    out.push(DeliveryInfo::new(id, &decode(record.value())?));
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
            Ok(Some((DeliveryInfo::new(id, &record), list)))
        })
    }

    /// Every hook's state, in hook order.
    pub fn hooks(&self) -> Result<Vec<HookStatus>, StoreError> {
        self.read("read the hooks", |txn| {
            let hooks = txn.open_table(HOOKS)?;
            let counts = txn.open_table(PENDING_COUNTS)?;
            let mut out = Vec::with_capacity(self.inner.hooks);
            for index in 0..u32::try_from(self.inner.hooks).unwrap_or(u32::MAX) {
                let record: HookRecord = match hooks.get(index)? {
                    Some(value) => decode(value.value())?,
                    None => HookRecord::default(),
                };
                let waiting = counts.get(index)?.map_or(0, |v| v.value());
                out.push(HookStatus {
                    index,
                    enabled: record.disabled_ms.is_none(),
                    disabled_at: record.disabled_ms.map(rfc3339),
                    consecutive_failures: record.consecutive_failures,
                    pending: waiting,
                });
            }
            Ok(out)
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

    fn read<T>(
        &self,
        what: &str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, ReadError>,
    ) -> Result<T, StoreError> {
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(|e| StoreError::storage(format!("cannot {what}"), e))?;
        f(&txn).map_err(|e| match e {
            ReadError::Storage(e) => StoreError::storage(format!("cannot {what}"), e),
            ReadError::Corrupt(message) => StoreError::corrupt(format!("cannot {what}: {message}")),
        })
    }

    fn head_now(&self, hook: usize) -> Result<Head, StoreError> {
        let hook =
            u32::try_from(hook).map_err(|_| StoreError::corrupt(format!("no hook {hook}")))?;
        self.read("read a hook's queue", |txn| {
            if let Some(value) = txn.open_table(HOOKS)?.get(hook)? {
                let record: HookRecord = decode(value.value())?;
                if record.disabled_ms.is_some() {
                    return Ok(Head::Disabled);
                }
            }
            let pending = txn.open_table(PENDING)?;
            let Some(first) = pending.range((hook, 0)..=(hook, u64::MAX))?.next() else {
                return Ok(Head::Empty);
            };
            let id = first?.0.value().1;
            let record: DeliveryRecord = match txn.open_table(DELIVERIES)?.get(id)? {
                Some(value) => decode(value.value())?,
                None => {
                    return Err(ReadError::Corrupt(format!(
                        "pending delivery {id} has no record"
                    )));
                }
            };
            let body = match txn.open_table(EVENT_BODIES)?.get(record.event)? {
                Some(value) => Bytes::copy_from_slice(value.value()),
                None => {
                    return Err(ReadError::Corrupt(format!(
                        "delivery {id} has no event body"
                    )));
                }
            };
            Ok(Head::Ready(Delivery {
                id,
                hook: hook as usize,
                webhook_id: record.webhook_id,
                body,
                attempts: record.round_attempts,
                next_attempt_at: record.next_attempt_ms.map(from_millis),
            }))
        })
    }
}

#[async_trait::async_trait]
impl Outbox for Store {
    async fn head(&self, hook: usize) -> Result<Head, OutboxError> {
        self.head_now(hook).map_err(OutboxError::new)
    }

    async fn record(
        &self,
        delivery: &Delivery,
        attempt: Attempt,
        outcome: Outcome,
    ) -> Result<(), OutboxError> {
        let job = Box::new((delivery.clone(), attempt, outcome));
        self.submit(|reply| Job::Record(job, reply))
            .await
            .map_err(OutboxError::new)
    }
}

/// A read's failure: redb's, or a record that does not decode.
enum ReadError {
    Storage(redb::Error),
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for ReadError {
    fn from(e: E) -> ReadError {
        ReadError::Storage(e.into())
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ReadError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ReadError::Corrupt(format!("a record does not decode: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

enum Opened {
    Storage(redb::Error),
    Refused(StoreError),
}

impl<E: Into<redb::Error>> From<E> for Opened {
    fn from(e: E) -> Opened {
        Opened::Storage(e.into())
    }
}

/// Creates the tables, checks the format, and checks (then records) the hook fingerprint.
fn check_format_and_hooks(txn: &WriteTransaction, fingerprint: &str) -> Result<(), Opened> {
    for table in [DELIVERIES, EVENT_BODIES] {
        txn.open_table(table)?;
    }
    txn.open_table(EVENT_REFS)?;
    txn.open_table(BY_STATE)?;
    txn.open_table(DELIVERED_AT)?;
    txn.open_table(ATTEMPTS)?;
    txn.open_table(HOOKS)?;
    txn.open_table(PENDING_COUNTS)?;
    let mut counters = txn.open_table(COUNTERS)?;
    let format = counters.get("format")?.map(|v| v.value());
    match format {
        None => {
            counters.insert("format", FORMAT)?;
        }
        Some(FORMAT) => {}
        Some(other) => {
            return Err(Opened::Refused(StoreError::corrupt(format!(
                "the store has format {other}; this version reads format {FORMAT}"
            ))));
        }
    }
    let mut settings = txn.open_table(SETTINGS)?;
    let known = settings.get("hooks")?.map(|v| v.value().to_string());
    if known.as_deref() != Some(fingerprint) {
        let pending = txn.open_table(PENDING)?.len()?;
        if known.is_some() && pending > 0 {
            return Err(Opened::Refused(StoreError::hooks_changed(pending)));
        }
        settings.insert("hooks", fingerprint)?;
        let generation = counters.get("generation")?.map_or(0, |v| v.value());
        counters.insert("generation", generation + 1)?;
        // Hook states belong to the old list (which has nothing pending).
        txn.delete_table(HOOKS)?;
        txn.open_table(HOOKS)?;
        txn.delete_table(PENDING_COUNTS)?;
        txn.open_table(PENDING_COUNTS)?;
    }
    Ok(())
}

/// The writer: takes the jobs waiting (up to a count and a byte budget), applies them in one
/// transaction, commits once, then answers each. Ends when every `Store` is dropped.
fn write_loop(db: &Database, jobs: &mpsc::Receiver<Job>, broken: &Mutex<Option<String>>) {
    let mut last_durable = Instant::now();
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
        match commit(db, &batch, durable) {
            Ok(done) => {
                if durable {
                    last_durable = Instant::now();
                }
                for (job, done) in batch.into_iter().zip(done) {
                    answer(job, Ok(done));
                }
            }
            Err(e) if is_io(&e) => {
                tracing::error!("the store could not commit {} job(s): {e}", batch.len());
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
                    let result = commit(db, std::slice::from_ref(&job), true);
                    match result {
                        Ok(mut done) => answer(job, Ok(done.remove(0))),
                        Err(e) => {
                            tracing::error!("the store could not commit a job: {e}");
                            answer(
                                job,
                                Err(StoreError::corrupt(format!("cannot write the store: {e}"))),
                            );
                        }
                    }
                }
                last_durable = Instant::now();
            }
        }
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
            Job::Append(events, _) => events
                .iter()
                .map(|e| e.body.len() + 200 * e.deliveries.len())
                .sum(),
            _ => 200,
        }
    }
}

fn commit(db: &Database, batch: &[Job], durable: bool) -> Result<Vec<Done>, redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(if durable {
        Durability::Immediate
    } else {
        Durability::None
    })?;
    let now = millis(SystemTime::now());
    let mut done = Vec::with_capacity(batch.len());
    for job in batch {
        done.push(apply(&txn, job, now)?);
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
        Job::Record(_, reply) => reply!(reply, Done::Record => ()),
        Job::Replay(_, reply) => reply!(reply, Done::Replay(replay) => replay),
        Job::Enable(_, reply) => reply!(reply, Done::Enable(was) => was),
        Job::Prune(_, reply) => reply!(reply, Done::Prune(n) => n),
    }
}

fn apply(txn: &WriteTransaction, job: &Job, now: u64) -> Result<Done, redb::Error> {
    Ok(match job {
        Job::Append(events, _) => Done::Append(append(txn, events, now)?),
        Job::Record(record, _) => {
            let (delivery, attempt, outcome) = &**record;
            self::record(txn, delivery, attempt, outcome, now)?;
            Done::Record
        }
        Job::Replay(id, _) => Done::Replay(replay(txn, *id)?),
        Job::Enable(hook, _) => Done::Enable(enable(txn, *hook)?),
        Job::Prune(cutoff, _) => Done::Prune(prune(txn, *cutoff)?),
    })
}

fn next_id(counters: &mut redb::Table<'_, &str, u64>, name: &str) -> Result<u64, redb::Error> {
    let id = counters.get(name)?.map_or(1, |v| v.value());
    counters.insert(name, id + 1)?;
    Ok(id)
}

fn append(
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
    let generation = counters.get("generation")?.map_or(0, |v| v.value());
    let mut added: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    let mut accepted = Vec::with_capacity(events.len());
    for event in events {
        if event.deliveries.is_empty() {
            accepted.push(AcceptedEvent {
                deliveries: Vec::new(),
            });
            continue;
        }
        let event_id = next_id(&mut counters, "next_event")?;
        bodies.insert(event_id, event.body.as_ref())?;
        refs.insert(
            event_id,
            u32::try_from(event.deliveries.len()).unwrap_or(u32::MAX),
        )?;
        let mut made = Vec::with_capacity(event.deliveries.len());
        for new in &event.deliveries {
            let id = next_id(&mut counters, "next_delivery")?;
            let hook = u32::try_from(new.hook).unwrap_or(u32::MAX);
            let record = DeliveryRecord {
                hook,
                event: event_id,
                webhook_id: new.webhook_id.clone(),
                state: DeliveryState::Pending,
                round_attempts: 0,
                attempts: 0,
                created_ms: now,
                next_attempt_ms: None,
                finished_ms: None,
                failure: None,
                generation,
            };
            deliveries.insert(id, encode(&record).as_slice())?;
            pending.insert((hook, id), ())?;
            *added.entry(hook).or_default() += 1;
            by_state.insert((DeliveryState::Pending.code(), id), ())?;
            made.push(AcceptedDelivery {
                id,
                hook,
                webhook_id: new.webhook_id.clone(),
            });
        }
        accepted.push(AcceptedEvent { deliveries: made });
    }
    for (hook, n) in added {
        count_pending(txn, hook, |count| count + n)?;
    }
    Ok(accepted)
}

fn count_pending(
    txn: &WriteTransaction,
    hook: u32,
    change: impl FnOnce(u64) -> u64,
) -> Result<(), redb::Error> {
    let mut counts = txn.open_table(PENDING_COUNTS)?;
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
    match serde_json::from_slice(value.value()) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::error!(
                delivery = id,
                "a delivery record does not decode ({e}); leaving it alone"
            );
            Ok(None)
        }
    }
}

fn set_state(
    txn: &WriteTransaction,
    id: u64,
    from: DeliveryState,
    to: DeliveryState,
) -> Result<(), redb::Error> {
    let mut by_state = txn.open_table(BY_STATE)?;
    by_state.remove((from.code(), id))?;
    by_state.insert((to.code(), id), ())?;
    Ok(())
}

fn update_hook(
    txn: &WriteTransaction,
    hook: u32,
    change: impl FnOnce(&mut HookRecord),
) -> Result<HookRecord, redb::Error> {
    let mut hooks = txn.open_table(HOOKS)?;
    let mut record: HookRecord = hooks
        .get(hook)?
        .and_then(|v| serde_json::from_slice(v.value()).ok())
        .unwrap_or_default();
    let before = record.clone();
    change(&mut record);
    if record.disabled_ms != before.disabled_ms
        || record.consecutive_failures != before.consecutive_failures
    {
        hooks.insert(hook, encode(&record).as_slice())?;
    }
    Ok(before)
}

fn record(
    txn: &WriteTransaction,
    delivery: &Delivery,
    attempt: &Attempt,
    outcome: &Outcome,
    now: u64,
) -> Result<(), redb::Error> {
    let id = delivery.id;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let Some(mut record) = load(&deliveries, id)? else {
        tracing::warn!(
            delivery = id,
            "an attempt was recorded for a delivery that is gone"
        );
        return Ok(());
    };
    if record.state != DeliveryState::Pending {
        tracing::warn!(
            delivery = id,
            state = record.state.as_str(),
            "an attempt was recorded for a settled delivery"
        );
        return Ok(());
    }
    record.attempts += 1;
    record.round_attempts += 1;
    let (status, error) = match &attempt.result {
        AttemptResult::Status(status) => (Some(*status), None),
        AttemptResult::Error(error) => (None, Some(error.clone())),
    };
    let stored = AttemptRecord {
        at_ms: millis(attempt.at),
        latency_us: u64::try_from(attempt.latency.as_micros()).unwrap_or(u64::MAX),
        status,
        error,
    };
    txn.open_table(ATTEMPTS)?
        .insert((id, record.attempts), encode(&stored).as_slice())?;
    let hook = record.hook;
    match outcome {
        Outcome::Delivered => {
            record.state = DeliveryState::Delivered;
            record.finished_ms = Some(now);
            record.next_attempt_ms = None;
            txn.open_table(PENDING)?.remove((hook, id))?;
            count_pending(txn, hook, |count| count.saturating_sub(1))?;
            set_state(txn, id, DeliveryState::Pending, DeliveryState::Delivered)?;
            txn.open_table(DELIVERED_AT)?.insert((now, id), ())?;
            update_hook(txn, hook, |h| h.consecutive_failures = 0)?;
        }
        Outcome::Retry { at } => {
            record.next_attempt_ms = Some(millis(*at));
            update_hook(txn, hook, |h| h.consecutive_failures += 1)?;
        }
        Outcome::Failed { reason } => {
            record.state = DeliveryState::Failed;
            record.finished_ms = Some(now);
            record.next_attempt_ms = None;
            record.failure = Some(reason.clone());
            txn.open_table(PENDING)?.remove((hook, id))?;
            count_pending(txn, hook, |count| count.saturating_sub(1))?;
            set_state(txn, id, DeliveryState::Pending, DeliveryState::Failed)?;
            update_hook(txn, hook, |h| h.consecutive_failures += 1)?;
        }
        Outcome::HookGone => {
            // The delivery waits with the hook; enabling starts it on a fresh schedule.
            record.round_attempts = 0;
            record.next_attempt_ms = None;
            update_hook(txn, hook, |h| {
                h.consecutive_failures += 1;
                h.disabled_ms = Some(now);
            })?;
        }
    }
    deliveries.insert(id, encode(&record).as_slice())?;
    Ok(())
}

fn replay(txn: &WriteTransaction, id: DeliveryId) -> Result<Replay, redb::Error> {
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let Some(mut record) = load(&deliveries, id)? else {
        return Ok(Replay::NotFound);
    };
    if record.state != DeliveryState::Failed {
        return Ok(Replay::NotFailed(record.state));
    }
    let generation = txn
        .open_table(COUNTERS)?
        .get("generation")?
        .map_or(0, |v| v.value());
    if record.generation != generation {
        return Ok(Replay::OtherHookList);
    }
    record.state = DeliveryState::Pending;
    record.round_attempts = 0;
    record.next_attempt_ms = None;
    record.finished_ms = None;
    record.failure = None;
    deliveries.insert(id, encode(&record).as_slice())?;
    txn.open_table(PENDING)?.insert((record.hook, id), ())?;
    count_pending(txn, record.hook, |count| count + 1)?;
    set_state(txn, id, DeliveryState::Failed, DeliveryState::Pending)?;
    Ok(Replay::Replayed { hook: record.hook })
}

fn enable(txn: &WriteTransaction, hook: u32) -> Result<bool, redb::Error> {
    let before = update_hook(txn, hook, |h| {
        h.disabled_ms = None;
        h.consecutive_failures = 0;
    })?;
    Ok(before.disabled_ms.is_some())
}

/// Prunes at most this many deliveries per job, so one job never holds the writer long.
const PRUNE_BATCH: usize = 10_000;

fn prune(txn: &WriteTransaction, cutoff: u64) -> Result<usize, redb::Error> {
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
    for &(at, id) in &old {
        delivered_at.remove((at, id))?;
        by_state.remove((DeliveryState::Delivered.code(), id))?;
        let event = load(&deliveries, id)?.map(|r| r.event);
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
