//! The store's errors.

use std::fmt;

/// Why the store could not do what was asked.
///
/// Opaque so that kinds can be added; ask it with the `is_*` methods.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("outbox-doc-error-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let err = linq_hooks_outbox::Store::open(dir.join("no/such/dir/store.redb")).unwrap_err();
/// assert!(err.is_storage());
/// assert!(err.to_string().starts_with("cannot open the store"));
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: Kind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug)]
enum Kind {
    /// Reading or writing the store failed (disk full, unwritable, corrupt).
    Storage(String),
    /// The store's writer has stopped.
    Closed,
}

impl StoreError {
    pub(crate) fn storage(
        context: impl Into<String>,
        source: impl Into<redb::Error>,
    ) -> StoreError {
        StoreError {
            kind: Kind::Storage(context.into()),
            source: Some(Box::new(source.into())),
        }
    }

    pub(crate) fn closed() -> StoreError {
        StoreError {
            kind: Kind::Closed,
            source: None,
        }
    }

    pub(crate) fn corrupt(what: String) -> StoreError {
        StoreError {
            kind: Kind::Storage(what),
            source: None,
        }
    }

    /// Reading or writing the store failed: a full disk, an unwritable path, a damaged file.
    pub fn is_storage(&self) -> bool {
        matches!(self.kind, Kind::Storage(_))
    }

    /// The store is shutting down.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            // Only this level: the cause is the source (ARCHITECTURE.md, "one error rule").
            Kind::Storage(context) => f.write_str(context),
            Kind::Closed => f.write_str("the store is closed"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
