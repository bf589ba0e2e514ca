//! The egress policy against real sockets on 127.0.0.1: refused before connecting, the rule
//! named; allow rules; through a proxy.

use linq_hooks_http::{EgressPolicy, HttpTransport, Proxies};
use linq_hooks_tests::ForwardProxy;
use linq_hooks_transport::{Request, Transport};

use crate::util::{response, serve};

fn guarded(policy: EgressPolicy) -> HttpTransport {
    HttpTransport::builder().egress(policy).build().unwrap()
}

#[tokio::test]
async fn a_denied_address_is_refused_naming_the_rule_and_nothing_connects() {
    let server = serve(|_| async { response(200, "") }).await;
    let transport = guarded(EgressPolicy::new().deny_cidr("127.0.0.0/8".parse().unwrap()));

    let err = transport
        .send(Request::new(server.url("/hook"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    assert!(!err.is_connect(), "{err:?}");
    assert_eq!(
        format!("{err:#}"),
        format!(
            "blocked by the egress policy: refused by --deny-cidr 127.0.0.0/8: {}",
            server.addr
        )
    );
    // The same through an IPv4-mapped IPv6 literal.
    let port = server.addr.port();
    let err = transport
        .send(Request::new(
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "{}",
        ))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("refused by --deny-cidr 127.0.0.0/8"),
        "{err:#}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_host_name_is_checked_by_the_addresses_it_resolves_to() {
    let server = serve(|_| async { response(200, "") }).await;
    let transport = guarded(EgressPolicy::new().deny_private());
    let port = server.addr.port();

    let err = transport
        .send(Request::new(format!("http://localhost:{port}/hook"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    let shown = format!("{err:#}");
    assert!(
        shown.contains("refused by --deny-private (loopback "),
        "{shown}"
    );
    // The port is the one the connection would have used.
    assert!(shown.ends_with(&format!(":{port}")), "{shown}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn allow_cidr_overrides_deny_private() {
    let server = serve(|_| async { response(200, "") }).await;
    let transport = guarded(
        EgressPolicy::new()
            .deny_private()
            .allow_cidr("127.0.0.1/32".parse().unwrap()),
    );
    let answer = transport
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let port = server.addr.port();
    let answer = transport
        .send(Request::new(format!("http://localhost:{port}/"), "{}"))
        .await;
    // localhost may also resolve to ::1 (refused, skipped); 127.0.0.1 is allowed.
    assert_eq!(answer.unwrap().status(), 200);
}

#[tokio::test]
async fn through_a_proxy_the_proxy_address_and_ip_literal_targets_are_checked() {
    let proxy = ForwardProxy::start(None).await;

    // The proxy's own address is what is connected to.
    let transport = HttpTransport::builder()
        .egress(EgressPolicy::new().deny_private())
        .proxies(Proxies::all(&proxy.url(), "").unwrap())
        .build()
        .unwrap();
    for target in ["http://hooks.example/in", "https://hooks.example/in"] {
        let err = transport
            .send(Request::new(target, "{}"))
            .await
            .unwrap_err();
        assert!(err.is_refused(), "{target}: {err:?}");
        assert!(
            format!("{err:#}").ends_with(&format!(
                "refused by --deny-private (loopback 127.0.0.0/8): {}",
                proxy.addr()
            )),
            "{err:#}"
        );
    }

    // An allowed proxy; a target written as a denied IP address is refused before the proxy
    // is asked.
    let transport = HttpTransport::builder()
        .egress(EgressPolicy::new().deny_cidr("127.0.0.2/32".parse().unwrap()))
        .proxies(Proxies::all(&proxy.url(), "").unwrap())
        .build()
        .unwrap();
    for target in ["http://127.0.0.2:9/in", "https://127.0.0.2/in"] {
        let err = transport
            .send(Request::new(target, "{}"))
            .await
            .unwrap_err();
        assert!(err.is_refused(), "{target}: {err:?}");
        assert!(
            format!("{err:#}").contains("refused by --deny-cidr 127.0.0.2/32: 127.0.0.2:"),
            "{err:#}"
        );
    }
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());

    // A SOCKS5 proxy's address is checked the same way.
    let socks = linq_hooks_tests::Socks5Proxy::start(None).await;
    let transport = HttpTransport::builder()
        .egress(EgressPolicy::new().deny_cidr("127.0.0.0/8".parse().unwrap()))
        .proxies(Proxies::all(&socks.url("socks5h"), "").unwrap())
        .build()
        .unwrap();
    let err = transport
        .send(Request::new("https://hooks.example/in", "{}"))
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        format!(
            "blocked by the egress policy: refused by --deny-cidr 127.0.0.0/8: {}",
            socks.addr()
        )
    );
    assert!(socks.connects().is_empty());
}
