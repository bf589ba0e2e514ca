//! Several `serve` processes on one PostgreSQL: which process delivers which hook, and how they
//! wake each other.
//!
//! The protocol (tables in `migrations/V2__leases.sql`; expiry times are the database's `now()`,
//! so the processes' clocks never need to agree):
//!
//! - Each process registers a fresh owner id (uuid v4) in `processes`, and its lease loop
//!   heartbeats that row (`expires_at = now() + lease`) every lease/3, deleting rows of processes
//!   whose expiry has passed.
//! - A process delivers a hook only while it holds the hook's row in `leases`. The loop renews
//!   all its leases every lease/3 (`UPDATE … WHERE owner = me RETURNING hook`); a hook not
//!   returned was taken over, and is dropped locally. A held lease counts for
//!   [`Cluster::holds`] until lease/3 before the local estimate of its expiry, so a process cut off
//!   from the database stops sending before another may take over.
//! - Share: `ceil(active hooks / live processes)`. Below its share, the loop takes free or expired
//!   leases (`INSERT … ON CONFLICT (hook) DO UPDATE … WHERE leases.expires_at < now()`) and wakes
//!   each hook taken; above it, it deletes leases of hooks not mid-attempt down to its share.
//!   [`Cluster::holds`] also takes a free hook at once while below the share (one statement),
//!   so a single process behaves like the redb store.
//! - A killed process stops renewing: its process row and leases expire at most `lease` after its
//!   last round, and the next round of each survivor (at most lease/3 later) counts fewer live
//!   processes, so a larger share, and takes the expired leases.
//! - Wakes: NOTIFY on channel `linq_hooks`, payload `h:<id>,<id>,…` (hooks with new or newly
//!   due work: the holder wakes those it holds) or `w:<workflow id>` (sent on
//!   [`Cluster::workflow_changes`]). A lost LISTEN connection is opened again, and then every held
//!   hook is woken (a notification may have been missed); a safety poll wakes every held hook
//!   every 30 s.

use std::collections::HashMap;
#[cfg(test)]
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linq_hooks_delivery::{DeliveryId, HookId, HookWaker};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Socket};
use uuid::Uuid;

use super::{Connect, Tls};
use crate::StoreError;

/// The NOTIFY channel of every process on a database.
pub(crate) const CHANNEL: &str = "linq_hooks";

/// How often every held hook is woken whatever the notifications said.
const SAFETY_POLL: Duration = Duration::from_secs(30);
/// How long a hook found held elsewhere (or not taken) is answered `false` without asking again.
const ELSEWHERE: Duration = Duration::from_secs(1);
/// How long after [`Cluster::holds`] said yes (with neither `sending` nor `sent` since) a hook is
/// kept from rebalancing: its head may be on its way to being sent.
const GRANTED: Duration = Duration::from_secs(1);
/// The shortest round of the lease loop, whatever the lease.
const MIN_ROUND: Duration = Duration::from_millis(10);
/// The longest wait before opening a lost LISTEN connection again.
const RELISTEN_MAX: Duration = Duration::from_secs(5);

/// Takes `$3` for owner `$1` (lease `$2` seconds) when the hook is active and either already
/// ours, or free or expired while we hold fewer leases than our share. One statement, so two
/// processes cannot both take it.
const TAKE_ONE: &str = "
    INSERT INTO leases (hook, owner, expires_at)
    SELECT $3::bigint, $1::uuid, now() + $2::float8 * interval '1 second'
    WHERE EXISTS (SELECT 1 FROM hooks WHERE id = $3::bigint AND removed_ms IS NULL)
      AND (EXISTS (SELECT 1 FROM leases WHERE hook = $3::bigint AND owner = $1::uuid)
           OR (SELECT count(*) FROM leases WHERE owner = $1::uuid)
              < ceil((SELECT count(*) FROM hooks WHERE removed_ms IS NULL)::numeric
                     / greatest((SELECT count(*) FROM processes WHERE expires_at > now()), 1)))
    ON CONFLICT (hook) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
      WHERE leases.owner = EXCLUDED.owner OR leases.expires_at < now()
    RETURNING hook";

/// The active hooks whose lease is free or expired, in random order (so that processes taking
/// at the same time rarely want the same ones).
const FREE: &str = "
    SELECT h.id FROM hooks h LEFT JOIN leases l ON l.hook = h.id
    WHERE h.removed_ms IS NULL AND (l.hook IS NULL OR l.expires_at < now())
    ORDER BY random()";

/// Takes `$3` for owner `$1` (lease `$2` seconds) if it is free or expired. One hook a
/// statement: two processes inserting several rows each in different orders could deadlock.
const TAKE: &str = "
    INSERT INTO leases (hook, owner, expires_at)
    VALUES ($3::bigint, $1::uuid, now() + $2::float8 * interval '1 second')
    ON CONFLICT (hook) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
      WHERE leases.expires_at < now()
    RETURNING hook";

/// The heartbeat (a row deleted as dead while we were cut off is put back) and the removal of
/// dead processes' rows.
const HEARTBEAT: &str = "
    WITH dead AS (DELETE FROM processes WHERE expires_at < now() AND owner <> $1::uuid)
    INSERT INTO processes (owner, expires_at)
    VALUES ($1::uuid, now() + $2::float8 * interval '1 second')
    ON CONFLICT (owner) DO UPDATE SET expires_at = EXCLUDED.expires_at";

/// Renews every lease of `$1`, saying whether each hook is still active.
const RENEW: &str = "
    UPDATE leases SET expires_at = now() + $2::float8 * interval '1 second'
    WHERE owner = $1::uuid
    RETURNING hook,
      EXISTS (SELECT 1 FROM hooks WHERE hooks.id = leases.hook AND hooks.removed_ms IS NULL)";

/// Active hooks and live processes, for the share.
const COUNTS: &str = "
    SELECT (SELECT count(*) FROM hooks WHERE removed_ms IS NULL),
           (SELECT count(*) FROM processes WHERE expires_at > now())";

const RELEASE: &str = "DELETE FROM leases WHERE owner = $1::uuid AND hook = ANY($2::bigint[])";

const CLOSE: &str = "
    WITH released AS (DELETE FROM leases WHERE owner = $1::uuid)
    DELETE FROM processes WHERE owner = $1::uuid";

/// This process's part in sharing one database with other processes: its registration, its
/// hook leases (renewed, taken and released by a loop every lease/3), the LISTEN connection
/// that wakes its dispatcher, and whether all this reaches the database ([`Cluster::health`]).
///
/// Cheap to clone; the loop and the listener stop with [`Cluster::close`] (which gives up the
/// leases at once), or when the last clone is dropped (which, like a killed process, leaves the
/// rows to expire).
#[derive(Clone)]
pub(crate) struct Cluster {
    shared: Arc<Shared>,
    tasks: Arc<Tasks>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("owner", &self.shared.owner)
            .field("lease", &self.shared.lease)
            .finish_non_exhaustive()
    }
}

/// The loop's and the listener's tasks, aborted when the last [`Cluster`] clone goes.
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Tasks {
    fn abort(&self) {
        for task in self.0.lock().expect("not poisoned").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort();
    }
}

struct Shared {
    owner: Uuid,
    lease: Duration,
    /// How often every held hook is woken whatever the notifications said ([`SAFETY_POLL`]).
    safety_poll: Duration,
    state: Mutex<State>,
    /// The connection this process's leases are changed on (a round of the loop, the taking in
    /// [`Cluster::holds`], the release at close): one of its own, so that workers holding every
    /// connection of the store's pool never hold up a renewal. Holding it serialises those
    /// changes, so that one never undoes the other's work unseen.
    leasing: tokio::sync::Mutex<LeaseConnection>,
    wakers: Mutex<Vec<HookWaker>>,
    /// `w:` payloads go here once [`Cluster::workflow_changes`] was taken.
    changes: Mutex<Changes>,
    health: Mutex<Health>,
}

/// The lease connection, opened when first needed and again once it failed or stopped
/// answering.
struct LeaseConnection {
    connect: Connect,
    /// Bounds each use, on this side and (`statement_timeout`, `lock_timeout`) on the server's.
    lease: Duration,
    client: Option<tokio_postgres::Client>,
}

impl LeaseConnection {
    /// Runs `work` on the connection (opened first if need be), for at most a lease. The
    /// connection is taken out while `work` runs and put back only when `work` returns, so one
    /// that does not answer in time (a server that stopped answering, a lost network path) is
    /// dropped, even when the caller is cancelled, and whoever comes next opens a fresh one
    /// instead of waiting on it.
    async fn within<T>(
        &mut self,
        context: &str,
        work: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let answer = tokio::time::timeout(self.lease, async {
            let client = match self.client.take() {
                Some(client) if !client.is_closed() => client,
                _ => {
                    (self.open().await).map_err(|e| StoreError::database(context.to_owned(), e))?
                }
            };
            let answer = work(&client).await;
            self.client = Some(client);
            answer
        })
        .await;
        answer.unwrap_or_else(|_| {
            Err(StoreError::database(
                context.to_owned(),
                format!("the database did not answer within {:?}", self.lease),
            ))
        })
    }

    /// A new connection whose statements and lock waits the server ends after a lease, whatever
    /// the URL's `options` say: one this side gave up on does not linger there.
    async fn open(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let client = self.connect.named(LEASES_NAME).client().await?;
        let ms = self.lease.as_millis();
        client
            .batch_execute(&format!(
                "SET statement_timeout = {ms}; SET lock_timeout = {ms}"
            ))
            .await?;
        Ok(client)
    }
}

#[derive(Default)]
struct State {
    held: HashMap<HookId, Held>,
    /// Hooks whose head (or a read-ahead) was handed out and not all recorded yet: the last
    /// delivery handed out, until it (or an outcome that ends the read-ahead) is recorded.
    sending: HashMap<HookId, DeliveryId>,
    /// Hooks found held elsewhere (or not taken), until when to believe it.
    elsewhere: HashMap<HookId, Instant>,
    /// Held hooks above this process's share that were mid-attempt at the last round: `holds`
    /// says no to them, so no new attempt starts, and a later round releases each once its
    /// attempt is recorded. (Without it, a hook that always has work is never free to move.)
    draining: std::collections::HashSet<HookId>,
    closed: bool,
}

#[derive(Clone, Copy)]
struct Held {
    /// A local, cautious estimate of the lease's expiry: the start of the statement that set it,
    /// plus the lease.
    until: Instant,
    /// When [`Cluster::holds`] last said yes, if neither `sending` nor `sent` came since.
    granted: Option<Instant>,
}

#[derive(Default)]
enum Changes {
    #[default]
    Untaken,
    Taken(UnboundedSender<String>),
}

#[derive(Default)]
struct Health {
    lease_loop: Option<String>,
    listener: Option<String>,
}

impl Cluster {
    /// Registers this process (a fresh owner id: uuid v4), takes its first share of the hooks,
    /// opens the LISTEN connection (channel `linq_hooks`), and starts the lease loop (every
    /// `lease`/3) and the listener, on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// A storage error when the database cannot be reached or the statements fail (the tables
    /// `hooks`, `processes` and `leases` must exist: migrations V1 and V2).
    pub(crate) async fn start(connect: Connect, lease: Duration) -> Result<Cluster, StoreError> {
        Cluster::begin(connect, lease, SAFETY_POLL).await
    }

    /// [`start`](Cluster::start) with another safety poll (tests make it long, so that only
    /// what they test wakes a hook).
    async fn begin(
        connect: Connect,
        lease: Duration,
        safety_poll: Duration,
    ) -> Result<Cluster, StoreError> {
        let shared = Arc::new(Shared {
            owner: Uuid::new_v4(),
            lease,
            safety_poll,
            state: Mutex::new(State::default()),
            leasing: tokio::sync::Mutex::new(LeaseConnection {
                connect: connect.clone(),
                lease,
                client: None,
            }),
            wakers: Mutex::new(Vec::new()),
            changes: Mutex::new(Changes::Untaken),
            health: Mutex::new(Health::default()),
        });
        // Listening first: a process that cannot listen registers nothing.
        let listener = open(&connect).await.map_err(|e| {
            StoreError::database("cannot open the LISTEN connection to the database", e)
        })?;
        shared.round().await?;
        let tasks = vec![
            tokio::spawn(lease_loop(Arc::clone(&shared))),
            tokio::spawn(listen(Arc::clone(&shared), connect, listener)),
        ];
        tracing::info!(owner = %shared.owner, lease = ?lease, "joined the processes sharing the database");
        Ok(Cluster {
            shared,
            tasks: Arc::new(Tasks(Mutex::new(tasks))),
        })
    }

    /// This process's owner id, as written in `leases.owner` and `processes.owner`.
    pub(crate) fn owner(&self) -> Uuid {
        self.shared.owner
    }

    /// Whether this process may send `hook`'s deliveries now: it holds the hook's lease (and not
    /// within lease/3 of its expiry), or the hook was free (no lease, or an expired one) while
    /// this process held fewer than its share, and it took the lease just now. A hook held
    /// elsewhere is `false`, remembered for a second so that a burst of heads is not a burst of
    /// queries. A hook not in `hooks`, or removed, is never taken.
    ///
    /// # Errors
    ///
    /// A storage error when the database cannot be reached to take the lease.
    pub(crate) async fn holds(&self, hook: HookId) -> Result<bool, StoreError> {
        if let Some(known) = self.shared.known(hook) {
            return Ok(known);
        }
        let mut leasing = self.shared.leasing.lock().await;
        // The loop may have taken or released it while we waited.
        if let Some(known) = self.shared.known(hook) {
            return Ok(known);
        }
        let Ok(id) = i64::try_from(hook) else {
            return Ok(false);
        };
        let started = Instant::now();
        let context = format!("cannot take the lease of hook {hook}");
        let (owner, lease) = (self.shared.owner, self.shared.lease.as_secs_f64());
        let taken = leasing
            .within(&context, async |client| {
                let row = client.query_opt(TAKE_ONE, &[&owner, &lease, &id]).await;
                row.map_err(|e| StoreError::database(context.clone(), e))
            })
            .await?
            .is_some();
        let mut state = self.shared.state.lock().expect("not poisoned");
        if state.closed {
            return Ok(false);
        }
        if taken {
            state.elsewhere.remove(&hook);
            state.held.insert(
                hook,
                Held {
                    until: started + self.shared.lease,
                    granted: Some(Instant::now()),
                },
            );
        } else {
            state.held.remove(&hook);
            state.elsewhere.insert(hook, Instant::now() + ELSEWHERE);
        }
        Ok(taken)
    }

    /// Keeps `waker` to wake this process's dispatcher: for a notification on a held hook, each
    /// hook taken, every held hook after the LISTEN connection came back and at each safety poll.
    pub(crate) fn subscribe(&self, waker: HookWaker) {
        self.shared.wakers.lock().expect("not poisoned").push(waker);
    }

    /// Deliveries of `hook` up to `last` (its head, or the last of a read-ahead) were handed
    /// out to be sent: it is mid-attempt (not released by rebalancing) until
    /// [`sent`](Cluster::sent) says the last is recorded.
    pub(crate) fn sending(&self, hook: HookId, last: DeliveryId) {
        let mut state = self.shared.state.lock().expect("not poisoned");
        state.sending.insert(hook, last);
        if let Some(held) = state.held.get_mut(&hook) {
            held.granted = None;
        }
    }

    /// An attempt at `delivery` of `hook` was recorded: the hook is no longer mid-attempt if
    /// that was the last delivery handed out, or if `done` (its outcome ends a read-ahead: a
    /// retry, a disabled hook; or nothing is handed out any more).
    pub(crate) fn sent(&self, hook: HookId, delivery: DeliveryId, done: bool) {
        let mut state = self.shared.state.lock().expect("not poisoned");
        if done
            || state
                .sending
                .get(&hook)
                .is_none_or(|&last| last <= delivery)
        {
            state.sending.remove(&hook);
        }
        if let Some(held) = state.held.get_mut(&hook) {
            held.granted = None;
        }
    }

    /// A record found `hook`'s lease held by another process: this one lets go of it now
    /// ([`holds`](Cluster::holds) says no), not only at its next renewal, and its worker drops
    /// what it read ahead.
    pub(crate) fn lost(&self, hook: HookId) {
        let mut state = self.shared.state.lock().expect("not poisoned");
        state.held.remove(&hook);
        state.sending.remove(&hook);
        state.elsewhere.insert(hook, Instant::now() + ELSEWHERE);
        drop(state);
        // What the worker read ahead is the new owner's to send now.
        let mut wakers = self.shared.wakers.lock().expect("not poisoned");
        wakers.retain(HookWaker::is_alive);
        for waker in wakers.iter() {
            waker.wake(hook);
        }
    }

    /// `Err` (saying why) while the database cannot be reached: the lease loop's last round failed,
    /// or the LISTEN connection is lost and not open again yet. `Ok` again once both work.
    pub(crate) fn health(&self) -> Result<(), String> {
        let health = self.shared.health.lock().expect("not poisoned");
        match (&health.lease_loop, &health.listener) {
            (None, None) => Ok(()),
            (Some(why), None) | (None, Some(why)) => Err(why.clone()),
            (Some(a), Some(b)) => Err(format!("{a}; {b}")),
        }
    }

    /// The ids of workflows changed (`w:` notifications, this process's own changes included),
    /// from the first call on; `None` after the first call.
    pub(crate) fn workflow_changes(&self) -> Option<UnboundedReceiver<String>> {
        let mut changes = self.shared.changes.lock().expect("not poisoned");
        match *changes {
            Changes::Taken(_) => None,
            Changes::Untaken => {
                let (sender, receiver) = unbounded_channel();
                *changes = Changes::Taken(sender);
                Some(receiver)
            }
        }
    }

    /// Stops the lease loop and the listener and deletes this process's leases and row, so that
    /// the other processes take its hooks at their next round. [`holds`](Cluster::holds) is
    /// `false` from then on. A failure to delete is logged: the rows expire anyway.
    pub(crate) async fn close(&self) {
        self.tasks.abort();
        let mut leasing = self.shared.leasing.lock().await;
        {
            let mut state = self.shared.state.lock().expect("not poisoned");
            state.closed = true;
            state.held.clear();
        }
        let owner = self.shared.owner;
        let deleted = leasing
            .within("cannot release the leases", async |client| {
                (client.execute(CLOSE, &[&owner]).await)
                    .map_err(|e| StoreError::database("cannot release the leases", e))
            })
            .await;
        match deleted {
            Ok(_) => tracing::info!(owner = %self.shared.owner, "released this process's leases"),
            Err(e) => tracing::warn!(
                owner = %self.shared.owner,
                "{e}: {}; the other processes take its hooks once they expire",
                e.causes()
            ),
        }
    }

    /// The hooks for which [`holds`](Cluster::holds) would say yes without asking the database
    /// (tests only).
    #[cfg(test)]
    fn claims(&self) -> HashSet<HookId> {
        let now = Instant::now();
        let state = self.shared.state.lock().expect("not poisoned");
        (state.held.iter())
            .filter(|(_, held)| !state.closed && now + self.shared.lease / 3 < held.until)
            .map(|(&hook, _)| hook)
            .collect()
    }

    /// The hooks this process holds (tests only).
    #[cfg(test)]
    fn held(&self) -> Vec<HookId> {
        let mut held: Vec<HookId> = (self.shared.state.lock().expect("not poisoned").held)
            .keys()
            .copied()
            .collect();
        held.sort_unstable();
        held
    }
}

impl Shared {
    /// What [`Cluster::holds`] can answer without the database: `true` for a lease held and not
    /// near its expiry, `false` for a hook recently found held elsewhere or when closed.
    fn known(&self, hook: HookId) -> Option<bool> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("not poisoned");
        if state.closed || state.draining.contains(&hook) {
            return Some(false);
        }
        if let Some(held) = state.held.get_mut(&hook) {
            if now + self.lease / 3 < held.until {
                held.granted = Some(now);
                return Some(true);
            }
            return None;
        }
        match state.elsewhere.get(&hook) {
            Some(&until) if now < until => Some(false),
            Some(_) => {
                state.elsewhere.remove(&hook);
                None
            }
            None => None,
        }
    }

    /// One round of the lease loop, at most a lease long: heartbeat, renew, then take or
    /// release towards the share, waking the hooks taken or to be asked again.
    async fn round(&self) -> Result<(), StoreError> {
        let mut leasing = self.leasing.lock().await;
        leasing
            .within("cannot reach the database", async |client| {
                self.renew(client).await
            })
            .await
    }

    /// The statements of a [`round`](Shared::round), on the lease connection. Each change is
    /// told to this process's state (and the hooks concerned woken) as soon as it is made, so
    /// that a round cut short by its time limit loses nothing it did.
    async fn renew(&self, client: &tokio_postgres::Client) -> Result<(), StoreError> {
        let lease = self.lease.as_secs_f64();
        let failed = |what: &'static str| move |e| StoreError::database(what, e);
        let started = Instant::now();
        client
            .execute(HEARTBEAT, &[&self.owner, &lease])
            .await
            .map_err(failed("cannot renew this process's registration"))?;
        let renewed: HashMap<HookId, bool> = client
            .query(RENEW, &[&self.owner, &lease])
            .await
            .map_err(failed("cannot renew this process's leases"))?
            .iter()
            .map(|row| (row.get::<_, i64>(0) as HookId, row.get::<_, bool>(1)))
            .collect();
        let counts = client
            .query_one(COUNTS, &[])
            .await
            .map_err(failed("cannot count the hooks and processes"))?;
        let (active, live): (i64, i64) = (counts.get(0), counts.get(1));
        let share = (active.max(0) as u64).div_ceil(live.max(1) as u64) as usize;

        // What was renewed is held until started + lease; what was not, another process took.
        let (wake, release) = {
            let mut state = self.state.lock().expect("not poisoned");
            let now = Instant::now();
            let lost: Vec<HookId> = (state.held.keys())
                .filter(|hook| !renewed.contains_key(hook))
                .copied()
                .collect();
            for hook in &lost {
                state.held.remove(hook);
                tracing::warn!(
                    hook,
                    "lost the hook's lease: another process delivers it now"
                );
            }
            let mut wake = Vec::new();
            for &hook in renewed.keys() {
                let held = state.held.entry(hook).or_insert(Held {
                    until: started,
                    granted: None,
                });
                // `holds` said no (or failed) near the old expiry: its worker waits for a wake.
                if now + self.lease / 3 >= held.until {
                    wake.push(hook);
                }
                held.until = started + self.lease;
            }
            let held_active = renewed.values().filter(|&&active| active).count();
            let movable = |hook: &HookId| {
                !state.sending.contains_key(hook)
                    && state.held[hook]
                        .granted
                        .is_none_or(|at| now.duration_since(at) >= GRANTED)
            };
            let mut release: Vec<HookId> = (renewed.iter())
                .filter(|&(hook, &active)| !active && movable(hook))
                .map(|(&hook, _)| hook)
                .collect();
            let mut draining = std::collections::HashSet::new();
            if held_active > share {
                let mut extra: Vec<HookId> = (renewed.iter())
                    .filter(|&(hook, &active)| active && movable(hook))
                    .map(|(&hook, _)| hook)
                    .collect();
                extra.sort_unstable();
                extra.truncate(held_active - share);
                // Too few free to move: the busy ones start no new attempt, to move next.
                let mut busy: Vec<HookId> = (renewed.iter())
                    .filter(|&(hook, &active)| active && !movable(hook))
                    .map(|(&hook, _)| hook)
                    .collect();
                busy.sort_unstable();
                busy.truncate(held_active - share - extra.len());
                draining.extend(busy);
                release.extend(extra);
            }
            // A hook no longer to move (the share grew) is woken: its worker was told no.
            let kept = (state.draining.iter())
                .filter(|hook| !draining.contains(*hook) && renewed.contains_key(*hook));
            wake.extend(kept.copied());
            state.draining = draining;
            for hook in &release {
                state.held.remove(hook);
                state.sending.remove(hook);
            }
            let want = share.saturating_sub(held_active);
            (wake, (release, want))
        };
        self.wake(&wake);
        let (release, want) = release;
        if !release.is_empty() {
            let ids: Vec<i64> = release.iter().map(|&hook| hook as i64).collect();
            client
                .execute(RELEASE, &[&self.owner, &ids])
                .await
                .map_err(failed("cannot release leases"))?;
            tracing::debug!(
                ?release,
                share,
                "released leases above this process's share"
            );
        }
        if want > 0 {
            let free = client
                .query(FREE, &[])
                .await
                .map_err(failed("cannot list the free leases"))?;
            let mut taken: Vec<HookId> = Vec::new();
            for row in free {
                // However many hooks are free (a process starting alone), a round takes what
                // it can in a third of a lease and leaves the rest to the next rounds (and to
                // `holds`, which takes a hook a worker asks about while below the share).
                if taken.len() == want || started.elapsed() >= self.lease / 3 {
                    break;
                }
                let hook: i64 = row.get(0);
                let asked = Instant::now();
                let took = client
                    .query_opt(TAKE, &[&self.owner, &lease, &hook])
                    .await
                    .map_err(failed("cannot take a free lease"))?;
                if took.is_some() {
                    let hook = hook as HookId;
                    let mut state = self.state.lock().expect("not poisoned");
                    state.elsewhere.remove(&hook);
                    state.held.insert(
                        hook,
                        Held {
                            until: asked + self.lease,
                            granted: None,
                        },
                    );
                    taken.push(hook);
                }
            }
            if !taken.is_empty() {
                tracing::debug!(?taken, share, "took free or expired leases");
                self.wake(&taken);
            }
        }
        Ok(())
    }

    fn wake(&self, hooks: &[HookId]) {
        if hooks.is_empty() {
            return;
        }
        let mut wakers = self.wakers.lock().expect("not poisoned");
        wakers.retain(HookWaker::is_alive);
        for waker in wakers.iter() {
            for &hook in hooks {
                waker.wake(hook);
            }
        }
    }

    fn wake_held(&self) {
        let held: Vec<HookId> = (self.state.lock().expect("not poisoned").held)
            .keys()
            .copied()
            .collect();
        self.wake(&held);
    }

    /// A notification on `linq_hooks`.
    fn notified(&self, payload: &str) {
        if let Some(ids) = payload.strip_prefix("h:") {
            let hooks: Vec<HookId> = ids
                .split(',')
                .filter_map(|id| match id.trim().parse::<HookId>() {
                    Ok(hook) => Some(hook),
                    Err(_) => {
                        tracing::debug!(payload, "ignored a hook id in a notification");
                        None
                    }
                })
                .collect();
            let held: Vec<HookId> = {
                let state = self.state.lock().expect("not poisoned");
                hooks
                    .into_iter()
                    .filter(|hook| state.held.contains_key(hook))
                    .collect()
            };
            self.wake(&held);
        } else if let Some(workflow) = payload.strip_prefix("w:") {
            if let Changes::Taken(sender) = &*self.changes.lock().expect("not poisoned") {
                // A receiver dropped: nobody wants the changes any more.
                let _ = sender.send(workflow.to_owned());
            }
        } else {
            tracing::debug!(payload, "ignored a notification");
        }
    }

    /// After the LISTEN connection was lost, the `w:` notifications sent meanwhile are not
    /// heard again: once it listens again, every workflow stored or ever stored (a deleted one
    /// leaves its hooks' tombstones) is told as changed, so that the service reloads each.
    /// Nothing when [`Cluster::workflow_changes`] was not taken.
    async fn tell_every_workflow(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(), tokio_postgres::Error> {
        if matches!(
            *self.changes.lock().expect("not poisoned"),
            Changes::Untaken
        ) {
            return Ok(());
        }
        let rows = client
            .query(
                "SELECT id FROM workflows UNION SELECT workflow FROM hooks",
                &[],
            )
            .await?;
        if let Changes::Taken(sender) = &*self.changes.lock().expect("not poisoned") {
            for row in rows {
                let _ = sender.send(row.get(0));
            }
        }
        Ok(())
    }

    fn set_health(
        &self,
        part: impl FnOnce(&mut Health) -> &mut Option<String>,
        why: Option<String>,
    ) {
        let mut health = self.health.lock().expect("not poisoned");
        let slot = part(&mut health);
        match (&*slot, &why) {
            (None, Some(why)) => tracing::warn!("{why}"),
            (Some(_), None) => tracing::info!("the database can be reached again"),
            _ => {}
        }
        *slot = why;
    }
}

/// Every lease/3: a round; every 30 s (the safety poll), a wake of every held hook.
async fn lease_loop(shared: Arc<Shared>) {
    let period = (shared.lease / 3).max(MIN_ROUND);
    let mut rounds = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_poll = Instant::now();
    loop {
        rounds.tick().await;
        let why = (shared.round().await)
            .err()
            .map(|e| format!("lease loop: {e}: {}", e.causes()));
        shared.set_health(|h| &mut h.lease_loop, why);
        if last_poll.elapsed() >= shared.safety_poll {
            last_poll = Instant::now();
            shared.wake_held();
        }
    }
}

/// The LISTEN connection: its client (dropping it closes the connection) and what it heard.
struct Listener {
    client: tokio_postgres::Client,
    heard: UnboundedReceiver<Result<String, tokio_postgres::Error>>,
}

/// `application_name` of the LISTEN connection (unless the URL names one), so that an operator
/// tells it from the pool's in `pg_stat_activity`.
const LISTENER_NAME: &str = "linq-hooks listener";

/// `application_name` of the lease connection (unless the URL names one).
const LEASES_NAME: &str = "linq-hooks leases";

async fn open(connect: &Connect) -> Result<Listener, tokio_postgres::Error> {
    let connect = connect.named(LISTENER_NAME);
    match &connect.tls {
        Tls::None => open_with(&connect.config, tokio_postgres::NoTls).await,
        Tls::Rustls(tls) => open_with(&connect.config, tls.clone()).await,
    }
}

async fn open_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> Result<Listener, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (sender, heard) = unbounded_channel();
    // Drives the connection until it ends: when the client is dropped, or the server goes.
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if sender.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = sender.send(Err(e));
                    return;
                }
                None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(Listener { client, heard })
}

/// Hears notifications until the connection is lost, then opens it again (waiting 100 ms,
/// doubling up to 5 s or lease/3) and wakes every held hook.
async fn listen(shared: Arc<Shared>, connect: Connect, mut listener: Listener) {
    let most = (shared.lease / 3).clamp(MIN_ROUND, RELISTEN_MAX);
    loop {
        let why = hear(&shared, &mut listener).await;
        shared.set_health(|h| &mut h.listener, Some(why));
        drop(listener);
        let mut wait = Duration::from_millis(100).min(most);
        listener = loop {
            tokio::time::sleep(wait).await;
            let opened = match open(&connect).await {
                Ok(listener) => match shared.tell_every_workflow(&listener.client).await {
                    Ok(()) => Ok(listener),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match opened {
                Ok(listener) => break listener,
                Err(e) => {
                    let why = format!("cannot open the LISTEN connection again: {e}");
                    shared.set_health(|h| &mut h.listener, Some(why));
                    wait = (wait * 2).min(most);
                }
            }
        };
        shared.set_health(|h| &mut h.listener, None);
        // What was notified while the connection was down is not heard again.
        shared.wake_held();
    }
}

/// Wakes hooks for what the LISTEN connection hears, and asks it something every lease (so a
/// connection the network silently dropped is noticed), until it fails: then says why.
async fn hear(shared: &Shared, listener: &mut Listener) -> String {
    let mut ping = tokio::time::interval(shared.lease.max(MIN_ROUND));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            heard = listener.heard.recv() => match heard {
                Some(Ok(payload)) => shared.notified(&payload),
                Some(Err(e)) => return format!("the LISTEN connection failed: {e}"),
                None => return "the LISTEN connection closed".to_owned(),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(shared.lease, listener.client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("the LISTEN connection failed: {e}"),
                    Err(_) => return format!(
                        "the LISTEN connection did not answer within {:?}", shared.lease
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real PostgreSQL (`LINQ_HOOKS_TEST_POSTGRES`, a superuser URL): each test makes a database of
    //! its own, with a stand-in `hooks` table (P1's has more columns; the cluster reads `id` and
    //! `removed_ms`) and migration V2. Several `Cluster`s on one database stand for several
    //! processes: each has its own lease and LISTEN connections.

    use std::collections::BTreeMap;

    use linq_hooks_delivery::{
        Attempt, Config, Delivery, Destination, Dispatcher, Head, HookParameters, Outbox,
        OutboxError, Outcome, async_trait,
    };
    use tokio_postgres::NoTls;

    use super::*;

    /// The lease of these tests: short, so that takeovers come quickly.
    const LEASE: Duration = Duration::from_secs(1);
    /// The bound of every wait: generous, since machines are slow and shared.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn server() -> Option<String> {
        match std::env::var("LINQ_HOOKS_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "LINQ_HOOKS_TEST_POSTGRES must be set in CI"
                );
                // Past the test harness's capture (`eprintln!` is captured), so it is seen.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    b"SKIPPED: PostgreSQL tests need LINQ_HOOKS_TEST_POSTGRES (.ci/run starts one)\n",
                );
                None
            }
        }
    }

    async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
        let (client, connection) = config.connect(NoTls).await.expect("connect to PostgreSQL");
        tokio::spawn(connection);
        client
    }

    /// A database of this test's own, with hooks 1..=N.
    struct Db {
        server: tokio_postgres::Config,
        name: String,
        config: tokio_postgres::Config,
    }

    impl Db {
        async fn new(hooks: u64) -> Option<Db> {
            let server: tokio_postgres::Config = server()?.parse().expect("a PostgreSQL URL");
            let name = format!("p2_cluster_{}", Uuid::new_v4().simple());
            connect(&server)
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create a test database");
            let mut config = server.clone();
            config.dbname(&name);
            let db = Db {
                server,
                name,
                config,
            };
            db.prepare(hooks).await;
            Some(db)
        }

        /// The stand-in `hooks` table with hooks 1..=N, and migration V2.
        async fn prepare(&self, hooks: u64) {
            let client = self.client().await;
            client
                .batch_execute("CREATE TABLE hooks (id bigint PRIMARY KEY, removed_ms bigint)")
                .await
                .unwrap();
            client
                .batch_execute(include_str!("migrations/V2__leases.sql"))
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO hooks (id) SELECT generate_series(1, $1::bigint)",
                    &[&(hooks as i64)],
                )
                .await
                .unwrap();
        }

        async fn client(&self) -> tokio_postgres::Client {
            connect(&self.config).await
        }

        /// A process on this database whose hooks are woken by notifications, takeovers and
        /// reconnections only: its safety poll is an hour.
        async fn cluster(&self) -> Cluster {
            self.cluster_polling(Duration::from_secs(3600)).await
        }

        async fn cluster_polling(&self, safety_poll: Duration) -> Cluster {
            let connect = Connect {
                config: self.config.clone(),
                tls: Tls::None,
            };
            (Cluster::begin(connect, LEASE, safety_poll).await).unwrap()
        }

        /// Unexpired leases, by owner.
        async fn leases(&self) -> BTreeMap<Uuid, Vec<HookId>> {
            let rows = (self.client().await)
                .query(
                    "SELECT owner, hook FROM leases WHERE expires_at > now() ORDER BY hook",
                    &[],
                )
                .await
                .unwrap();
            let mut leases = BTreeMap::<Uuid, Vec<HookId>>::new();
            for row in rows {
                let hook: i64 = row.get(1);
                leases.entry(row.get(0)).or_default().push(hook as HookId);
            }
            leases
        }

        async fn held_by(&self, cluster: &Cluster) -> Vec<HookId> {
            self.leases()
                .await
                .remove(&cluster.owner())
                .unwrap_or_default()
        }

        async fn notify(&self, payload: &str) {
            (self.client().await)
                .execute("SELECT pg_notify('linq_hooks', $1)", &[&payload])
                .await
                .unwrap();
        }

        /// Drops the database (left in place when a test fails, to look at).
        async fn remove(self) {
            connect(&self.server)
                .await
                .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
                .await
                .unwrap();
        }
    }

    /// Waits (at most [`PATIENCE`]) until `check` is true; panics saying `what` otherwise.
    async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !check().await {
            assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An outbox that says every hook is empty and tells which hooks its dispatcher asked
    /// about: a worker asks once at its start and then once per wake-up.
    struct Probe {
        cluster: Cluster,
        heads: UnboundedSender<HookId>,
    }

    #[async_trait]
    impl Outbox for Probe {
        async fn head(&self, hook: HookId) -> Result<Head, OutboxError> {
            let _ = self.heads.send(hook);
            Ok(Head::Empty)
        }
        async fn record(&self, _: &Delivery, _: Attempt, _: Outcome) -> Result<(), OutboxError> {
            Ok(())
        }
        fn subscribe(&self, waker: HookWaker) {
            self.cluster.subscribe(waker);
        }
    }

    /// A running dispatcher for `hooks`, woken by `cluster`, and the hooks it asks about.
    fn dispatcher(cluster: &Cluster, hooks: u64) -> (Dispatcher, UnboundedReceiver<HookId>) {
        let (sender, heads) = unbounded_channel();
        let probe = Arc::new(Probe {
            cluster: cluster.clone(),
            heads: sender,
        });
        let transport = Arc::new(linq_hooks_transport::MemoryTransport::new());
        let dispatcher = Dispatcher::without_hooks(transport, probe, Config::default());
        for hook in 1..=hooks {
            let url = format!("https://hook-{hook}.example");
            let parameters = HookParameters::new(url, Default::default()).unwrap();
            dispatcher.set(hook, Destination::new(parameters));
        }
        let running = dispatcher.clone();
        tokio::spawn(async move { running.run().await });
        (dispatcher, heads)
    }

    /// Waits until the dispatcher has asked about each of `hooks` (in any order), forgetting the
    /// other hooks asked about.
    async fn asked(heads: &mut UnboundedReceiver<HookId>, hooks: &[HookId]) {
        let mut waiting: HashSet<HookId> = hooks.iter().copied().collect();
        tokio::time::timeout(PATIENCE, async {
            while !waiting.is_empty() {
                waiting.remove(&heads.recv().await.expect("the dispatcher runs"));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("hooks {waiting:?} were not woken within {PATIENCE:?}"));
    }

    fn drain(heads: &mut UnboundedReceiver<HookId>) {
        while heads.try_recv().is_ok() {}
    }

    /// Whether the database's leases are `shares` (in the clusters' order) and each cluster
    /// holds (in memory) what it holds in the database.
    async fn shared_as(db: &Db, clusters: &[&Cluster], shares: &[usize]) -> bool {
        let leases = db.leases().await;
        let total: usize = leases.values().map(Vec::len).sum();
        total == shares.iter().sum::<usize>()
            && clusters.iter().zip(shares).all(|(cluster, &share)| {
                let held = leases.get(&cluster.owner()).cloned().unwrap_or_default();
                held.len() == share && cluster.held() == held
            })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shares_even_out_and_a_killed_process_hooks_are_taken_over() {
        let Some(db) = Db::new(12).await else { return };
        let a = db.cluster().await;
        // Alone, a process takes every hook at its start.
        assert_eq!(db.held_by(&a).await, (1..=12).collect::<Vec<_>>());
        let b = db.cluster().await;
        let c = db.cluster().await;
        eventually("three processes hold 4 hooks each", async || {
            shared_as(&db, &[&a, &b, &c], &[4, 4, 4]).await
        })
        .await;
        // `holds` agrees with the leases: each hook is held by exactly one of them.
        for hook in 1..=12 {
            let mut holders = 0;
            for cluster in [&a, &b, &c] {
                holders += usize::from(cluster.holds(hook).await.unwrap());
            }
            assert_eq!(holders, 1, "hook {hook}");
        }

        // kill -9: the tasks stop, the rows stay.
        let killed = c.owner();
        let orphans = db.held_by(&c).await;
        let killed_at = Instant::now();
        drop(c);
        eventually("the two survivors hold 6 hooks each", async || {
            shared_as(&db, &[&a, &b], &[6, 6]).await
        })
        .await;
        eprintln!(
            "takeover after a kill: {:?} (lease {LEASE:?})",
            killed_at.elapsed()
        );
        let leases = db.leases().await;
        assert!(!leases.contains_key(&killed));
        for hook in orphans {
            assert!(a.holds(hook).await.unwrap() != b.holds(hook).await.unwrap());
        }
        // The killed process's row was deleted by a survivor, not by itself.
        let processes: i64 = (db.client().await)
            .query_one("SELECT count(*) FROM processes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(processes, 2);
        a.close().await;
        b.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_hook_is_claimed_by_two_processes_while_they_come_and_go() {
        let Some(db) = Db::new(9).await else { return };
        let processes: Arc<Mutex<Vec<Cluster>>> = Arc::default();
        let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
        // Every few milliseconds: no hook is claimed by two of the processes at once.
        let watcher = tokio::spawn({
            let (processes, watching) = (Arc::clone(&processes), Arc::clone(&watching));
            async move {
                let mut samples = 0u64;
                while watching.load(std::sync::atomic::Ordering::SeqCst) {
                    let claims: Vec<(Uuid, HashSet<HookId>)> = (processes.lock().unwrap())
                        .iter()
                        .map(|p| (p.owner(), p.claims()))
                        .collect();
                    for (i, (a, mine)) in claims.iter().enumerate() {
                        for (b, theirs) in &claims[i + 1..] {
                            let both: Vec<_> = mine.intersection(theirs).collect();
                            assert!(both.is_empty(), "{a} and {b} both claim {both:?}");
                        }
                    }
                    samples += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                samples
            }
        });
        let join = async |processes: &Arc<Mutex<Vec<Cluster>>>| {
            let cluster = db.cluster().await;
            processes.lock().unwrap().push(cluster.clone());
            cluster
        };
        let a = join(&processes).await;
        let b = join(&processes).await;
        let c = join(&processes).await;
        eventually("3 each", async || {
            shared_as(&db, &[&a, &b, &c], &[3, 3, 3]).await
        })
        .await;
        // A kill: the killed process's claims end with it (its memory is gone).
        processes.lock().unwrap().retain(|p| p.owner() != c.owner());
        drop(c);
        eventually("5 and 4", async || {
            let mut held = [db.held_by(&a).await.len(), db.held_by(&b).await.len()];
            held.sort_unstable();
            held == [4, 5] && a.held().len() + b.held().len() == 9
        })
        .await;
        let d = join(&processes).await;
        eventually("3 each again", async || {
            shared_as(&db, &[&a, &b, &d], &[3, 3, 3]).await
        })
        .await;
        a.close().await;
        eventually("5 and 4 again", async || {
            let mut held = [db.held_by(&b).await.len(), db.held_by(&d).await.len()];
            held.sort_unstable();
            held == [4, 5] && b.held().len() + d.held().len() == 9
        })
        .await;
        watching.store(false, std::sync::atomic::Ordering::SeqCst);
        let samples = watcher.await.expect("no hook claimed twice");
        assert!(samples > 10, "{samples} samples");
        b.close().await;
        d.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_says_why_it_cannot() {
        let Some(db) = Db::new(1).await else { return };
        (db.client().await)
            .batch_execute("DROP TABLE leases, processes")
            .await
            .unwrap();
        let connect = Connect {
            config: db.config.clone(),
            tls: Tls::None,
        };
        let err = Cluster::start(connect, LEASE).await.unwrap_err();
        assert!(err.is_storage());
        let why = format!("{err}: {}", err.causes());
        assert!(why.contains("\"processes\" does not exist"), "{why}");

        // Nothing listens on this port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = db.config.clone();
        config.port(port);
        let connect = Connect {
            config,
            tls: Tls::None,
        };
        let err = (Cluster::start(connect, LEASE).await).unwrap_err();
        assert!(err.is_storage());
        assert!(err.to_string().contains("LISTEN connection"), "{err}");
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notifications_wake_the_holder_and_tell_workflow_changes() {
        let Some(db) = Db::new(4).await else { return };
        let a = db.cluster().await;
        let b = db.cluster().await;
        let mut changes_a = a.workflow_changes().expect("taken once");
        assert!(a.workflow_changes().is_none());
        let mut changes_b = b.workflow_changes().unwrap();
        let (_dispatcher_a, mut heads_a) = dispatcher(&a, 4);
        let (_dispatcher_b, mut heads_b) = dispatcher(&b, 4);
        eventually("two processes hold 2 hooks each", async || {
            shared_as(&db, &[&a, &b], &[2, 2]).await
        })
        .await;
        let held_by_a = a.held();
        let held_by_b = b.held();
        drain(&mut heads_a);
        drain(&mut heads_b);

        db.notify(&format!("h:{},{}", held_by_a[1], held_by_b[0]))
            .await;
        asked(&mut heads_a, &[held_by_a[1]]).await;
        asked(&mut heads_b, &[held_by_b[0]]).await;
        // Garbage and unknown hooks are ignored; the listener keeps going.
        db.notify("h:x,99,").await;
        db.notify("something else").await;
        db.notify(&format!("h:{}", held_by_b[1])).await;
        asked(&mut heads_b, &[held_by_b[1]]).await;

        db.notify("w:lab-a").await;
        for changes in [&mut changes_a, &mut changes_b] {
            let change = tokio::time::timeout(PATIENCE, changes.recv()).await;
            assert_eq!(change.unwrap().as_deref(), Some("lab-a"));
        }
        a.close().await;
        b.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_safety_poll_wakes_every_held_hook() {
        let Some(db) = Db::new(2).await else { return };
        let a = db.cluster_polling(LEASE).await;
        let (_dispatcher, mut heads) = dispatcher(&a, 2);
        for _ in 0..3 {
            drain(&mut heads);
            asked(&mut heads, &[1, 2]).await;
        }
        a.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_releases_at_once_and_the_others_take_over() {
        let Some(db) = Db::new(6).await else { return };
        let a = db.cluster().await;
        let b = db.cluster().await;
        let (_dispatcher_b, mut heads_b) = dispatcher(&b, 6);
        eventually("two processes hold 3 hooks each", async || {
            shared_as(&db, &[&a, &b], &[3, 3]).await
        })
        .await;
        let released = a.held();
        drain(&mut heads_b);
        a.close().await;
        // At once: no wait for an expiry.
        assert!(!db.leases().await.contains_key(&a.owner()));
        let rows: i64 = (db.client().await)
            .query_one(
                "SELECT count(*) FROM leases l FULL JOIN processes p ON false \
                 WHERE l.owner = $1 OR p.owner = $1",
                &[&a.owner()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "the closed process's leases and row are gone");
        for &hook in &released {
            assert!(
                !a.holds(hook).await.unwrap(),
                "closed, yet holds hook {hook}"
            );
        }
        eventually("the survivor holds every hook", async || {
            shared_as(&db, &[&b], &[6]).await
        })
        .await;
        // ...and its dispatcher was woken for each hook taken over.
        asked(&mut heads_b, &released).await;
        b.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rebalancing_releases_no_hook_mid_attempt() {
        let Some(db) = Db::new(4).await else { return };
        let a = db.cluster().await;
        assert_eq!(a.held(), vec![1, 2, 3, 4]);
        for hook in [1, 2, 3] {
            assert!(a.holds(hook).await.unwrap());
            a.sending(hook, 0);
        }
        let b = db.cluster().await;
        // A's share is 2 now, but only hook 4 is not mid-attempt.
        eventually(
            "the new process takes the hook not mid-attempt",
            async || shared_as(&db, &[&a, &b], &[3, 1]).await,
        )
        .await;
        assert_eq!(a.held(), vec![1, 2, 3]);
        // Several rounds later, still so.
        tokio::time::sleep(LEASE * 2).await;
        assert_eq!(a.held(), vec![1, 2, 3]);
        assert_eq!(db.held_by(&b).await, vec![4]);
        // One of them is to move once its attempt is recorded: no new attempt starts on it
        // (else a hook that always has work would never move).
        assert!(!a.holds(1).await.unwrap(), "hook 1 starts no new attempt");
        assert!(a.holds(2).await.unwrap() && a.holds(3).await.unwrap());
        a.sent(2, 0, false);
        a.sent(1, 0, false);
        eventually(
            "once recorded, a hook is released to the new process",
            async || shared_as(&db, &[&a, &b], &[2, 2]).await,
        )
        .await;
        assert_eq!(
            a.held(),
            vec![2, 3],
            "hook 1 moved; hook 3 is still mid-attempt"
        );
        assert_eq!(db.held_by(&b).await, vec![1, 4]);
        a.close().await;
        b.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_takes_a_new_hook_at_once_within_the_share() {
        let Some(db) = Db::new(2).await else { return };
        let a = db.cluster().await;
        assert_eq!(a.held(), vec![1, 2]);
        let client = db.client().await;
        client
            .execute("INSERT INTO hooks (id) VALUES (3)", &[])
            .await
            .unwrap();
        // No round needed: the first `holds` takes it.
        assert!(a.holds(3).await.unwrap());
        assert_eq!(db.held_by(&a).await, vec![1, 2, 3]);
        // Unknown and removed hooks are never taken.
        assert!(!a.holds(4).await.unwrap());
        client
            .execute("UPDATE hooks SET removed_ms = 1 WHERE id = 2", &[])
            .await
            .unwrap();
        eventually("the removed hook's lease is given up", async || {
            db.held_by(&a).await == vec![1, 3]
        })
        .await;
        assert_eq!(a.held(), vec![1, 3]);
        a.close().await;
        db.remove().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listen_connection_is_opened_again_and_wakes_every_held_hook() {
        let Some(db) = Db::new(3).await else { return };
        let a = db.cluster().await;
        let (_dispatcher, mut heads) = dispatcher(&a, 3);
        eventually("the hooks are held", async || a.held() == vec![1, 2, 3]).await;
        drain(&mut heads);
        let ended: i64 = (db.client().await)
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = $1",
                &[&LISTENER_NAME],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ended, 1, "one LISTEN connection");
        // The leases are untouched (the lease connection lives): only the reconnection wakes.
        asked(&mut heads, &[1, 2, 3]).await;
        eventually("health is Ok", async || a.health().is_ok()).await;
        drain(&mut heads);
        db.notify("h:3").await;
        asked(&mut heads, &[3]).await;
        a.close().await;
        db.remove().await;
    }

    /// A process starting alone with more free hooks than it can take within a lease starts
    /// anyway: each round takes what it can in a third of a lease, the next rounds the rest.
    /// (Before, the first round ran out of time and the process did not start.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_process_starting_alone_with_many_hooks_takes_them_over_several_rounds() {
        const HOOKS: usize = 5_000;
        let Some(db) = Db::new(HOOKS as u64).await else {
            return;
        };
        let a = db.cluster().await;
        eventually("every hook is held", async || a.held().len() == HOOKS).await;
        assert_eq!(db.held_by(&a).await.len(), HOOKS);
        a.close().await;
        db.remove().await;
    }

    /// The lease connection's server process stops answering (SIGSTOP: the socket stays
    /// open, as behind a dead network path) while a worker waits to take a lease: the work on
    /// it times out, the connection is dropped and a fresh one opened, so the leases are
    /// renewed again and the waiting `holds` answers. Before, the waiting `holds` got the hung
    /// connection next and waited on it for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_connection_that_stops_answering_is_replaced() {
        let Some(db) = Db::new(2).await else { return };
        let a = db.cluster().await;
        eventually("the hooks are held", async || a.held() == vec![1, 2]).await;
        let leases_backend = async || -> Vec<i32> {
            let rows = (db.client().await)
                .query(
                    "SELECT pid FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = $1",
                    &[&LEASES_NAME],
                )
                .await
                .unwrap();
            rows.iter().map(|row| row.get(0)).collect()
        };
        let hung = leases_backend().await;
        assert_eq!(hung.len(), 1, "one lease connection");
        let Some(stopped) = Stopped::new(hung[0]) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot signal the server's processes"
            );
            eprintln!(
                "SKIPPED: cannot signal the server's processes (not on this machine, or not root)"
            );
            return;
        };
        // A worker asks about a hook this process does not know: it waits for the connection.
        let asking = tokio::spawn({
            let a = a.clone();
            async move { a.holds(99).await }
        });
        eventually("a second lease connection is opened", async || {
            leases_backend().await.iter().any(|pid| *pid != hung[0])
        })
        .await;
        let answer = tokio::time::timeout(PATIENCE, asking).await;
        drop(stopped);
        assert!(
            matches!(answer, Ok(Ok(Ok(false) | Err(_)))),
            "holds waited on the hung connection"
        );
        eventually("health is Ok again", async || a.health().is_ok()).await;
        eventually("the leases are held", async || {
            db.held_by(&a).await == vec![1, 2]
        })
        .await;
        a.close().await;
        db.remove().await;
    }

    /// A server process stopped with SIGSTOP, continued (SIGCONT) when this is dropped, even
    /// by a failing test.
    struct Stopped(i32);

    impl Stopped {
        /// `None` when `pid` is not a PostgreSQL process of this machine (the server is
        /// elsewhere) or cannot be signalled (this user does not own it).
        fn new(pid: i32) -> Option<Stopped> {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (name.trim() == "postgres" && signal("-STOP", pid)).then_some(Stopped(pid))
        }
    }

    impl Drop for Stopped {
        fn drop(&mut self) {
            signal("-CONT", self.0);
        }
    }

    fn signal(name: &str, pid: i32) -> bool {
        std::process::Command::new("kill")
            .args([name, &pid.to_string()])
            .status()
            .is_ok_and(|status| status.success())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_follows_the_database_and_the_listener_comes_back() {
        let Some(db) = Db::new(2).await else { return };
        let a = db.cluster().await;
        let (_dispatcher, mut heads) = dispatcher(&a, 2);
        assert_eq!(a.health(), Ok(()));
        // Cut this database off: its connections are ended and new ones refused.
        let admin = connect(&db.server).await;
        let cut = format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
            db.name
        );
        admin.batch_execute(&cut).await.unwrap();
        eventually(
            "health is Err while the database cannot be reached",
            async || a.health().is_err(),
        )
        .await;
        let why = a.health().unwrap_err();
        assert!(
            why.contains("LISTEN") || why.contains("lease loop"),
            "{why}"
        );
        // Long enough for the lease loop to fail as well.
        eventually("the lease loop fails too", async || {
            a.health().is_err_and(|why| why.contains("lease loop"))
        })
        .await;
        drain(&mut heads);
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                db.name
            ))
            .await
            .unwrap();
        eventually("health is Ok again once it can", async || {
            a.health().is_ok()
        })
        .await;
        // Held hooks were woken after the LISTEN connection came back (or the leases renewed).
        asked(&mut heads, &[1, 2]).await;
        // The new LISTEN connection hears.
        eventually("the hooks are held again", async || a.held() == vec![1, 2]).await;
        drain(&mut heads);
        db.notify("h:2").await;
        asked(&mut heads, &[2]).await;
        a.close().await;
        db.remove().await;
    }

    /// A throwaway PostgreSQL server of this test's own, which it may stop and start: initdb
    /// in a temporary directory (as the `postgres` user when run as root, since initdb refuses
    /// root), on a free port of 127.0.0.1. Stopped and deleted when dropped.
    struct OwnServer {
        bin: std::path::PathBuf,
        dir: std::path::PathBuf,
        port: u16,
    }

    impl OwnServer {
        /// `None` (saying so) when PostgreSQL's programs are not found: `LINQ_HOOKS_TEST_PG_BIN`,
        /// or the newest `/usr/lib/postgresql/*/bin`.
        fn new() -> Option<OwnServer> {
            let bin = std::env::var_os("LINQ_HOOKS_TEST_PG_BIN")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    let mut bins: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
                        .ok()?
                        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                        .filter(|bin| bin.join("pg_ctl").exists())
                        .collect();
                    bins.sort_by_key(|bin| {
                        let version = bin.parent().and_then(|v| v.file_name());
                        version.and_then(|v| v.to_str()?.parse::<u32>().ok())
                    });
                    bins.pop()
                });
            let Some(bin) = bin else {
                eprintln!(
                    "SKIPPED: a PostgreSQL server stopped and started: no initdb/pg_ctl \
                     (set LINQ_HOOKS_TEST_PG_BIN)"
                );
                return None;
            };
            let dir = std::env::temp_dir().join(format!("p2-cluster-{}", Uuid::new_v4().simple()));
            std::fs::create_dir(&dir).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let server = OwnServer { bin, dir, port };
            if server.as_root() {
                let chown = std::process::Command::new("chown")
                    .arg("postgres:")
                    .arg(&server.dir)
                    .status();
                assert!(chown.unwrap().success(), "chown the server's directory");
            }
            server.run(&format!(
                "{}/initdb -D {}/data -A trust -U postgres",
                server.bin.display(),
                server.dir.display()
            ));
            server.start();
            Some(server)
        }

        fn as_root(&self) -> bool {
            let id = std::process::Command::new("id").arg("-u").output().unwrap();
            String::from_utf8_lossy(&id.stdout).trim() == "0"
        }

        fn run(&self, command: &str) {
            let output = if self.as_root() {
                std::process::Command::new("su")
                    .args(["postgres", "-s", "/bin/sh", "-c", command])
                    .output()
            } else {
                std::process::Command::new("sh")
                    .args(["-c", command])
                    .output()
            }
            .unwrap();
            assert!(
                output.status.success(),
                "{command}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }

        fn start(&self) {
            self.run(&format!(
                "{0}/pg_ctl -D {1}/data -l {1}/log -w -o '-p {2} -k {1} -c listen_addresses=127.0.0.1' start",
                self.bin.display(),
                self.dir.display(),
                self.port
            ));
        }

        fn stop(&self) {
            self.run(&format!(
                "{}/pg_ctl -D {}/data -m immediate -w stop",
                self.bin.display(),
                self.dir.display()
            ));
        }

        fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            // Stopped already when the test stopped it and failed: then this fails, harmlessly.
            let stop = std::panic::catch_unwind(|| self.stop());
            if stop.is_err() {
                eprintln!(
                    "the throwaway server in {} was not running",
                    self.dir.display()
                );
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_is_err_while_the_server_is_stopped_and_ok_after_it_starts() {
        let Some(server) = OwnServer::new() else {
            return;
        };
        let config: tokio_postgres::Config = server.url().parse().unwrap();
        let db = Db {
            server: config.clone(),
            name: "postgres".into(),
            config,
        };
        db.prepare(2).await;
        let a = db.cluster().await;
        let (_dispatcher, mut heads) = dispatcher(&a, 2);
        assert_eq!(a.health(), Ok(()));

        server.stop();
        eventually("health is Err while the server is stopped", async || {
            a.health()
                .is_err_and(|why| why.contains("lease loop") && why.contains("LISTEN"))
        })
        .await;
        // Cut off, it stops sending before another process could take its hooks over.
        eventually("holds is no longer true", async || {
            !matches!(a.holds(1).await, Ok(true))
        })
        .await;
        drain(&mut heads);

        server.start();
        eventually("health is Ok once the server is back", async || {
            a.health().is_ok()
        })
        .await;
        eventually("the hooks are held again", async || a.held() == vec![1, 2]).await;
        asked(&mut heads, &[1, 2]).await;
        assert!(a.holds(1).await.unwrap());
        a.close().await;
    }
}
