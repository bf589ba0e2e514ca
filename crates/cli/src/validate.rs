//! `linq-hooks validate`: check a hook file, optionally print it in canonical API form.

use std::path::PathBuf;

use linq_hooks_model::{ParsedHooks, parse_hooks};

use crate::Outcome;
use crate::input::Input;

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

/// Reads and checks a hook file, printing warnings and problems on stderr. The error is the
/// outcome to exit with: [`Outcome::UsageOrIo`] when unreadable, [`Outcome::Invalid`] when invalid.
pub(crate) fn read_hooks(input: &Input) -> Result<ParsedHooks, Outcome> {
    let name = input.name();
    let text = input.read_to_string().map_err(|message| {
        eprintln!("error: {message}");
        Outcome::UsageOrIo
    })?;
    match parse_hooks(&text) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                eprintln!("warning: {name}: {warning}");
            }
            Ok(parsed)
        }
        Err(err) if err.is_syntax() => {
            eprintln!("error: {name}: {err}");
            Err(Outcome::Invalid)
        }
        Err(err) => {
            for problem in err.problems() {
                eprintln!("error: {name}: {problem}");
            }
            let n = err.problems().len();
            eprintln!(
                "{name}: invalid, {n} problem{}",
                if n == 1 { "" } else { "s" }
            );
            Err(Outcome::Invalid)
        }
    }
}
