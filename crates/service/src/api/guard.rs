//! What keeps a web page in a browser on the scheduler's machine from using the API: a request
//! with a body must say it is JSON (a page can send `text/plain` across sites without asking,
//! not `application/json`); a cross-site `Origin` is refused; and without a token, a `Host`
//! that is not a loopback name or address is refused (DNS rebinding: a page on `evil.example`
//! whose name now resolves to 127.0.0.1). All before the request is routed.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::error::{ApiError, Problem, error_response};

pub(super) async fn refuse_cross_site(
    State(state): Shared,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if state.token.is_none()
        && let Some(host) = host
        && !is_loopback_host(host)
    {
        return forbidden(
            "host",
            format!(
                "Host `{host}` is not a loopback name or address: without --token, serve answers only \
                 requests for localhost or 127.0.0.1 (a page whose name resolves to this machine must \
                 not read the API)"
            ),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, authority)| Some(authority) == host);
        if !same {
            return forbidden(
                "origin",
                format!(
                    "cross-site request refused: Origin {} is not this API's",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            );
        }
    }
    if has_body(request.method(), headers) && !is_json(headers) {
        return ApiError::Unsupported(
            "a request body must be JSON: send `Content-Type: application/json`".into(),
        )
        .into_response();
    }
    next.run(request).await
}

fn forbidden(path: &str, message: String) -> Response {
    error_response(StatusCode::FORBIDDEN, vec![Problem::at(path, message)])
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn has_body(method: &Method, headers: &HeaderMap) -> bool {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return false;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// `application/json`, any case, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8625",
            "LOCALHOST.",
            "api.localhost:1",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8625",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8625",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]:1",
            "0.0.0.0",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
