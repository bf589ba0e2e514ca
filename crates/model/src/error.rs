//! Errors and diagnostics: every problem carries the JSON path where it was found.

use std::fmt;

/// One problem (or warning) found in a document, with the JSON path where it was found.
///
/// Paths use the familiar dotted form: `hooks[2].parameters.url`; keys that are not plain
/// identifiers are quoted (`headers["X Y"]`), and the document itself is `$`.
///
/// ```
/// let err = linq_hooks_model::parse_hooks(r#"{"hooks": [{"filter": "on_new_plan"}]}"#).unwrap_err();
/// let problem = &err.problems()[0];
/// assert_eq!(problem.path(), "hooks[0].parameters");
/// assert_eq!(problem.message(), "missing required field `parameters`");
/// assert_eq!(problem.to_string(), "hooks[0].parameters: missing required field `parameters`");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    path: String,
    message: String,
}

impl Diagnostic {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
        }
    }

    /// The JSON path of the offending value (`$` for the whole document).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong there, in a short sentence without a trailing period.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a hook document was refused.
///
/// The error is opaque so that new kinds can be added without breaking users: ask it what it is
/// with [`is_syntax`](Error::is_syntax) and [`is_invalid`](Error::is_invalid), and list its
/// [`problems`](Error::problems).
///
/// ```
/// use linq_hooks_model::parse_hooks;
///
/// let err = parse_hooks("[{\"filter\": \n").unwrap_err();
/// assert!(err.is_syntax());
/// assert_eq!(err.line_column(), Some((2, 0)));
///
/// let err = parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "ftp://x"}}, 7]"#).unwrap_err();
/// assert!(err.is_invalid());
/// assert_eq!(err.problems().len(), 2);
/// ```
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Syntax(serde_json::Error),
    Invalid(Vec<Diagnostic>),
}

impl Error {
    pub(crate) fn syntax(source: serde_json::Error) -> Self {
        Error {
            kind: Kind::Syntax(source),
        }
    }

    pub(crate) fn invalid(problems: Vec<Diagnostic>) -> Self {
        debug_assert!(!problems.is_empty());
        Error {
            kind: Kind::Invalid(problems),
        }
    }

    /// True when the text is not JSON at all; see [`line_column`](Error::line_column).
    pub fn is_syntax(&self) -> bool {
        matches!(self.kind, Kind::Syntax(_))
    }

    /// True when the text is JSON but not a valid hook document; see [`problems`](Error::problems).
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid(_))
    }

    /// Every problem found, in document order. Empty for a syntax error.
    pub fn problems(&self) -> &[Diagnostic] {
        match &self.kind {
            Kind::Invalid(problems) => problems,
            Kind::Syntax(_) => &[],
        }
    }

    /// For a syntax error, the 1-based line and the column where the JSON parser stopped.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match &self.kind {
            Kind::Syntax(e) => Some((e.line(), e.column())),
            Kind::Invalid(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            // Only this level: serde_json's own message is the source (ARCHITECTURE.md, "one
            // error rule").
            Kind::Syntax(_) => f.write_str("invalid JSON"),
            Kind::Invalid(problems) => {
                write!(f, "{}", problems[0])?;
                match problems.len() {
                    1 => Ok(()),
                    2 => write!(f, " (and 1 more problem)"),
                    n => write!(f, " (and {} more problems)", n - 1),
                }
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Syntax(e) => Some(e),
            Kind::Invalid(_) => None,
        }
    }
}
