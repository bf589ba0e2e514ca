//! The HTTP API: an axum `Router`, one module per resource, one error type.
//!
//! Every error answer has the shape `{"errors": [{"path", "message"}]}` ([`error::ErrorBody`]),
//! extractor rejections, 404 and 405 included. The OpenAPI document ([`openapi`]) is generated
//! from the handlers and types here.

mod deliveries;
pub(crate) mod error;
mod events;
mod extract;
mod guard;
mod hooks;
mod stats;
pub(crate) mod types;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;

use linq_hooks_outbox::DeliveryState;

use crate::live::Live;
use crate::metrics::Metrics;
use error::{ApiError, Problem, error_response};
use types::HealthOut;

/// The largest request body; larger ones get 413.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) live: Arc<Live>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<String>,
    /// How long an ingest's `Idempotency-Key` is remembered.
    pub(crate) idempotency_window: std::time::Duration,
}

pub(crate) type Shared = State<Arc<AppState>>;

/// The whole API.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi_json))
        .merge(events::router())
        .merge(workflows::router())
        .merge(hooks::router())
        .merge(deliveries::router())
        .merge(stats::router())
        .merge(crate::ui::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(refuse_announced_oversize))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::refuse_cross_site,
        ))
        .layer(middleware::from_fn(json_method_not_allowed))
        .with_state(state)
}

/// Every endpoint but `/healthz` and the dashboard's page and assets (`/`, `/ui`, `/ui/…`, which
/// hold no data: the page asks for the token and sends it with each call) requires the bearer
/// token, when there is one. The scheme is case-insensitive (RFC 9110 §11.1); the token is
/// compared exactly, in constant time.
async fn authorize(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/healthz" || crate::ui::is_public(path) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, credentials) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim_start_matches(' '))
        });
    if given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes()))) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// A body announced (`Content-Length`) over the limit is refused before any of it is read.
async fn refuse_announced_oversize(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY as u64) {
        return ApiError::TooLarge(MAX_BODY).into_response();
    }
    next.run(request).await
}

/// axum answers a method a route does not have with an empty 405 and `Allow`; this gives it
/// the error shape, keeping `Allow`.
async fn json_method_not_allowed(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        vec![Problem {
            path: None,
            message: format!("{method} is not allowed on {path}"),
        }],
    );
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", request.uri().path()))
}

/// 200 while the store can write and every delivery worker runs; 503 with the reason when the
/// store cannot write, when a delivery worker cannot read its queue from the store (a damaged
/// store), or while a worker that panicked waits to be started again (naming its hooks). The
/// count of quarantined deliveries (damaged records set aside) comes with either answer: they
/// do not stop delivery, but someone should look at them.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = HealthOut), (status = 503, body = HealthOut)))]
async fn healthz(State(state): Shared) -> Response {
    let health = state.live.dispatcher.health();
    let names = |hooks: &mut dyn Iterator<Item = u64>| {
        hooks
            .map(types::hook_id)
            .collect::<Vec<String>>()
            .join(", ")
    };
    let store_health = state.live.store.health();
    // Not asked of a store known to be failing: a lost database would hold the answer up.
    let quarantined = match store_health {
        Ok(()) => Some(state.live.store.count(DeliveryState::Quarantined).await),
        Err(_) => None,
    };
    let reason = if let Err(reason) = store_health {
        Some(reason)
    } else if let Some((_, error)) = health.outbox_failing.first() {
        Some(format!(
            "the delivery worker of {} cannot read its queue from the store: {error}",
            names(&mut health.outbox_failing.iter().map(|(hook, _)| *hook))
        ))
    } else if !health.failing.is_empty() {
        Some(format!(
            "the delivery worker of {} panicked and is restarting (see the log)",
            names(&mut health.failing.iter().copied())
        ))
    } else if let Some(Err(e)) = &quarantined {
        Some(chain(e))
    } else {
        None
    };
    let (status, text) = match reason {
        None => (StatusCode::OK, "ok"),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "failing"),
    };
    (
        status,
        axum::Json(HealthOut {
            status: text.into(),
            reason,
            quarantined: quarantined.and_then(Result::ok),
        }),
    )
        .into_response()
}

/// An error and its sources, `a: b: c`, for an answer's `reason`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Prometheus metrics in the OpenMetrics text format (what prometheus-client writes: counters
/// declared without their `_total`, a final `# EOF`), which Prometheus reads. Per-hook series
/// (labels `workflow`, `hook`) exist for registered hooks only.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "application/openmetrics-text", body = String), (status = 401, body = error::ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = error::ErrorBody)))]
async fn metrics(State(state): Shared) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .render(&*state.live.store, &state.live.dispatcher.health())
        .await
        .map_err(ApiError::store("read the metrics"))?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        // The format prometheus-client writes; declared as what it is, so that Prometheus
        // reads the counters' TYPE lines (named without `_total`) right.
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object),
              (status = 401, body = error::ErrorBody, description = "No or a wrong bearer token (when serve has --token)")))]
async fn openapi_json() -> Response {
    let mut response = openapi().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "linq-hooks serve",
        description = "The dispatcher service of linq-hooks: workflows and their hooks as live data, events in, signed webhooks out (Standard Webhooks), durably, in order per hook. Every error answer is {\"errors\": [{\"path\", \"message\"}]}. On every endpoint: a request body must be sent as `Content-Type: application/json` (else 415); a request whose `Origin` is another site's is refused (403); without a token, a request whose `Host` is not a loopback name or address is refused (403, against DNS rebinding); a request body that does not arrive in full within the body timeout (serve --body-timeout, default 30 s) gets 408 and the connection is closed.",
        license(name = "Apache-2.0")
    ),
    paths(
        healthz, metrics, openapi_json,
        events::ingest_default, events::ingest,
        workflows::list, workflows::get_one, workflows::put, workflows::delete, workflows::secret, workflows::rotate,
        hooks::list, hooks::get_one, hooks::patch, hooks::enable, hooks::retry, hooks::recover,
        deliveries::list, deliveries::get_one, deliveries::retry, events::get_one,
        stats::deliveries,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// Declares the bearer token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The OpenAPI 3.1 document of the API, as pretty JSON (what `cargo xtask schema` writes to
/// `schemas/openapi.json` and `GET /v1/openapi.json` serves).
pub fn openapi() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().expect("the document serializes") + "\n"
}

/// A number as ids are written: decimal digits, no sign, no leading zero (so that each id has
/// one spelling: `01` and `+1` are not delivery 1).
pub(crate) fn canonical_number(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text.len() == 1 || !text.starts_with('0');
    (digits && canonical).then(|| text.parse().ok()).flatten()
}

/// A page size: 1 to `max`, 100 when not given.
pub(crate) fn check_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("expected a number from 1 to {max}"),
        )),
    }
}

/// Reads a request body, turning axum's rejection into the error shape.
pub(crate) fn body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(MAX_BODY)
        } else {
            ApiError::invalid("$", format!("cannot read the body: {}", e.body_text()))
        }
    })
}
