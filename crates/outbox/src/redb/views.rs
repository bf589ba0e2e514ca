//! The public views of the registry, read from a read transaction (the store's reads) or from
//! the writer's transaction (the answer to a change) with the same code.

use linq_hooks_delivery::HookId;
use redb::ReadableTable;

use super::records::*;
use super::wire::Decode;
use crate::records::*;

/// A sealed record's value, in the writer's terms: one that fails its checksum or does not
/// decode is a damaged store.
pub(crate) fn decode_record<T: Decode>(bytes: &[u8]) -> Result<T, redb::Error> {
    T::decode(unseal(bytes).map_err(redb::Error::Corrupted)?)
        .map_err(|e| redb::Error::Corrupted(format!("a record does not decode: {e}")))
}

/// A hook with its delivery state (`states`: the `hooks` table; `counts`: `pending_counts`).
pub(crate) fn hook_view(
    states: &impl ReadableTable<u64, &'static [u8]>,
    counts: &impl ReadableTable<u64, u64>,
    id: HookId,
    def: HookDef,
) -> Result<StoredHook, redb::Error> {
    let state: HookRecord = match states.get(id)? {
        Some(value) => decode_record(value.value())?,
        None => HookRecord::default(),
    };
    let pending = counts.get(id)?.map_or(0, |v| v.value());
    Ok(StoredHook {
        id,
        workflow: def.workflow,
        hook: def.hook,
        status: HookStatus::new(&state, pending),
    })
}

/// A workflow with its hooks (`defs`: the `hook_defs` table).
pub(crate) fn workflow_view(
    defs: &impl ReadableTable<u64, &'static [u8]>,
    states: &impl ReadableTable<u64, &'static [u8]>,
    counts: &impl ReadableTable<u64, u64>,
    id: &str,
    record: &WorkflowRecord,
) -> Result<StoredWorkflow, redb::Error> {
    let mut hooks = Vec::with_capacity(record.hooks.len());
    for &hook in &record.hooks {
        let Some(def) = defs.get(hook)? else {
            return Err(redb::Error::Corrupted(format!(
                "workflow {id} names hook {hook}, which has no definition"
            )));
        };
        hooks.push(hook_view(
            states,
            counts,
            hook,
            decode_record(def.value())?,
        )?);
    }
    Ok(StoredWorkflow {
        id: id.to_string(),
        created_at: from_millis(record.created_ms),
        updated_at: from_millis(record.updated_ms),
        hooks,
        secrets: secrets_of(record).map_err(redb::Error::Corrupted)?,
    })
}

/// A workflow's secrets, read from their text form.
fn secrets_of(record: &WorkflowRecord) -> Result<WorkflowSecrets, String> {
    let parse = |text: &str| {
        text.parse::<linq_hooks_signature::Secret>()
            .map_err(|e| format!("a stored secret does not read: {e}"))
    };
    Ok(WorkflowSecrets {
        current: parse(&record.secret)?,
        previous: record
            .previous_secrets
            .iter()
            .map(|(secret, until)| Ok((parse(secret)?, from_millis(*until))))
            .collect::<Result<_, String>>()?,
    })
}
