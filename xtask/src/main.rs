//! Project chores, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! - `cargo xtask schema` writes the JSON Schemas in `schemas/` from the Rust types, and
//!   `schemas/openapi.json` from the service's API.
//! - `cargo xtask schema --check` fails when the committed schemas are stale.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str =
    "usage: cargo xtask schema [--check] | cargo xtask bench [--events N] [--backlog N[,N...]] [--only SECTION,...]

tasks:
  schema          write the JSON Schemas in schemas/ from the Rust types, and schemas/openapi.json
                  from the service's API
  schema --check  fail when the committed schemas differ from what the types generate
  bench           build in release mode, run the benchmark harness (bench/), write BENCHMARKS.md
                  (defaults: --events 100000 --backlog 1000000,5000000; takes several minutes);
                  --backlog sizes: the smallest is drained in full, the others are accepted and
                  reopened only; --only runs the sections named (throughput, mqtt, serve-one-hook,
                  serve-many-hooks, ingest, latency, head-of-line, limits, backlog, micro) and
                  replaces just those in BENCHMARKS.md";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["schema"] => schema(false),
        ["schema", "--check"] => schema(true),
        ["bench", rest @ ..] => bench(rest),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Every generated schema: its path under `schemas/` and its text.
fn schemas() -> Vec<(String, String)> {
    use linq_hooks_events::{EventKind, schema as events};
    use linq_hooks_model::schema as hooks;
    let pretty = |schema: serde_json::Value| {
        serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
    };
    let mut all = vec![
        (
            "hook.schema.json".to_string(),
            pretty(hooks::hook().to_value()),
        ),
        (
            "hooks.schema.json".to_string(),
            pretty(hooks::hooks().to_value()),
        ),
        (
            "event.schema.json".to_string(),
            pretty(events::event().to_value()),
        ),
    ];
    for kind in EventKind::ALL {
        let path = format!("events/{}.schema.json", kind.name());
        all.push((path, pretty(events::body(kind).to_value())));
    }
    all.push((
        "ops-event.schema.json".to_string(),
        pretty(events::ops_event().to_value()),
    ));
    // Already pretty JSON with a final newline: what `GET /v1/openapi.json` serves.
    all.push(("openapi.json".to_string(), linq_hooks_service::openapi()));
    all
}

fn schema(check: bool) -> ExitCode {
    let dir = workspace_root().join("schemas");
    let mut stale = Vec::new();
    for (name, text) in schemas() {
        let path = dir.join(&name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if check {
            stale.push(path);
        } else if let Err(e) = std::fs::create_dir_all(path.parent().expect("under schemas/"))
            .and_then(|()| std::fs::write(&path, text))
        {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        return ExitCode::SUCCESS;
    }
    for path in &stale {
        eprintln!("error: {} is stale", path.display());
    }
    eprintln!("run `cargo xtask schema` and commit the result");
    ExitCode::FAILURE
}

/// Builds the release binaries, then runs the harness from the workspace root.
fn bench(args: &[&str]) -> ExitCode {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "linq-hooks",
            "-p",
            "linq-hooks-bench",
        ])
        .current_dir(&root)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("error: the release build failed");
        return ExitCode::FAILURE;
    }
    let ran = std::process::Command::new(root.join("target/release/linq-hooks-bench"))
        .args([
            "--root",
            root.to_str().expect("a UTF-8 path"),
            "--out",
            "BENCHMARKS.md",
        ])
        .args(args)
        .current_dir(&root)
        .status();
    match ran {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        _ => {
            eprintln!("error: the benchmark harness failed");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits in the workspace root")
        .to_path_buf()
}
