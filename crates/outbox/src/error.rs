//! The store's errors.

use std::fmt;

/// Why the store could not do what was asked.
///
/// Opaque so that kinds can be added; ask it with the `is_*` methods.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("outbox-doc-error-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let err = linq_hooks_outbox::Store::open(dir.join("no/such/dir/store.redb"), 1, "fingerprint").unwrap_err();
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
    /// The store holds pending deliveries made for a different hook list.
    HooksChanged { pending: u64 },
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

    pub(crate) fn hooks_changed(pending: u64) -> StoreError {
        StoreError {
            kind: Kind::HooksChanged { pending },
            source: None,
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

    /// The store holds pending deliveries made for a different hook list (indices would point
    /// at other hooks).
    pub fn is_hooks_changed(&self) -> bool {
        matches!(self.kind, Kind::HooksChanged { .. })
    }

    /// The store is shutting down.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Storage(context) => match &self.source {
                Some(source) => write!(f, "{context}: {source}"),
                None => f.write_str(context),
            },
            Kind::HooksChanged { pending } => write!(
                f,
                "the store holds {pending} pending deliveries made for a different hook list; \
                 start with the hook file they were made for (and let them drain), or use another store"
            ),
            Kind::Closed => f.write_str("the store is closed"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
