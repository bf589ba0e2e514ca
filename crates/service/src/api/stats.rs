//! Delivery counts per minute: `/v1/stats/deliveries`, for the dashboard's chart.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiQuery;
use super::types::{hook_id, rfc3339};
use super::{AppState, Shared};
use crate::stats::KEEP_MINUTES;

pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/v1/stats/deliveries", get(deliveries))
}

/// The query of `GET /v1/stats/deliveries`. Read as text, so that a bad value gets the
/// parameter's own message.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    minutes: Option<String>,
    hook: Option<String>,
}

/// Attempts of one hook in one minute.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MinuteOut {
    /// The start of the minute (RFC 3339, UTC).
    #[schema(example = "2026-11-30T02:46:00.000Z")]
    minute: String,
    /// The hook, `hook_` and a number.
    #[schema(example = "hook_3")]
    hook: String,
    /// Attempts that delivered.
    delivered: u64,
    /// Attempts that did not: to be retried, given up, or answered 410.
    failed_attempts: u64,
}

/// Delivery counts per hook per minute.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsOut {
    /// Only minutes with activity, by minute then hook.
    per_minute: Vec<MinuteOut>,
}

/// Attempts per hook per minute over the last `minutes` (1 to 60, default 60; the current
/// minute included), optionally of one hook: only minutes with activity, by minute then hook.
/// Counted in memory since `serve` started (a restart starts from nothing), for registered
/// hooks only.
#[utoipa::path(get, path = "/v1/stats/deliveries", tag = "operations",
    params(("minutes" = Option<u64>, Query, description = "1 to 60 (default 60)", minimum = 1, maximum = 60),
           ("hook" = Option<String>, Query, description = "Only this hook: `hook_` and a number")),
    responses((status = 200, body = StatsOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)")))]
pub(super) async fn deliveries(
    State(state): Shared,
    ApiQuery(query): ApiQuery<StatsQuery>,
) -> ApiResult<Json<StatsOut>> {
    let minutes = match query.minutes.as_deref() {
        None => KEEP_MINUTES,
        Some(text) => super::canonical_number(text)
            .filter(|n| (1..=KEEP_MINUTES).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "minutes",
                    format!("expected a number from 1 to {KEEP_MINUTES}"),
                )
            })?,
    };
    let hook = match query.hook.as_deref() {
        None => None,
        Some(text) => Some(
            text.strip_prefix("hook_")
                .and_then(super::canonical_number)
                .ok_or_else(|| ApiError::invalid("hook", "expected a hook id, such as hook_12"))?,
        ),
    };
    let rows = state
        .live
        .observer
        .stats
        .per_minute(SystemTime::now(), minutes, hook);
    Ok(Json(StatsOut {
        per_minute: rows
            .into_iter()
            .map(|(hook, m)| MinuteOut {
                minute: rfc3339(UNIX_EPOCH + Duration::from_secs(m.minute * 60)),
                hook: hook_id(hook),
                delivered: m.delivered,
                failed_attempts: m.failed_attempts,
            })
            .collect(),
    }))
}
