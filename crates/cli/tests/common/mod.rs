//! Shared helpers of the process-level tests: a running `serve`, bounded polling, temp files.
#![allow(dead_code)] // each test binary uses a different part

pub mod order;

use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linq_hooks_tests::{Receiver, Reply, request};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Runs `linq-hooks ARGS` to the end with `stdin` as its input, without blocking the test's
/// runtime (its receivers keep answering meanwhile).
pub async fn linq_hooks(args: &[&str], stdin: &str) -> Output {
    linq_hooks_with(args, stdin, &[]).await
}

/// Like [`linq_hooks`], with `env` set, and `LINQ_HOOKS_TOKEN`, `LINQ_HOOKS_SECRET` and the
/// proxy variables unset otherwise (a developer's environment must not change what a test
/// sees).
pub async fn linq_hooks_with(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_linq-hooks"));
    command
        .args(args)
        .env_remove("LINQ_HOOKS_TOKEN")
        .env_remove("LINQ_HOOKS_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in PROXY_VARIABLES {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes()).await; // it may exit before reading
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// The variables `dispatch` and `serve` take proxies from, in both spellings.
pub const PROXY_VARIABLES: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `text` to a file of this test process's temporary directory; returns its path.
pub fn temp_file(name: &str, text: &str) -> String {
    let path = temp_dir().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("linq-hooks-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `new_plan` event with plan id `p{n}`.
pub fn plan(n: usize) -> Value {
    json!({"event": "new_plan", "plan_id": format!("p{n}"), "timestamp": "2025-04-17T09:30:00Z"})
}

/// A hook that fires on every new plan, posting to `url`.
pub fn plan_hook(url: String) -> Value {
    json!({"filter": "on_new_plan", "parameters": {"url": url}})
}

/// A receiver that answers `status` until the returned switch is turned on, then 200.
pub async fn switchable(status: u16) -> (Receiver, Arc<AtomicBool>) {
    let on = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start({
        let on = on.clone();
        move |_, _| {
            if on.load(Ordering::SeqCst) {
                (200, vec![])
            } else {
                (status, vec![])
            }
        }
    })
    .await;
    (receiver, on)
}

/// A running `linq-hooks serve`.
pub struct Serve {
    pub child: tokio::process::Child,
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `serve` with these arguments (plus `--listen 127.0.0.1:0` unless given) and waits
    /// until it says where it listens.
    pub async fn start(args: &[&str]) -> Serve {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_linq-hooks"));
        command.arg("serve").args(args);
        for name in PROXY_VARIABLES {
            command.env_remove(name);
        }
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        Serve::start_command(command).await
    }

    /// Starts `serve` from a prepared command (say, under a shell that sets limits).
    pub async fn start_command(mut command: tokio::process::Command) -> Serve {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut base = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            stderr.lock().unwrap().push_str(&format!("{line}\n"));
            // A plain line, or (`--log-format json`) a log event with that message.
            let message = match serde_json::from_str::<Value>(&line) {
                Ok(event) => event["fields"]["message"]
                    .as_str()
                    .map(|m| format!("linq-hooks serve: {m}")),
                Err(_) => Some(line.clone()),
            };
            if let Some(rest) = message
                .as_deref()
                .and_then(|m| m.strip_prefix("linq-hooks serve: listening on "))
            {
                base = Some(rest.split(',').next().unwrap().to_string());
                break;
            }
        }
        let Some(base) = base else {
            panic!("serve did not start: {}", stderr.lock().unwrap());
        };
        tokio::spawn({
            let stderr = stderr.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    stderr.lock().unwrap().push_str(&format!("{line}\n"));
                }
            }
        });
        Serve {
            child,
            base,
            stderr,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        request(method, &format!("{}{path}", self.base), body, None)
            .await
            .unwrap()
    }

    pub async fn post_events(&self, events: Value) -> Reply {
        self.call("POST", "/v1/events", Some(events)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let reply = self.call("GET", path, None).await;
        assert_eq!(reply.status, 200, "GET {path}: {:?}", reply.body);
        reply.body
    }

    /// Posts `plan(n)` for each `n`, one request each, and checks every one is acknowledged.
    pub async fn post_plans(&self, plans: std::ops::Range<usize>) {
        for n in plans {
            let reply = self.post_events(plan(n)).await;
            assert_eq!(reply.status, 202, "p{n}: {:?}", reply.body);
        }
    }

    /// Checks that the store holds no delivery in any state.
    pub async fn assert_nothing_stored(&self) {
        for state in ["pending", "delivered", "failed"] {
            let list = self.get(&format!("/v1/deliveries?state={state}")).await;
            assert!(
                list["deliveries"].as_array().unwrap().is_empty(),
                "{state}: nothing stored"
            );
        }
    }

    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    pub async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await; // let the stderr reader catch up
        (status.code(), self.stderr.lock().unwrap().clone())
    }
}

/// Polls `check` until it holds (bounded: a test that never gets there fails, it never hangs).
pub async fn eventually<F: Future<Output = bool>>(what: &str, check: impl FnMut() -> F) {
    eventually_within(what, Duration::from_secs(30), check).await;
}

/// Like [`eventually`], for waits longer than its 30 s (a deep queue draining): polls every
/// 20 ms, `limit / 20 ms` times at most (so longer than `limit` when `check` itself is slow),
/// then fails naming `what`.
pub async fn eventually_within<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let pause = Duration::from_millis(20);
    for _ in 0..limit.as_millis() / pause.as_millis() {
        if check().await {
            return;
        }
        tokio::time::sleep(pause).await;
    }
    panic!("never happened: {what}");
}

pub fn store(name: &str) -> String {
    let path = temp_dir().join(format!("{name}.redb"));
    let _ = std::fs::remove_file(&path);
    path.to_str().unwrap().to_string()
}

pub fn hooks_file(name: &str, hooks: Value) -> String {
    temp_file(&format!("{name}.json"), &hooks.to_string())
}
