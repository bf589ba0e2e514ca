//! The reads: hooks and workflows with their delivery state, deliveries and their attempts,
//! pages of deliveries newest first, events. Each is one or a few statements on one
//! connection (a transaction where their answers must agree).

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::GenericClient;
use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_model::Hook;
use linq_hooks_signature::Secret;
use linq_hooks_transport::Bytes;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Fail, from_millis, id_of, sql_id, state_code, state_of};
use crate::{
    AttemptInfo, DeliveryFilter, DeliveryInfo, DeliveryPage, DeliveryState, EventInfo, HookStatus,
    SCAN_PER_PAGE, StoredHook, StoredWorkflow, WorkflowSecrets,
};

/// Prepares `sql` (once per connection) and runs it.
pub(crate) async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Fail> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// [`query`], for a statement whose row count is the answer.
pub(crate) async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Fail> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

/// [`query`], at most one row.
pub(crate) async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Fail> {
    Ok(query(client, sql, params).await?.into_iter().next())
}

/// A hook's columns, with its pending and failed counts (from the index by hook and state).
const HOOK_COLUMNS: &str = "h.id, h.workflow, h.definition, h.disabled_ms, \
    h.consecutive_failures, h.last_attempt_ms, h.last_status, \
    (SELECT count(*) FROM deliveries d WHERE d.hook = h.id AND d.state = 0), \
    (SELECT count(*) FROM deliveries d WHERE d.hook = h.id AND d.state = 2)";

/// A hook's definition as stored (JSON, the LINQ API's form).
pub(crate) fn parse_hook(id: i64, text: &str) -> Result<Hook, Fail> {
    serde_json::from_str(text)
        .map_err(|e| Fail::Corrupt(format!("the definition of hook_{id} does not read: {e}")))
}

/// A hook's definition to store.
pub(crate) fn hook_text(hook: &Hook) -> Result<String, Fail> {
    serde_json::to_string(hook).map_err(|e| Fail::Other(format!("cannot write a hook: {e}")))
}

fn hook_of(row: &Row) -> Result<StoredHook, Fail> {
    let id: i64 = row.get(0);
    let disabled_ms: Option<i64> = row.get(3);
    let consecutive: i32 = row.get(4);
    let last_attempt: Option<i64> = row.get(5);
    let last_status: Option<i32> = row.get(6);
    let pending: i64 = row.get(7);
    let failed: i64 = row.get(8);
    Ok(StoredHook {
        id: id_of(id),
        workflow: row.get(1),
        hook: parse_hook(id, row.get(2))?,
        status: HookStatus {
            enabled: disabled_ms.is_none(),
            disabled_at: disabled_ms.map(from_millis),
            consecutive_failures: u32::try_from(consecutive).unwrap_or(0),
            pending: id_of(pending),
            failed: id_of(failed),
            last_attempt_at: last_attempt.map(from_millis),
            last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        },
    })
}

/// Hooks by id (removed ones included: the caller asks for those it names).
pub(crate) async fn hooks_by_id<C: GenericClient>(
    client: &C,
    ids: &[i64],
) -> Result<HashMap<HookId, StoredHook>, Fail> {
    let sql = format!("SELECT {HOOK_COLUMNS} FROM hooks h WHERE h.id = ANY($1)");
    let rows = query(client, &sql, &[&ids]).await?;
    rows.iter()
        .map(|row| hook_of(row).map(|hook| (hook.id, hook)))
        .collect()
}

/// One hook of the registry (`None` if unknown or removed).
pub(crate) async fn hook<C: GenericClient>(
    client: &C,
    id: HookId,
) -> Result<Option<StoredHook>, Fail> {
    let sql =
        format!("SELECT {HOOK_COLUMNS} FROM hooks h WHERE h.id = $1 AND h.removed_ms IS NULL");
    query_opt(client, &sql, &[&sql_id(id)])
        .await?
        .map(|row| hook_of(&row))
        .transpose()
}

/// Hooks of the registry after `after`, in id order, at most `limit`.
pub(crate) async fn list_hooks<C: GenericClient>(
    client: &C,
    after: Option<HookId>,
    limit: usize,
) -> Result<Vec<StoredHook>, Fail> {
    let sql = format!(
        "SELECT {HOOK_COLUMNS} FROM hooks h WHERE h.removed_ms IS NULL AND h.id > $1 \
         ORDER BY h.id LIMIT $2"
    );
    let after = after.map_or(-1, sql_id);
    let rows = query(client, &sql, &[&after, &limit_of(limit)]).await?;
    rows.iter().map(hook_of).collect()
}

/// A limit as SQL takes it.
pub(crate) fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A workflow's columns.
pub(crate) const WORKFLOW_COLUMNS: &str =
    "id, created_ms, updated_ms, secret, previous_secrets, previous_until, hooks";

/// A workflow with its hooks, from a row of [`WORKFLOW_COLUMNS`].
pub(crate) async fn workflow_of_row<C: GenericClient>(
    client: &C,
    row: &Row,
) -> Result<StoredWorkflow, Fail> {
    let ids: Vec<i64> = row.get(6);
    let mut hooks = hooks_by_id(client, &ids).await?;
    workflow_view(row, &mut hooks)
}

/// A workflow from its row and its hooks (taken out of `hooks`).
fn workflow_view(
    row: &Row,
    hooks: &mut HashMap<HookId, StoredHook>,
) -> Result<StoredWorkflow, Fail> {
    let id: String = row.get(0);
    let ids: Vec<i64> = row.get(6);
    let mut list = Vec::with_capacity(ids.len());
    for hook in ids {
        list.push(hooks.remove(&id_of(hook)).ok_or_else(|| {
            Fail::Corrupt(format!(
                "workflow {id} names hook_{hook}, which has no definition"
            ))
        })?);
    }
    let parse = |text: &str| {
        text.parse::<Secret>().map_err(|e| {
            Fail::Corrupt(format!(
                "a stored secret of workflow {id} does not read: {e}"
            ))
        })
    };
    let previous: Vec<String> = row.get(4);
    let until: Vec<i64> = row.get(5);
    let secrets = WorkflowSecrets {
        current: parse(row.get(3))?,
        previous: previous
            .iter()
            .zip(&until)
            .map(|(secret, until)| Ok((parse(secret)?, from_millis(*until))))
            .collect::<Result<_, Fail>>()?,
    };
    Ok(StoredWorkflow {
        created_at: from_millis(row.get(1)),
        updated_at: from_millis(row.get(2)),
        hooks: list,
        secrets,
        id,
    })
}

/// Workflows ordered by id (bytewise) after `after`, at most `limit`, with their hooks.
pub(crate) async fn list_workflows<C: GenericClient>(
    client: &C,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredWorkflow>, Fail> {
    let sql = format!(
        "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE $1::text IS NULL OR id > $1 \
         ORDER BY id LIMIT $2"
    );
    let rows = query(client, &sql, &[&after, &limit_of(limit)]).await?;
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|row| row.get::<_, Vec<i64>>(6))
        .collect();
    let mut hooks = hooks_by_id(client, &ids).await?;
    rows.iter()
        .map(|row| workflow_view(row, &mut hooks))
        .collect()
}

/// One workflow with its hooks.
pub(crate) async fn workflow<C: GenericClient>(
    client: &C,
    id: &str,
) -> Result<Option<StoredWorkflow>, Fail> {
    let sql = format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE id = $1");
    match query_opt(client, &sql, &[&id]).await? {
        Some(row) => Ok(Some(workflow_of_row(client, &row).await?)),
        None => Ok(None),
    }
}

/// The workflow a hook belongs or belonged to.
pub(crate) async fn workflow_of<C: GenericClient>(
    client: &C,
    hook: HookId,
) -> Result<Option<String>, Fail> {
    Ok(query_opt(
        client,
        "SELECT workflow FROM hooks WHERE id = $1",
        &[&sql_id(hook)],
    )
    .await?
    .map(|row| row.get(0)))
}

/// A delivery's columns, as [`delivery_of`] reads them.
pub(crate) const DELIVERY_COLUMNS: &str = "id, hook, event, webhook_id, state, attempts, \
    created_ms, next_attempt_ms, finished_ms, failure, last_status";

pub(crate) fn delivery_of(row: &Row) -> Result<DeliveryInfo, Fail> {
    let attempts: i32 = row.get(5);
    let last_status: Option<i32> = row.get(10);
    Ok(DeliveryInfo {
        id: id_of(row.get(0)),
        hook: id_of(row.get(1)),
        event: id_of(row.get(2)),
        webhook_id: row.get(3),
        state: state_of(row.get(4))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        created_at: from_millis(row.get(6)),
        next_attempt_at: row.get::<_, Option<i64>>(7).map(from_millis),
        finished_at: row.get::<_, Option<i64>>(8).map(from_millis),
        failure: row.get(9),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
    })
}

/// Deliveries in `state` after `after`, oldest first.
pub(crate) async fn list<C: GenericClient>(
    client: &C,
    state: DeliveryState,
    after: Option<DeliveryId>,
    limit: usize,
) -> Result<Vec<DeliveryInfo>, Fail> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = $1 AND id > $2 \
         ORDER BY id LIMIT $3"
    );
    let after = after.map_or(0, sql_id);
    let rows = query(
        client,
        &sql,
        &[&state_code(state), &after, &limit_of(limit)],
    )
    .await?;
    rows.iter().map(delivery_of).collect()
}

/// One delivery and its attempts, oldest first.
pub(crate) async fn get<C: GenericClient>(
    client: &C,
    id: DeliveryId,
) -> Result<Option<(DeliveryInfo, Vec<AttemptInfo>)>, Fail> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
    let Some(row) = query_opt(client, &sql, &[&sql_id(id)]).await? else {
        return Ok(None);
    };
    let rows = query(
        client,
        "SELECT at_ms, latency_us, status, error, response_body, response_body_truncated \
         FROM attempts WHERE delivery = $1 ORDER BY number",
        &[&sql_id(id)],
    )
    .await?;
    let attempts = rows
        .iter()
        .map(|row| {
            let status: Option<i32> = row.get(2);
            AttemptInfo {
                at: from_millis(row.get(0)),
                latency: Duration::from_micros(id_of(row.get(1))),
                status: status.and_then(|s| u16::try_from(s).ok()),
                error: row.get(3),
                response_body: row.get(4),
                response_body_truncated: row.get(5),
            }
        })
        .collect();
    Ok(Some((delivery_of(&row)?, attempts)))
}

/// How many hooks of the registry a 410 disabled.
pub(crate) async fn disabled_hooks<C: GenericClient>(client: &C) -> Result<usize, Fail> {
    let row = query(
        client,
        "SELECT count(*) FROM hooks WHERE disabled_ms IS NOT NULL AND removed_ms IS NULL",
        &[],
    )
    .await?;
    Ok(usize::try_from(row[0].get::<_, i64>(0)).unwrap_or(0))
}

/// How many deliveries are in `state`.
pub(crate) async fn count<C: GenericClient>(client: &C, state: DeliveryState) -> Result<u64, Fail> {
    let row = query(
        client,
        "SELECT count(*) FROM deliveries WHERE state = $1",
        &[&state_code(state)],
    )
    .await?;
    Ok(id_of(row[0].get(0)))
}

/// A page of deliveries newest first, as the redb store's `deliveries`: at most
/// [`SCAN_PER_PAGE`] deliveries narrowed by hook (or workflow) and state are examined; the
/// time and status filters are checked on them.
pub(crate) async fn deliveries<C: GenericClient>(
    client: &C,
    filter: &DeliveryFilter,
) -> Result<DeliveryPage, Fail> {
    let empty = DeliveryPage {
        deliveries: Vec::new(),
        next_before: None,
    };
    let before = match filter.before {
        Some(0) => return Ok(empty),
        Some(before) => sql_id(before),
        None => i64::MAX,
    };
    let hooks: Option<Vec<i64>> = match (&filter.workflow, filter.hook) {
        (None, None) => None,
        (workflow, Some(hook)) => {
            let row = query_opt(
                client,
                "SELECT workflow FROM hooks WHERE id = $1",
                &[&sql_id(hook)],
            )
            .await?;
            let belongs = match (workflow, row) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(workflow), Some(row)) => row.get::<_, String>(0) == *workflow,
            };
            Some(if belongs { vec![sql_id(hook)] } else { vec![] })
        }
        (Some(workflow), None) => {
            let rows = query(
                client,
                "SELECT id FROM hooks WHERE workflow = $1",
                &[workflow],
            )
            .await?;
            Some(rows.iter().map(|row| row.get(0)).collect())
        }
    };
    if hooks.as_ref().is_some_and(Vec::is_empty) {
        return Ok(empty);
    }
    let state = filter.state.map(state_code);
    // One more than examined: whether anything is left after them.
    let scan = limit_of(SCAN_PER_PAGE + 1);
    // One statement per shape of filter, so that each is planned on its own index: by (hook,
    // state) for hooks, by state, or the deliveries themselves.
    let narrowing = match (&hooks, state) {
        (Some(_), Some(_)) => "AND hook = ANY($2) AND state = $3",
        (Some(_), None) => "AND hook = ANY($2) AND $3::smallint IS NULL",
        (None, Some(_)) => "AND $2::bigint[] IS NULL AND state = $3",
        (None, None) => "AND $2::bigint[] IS NULL AND $3::smallint IS NULL",
    };
    let sql = format!(
        "SELECT id, created_ms, last_status FROM deliveries WHERE id < $1 {narrowing} \
         ORDER BY id DESC LIMIT $4"
    );
    let rows = query(client, &sql, &[&before, &hooks, &state, &scan]).await?;
    let since = filter.since.map(super::millis);
    let until = filter.until.map(super::millis);
    let mut hits: Vec<i64> = Vec::new();
    let mut next_before = None;
    let mut examined = 0;
    let mut rest = rows.iter().peekable();
    while hits.len() < filter.limit {
        if examined == SCAN_PER_PAGE {
            next_before = rest.peek().map(|row| id_of(row.get::<_, i64>(0)) + 1);
            break;
        }
        let Some(row) = rest.next() else { break };
        examined += 1;
        let created: i64 = row.get(1);
        let status: Option<i32> = row.get(2);
        let status = status.and_then(|s| u16::try_from(s).ok());
        if since.is_some_and(|since| created < since)
            || until.is_some_and(|until| created >= until)
            || filter.status.is_some_and(|class| !class.matches(status))
        {
            continue;
        }
        hits.push(row.get(0));
    }
    if hits.len() == filter.limit && rest.peek().is_some() {
        next_before = hits.last().map(|&id| id_of(id));
    }
    let sql =
        format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ANY($1) ORDER BY id DESC");
    let rows = query(client, &sql, &[&hits]).await?;
    Ok(DeliveryPage {
        deliveries: rows.iter().map(delivery_of).collect::<Result<_, _>>()?,
        next_before,
    })
}

/// Event `id` with its body and deliveries; `None` when it has no deliveries left.
pub(crate) async fn event<C: GenericClient>(
    client: &C,
    id: u64,
) -> Result<Option<EventInfo>, Fail> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event = $1 ORDER BY id");
    let rows = query(client, &sql, &[&sql_id(id)]).await?;
    let deliveries: Vec<DeliveryInfo> = rows.iter().map(delivery_of).collect::<Result<_, _>>()?;
    let Some(first) = deliveries.first() else {
        return Ok(None);
    };
    let (received_at, hook) = (first.created_at, first.hook);
    let body = query_opt(
        client,
        "SELECT body FROM events WHERE id = $1",
        &[&sql_id(id)],
    )
    .await?
    .map(|row| Bytes::from(row.get::<_, Vec<u8>>(0)));
    let workflow = workflow_of(client, hook).await?;
    Ok(Some(EventInfo {
        id,
        received_at,
        workflow,
        body,
        deliveries,
    }))
}
