//! The registry's changes: workflows, their hooks and secrets, each in the caller's
//! transaction, under the registry lock (exclusive), with its `w:` notification (and `h:` for
//! hooks whose head was made due by a change of parameters).

use std::time::Duration;

use deadpool_postgres::Transaction;
use linq_hooks_delivery::HookId;
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;

use super::reads::{
    WORKFLOW_COLUMNS, execute, hook_text, hooks_by_id, parse_hook, query, query_opt,
    workflow_of_row,
};
use super::{Fail, REGISTRY_LOCK, id_of, notify_hooks, notify_workflow, sql_id};
use crate::{StoredHook, StoredWorkflow, WorkflowChange, WorkflowRemoval};

/// Takes the registry lock for the rest of `txn`.
async fn lock(txn: &Transaction<'_>) -> Result<(), Fail> {
    execute(txn, "SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK]).await?;
    Ok(())
}

/// Pairs the hooks of a new list with those of the old one, as the redb store does: for each
/// new hook, the first old hook not yet taken that fires like it.
fn pair(old: &[Hook], new: &[Hook]) -> Vec<Option<usize>> {
    let mut taken = vec![false; old.len()];
    new.iter()
        .map(|hook| {
            let found = (0..old.len()).find(|&i| !taken[i] && old[i].fires_like(hook));
            if let Some(i) = found {
                taken[i] = true;
            }
            found
        })
        .collect()
}

/// Makes the first delivery of `hook`'s queue due now on a fresh retry schedule (its URL or
/// headers changed).
async fn retry_now(txn: &Transaction<'_>, hook: i64) -> Result<(), Fail> {
    execute(
        txn,
        "UPDATE deliveries SET next_attempt_ms = NULL, round_attempts = 0 \
         WHERE id = (SELECT id FROM deliveries WHERE hook = $1 AND state = 0 ORDER BY id LIMIT 1) \
           AND next_attempt_ms IS NOT NULL",
        &[&hook],
    )
    .await?;
    Ok(())
}

/// Marks `hook` removed and cancels its pending deliveries with the reason; returns how many.
async fn remove_hook(txn: &Transaction<'_>, hook: i64, why: &str, now: i64) -> Result<u64, Fail> {
    let reason = format!("hook_{hook} was removed ({why})");
    let cancelled = execute(
        txn,
        "UPDATE deliveries SET state = 3, finished_ms = $2, next_attempt_ms = NULL, failure = $3 \
         WHERE hook = $1 AND state = 0",
        &[&hook, &now, &reason],
    )
    .await?;
    execute(
        txn,
        "UPDATE hooks SET removed_ms = $2, disabled_ms = NULL, consecutive_failures = 0 \
         WHERE id = $1",
        &[&hook, &now],
    )
    .await?;
    Ok(cancelled)
}

pub(crate) async fn put_workflow(
    txn: &Transaction<'_>,
    id: &str,
    hooks: &[Hook],
    secret: &Secret,
    now: i64,
) -> Result<WorkflowChange, Fail> {
    lock(txn).await?;
    let before = query_opt(txn, "SELECT hooks FROM workflows WHERE id = $1", &[&id]).await?;
    let created = before.is_none();
    let old_ids: Vec<i64> = before.map(|row| row.get(0)).unwrap_or_default();
    let rows = query(
        txn,
        "SELECT id, definition FROM hooks WHERE id = ANY($1)",
        &[&old_ids],
    )
    .await?;
    let mut old_hooks = Vec::with_capacity(old_ids.len());
    for &hook in &old_ids {
        let row = rows
            .iter()
            .find(|row| row.get::<_, i64>(0) == hook)
            .ok_or_else(|| {
                Fail::Corrupt(format!(
                    "workflow {id} names hook_{hook}, which has no definition"
                ))
            })?;
        old_hooks.push(parse_hook(hook, row.get(1))?);
    }
    let pairs = pair(&old_hooks, hooks);
    let (mut kept, mut added, mut ids, mut moved) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (hook, old) in hooks.iter().zip(&pairs) {
        let definition = hook_text(hook)?;
        let hook_id = match old {
            Some(i) => {
                let hook_id = old_ids[*i];
                if old_hooks[*i].parameters() != hook.parameters() {
                    retry_now(txn, hook_id).await?;
                    moved.push(id_of(hook_id));
                }
                execute(
                    txn,
                    "UPDATE hooks SET definition = $2 WHERE id = $1",
                    &[&hook_id, &definition],
                )
                .await?;
                kept.push(id_of(hook_id));
                hook_id
            }
            None => {
                let row = query(txn, "SELECT nextval('hook_ids')", &[]).await?;
                let hook_id: i64 = row[0].get(0);
                execute(
                    txn,
                    "INSERT INTO hooks (id, workflow, definition) VALUES ($1, $2, $3)",
                    &[&hook_id, &id, &definition],
                )
                .await?;
                added.push(id_of(hook_id));
                hook_id
            }
        };
        ids.push(hook_id);
    }
    let mut removed = Vec::new();
    let mut cancelled_deliveries = 0;
    for (i, &hook) in old_ids.iter().enumerate() {
        if pairs.contains(&Some(i)) {
            continue;
        }
        let why = format!("no longer in workflow {id}");
        cancelled_deliveries += remove_hook(txn, hook, &why, now).await?;
        removed.push(id_of(hook));
    }
    let row = query(
        txn,
        &format!(
            "INSERT INTO workflows (id, created_ms, updated_ms, secret, hooks) \
             VALUES ($1, $2, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET updated_ms = $2, hooks = $4 \
             RETURNING {WORKFLOW_COLUMNS}"
        ),
        &[&id, &now, &secret.expose_whsec(), &ids],
    )
    .await?;
    let workflow = workflow_of_row(txn, &row[0]).await?;
    notify_workflow(txn, id).await?;
    notify_hooks(txn, moved).await?;
    Ok(WorkflowChange {
        workflow,
        created,
        kept,
        added,
        removed,
        cancelled_deliveries,
    })
}

pub(crate) async fn delete_workflow(
    txn: &Transaction<'_>,
    id: &str,
    now: i64,
) -> Result<Option<WorkflowRemoval>, Fail> {
    lock(txn).await?;
    let Some(row) = query_opt(
        txn,
        "DELETE FROM workflows WHERE id = $1 RETURNING hooks",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    let hooks: Vec<i64> = row.get(0);
    let mut cancelled_deliveries = 0;
    for &hook in &hooks {
        let why = format!("workflow {id} was deleted");
        cancelled_deliveries += remove_hook(txn, hook, &why, now).await?;
    }
    notify_workflow(txn, id).await?;
    Ok(Some(WorkflowRemoval {
        removed: hooks.into_iter().map(id_of).collect(),
        cancelled_deliveries,
    }))
}

pub(crate) async fn set_parameters(
    txn: &Transaction<'_>,
    hook: HookId,
    parameters: &HookParameters,
    now: i64,
) -> Result<Option<StoredHook>, Fail> {
    lock(txn).await?;
    let hook = sql_id(hook);
    let Some(row) = query_opt(
        txn,
        "SELECT workflow, definition FROM hooks WHERE id = $1 AND removed_ms IS NULL",
        &[&hook],
    )
    .await?
    else {
        return Ok(None);
    };
    let workflow: String = row.get(0);
    let before = parse_hook(hook, row.get(1))?;
    let changed = before.parameters() != parameters;
    if changed {
        retry_now(txn, hook).await?;
    }
    let after = before.with_parameters(parameters.clone());
    execute(
        txn,
        "UPDATE hooks SET definition = $2 WHERE id = $1",
        &[&hook, &hook_text(&after)?],
    )
    .await?;
    execute(
        txn,
        "UPDATE workflows SET updated_ms = $2 WHERE id = $1",
        &[&workflow, &now],
    )
    .await?;
    notify_workflow(txn, &workflow).await?;
    if changed {
        notify_hooks(txn, [id_of(hook)]).await?;
    }
    Ok(hooks_by_id(txn, &[hook]).await?.remove(&id_of(hook)))
}

pub(crate) async fn rotate_secret(
    txn: &Transaction<'_>,
    id: &str,
    secret: &Secret,
    grace: Duration,
    now: i64,
) -> Result<Option<StoredWorkflow>, Fail> {
    lock(txn).await?;
    let Some(row) = query_opt(
        txn,
        "SELECT secret, previous_secrets, previous_until FROM workflows WHERE id = $1",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    let until = now.saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    let previous: String = row.get(0);
    let current = secret.expose_whsec();
    // Secrets whose grace has ended sign no more: forget them. The one rotated out now keeps
    // signing for `grace` (none at all for a zero grace).
    let (mut secrets, mut ends): (Vec<String>, Vec<i64>) = row
        .get::<_, Vec<String>>(1)
        .into_iter()
        .zip(row.get::<_, Vec<i64>>(2))
        .filter(|(_, ends)| *ends > now)
        .unzip();
    if until > now && previous != current {
        secrets.push(previous);
        ends.push(until);
    }
    let row = query(
        txn,
        &format!(
            "UPDATE workflows SET secret = $2, previous_secrets = $3, previous_until = $4, \
             updated_ms = $5 WHERE id = $1 RETURNING {WORKFLOW_COLUMNS}"
        ),
        &[&id, &current, &secrets, &ends, &now],
    )
    .await?;
    let workflow = workflow_of_row(txn, &row[0]).await?;
    notify_workflow(txn, id).await?;
    Ok(Some(workflow))
}
