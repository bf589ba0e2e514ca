//! What `serve` needs of a store, whichever it is: the trait [`DurableOutbox`], implemented by
//! the redb store ([`Store`](crate::Store)) and the PostgreSQL store (`PgStore`, feature
//! `postgres`).

use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{DeliveryId, HookId, Outbox};
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;

use crate::{
    AcceptedEvent, Appended, AttemptInfo, DeliveryFilter, DeliveryInfo, DeliveryPage,
    DeliveryState, EventInfo, HookRetry, IdempotencyKey, NewEvent, Recovery, Replay, Retry,
    StoreError, StoredHook, StoredWorkflow, WorkflowChange, WorkflowRemoval,
};

/// A durable outbox with its registry: what `linq-hooks serve` keeps, whichever store keeps it.
///
/// Every method means what the redb [`Store`](crate::Store)'s method of the same name means
/// (its docs give each answer in full); the conformance tests (`tests/conformance.rs`) hold
/// both stores to it. The reads are `async` here because a store may be across a network.
///
/// A store shared by several processes (PostgreSQL) also:
/// - answers [`Outbox::head`] only for the hooks this process holds a lease on (others are
///   [`Head::Empty`](linq_hooks_delivery::Head::Empty) here), and wakes a hook's worker through
///   the [`HookWaker`](linq_hooks_delivery::HookWaker) given to [`Outbox::subscribe`] when it
///   takes the hook's lease or hears of new work for it from another process;
/// - tells of the workflows another process changed ([`DurableOutbox::workflow_changes`]), so
///   that each process's matchers and destinations follow the registry.
///
/// ```
/// use std::sync::Arc;
/// use linq_hooks_outbox::{DurableOutbox, Store};
///
/// # let dir = std::env::temp_dir().join(format!("outbox-doc-durable-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let _ = std::fs::remove_file(dir.join("durable.redb"));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store: Arc<dyn DurableOutbox> = Arc::new(Store::open(dir.join("durable.redb"))?);
/// assert_eq!(store.pending().await?, 0);
/// assert!(store.workflows().await?.is_empty());
/// # Ok::<(), linq_hooks_outbox::StoreError>(())
/// # }).unwrap();
/// ```
#[async_trait::async_trait]
pub trait DurableOutbox: Outbox + Send + Sync + 'static {
    /// Where the store is, for logs: a file's path, or a PostgreSQL URL without its password.
    fn location(&self) -> String;

    /// `Err(reason)` while the store cannot serve (a failed write, a lost database
    /// connection); `Ok` again once it can. Cheap: it reads what the store last saw.
    fn health(&self) -> Result<(), String>;

    /// Workflows changed by another process sharing this store, by id, as they are heard of:
    /// reload each (it may have been deleted). After a gap in hearing (a lost connection), every
    /// workflow is told, changed or not. `None` for a store only this process uses;
    /// the receiver is handed out once (later calls get `None`).
    fn workflow_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        None
    }

    /// Lets go of what this process holds (its hooks' leases) so that others take it over at
    /// once, after the dispatcher has stopped. The default does nothing.
    async fn close(&self) {}

    /// See [`Store::append`](crate::Store::append).
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AcceptedEvent>, StoreError>;
    /// See [`Store::append_once`](crate::Store::append_once).
    async fn append_once(
        &self,
        key: IdempotencyKey,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError>;
    /// See [`Store::replay`](crate::Store::replay).
    async fn replay(&self, id: DeliveryId) -> Result<Replay, StoreError>;
    /// See [`Store::retry`](crate::Store::retry).
    async fn retry(&self, id: DeliveryId) -> Result<Retry, StoreError>;
    /// See [`Store::retry_hook`](crate::Store::retry_hook).
    async fn retry_hook(&self, hook: HookId) -> Result<HookRetry, StoreError>;
    /// See [`Store::recover`](crate::Store::recover).
    async fn recover(&self, hook: HookId, since: SystemTime) -> Result<Recovery, StoreError>;
    /// See [`Store::enable`](crate::Store::enable).
    async fn enable(&self, hook: HookId) -> Result<Option<bool>, StoreError>;
    /// See [`Store::prune`](crate::Store::prune).
    async fn prune(&self, before: SystemTime) -> Result<usize, StoreError>;

    /// See [`Store::put_workflow`](crate::Store::put_workflow).
    async fn put_workflow(
        &self,
        id: String,
        hooks: Vec<Hook>,
        secret: Secret,
    ) -> Result<WorkflowChange, StoreError>;
    /// See [`Store::delete_workflow`](crate::Store::delete_workflow).
    async fn delete_workflow(&self, id: String) -> Result<Option<WorkflowRemoval>, StoreError>;
    /// See [`Store::set_parameters`](crate::Store::set_parameters).
    async fn set_parameters(
        &self,
        hook: HookId,
        parameters: HookParameters,
    ) -> Result<Option<StoredHook>, StoreError>;
    /// See [`Store::rotate_secret`](crate::Store::rotate_secret).
    async fn rotate_secret(
        &self,
        workflow: String,
        secret: Secret,
        grace: Duration,
    ) -> Result<Option<StoredWorkflow>, StoreError>;

    /// See [`Store::workflows`](crate::Store::workflows).
    async fn workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError>;
    /// See [`Store::list_workflows`](crate::Store::list_workflows).
    async fn list_workflows(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredWorkflow>, StoreError>;
    /// See [`Store::workflow`](crate::Store::workflow).
    async fn workflow(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError>;
    /// See [`Store::list_hooks`](crate::Store::list_hooks).
    async fn list_hooks(
        &self,
        after: Option<HookId>,
        limit: usize,
    ) -> Result<Vec<StoredHook>, StoreError>;
    /// See [`Store::hook`](crate::Store::hook).
    async fn hook(&self, id: HookId) -> Result<Option<StoredHook>, StoreError>;
    /// See [`Store::workflow_of`](crate::Store::workflow_of).
    async fn workflow_of(&self, hook: HookId) -> Result<Option<String>, StoreError>;
    /// See [`Store::list`](crate::Store::list).
    async fn list(
        &self,
        state: DeliveryState,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError>;
    /// See [`Store::get`](crate::Store::get).
    async fn get(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryInfo, Vec<AttemptInfo>)>, StoreError>;
    /// See [`Store::disabled_hooks`](crate::Store::disabled_hooks).
    async fn disabled_hooks(&self) -> Result<usize, StoreError>;
    /// See [`Store::pending`](crate::Store::pending).
    async fn pending(&self) -> Result<u64, StoreError>;
    /// See [`Store::count`](crate::Store::count).
    async fn count(&self, state: DeliveryState) -> Result<u64, StoreError>;
    /// See [`Store::deliveries`](crate::Store::deliveries).
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage, StoreError>;
    /// See [`Store::event`](crate::Store::event).
    async fn event(&self, id: u64) -> Result<Option<EventInfo>, StoreError>;
}
