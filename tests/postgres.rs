//! Reading a PostgreSQL store's tables from outside `serve`, with `psql` (Debian's
//! `postgresql-client`): which processes share it and who holds which hook's lease. For the
//! CLI's cluster test and the bench.

use std::collections::{BTreeMap, HashSet};

/// Runs one SQL statement on `url` with `psql`; its rows, columns separated by `|`.
///
/// Panics if `psql` cannot run or the statement fails (naming it and psql's message).
pub async fn psql(url: &str, sql: &str) -> Vec<String> {
    let out = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .await
        .expect("psql runs (Debian's postgresql-client)");
    assert!(
        out.status.success(),
        "psql: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The owners in the `processes` table (one per live `serve`); none before the first process
/// has made the table.
pub async fn processes(url: &str) -> HashSet<String> {
    if psql(url, "SELECT to_regclass('processes') IS NULL").await == ["t"] {
        return HashSet::new();
    }
    psql(url, "SELECT owner FROM processes")
        .await
        .into_iter()
        .collect()
}

/// The `leases` table: hook (`hooks.id`, the `N` of `hook_N`) -> owner.
pub async fn leases(url: &str) -> BTreeMap<u64, String> {
    psql(url, "SELECT hook, owner FROM leases")
        .await
        .iter()
        .map(|line| {
            let (hook, owner) = line.split_once('|').expect("hook|owner");
            (hook.parse().expect("a hook id"), owner.to_string())
        })
        .collect()
}
