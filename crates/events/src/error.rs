//! Why an event was refused.

/// Why an event was refused: not JSON, or not a valid event (with the JSON path and reason).
///
/// Opaque so that kinds can be added without breaking users.
///
/// ```
/// use linq_hooks_events::parse_event;
///
/// let err = parse_event("{").unwrap_err();
/// assert!(err.is_syntax());
///
/// let err = parse_event(r#"{"event": "new_plan", "plan_id": "p"}"#).unwrap_err();
/// assert!(err.is_invalid());
/// assert_eq!(err.path(), Some("timestamp"));
/// assert_eq!(err.to_string(), "timestamp: missing required field `timestamp`");
///
/// // The message names the problem; for text that is not JSON, the parser's error is the
/// // source.
/// let err = parse_event("{").unwrap_err();
/// assert_eq!(err.to_string(), "invalid JSON");
/// let cause = std::error::Error::source(&err).unwrap();
/// assert_eq!(cause.to_string(), "EOF while parsing an object at line 1 column 1");
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("invalid JSON")]
    Syntax(#[source] serde_json::Error),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Error {
    pub(crate) fn syntax(source: serde_json::Error) -> Error {
        Error {
            kind: Kind::Syntax(source),
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            kind: Kind::Invalid {
                path: path.into(),
                message: message.into(),
            },
        }
    }

    /// From serde's error with the path where it happened. Serde reports a missing field at the
    /// object that lacks it; we name the field itself, as users look for it there.
    pub(crate) fn from_path(error: serde_path_to_error::Error<serde_json::Error>) -> Error {
        let mut path = error.path().to_string();
        let mut message = error.inner().to_string();
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            path = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            message = format!("missing required field `{field}`");
        }
        if path == "." {
            path = "$".into();
        }
        Error::invalid(path, message)
    }

    /// True when the text is not JSON at all.
    pub fn is_syntax(&self) -> bool {
        matches!(self.kind, Kind::Syntax(_))
    }

    /// True when the text is JSON but not a valid event.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Invalid { .. })
    }

    /// The JSON path of the offending value (`$` for the whole event), for an invalid event.
    pub fn path(&self) -> Option<&str> {
        match &self.kind {
            Kind::Invalid { path, .. } => Some(path),
            Kind::Syntax(_) => None,
        }
    }

    /// For a syntax error, the 1-based line and the column where the JSON parser stopped.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match &self.kind {
            Kind::Syntax(e) => Some((e.line(), e.column())),
            Kind::Invalid { .. } => None,
        }
    }
}
