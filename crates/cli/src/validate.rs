//! `linq-hooks validate`: check hook files, optionally print one in canonical API form.

use std::path::PathBuf;

use crate::Outcome;
use crate::input::{Input, read_hooks};
use crate::output::errln;
use crate::output::outln;

/// Check hooks: one hook object, an array of hooks, `{"hooks": [...]}`, or the LINQ API's
/// workflow document (`{"workflow": {"hooks": [...], ...}, ...}`, as the SDK writes it).
///
/// Every problem is reported on stderr with its file and JSON path (for example
/// `workflow.hooks[2].parameters.url: relative URL without a scheme`); unknown fields of a hook
/// are warned about and ignored, as the LINQ API ignores them, with the field probably meant
/// (`trigger: unknown field, ignored; did you mean `trigger_on`?`). In the workflow document, a
/// task or labware id that names nothing in `workflow.tasks` / `workflow.labware` gets a
/// warning. Warnings do not make a file invalid, unless --strict.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: one line per file on stdout, `FILE: valid, N hooks`; problems and warnings \
on stderr, each with its file.\n\nExit codes: the worst over the files: 0 every file valid, 1 a \
file invalid (or, with --strict, a file with warnings), 2 usage or I/O error (a file unreadable)."
)]
pub(crate) struct Args {
    /// Print the hooks on stdout as the canonical JSON array of the LINQ API: `filter` present,
    /// `headers` always an object, `trigger_on` filled in, unknown fields dropped. Takes one
    /// file.
    #[arg(long)]
    normalized: bool,
    /// Make warnings fail: a file with warnings (an unknown field, a task or labware id the
    /// workflow does not list) is reported invalid, exit code 1. For CI checks of hook files.
    #[arg(long)]
    strict: bool,
    /// The hook files, each checked and reported with its name; `-` or nothing reads standard
    /// input.
    files: Vec<PathBuf>,
}

pub(crate) fn run(args: &Args) -> Outcome {
    let inputs: Vec<Input> = if args.files.is_empty() {
        vec![Input::new(None).of("hooks")]
    } else {
        args.files
            .iter()
            .map(|path| Input::new(Some(path.clone())).of("hooks"))
            .collect()
    };
    if args.normalized && inputs.len() > 1 {
        errln!(
            "error: --normalized prints one file's hooks; give one file (got {})",
            inputs.len()
        );
        return Outcome::UsageOrIo;
    }
    if inputs.iter().filter(|input| input.is_stdin()).count() > 1 {
        errln!("error: standard input (`-`) can be read only once");
        return Outcome::UsageOrIo;
    }
    // Every file is checked even once standard output is gone (`| head -1`): the exit code
    // still speaks for all of them.
    inputs
        .iter()
        .map(|input| check(input, args))
        .fold(Outcome::Success, worse)
}

/// Checks one file, printing what it found; its outcome.
fn check(input: &Input, args: &Args) -> Outcome {
    let parsed = match read_hooks(input) {
        Ok(parsed) => parsed,
        Err(outcome) => return outcome,
    };
    let name = input.name();
    if args.strict && !parsed.warnings.is_empty() {
        let n = parsed.warnings.len();
        errln!(
            "{name}: invalid under --strict, {n} warning{}",
            if n == 1 { "" } else { "s" }
        );
        return Outcome::Invalid;
    }
    if args.normalized {
        let json = serde_json::to_string_pretty(&parsed.hooks).expect("hooks serialize");
        let _ = outln!("{json}");
    } else {
        let n = parsed.hooks.len();
        let _ = outln!("{name}: valid, {n} hook{}", if n == 1 { "" } else { "s" });
    }
    Outcome::Success
}

/// The worse of two outcomes, for the exit code over several files.
fn worse(a: Outcome, b: Outcome) -> Outcome {
    let rank = |o: Outcome| match o {
        Outcome::Success => 0,
        Outcome::Invalid => 1,
        _ => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}
