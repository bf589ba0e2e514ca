//! Reading a command's input: a file path, or `-` (or nothing) for standard input.

use std::io::{BufRead, IsTerminal, Read};
use std::ops::ControlFlow;
use std::path::PathBuf;

use linq_hooks_events::{Event, parse_event};
use linq_hooks_model::{ParsedHooks, parse_hooks};

use crate::output::errln;
use crate::{Outcome, report};

/// A named input: a file, or standard input when the path is `-` or absent.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    path: Option<PathBuf>,
    /// What is read, in the words of the hint on a terminal (`hooks`, `events`).
    what: &'static str,
}

/// What a terminal says ends the input.
#[cfg(unix)]
const END_OF_INPUT: &str = "Ctrl-D";
#[cfg(not(unix))]
const END_OF_INPUT: &str = "Ctrl-Z then Enter";

impl Input {
    pub(crate) fn new(path: Option<PathBuf>) -> Input {
        Input {
            path: path.filter(|p| p.as_os_str() != "-"),
            what: "input",
        }
    }

    /// Names what is read (`hooks`, `events`), for the hint printed when it is a terminal.
    pub(crate) fn of(mut self, what: &'static str) -> Input {
        self.what = what;
        self
    }

    /// When this input is standard input and a terminal, says on stderr that the command waits
    /// for it: a user who forgot the file name otherwise sees a command that hangs.
    fn hint_if_terminal(&self) {
        if self.path.is_none() && std::io::stdin().is_terminal() {
            errln!(
                "reading {} from standard input (a terminal); end with {END_OF_INPUT}",
                self.what
            );
        }
    }

    /// Whether this input is standard input.
    pub(crate) fn is_stdin(&self) -> bool {
        self.path.is_none()
    }

    /// The name to show in messages: the path, or `<stdin>`.
    pub(crate) fn name(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "<stdin>".to_string(),
        }
    }

    /// Opens the input for reading line by line; the error message names the input.
    pub(crate) fn open(&self) -> Result<Box<dyn std::io::BufRead + Send>, String> {
        match &self.path {
            Some(path) => std::fs::File::open(path)
                .map(|file| {
                    Box::new(std::io::BufReader::new(file)) as Box<dyn std::io::BufRead + Send>
                })
                .map_err(|e| format!("cannot read {}: {}", self.name(), report::chain(&e))),
            None => {
                self.hint_if_terminal();
                Ok(Box::new(std::io::BufReader::new(std::io::stdin())))
            }
        }
    }

    /// Reads the whole input as UTF-8 text; the error message names the input.
    pub(crate) fn read_to_string(&self) -> Result<String, String> {
        let result = match &self.path {
            Some(path) => std::fs::read_to_string(path),
            None => {
                self.hint_if_terminal();
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).map(|_| text)
            }
        };
        result.map_err(|e| format!("cannot read {}: {}", self.name(), report::chain(&e)))
    }
}

/// Reads and checks a hook file, printing warnings and problems on stderr. The error is the
/// outcome to exit with: [`Outcome::UsageOrIo`] when unreadable, [`Outcome::Invalid`] when invalid.
pub(crate) fn read_hooks(input: &Input) -> Result<ParsedHooks, Outcome> {
    let name = input.name();
    let text = input.read_to_string().map_err(|message| {
        errln!("error: {message}");
        Outcome::UsageOrIo
    })?;
    match parse_hooks(&text) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                errln!("warning: {name}: {warning}");
            }
            Ok(parsed)
        }
        Err(err) if err.is_syntax() => {
            errln!("error: {name}: {}", report::chain(&err));
            Err(Outcome::Invalid)
        }
        Err(err) => {
            for problem in err.problems() {
                errln!("error: {name}: {problem}");
            }
            let n = err.problems().len();
            errln!(
                "{name}: invalid, {n} problem{}",
                if n == 1 { "" } else { "s" }
            );
            Err(Outcome::Invalid)
        }
    }
}

/// What reading an event stream found.
#[derive(Debug, Default)]
pub(crate) struct EventLines {
    /// Lines that were not an event (each reported through `invalid`).
    pub(crate) invalid: usize,
}

/// Reads an event stream, one JSON event per line (NDJSON; blank lines skipped), as `dispatch`
/// and `match` take it: each event goes to `each` as soon as its line is read (so a stream that
/// is still coming is handled as it comes), which may stop the reading with
/// `ControlFlow::Break`. A line that is not an event is counted and reported to `invalid` as
/// `error: NAME:LINE: why`; the lines after it are still read.
///
/// The error is the message for a stream that could not be read.
pub(crate) fn read_event_lines(
    reader: Box<dyn BufRead + Send>,
    name: &str,
    mut invalid: impl FnMut(&str),
    mut each: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<EventLines, String> {
    let mut read = EventLines::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {name}: {}", report::chain(&e)))?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_event(&line) {
            Ok(event) => {
                if each(event).is_break() {
                    break;
                }
            }
            Err(err) => {
                // A document spread over lines (pretty-printed, or an array) has a first line
                // whose JSON ends before it is complete: say what the reader expects.
                let cut_short =
                    serde_json::from_str::<serde_json::Value>(&line).is_err_and(|e| e.is_eof());
                let hint = if read.invalid == 0 && cut_short {
                    " (events are read one per line, as NDJSON; a pretty-printed event or an \
                     array spans lines: `jq -c` writes one event a line)"
                } else {
                    ""
                };
                invalid(&format!(
                    "error: {name}:{}: {}{hint}",
                    i + 1,
                    report::chain(&err)
                ));
                read.invalid += 1;
            }
        }
    }
    Ok(read)
}
