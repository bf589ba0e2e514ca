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
    /// Reading or writing the store failed (disk full, unwritable).
    Storage(String),
    /// The store file is damaged: a record failed its checksum, redb found its structures
    /// broken (or panicked on them), or the file is empty.
    Damaged(String),
    /// Another process (or another `Store` in this one) has the file open: redb locks it.
    InUse(String),
    /// The store's writer has stopped.
    Closed,
}

impl StoreError {
    /// redb's error; one that says the file is corrupted is a damaged store.
    pub(crate) fn storage(
        context: impl Into<String>,
        source: impl Into<redb::Error>,
    ) -> StoreError {
        let source = source.into();
        let kind = if matches!(source, redb::Error::Corrupted(_)) {
            Kind::Damaged(context.into())
        } else if matches!(source, redb::Error::DatabaseAlreadyOpen) {
            Kind::InUse(context.into())
        } else {
            Kind::Storage(context.into())
        };
        StoreError {
            kind,
            source: Some(Box::new(source)),
        }
    }

    /// This error's sources, `b: c` (its own message left out).
    pub(crate) fn causes(&self) -> String {
        let mut text = Vec::new();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            text.push(e.to_string());
            source = e.source();
        }
        text.join(": ")
    }

    /// The PostgreSQL store's error (`source`: tokio-postgres's, the pool's, or a reason): a
    /// storage error, as a failing disk is for the redb store.
    #[cfg(feature = "postgres")]
    pub(crate) fn database(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError {
            kind: Kind::Storage(context.into()),
            source: Some(source.into()),
        }
    }

    pub(crate) fn damaged(context: impl Into<String>, detail: impl Into<String>) -> StoreError {
        StoreError {
            kind: Kind::Damaged(context.into()),
            source: Some(detail.into().into()),
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

    /// Reading or writing the store failed: a full disk, an unwritable path, a damaged file
    /// (then [`is_damaged`](StoreError::is_damaged) too); for the PostgreSQL store, a database
    /// that cannot be reached or refused a statement (a lost connection, a timeout).
    pub fn is_storage(&self) -> bool {
        matches!(self.kind, Kind::Storage(_) | Kind::Damaged(_))
    }

    /// The store file is damaged: an existing file that is empty (refused at opening), a
    /// record that fails its checksum, or redb's own structures broken (its panics on them
    /// are caught and reported as this). The source says what was found.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("outbox-doc-damaged-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("truncated.redb");
    /// std::fs::write(&path, b"").unwrap(); // a store truncated to 0 bytes
    /// let err = linq_hooks_outbox::Store::open(&path).unwrap_err();
    /// assert!(err.is_damaged());
    /// assert!(err.to_string().contains("is empty"));
    /// ```
    pub fn is_damaged(&self) -> bool {
        matches!(self.kind, Kind::Damaged(_))
    }

    /// The store file is open elsewhere: another process (another `linq-hooks serve`, most
    /// likely) or another [`Store`](crate::Store) of this one holds it, and redb's lock on the
    /// file lets one opener at a time. Nothing was changed; open it again once the other has
    /// let go.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("outbox-doc-in-use-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("store.redb");
    /// let first = linq_hooks_outbox::Store::open(&path).unwrap();
    /// let err = linq_hooks_outbox::Store::open(&path).unwrap_err();
    /// assert!(err.is_in_use());
    /// assert!(!err.is_damaged());
    /// drop(first);
    /// ```
    pub fn is_in_use(&self) -> bool {
        matches!(self.kind, Kind::InUse(_))
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
            Kind::Storage(context) | Kind::Damaged(context) | Kind::InUse(context) => {
                f.write_str(context)
            }
            Kind::Closed => f.write_str("the store is closed"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
