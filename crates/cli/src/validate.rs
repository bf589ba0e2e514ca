//! `linq-hooks validate`: check a hook file, optionally print it in canonical API form.

use std::path::PathBuf;

use crate::Outcome;
use crate::input::{Input, read_hooks};

/// Check hooks: one hook object, an array of hooks, or a LINQ workflow document.
///
/// Every problem is reported on stderr with its JSON path (for example
/// `hooks[2].parameters.url: relative URL without a scheme`); unknown fields are warned about
/// and ignored, as the LINQ API ignores them.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 valid, 1 invalid (problems on stderr), 2 usage or I/O error."
)]
pub(crate) struct Args {
    /// Print the hooks on stdout as the canonical JSON array of the LINQ API: `filter` present,
    /// `headers` always an object, `trigger_on` filled in, unknown fields dropped.
    #[arg(long)]
    normalized: bool,
    /// The hook file; `-` or nothing reads standard input.
    file: Option<PathBuf>,
}

pub(crate) fn run(args: &Args) -> Outcome {
    let input = Input::new(args.file.clone());
    let parsed = match read_hooks(&input) {
        Ok(parsed) => parsed,
        Err(outcome) => return outcome,
    };
    if args.normalized {
        let json = serde_json::to_string_pretty(&parsed.hooks).expect("hooks serialize");
        println!("{json}");
    } else {
        let n = parsed.hooks.len();
        println!(
            "{}: valid, {n} hook{}",
            input.name(),
            if n == 1 { "" } else { "s" }
        );
    }
    Outcome::Success
}
