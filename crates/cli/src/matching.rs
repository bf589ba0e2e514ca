//! `linq-hooks match`: which of my hooks would fire on this event?

use std::path::PathBuf;

use linq_hooks_filter::Matcher;

use crate::Outcome;
use crate::input::{Input, read_event, read_hooks};

/// Print the indices of the hooks that fire for one event, as a JSON array such as `[0,3]`.
///
/// Indices count from 0 in the order of the hook file (any shape `validate` reads).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 matched (even if no hook fires), 1 invalid hook file or event, 2 usage or I/O error."
)]
pub(crate) struct Args {
    /// The hook file: one hook, an array of hooks, `{"hooks": [...]}`, or the LINQ API's
    /// workflow document (hooks at `workflow.hooks`).
    #[arg(long, value_name = "FILE")]
    hooks: PathBuf,
    /// The event (one JSON object); `-` or nothing reads standard input.
    event: Option<PathBuf>,
}

pub(crate) fn run(args: &Args) -> Outcome {
    let hooks_input = Input::new(Some(args.hooks.clone()));
    if hooks_input.is_stdin() {
        eprintln!("error: --hooks needs a file; standard input is for the event");
        return Outcome::UsageOrIo;
    }
    let hooks = match read_hooks(&hooks_input) {
        Ok(parsed) => parsed.hooks,
        Err(outcome) => return outcome,
    };
    let event = match read_event(&Input::new(args.event.clone())) {
        Ok(event) => event,
        Err(outcome) => return outcome,
    };
    let matching = Matcher::new(&hooks).matching(&event);
    println!(
        "{}",
        serde_json::to_string(&matching).expect("indices serialize")
    );
    Outcome::Success
}
