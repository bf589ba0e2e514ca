//! The dashboard's page and assets as a client sees them, without a browser: a real `Service`
//! on 127.0.0.1 with a token, spoken to in raw HTTP/1.1. (The browser test is
//! `crates/cli/tests/ui.rs`.)

use std::sync::Arc;
use std::time::Duration;

use linq_hooks_service::{Service, ServiceConfig};
use linq_hooks_transport::MemoryTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Answer {
    status: u16,
    /// Header names in lower case, values as sent.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn get(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn start(name: &str) -> std::net::SocketAddr {
    let path = std::env::temp_dir().join(format!("service-ui-{name}-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut config = ServiceConfig::new(&path);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.token = Some("sesame".into());
    let service = Service::start(config, Arc::new(MemoryTransport::new()))
        .await
        .unwrap();
    let addr = service.local_addr();
    tokio::spawn(service.run_until(std::future::pending()));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_redirects_to_the_dashboard_without_a_token() {
    let addr = start("root").await;
    let answer = get(addr, "/", &[]).await;
    assert!(
        (301..=308).contains(&answer.status),
        "a redirect: {}",
        answer.status
    );
    assert_eq!(answer.header("location"), Some("/ui"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_without_a_token_under_a_strict_policy() {
    let addr = start("assets").await;
    let page = get(addr, "/ui", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.starts_with("<!doctype html>"));
    // Every asset the page names is served, with its own media type, under the same policy.
    let named: Vec<String> = page
        .body
        .split('"')
        .filter(|part| part.starts_with("/ui/"))
        .map(str::to_string)
        .collect();
    let media = |path: &str| match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        other => panic!("an asset of an unexpected kind: {other:?}"),
    };
    for asset in ["/ui/app.js", "/ui/app.css", "/ui/favicon.svg"] {
        assert!(named.iter().any(|n| n == asset), "the page names {asset}");
    }
    let mut answers = vec![page];
    for path in &named {
        let answer = get(addr, path, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("content-type"), Some(media(path)), "{path}");
        assert!(!answer.body.is_empty(), "{path}");
        answers.push(answer);
    }
    for answer in &answers {
        let policy = answer.header("content-security-policy").expect("a CSP");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{directive} in {policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("cache-control"), Some("no-cache"));
        assert!(answer.header("etag").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_asset_is_not_sent_again() {
    let addr = start("etag").await;
    let first = get(addr, "/ui/app.js", &[]).await;
    let etag = first.header("etag").unwrap().to_string();
    let again = get(addr, "/ui/app.js", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = get(addr, "/ui/app.js", &[("if-none-match", "\"another\"")]).await;
    assert_eq!(other.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_still_needs_the_token_and_unknown_ui_paths_are_404() {
    let addr = start("token").await;
    assert_eq!(get(addr, "/v1/deliveries", &[]).await.status, 401);
    assert_eq!(get(addr, "/metrics", &[]).await.status, 401);
    assert_eq!(get(addr, "/uinfo", &[]).await.status, 401);
    let missing = get(addr, "/ui/secrets.json", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("errors"), "{}", missing.body);
    let with = get(
        addr,
        "/v1/deliveries",
        &[("authorization", "Bearer sesame")],
    )
    .await;
    assert_eq!(with.status, 200, "{}", with.body);
}

/// What a policy without `unsafe-inline` forbids must not be in the page: inline scripts,
/// inline styles, event-handler attributes. Every input has a label.
#[test]
fn the_page_holds_no_inline_code_and_labels_every_input() {
    let page = include_str!("../src/ui/index.html");
    let lower = page.to_ascii_lowercase();
    assert!(!lower.contains("<style"), "no inline style sheet");
    assert!(!lower.contains(" style="), "no style attributes");
    assert!(!lower.contains(" onclick=") && !lower.contains(" onload="));
    for (n, _) in lower.match_indices("<script") {
        let tag = &lower[n..n + lower[n..].find('>').unwrap()];
        assert!(tag.contains(" src="), "an inline script: {tag}");
    }
    for tag in ["<input", "<select"] {
        for (n, _) in page.match_indices(tag) {
            let element = &page[n..n + page[n..].find('>').unwrap()];
            let id = element
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no id: {element}"));
            assert!(
                page.contains(&format!("<label for=\"{id}\"")),
                "no label for #{id}"
            );
        }
    }
    let script = include_str!("../src/ui/app.js");
    assert!(
        !script.contains("innerHTML") && !script.contains("insertAdjacentHTML"),
        "values from the API are inserted as text"
    );
}
