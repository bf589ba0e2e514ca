//! The conformance suite: what `serve` relies on of a store, the same test functions run against
//! each store through [`DurableOutbox`] (`Arc<dyn DurableOutbox>`, as the service holds it):
//! `redb::<module>::<test>` on a fresh redb file, `postgres::<module>::<test>` on a fresh
//! PostgreSQL database (feature `postgres`; the server named by `LINQ_HOOKS_TEST_POSTGRES`,
//! which `.ci/run` starts: without it those tests say `SKIPPED` and pass, unless `CI=true`).
//! The modules: `outbox` (append, head, record, the dispatcher on the store), `operations`
//! (replay, retry, recover, enable, prune), `reads` (counts, listings, pages), `registry`.
//!
//! Each test function takes a fresh, empty store. Outcomes are [`Outbox::record`]ed then
//! [`Outbox::flush`]ed (the redb store writes them behind) before anything but the head reads
//! them. Ids are never assumed: what a store hands out is read from its answers, and only their
//! order is relied on (a delivery appended later has a higher id).
//!
//! Run one store: `cargo test -p linq-hooks-outbox --features postgres --test conformance postgres::`.

mod common;
#[path = "common/postgres.rs"]
mod pg;

// The test functions, by concern (`tests/conformance/*.rs`); `conformance!` below lists them.
#[path = "conformance/operations.rs"]
mod operations;
#[path = "conformance/outbox.rs"]
mod outbox;
#[path = "conformance/reads.rs"]
mod reads;
#[path = "conformance/registry.rs"]
mod registry;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{attempt, distinct_hooks, event, hooks, secret, store_path};
use linq_hooks_delivery::{
    Attempt, AttemptResult, Config, Delivery, DeliveryId, Destination, Dispatcher, Head, HookId,
    Outbox, Outcome,
};
use linq_hooks_model::HookParameters;
use linq_hooks_outbox::{
    Appended, DeliveryFilter, DeliveryState, DurableOutbox, HookRetry, IdempotencyKey, Recovery,
    Replay, Retry, StatusClass,
};
use linq_hooks_transport::{MemoryTransport, Response};

/// A store as `serve` holds it.
type Store = Arc<dyn DurableOutbox>;

/// A fresh redb store for test `name`.
fn redb_store(name: &str) -> Store {
    let path = store_path(&format!("conformance-{name}"));
    Arc::new(linq_hooks_outbox::Store::open(path).expect("a fresh redb store"))
}

/// A PostgreSQL store on a fresh database; `None` (said loudly) when there is no test server.
#[cfg(feature = "postgres")]
async fn postgres_store() -> Option<Store> {
    let url = pg::fresh_database()?;
    let options = linq_hooks_outbox::PgOptions::new(&url).expect("the test database's URL");
    let store = linq_hooks_outbox::PgStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"));
    Some(Arc::new(store))
}

/// Opens the store a test function was given again, as a restart of `serve` does (the test
/// lets go of the first handle before it calls this).
type Reopen = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = Store> + Send>> + Send + Sync>;

/// What is committed is there after a restart, on each store.
mod reopened {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redb() {
        let path = store_path("conformance-reopened");
        let open = move || -> Store {
            Arc::new(linq_hooks_outbox::Store::open(&path).expect("the store opens again"))
        };
        let first = open();
        let reopen: Reopen = Box::new(move || {
            let store = open();
            Box::pin(async move { store })
        });
        outbox::what_is_committed_survives_reopening(first, reopen).await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(url) = pg::fresh_database() else {
            return;
        };
        let open = move || {
            let url = url.clone();
            Box::pin(async move {
                let options = linq_hooks_outbox::PgOptions::new(&url).unwrap();
                let store = linq_hooks_outbox::PgStore::connect(options)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"));
                Arc::new(store) as Store
            }) as std::pin::Pin<Box<dyn Future<Output = Store> + Send>>
        };
        let first = open().await;
        outbox::what_is_committed_survives_reopening(first, Box::new(open)).await;
    }
}

/// For each `module: [name, ...]` listed, the function `module::name(store: Store)` becomes the
/// tests `redb::module::name` (on a fresh redb file) and `postgres::module::name` (on a fresh
/// PostgreSQL database).
macro_rules! conformance {
    ($($module:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        /// Each test on a fresh redb file.
        mod redb {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let store = crate::redb_store(stringify!($name));
                        crate::$module::$name(store).await;
                    }
                )*
            })*
        }

        /// Each test on a fresh PostgreSQL database.
        #[cfg(feature = "postgres")]
        mod postgres {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(store) = crate::postgres_store().await else {
                            return;
                        };
                        crate::$module::$name(store.clone()).await;
                        store.close().await;
                    }
                )*
            })*
        }
    };
}

conformance! {
    outbox: [
        a_store_is_healthy_and_says_where_it_is,
        each_hook_is_a_queue_in_order,
        outcomes_are_recorded_with_their_attempts,
        an_attempt_keeps_the_start_of_its_answer,
        gone_disables_the_hook_until_enabled_and_nothing_is_dropped,
        order_holds_per_hook_over_many_deliveries_and_hooks,
        concurrent_appends_all_land,
        an_idempotency_key_stores_an_ingest_once,
        the_dispatcher_delivers_from_the_store,
        order_holds_through_a_retry_amid_a_read_ahead,
        reading_ahead_gives_the_rest_of_the_queue_in_order,
    ],
    operations: [
        a_failed_delivery_replays_with_its_id,
        retry_answers_for_each_state_of_a_delivery,
        retry_hook_makes_the_head_due_now,
        recover_replays_failed_deliveries_in_id_order_among_pending_ones,
        recover_takes_the_deliveries_created_since,
        a_failed_delivery_of_a_disabled_hook_replays_to_wait_for_it,
        pruning_removes_old_delivered_records_only,
        an_event_keeps_its_body_while_any_of_its_deliveries_is_kept,
    ],
    reads: [
        counts_follow_each_state,
        a_hook_counts_its_failed_deliveries_and_keeps_its_last_attempt,
        listing_by_state_pages_oldest_first,
        deliveries_are_listed_newest_first_by_each_filter,
        following_next_before_visits_every_delivery_once,
        since_and_until_bound_the_creation_time,
    ],
    registry: [
        a_replace_keeps_the_ids_of_the_hooks_that_fire_alike,
        a_kept_hook_posts_to_its_new_url_with_the_same_deliveries,
        deleting_a_workflow_cancels_all_its_deliveries,
        a_failed_delivery_stays_replayable_while_its_hook_stays,
        an_event_for_a_removed_hook_is_stored_cancelled,
        the_secret_is_set_at_creation_and_changed_by_rotation_only,
        workflows_and_hooks_list_in_pages_by_id,
    ],
}

// ---------------------------------------------------------------------------------------------
// Helpers for the test functions (each module has `use super::*`).

/// Registers workflow `workflow` with `n` distinct hooks; returns their ids in order.
async fn register(store: &Store, workflow: &str, n: usize) -> Vec<HookId> {
    let change = store
        .put_workflow(workflow.into(), distinct_hooks(n), secret())
        .await
        .unwrap();
    assert!(change.created, "{workflow}: created");
    assert_eq!(change.added.len(), n);
    change.workflow.hooks.iter().map(|h| h.id).collect()
}

/// The ids of the deliveries `append` stored for `tags` (one event each, to `hooks`).
async fn append(store: &Store, hooks: &[HookId], tags: &[&str]) -> Vec<Vec<DeliveryId>> {
    let accepted = store
        .append(tags.iter().map(|tag| event(hooks, tag)).collect())
        .await
        .unwrap();
    assert_eq!(accepted.len(), tags.len());
    accepted
        .iter()
        .map(|e| e.deliveries.iter().map(|d| d.id).collect())
        .collect()
}

/// The head of `hook`'s queue, which must be a delivery.
async fn head(store: &Store, hook: HookId) -> Delivery {
    match store.head(hook).await.unwrap() {
        Head::Ready(delivery) => delivery,
        other => panic!("hook {hook}: expected a delivery, got {other:?}"),
    }
}

/// Records `outcome` for `delivery` after an attempt answered `status`, and waits until it is
/// stored.
async fn record(store: &Store, delivery: &Delivery, status: u16, outcome: Outcome) {
    store
        .record(delivery, attempt(status), outcome)
        .await
        .unwrap();
    store.flush(delivery.hook).await.unwrap();
}

/// A 200: delivered.
async fn deliver(store: &Store, delivery: &Delivery) {
    record(store, delivery, 200, Outcome::Delivered).await;
}

/// `status`, given up.
async fn fail(store: &Store, delivery: &Delivery, status: u16) {
    let reason = format!("status {status}");
    record(store, delivery, status, Outcome::Failed { reason }).await;
}

/// `status`, to be tried again in an hour.
async fn retry_later(store: &Store, delivery: &Delivery, status: u16) {
    let at = SystemTime::now() + Duration::from_secs(3600);
    record(store, delivery, status, Outcome::Retry { at }).await;
}

/// Gives up the head of `hook`'s queue with `status`; returns its id.
async fn fail_head(store: &Store, hook: HookId, status: u16) -> DeliveryId {
    let delivery = head(store, hook).await;
    fail(store, &delivery, status).await;
    delivery.id
}

fn filter(change: impl FnOnce(&mut DeliveryFilter)) -> DeliveryFilter {
    let mut filter = DeliveryFilter::default();
    change(&mut filter);
    filter
}

/// One page: its ids and its cursor.
async fn page(store: &Store, filter: &DeliveryFilter) -> (Vec<DeliveryId>, Option<DeliveryId>) {
    let page = store.deliveries(filter).await.unwrap();
    (
        page.deliveries.iter().map(|d| d.id).collect(),
        page.next_before,
    )
}

/// Every delivery `filter` matches, following the cursor to the end (a page may be short, even
/// empty, and still have a cursor).
async fn all_pages(store: &Store, filter: &DeliveryFilter) -> Vec<DeliveryId> {
    let mut ids = Vec::new();
    let mut next = filter.clone();
    for _ in 0..1000 {
        let (page, cursor) = page(store, &next).await;
        ids.extend(page);
        match cursor {
            Some(before) => next.before = Some(before),
            None => return ids,
        }
    }
    panic!("the pages of {filter:?} do not end");
}

/// Waits, at most `seconds`, until `done` holds.
async fn until<F: Future<Output = bool>>(seconds: u64, what: &str, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within {seconds} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The test helper itself.

#[test]
fn the_test_database_url_names_the_new_database() {
    let cases = [
        (
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@127.0.0.1:5432/t_1",
        ),
        (
            "postgresql://u:p@h/db?sslmode=require",
            "postgresql://u:p@h/t_1?sslmode=require",
        ),
        ("postgres://h:1", "postgres://h:1/t_1"),
        (
            "postgres://h:1?application_name=x",
            "postgres://h:1/t_1?application_name=x",
        ),
    ];
    for (url, expected) in cases {
        assert_eq!(pg::with_database(url, "t_1"), expected, "{url}");
    }
    assert_ne!(pg::random(), pg::random());
}

/// Each call makes its own empty database on the test PostgreSQL, reachable at the URL given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fresh_database_is_new_and_empty() {
    let Some(first) = pg::fresh_database() else {
        return;
    };
    let second = pg::fresh_database().unwrap();
    assert_ne!(first, second);
    for url in [first, second] {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let connection = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT current_database(), \
                 (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
                &[],
            )
            .await
            .unwrap();
        let (name, tables): (String, i64) = (row.get(0), row.get(1));
        assert!(url.ends_with(&format!("/{name}")), "{url}: {name}");
        assert!(name.starts_with("t_"), "{name}");
        assert_eq!(tables, 0, "{name}: empty");
        drop(client);
        connection.await.unwrap().unwrap();
    }
}
