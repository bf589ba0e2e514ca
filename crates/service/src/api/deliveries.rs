//! Deliveries: `/v1/deliveries`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use linq_hooks_outbox::{DeliveryState, Replay};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiQuery;
use super::types::{AttemptOut, DeliveriesOut, DeliveryDetailOut, DeliveryOut, ReplayOut, hook_id};
use super::{AppState, Shared, check_limit};

/// The most deliveries one page holds.
const MAX_LIMIT: usize = 1000;

pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/deliveries", get(list))
        .route("/v1/deliveries/{id}", get(get_one))
        .route("/v1/deliveries/{id}/retry", post(retry))
}

fn delivery_path(path: Result<Path<String>, PathRejection>) -> ApiResult<u64> {
    let Path(id) = path.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    super::canonical_number(&id).ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))
}

/// The query of `GET /v1/deliveries`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListDeliveries {
    state: Option<String>,
    limit: Option<usize>,
    after: Option<u64>,
}

/// Deliveries in a state, oldest first, paged: `?state=pending|delivered|failed|cancelled|quarantined&limit=N&after=ID`.
///
/// `quarantined` lists the deliveries set aside because their record or their event's body was
/// damaged in the store file: never sent; `failure` says what was found.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries",
    params(("state" = Option<String>, Query, description = "pending (default), delivered, failed, cancelled or quarantined"),
           ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)", minimum = 1, maximum = 1000),
           ("after" = Option<u64>, Query, description = "The `next_after` of the page before")),
    responses((status = 200, body = DeliveriesOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn list(
    State(state): Shared,
    ApiQuery(query): ApiQuery<ListDeliveries>,
) -> ApiResult<Json<DeliveriesOut>> {
    let wanted = match query.state {
        Some(name) => name
            .parse()
            .map_err(|e: String| ApiError::invalid("state", e))?,
        None => DeliveryState::Pending,
    };
    let limit = check_limit(query.limit, MAX_LIMIT)?;
    let after = query.after;
    let store = &state.live.store;
    let deliveries = store
        .list(wanted, after, limit)
        .map_err(ApiError::store("list deliveries"))?;
    let next_after = (deliveries.len() == limit)
        .then(|| deliveries.last().map(|d| d.id))
        .flatten();
    let mut out = Vec::with_capacity(deliveries.len());
    for delivery in &deliveries {
        let workflow = store
            .workflow_of(delivery.hook)
            .map_err(ApiError::store("list deliveries"))?;
        out.push(DeliveryOut::new(delivery, workflow));
    }
    Ok(Json(DeliveriesOut {
        deliveries: out,
        next_after,
    }))
}

/// A delivery with its attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = u64, Path)),
    responses((status = 200, body = DeliveryDetailOut), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn get_one(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<DeliveryDetailOut>> {
    let id = delivery_path(id)?;
    let store = &state.live.store;
    let (delivery, attempts) = store
        .get(id)
        .map_err(ApiError::store("read a delivery"))?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))?;
    let workflow = store
        .workflow_of(delivery.hook)
        .map_err(ApiError::store("read a delivery"))?;
    Ok(Json(DeliveryDetailOut {
        delivery: DeliveryOut::new(&delivery, workflow),
        attempt_log: attempts.iter().map(AttemptOut::from).collect(),
    }))
}

/// Replays a failed delivery: pending again, first in its hook's queue, with the same
/// `webhook-id`, to the hook's current URL and headers.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = u64, Path)),
    responses((status = 202, body = ReplayOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn retry(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<(StatusCode, Json<ReplayOut>)> {
    let id = delivery_path(id)?;
    let live = Arc::clone(&state.live);
    let replay = tokio::spawn(async move {
        let replay = live.store.replay(id).await?;
        if let Replay::Replayed { hook } = replay {
            live.dispatcher.wake(hook);
        }
        Ok::<_, linq_hooks_outbox::StoreError>(replay)
    })
    .await
    .expect("replaying does not panic")
    .map_err(ApiError::store("replay a delivery"))?;
    match replay {
        Replay::Replayed { hook } => {
            tracing::info!(delivery = id, hook = %hook_id(hook), "delivery replayed");
            Ok((
                StatusCode::ACCEPTED,
                Json(ReplayOut {
                    id,
                    state: "pending".into(),
                }),
            ))
        }
        Replay::NotFound => Err(ApiError::NotFound(format!("no delivery {id}"))),
        Replay::HookRemoved { hook } => Err(ApiError::Conflict(format!(
            "delivery {id} cannot be replayed: its hook {} was removed",
            hook_id(hook)
        ))),
        Replay::NotFailed(current) => Err(ApiError::Conflict(format!(
            "only failed deliveries can be replayed; delivery {id} is {}",
            current.as_str()
        ))),
        _ => Err(ApiError::Conflict(format!(
            "delivery {id} cannot be replayed"
        ))),
    }
}
