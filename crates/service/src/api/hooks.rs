//! Hooks by id: `/v1/hooks`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use linq_hooks_delivery::HookId;
use linq_hooks_model::HookParameters;
use linq_hooks_outbox::{HookRetry, Recovery};
use serde_json::Value;

use super::error::{ApiError, ApiResult, ErrorBody, Problem, problems_of};
use super::extract::{ApiJson, ApiQuery};
use super::types::{
    EnableOut, HookOut, HookRetryOut, HooksOut, PatchedHookOut, RecoverOut, hook_id,
};
use super::{AppState, Shared};

/// The most hooks one page holds.
const MAX_LIMIT: usize = 1000;

pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/hooks", get(list))
        .route("/v1/hooks/{hook_id}", get(get_one).patch(patch))
        .route("/v1/hooks/{hook_id}/enable", post(enable))
        .route("/v1/hooks/{hook_id}/retry", post(retry))
        .route("/v1/hooks/{hook_id}/recover", post(recover))
}

/// A hook id from the path: `hook_` and a number.
fn hook_path(path: Result<Path<String>, PathRejection>) -> ApiResult<HookId> {
    let Path(id) = path.map_err(|e| ApiError::invalid("hook_id", e.body_text()))?;
    parse_hook_id(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no hook {id} (hook ids look like hook_12)")))
}

/// `hook_` and a number, spelt one way (the inverse of [`hook_id`]).
pub(super) fn parse_hook_id(text: &str) -> Option<HookId> {
    text.strip_prefix("hook_").and_then(super::canonical_number)
}

/// The query of `GET /v1/hooks`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListHooks {
    limit: Option<usize>,
    after: Option<String>,
}

/// The hooks of every workflow with their states, in id order, paged: `?limit=N&after=hook_N`.
#[utoipa::path(get, path = "/v1/hooks", tag = "hooks",
    params(("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)", minimum = 1, maximum = 1000),
           ("after" = Option<String>, Query, description = "The `next_after` of the page before")),
    responses((status = 400, body = ErrorBody), (status = 200, body = HooksOut), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn list(
    State(state): Shared,
    ApiQuery(query): ApiQuery<ListHooks>,
) -> ApiResult<Json<HooksOut>> {
    let limit = super::check_limit(query.limit, MAX_LIMIT)?;
    let after = match &query.after {
        Some(after) => Some(
            parse_hook_id(after)
                .ok_or_else(|| ApiError::invalid("after", "expected a hook id, such as hook_12"))?,
        ),
        None => None,
    };
    let hooks = state
        .live
        .store
        .list_hooks(after, limit)
        .await
        .map_err(ApiError::store("read the hooks"))?;
    let next_after = (hooks.len() == limit)
        .then(|| hooks.last().map(|h| hook_id(h.id)))
        .flatten();
    Ok(Json(HooksOut {
        hooks: hooks.iter().map(HookOut::from).collect(),
        next_after,
    }))
}

/// One hook with its state.
#[utoipa::path(get, path = "/v1/hooks/{hook_id}", tag = "hooks",
    params(("hook_id" = String, Path, description = "`hook_` and a number")),
    responses((status = 200, body = HookOut), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn get_one(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<HookOut>> {
    let id = hook_path(id)?;
    let hook = state
        .live
        .store
        .hook(id)
        .await
        .map_err(ApiError::store("read a hook"))?
        .ok_or_else(|| ApiError::NotFound(format!("no hook {}", hook_id(id))))?;
    Ok(Json(HookOut::from(&hook)))
}

/// The body of `PATCH /v1/hooks/{hook_id}`. Only `parameters` can change: a hook's filter and
/// ids make it the hook it is (PUT the workflow to change them).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchHook {
    /// `{"url": "https://…", "headers": {…}}`, validated as in a workflow document.
    #[schema(value_type = Object)]
    parameters: Value,
}

/// Changes where a hook posts: `{"parameters": {"url", "headers"}}`, validated as in a
/// workflow. Its pending deliveries go to the new URL and headers from their next attempt,
/// keeping their `webhook-id`.
#[utoipa::path(patch, path = "/v1/hooks/{hook_id}", tag = "hooks",
    params(("hook_id" = String, Path, description = "`hook_` and a number")),
    request_body(content = PatchHook, content_type = "application/json"),
    responses((status = 200, body = PatchedHookOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn patch(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<PatchHook>,
) -> ApiResult<Json<PatchedHookOut>> {
    let id = hook_path(id)?;
    let parameters = body.parameters;
    // Read as a hook's parameters are read in a workflow, so problems get the same paths
    // (`parameters.url`) and messages.
    let as_hook = serde_json::json!({"filter": "on_new_plan", "parameters": parameters});
    let (parameters, warnings): (HookParameters, Vec<Problem>) =
        match linq_hooks_model::parse_hooks_value(&as_hook) {
            Ok(parsed) => (
                parsed.hooks[0].parameters().clone(),
                parsed.warnings.iter().map(Problem::from).collect(),
            ),
            Err(e) => return Err(ApiError::Invalid(problems_of(&e))),
        };
    let hook = state
        .live
        .patch(id, parameters)
        .await
        .map_err(ApiError::change(
            "change a hook",
            format!("no hook {}", hook_id(id)),
        ))?;
    Ok(Json(PatchedHookOut {
        hook: HookOut::from(&hook),
        warnings,
    }))
}

/// Enables a hook a 410 Gone disabled; its deliveries resume, in order.
#[utoipa::path(post, path = "/v1/hooks/{hook_id}/enable", tag = "hooks",
    params(("hook_id" = String, Path, description = "`hook_` and a number")),
    responses((status = 200, body = EnableOut), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn enable(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<EnableOut>> {
    let id = hook_path(id)?;
    let live = Arc::clone(&state.live);
    let enabled = tokio::spawn(async move {
        let was = live.store.enable(id).await?;
        live.dispatcher.wake(id);
        Ok::<_, linq_hooks_outbox::StoreError>(was)
    })
    .await
    .expect("enabling does not panic")
    .map_err(ApiError::store("enable a hook"))?;
    let was_disabled =
        enabled.ok_or_else(|| ApiError::NotFound(format!("no hook {}", hook_id(id))))?;
    if was_disabled {
        tracing::info!(hook = %hook_id(id), "hook enabled");
    }
    Ok(Json(EnableOut {
        id: hook_id(id),
        enabled: true,
        was_disabled,
    }))
}

/// Wakes a hook's queue now: the first of its pending deliveries is attempted now, whatever
/// its due time; a hook paused by the circuit breaker (its receiver kept timing out) tries
/// again at once (this attempt is the probe). The delivery keeps the attempts of its round:
/// if it fails again, its retry schedule goes on. 409 for a hook a 410 Gone disabled (enable
/// it: its deliveries then resume).
#[utoipa::path(post, path = "/v1/hooks/{hook_id}/retry", tag = "hooks",
    params(("hook_id" = String, Path, description = "`hook_` and a number")),
    responses((status = 202, body = HookRetryOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn retry(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<(axum::http::StatusCode, Json<HookRetryOut>)> {
    let id = hook_path(id)?;
    let live = Arc::clone(&state.live);
    let retry = tokio::spawn(async move {
        let retry = live.store.retry_hook(id).await?;
        if let HookRetry::Woken { .. } = retry {
            live.dispatcher.retry_now(id);
        }
        Ok::<_, linq_hooks_outbox::StoreError>(retry)
    })
    .await
    .expect("retrying does not panic")
    .map_err(ApiError::store("retry a hook"))?;
    match retry {
        HookRetry::Woken { pending, head } => {
            tracing::info!(hook = %hook_id(id), delivery = head, pending, "hook retry: its first pending delivery is attempted now");
            Ok((
                axum::http::StatusCode::ACCEPTED,
                Json(HookRetryOut {
                    hook: hook_id(id),
                    pending,
                }),
            ))
        }
        HookRetry::Disabled => Err(ApiError::Conflict(format!(
            "{0} was disabled by a 410 Gone: enable it (POST /v1/hooks/{0}/enable) and its deliveries resume",
            hook_id(id)
        ))),
        _ => Err(ApiError::NotFound(format!("no hook {}", hook_id(id)))),
    }
}

/// The query of `POST /v1/hooks/{hook_id}/recover`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Recover {
    since: Option<String>,
}

/// Recovers a hook's failed deliveries (Svix's "recover"): every delivery of the hook given up
/// (`failed`) and created at `since` or later becomes pending again, with its own
/// `webhook-id`, a fresh retry schedule, to the hook's current URL and headers. They are sent
/// in id order, the order they were created in. A hook's queue is kept in id order, so each
/// takes its place among the deliveries already pending by its id: behind older ones still
/// waiting, ahead of newer ones. The hook's worker wakes, and a pause of the circuit breaker
/// ends. A hook a 410 disabled keeps them waiting until it is enabled.
#[utoipa::path(post, path = "/v1/hooks/{hook_id}/recover", tag = "hooks",
    params(("hook_id" = String, Path, description = "`hook_` and a number"),
           ("since" = String, Query, description = "Failed deliveries created at or after this time (RFC 3339) are replayed; required")),
    responses((status = 202, body = RecoverOut), (status = 400, body = ErrorBody, description = "`since` missing or not RFC 3339"), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn recover(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
    ApiQuery(query): ApiQuery<Recover>,
) -> ApiResult<(axum::http::StatusCode, Json<RecoverOut>)> {
    let id = hook_path(id)?;
    let since = match &query.since {
        Some(since) => super::deliveries::time_parameter("since", since)?,
        None => {
            return Err(ApiError::invalid(
                "since",
                "required: the failed deliveries created since when (RFC 3339, such as 2025-04-17T09:30:00Z)",
            ));
        }
    };
    let live = Arc::clone(&state.live);
    let recovery = tokio::spawn(async move {
        let recovery = live.store.recover(id, since).await?;
        if let Recovery::Replayed(replayed) = &recovery
            && !replayed.is_empty()
        {
            live.dispatcher.retry_now(id);
        }
        Ok::<_, linq_hooks_outbox::StoreError>(recovery)
    })
    .await
    .expect("recovering does not panic")
    .map_err(ApiError::store("recover a hook's deliveries"))?;
    match recovery {
        Recovery::Replayed(replayed) => {
            // The first and last only: a recovery may replay any number of deliveries, and
            // `hook recovered` is the line of a hook that delivers again.
            tracing::info!(hook = %hook_id(id), since = %super::types::rfc3339(since), count = replayed.len(), first_delivery = replayed.first(), last_delivery = replayed.last(), "recover: failed deliveries replayed");
            Ok((
                axum::http::StatusCode::ACCEPTED,
                Json(RecoverOut {
                    hook: hook_id(id),
                    replayed,
                }),
            ))
        }
        _ => Err(ApiError::NotFound(format!("no hook {}", hook_id(id)))),
    }
}
