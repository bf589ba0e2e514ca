//! The process's limit on open files: raised at start, and shared between the API's
//! connections and everything else `serve` opens.

use crate::output::errln;

/// The most open files asked for: Linux's default ceiling (`fs.nr_open`), since a hard limit of
/// "unlimited" cannot be given to the soft one.
const WANTED: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard limit (capped at [`WANTED`]): a server
/// holding many connections must not fail with "Too many open files" at a soft limit of 1024
/// while the system would allow more. Returns the soft limit now in force; `None` when it
/// cannot be read or raised (logged; the process goes on with what it has).
pub(crate) fn raise_open_files() -> Option<u64> {
    match rlimit::increase_nofile_limit(WANTED) {
        Ok(soft) => {
            tracing::debug!(limit = soft, "open-file limit");
            Some(soft)
        }
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot raise the open-file limit"
            );
            None
        }
    }
}

/// The connection cap that leaves descriptors for everything else: deliveries (each request
/// in flight and each pooled connection is one), the store, the listener, standard streams.
/// With an open-file limit of `open_files`, at most three quarters of it go to connections,
/// and at least 256 descriptors stay for the rest. Lowering `wanted` is said on stderr.
pub(crate) fn connection_cap(wanted: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return wanted;
    };
    let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
    let reserve = (open_files / 4).max(256);
    let most = open_files.saturating_sub(reserve).max(1);
    if wanted > most {
        errln!(
            "linq-hooks serve: --max-connections {wanted} lowered to {most}: the open-file limit is \
             {open_files}, and {reserve} descriptors are kept for deliveries and the store"
        );
        return most;
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn the_cap_leaves_descriptors_for_deliveries() {
        // (wanted, limit, cap)
        let cases: [(usize, Option<u64>, usize); 6] = [
            (1024, None, 1024),
            (1024, Some(1 << 20), 1024),
            (1024, Some(1024), 768),
            (1024, Some(512), 256),
            (1024, Some(100), 1),
            (10, Some(1024), 10),
        ];
        for (wanted, limit, cap) in cases {
            assert_eq!(
                connection_cap(wanted, limit),
                cap,
                "{wanted} with {limit:?}"
            );
        }
    }
}
