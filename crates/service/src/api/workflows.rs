//! The registry: `/v1/workflows`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use linq_hooks_model::parse_hooks;

use super::error::{ApiError, ApiResult, ErrorBody, Problem, problems_of};
use super::extract::ApiQuery;
use super::types::{
    DeletedOut, PreviousSecretOut, PutWorkflowOut, SecretOut, WorkflowOut, WorkflowsOut, hook_id,
    rfc3339,
};
use super::{AppState, Shared, check_limit};

/// How long a rotated-out secret keeps signing.
const ROTATION_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// The most workflows one page holds.
const MAX_LIMIT: usize = 1000;

pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/workflows", get(list))
        .route(
            "/v1/workflows/{workflow_id}",
            get(get_one).put(put).delete(delete),
        )
        .route("/v1/workflows/{workflow_id}/secret", get(secret))
        .route("/v1/workflows/{workflow_id}/secret/rotate", post(rotate))
}

/// A workflow id from the path: a LINQ workflow UUID or a name of 1–128 characters from
/// `[A-Za-z0-9._-]`.
pub(super) fn workflow_path(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path.map_err(|e| ApiError::invalid("workflow_id", e.body_text()))?;
    // `.` and `..` are path segments to every HTTP client, never reachable as names.
    let valid = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id != "."
        && id != "..";
    if valid {
        Ok(id)
    } else {
        Err(ApiError::invalid(
            "workflow_id",
            "expected a workflow UUID or a name of 1 to 128 characters from A-Z, a-z, 0-9, `.`, `_` and `-`",
        ))
    }
}

/// The query of `GET /v1/workflows`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListWorkflows {
    limit: Option<usize>,
    after: Option<String>,
}

/// Workflows ordered by id, paged: `?limit=N&after=ID`.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    params(("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)", minimum = 1, maximum = 1000),
           ("after" = Option<String>, Query, description = "The `next_after` of the page before")),
    responses((status = 200, body = WorkflowsOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn list(
    State(state): Shared,
    ApiQuery(query): ApiQuery<ListWorkflows>,
) -> ApiResult<Json<WorkflowsOut>> {
    let limit = check_limit(query.limit, MAX_LIMIT)?;
    let after = query.after;
    let workflows = state
        .live
        .store
        .list_workflows(after, limit)
        .await
        .map_err(ApiError::store("list workflows"))?;
    let next_after = (workflows.len() == limit)
        .then(|| workflows.last().map(|w| w.id.clone()))
        .flatten();
    Ok(Json(WorkflowsOut {
        workflows: workflows.iter().map(WorkflowOut::from).collect(),
        next_after,
    }))
}

/// A workflow with its hooks, their ids and states.
#[utoipa::path(get, path = "/v1/workflows/{workflow_id}", tag = "workflows",
    params(("workflow_id" = String, Path)),
    responses((status = 200, body = WorkflowOut), (status = 400, body = ErrorBody, description = "Not a workflow id"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn get_one(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<WorkflowOut>> {
    let id = workflow_path(id)?;
    let workflow = find(&state, &id).await?;
    Ok(Json(WorkflowOut::from(&workflow)))
}

/// Creates (201) or replaces (200) a workflow's hooks. The body is any document `linq-hooks
/// validate` reads: one hook, an array of hooks, `{"hooks": [...]}`, or the LINQ API's workflow
/// document (`{"workflow": {"hooks": [...]}, ...}`). A hook that fires like one already there
/// keeps its id, queue and history, and takes the new URL and headers; hooks no longer in the
/// document are removed and their pending deliveries cancelled. Invalid: 400 with every
/// problem, nothing changed. Answered once committed durably.
#[utoipa::path(put, path = "/v1/workflows/{workflow_id}", tag = "workflows",
    params(("workflow_id" = String, Path)),
    request_body(content = serde_json::Value, description = "A hook document (see `schemas/hooks.schema.json`) or a LINQ workflow document"),
    responses((status = 200, body = PutWorkflowOut, description = "Replaced"),
              (status = 201, body = PutWorkflowOut, description = "Created; the answer holds the workflow's secret"),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn put(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PutWorkflowOut>)> {
    let id = workflow_path(id)?;
    let body = super::body(body)?;
    // Up to a mebibyte of JSON to read and check: off the async workers.
    let parsed = tokio::task::spawn_blocking(move || read_hooks(&body))
        .await
        .expect("reading hooks does not panic")?;
    let change = state
        .live
        .put(id.clone(), parsed.hooks.clone())
        .await
        .map_err(ApiError::change(
            "change a workflow",
            format!("no workflow {id}"),
        ))?;
    crate::log_change(&change);
    let (status, secret) = if change.created {
        let secret = state.live.secrets_of(&change.workflow).current;
        (StatusCode::CREATED, Some(secret))
    } else {
        (StatusCode::OK, None)
    };
    let warnings = parsed.warnings.iter().map(Problem::from).collect();
    Ok((status, Json(PutWorkflowOut::new(&change, secret, warnings))))
}

/// Removes a workflow and its hooks; their pending deliveries are cancelled (kept on record).
#[utoipa::path(delete, path = "/v1/workflows/{workflow_id}", tag = "workflows",
    params(("workflow_id" = String, Path)),
    responses((status = 200, body = DeletedOut), (status = 400, body = ErrorBody, description = "Not a workflow id"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn delete(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<DeletedOut>> {
    let id = workflow_path(id)?;
    let removal = state
        .live
        .delete(id.clone())
        .await
        .map_err(ApiError::change(
            "delete a workflow",
            format!("no workflow {id}"),
        ))?;
    let removed: Vec<String> = removal.removed.iter().map(|h| hook_id(*h)).collect();
    tracing::info!(
        workflow = %id,
        removed = removed.join(",").as_str(),
        cancelled_deliveries = removal.cancelled_deliveries,
        "workflow deleted"
    );
    Ok(Json(DeletedOut {
        workflow_id: id,
        removed: removal.removed.iter().copied().map(hook_id).collect(),
        cancelled_deliveries: removal.cancelled_deliveries,
    }))
}

/// The workflow's Standard Webhooks signing secret (and, after a rotation, the one before with
/// the end of its grace period).
#[utoipa::path(get, path = "/v1/workflows/{workflow_id}/secret", tag = "workflows",
    params(("workflow_id" = String, Path)),
    responses((status = 200, body = SecretOut), (status = 400, body = ErrorBody, description = "Not a workflow id"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn secret(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<SecretOut>> {
    let id = workflow_path(id)?;
    let workflow = find(&state, &id).await?;
    Ok(Json(secret_out(&state, &workflow)))
}

/// Makes a new secret; the one before keeps signing for 24 hours, so each webhook carries two
/// `v1,` signatures meanwhile.
#[utoipa::path(post, path = "/v1/workflows/{workflow_id}/secret/rotate", tag = "workflows",
    params(("workflow_id" = String, Path)),
    responses((status = 200, body = SecretOut), (status = 400, body = ErrorBody, description = "Not a workflow id"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The `default` workflow's secret is set by `serve --secret`"), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn rotate(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<SecretOut>> {
    let id = workflow_path(id)?;
    if state.live.secret_is_pinned(&id) {
        return Err(ApiError::Conflict(format!(
            "the secret of workflow {id} is set by `serve --secret`; rotate it there (two --secret values sign with both)"
        )));
    }
    let workflow = state
        .live
        .rotate(id.clone(), ROTATION_GRACE)
        .await
        .map_err(ApiError::change(
            "rotate a secret",
            format!("no workflow {id}"),
        ))?;
    tracing::info!(workflow = %id, "secret rotated");
    Ok(Json(secret_out(&state, &workflow)))
}

/// A hook document from a request body: every problem with its path (the first hundred, then a
/// count), or `invalid JSON: …` with the place.
fn read_hooks(body: &[u8]) -> ApiResult<linq_hooks_model::ParsedHooks> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::invalid("$", format!("the body is not UTF-8: {e}")))?;
    parse_hooks(text).map_err(|e| {
        if e.is_syntax() {
            // `invalid JSON: expected value at line 2 column 14`: the error's level, then
            // serde_json's message, its source.
            let detail = std::error::Error::source(&e).map(|s| format!(": {s}"));
            ApiError::invalid("$", format!("{e}{}", detail.unwrap_or_default()))
        } else {
            ApiError::Invalid(problems_of(&e))
        }
    })
}

/// A stored workflow, or 404.
async fn find(state: &AppState, id: &str) -> ApiResult<linq_hooks_outbox::StoredWorkflow> {
    state
        .live
        .store
        .workflow(id)
        .await
        .map_err(ApiError::store("read a workflow"))?
        .ok_or_else(|| ApiError::NotFound(format!("no workflow {id}")))
}

fn secret_out(state: &AppState, workflow: &linq_hooks_outbox::StoredWorkflow) -> SecretOut {
    let secrets = state.live.secrets_of(workflow);
    SecretOut {
        workflow_id: workflow.id.clone(),
        secret: secrets.current,
        previous: secrets
            .previous
            .into_iter()
            .map(|(secret, until)| PreviousSecretOut {
                secret,
                expires_at: until.map(rfc3339),
            })
            .collect(),
    }
}
