//! Ingest: `POST /v1/events` (the `default` workflow) and `POST /v1/workflows/{id}/events`.

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use linq_hooks_events::{Event, parse_event_value};
use linq_hooks_outbox::{Appended, IdempotencyKey};
use serde_json::Value;
use sha2::Digest;

use super::error::{ApiError, ApiResult, ErrorBody, MAX_PROBLEMS, Problem};
use super::types::{AcceptedDeliveryOut, EventOut, IngestOut, hook_id, rfc3339};
use super::workflows::workflow_path;
use super::{AppState, Shared};
use crate::live::DEFAULT_WORKFLOW;

pub(super) fn router() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/events", post(ingest_default))
        .route("/v1/events/{id}", get(get_one))
        .route("/v1/workflows/{workflow_id}/events", post(ingest))
}

/// Events of the `default` workflow's runs (the workflow `serve --hooks FILE` defines): one
/// event or an array. 202 once stored durably, with one delivery per hook that fires; 400 with
/// every problem, nothing stored, for an invalid body.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the ingest idempotent: a repeat with the same key (1 to 255 visible ASCII characters) and body within the window (24 h by default) stores nothing and gets the first answer, with `Idempotent-Replayed: true`; the same key with another body gets 422")),
    request_body(content = serde_json::Value, description = "One event (`schemas/event.schema.json`) or a non-empty array of events"),
    responses(
        (status = 202, body = IngestOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "The Idempotency-Key was used for another body"), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn ingest_default(
    state: Shared,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    accept(state, DEFAULT_WORKFLOW.to_string(), headers, body).await
}

/// Events of one workflow's runs, matched against that workflow's hooks only: one event or an
/// array. 202 once stored durably; 400 with every problem, nothing stored; 404 for an unknown
/// workflow.
#[utoipa::path(post, path = "/v1/workflows/{workflow_id}/events", tag = "events",
    params(("workflow_id" = String, Path, description = "The workflow"), ("Idempotency-Key" = Option<String>, Header, description = "Makes the ingest idempotent: a repeat with the same key (1 to 255 visible ASCII characters) and body within the window (24 h by default) stores nothing and gets the first answer, with `Idempotent-Replayed: true`; the same key with another body gets 422")),
    request_body(content = serde_json::Value, description = "One event (`schemas/event.schema.json`) or a non-empty array of events"),
    responses(
        (status = 202, body = IngestOut), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "The Idempotency-Key was used for another body"), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn ingest(
    state: Shared,
    workflow: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let workflow = workflow_path(workflow)?;
    accept(state, workflow, headers, body).await
}

async fn accept(
    axum::extract::State(state): Shared,
    workflow: String,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = super::body(body)?;
    let key = idempotency_key(&headers, &workflow, &body, state.idempotency_window)?;
    // Up to a mebibyte of JSON to read and check: off the async workers, which other
    // requests and the deliveries need meanwhile.
    let events = tokio::task::spawn_blocking(move || parse_events(&body))
        .await
        .expect("reading events does not panic")?;
    let appended = state
        .live
        .ingest(workflow.clone(), events, key)
        .await
        .map_err(ApiError::store(
            "store the events (not stored, so not accepted)",
        ))?
        .ok_or_else(|| {
            ApiError::NotFound(if workflow == DEFAULT_WORKFLOW {
                format!(
                    "no workflow {workflow}: start serve with --hooks FILE, or PUT /v1/workflows/{workflow}; \
                     or post to /v1/workflows/{{workflow_id}}/events"
                )
            } else {
                format!("no workflow {workflow}")
            })
        })?;
    let (accepted, repeated) = match appended {
        Appended::Stored(accepted) => (accepted, false),
        Appended::Repeated(accepted) => (accepted, true),
        _ => {
            return Err(ApiError::Unprocessable(Problem::at(
                IDEMPOTENCY_KEY,
                "this key was used for a different body within its window; a retry must send the same body, new events a new key",
            )));
        }
    };
    if !repeated {
        state.metrics.events_accepted.inc_by(accepted.len() as u64);
    }
    let deliveries = accepted
        .iter()
        .enumerate()
        .flat_map(|(event_index, event)| {
            event.deliveries.iter().map(move |d| AcceptedDeliveryOut {
                event_index,
                id: d.id,
                hook: hook_id(d.hook),
                webhook_id: d.webhook_id.clone(),
            })
        })
        .collect();
    let mut response = (
        StatusCode::ACCEPTED,
        Json(IngestOut {
            accepted: accepted.len(),
            deliveries,
        }),
    )
        .into_response();
    if repeated {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The request header that makes an ingest idempotent.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The ingest's idempotency key, if the request has one: 1 to 255 visible ASCII characters,
/// scoped to the workflow, with a digest of the body as its fingerprint.
fn idempotency_key(
    headers: &HeaderMap,
    workflow: &str,
    body: &[u8],
    window: std::time::Duration,
) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid(
                IDEMPOTENCY_KEY,
                "expected 1 to 255 visible ASCII characters (a UUID, say)",
            )
        })?;
    let digest = sha2::Sha256::digest(body);
    Ok(Some(IdempotencyKey {
        key: format!("{workflow}\u{0}{key}"),
        fingerprint: digest.iter().map(|b| format!("{b:02x}")).collect(),
        window,
    }))
}

/// One event or a non-empty array; every invalid event is reported with its path.
fn parse_events(body: &[u8]) -> ApiResult<Vec<Event>> {
    // A byte order mark before the JSON is ignored, as RFC 8259 §8.1 allows.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("$", format!("invalid JSON: {e}")))?;
    let (items, batch) = match &value {
        Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
        single => (vec![single], false),
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "$",
            "expected an event or a non-empty array of events",
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    // Problems beyond those an answer lists are counted, not built.
    let mut more = 0;
    for (i, item) in items.iter().enumerate() {
        match parse_event_value(item) {
            Ok(event) => events.push(event),
            Err(_) if problems.len() >= MAX_PROBLEMS => more += 1,
            Err(e) => {
                let inner = e.path().unwrap_or("$");
                let path = match (batch, inner) {
                    (false, inner) => inner.to_string(),
                    (true, "$") => format!("[{i}]"),
                    (true, inner) => format!("[{i}].{inner}"),
                };
                let message = e.to_string();
                let message = message
                    .strip_prefix(&format!("{inner}: "))
                    .unwrap_or(&message)
                    .to_string();
                problems.push(Problem::at(path, message));
            }
        }
    }
    if problems.is_empty() {
        Ok(events)
    } else {
        Err(ApiError::InvalidMany(problems, more))
    }
}

/// An event as stored: the JSON its deliveries posted, and its deliveries (one per hook that
/// fired). The body is kept as long as any delivery of the event is: pruning after the
/// retention (`serve --retention`) removes delivered deliveries, and an event's body with the
/// last of them, after which the event is 404. `body` is null only when it was damaged in the
/// store file (its deliveries are then `quarantined`).
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = u64, Path, description = "The event's number (`event` of its deliveries)")),
    responses((status = 200, body = EventOut), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody, description = "No or a wrong bearer token (when serve has --token)"), (status = 503, body = ErrorBody)))]
pub(super) async fn get_one(
    state: Shared,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<EventOut>> {
    let Path(text) = id.map_err(|e| ApiError::invalid("id", e.body_text()))?;
    let not_found = || ApiError::NotFound(format!("no event {text}"));
    let id = super::canonical_number(&text).ok_or_else(not_found)?;
    let store = &state.live.store;
    let event = store
        .event(id)
        .await
        .map_err(ApiError::store("read an event"))?
        .ok_or_else(not_found)?;
    Ok(Json(EventOut {
        id: event.id,
        workflow_id: event.workflow.clone(),
        received_at: rfc3339(event.received_at),
        body: event
            .body
            .as_deref()
            .and_then(|body| serde_json::from_slice(body).ok()),
        deliveries: super::deliveries::with_workflows(&**store, &event.deliveries).await?,
    }))
}
