//! The writer's edits of the registry: workflows, their hooks and secrets. Each runs inside the
//! writer's transaction, so a change and the cancellations it causes commit together.

use std::time::Duration;

use linq_hooks_delivery::HookId;
use linq_hooks_model::{Hook, HookParameters};
use linq_hooks_signature::Secret;
use redb::{ReadableTable, WriteTransaction};

use super::edits::{cancel_pending, next_counter, retry_now};
use super::records::*;
use super::views::{decode_record, hook_view, workflow_view};
use crate::{StoredHook, StoredWorkflow, WorkflowChange, WorkflowRemoval};

/// Pairs the hooks of a new list with those of the old one: for each new hook, the first old
/// hook not yet taken that fires like it. Returns, for each new hook, the index of its old hook.
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

fn load_workflow(txn: &WriteTransaction, id: &str) -> Result<Option<WorkflowRecord>, redb::Error> {
    match txn.open_table(WORKFLOWS)?.get(id)? {
        Some(value) => Ok(Some(decode_record(value.value())?)),
        None => Ok(None),
    }
}

fn load_def(txn: &WriteTransaction, hook: HookId) -> Result<Option<HookDef>, redb::Error> {
    match txn.open_table(HOOK_DEFS)?.get(hook)? {
        Some(value) => Ok(Some(decode_record(value.value())?)),
        None => Ok(None),
    }
}

/// Marks `hook` removed and cancels its pending deliveries; returns how many.
fn remove_hook(
    txn: &WriteTransaction,
    hook: HookId,
    mut def: HookDef,
    why: &str,
    now: u64,
) -> Result<u64, redb::Error> {
    let reason = format!("hook_{hook} was removed ({why})");
    let cancelled = cancel_pending(txn, hook, &reason, now)?;
    def.removed_ms = Some(now);
    txn.open_table(HOOK_DEFS)?
        .insert(hook, encode(&def).as_slice())?;
    Ok(cancelled)
}

pub(crate) fn put_workflow(
    txn: &WriteTransaction,
    id: &str,
    hooks: &[Hook],
    secret: &Secret,
    now: u64,
) -> Result<WorkflowChange, redb::Error> {
    let before = load_workflow(txn, id)?;
    let created = before.is_none();
    let mut record = before.unwrap_or_else(|| WorkflowRecord {
        created_ms: now,
        updated_ms: now,
        secret: secret.expose_whsec(),
        previous_secrets: Vec::new(),
        hooks: Vec::new(),
    });
    let mut old_defs = Vec::with_capacity(record.hooks.len());
    for &hook in &record.hooks {
        let def = load_def(txn, hook)?.ok_or_else(|| {
            redb::Error::Corrupted(format!(
                "workflow {id} names hook {hook}, which has no definition"
            ))
        })?;
        old_defs.push(def);
    }
    let old_hooks: Vec<Hook> = old_defs.iter().map(|d| d.hook.clone()).collect();
    let pairs = pair(&old_hooks, hooks);
    let (mut kept, mut added, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for (hook, old) in hooks.iter().zip(&pairs) {
        let hook_id = match old {
            Some(i) => {
                if old_hooks[*i].parameters() != hook.parameters() {
                    retry_now(txn, record.hooks[*i])?;
                }
                kept.push(record.hooks[*i]);
                record.hooks[*i]
            }
            None => {
                let new_id = next_counter(txn, "next_hook")?;
                added.push(new_id);
                new_id
            }
        };
        let def = HookDef {
            workflow: id.to_string(),
            hook: hook.clone(),
            removed_ms: None,
        };
        txn.open_table(HOOK_DEFS)?
            .insert(hook_id, encode(&def).as_slice())?;
        ids.push(hook_id);
    }
    let mut removed = Vec::new();
    let mut cancelled_deliveries = 0;
    for (i, def) in old_defs.into_iter().enumerate() {
        if pairs.contains(&Some(i)) {
            continue;
        }
        let hook = record.hooks[i];
        let why = format!("no longer in workflow {id}");
        cancelled_deliveries += remove_hook(txn, hook, def, &why, now)?;
        removed.push(hook);
    }
    record.hooks = ids;
    record.updated_ms = now;
    txn.open_table(WORKFLOWS)?
        .insert(id, encode(&record).as_slice())?;
    Ok(WorkflowChange {
        workflow: stored_workflow(txn, id, &record)?,
        created,
        kept,
        added,
        removed,
        cancelled_deliveries,
    })
}

pub(crate) fn delete_workflow(
    txn: &WriteTransaction,
    id: &str,
    now: u64,
) -> Result<Option<WorkflowRemoval>, redb::Error> {
    let Some(record) = load_workflow(txn, id)? else {
        return Ok(None);
    };
    let mut cancelled_deliveries = 0;
    for &hook in &record.hooks {
        if let Some(def) = load_def(txn, hook)? {
            let why = format!("workflow {id} was deleted");
            cancelled_deliveries += remove_hook(txn, hook, def, &why, now)?;
        }
    }
    txn.open_table(WORKFLOWS)?.remove(id)?;
    Ok(Some(WorkflowRemoval {
        removed: record.hooks,
        cancelled_deliveries,
    }))
}

pub(crate) fn set_parameters(
    txn: &WriteTransaction,
    hook: HookId,
    parameters: &HookParameters,
    now: u64,
) -> Result<Option<StoredHook>, redb::Error> {
    let Some(mut def) = load_def(txn, hook)? else {
        return Ok(None);
    };
    if def.removed_ms.is_some() {
        return Ok(None);
    }
    if def.hook.parameters() != parameters {
        retry_now(txn, hook)?;
    }
    def.hook = def.hook.with_parameters(parameters.clone());
    txn.open_table(HOOK_DEFS)?
        .insert(hook, encode(&def).as_slice())?;
    if let Some(mut record) = load_workflow(txn, &def.workflow)? {
        record.updated_ms = now;
        txn.open_table(WORKFLOWS)?
            .insert(def.workflow.as_str(), encode(&record).as_slice())?;
    }
    Ok(Some(stored_hook(txn, hook, def)?))
}

pub(crate) fn rotate_secret(
    txn: &WriteTransaction,
    id: &str,
    secret: &Secret,
    grace: Duration,
    now: u64,
) -> Result<Option<StoredWorkflow>, redb::Error> {
    let Some(mut record) = load_workflow(txn, id)? else {
        return Ok(None);
    };
    let until = now.saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
    let previous = std::mem::replace(&mut record.secret, secret.expose_whsec());
    // Secrets whose grace has ended sign no more: forget them. The one rotated out now keeps
    // signing for `grace` (none at all for a zero grace).
    record.previous_secrets.retain(|(_, ends)| *ends > now);
    if until > now && previous != record.secret {
        record.previous_secrets.push((previous, until));
    }
    record.updated_ms = now;
    txn.open_table(WORKFLOWS)?
        .insert(id, encode(&record).as_slice())?;
    Ok(Some(stored_workflow(txn, id, &record)?))
}

fn stored_workflow(
    txn: &WriteTransaction,
    id: &str,
    record: &WorkflowRecord,
) -> Result<StoredWorkflow, redb::Error> {
    let (defs, states, counts) = (
        txn.open_table(HOOK_DEFS)?,
        txn.open_table(HOOKS)?,
        txn.open_table(PENDING_COUNTS)?,
    );
    workflow_view(&defs, &states, &counts, id, record)
}

fn stored_hook(
    txn: &WriteTransaction,
    id: HookId,
    def: HookDef,
) -> Result<StoredHook, redb::Error> {
    let (states, counts) = (txn.open_table(HOOKS)?, txn.open_table(PENDING_COUNTS)?);
    hook_view(&states, &counts, id, def)
}

#[cfg(test)]
mod tests {
    use super::pair;
    use linq_hooks_model::Hook;

    fn hook(filter: &str, url: &str) -> Hook {
        serde_json::from_value(serde_json::json!({"filter": filter, "parameters": {"url": url}}))
            .unwrap()
    }

    #[test]
    fn equal_hooks_pair_in_order() {
        let old = [
            hook("on_new_plan", "http://a.example"),
            hook("on_new_plan", "http://b.example"),
            hook("on_run_state_change", "http://c.example"),
        ];
        let new = [
            hook("on_run_state_change", "http://moved.example"),
            hook("on_new_plan", "http://x.example"),
            hook("on_safety_state_change", "http://d.example"),
        ];
        assert_eq!(pair(&old, &new), [Some(2), Some(0), None]);
    }
}
