//! Typed extractors whose rejections keep the API's error shape: axum's `Query` and `Json`,
//! with a rejection turned into an [`ApiError`] that names the parameter or the JSON path.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Problem};

/// `Query<T>`, rejected as `400 {"errors": [{"path": "<parameter>", …}]}`.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_problem(&rejection)),
        }
    }
}

/// `Json<T>`, rejected with the error shape: 400 for a body that is not the expected JSON
/// (with its path), 415 without `Content-Type: application/json`.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

/// serde_path_to_error's `path: message`, as axum words it after its own prefix.
fn split_path(text: &str) -> (String, String) {
    match text.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => (path.to_string(), message.to_string()),
        _ => ("$".to_string(), text.to_string()),
    }
}

fn query_problem(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    let (path, message) = split_path(detail);
    ApiError::Invalid(vec![Problem::at(path, message)])
}

fn json_problem(rejection: &JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::Unsupported(text),
        JsonRejection::BytesRejection(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::TooLarge(super::MAX_BODY)
        }
        JsonRejection::JsonDataError(_) => {
            let detail = text
                .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                .unwrap_or(&text);
            let (path, message) = split_path(detail);
            ApiError::Invalid(vec![Problem::at(path, message)])
        }
        _ => ApiError::invalid("$", text),
    }
}
