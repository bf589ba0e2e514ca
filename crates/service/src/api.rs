//! The HTTP API: routing, authentication and the handlers.

use std::sync::Arc;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use linq_hooks_delivery::{Dispatcher, NewDelivery};
use linq_hooks_events::parse_event_value;
use linq_hooks_filter::Matcher;
use linq_hooks_model::Hook;
use linq_hooks_outbox::{DeliveryState, NewEvent, Replay, Store};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::metrics::Metrics;

/// The largest ingest body; larger ones get 413.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// The most deliveries one list call returns.
const MAX_LIMIT: usize = 1000;

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) hooks: Arc<[Hook]>,
    pub(crate) matcher: Matcher,
    pub(crate) store: Store,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Option<String>,
}

type Answer = Response<Full<Bytes>>;

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("JSON serializes"),
        )))
        .expect("a valid response")
}

/// `{"errors": [{"path": …, "message": …}]}`, the shape of every error answer.
fn error_answer(status: StatusCode, path: Option<&str>, message: impl Into<String>) -> Answer {
    let mut error = json!({ "message": message.into() });
    if let Some(path) = path {
        error["path"] = json!(path);
    }
    json_answer(status, &json!({ "errors": [error] }))
}

pub(crate) async fn handle(state: Arc<State>, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    if segments != ["healthz"] && !authorized(&state, &request) {
        let mut answer = error_answer(
            StatusCode::UNAUTHORIZED,
            None,
            "missing or wrong bearer token",
        );
        answer.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return answer;
    }
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => match state.store.health() {
            Ok(()) => json_answer(StatusCode::OK, &json!({ "status": "ok" })),
            Err(reason) => json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "status": "failing", "reason": reason }),
            ),
        },
        (&Method::GET, ["metrics"]) => metrics(&state),
        (&Method::POST, ["v1", "events"]) => ingest(&state, request).await,
        (&Method::GET, ["v1", "deliveries"]) => list(&state, request.uri().query().unwrap_or("")),
        (&Method::GET, ["v1", "deliveries", id]) => delivery(&state, id),
        (&Method::POST, ["v1", "deliveries", id, "retry"]) => retry(&state, id).await,
        (&Method::GET, ["v1", "hooks"]) => hooks(&state),
        (&Method::POST, ["v1", "hooks", index, "enable"]) => enable(&state, index).await,
        (
            _,
            ["healthz" | "metrics"]
            | ["v1", "events" | "deliveries" | "hooks"]
            | ["v1", "deliveries", _]
            | ["v1", "deliveries", _, "retry"]
            | ["v1", "hooks", _, "enable"],
        ) => error_answer(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error_answer(
            StatusCode::NOT_FOUND,
            None,
            format!("no such endpoint: {path}"),
        ),
    }
}

fn authorized(state: &State, request: &Request<Incoming>) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
}

fn metrics(state: &State) -> Answer {
    match state.metrics.render(&state.store) {
        Ok(text) => Response::builder()
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Full::new(Bytes::from(text)))
            .expect("a valid response"),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

/// `POST /v1/events`: one event or an array. Acknowledged (202) only once stored durably; an
/// invalid body is refused whole (400, every problem with its path) and nothing is stored.
async fn ingest(state: &Arc<State>, request: Request<Incoming>) -> Answer {
    // Refuse an announced oversize body before reading any of it.
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|length| length > MAX_BODY as u64) {
        return error_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!("the body is over {MAX_BODY} bytes"),
        );
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return error_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("the body is over {MAX_BODY} bytes"),
            );
        }
        Err(e) => {
            return error_answer(
                StatusCode::BAD_REQUEST,
                None,
                format!("cannot read the body: {e}"),
            );
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            return error_answer(
                StatusCode::BAD_REQUEST,
                Some("$"),
                format!("invalid JSON: {e}"),
            );
        }
    };
    let (items, batch) = match &value {
        Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
        single => (vec![single], false),
    };
    if items.is_empty() {
        return error_answer(
            StatusCode::BAD_REQUEST,
            Some("$"),
            "expected an event or a non-empty array of events",
        );
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_event_value(item) {
            Ok(event) => events.push(event),
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
                errors.push(json!({ "path": path, "message": message }));
            }
        }
    }
    if !errors.is_empty() {
        return json_answer(StatusCode::BAD_REQUEST, &json!({ "errors": errors }));
    }
    let new: Vec<NewEvent> = events
        .iter()
        .map(|event| {
            let deliveries = NewDelivery::for_event(&state.matcher, event);
            let body = deliveries
                .first()
                .map_or_else(Bytes::new, |d| d.body.clone());
            NewEvent { body, deliveries }
        })
        .collect();
    // The client may hang up while the commit runs, and hyper then drops this future; the
    // commit happens anyway, so committing and waking the hooks run as one task that cannot be
    // cancelled half-way (a hook left asleep would hold an acknowledged event until restart).
    let committed = tokio::spawn({
        let state = Arc::clone(state);
        async move {
            let accepted = state.store.append(new).await?;
            for delivery in accepted.iter().flat_map(|event| &event.deliveries) {
                state.dispatcher.wake(delivery.hook as usize);
            }
            Ok::<_, linq_hooks_outbox::StoreError>(accepted)
        }
    });
    let accepted = match committed.await.expect("appending does not panic") {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::error!("cannot store events: {e}");
            return error_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("not stored, so not accepted: {e}"),
            );
        }
    };
    state.metrics.events_accepted.inc_by(accepted.len() as u64);
    let mut deliveries = Vec::new();
    for (event_index, event) in accepted.iter().enumerate() {
        for delivery in &event.deliveries {
            deliveries.push(json!({ "event_index": event_index, "id": delivery.id, "hook": delivery.hook, "webhook_id": delivery.webhook_id }));
        }
    }
    json_answer(
        StatusCode::ACCEPTED,
        &json!({ "accepted": accepted.len(), "deliveries": deliveries }),
    )
}

/// `GET /v1/deliveries?state=pending|delivered|failed&limit=N&after=ID`.
fn list(state: &State, query: &str) -> Answer {
    let (mut wanted, mut limit, mut after) = (DeliveryState::Pending, 100, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "state" => match value.parse() {
                Ok(parsed) => wanted = parsed,
                Err(e) => return error_answer(StatusCode::BAD_REQUEST, Some("state"), e),
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => {
                    return error_answer(
                        StatusCode::BAD_REQUEST,
                        Some("limit"),
                        format!("expected a number from 1 to {MAX_LIMIT}"),
                    );
                }
            },
            "after" => match value.parse::<u64>() {
                Ok(id) => after = Some(id),
                Err(_) => {
                    return error_answer(
                        StatusCode::BAD_REQUEST,
                        Some("after"),
                        "expected a delivery id",
                    );
                }
            },
            other => {
                return error_answer(
                    StatusCode::BAD_REQUEST,
                    Some(other),
                    "unknown parameter; expected state, limit or after",
                );
            }
        }
    }
    match state.store.list(wanted, after, limit) {
        Ok(deliveries) => {
            let next = (deliveries.len() == limit)
                .then(|| deliveries.last().map(|d| d.id))
                .flatten();
            json_answer(
                StatusCode::OK,
                &json!({ "deliveries": deliveries, "next_after": next }),
            )
        }
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

fn no_delivery(id: &str) -> Answer {
    error_answer(StatusCode::NOT_FOUND, None, format!("no delivery {id}"))
}

/// `GET /v1/deliveries/{id}`: the delivery with its attempts.
fn delivery(state: &State, id: &str) -> Answer {
    let Ok(id) = id.parse::<u64>() else {
        return no_delivery(id);
    };
    match state.store.get(id) {
        Ok(Some((delivery, attempts))) => {
            let mut body = serde_json::to_value(&delivery).expect("serializes");
            body["attempt_log"] = serde_json::to_value(&attempts).expect("serializes");
            json_answer(StatusCode::OK, &body)
        }
        Ok(None) => no_delivery(&id.to_string()),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

/// `POST /v1/deliveries/{id}/retry`: replays a failed delivery, with the same `webhook-id`.
async fn retry(state: &Arc<State>, id: &str) -> Answer {
    let Ok(id) = id.parse::<u64>() else {
        return no_delivery(id);
    };
    let replayed = tokio::spawn({
        let state = Arc::clone(state);
        async move {
            let replay = state.store.replay(id).await?;
            if let Replay::Replayed { hook } = replay {
                state.dispatcher.wake(hook as usize);
            }
            Ok::<_, linq_hooks_outbox::StoreError>(replay)
        }
    });
    match replayed.await.expect("replaying does not panic") {
        Ok(Replay::Replayed { .. }) => json_answer(
            StatusCode::ACCEPTED,
            &json!({ "id": id, "state": "pending" }),
        ),
        Ok(Replay::NotFound) => {
            error_answer(StatusCode::NOT_FOUND, None, format!("no delivery {id}"))
        }
        Ok(Replay::OtherHookList) => error_answer(
            StatusCode::CONFLICT,
            None,
            format!("delivery {id} was made for a different hook list; it cannot be replayed"),
        ),
        Ok(Replay::NotFailed(current)) => error_answer(
            StatusCode::CONFLICT,
            None,
            format!(
                "only failed deliveries can be replayed; delivery {id} is {}",
                current.as_str()
            ),
        ),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

/// `GET /v1/hooks`: each hook with its state.
fn hooks(state: &State) -> Answer {
    match state.store.hooks() {
        Ok(statuses) => {
            let list: Vec<Value> = statuses
                .iter()
                .zip(state.hooks.iter())
                .map(|(status, hook)| {
                    let mut item = serde_json::to_value(status).expect("serializes");
                    item["filter"] = json!(hook.kind().filter());
                    item["url"] = json!(hook.parameters().url());
                    item
                })
                .collect();
            json_answer(StatusCode::OK, &json!({ "hooks": list }))
        }
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

/// `POST /v1/hooks/{index}/enable`: enables a hook a 410 disabled; its deliveries resume.
async fn enable(state: &Arc<State>, index: &str) -> Answer {
    let Some(index) = index
        .parse::<u32>()
        .ok()
        .filter(|&i| (i as usize) < state.hooks.len())
    else {
        return error_answer(StatusCode::NOT_FOUND, None, format!("no hook {index}"));
    };
    let enabled = tokio::spawn({
        let state = Arc::clone(state);
        async move {
            let was_disabled = state.store.enable(index).await?;
            state.dispatcher.wake(index as usize);
            Ok::<_, linq_hooks_outbox::StoreError>(was_disabled)
        }
    });
    match enabled.await.expect("enabling does not panic") {
        Ok(was_disabled) => json_answer(
            StatusCode::OK,
            &json!({ "index": index, "enabled": true, "was_disabled": was_disabled }),
        ),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}
