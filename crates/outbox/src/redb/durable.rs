//! The redb store as [`DurableOutbox`]: each method is the [`Store`] method of the same name.

use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;

use super::Store;
use crate::{
    AcceptedEvent, Appended, AttemptInfo, DeliveryFilter, DeliveryInfo, DeliveryPage,
    DeliveryState, DurableOutbox, EventInfo, HookRetry, IdempotencyKey, NewEvent, Recovery, Replay,
    Retry, StoreError, StoredHook, StoredWorkflow, WorkflowChange, WorkflowRemoval,
};

#[async_trait::async_trait]
impl DurableOutbox for Store {
    fn location(&self) -> String {
        self.path().display().to_string()
    }
    fn health(&self) -> Result<(), String> {
        Store::health(self)
    }
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AcceptedEvent>, StoreError> {
        Store::append(self, events).await
    }
    async fn append_once(
        &self,
        key: IdempotencyKey,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        Store::append_once(self, key, events).await
    }
    async fn replay(&self, id: DeliveryId) -> Result<Replay, StoreError> {
        Store::replay(self, id).await
    }
    async fn retry(&self, id: DeliveryId) -> Result<Retry, StoreError> {
        Store::retry(self, id).await
    }
    async fn retry_hook(&self, hook: HookId) -> Result<HookRetry, StoreError> {
        Store::retry_hook(self, hook).await
    }
    async fn recover(&self, hook: HookId, since: SystemTime) -> Result<Recovery, StoreError> {
        Store::recover(self, hook, since).await
    }
    async fn enable(&self, hook: HookId) -> Result<Option<bool>, StoreError> {
        Store::enable(self, hook).await
    }
    async fn prune(&self, before: SystemTime) -> Result<usize, StoreError> {
        Store::prune(self, before).await
    }
    async fn put_workflow(
        &self,
        id: String,
        hooks: Vec<Hook>,
        secret: Secret,
    ) -> Result<WorkflowChange, StoreError> {
        Store::put_workflow(self, id, hooks, secret).await
    }
    async fn delete_workflow(&self, id: String) -> Result<Option<WorkflowRemoval>, StoreError> {
        Store::delete_workflow(self, id).await
    }
    async fn set_parameters(
        &self,
        hook: HookId,
        parameters: HookParameters,
    ) -> Result<Option<StoredHook>, StoreError> {
        Store::set_parameters(self, hook, parameters).await
    }
    async fn rotate_secret(
        &self,
        workflow: String,
        secret: Secret,
        grace: Duration,
    ) -> Result<Option<StoredWorkflow>, StoreError> {
        Store::rotate_secret(self, workflow, secret, grace).await
    }
    async fn workflows(&self) -> Result<Vec<StoredWorkflow>, StoreError> {
        Store::workflows(self)
    }
    async fn list_workflows(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredWorkflow>, StoreError> {
        Store::list_workflows(self, after.as_deref(), limit)
    }
    async fn workflow(&self, id: &str) -> Result<Option<StoredWorkflow>, StoreError> {
        Store::workflow(self, id)
    }
    async fn list_hooks(
        &self,
        after: Option<HookId>,
        limit: usize,
    ) -> Result<Vec<StoredHook>, StoreError> {
        Store::list_hooks(self, after, limit)
    }
    async fn hook(&self, id: HookId) -> Result<Option<StoredHook>, StoreError> {
        Store::hook(self, id)
    }
    async fn workflow_of(&self, hook: HookId) -> Result<Option<String>, StoreError> {
        Store::workflow_of(self, hook)
    }
    async fn list(
        &self,
        state: DeliveryState,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, StoreError> {
        Store::list(self, state, after, limit)
    }
    async fn get(
        &self,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryInfo, Vec<AttemptInfo>)>, StoreError> {
        Store::get(self, id)
    }
    async fn disabled_hooks(&self) -> Result<usize, StoreError> {
        Store::disabled_hooks(self)
    }
    async fn pending(&self) -> Result<u64, StoreError> {
        Store::pending(self)
    }
    async fn count(&self, state: DeliveryState) -> Result<u64, StoreError> {
        Store::count(self, state)
    }
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage, StoreError> {
        Store::deliveries(self, filter)
    }
    async fn event(&self, id: u64) -> Result<Option<EventInfo>, StoreError> {
        Store::event(self, id)
    }
}
