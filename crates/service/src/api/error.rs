//! The one error type of the API: every error answer is `{"errors": [{"path", "message"}]}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use linq_hooks_outbox::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::live::ChangeError;

/// Every error answer's body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// One entry per problem; a request body with several problems lists each.
    pub(crate) errors: Vec<Problem>,
}

/// One problem.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// Where: a JSON path in the body (`workflow.hooks[2].parameters.url`, `[3].timestamp`), or a
    /// parameter name (`limit`); absent when the problem is the request as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) path: Option<String>,
    /// Why.
    pub(crate) message: String,
}

/// The model's problems and warnings (`workflow.hooks[2].parameters.url: …`) keep their path.
impl From<&linq_hooks_model::Diagnostic> for Problem {
    fn from(diagnostic: &linq_hooks_model::Diagnostic) -> Problem {
        Problem::at(diagnostic.path(), diagnostic.message())
    }
}

/// The problems of a hook document the model refused.
pub(crate) fn problems_of(error: &linq_hooks_model::Error) -> Vec<Problem> {
    error.problems().iter().map(Problem::from).collect()
}

impl Problem {
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: Some(path.into()),
            message: message.into(),
        }
    }
}

/// Why a request failed, and so which status it gets.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// 400: the request is wrong; the problems are listed (the first hundred, then a count).
    Invalid(Vec<Problem>),
    /// 400 with problems found and more counted but not built (a huge invalid body).
    InvalidMany(Vec<Problem>, usize),
    /// 401: no or a wrong bearer token.
    Unauthorized,
    /// 404.
    NotFound(String),
    /// 409: the request conflicts with the resource's state.
    Conflict(String),
    /// 413.
    TooLarge(usize),
    /// 422: well-formed, but in conflict with what was sent before (an idempotency key reused
    /// for another body).
    Unprocessable(Problem),
    /// 415: a JSON body without `Content-Type: application/json`.
    Unsupported(String),
    /// 503: the store failed. Logged in full; the client gets a short message.
    Store(&'static str, StoreError),
    /// 503: no randomness for a secret.
    Random(std::io::Error),
}

impl ApiError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid(vec![Problem::at(path, message)])
    }

    pub(crate) fn store(what: &'static str) -> impl FnOnce(StoreError) -> ApiError {
        move |e| ApiError::Store(what, e)
    }

    pub(crate) fn change(
        what: &'static str,
        not_found: String,
    ) -> impl FnOnce(ChangeError) -> ApiError {
        move |e| match e {
            ChangeError::NotFound => ApiError::NotFound(not_found),
            ChangeError::Store(e) => ApiError::Store(what, e),
            ChangeError::Random(e) => ApiError::Random(e),
        }
    }
}

/// `Result` of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The most problems one answer lists; the rest are counted.
pub(crate) const MAX_PROBLEMS: usize = 100;
/// The longest message of one problem, in bytes (a message may quote what it refuses).
const MAX_MESSAGE: usize = 1024;

/// At most [`MAX_PROBLEMS`] problems, each message at most [`MAX_MESSAGE`] bytes, then one that
/// counts the rest (those dropped here and `more` the caller did not even build), so that an
/// answer stays small whatever the request held.
pub(crate) fn bounded(mut problems: Vec<Problem>, more: usize) -> Vec<Problem> {
    let rest = problems.len().saturating_sub(MAX_PROBLEMS) + more;
    problems.truncate(MAX_PROBLEMS);
    for problem in &mut problems {
        if problem.message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !problem.message.is_char_boundary(cut) {
                cut -= 1;
            }
            problem.message.truncate(cut);
            problem.message.push('…');
        }
    }
    if rest > 0 {
        problems.push(Problem {
            path: None,
            message: format!(
                "and {rest} more problem{} not listed",
                if rest == 1 { "" } else { "s" }
            ),
        });
    }
    problems
}

pub(crate) fn error_response(status: StatusCode, errors: Vec<Problem>) -> Response {
    (status, Json(ErrorBody { errors })).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let whole = |message: String| {
            vec![Problem {
                path: None,
                message,
            }]
        };
        match self {
            ApiError::Invalid(problems) => {
                error_response(StatusCode::BAD_REQUEST, bounded(problems, 0))
            }
            ApiError::Unauthorized => {
                let mut response = error_response(
                    StatusCode::UNAUTHORIZED,
                    whole("missing or wrong bearer token".into()),
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            ApiError::NotFound(message) => error_response(StatusCode::NOT_FOUND, whole(message)),
            ApiError::Conflict(message) => error_response(StatusCode::CONFLICT, whole(message)),
            ApiError::TooLarge(limit) => error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                whole(format!("the body is over {limit} bytes")),
            ),
            ApiError::InvalidMany(problems, more) => {
                error_response(StatusCode::BAD_REQUEST, bounded(problems, more))
            }
            ApiError::Unprocessable(problem) => {
                error_response(StatusCode::UNPROCESSABLE_ENTITY, vec![problem])
            }
            ApiError::Unsupported(message) => {
                error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, whole(message))
            }
            ApiError::Store(what, e) => {
                // Logged in full: the subscriber prints the sources (`error.sources=[…]`).
                tracing::error!(error = &e as &dyn std::error::Error, "cannot {what}");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    whole(format!(
                        "cannot {what}: the store failed (the service's log says why); nothing was changed"
                    )),
                )
            }
            ApiError::Random(e) => {
                tracing::error!(error = e.to_string().as_str(), "cannot make a secret");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    whole("cannot make a secret: no random source".into()),
                )
            }
        }
    }
}
