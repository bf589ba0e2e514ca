//! `linq-hooks`: the command-line face of the linq-hooks crates.
//!
//! Each subcommand only wires library crates together; the logic lives in the crates.
#![forbid(unsafe_code)]

mod input;
mod matching;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Workflow notifications for the LINQ lab scheduler: check hooks, see which fire, deliver them.
#[derive(Debug, Parser)]
#[command(name = "linq-hooks", version)]
#[command(after_help = "Exit codes: 0 success, 1 invalid input, 2 usage or I/O error.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validate(validate::Args),
    #[command(name = "match")]
    Match(matching::Args),
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
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(match outcome {
            Outcome::Success => 0,
            Outcome::Invalid => 1,
            Outcome::UsageOrIo => 2,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Match(args) => matching::run(&args),
    }
    .into()
}
