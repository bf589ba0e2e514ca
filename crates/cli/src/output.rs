//! Standard output and standard error, for every command: the one place that decides what a
//! failed write means (`outln!` and `errln!` instead of `println!` and `eprintln!`).
//!
//! A reader that stops reading (`linq-hooks validate --normalized FILE | head -1`) closes the
//! pipe, and the next write fails with `BrokenPipe`. That is the reader's choice, not an error:
//! the command stops printing, quietly, and exits with the code it would have had anyway (0
//! when nothing else went wrong). Any other write error (a full disk) is printed once on stderr
//! and makes the exit code 2. `println!` would panic in both cases instead. A failed write on
//! standard error is ignored: there is no one left to tell.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::{Outcome, report};

/// Nothing failed yet.
const WRITING: u8 = 0;
/// The reader closed standard output.
const READER_GONE: u8 = 1;
/// Writing failed otherwise (the error was printed).
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(WRITING);

/// Standard output cannot be written any more: stop printing. What it means for the exit code
/// is decided by [`outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Writes one line (the text and `\n`) on standard output and flushes it, so each line reaches
/// a pipe as soon as it is made. After a failed write, writes nothing more.
///
/// Use it through `outln!`.
pub(crate) fn line(args: fmt::Arguments<'_>) -> Result<(), Stopped> {
    if STATE.load(Ordering::SeqCst) != WRITING {
        return Err(Stopped);
    }
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(failed)
}

/// Records a failed write on standard output (for commands that write through a buffer of
/// their own): a closed pipe quietly, anything else printed on stderr once.
pub(crate) fn failed(error: std::io::Error) -> Stopped {
    let state = if error.kind() == std::io::ErrorKind::BrokenPipe {
        READER_GONE
    } else {
        FAILED
    };
    if STATE
        .compare_exchange(WRITING, state, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
        && state == FAILED
    {
        error_line(format_args!(
            "error: cannot write to standard output: {}",
            report::chain(&error)
        ));
    }
    Stopped
}

/// The exit outcome once the command returned `outcome`: unchanged, unless writing standard
/// output failed for another reason than a closed pipe ([`Outcome::UsageOrIo`] then).
pub(crate) fn outcome(outcome: Outcome) -> Outcome {
    match STATE.load(Ordering::SeqCst) {
        FAILED if outcome == Outcome::Success => Outcome::UsageOrIo,
        _ => outcome,
    }
}

/// `println!` that does not panic: writes a line with [`line()`], returning
/// `Result<(), Stopped>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line on standard error, ignoring a failure: standard error is where failures are
/// told, so when it is gone (`linq-hooks validate *.json 2>&1 | head -1`) there is no one left
/// to tell, and `eprintln!` would panic instead. Every message of the CLI goes through it.
pub(crate) fn error_line(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` that does not panic: [`error_line`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::error_line(format_args!($($arg)*))
    };
}
pub(crate) use errln;
