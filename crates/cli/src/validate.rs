//! `linq-hooks validate`: check a hook file, optionally print it in canonical API form.

use std::path::PathBuf;

use crate::Outcome;
use crate::input::{Input, read_hooks};

/// Check hooks: one hook object, an array of hooks, `{"hooks": [...]}`, or the LINQ API's
/// workflow document (`{"workflow": {"hooks": [...], ...}, ...}`, as the SDK writes it).
///
/// Every problem is reported on stderr with its JSON path (for example
/// `workflow.hooks[2].parameters.url: relative URL without a scheme`); unknown fields of a hook
/// are warned about and ignored, as the LINQ API ignores them. In the workflow document, a task
/// or labware id that names nothing in `workflow.tasks` / `workflow.labware` gets a warning.
/// Warnings never make a file invalid.
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
