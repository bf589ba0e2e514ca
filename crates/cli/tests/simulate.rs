//! `linq-hooks simulate` as a real process: its output, and posting to a server.

mod common;

use common::text;
use linq_hooks_events::{Event, RunState, Timestamp, parse_event};
use linq_hooks_simulator::Simulation;
use linq_hooks_tests::{Received, Receiver};

async fn linq_hooks(args: &[&str]) -> std::process::Output {
    common::linq_hooks(args, "").await
}

async fn linq_hooks_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    common::linq_hooks_with(args, "", env).await
}

/// The library's events for a seed and number of runs, as NDJSON.
fn ndjson(seed: u64, runs: usize) -> String {
    Simulation::new(seed)
        .runs(runs)
        .events()
        .map(|event| serde_json::to_string(&event).unwrap() + "\n")
        .collect()
}

fn events_of(stdout: &[u8]) -> Vec<Event> {
    text(stdout)
        .lines()
        .map(|line| parse_event(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// The events of every request, in the order received: arrays are batches, objects single
/// events.
fn posted_events(received: &[Received]) -> Vec<serde_json::Value> {
    received
        .iter()
        .flat_map(|request| match request.json() {
            serde_json::Value::Array(events) => events,
            event => vec![event],
        })
        .collect()
}

fn as_values(ndjson: &str) -> Vec<serde_json::Value> {
    ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_same_seed_prints_the_same_events() {
    let first = linq_hooks(&["simulate", "--seed", "5"]).await;
    let second = linq_hooks(&["simulate", "--seed", "5"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert!(first.stderr.is_empty(), "{}", text(&first.stderr));
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(
        text(&first.stdout),
        ndjson(5, 1),
        "the library's events, as NDJSON"
    );
    let other = linq_hooks(&["simulate", "--seed", "6"]).await;
    assert_ne!(first.stdout, other.stdout);

    // The default seed is 1, and one run: the start of the simulator's pinned output (seed 1,
    // two runs), byte for byte.
    let default = linq_hooks(&["simulate"]).await;
    assert_eq!(text(&default.stdout), ndjson(1, 1));
    let pinned = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../simulator/tests/fixtures/seed-1.ndjson"
    ))
    .unwrap();
    let two = linq_hooks(&["simulate", "--runs", "2"]).await;
    assert_eq!(text(&two.stdout), pinned);
    assert!(pinned.starts_with(&text(&default.stdout)));
}

#[tokio::test]
async fn two_runs_are_two_whole_runs() {
    let out = linq_hooks(&["simulate", "--runs", "2", "--seed", "8"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events = events_of(&out.stdout);
    let split = events
        .iter()
        .position(|e| e.run_id() == Some("run-8-2"))
        .expect("a second run");
    let (first, second) = events.split_at(split);
    for (run, events) in [("run-8-1", first), ("run-8-2", second)] {
        let starts = |e: &Event, state: RunState| matches!(e, Event::RunStateChange(r) if r.run_id == run && r.state == state);
        assert!(starts(&events[0], RunState::Started), "{run} starts");
        assert!(
            starts(events.last().unwrap(), RunState::Stopped),
            "{run} stops"
        );
        assert!(events.iter().all(|e| e.run_id().is_none_or(|id| id == run)));
    }
    assert!(
        events
            .windows(2)
            .all(|w| w[0].timestamp() < w[1].timestamp())
    );
}

#[tokio::test]
async fn a_rate_starts_the_runs_now() {
    let before = Timestamp::now();
    let out = linq_hooks(&["simulate", "--seed", "2", "--rate", "2000"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events = events_of(&out.stdout);
    let fixed = events_of(ndjson(2, 1).as_bytes());
    assert_eq!(events.len(), fixed.len(), "the same run");
    assert!(events[0].timestamp() >= before, "starts now");
    // The same run, shifted in time.
    let shift = events[0].timestamp().unix_millis() - fixed[0].timestamp().unix_millis();
    for (paced, fixed) in events.iter().zip(&fixed) {
        assert_eq!(paced.kind(), fixed.kind());
        assert_eq!(
            paced.timestamp().unix_millis() - fixed.timestamp().unix_millis(),
            shift
        );
    }

    for rate in ["0", "-1", "fast", "NaN", "inf"] {
        let out = linq_hooks(&["simulate", "--rate", rate]).await;
        assert_eq!(out.status.code(), Some(2), "--rate {rate}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_posts_every_event_in_order_in_batches_with_the_token() {
    let server = Receiver::start(|_, _| (202, vec![])).await;
    let out = linq_hooks(&[
        "simulate",
        "--seed",
        "4",
        "--runs",
        "8",
        "--ingest",
        &server.url("/"),
        "--token",
        "s3cret-token",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let received = server.received();
    let want = as_values(&ndjson(4, 8));
    assert!(want.len() > 200, "several batches: {}", want.len());
    assert_eq!(received.len(), want.len().div_ceil(100));
    for request in &received {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/events");
        assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let batch = request.json();
        assert!(batch.as_array().is_some_and(|b| b.len() <= 100), "a batch");
    }
    assert_eq!(
        posted_events(&received),
        want,
        "every event, once, in order"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{} events accepted", want.len())),
        "{stdout}"
    );
    assert!(
        !text(&out.stderr).contains("s3cret-token") && !stdout.contains("s3cret-token"),
        "the token is never printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_ingest_posts_one_event_per_request_with_the_token_from_the_environment() {
    let server = Receiver::start(|_, _| (202, vec![])).await;
    let out = linq_hooks_with(
        &[
            "simulate",
            "--seed",
            "4",
            "--rate",
            "1000",
            "--ingest",
            &server.url(""),
        ],
        &[("LINQ_HOOKS_TOKEN", "from-env")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let received = server.received();
    assert!(
        received.iter().all(|r| r.json().is_object()),
        "single events"
    );
    assert!(
        received
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer from-env"))
    );
    let got = posted_events(&received);
    let kinds = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{} {}", e["event"], e["message"]))
            .collect()
    };
    // The same run as without --rate, starting now instead.
    assert_eq!(kinds(&got), kinds(&as_values(&ndjson(4, 1))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_retries_5xx_and_connection_errors() {
    // Two 503s, then every batch accepted.
    let server =
        Receiver::start(|_, earlier| (if earlier.len() < 2 { 503 } else { 202 }, vec![])).await;
    let out = linq_hooks(&[
        "simulate",
        "--runs",
        "3",
        "--ingest",
        &server.url(""),
        "--retry-schedule",
        "10ms,10ms,10ms",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let received = server.received();
    assert_eq!(received[0].body, received[1].body, "the same batch again");
    assert_eq!(received[1].body, received[2].body);
    assert_eq!(posted_events(&received[2..]), as_values(&ndjson(1, 3)));
    // Each request carries an `Idempotency-Key`, the same on its retries (so `serve` stores a
    // retried batch once), another for the next batch.
    let keys: Vec<&str> = received
        .iter()
        .map(|r| r.header("idempotency-key").expect("an Idempotency-Key"))
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[1], keys[2]);
    // Three runs are 113 events: a batch of 100 (sent three times), then one of 13.
    assert_eq!(keys.len(), 4);
    assert_ne!(keys[2], keys[3], "a new batch, a new key");

    // Nobody listens: given up after the retries, exit 2.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = linq_hooks(&[
        "simulate",
        "--ingest",
        &format!("http://127.0.0.1:{port}"),
        "--retry-schedule",
        "10ms,10ms",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not accepted after 3 attempts"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_stops_with_exit_1_and_shows_the_answer() {
    let server = Receiver::start_with_body(|_, _| {
        (
            (400, vec![("content-type", "application/json".into())]),
            br#"{"errors": ["[3].timestamp: missing required field `timestamp`"]}"#.to_vec(),
        )
    })
    .await;
    let out = linq_hooks(&["simulate", "--runs", "5", "--ingest", &server.url("")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        server.received().len(),
        1,
        "a 4xx is not retried, nothing more is sent"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("events 1-100 refused with status 400"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[3].timestamp: missing required field `timestamp`"),
        "{stderr}"
    );

    // A bad URL is a usage error.
    let out = linq_hooks(&["simulate", "--ingest", "ftp://127.0.0.1:9"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
