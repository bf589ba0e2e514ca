//! How the CLI prints an error: the one place that walks an error's chain of causes.

use std::error::Error;

/// An error and its causes, `outer: inner: innermost`: each error's `Display` says its own
/// level only and `source()` carries the rest (ARCHITECTURE.md, "Choices"), so the chain is
/// what says why.
///
/// A cause is skipped when the error before it printed it already, as all of its message or
/// after a `: `. Errors outside this workspace sometimes do (a transparent wrapper such as
/// `axum::Error`, or one that writes `{message}: {source}`), and a cause is worth saying once.
pub(crate) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut previous = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        let said = previous == cause_text || previous.ends_with(&format!(": {cause_text}"));
        if !said {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        previous = cause_text;
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message of its own and, optionally, a source.
    #[derive(Debug)]
    struct Level(&'static str, Option<Box<Level>>);

    impl std::fmt::Display for Level {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Level {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn level(text: &'static str, source: Option<Level>) -> Level {
        Level(text, source.map(Box::new))
    }

    #[test]
    fn each_level_once_outermost_first() {
        let cases = [
            (level("a", None), "a"),
            (
                level("a", Some(level("b", Some(level("c", None))))),
                "a: b: c",
            ),
            // A transparent wrapper, and one that prints its source too: said once.
            (level("b", Some(level("b", None))), "b"),
            (
                level("a: b", Some(level("b", Some(level("c", None))))),
                "a: b: c",
            ),
            // Only a cause printed whole is dropped; the same words in a message are kept.
            (level("bad a", Some(level("a", None))), "bad a: a"),
            (level("a is bad", Some(level("a", None))), "a is bad: a"),
            // A repeat two levels down is a level of its own.
            (
                level("a", Some(level("b", Some(level("a", None))))),
                "a: b: a",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(chain(&error), expected, "{error:?}");
        }
    }
}
