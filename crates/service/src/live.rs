//! The registry as live data: each workflow's matcher and hook ids in memory, kept in step with
//! the store and the dispatcher.
//!
//! One lock orders everything: a registry change holds it for writing from its commit until the
//! dispatcher and the matchers show it; an ingest holds it for reading from matching until its
//! commit. So an event ingested after a change's answer is matched against the new hooks, and a
//! delivery is never stored for a hook removed before it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use linq_hooks_delivery::{Destination, Dispatcher, HookId, NewDelivery};
use linq_hooks_events::Event;
use linq_hooks_filter::Matcher;
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_outbox::{
    Appended, DurableOutbox, IdempotencyKey, NewEvent, StoreError, StoredHook, StoredWorkflow,
    WorkflowChange, WorkflowRemoval,
};
use linq_hooks_signature::Secret;
use tokio::sync::RwLock;

use crate::observe::Observer;

/// The workflow `POST /v1/events` and `serve --hooks` use.
pub const DEFAULT_WORKFLOW: &str = "default";

/// What a workflow needs in memory to take events.
struct LiveWorkflow {
    matcher: Matcher,
    /// Hook ids, in the matcher's order.
    hooks: Vec<HookId>,
}

/// A workflow's signing secrets as text: the current one, and the others that still sign, each
/// with the end of its grace period (`None`: for as long as `serve --secret` gives it).
pub(crate) struct SecretsText {
    pub(crate) current: String,
    pub(crate) previous: Vec<(String, Option<SystemTime>)>,
}

/// The live registry. Every change goes through here.
pub(crate) struct Live {
    pub(crate) store: Arc<dyn DurableOutbox>,
    pub(crate) dispatcher: Dispatcher,
    workflows: RwLock<HashMap<String, LiveWorkflow>>,
    /// `--secret`: the `default` workflow signs with exactly these, whatever is stored.
    default_secrets: Option<Vec<Secret>>,
    /// Told which hooks are registered (per-hook metrics and stats exist for these only).
    pub(crate) observer: Arc<Observer>,
}

/// Why a registry change could not be made.
#[derive(Debug)]
pub(crate) enum ChangeError {
    /// No such workflow or hook.
    NotFound,
    /// The store failed.
    Store(StoreError),
    /// No random source for a new secret.
    Random(std::io::Error),
}

impl From<StoreError> for ChangeError {
    fn from(e: StoreError) -> ChangeError {
        ChangeError::Store(e)
    }
}

impl Live {
    /// Loads every workflow from the store and gives its hooks to the dispatcher.
    pub(crate) async fn load(
        store: Arc<dyn DurableOutbox>,
        dispatcher: Dispatcher,
        default_secrets: Option<Vec<Secret>>,
        observer: Arc<Observer>,
    ) -> Result<Live, StoreError> {
        let live = Live {
            store,
            dispatcher,
            workflows: RwLock::new(HashMap::new()),
            default_secrets,
            observer,
        };
        let mut workflows = HashMap::new();
        for workflow in live.store.workflows().await? {
            live.show(&workflow, &mut workflows);
        }
        *live.workflows.try_write().expect("nobody else has it yet") = workflows;
        Ok(live)
    }

    /// Makes the dispatcher and the matchers show `workflow` as stored.
    fn show(&self, workflow: &StoredWorkflow, workflows: &mut HashMap<String, LiveWorkflow>) {
        for hook in &workflow.hooks {
            self.dispatcher
                .set(hook.id, self.destination(workflow, hook));
        }
        self.observer.show(workflow);
        let hooks: Vec<Hook> = workflow.hooks.iter().map(|h| h.hook.clone()).collect();
        workflows.insert(
            workflow.id.clone(),
            LiveWorkflow {
                matcher: Matcher::new(&hooks),
                hooks: workflow.hooks.iter().map(|h| h.id).collect(),
            },
        );
    }

    fn destination(&self, workflow: &StoredWorkflow, hook: &StoredHook) -> Destination {
        let destination = Destination::new(hook.hook.parameters().clone());
        if workflow.id == DEFAULT_WORKFLOW
            && let Some(secrets) = &self.default_secrets
        {
            return secrets
                .iter()
                .cloned()
                .fold(destination, Destination::secret);
        }
        let secrets = &workflow.secrets;
        let now = SystemTime::now();
        secrets
            .previous
            .iter()
            .filter(|(_, until)| *until > now)
            .fold(
                destination.secret(secrets.current.clone()),
                |d, (previous, until)| d.secret_until(previous.clone(), *until),
            )
    }

    /// Makes `--secret`'s first value the stored secret of the `default` workflow (if it exists),
    /// so that it stays the workflow's secret when `serve` later runs without `--secret`.
    pub(crate) async fn store_pinned_secret(&self) -> Result<(), StoreError> {
        let Some(first) = self.default_secrets.as_ref().and_then(|s| s.first()) else {
            return Ok(());
        };
        let Some(workflow) = self.store.workflow(DEFAULT_WORKFLOW).await? else {
            return Ok(());
        };
        if workflow.secrets.current.expose_whsec() != first.expose_whsec() {
            self.store
                .rotate_secret(DEFAULT_WORKFLOW.to_string(), first.clone(), Duration::ZERO)
                .await?;
        }
        Ok(())
    }

    /// Whether `--secret` decides the `default` workflow's secret (then it cannot be rotated over
    /// the API: change `--secret`).
    pub(crate) fn secret_is_pinned(&self, workflow: &str) -> bool {
        workflow == DEFAULT_WORKFLOW && self.default_secrets.is_some()
    }

    /// The secrets a workflow signs with, as text: the current one, and those rotated out and
    /// still in their grace period (with its end). `--secret` decides for the `default`
    /// workflow: its first value is the secret, the others sign as long as they are given.
    pub(crate) fn secrets_of(&self, workflow: &StoredWorkflow) -> SecretsText {
        if workflow.id == DEFAULT_WORKFLOW
            && let Some((first, others)) =
                self.default_secrets.as_ref().and_then(|s| s.split_first())
        {
            return SecretsText {
                current: first.expose_whsec(),
                previous: others.iter().map(|s| (s.expose_whsec(), None)).collect(),
            };
        }
        let now = SystemTime::now();
        SecretsText {
            current: workflow.secrets.current.expose_whsec(),
            previous: workflow
                .secrets
                .previous
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(secret, until)| (secret.expose_whsec(), Some(*until)))
                .collect(),
        }
    }

    /// Creates or replaces a workflow's hooks (see [`DurableOutbox::put_workflow`]).
    pub(crate) async fn put(
        self: &Arc<Self>,
        id: String,
        hooks: Vec<Hook>,
    ) -> Result<WorkflowChange, ChangeError> {
        let secret = match self.default_secrets.as_ref().and_then(|s| s.first()) {
            Some(secret) if id == DEFAULT_WORKFLOW => secret.clone(),
            _ => Secret::generate().map_err(ChangeError::Random)?,
        };
        self.change(move |live| async move {
            let mut workflows = live.workflows.write().await;
            let change = live.store.put_workflow(id, hooks, secret).await?;
            for removed in &change.removed {
                live.dispatcher.remove(*removed);
                live.observer.forget(*removed);
            }
            live.show(&change.workflow, &mut workflows);
            Ok(change)
        })
        .await
    }

    /// Deletes a workflow and its hooks.
    pub(crate) async fn delete(
        self: &Arc<Self>,
        id: String,
    ) -> Result<WorkflowRemoval, ChangeError> {
        self.change(move |live| async move {
            let mut workflows = live.workflows.write().await;
            let removal = live
                .store
                .delete_workflow(id.clone())
                .await?
                .ok_or(ChangeError::NotFound)?;
            for removed in &removal.removed {
                live.dispatcher.remove(*removed);
                live.observer.forget(*removed);
            }
            workflows.remove(&id);
            Ok(removal)
        })
        .await
    }

    /// Changes where one hook posts.
    pub(crate) async fn patch(
        self: &Arc<Self>,
        hook: HookId,
        parameters: HookParameters,
    ) -> Result<StoredHook, ChangeError> {
        self.change(move |live| async move {
            let mut workflows = live.workflows.write().await;
            let before = live.store.hook(hook).await?;
            let stored = live
                .store
                .set_parameters(hook, parameters)
                .await?
                .ok_or(ChangeError::NotFound)?;
            if let Some(workflow) = live.store.workflow(&stored.workflow).await? {
                live.show(&workflow, &mut workflows);
            }
            log_patch(before.as_ref().map(|b| b.hook.parameters()), &stored);
            Ok(stored)
        })
        .await
    }

    /// Gives a workflow a new secret; the old one signs too for `grace`.
    pub(crate) async fn rotate(
        self: &Arc<Self>,
        id: String,
        grace: Duration,
    ) -> Result<StoredWorkflow, ChangeError> {
        let secret = Secret::generate().map_err(ChangeError::Random)?;
        self.change(move |live| async move {
            let mut workflows = live.workflows.write().await;
            let workflow = live
                .store
                .rotate_secret(id, secret, grace)
                .await?
                .ok_or(ChangeError::NotFound)?;
            live.show(&workflow, &mut workflows);
            Ok(workflow)
        })
        .await
    }

    /// Makes the dispatcher and the matchers show workflow `id` as stored now, after another
    /// process sharing the store changed it: hooks it no longer has are removed, a workflow
    /// no longer stored is forgotten.
    pub(crate) async fn reload(self: &Arc<Self>, id: String) -> Result<(), StoreError> {
        let outcome = self
            .change(move |live| async move {
                let mut workflows = live.workflows.write().await;
                let stored = live.store.workflow(&id).await?;
                let kept: Vec<HookId> = stored
                    .iter()
                    .flat_map(|w| w.hooks.iter().map(|h| h.id))
                    .collect();
                let before = workflows
                    .get(&id)
                    .map(|w| w.hooks.clone())
                    .unwrap_or_default();
                for removed in before.into_iter().filter(|hook| !kept.contains(hook)) {
                    live.dispatcher.remove(removed);
                    live.observer.forget(removed);
                }
                match stored {
                    Some(workflow) => live.show(&workflow, &mut workflows),
                    None => drop(workflows.remove(&id)),
                }
                Ok(())
            })
            .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(ChangeError::Store(e)) => Err(e),
            Err(ChangeError::NotFound | ChangeError::Random(_)) => Ok(()),
        }
    }

    /// Stores `events` of `workflow`'s runs with one delivery per hook of the workflow that
    /// fires, then tells those hooks' workers (`Dispatcher::appended`: only idle ones wake, so
    /// a burst does not make hooks waiting for a retry read their queues). `None` for an
    /// unknown workflow.
    pub(crate) async fn ingest(
        self: &Arc<Self>,
        workflow: String,
        events: Vec<Event>,
        key: Option<IdempotencyKey>,
    ) -> Result<Option<Appended>, StoreError> {
        let committed = tokio::spawn({
            let live = Arc::clone(self);
            async move {
                let workflows = live.workflows.read().await;
                let Some(live_workflow) = workflows.get(&workflow) else {
                    return Ok(None);
                };
                let new: Vec<NewEvent> = events
                    .iter()
                    .map(|event| {
                        let fired = live_workflow.matcher.matching(event);
                        let deliveries = NewDelivery::for_hooks(
                            event,
                            fired.into_iter().map(|i| live_workflow.hooks[i]),
                        );
                        let body = deliveries
                            .first()
                            .map_or_else(Default::default, |d| d.body.clone());
                        NewEvent { body, deliveries }
                    })
                    .collect();
                let appended = match key {
                    Some(key) => live.store.append_once(key, new).await?,
                    None => Appended::Stored(live.store.append(new).await?),
                };
                if let Appended::Stored(accepted) = &appended {
                    for delivery in accepted.iter().flat_map(|event| &event.deliveries) {
                        live.dispatcher.appended(delivery.hook);
                    }
                }
                Ok(Some(appended))
            }
        });
        committed.await.expect("ingesting does not panic")
    }

    /// Runs a change as a task of its own: the client may hang up while the commit runs, and the
    /// commit happens anyway, so the commit and what follows it (the dispatcher and the matchers
    /// updated) must not be cancelled half-way.
    async fn change<T, F, Fut>(self: &Arc<Self>, f: F) -> Result<T, ChangeError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Live>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ChangeError>> + Send + 'static,
    {
        tokio::spawn(f(Arc::clone(self)))
            .await
            .expect("registry changes do not panic")
    }
}

/// One `info` line for a hook's new parameters, saying what changed: the URL (old and new) and
/// the names of the headers added, removed or changed (never their values, which often carry
/// credentials).
fn log_patch(before: Option<&HookParameters>, after: &StoredHook) {
    let new = after.hook.parameters();
    let url_changed = before.is_none_or(|old| old.url() != new.url());
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(old) = before {
        for (name, value) in new.headers() {
            match old.headers().get(name) {
                None => added.push(name.as_str()),
                Some(was) if was != value => changed.push(name.as_str()),
                Some(_) => {}
            }
        }
        for name in old.headers().keys() {
            if !new.headers().contains_key(name) {
                removed.push(name.as_str());
            }
        }
    }
    tracing::info!(
        workflow = %after.workflow,
        hook = %format_args!("hook_{}", after.id),
        url = new.url(),
        previous_url = before.filter(|_| url_changed).map(|old| old.url()),
        headers_added = added.join(",").as_str(),
        headers_removed = removed.join(",").as_str(),
        headers_changed = changed.join(",").as_str(),
        "hook parameters changed"
    );
}
