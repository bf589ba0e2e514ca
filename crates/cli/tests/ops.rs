//! Operating `serve`: its logs (text and JSON), its per-hook metrics and stats, and its
//! operational webhooks, with a real `serve` process, real receivers on 127.0.0.1 and a real
//! store file.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::Ordering;

use common::{Serve, eventually, hooks_file, plan, plan_hook, store, switchable};
use linq_hooks_events::ops::{OpsData, OpsEvent, Trouble};
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
use linq_hooks_tests::{Received, Receiver};
use serde_json::{Value, json};

const OPS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `serve ARGS` with `env` set, and RUST_LOG and LINQ_HOOKS_LOG_FORMAT unset otherwise (a
/// developer's environment must not change what a test sees).
async fn serve_with(args: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_linq-hooks"));
    command
        .arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env_remove("LINQ_HOOKS_LOG_FORMAT")
        .env_remove("LINQ_HOOKS_OPS_SECRET")
        .stdout(Stdio::null());
    for name in common::PROXY_VARIABLES {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    Serve::start_command(command).await
}

/// Whether a request carries a valid signature made with OPS_SECRET.
fn verified(request: &Received) -> bool {
    let verifier = Verifier::new([OPS_SECRET.parse::<Secret>().unwrap()]);
    let headers = WebhookHeaders::from_fn(|name| request.header(name));
    verifier.verify(headers, &request.body).is_ok()
}

/// The operational webhooks received, once each (by `webhook-id`), in the order they came.
fn ops_events(received: &[Received]) -> Vec<OpsEvent> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.header("webhook-id").unwrap().to_string()))
        .map(|r| serde_json::from_slice(&r.body).expect("an operational event"))
        .collect()
}

/// The log lines, each checked to be one JSON object: with `--log-format json`, serve's own
/// lines (listening, stopped) are log events too.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
        })
        .collect()
}

fn find<'a>(lines: &'a [Value], level: &str, message_starts: &str, hook: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| {
            line["level"] == level
                && line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message_starts))
                && line["fields"]["hook"] == hook
        })
        .unwrap_or_else(|| {
            panic!(
                "no {level} line `{message_starts}…` for {hook} in:\n{}",
                lines
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// A 410 disables a hook, a delivery's retries run out, then both hooks deliver again: each is
/// an operational webhook, signed with --ops-secret, and an `info` line of the JSON log with
/// the hook's id; `/metrics` has per-hook series in a valid exposition and `/v1/stats/deliveries`
/// the minute's counts; a removed hook's series and counts go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_a_give_up_and_the_recoveries_are_reported_logged_and_counted() {
    let ops =
        Receiver::start(|request, _| (if verified(request) { 200 } else { 401 }, vec![])).await;
    let (gone, gone_back) = switchable(410).await;
    let (down, down_back) = switchable(500).await;
    let hooks = hooks_file(
        "ops",
        json!([plan_hook(gone.url("/gone")), plan_hook(down.url("/down"))]),
    );
    let store = store("ops");
    let ops_url = ops.url("/ops");
    let serve = serve_with(
        &[
            "--hooks",
            &hooks,
            "--store",
            &store,
            "--retry-schedule",
            "10ms",
            "--ops-url",
            &ops_url,
            "--log-format",
            "json",
        ],
        &[("LINQ_HOOKS_OPS_SECRET", OPS_SECRET)],
    )
    .await;

    let reply = serve.post_events(plan(0)).await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let ids: Vec<(String, u64)> = reply.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["hook"].as_str().unwrap().to_string(),
                d["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let [(gone_hook, gone_delivery), (down_hook, down_delivery)] = ids.as_slice() else {
        panic!("two deliveries: {ids:?}");
    };
    eventually("hook.disabled and delivery.failed arrive", || async {
        ops_events(&ops.received()).len() == 2
    })
    .await;

    // The receivers come back; the disabled hook is enabled; a new event goes to both.
    gone_back.store(true, Ordering::SeqCst);
    down_back.store(true, Ordering::SeqCst);
    let enabled = serve
        .call("POST", &format!("/v1/hooks/{gone_hook}/enable"), None)
        .await;
    assert_eq!(enabled.status, 200, "{:?}", enabled.body);
    serve.post_plans(1..2).await;
    eventually("both hook.recovered arrive", || async {
        ops_events(&ops.received()).len() == 4
    })
    .await;

    let received = ops.received();
    assert!(
        received.iter().all(verified),
        "every operational webhook is signed with --ops-secret"
    );
    assert!(received.iter().all(|r| r.path == "/ops"));
    let events = ops_events(&received);
    let by_type: HashMap<&str, Vec<&OpsData>> =
        events.iter().fold(HashMap::new(), |mut map, event| {
            map.entry(event.data.type_name())
                .or_default()
                .push(&event.data);
            map
        });
    let [OpsData::HookDisabled(disabled)] = by_type["hook.disabled"].as_slice() else {
        panic!("one hook.disabled: {events:?}");
    };
    assert_eq!(
        (
            disabled.workflow_id.as_str(),
            &disabled.hook,
            disabled.delivery
        ),
        ("default", gone_hook, *gone_delivery)
    );
    let [OpsData::DeliveryFailed(failed)] = by_type["delivery.failed"].as_slice() else {
        panic!("one delivery.failed: {events:?}");
    };
    assert_eq!((&failed.hook, failed.delivery), (down_hook, *down_delivery));
    assert_eq!((failed.attempts, failed.last_status), (2, Some(500)));
    let recovered: BTreeMap<&str, &[Trouble]> = by_type["hook.recovered"]
        .iter()
        .map(|data| match data {
            OpsData::HookRecovered(r) => (r.hook.as_str(), r.after.as_slice()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        recovered,
        BTreeMap::from([
            (gone_hook.as_str(), &[Trouble::HookDisabled][..]),
            (down_hook.as_str(), &[Trouble::DeliveryFailed][..]),
        ])
    );

    // Metrics: a valid exposition, with per-hook series of both hooks.
    let metrics = serve.call("GET", "/metrics", None).await;
    let text = metrics.body.as_str().expect("text").to_string();
    let samples = check_exposition(&text);
    let sample = |name: &str, labels: &str| {
        samples
            .get(&(name.to_string(), labels.to_string()))
            .copied()
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    let labels = |hook: &str, extra: &str| format!("workflow=\"default\",hook=\"{hook}\"{extra}");
    assert_eq!(
        sample(
            "linq_hooks_hook_attempts_total",
            &labels(gone_hook, ",class=\"4xx\"")
        ),
        1.0
    );
    assert_eq!(
        sample(
            "linq_hooks_hook_attempts_total",
            &labels(down_hook, ",class=\"5xx\"")
        ),
        2.0
    );
    assert_eq!(
        sample(
            "linq_hooks_hook_deliveries_total",
            &labels(down_hook, ",outcome=\"failed\"")
        ),
        1.0
    );
    assert_eq!(
        sample(
            "linq_hooks_hook_deliveries_total",
            &labels(gone_hook, ",outcome=\"delivered\"")
        ),
        2.0
    );
    assert_eq!(
        sample(
            "linq_hooks_hook_attempt_duration_seconds_count",
            &labels(down_hook, "")
        ),
        3.0
    );
    assert_eq!(
        sample("linq_hooks_attempt_results_total", "class=\"2xx\""),
        3.0
    );
    assert_eq!(sample("linq_hooks_ops_webhooks_dropped_total", ""), 0.0);

    // Stats: the minute's counts per hook.
    let stats = serve.get("/v1/stats/deliveries?minutes=60").await;
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    for row in stats["per_minute"].as_array().unwrap() {
        assert!(
            row["minute"].as_str().unwrap().ends_with(":00.000Z"),
            "{row}"
        );
        let entry = counts
            .entry(row["hook"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += row["delivered"].as_u64().unwrap();
        entry.1 += row["failed_attempts"].as_u64().unwrap();
    }
    assert_eq!(counts[gone_hook], (2, 1), "{stats}");
    assert_eq!(counts[down_hook], (1, 2), "{stats}");
    let one = serve
        .get(&format!("/v1/stats/deliveries?hook={down_hook}"))
        .await;
    assert!(
        one["per_minute"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["hook"] == down_hook.as_str()),
        "{one}"
    );
    for bad in ["minutes=0", "minutes=61", "minutes=x", "hook=7"] {
        let reply = serve
            .call("GET", &format!("/v1/stats/deliveries?{bad}"), None)
            .await;
        assert_eq!(reply.status, 400, "{bad}: {:?}", reply.body);
        let name = bad.split('=').next().unwrap();
        assert_eq!(reply.body["errors"][0]["path"], name, "{bad}");
    }

    // A hook removed from the registry loses its series and its counts.
    let put = serve
        .call(
            "PUT",
            "/v1/workflows/default",
            Some(json!([plan_hook(gone.url("/gone"))])),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let text = serve.call("GET", "/metrics", None).await.body;
    let text = text.as_str().unwrap();
    check_exposition(text);
    assert!(!text.contains(&format!("hook=\"{down_hook}\"")), "{text}");
    assert!(text.contains(&format!("hook=\"{gone_hook}\"")), "{text}");
    let stats = serve.get("/v1/stats/deliveries").await;
    assert!(
        !stats.to_string().contains(&format!("\"{down_hook}\"")),
        "{stats}"
    );

    // A hook pointed elsewhere, with a header added.
    let patched = serve
        .call(
            "PATCH",
            &format!("/v1/hooks/{gone_hook}"),
            Some(
                json!({"parameters": {"url": gone.url("/moved"), "headers": {"X-Lab": "bench-3"}}}),
            ),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);

    // The log: JSON lines, and at info (the default filter) the disable, the give-up, the
    // recoveries and the registry changes, each naming the hook as `hook_N`.
    let (code, stderr) = serve.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    let lines = json_lines(&stderr);
    for said in ["listening on http://", "stopped"] {
        assert!(
            lines.iter().any(|line| line["level"] == "INFO"
                && line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(said))),
            "serve's own line `{said}` as a log event: {stderr}"
        );
    }
    let disabled = find(&lines, "INFO", "hook disabled", gone_hook);
    assert_eq!(disabled["fields"]["delivery"], *gone_delivery);
    assert!(
        disabled["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    let given_up = find(&lines, "INFO", "delivery given up", down_hook);
    assert_eq!(given_up["fields"]["delivery"], *down_delivery);
    assert_eq!(given_up["fields"]["last_status"], 500);
    assert!(
        given_up["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts")
    );
    find(&lines, "INFO", "hook recovered", gone_hook);
    find(&lines, "INFO", "hook recovered", down_hook);
    assert!(
        lines.iter().any(|line| line["level"] == "INFO"
            && line["fields"]["message"] == "workflow registered"
            && line["fields"]["removed"] == down_hook.as_str()),
        "the registry change names the removed hook: {stderr}"
    );
    let changed = find(&lines, "INFO", "hook parameters changed", gone_hook);
    assert_eq!(changed["fields"]["url"], gone.url("/moved"));
    assert_eq!(changed["fields"]["previous_url"], gone.url("/gone"));
    assert!(
        changed["fields"]["headers_added"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("x-lab"),
        "{changed}"
    );
    assert!(
        !stderr.contains("bench-3"),
        "header values are not logged: {stderr}"
    );
    assert!(
        !lines.iter().any(|line| line["level"] == "DEBUG"),
        "the default filter is info: {stderr}"
    );
}

/// At debug, each attempt is one line of readable fields: RFC 3339 times, the latency in
/// milliseconds without float noise, the outcome as a word; no Rust value printed raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_at_debug_have_readable_fields() {
    let (down, _) = switchable(503).await;
    let hooks = hooks_file("debug-log", json!([plan_hook(down.url("/down"))]));
    let store = store("debug-log");
    let serve = serve_with(
        &[
            "--hooks",
            &hooks,
            "--store",
            &store,
            "--retry-schedule",
            "10ms,10ms",
        ],
        &[("RUST_LOG", "debug")],
    )
    .await;
    serve.post_plans(0..1).await;
    eventually("the delivery is given up", || async {
        serve.stderr.lock().unwrap().contains("delivery given up")
    })
    .await;
    // A patch with two headers: a list value, quoted like every text value.
    let patched = serve
        .call(
            "PATCH",
            "/v1/hooks/hook_1",
            Some(json!({"parameters": {"url": down.url("/down"),
                "headers": {"X-Lab": "bench 3", "X-Site": "north"}}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    let (_, stderr) = serve.terminate().await;
    let patch_line = stderr
        .lines()
        .find(|line| line.contains("hook parameters changed"))
        .unwrap_or_else(|| panic!("no patch line: {stderr}"));
    assert!(
        patch_line.contains("headers_added=\"X-Lab,X-Site\"")
            && patch_line.contains("headers_removed=\"\""),
        "{patch_line}"
    );
    let given_up = stderr
        .lines()
        .find(|line| line.contains("delivery given up"))
        .unwrap();
    assert!(given_up.contains("reason=\"gave up after"), "{given_up}");
    assert!(!stderr.contains("SystemTime"), "{stderr}");
    assert!(!stderr.contains("tv_sec"), "{stderr}");
    let attempts: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(" attempt ") && line.contains("DEBUG"))
        .collect();
    assert_eq!(attempts.len(), 3, "{stderr}");
    for line in &attempts {
        assert!(line.contains("hook=hook_1"), "{line}");
        let field = |name: &str| {
            line.split(' ')
                .find_map(|word| word.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_string()
        };
        // 2026-11-30T02:46:42.123Z
        let at = field("at");
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{line}"
        );
        let latency = field("latency_ms");
        let decimals = latency.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(
            latency.parse::<f64>().is_ok() && decimals <= 3,
            "latency in ms to the microsecond: {line}"
        );
        // Text with spaces is quoted, so a field's value ends where the quotes do.
        assert!(line.contains("result=\"status 503\""), "{line}");
    }
    assert!(attempts[0].contains("outcome=\"retry\"") || attempts[0].contains("outcome=retry"));
    assert!(
        attempts[0].contains("next_attempt_at=20"),
        "{}",
        attempts[0]
    );
    assert!(attempts[2].contains("failed"), "{}", attempts[2]);
}

/// `--ops-url` without a secret is a usage error naming what is missing; a bad secret is
/// refused without being quoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_url_needs_a_valid_secret() {
    let store = store("ops-usage");
    let out = common::linq_hooks(
        &[
            "serve",
            "--store",
            &store,
            "--ops-url",
            "http://127.0.0.1:9/ops",
        ],
        "",
    )
    .await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ops-secret"), "{stderr}");
    let out = common::linq_hooks(
        &[
            "serve",
            "--store",
            &store,
            "--ops-url",
            "http://127.0.0.1:9/ops",
            "--ops-secret",
            "whsec_not-base64!!",
        ],
        "",
    )
    .await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ops-secret"), "{stderr}");
    assert!(
        !stderr.contains("not-base64"),
        "the secret is not quoted: {stderr}"
    );
    let out = common::linq_hooks(
        &[
            "serve",
            "--store",
            &store,
            "--ops-url",
            "relative/ops",
            "--ops-secret",
            OPS_SECRET,
        ],
        "",
    )
    .await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ops-url"), "{stderr}");
}

/// An OpenMetrics text exposition (what `/metrics` declares), checked line by line: HELP and
/// TYPE once per family, before its samples; sample names that fit the family's type
/// (counters `_total`); well-formed labels and values; no series twice; histogram buckets
/// cumulative, `+Inf` equal to `_count`; `# EOF` last. Returns every sample by (name, labels).
fn check_exposition(text: &str) -> HashMap<(String, String), f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut samples: HashMap<(String, String), f64> = HashMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "ends with # EOF");
    assert_eq!(text.matches("# EOF").count(), 1);
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line}", n + 1);
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name) && !help.is_empty(), "{at}");
            assert!(helps.insert(name.to_string()), "HELP twice: {at}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(&at);
            assert!(valid_name(name), "{at}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "info",
                    "stateset"
                ]
                .contains(&kind),
                "{at}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {at}"
            );
            assert!(
                !samples
                    .keys()
                    .any(|(sample, _)| family_of(sample, &types) == Some(name)),
                "TYPE after samples: {at}"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{at}");
        let (series, value) = line.rsplit_once(' ').expect(&at);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().expect(&at),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect(&at)),
            None => (series, ""),
        };
        assert!(valid_name(name), "{at}");
        check_labels(labels, &at);
        let family = family_of(name, &types).unwrap_or_else(|| panic!("no TYPE for {at}"));
        assert!(helps.contains(family), "no HELP for {at}");
        let key = (name.to_string(), labels.to_string());
        assert!(
            samples.insert(key.clone(), value).is_none(),
            "series twice: {at}"
        );
        order.push(key);
    }
    // Histograms: per series (labels without `le`), buckets cumulative in `le` order, and
    // `+Inf` equal to `_count`.
    let mut buckets: HashMap<(String, String), Vec<(f64, f64)>> = HashMap::new();
    for (name, labels) in &order {
        let Some(family) = name.strip_suffix("_bucket") else {
            continue;
        };
        let mut le = None;
        let rest: Vec<&str> = split_labels(labels)
            .into_iter()
            .filter(|pair| match pair.strip_prefix("le=") {
                Some(bound) => {
                    let bound = bound.trim_matches('"');
                    le = Some(if bound == "+Inf" {
                        f64::INFINITY
                    } else {
                        bound.parse::<f64>().unwrap()
                    });
                    false
                }
                None => true,
            })
            .collect();
        let le = le.unwrap_or_else(|| panic!("a bucket without le: {name}{{{labels}}}"));
        buckets
            .entry((family.to_string(), rest.join(",")))
            .or_default()
            .push((le, samples[&(name.clone(), labels.clone())]));
    }
    for ((family, labels), mut counts) in buckets {
        counts.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            counts.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family}{{{labels}}}: buckets not cumulative: {counts:?}"
        );
        let (last_le, last) = *counts.last().unwrap();
        assert!(
            last_le.is_infinite(),
            "{family}{{{labels}}}: no +Inf bucket"
        );
        let count = samples
            .get(&(format!("{family}_count"), labels.clone()))
            .unwrap_or_else(|| panic!("{family}{{{labels}}}: no _count"));
        assert_eq!(last, *count, "{family}{{{labels}}}: +Inf is not _count");
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to, given the TYPE lines so far, checking that its suffix fits.
fn family_of<'a>(sample: &str, types: &'a HashMap<String, String>) -> Option<&'a str> {
    types.iter().find_map(|(family, kind)| {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" | "unknown" | "stateset" | "info" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            _ => &[""],
        };
        suffixes
            .iter()
            .any(|suffix| sample.strip_suffix(suffix) == Some(family.as_str()))
            .then_some(family.as_str())
    })
}

/// `name="value"` pairs separated by commas, values with `\\`, `\"` and `\n` escapes only.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    pairs
}

fn check_labels(labels: &str, at: &str) {
    let mut names = HashSet::new();
    for pair in split_labels(labels) {
        let (name, value) = pair.split_once('=').expect(at);
        assert!(valid_name(name) && !name.starts_with("__"), "{at}");
        assert!(names.insert(name), "label twice: {at}");
        let inner = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .expect(at);
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => assert!(
                    matches!(chars.next(), Some('\\' | '"' | 'n')),
                    "bad escape: {at}"
                ),
                '"' | '\n' => panic!("unescaped: {at}"),
                _ => {}
            }
        }
    }
}
