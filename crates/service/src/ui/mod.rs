//! The web dashboard at `/ui`: one HTML page, its script, its style sheet and its icon, embedded in the
//! binary (nothing fetched from elsewhere at run time, no build step).
//!
//! The page holds no data: everything it shows it reads from the API with the bearer token the
//! user gives it (kept in the browser's `sessionStorage`), so the page and its assets are served
//! without a token. Each answer carries a strict `Content-Security-Policy` (scripts and styles
//! only from this origin, no inline code, no framing), `X-Content-Type-Options: nosniff`, and
//! `Cache-Control: no-cache` with an `ETag`, so a browser revalidates (a `304` when nothing
//! changed) and never keeps the assets of an older `serve`.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The policy of every UI answer: only this origin's script, style and API; no inline code, no
/// plugins, no framing, no forms posting elsewhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One embedded file: its bytes and its media type.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_bytes!("index.html"),
    content_type: "text/html; charset=utf-8",
};
const SCRIPT: Asset = Asset {
    body: include_bytes!("app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE: Asset = Asset {
    body: include_bytes!("app.css"),
    content_type: "text/css; charset=utf-8",
};
const ICON: Asset = Asset {
    body: include_bytes!("favicon.svg"),
    content_type: "image/svg+xml",
};

/// Whether `path` is the dashboard's (the page, its assets, or `/`, which redirects to it):
/// served without the bearer token, since none of it holds data.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// `GET /` (a redirect to `/ui`), `GET /ui`, `GET /ui/app.js`, `GET /ui/app.css`,
/// `GET /ui/favicon.svg`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route(
            "/ui",
            get(|request: Request| async move { serve(&INDEX, request.headers()) }),
        )
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route(
            "/ui/app.js",
            get(|request: Request| async move { serve(&SCRIPT, request.headers()) }),
        )
        .route(
            "/ui/app.css",
            get(|request: Request| async move { serve(&STYLE, request.headers()) }),
        )
        .route(
            "/ui/favicon.svg",
            get(|request: Request| async move { serve(&ICON, request.headers()) }),
        )
}

/// The assets' common `ETag`: the version and a digest of every file, computed once.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        let mut digest = Sha256::new();
        for asset in [&INDEX, &SCRIPT, &STYLE, &ICON] {
            digest.update(asset.body);
        }
        let hex: String = digest.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        HeaderValue::from_str(&format!("\"{}-{hex}\"", env!("CARGO_PKG_VERSION")))
            .expect("an ETag of visible ASCII")
    })
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = asset.body.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn only_the_dashboard_is_public() {
        for path in ["/", "/ui", "/ui/", "/ui/app.js", "/ui/app.css"] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/uix",
            "/v1/ui",
            "/v1/deliveries",
            "/metrics",
            "//ui",
            "/UI",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }
}
