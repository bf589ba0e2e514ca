//! Sending through a real forward proxy on 127.0.0.1: absolute-form requests for http targets,
//! CONNECT tunnels with TLS inside for https targets, credentials, NO_PROXY; and through a real
//! SOCKS5 proxy.

use linq_hooks_http::{HttpTransport, Proxies};
use linq_hooks_tests::{ForwardProxy, Proxied, Socks5Proxy};
use linq_hooks_transport::{Request, Transport};

use crate::tls::{pki, server_config};
use crate::util::{chain, response, serve, serve_tls};

fn summary(requests: &[Proxied]) -> Vec<(String, String)> {
    requests
        .iter()
        .map(|r| (r.method.clone(), r.target.clone()))
        .collect()
}

fn through(proxies: Proxies) -> HttpTransport {
    HttpTransport::builder().proxies(proxies).build().unwrap()
}

#[tokio::test]
async fn an_http_target_is_sent_to_the_proxy_in_absolute_form() {
    let server = serve(|request| async move { response(200, request.uri.to_string()) }).await;
    let proxy = ForwardProxy::start(None).await;
    let transport = through(Proxies::all(&proxy.url(), "").unwrap());

    let answer = transport
        .send(Request::new(server.url("/hook?x=1"), r#"{"a":1}"#))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // The receiver got the request from the proxy, in origin form, body intact.
    assert_eq!(answer.body().as_ref(), b"/hook?x=1");
    assert_eq!(server.requests()[0].body.as_ref(), br#"{"a":1}"#);
    assert_eq!(
        summary(&proxy.requests()),
        [("POST".to_string(), server.url("/hook?x=1"))]
    );
    assert_eq!(proxy.requests()[0].authorization, None);
}

#[tokio::test]
async fn an_https_target_goes_through_a_connect_tunnel_with_tls_inside() {
    let pki = pki(&["127.0.0.1"]);
    let server = serve_tls(
        server_config(&pki, &[b"h2", b"http/1.1"]),
        |request| async move { response(200, format!("{:?}", request.version)) },
    )
    .await;
    let proxy = ForwardProxy::start(None).await;
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .proxies(Proxies::all(&proxy.url(), "").unwrap())
        .build()
        .unwrap();

    for _ in 0..2 {
        let answer = transport
            .send(Request::new(server.url("/hook"), "{}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        // TLS end to end: ALPN with the target itself chose HTTP/2.
        assert_eq!(answer.body().as_ref(), b"HTTP/2.0");
    }
    // One tunnel, reused; the proxy never saw the request.
    assert_eq!(
        summary(&proxy.requests()),
        [("CONNECT".to_string(), server.addr.to_string())]
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn credentials_in_the_proxy_url_become_proxy_authorization_basic() {
    // base64("lab user:p@ss")
    let expected = "Basic bGFiIHVzZXI6cEBzcw==";
    let proxy = ForwardProxy::start(Some(expected)).await;
    let plain = serve(|_| async { response(204, "") }).await;
    let pki = pki(&["127.0.0.1"]);
    let secure = serve_tls(server_config(&pki, &[b"http/1.1"]), |_| async {
        response(204, "")
    })
    .await;
    let proxy_url = proxy.url().replace("http://", "http://lab%20user:p%40ss@");
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .proxies(Proxies::all(&proxy_url, "").unwrap())
        .build()
        .unwrap();

    let answer = transport
        .send(Request::new(plain.url("/a"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let answer = transport
        .send(Request::new(secure.url("/b"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let requests = proxy.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for request in &requests {
        assert_eq!(
            request.authorization.as_deref(),
            Some(expected),
            "{request:?}"
        );
    }
    // The credentials are for the proxy: the receiver never sees them.
    assert!(
        plain.requests()[0]
            .headers
            .get("proxy-authorization")
            .is_none()
    );

    // Without them: 407 for the http target, a failed tunnel for the https one.
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .proxies(Proxies::all(&proxy.url(), "").unwrap())
        .build()
        .unwrap();
    let answer = transport
        .send(Request::new(plain.url("/a"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 407);
    let err = transport
        .send(Request::new(secure.url("/b"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(
        chain(&err).contains("proxy authorization required"),
        "{}",
        chain(&err)
    );
}

/// With `HTTP_PROXY` naming a proxy that is down, `dispatch` said only "could not connect: ...
/// Connection refused", as if the receiver were down: the error names the proxy.
#[tokio::test]
async fn a_proxy_that_is_down_is_named_in_the_error() {
    let server = serve(|_| async { response(200, "") }).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let transport = through(Proxies::all(&proxy_url, "").unwrap());
    let https_target = format!("https://127.0.0.1:{}/hook", server.addr.port());

    for target in [server.url("/hook"), https_target] {
        let err = transport
            .send(Request::new(target.clone(), "{}"))
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{target}: {}", chain(&err));
        let text = chain(&err);
        assert!(
            text.contains(&format!("through the proxy {proxy_url}/")),
            "{target}: {text}"
        );
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly() {
    let server = serve(|_| async { response(200, "") }).await;
    let proxy = ForwardProxy::start(None).await;
    let transport = through(Proxies::all(&proxy.url(), "localhost, 127.0.0.0/8").unwrap());

    let answer = transport
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let port = server.addr.port();
    let answer = transport
        .send(Request::new(format!("http://localhost:{port}/"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn lower_case_variables_are_honoured() {
    let server = serve(|_| async { response(200, "") }).await;
    let proxy = ForwardProxy::start(None).await;
    let url = proxy.url();
    let proxies = Proxies::from_lookup(|name| (name == "http_proxy").then(|| url.clone())).unwrap();
    // http_proxy is for http targets only.
    assert_eq!(proxies.proxy_for("https://hooks.example/"), None);
    let answer = through(proxies)
        .send(Request::new(server.url("/lower"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        summary(&proxy.requests()),
        [("POST".to_string(), server.url("/lower"))]
    );
}

#[tokio::test]
async fn socks5h_leaves_the_name_to_the_proxy_and_carries_tls_inside() {
    let plain = serve(|_| async { response(200, "plain") }).await;
    let pki = pki(&["127.0.0.1"]);
    let secure = serve_tls(
        server_config(&pki, &[b"h2", b"http/1.1"]),
        |request| async move { response(200, format!("{:?}", request.version)) },
    )
    .await;
    let proxy = Socks5Proxy::start(Some(("lab", "s3cret"))).await;
    let url = proxy.url("socks5h").replace("://", "://lab:s3cret@");
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .proxies(Proxies::all(&url, "").unwrap())
        .build()
        .unwrap();

    let port = plain.addr.port();
    let answer = transport
        .send(Request::new(format!("http://localhost:{port}/in"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.body().as_ref(), b"plain");
    let answer = transport
        .send(Request::new(secure.url("/in"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.body().as_ref(), b"HTTP/2.0");
    assert_eq!(
        proxy.connects(),
        [
            format!("domain localhost:{port}"),
            format!("ip {}", secure.addr)
        ]
    );
    // Origin form: to the receiver, a SOCKS tunnel is a direct connection.
    assert_eq!(plain.requests()[0].uri, "/in");

    // Wrong credentials: the proxy refuses, nothing arrives.
    let wrong = proxy.url("socks5h").replace("://", "://lab:guess@");
    let err = through(Proxies::all(&wrong, "").unwrap())
        .send(Request::new(plain.url("/in"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(plain.requests().len(), 1);
}

#[tokio::test]
async fn socks5_resolves_here_and_the_policy_checks_what_it_resolved() {
    let server = serve(|_| async { response(204, "") }).await;
    let proxy = Socks5Proxy::start(None).await;
    let transport = through(Proxies::all(&proxy.url("socks5"), "").unwrap());
    let answer = transport
        .send(Request::new(server.url("/in"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(proxy.connects(), [format!("ip {}", server.addr)]);

    // The proxy itself allowed (on 127.0.0.2), the target's resolved addresses (127.0.0.1,
    // maybe ::1) refused: the proxy is never asked for them.
    let proxy = Socks5Proxy::start_on("127.0.0.2".parse().unwrap(), None).await;
    let transport = HttpTransport::builder()
        .egress(
            linq_hooks_http::EgressPolicy::new()
                .deny_private()
                .allow_cidr("127.0.0.2/32".parse().unwrap()),
        )
        .proxies(Proxies::all(&proxy.url("socks5"), "").unwrap())
        .build()
        .unwrap();
    let port = server.addr.port();
    let err = transport
        .send(Request::new(format!("http://localhost:{port}/in"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    let shown = format!("{err:#}");
    assert!(
        shown.contains("refused by --deny-private (loopback "),
        "{shown}"
    );
    assert!(shown.ends_with(&format!(":{port}")), "{shown}");
    assert!(proxy.connects().is_empty(), "{:?}", proxy.connects());
}
