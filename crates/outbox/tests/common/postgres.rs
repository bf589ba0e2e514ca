//! A fresh PostgreSQL database per test, on the server named by `LINQ_HOOKS_TEST_POSTGRES`
//! (a superuser URL such as `postgres://postgres@127.0.0.1:5432/postgres`; `.ci/run` starts a
//! throwaway one and sets it, see `.ci/postgres.sh`).
//!
//! Other crates' tests include this file as it is (it needs only `tokio-postgres` and `tokio`
//! with `rt` as dev-dependencies):
//!
//! ```ignore
//! #[path = "../../outbox/tests/common/postgres.rs"]
//! mod postgres;
//!
//! #[tokio::test]
//! async fn works_on_postgres() {
//!     let Some(url) = postgres::fresh_database() else {
//!         return; // said loudly: SKIPPED
//!     };
//!     // ... `serve --store {url}` ...
//! }
//! ```
#![allow(dead_code)] // each test binary uses its own part

use std::io::Write;

/// The variable naming the test PostgreSQL.
pub const VARIABLE: &str = "LINQ_HOOKS_TEST_POSTGRES";

/// Creates a new, empty database `t_<random>` on the test PostgreSQL and returns its URL (the
/// server's URL with the database name replaced; its query, such as `sslmode`, kept).
///
/// `None` when `LINQ_HOOKS_TEST_POSTGRES` is not set, after saying so on stderr past the test
/// harness's capture (so that a skipped test is seen): `SKIPPED: PostgreSQL tests need
/// LINQ_HOOKS_TEST_POSTGRES (.ci/run starts one)`. With `CI=true` an unset variable panics
/// instead: CI must run them.
///
/// Panics when the variable is set but the database cannot be created (the server is down, the
/// URL is wrong): a test that was asked to run on PostgreSQL fails rather than skips.
///
/// Blocking (it runs its own small runtime on a thread of its own), so it may be called from
/// a synchronous test or from within an async one. The databases are left behind: on CI the
/// whole cluster is removed after the run.
pub fn fresh_database() -> Option<String> {
    let server = match std::env::var(VARIABLE) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            let test = std::thread::current()
                .name()
                .unwrap_or("a test")
                .to_string();
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{test}: CI=true but {VARIABLE} is not set: the PostgreSQL tests must run \
                     (.ci/run starts a PostgreSQL and sets it)"
                );
            }
            // Straight to the process's stderr: `eprintln!` would be captured, and a passing
            // test's output is never shown.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: PostgreSQL tests need {VARIABLE} (.ci/run starts one): {test}"
            );
            return None;
        }
    };
    let name = format!("t_{:016x}", random());
    let url = with_database(&server, &name);
    let create = format!("CREATE DATABASE {name}");
    let created = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for creating the test database")
                    .block_on(async {
                        let (client, connection) =
                            tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
                        let connection = tokio::spawn(connection);
                        let result = client.batch_execute(&create).await;
                        drop(client);
                        let _ = connection.await;
                        result
                    })
            })
            .join()
            .expect("the thread creating the test database")
    });
    if let Err(e) = created {
        panic!("{VARIABLE}={server}: cannot create the test database {name}: {e:?}");
    }
    Some(url)
}

/// `url` with its database (the path) replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let Some((scheme, rest)) = base.split_once("://") else {
        panic!("{VARIABLE}={url}: expected a URL, postgres://user@host:port/database");
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// 64 random bits: the standard library's randomly seeded hasher over the time, the process
/// and a counter (no dependency needed in the crates that include this file).
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}
