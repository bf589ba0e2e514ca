//! The command-line papercuts of issue 14, each tried as a new user would: real processes, real
//! pipes closed by their reader, real signals, a real pseudo-terminal, real servers on
//! 127.0.0.1.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Serve, eventually, hooks_file, linq_hooks, linq_hooks_with, plan, plan_hook, store, switchable,
    temp_file, text,
};
use linq_hooks_tests::{Receiver, workspace_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_linq-hooks");

/// Runs `script` with bash in the workspace root, `$BIN` the binary; its exit status and
/// output. The script's pipes are real ones, closed by their reader (`head`).
async fn bash(script: &str) -> std::process::Output {
    tokio::process::Command::new("bash")
        .args(["-c", script])
        .env("BIN", BIN)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

/// `count` hooks of every kind but one shape, as one file: enough that `validate
/// --normalized` prints far more than a pipe holds (64 KiB), so the write after `head` is gone
/// must meet the closed pipe.
fn many_hooks(count: usize) -> String {
    let hooks: Vec<_> = (0..count)
        .map(|i| {
            json!({"filter": "on_task_state_change", "task_ids": [format!("task-{i}")],
                   "parameters": {"url": format!("https://lims.example/hooks/{i}"),
                                  "headers": {"X-Lab-Site": "bench-3"}}})
        })
        .collect();
    temp_file("many-hooks.json", &json!(hooks).to_string())
}

#[tokio::test]
async fn a_reader_that_closes_the_pipe_ends_the_command_quietly() {
    let hooks = many_hooks(2000);
    let event = json!({"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"});
    let cases = [
        // One big write, cut by `head`.
        format!(r#""$BIN" validate --normalized {hooks} | head -1"#),
        // An endless stream of events: `match` must stop reading once no one reads answers.
        format!(r#"yes '{event}' | "$BIN" match --hooks examples/workflow.json | head -1"#),
        r#""$BIN" simulate --runs 300 | head -1"#.to_string(),
    ];
    // Standard error closed too: thousands of problems, each a line, into a pipe `head` left.
    let broken = temp_file(
        "many-broken-hooks.json",
        &json!(
            (0..3000)
                .map(|_| json!({"filter": "on_new_plan", "parameters": {"url": "/relative"}}))
                .collect::<Vec<_>>()
        )
        .to_string(),
    );
    let out = bash(&format!(
        r#""$BIN" validate {broken} 2>&1 | head -1 >/dev/null; echo "status=${{PIPESTATUS[0]}}""#
    ))
    .await;
    // 1 (invalid), not 101 (a panic printing to stderr).
    assert_eq!(
        text(&out.stdout).trim(),
        "status=1",
        "{}",
        text(&out.stderr)
    );

    for pipeline in cases {
        // The binary's own status, however `head` and `yes` ended.
        let out = bash(&format!(
            "{pipeline} >/dev/null; echo \"status=${{PIPESTATUS[-2]}}\""
        ))
        .await;
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "{pipeline}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{pipeline}: {stderr}");
        assert_eq!(stdout.trim(), "status=0", "{pipeline}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_keeps_its_exit_code_when_no_one_reads_the_summary() {
    // The receiver fails until the pipe is closed, so the summary is written after that.
    let (receiver, on) = switchable(500).await;
    let hooks = hooks_file("closed-pipe", json!([plan_hook(receiver.url("/h"))]));
    let events = temp_file("closed-pipe.ndjson", &format!("{}\n{{not json\n", plan(1)));
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "dispatch",
            "--hooks",
            &hooks,
            "--retry-schedule",
            &["200ms"; 20].join(","),
            &events,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is printed
    eventually("a first attempt", || async {
        !receiver.received().is_empty()
    })
    .await;
    on.store(true, Ordering::SeqCst);
    let out = child.wait_with_output().await.unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The bad line still makes it exit 1: a closed pipe changes no outcome.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 invalid line(s)"), "{stderr}");
}

#[tokio::test]
async fn validate_takes_several_files_strict_fails_on_warnings_and_suggests_fields() {
    let good = temp_file(
        "strict-good.json",
        r#"[{"filter": "on_new_plan", "parameters": {"url": "https://x.example"}}]"#,
    );
    let typo = temp_file(
        "strict-typo.json",
        r#"[{"filter": "on_labware_movement", "labware_ids": [], "trigger": "end",
             "parameters": {"url": "https://x.example", "header": {"X-A": "1"}}}]"#,
    );
    let bad = temp_file(
        "strict-bad.json",
        r#"[{"filter": "on_new_plan", "parameters": {"url": "/relative"}}]"#,
    );

    // Warnings alone: valid, each named with its file and the field meant.
    let out = linq_hooks(&["validate", &good, &typo], "").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{good}: valid, 1 hook\n{typo}: valid, 1 hook\n")
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: {typo}: [0].parameters.header: unknown field, ignored; did you mean `headers`?\n\
             warning: {typo}: [0].trigger: unknown field, ignored; did you mean `trigger_on`?\n"
        )
    );

    // --strict: the warnings fail that file (exit 1); the good one is still reported.
    let out = linq_hooks(&["validate", "--strict", &good, &typo], "").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{good}: valid, 1 hook\n"));
    assert!(
        text(&out.stderr).ends_with(&format!("{typo}: invalid under --strict, 2 warnings\n")),
        "{}",
        text(&out.stderr)
    );

    // The exit code is the worst over the files: unreadable (2) beats invalid (1).
    let out = linq_hooks(&["validate", &bad, &good], "").await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("{good}: valid, 1 hook\n"));
    assert!(text(&out.stderr).contains(&format!("error: {bad}: [0].parameters.url")));
    let missing = "/nonexistent/hooks.json";
    let out = linq_hooks(&["validate", &bad, missing, &good], "").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(&format!("cannot read {missing}")));
    assert_eq!(text(&out.stdout), format!("{good}: valid, 1 hook\n"));

    // --normalized prints one file's hooks.
    let out = linq_hooks(&["validate", "--normalized", &good, &typo], "").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--normalized"));

    let help = text(&linq_hooks(&["validate", "--help"], "").await.stdout);
    assert!(help.contains("--strict"), "{help}");
    assert!(help.contains("the worst over the files"), "{help}");
}

#[tokio::test]
async fn match_answers_each_event_of_a_stream_on_its_own_line() {
    let hooks = "examples/workflow.json";
    let stream = [
        r#"{"event": "task_state_change", "run_id": "r1", "task_id": "read-plate-1", "state": "failed", "timestamp": "2025-04-17T09:30:00Z"}"#,
        "",
        r#"{"event": "new_plan", "plan_id": "p1", "timestamp": "2025-04-17T09:30:00Z"}"#,
        r#"{"event": "launch"}"#,
        r#"{"event": "run_state_change", "run_id": "r1", "state": "stopped", "timestamp": "2025-04-17T09:30:00Z"}"#,
    ]
    .join("\n");
    let path = std::path::Path::new(&workspace_root()).join(hooks);
    let out = linq_hooks(&["match", "--hooks", path.to_str().unwrap(), "-"], &stream).await;
    // The answers of the valid lines, in order; the bad line named by its number.
    let single: Vec<String> = each_alone(&path, &stream).await;
    assert_eq!(text(&out.stdout), single.concat(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    assert!(
        text(&out.stderr).starts_with(r#"error: <stdin>:4: event: unknown event "launch""#),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));

    // A pretty-printed event (review): the first error says events go one per line.
    let pretty = serde_json::to_string_pretty(&json!({"event": "new_plan", "plan_id": "p1",
        "timestamp": "2025-04-17T09:30:00Z"}))
    .unwrap();
    let out = linq_hooks(&["match", "--hooks", path.to_str().unwrap(), "-"], &pretty).await;
    let said = text(&out.stderr);
    assert!(
        said.lines()
            .next()
            .unwrap()
            .starts_with("error: <stdin>:1: ")
            && said
                .lines()
                .next()
                .unwrap()
                .contains("one per line, as NDJSON"),
        "{said}"
    );
    assert_eq!(said.matches("NDJSON").count(), 1, "said once: {said}");
    assert_eq!(out.status.code(), Some(1));

    // The same kind: an array of events, and a first line that opens the event and goes on.
    for stream in [
        "[\n  {\"event\": \"new_plan\", \"plan_id\": \"p1\", \"timestamp\": \"2025-04-17T09:30:00Z\"}\n]",
        "{\"event\": \"new_plan\",\n \"plan_id\": \"p1\", \"timestamp\": \"2025-04-17T09:30:00Z\"}",
    ] {
        let out = linq_hooks(&["match", "--hooks", path.to_str().unwrap(), "-"], stream).await;
        let said = text(&out.stderr);
        assert!(
            said.lines()
                .next()
                .unwrap()
                .contains("one per line, as NDJSON"),
            "{stream}: {said}"
        );
        assert_eq!(said.matches("NDJSON").count(), 1, "said once: {said}");
    }
}

/// Each valid line of `stream` matched alone: what the stream's answers must be, line by line.
async fn each_alone(hooks: &std::path::Path, stream: &str) -> Vec<String> {
    let mut answers = Vec::new();
    for line in stream
        .lines()
        .filter(|l| !l.is_empty() && !l.contains("launch"))
    {
        let out = linq_hooks(&["match", "--hooks", hooks.to_str().unwrap()], line).await;
        assert_eq!(out.status.code(), Some(0), "{line}: {}", text(&out.stderr));
        answers.push(text(&out.stdout));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_ingest_takes_the_base_or_the_endpoints_whole_url() {
    let receiver = Receiver::start(|_, _| (204, vec![])).await;
    let hooks = hooks_file("ingest-url", json!([plan_hook(receiver.url("/p"))]));
    let serve = Serve::start(&["--store", &store("ingest-url"), "--hooks", &hooks]).await;
    let base = serve.base.clone();
    for url in [
        base.clone(),
        format!("{base}/"),
        format!("{base}/v1/events"),
        format!("{base}/v1/events/"),
        format!("{base}/v1/workflows/default/events"),
    ] {
        let out = linq_hooks(&["simulate", "--seed", "2", "--ingest", &url], "").await;
        assert_eq!(out.status.code(), Some(0), "{url}: {}", text(&out.stderr));
        let said = text(&out.stdout);
        let endpoint = if url.contains("/workflows/") {
            format!("{base}/v1/workflows/default/events")
        } else {
            format!("{base}/v1/events")
        };
        assert!(said.starts_with(&format!("{endpoint}: ")), "{url}: {said}");
        assert!(said.contains("events accepted"), "{url}: {said}");
    }
    serve.kill().await;
}

/// Two hooks: one delivers at once, the other's receiver fails and its retry waits an hour.
async fn half_settled() -> (Receiver, Receiver, String) {
    let good = Receiver::start(|_, _| (204, vec![])).await;
    let failing = Receiver::start(|_, _| (500, vec![])).await;
    let hooks = hooks_file(
        &format!("interrupt-{}", good.addr().port()),
        json!([plan_hook(good.url("/ok")), plan_hook(failing.url("/fail"))]),
    );
    (good, failing, hooks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_dispatch_prints_what_was_settled_and_exits_130() {
    let (good, failing, hooks) = half_settled().await;
    let events = temp_file(
        "interrupt.ndjson",
        &(1..=3)
            .map(|n| format!("{}\n", plan(n)))
            .collect::<String>(),
    );
    let child = tokio::process::Command::new(BIN)
        .args([
            "dispatch",
            "--hooks",
            &hooks,
            "--retry-schedule",
            "1h",
            &events,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually(
        "the good hook has all three, the failing one its first attempt",
        || async { good.received().len() == 3 && failing.received().len() == 1 },
    )
    .await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("dispatch ends after SIGINT, without waiting for the retry")
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // hook, url, delivered, failed, attempts.
    assert_eq!(
        rows[0][..5],
        ["0", &good.url("/ok"), "3", "0", "3"],
        "{stdout}"
    );
    assert_eq!(
        rows[1][..5],
        ["1", &failing.url("/fail"), "0", "0", "1"],
        "{stdout}"
    );
    assert!(
        stderr.contains("interrupted: 3 webhook(s) not settled"),
        "{stderr}"
    );
    assert_eq!(failing.received().len(), 1, "nothing more is sent");

    let help = text(&linq_hooks(&["dispatch", "--help"], "").await.stdout);
    assert!(
        help.contains("130 interrupted by SIGINT (Ctrl-C)"),
        "{help}"
    );
}

/// A pseudo-terminal: the master's output collected by a thread, and its slave side.
struct Terminal {
    master: std::fs::File,
    slave: OwnedFd,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    fn open() -> Terminal {
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).unwrap();
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(String::new()));
        std::thread::spawn({
            let (mut master, screen) = (master.try_clone().unwrap(), screen.clone());
            move || {
                let mut buffer = [0u8; 4096];
                // Ends with EIO once no process holds the slave side.
                while let Ok(n @ 1..) = master.read(&mut buffer) {
                    screen
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            }
        });
        Terminal {
            master,
            slave: pty.slave,
            screen,
        }
    }

    fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().unwrap())
    }

    fn shows(&self, text: &str) -> bool {
        self.screen.lock().unwrap().contains(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_dispatch_says_it_waits_for_stdin_and_shows_retries_waiting() {
    let (good, failing, hooks) = half_settled().await;
    let mut terminal = Terminal::open();
    let child = tokio::process::Command::new(BIN)
        .args(["dispatch", "--hooks", &hooks, "--retry-schedule", "1h"])
        .stdin(terminal.stdio())
        .stderr(terminal.stdio())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the hint about standard input", || async {
        terminal.shows("reading events from standard input (a terminal); end with Ctrl-D")
    })
    .await;
    writeln!(terminal.master, "{}", plan(1)).unwrap();
    eventually("both hooks tried", || async {
        good.received().len() == 1 && failing.received().len() == 1
    })
    .await;
    eventually("the progress line counts the retry waiting", || async {
        terminal.shows("1/2 webhooks settled, 1 waiting to retry")
    })
    .await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("dispatch ends after SIGINT, even while standard input is open")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        terminal.screen.lock().unwrap()
    );
    assert!(
        text(&out.stdout).starts_with("hook"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_the_same_store_is_told_who_holds_it() {
    let path = store("held");
    let first = Serve::start(&["--store", &path]).await;
    let out = linq_hooks(&["serve", "--store", &path, "--listen", "127.0.0.1:0"], "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the store {path} is in use: another `linq-hooks serve` holds it"
        )),
        "{stderr}"
    );
    // The first one is unharmed.
    assert_eq!(first.call("GET", "/v1/hooks", None).await.status, 200);
    first.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_leaves_no_new_store_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let path = store("busy-port");
    let out = linq_hooks(&["serve", "--store", &path, "--listen", &addr], "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        !std::path::Path::new(&path).exists(),
        "no store file made by a serve that could not start"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_may_come_from_the_environment_and_the_lease_is_bounded() {
    let path = store("from-env");
    let first = Serve::start(&["--store", &path]).await;
    let out = linq_hooks_with(
        &["serve", "--listen", "127.0.0.1:0"],
        "",
        &[("LINQ_HOOKS_STORE", path.as_str())],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the store {path} is in use")),
        "{stderr}"
    );
    first.kill().await;

    for lease in ["10ms", "2h"] {
        let out = linq_hooks(&["serve", "--store", &path, "--lease", lease], "").await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "invalid value '{lease}' for '--lease <DURATION>': {lease} is outside 1s..=1h"
            )),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let url = "postgres://hooks:s3cret-pw@127.0.0.1:1/hooks";
    let out = linq_hooks(&["serve", "--store", url, "--listen", "127.0.0.1:0"], "").await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1"), "names the server: {stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "shows the password: {stderr}"
    );
}
