//! Reading a command's input: a file path, or `-` (or nothing) for standard input.

use std::io::Read;
use std::path::PathBuf;

use linq_hooks_events::{Event, parse_event};
use linq_hooks_model::{ParsedHooks, parse_hooks};

use crate::{Outcome, report};

/// A named input: a file, or standard input when the path is `-` or absent.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    path: Option<PathBuf>,
}

impl Input {
    pub(crate) fn new(path: Option<PathBuf>) -> Input {
        Input {
            path: path.filter(|p| p.as_os_str() != "-"),
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
            None => Ok(Box::new(std::io::BufReader::new(std::io::stdin()))),
        }
    }

    /// Reads the whole input as UTF-8 text; the error message names the input.
    pub(crate) fn read_to_string(&self) -> Result<String, String> {
        let result = match &self.path {
            Some(path) => std::fs::read_to_string(path),
            None => {
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
            eprintln!("error: {name}: {}", report::chain(&err));
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

/// Reads one event, printing the problem on stderr. The error is the outcome to exit with:
/// [`Outcome::UsageOrIo`] when unreadable, [`Outcome::Invalid`] when invalid.
pub(crate) fn read_event(input: &Input) -> Result<Event, Outcome> {
    let text = input.read_to_string().map_err(|message| {
        eprintln!("error: {message}");
        Outcome::UsageOrIo
    })?;
    parse_event(&text).map_err(|err| {
        eprintln!("error: {}: {}", input.name(), report::chain(&err));
        Outcome::Invalid
    })
}
