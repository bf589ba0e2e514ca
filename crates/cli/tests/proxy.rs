//! Proxies and the egress policy of `dispatch` and `serve`, as real processes: a real forward
//! proxy and real receivers on 127.0.0.1, the environment set on the child process only.

mod common;

use common::{
    Serve, eventually, hooks_file, linq_hooks_with, plan, plan_hook, store, temp_file, text,
};
use linq_hooks_tests::{ForwardProxy, Receiver, Socks5Proxy};
use serde_json::json;

/// Runs `dispatch` of one `new_plan` event to a hook at `url`, with `args` and `env`.
async fn dispatch(
    name: &str,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let hooks = hooks_file(name, json!([plan_hook(url.to_string())]));
    let events = temp_file(&format!("{name}.ndjson"), &format!("{}\n", plan(1)));
    let mut all = vec!["dispatch", "--hooks", &hooks, "--retry-schedule", "1s"];
    all.extend_from_slice(args);
    all.push(&events);
    linq_hooks_with(&all, "", env).await
}

/// The `attempts` column of the one hook's summary line.
fn attempts(stdout: &str) -> u32 {
    let line = stdout.lines().nth(1).expect("a summary line");
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

fn targets(proxy: &ForwardProxy) -> Vec<String> {
    proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_goes_through_the_proxy_http_proxy_names() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let proxy = ForwardProxy::start(None).await;
    let url = receiver.url("/runs");

    let out = dispatch("via-env", &url, &[], &[("HTTP_PROXY", &proxy.url())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(targets(&proxy), [format!("POST {url}")]);
    assert_eq!(receiver.received().len(), 1);
    assert!(receiver.received()[0].header("webhook-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_variables_and_no_proxy_are_honoured() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let proxy = ForwardProxy::start(None).await;
    let url = receiver.url("/runs");

    let out = dispatch("lower", &url, &[], &[("http_proxy", &proxy.url())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(targets(&proxy).len(), 1);

    for (name, no_proxy) in [
        ("NO_PROXY", "127.0.0.1"),
        ("no_proxy", "localhost,127.0.0.0/8"),
    ] {
        let env = [("http_proxy", proxy.url()), (name, no_proxy.to_string())];
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let out = dispatch("bypass", &url, &[], &env).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    // The bypassed ones went direct: the proxy saw only the first.
    assert_eq!(targets(&proxy).len(), 1, "{:?}", targets(&proxy));
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_flag_overrides_the_environment_and_none_turns_proxying_off() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let proxy = ForwardProxy::start(None).await;
    let url = receiver.url("/runs");
    // Nothing listens on port 9 of 127.0.0.1: taking the environment's proxy would fail.
    let dead = [
        ("HTTP_PROXY", "http://127.0.0.1:9"),
        ("ALL_PROXY", "http://127.0.0.1:9"),
    ];

    let out = dispatch("flag", &url, &["--proxy", &proxy.url()], &dead).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(targets(&proxy), [format!("POST {url}")]);

    for off in ["none", ""] {
        let out = dispatch("off", &url, &["--proxy", off], &dead).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "--proxy {off:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(targets(&proxy).len(), 1);
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_proxy_may_name_a_socks5_proxy() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let proxy = Socks5Proxy::start(None).await;
    let port = receiver.addr().port();
    let url = format!("http://localhost:{port}/runs");

    let out = dispatch("socks", &url, &[], &[("all_proxy", &proxy.url("socks5h"))]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(proxy.connects(), [format!("domain localhost:{port}")]);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_proxy_is_a_usage_error_naming_where_and_why() {
    let out = dispatch(
        "socks",
        "http://127.0.0.1:9/",
        &[],
        &[("ALL_PROXY", "socks4a://127.0.0.1:1080")],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "error: ALL_PROXY: unsupported proxy scheme `socks4a` in `socks4a://127.0.0.1:1080`"
        ),
        "{stderr}"
    );

    let out = dispatch(
        "socks-flag",
        "http://127.0.0.1:9/",
        &["--proxy", "socks4://lab:s3cret@127.0.0.1:1080"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "error: --proxy: unsupported proxy scheme `socks4` in `socks4://***@127.0.0.1:1080`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_address_fails_at_once_naming_the_rule() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let url = receiver.url("/runs");

    let out = dispatch("deny", &url, &["--deny-cidr", "127.0.0.0/8"], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "blocked by the egress policy: refused by --deny-cidr 127.0.0.0/8: {}",
            receiver.addr()
        )),
        "{stderr}"
    );
    // A permanent failure: one attempt, not the retry schedule.
    assert_eq!(attempts(&text(&out.stdout)), 1, "{}", text(&out.stdout));
    assert!(receiver.received().is_empty());

    let out = dispatch("private", &url, &["--deny-private"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("refused by --deny-private (loopback 127.0.0.0/8)"),
        "{}",
        text(&out.stderr)
    );

    let allowed = ["--deny-private", "--allow-cidr", "127.0.0.1/32"];
    let out = dispatch("allowed", &url, &allowed, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cidr_is_a_usage_error() {
    for (flag, value) in [("--deny-cidr", "10.0.0.0/33"), ("--allow-cidr", "lab-net")] {
        let out = dispatch("cidr", "http://127.0.0.1:9/", &[flag, value], &[]).await;
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(flag), "{stderr}");
        assert!(
            stderr.contains(&format!("`{value}` is not an IP network")),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sends_through_the_proxy_and_applies_the_egress_policy() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let proxy = ForwardProxy::start(None).await;
    let hooks = hooks_file("serve-proxy", json!([plan_hook(receiver.url("/in"))]));
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("serve-proxy"),
        "--proxy",
        &proxy.url(),
    ])
    .await;
    assert_eq!(serve.post_events(plan(1)).await.status, 202);
    eventually("it arrives", || async { receiver.received().len() == 1 }).await;
    assert_eq!(targets(&proxy), [format!("POST {}", receiver.url("/in"))]);
    drop(serve);

    let hooks = hooks_file("serve-deny", json!([plan_hook(receiver.url("/in"))]));
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("serve-deny"),
        "--deny-private",
    ])
    .await;
    let reply = serve.post_events(plan(2)).await;
    let id = reply.body["deliveries"][0]["id"].as_u64().unwrap();
    eventually("it fails", || async {
        serve.get(&format!("/v1/deliveries/{id}")).await["state"] == "failed"
    })
    .await;
    let failed = serve.get(&format!("/v1/deliveries/{id}")).await;
    assert_eq!(
        failed["failure"],
        format!(
            "blocked by the egress policy: refused by --deny-private (loopback 127.0.0.0/8): {}",
            receiver.addr()
        )
    );
    assert_eq!(
        failed["attempt_log"].as_array().unwrap().len(),
        1,
        "{failed}"
    );
    assert_eq!(receiver.received().len(), 1);
}
