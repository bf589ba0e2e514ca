//! `linq-hooks`: the command-line face of the linq-hooks crates.
//!
//! Each subcommand only wires library crates together; the logic lives in the crates.
#![forbid(unsafe_code)]

mod dispatch;
mod input;
mod limits;
mod listen;
mod matching;
mod options;
mod output;
mod report;
mod serve;
mod signal;
mod simulate;
mod transports;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Workflow notifications for the LINQ lab scheduler: check hooks, see which fire, deliver them,
/// receive them, simulate runs.
#[derive(Debug, Parser)]
#[command(name = "linq-hooks", version)]
#[command(
    after_help = "Exit codes: 0 success, 1 invalid input, 2 usage or I/O error, 3 delivery failed, \
130 dispatch interrupted (SIGINT, Ctrl-C, or SIGTERM).\nA closed standard output (`| head`) is not an \
error: the command stops printing and exits as it would have otherwise.\nLogs: on stderr; RUST_LOG chooses which (default warn, and for serve info for its own lines: \
give-ups, 410s, recoveries, registry changes; RUST_LOG=debug for every attempt); --log-format json \
writes one JSON object a line."
)]
struct Cli {
    /// How log lines are written on stderr: `text` (one readable line each) or `json` (one JSON
    /// object a line, with `timestamp`, `level`, `fields` and `target`, for a log pipeline).
    /// RUST_LOG still decides which lines.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value = "text",
        env = "LINQ_HOOKS_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One readable line each.
    Text,
    /// One JSON object a line (tracing-subscriber's JSON formatter).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    #[command(name = "match")]
    Match(matching::Args),
    Dispatch(dispatch::Args),
    // Boxed: `serve` has the most options by far.
    Serve(Box<serve::Args>),
    Listen(listen::Args),
    Simulate(simulate::Args),
}

/// How a command ended; each maps to the exit code the CLI documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the input (a hook file, an event) is invalid; the problems are on stderr.
    Invalid,
    /// Exit 2: bad usage or an I/O error.
    UsageOrIo,
    /// Exit 3: some webhooks could not be delivered; each is listed on stderr.
    DeliveryFailed,
    /// Exit 130 (128 + SIGINT, as shells report it): stopped by SIGINT or SIGTERM before the
    /// work was done; what was settled is reported.
    Interrupted,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(match outcome {
            Outcome::Success => 0,
            Outcome::Invalid => 1,
            Outcome::UsageOrIo => 2,
            Outcome::DeliveryFailed => 3,
            Outcome::Interrupted => 130,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service's log is how its operators follow it: `serve` says what it decides (give-ups,
    // 410s, registry changes) at info by default; one-shot commands report on their own.
    let default_filter = match cli.command {
        Command::Serve(_) => SERVE_DEFAULT_FILTER,
        _ => "warn",
    };
    init_logging(cli.log_format, default_filter);
    quiet_store_panics();
    // For every command: a process short of descriptors fails in ways far from the cause.
    let open_files = limits::raise_open_files();
    let outcome = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Match(args) => matching::run(&args),
        Command::Dispatch(args) => dispatch::run(args),
        Command::Serve(args) => serve::run(
            *args,
            open_files,
            serve::Notices::new(cli.log_format == LogFormat::Json),
        ),
        Command::Listen(args) => listen::run(args),
        Command::Simulate(args) => simulate::run(args),
    };
    output::outcome(outcome).into()
}

/// redb panics on some damage to a store file; the outbox catches those panics and reports
/// each as an error ("the store file is damaged (redb panicked: ...)"), logged once by whoever
/// met it. The default panic hook would first print the panic, with a whole backtrace under
/// `RUST_BACKTRACE=1` (about 140 lines each time a hook's worker asks the store again), so for
/// panics raised in redb's code it logs one line at debug level instead; other panics keep the
/// default report.
fn quiet_store_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info.location().is_some_and(|location| {
            location
                .file()
                .split(['/', '\\'])
                .any(|part| part == "redb" || part.starts_with("redb-"))
        });
        if in_redb {
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            tracing::debug!(
                %location,
                "redb panicked: {} (a damaged store file; reported where it is caught)",
                info.payload_as_str().unwrap_or("a panic without a message")
            );
        } else {
            default(info);
        }
    }));
}

/// `serve`'s filter when RUST_LOG is not set: our own crates' lines (`linq_hooks*` targets) at
/// info, libraries' at warn.
const SERVE_DEFAULT_FILTER: &str = "warn,linq_hooks=info";

/// Logs go to stderr through `tracing`, filtered by `RUST_LOG` (else `default_filter`), as
/// text or as JSON (one object a line: `timestamp` in RFC 3339, `level`, `fields` with the
/// message, `target`). The one place logging is set up.
fn init_logging(format: LogFormat, default_filter: &str) {
    // An empty RUST_LOG (`RUST_LOG= linq-hooks …`) means "not set", not "nothing".
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
