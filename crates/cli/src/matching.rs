//! `linq-hooks match`: which of my hooks would fire on these events?

use std::ops::ControlFlow;
use std::path::PathBuf;

use linq_hooks_filter::Matcher;

use crate::Outcome;
use crate::input::{Input, read_event_lines, read_hooks};
use crate::output::errln;
use crate::output::outln;

/// For each event, print the indices of the hooks that fire, as a JSON array such as `[0,3]`.
///
/// Reads events as `dispatch` does: one JSON object per line (NDJSON), answering each line as
/// it is read, so a stream that is still coming (`simulate --rate 2 | match --hooks F`) is
/// answered as it comes. Indices count from 0 in the order of the hook file (any shape
/// `validate` reads). A line that is not an event is reported on stderr with its line number,
/// gets no answer, and the lines after it are still read.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: one line per event, in the order of the events: the indices of the hooks \
that fire, `[]` when none does.\n\nExit codes: 0 every event matched (even if no hook fires), 1 \
invalid hook file or some invalid event lines (each listed on stderr), 2 usage or I/O error."
)]
pub(crate) struct Args {
    /// The hook file: one hook, an array of hooks, `{"hooks": [...]}`, or the LINQ API's
    /// workflow document (hooks at `workflow.hooks`).
    #[arg(long, value_name = "FILE")]
    hooks: PathBuf,
    /// The events, one JSON object per line; `-` or nothing reads standard input.
    events: Option<PathBuf>,
}

pub(crate) fn run(args: &Args) -> Outcome {
    let hooks_input = Input::new(Some(args.hooks.clone()));
    if hooks_input.is_stdin() {
        errln!("error: --hooks needs a file; standard input is for the events");
        return Outcome::UsageOrIo;
    }
    let hooks = match read_hooks(&hooks_input) {
        Ok(parsed) => parsed.hooks,
        Err(outcome) => return outcome,
    };
    let events = Input::new(args.events.clone()).of("events");
    let reader = match events.open() {
        Ok(reader) => reader,
        Err(message) => {
            errln!("error: {message}");
            return Outcome::UsageOrIo;
        }
    };
    let matcher = Matcher::new(&hooks);
    let read = read_event_lines(
        reader,
        &events.name(),
        |problem| errln!("{problem}"),
        |event| {
            let matching =
                serde_json::to_string(&matcher.matching(&event)).expect("indices serialize");
            match outln!("{matching}") {
                Ok(()) => ControlFlow::Continue(()),
                // No one reads the answers: stop reading the events.
                Err(_) => ControlFlow::Break(()),
            }
        },
    );
    match read {
        Ok(read) if read.invalid > 0 => Outcome::Invalid,
        Ok(_) => Outcome::Success,
        Err(message) => {
            errln!("error: {message}");
            Outcome::UsageOrIo
        }
    }
}
