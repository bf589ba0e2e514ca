//! Deliveries: `/v1/deliveries`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use linq_hooks_events::Timestamp;
use linq_hooks_outbox::{DeliveryFilter, DeliveryState, Retry, StatusClass};

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

/// The query of `GET /v1/deliveries`: every parameter is text here and read by
/// [`ListDeliveries::filter`], so that a bad value gets a 400 naming its parameter.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListDeliveries {
    workflow: Option<String>,
    hook: Option<String>,
    state: Option<String>,
    since: Option<String>,
    until: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListDeliveries {
    /// The store's filter, or the first bad parameter.
    fn filter(self) -> ApiResult<DeliveryFilter> {
        let mut filter = DeliveryFilter::default();
        if let Some(workflow) = self.workflow {
            if workflow.is_empty() {
                return Err(ApiError::invalid("workflow", "expected a workflow id"));
            }
            filter.workflow = Some(workflow);
        }
        if let Some(hook) = self.hook {
            filter.hook =
                Some(super::hooks::parse_hook_id(&hook).ok_or_else(|| {
                    ApiError::invalid("hook", "expected a hook id, such as hook_12")
                })?);
        }
        if let Some(state) = self.state {
            filter.state = Some(
                state
                    .parse::<DeliveryState>()
                    .map_err(|e| ApiError::invalid("state", e))?,
            );
        }
        filter.since = self
            .since
            .map(|t| time_parameter("since", &t))
            .transpose()?;
        filter.until = self
            .until
            .map(|t| time_parameter("until", &t))
            .transpose()?;
        if let Some(status) = self.status {
            filter.status = Some(
                status
                    .parse::<StatusClass>()
                    .map_err(|e| ApiError::invalid("status", e))?,
            );
        }
        let limit = self.limit.map(|text| {
            super::canonical_number(&text).map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
        });
        filter.limit = check_limit(limit, MAX_LIMIT)?;
        if let Some(cursor) = self.cursor {
            filter.before = Some(parse_cursor(&cursor).ok_or_else(|| {
                ApiError::invalid(
                    "cursor",
                    "not a cursor this API gave: pass the next_cursor of the page before as it came",
                )
            })?);
        }
        Ok(filter)
    }
}

/// A time parameter: RFC 3339 with an offset (`2025-04-17T09:30:00Z`). A `+` of an offset
/// sent unencoded arrives as a space in a query string; it is read as the `+` it was.
pub(super) fn time_parameter(name: &str, text: &str) -> ApiResult<SystemTime> {
    let parsed = text
        .parse::<Timestamp>()
        .or_else(|e| text.replace(' ', "+").parse::<Timestamp>().map_err(|_| e));
    match parsed {
        Ok(t) => Ok(u64::try_from(t.unix_millis())
            .map_or(UNIX_EPOCH, |ms| UNIX_EPOCH + Duration::from_millis(ms))),
        Err(e) => Err(ApiError::invalid(
            name,
            format!("{e} (expected RFC 3339 with an offset, such as 2025-04-17T09:30:00Z)"),
        )),
    }
}

/// The opaque cursor of a page: where the next one starts. Its spelling (`c` and a hex
/// number) is not part of the API.
fn cursor(before: u64) -> String {
    format!("c{before:x}")
}

fn parse_cursor(text: &str) -> Option<u64> {
    let hex = text.strip_prefix('c')?;
    let valid = !hex.is_empty() && hex.len() <= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .filter(|&n| n > 0)
}

/// Deliveries in every state, newest first (highest id first), filtered and paged:
/// `?workflow=ID&hook=hook_N&state=S&since=T&until=T&status=4xx&limit=N&cursor=C`.
///
/// Every parameter is optional, and they combine. `since` (inclusive) and `until` (exclusive)
/// are on `created_at`. `status` is the class of the last attempt's status (`none`: no answer,
/// or no attempt yet). Each page examines at most 10 000 deliveries of the narrowest index the
/// filters allow (by hook, for `hook` and `workflow`; by state; else all), so that a request does
/// bounded work whatever the store holds: a page may hold fewer than `limit` (even none) and
/// still have a `next_cursor`; follow it until it is null. `quarantined` lists the deliveries
/// set aside because their record or their event's body was damaged in the store file.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries",
    params(("workflow" = Option<String>, Query, description = "Deliveries of this workflow's hooks (removed hooks included)"),
           ("hook" = Option<String>, Query, description = "Deliveries of this hook (`hook_N`)"),
           ("state" = Option<String>, Query, description = "pending, delivered, failed, cancelled or quarantined (default: every state)"),
           ("since" = Option<String>, Query, description = "Created at or after this time (RFC 3339)"),
           ("until" = Option<String>, Query, description = "Created before this time (RFC 3339)"),
           ("status" = Option<String>, Query, description = "The class of the last attempt's status: 2xx, 3xx, 4xx, 5xx, or none (no answer, or no attempt)"),
           ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)", minimum = 1, maximum = 1000),
           ("cursor" = Option<String>, Query, description = "The `next_cursor` of the page before (opaque)")),
    responses((status = 200, body = DeliveriesOut), (status = 400, body = ErrorBody, description = "A bad parameter, named in `path`"), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn list(
    State(state): Shared,
    ApiQuery(query): ApiQuery<ListDeliveries>,
) -> ApiResult<Json<DeliveriesOut>> {
    let filter = query.filter()?;
    let store = &state.live.store;
    let page = store
        .deliveries(&filter)
        .await
        .map_err(ApiError::store("list deliveries"))?;
    Ok(Json(DeliveriesOut {
        deliveries: with_workflows(&**store, &page.deliveries).await?,
        next_cursor: page.next_before.map(cursor),
    }))
}

/// The API's view of deliveries, each with its hook's workflow (read once per hook).
pub(super) async fn with_workflows(
    store: &dyn linq_hooks_outbox::DurableOutbox,
    deliveries: &[linq_hooks_outbox::DeliveryInfo],
) -> ApiResult<Vec<DeliveryOut>> {
    let mut workflows: HashMap<u64, Option<String>> = HashMap::new();
    let mut out = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let workflow = match workflows.get(&delivery.hook) {
            Some(workflow) => workflow.clone(),
            None => {
                let workflow = store
                    .workflow_of(delivery.hook)
                    .await
                    .map_err(ApiError::store("list deliveries"))?;
                workflows.insert(delivery.hook, workflow.clone());
                workflow
            }
        };
        out.push(DeliveryOut::new(delivery, workflow));
    }
    Ok(out)
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
        .await
        .map_err(ApiError::store("read a delivery"))?
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {id}")))?;
    let workflow = store
        .workflow_of(delivery.hook)
        .await
        .map_err(ApiError::store("read a delivery"))?;
    Ok(Json(DeliveryDetailOut {
        delivery: DeliveryOut::new(&delivery, workflow),
        attempt_log: attempts.iter().map(AttemptOut::from).collect(),
    }))
}

/// Retries a delivery. A pending one is attempted now: its due time is cleared, the retry
/// deadline its hook's worker keeps is forgotten, and a hook paused by the circuit breaker
/// wakes (this attempt is the probe). A hook's deliveries go in order, so when the delivery is
/// not the first of its hook's queue, the first is attempted now and this one follows it. The
/// attempts of its round are kept: if it fails again, its retry schedule goes on. A failed one
/// is replayed: pending again with the same `webhook-id` and a fresh retry schedule, to the
/// hook's current URL and headers, in its place by id in its hook's queue (behind older
/// deliveries still waiting, ahead of newer ones). Delivered, cancelled and quarantined ones,
/// and pending ones of a hook a 410 disabled (enable it), get 409.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = u64, Path)),
    responses((status = 202, body = ReplayOut), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn retry(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<(StatusCode, Json<ReplayOut>)> {
    let id = delivery_path(id)?;
    let live = Arc::clone(&state.live);
    // A task of its own: a client that hangs up cannot leave the store changed and the
    // dispatcher untold.
    let retry = tokio::spawn(async move {
        let retry = live.store.retry(id).await?;
        match retry {
            Retry::Now { hook, .. } => live.dispatcher.retry_now(hook),
            Retry::Replayed { hook } => live.dispatcher.wake(hook),
            _ => {}
        }
        Ok::<_, linq_hooks_outbox::StoreError>(retry)
    })
    .await
    .expect("retrying does not panic")
    .map_err(ApiError::store("retry a delivery"))?;
    let accepted = || {
        Ok((
            StatusCode::ACCEPTED,
            Json(ReplayOut {
                id,
                state: "pending".into(),
            }),
        ))
    };
    match retry {
        Retry::Now { hook, head } => {
            let head = head.filter(|&head| head != id);
            tracing::info!(hook = %hook_id(hook), delivery = id, first = head, "retry now: the delivery is attempted now");
            accepted()
        }
        Retry::Replayed { hook } => {
            tracing::info!(hook = %hook_id(hook), delivery = id, "delivery replayed");
            accepted()
        }
        Retry::NotFound => Err(ApiError::NotFound(format!("no delivery {id}"))),
        Retry::HookRemoved { hook } => Err(ApiError::Conflict(format!(
            "delivery {id} cannot be replayed: its hook {} was removed",
            hook_id(hook)
        ))),
        Retry::HookDisabled { hook } => Err(ApiError::Conflict(format!(
            "delivery {id} waits for its hook {0}, which a 410 Gone disabled: enable it (POST /v1/hooks/{0}/enable) and its deliveries resume",
            hook_id(hook)
        ))),
        Retry::NotRetriable(current) => Err(ApiError::Conflict(format!(
            "only pending and failed deliveries can be retried; delivery {id} is {}",
            current.as_str()
        ))),
        _ => Err(ApiError::Conflict(format!(
            "delivery {id} cannot be retried"
        ))),
    }
}
