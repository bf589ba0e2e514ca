//! STAND-IN (P1) for P2's `Cluster`: leases, processes, LISTEN/NOTIFY and health. P2 writes the
//! real one at the same time; the lead merges it over this file. The signatures are the
//! contract's (notes/contract13.md). Here a process takes a hook's lease on its first `holds`
//! (when it is free or expired) and keeps it; there is no lease loop, no listener, no share.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use linq_hooks_delivery::{HookId, HookWaker};
use tokio::sync::mpsc::UnboundedReceiver;

use super::Connect;
use crate::StoreError;

/// This process's place among those sharing the database (stand-in).
#[derive(Clone)]
pub(crate) struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    pool: deadpool_postgres::Pool,
    owner: uuid::Uuid,
    lease: Duration,
    waker: Mutex<Option<HookWaker>>,
}

impl Cluster {
    /// Registers this process (a fresh owner id).
    pub(crate) async fn start(
        pool: deadpool_postgres::Pool,
        connect: Connect,
        lease: Duration,
    ) -> Result<Cluster, StoreError> {
        let _ = connect;
        let owner = uuid::Uuid::new_v4();
        let client = pool
            .get()
            .await
            .map_err(|e| StoreError::database("cannot register this process", e))?;
        client
            .execute(
                "INSERT INTO processes (owner, expires_at) \
                 VALUES ($1, now() + make_interval(secs => $2))",
                &[&owner, &lease.as_secs_f64()],
            )
            .await
            .map_err(|e| StoreError::database("cannot register this process", e))?;
        Ok(Cluster {
            inner: Arc::new(Inner {
                pool,
                owner,
                lease,
                waker: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn owner(&self) -> uuid::Uuid {
        self.inner.owner
    }

    /// Takes `hook`'s lease if it is free or expired; whether this process holds it.
    pub(crate) async fn holds(&self, hook: HookId) -> Result<bool, StoreError> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| StoreError::database("cannot take a hook's lease", e))?;
        let hook = i64::try_from(hook).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "INSERT INTO leases (hook, owner, expires_at) \
                 VALUES ($1, $2, now() + make_interval(secs => $3)) \
                 ON CONFLICT (hook) DO UPDATE SET owner = excluded.owner, \
                     expires_at = excluded.expires_at \
                 WHERE leases.owner = excluded.owner OR leases.expires_at < now() \
                 RETURNING hook",
                &[&hook, &self.inner.owner, &self.inner.lease.as_secs_f64()],
            )
            .await
            .map_err(|e| StoreError::database("cannot take a hook's lease", e))?;
        Ok(!rows.is_empty())
    }

    pub(crate) fn subscribe(&self, waker: HookWaker) {
        *self.inner.waker.lock().expect("not poisoned") = Some(waker);
    }

    pub(crate) fn sending(&self, hook: HookId) {
        let _ = hook;
    }

    pub(crate) fn sent(&self, hook: HookId) {
        let _ = hook;
    }

    pub(crate) fn health(&self) -> Result<(), String> {
        Ok(())
    }

    pub(crate) fn workflow_changes(&self) -> Option<UnboundedReceiver<String>> {
        None
    }

    /// Lets go of this process's leases and its process row.
    pub(crate) async fn close(&self) {
        if let Ok(client) = self.inner.pool.get().await {
            let _ = client
                .execute("DELETE FROM leases WHERE owner = $1", &[&self.inner.owner])
                .await;
            let _ = client
                .execute(
                    "DELETE FROM processes WHERE owner = $1",
                    &[&self.inner.owner],
                )
                .await;
        }
    }
}
