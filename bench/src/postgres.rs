//! The sections on the PostgreSQL store (issue 13): one process on a redb file against one on
//! PostgreSQL; one against three processes sharing one PostgreSQL, to a receiver that takes
//! 50 ms to answer; the time from a `kill -9` to the dead process's hooks delivering again.
//!
//! They need a PostgreSQL server: `LINQ_HOOKS_TEST_POSTGRES` names it, a superuser URL as for
//! the tests (`postgres://postgres@127.0.0.1:PORT/postgres`). Each measurement creates a
//! database of its own on it (`bench_<pid>_<name>`) and drops it afterwards. `psql` (Debian's
//! `postgresql-client`) does that, and reads the `processes` and `leases` tables to see who
//! holds which hook. Without the variable, each section says it was not measured.

use std::sync::atomic::AtomicBool;

use linq_hooks_tests::postgres::{leases, processes as owners, psql};

use super::*;

/// The server the sections create their databases on, from `LINQ_HOOKS_TEST_POSTGRES`.
fn server() -> Option<String> {
    match std::env::var("LINQ_HOOKS_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "  SKIPPED: no PostgreSQL: set LINQ_HOOKS_TEST_POSTGRES to a superuser URL \
                 (postgres://postgres@127.0.0.1:PORT/postgres) to measure this section, or run \
                 bash -c 'source .ci/postgres.sh && cargo xtask bench --only postgres,processes,takeover' \
                 (a throwaway server, fsync off)"
            );
            None
        }
    }
}

/// The server as the sections' text names it: its version and whether commits wait for the
/// disk (`fsync`, `synchronous_commit`), which decides what an acknowledged event costs.
async fn describe(server: &str) -> String {
    let show = |setting: &'static str| async move {
        psql(server, &format!("SHOW {setting}")).await.concat()
    };
    let version = show("server_version").await;
    let version = version.split_whitespace().next().unwrap_or_default();
    format!(
        "PostgreSQL {version} on this machine, `fsync` {}, `synchronous_commit` {}",
        show("fsync").await,
        show("synchronous_commit").await
    )
}

/// What a section without a PostgreSQL says.
fn not_measured(title: &str) -> String {
    format!(
        "\n## {title}\n\n\
         Not measured in this run: no PostgreSQL. `LINQ_HOOKS_TEST_POSTGRES` names one (a superuser \
         URL, `postgres://postgres@127.0.0.1:PORT/postgres`, as for the tests); run \
         `cargo xtask bench --only postgres,processes,takeover` with it set (`.ci/postgres.sh` \
         starts a throwaway one, with `fsync` off).\n"
    )
}

/// A database of the harness's own on `server`, dropped by [`Database::drop`].
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    /// Creates `bench_<pid>_<name>` (a leftover of that name is dropped first).
    async fn create(server: &str, name: &str) -> Database {
        let name = format!("bench_{}_{name}", std::process::id());
        psql(
            server,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        psql(server, &format!("CREATE DATABASE {name}")).await;
        // postgres://user@host:port/db?query -> the same with the database replaced.
        let (scheme, rest) = server.split_once("://").expect("a postgres:// URL");
        let (authority, query) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path.split_once('?').map(|(_, q)| q)),
            None => (rest, None),
        };
        let url = match query {
            Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
            None => format!("{scheme}://{authority}/{name}"),
        };
        Database {
            server: server.to_string(),
            name,
            url,
        }
    }

    async fn drop(self) {
        psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

/// A transaction left open in a database (a `psql` whose input stays open): it holds a
/// snapshot, as a running `pg_dump` or a forgotten `BEGIN` does, so PostgreSQL can neither
/// vacuum the rows changed meanwhile nor mark their index entries dead. Ended when dropped.
struct OpenSnapshot {
    /// Killed when dropped, which ends the transaction.
    _psql: tokio::process::Child,
}

impl OpenSnapshot {
    async fn hold(database: &Database) -> OpenSnapshot {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("psql")
            .args(["-X", "-q", "-d", &database.url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("psql runs (Debian's postgresql-client)");
        let input = child.stdin.as_mut().expect("piped");
        input
            .write_all(b"BEGIN ISOLATION LEVEL REPEATABLE READ;\nSELECT 1;\n")
            .await
            .unwrap();
        input.flush().await.unwrap();
        let held = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND state = 'idle in transaction' AND backend_xmin IS NOT NULL",
            database.name
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while psql(&database.server, &held).await != ["1"] {
            assert!(Instant::now() < deadline, "the snapshot was not taken");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        OpenSnapshot { _psql: child }
    }
}

/// Waits (up to `within`) until every one of `hooks` hooks is leased, by `processes` owners,
/// none holding more than its share; whether that happened.
async fn balanced(url: &str, processes: usize, hooks: usize, within: Duration) -> bool {
    let share = hooks.div_ceil(processes);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let held = leases(url).await;
        let mut per_owner: HashMap<&String, usize> = HashMap::new();
        for owner in held.values() {
            *per_owner.entry(owner).or_default() += 1;
        }
        if held.len() == hooks
            && per_owner.len() == processes
            && per_owner.values().all(|n| *n <= share)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Starts `serve` on `store` and returns it with its owner id (the row it added to
/// `processes`): the processes are started one at a time.
async fn start_owned(binary: &Path, hooks: &Path, store: &str, extra: &[&str]) -> (Serve, String) {
    let before = owners(store).await;
    let serve = Serve::start(binary, hooks, Path::new(store), extra).await;
    let new: Vec<String> = owners(store).await.difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one new process row: {new:?}");
    (serve, new[0].clone())
}

/// A JSON API answer of `serve`.
async fn get_json(url: &str) -> serde_json::Value {
    let request = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(request).await.expect("serve answers");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("a JSON answer")
}

/// A hooks file of `hooks` task hooks to `addr` (hook i for task `ti`, posting to `/h{i}`).
fn task_hooks(work: &Path, name: &str, addr: SocketAddr, hooks: usize) -> PathBuf {
    let list: Vec<String> = (0..hooks)
        .map(|i| {
            format!(
                r#"{{"filter":"on_task_state_change","parameters":{{"url":"http://{addr}/h{i}"}},"task_ids":["t{i}"]}}"#
            )
        })
        .collect();
    let path = work.join(format!("{name}-hooks.json"));
    std::fs::write(&path, format!("[{}]", list.join(","))).unwrap();
    path
}

/// What one [`drain`] measured.
struct Drain {
    /// Events per second acknowledged (202) while the receiver held its answers.
    accepted: f64,
    /// Deliveries per second at the receiver, first to last arrival.
    delivered: f64,
    /// Webhooks that arrived beyond one per event (a resend; 0 expected).
    extra: u64,
    /// Whether the hooks were spread over the processes (each at most its share) before the
    /// events were posted.
    balanced: bool,
}

/// How a [`drain`] is set up.
struct DrainCase<'a> {
    name: &'a str,
    /// A redb file path or a PostgreSQL URL.
    store: &'a str,
    processes: usize,
    hooks: usize,
    events: usize,
    posters: usize,
    /// Events per request.
    batch: usize,
    /// How long the receiver takes to answer each webhook.
    answer_after: Duration,
}

/// `case.processes` × `serve --store STORE --timeout 600s`, `case.hooks` task hooks on a gated
/// receiver: the events (event i for hook i mod hooks) are posted round-robin to the processes
/// while the receiver holds its answers, then it answers and the queues drain, timed at the
/// receiver from the first arrival to the last. With several processes, they share the hooks
/// before anything is posted.
async fn drain(binary: &Path, work: &Path, case: DrainCase<'_>) -> Drain {
    let counts = Arc::new(Counts {
        delay: case.answer_after,
        ..Counts::gated()
    });
    let (addr, _receiver) = receiver(any_port(), counts.clone()).await;
    let hooks = task_hooks(work, case.name, addr, case.hooks);
    let mut serves = Vec::new();
    for _ in 0..case.processes {
        // Requests held at the gate must not time out (a timeout would send them again).
        serves.push(
            Serve::start(
                binary,
                &hooks,
                Path::new(case.store),
                &["--timeout", "600s"],
            )
            .await,
        );
    }
    let balanced = case.processes == 1
        || balanced(
            case.store,
            case.processes,
            case.hooks,
            Duration::from_secs(60),
        )
        .await;
    if !balanced {
        eprintln!("  the hooks were not spread over the processes within 60 s; measuring anyway");
    }
    let refs: Vec<&Serve> = serves.iter().collect();
    let (n, batch, hooks_n) = (case.events, case.batch, case.hooks);
    let requests = n.div_ceil(batch);
    let per_request = post_all_to(&refs, case.posters, requests, move |b| {
        let events: Vec<String> = (b * batch..((b + 1) * batch).min(n))
            .map(|i| task_event(i, i % hooks_n))
            .collect();
        format!("[{}]", events.join(","))
    })
    .await;
    let accepted = per_request * n as f64 / requests as f64;
    counts.take_span();
    counts.open();
    let all = counts.wait_for(n as u64, Duration::from_secs(1200)).await;
    let arrived = counts.requests.load(Ordering::Relaxed);
    assert!(
        all,
        "{}: {arrived} of {n} delivered within 20 minutes",
        case.name
    );
    let delivered = span_rate(n, counts.take_span());
    for serve in serves {
        serve.stop().await;
    }
    let extra = counts.requests.load(Ordering::Relaxed) - n as u64;
    eprintln!(
        "  {}: accepted {accepted:.0} events/s, delivered {delivered:.0}/s, {extra} resent",
        case.name
    );
    Drain {
        accepted,
        delivered,
        extra,
        balanced,
    }
}

/// One process, redb against PostgreSQL: acknowledged events per second (16 posters, one event
/// per request) and deliveries per second (100 hooks' queues drained).
pub(super) async fn one_process(plan: &Plan, binary: &Path, work: &Path) -> String {
    const TITLE: &str = "PostgreSQL against redb: one process";
    const HOOKS: usize = 100;
    const POSTERS: usize = 16;
    let Some(server) = server() else {
        return not_measured(TITLE);
    };
    let n = plan.events.min(20_000);
    let redb = work.join("one-process.redb");
    let database = Database::create(&server, "one_process").await;
    let held = Database::create(&server, "one_process_snapshot").await;
    let described = describe(&server).await;
    let mut rows = Vec::new();
    for (store, label) in [
        (redb.to_str().unwrap(), "redb file (reference)"),
        (database.url.as_str(), "PostgreSQL"),
        (
            held.url.as_str(),
            "PostgreSQL, a snapshot held open all along",
        ),
    ] {
        let _snapshot = if store == held.url {
            Some(OpenSnapshot::hold(&held).await)
        } else {
            None
        };
        let run = drain(
            binary,
            work,
            DrainCase {
                name: "one-process",
                store,
                processes: 1,
                hooks: HOOKS,
                events: n,
                posters: POSTERS,
                batch: 1,
                answer_after: Duration::ZERO,
            },
        )
        .await;
        rows.push((label, run));
    }
    database.drop().await;
    held.drop().await;
    let _ = std::fs::remove_file(&redb);
    let (redb, pg, pg_held) = (&rows[0].1, &rows[1].1, &rows[2].1);
    let mut table = String::from(
        "| store | acknowledged events/s | deliveries/s | resent |\n| --- | ---: | ---: | ---: |\n",
    );
    for (label, run) in &rows {
        let _ = writeln!(
            table,
            "| {label} | {:.0} | {:.0} | {} |",
            run.accepted, run.delivered, run.extra
        );
    }
    let _ = writeln!(
        table,
        "| PostgreSQL / redb | {:.2} | {:.2} | |",
        pg.accepted / redb.accepted,
        pg.delivered / redb.delivered
    );
    let _ = writeln!(
        table,
        "| PostgreSQL with a snapshot held / PostgreSQL | {:.2} | {:.2} | |",
        pg_held.accepted / pg.accepted,
        pg_held.delivered / pg.delivered
    );
    format!(
        "\n## {TITLE}\n\n\
         One `linq-hooks serve` on a fresh redb file, then one on a fresh PostgreSQL database ({described}; \
         `--lease` at its default), each with {HOOKS} hooks \
         (`on_task_state_change`, hook i for task `ti`) and {n} task events, event i for hook i mod {HOOKS}. \
         Acknowledged events/s: {POSTERS} concurrent posters, one event per `POST /v1/events`, each waiting \
         for its 202 (after the commit: fsync for redb, the transaction's commit for PostgreSQL), while the \
         receiver holds its answers. Deliveries/s: then the receiver (a minimal hyper server answering 200 \
         at once) answers and the queues drain, counted at the receiver from the first arrival to the last. \
         The redb figures are the reference, from the same run; \"resent\" counts webhooks that arrived \
         more than once (none expected). The last PostgreSQL run is the same on another fresh database \
         while a transaction stays open in it all along (`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1`, \
         as a running `pg_dump` or a forgotten `BEGIN` holds a snapshot): PostgreSQL then can neither \
         vacuum the delivered rows nor mark their index entries dead, and each read of a hook's queue \
         (its head, and a read-ahead, which starts at the head) walks past them; its reference is the \
         PostgreSQL run above.\n\n{table}"
    )
}

/// A receiver answering after 50 ms and 300 hooks: deliveries per second with one `serve` and
/// with three on one PostgreSQL.
pub(super) async fn processes(plan: &Plan, binary: &Path, work: &Path) -> String {
    const TITLE: &str = "Several processes on one PostgreSQL";
    const HOOKS: usize = 300;
    const ANSWER_AFTER: Duration = Duration::from_millis(50);
    let Some(server) = server() else {
        return not_measured(TITLE);
    };
    let n = plan.events.min(15_000);
    let described = describe(&server).await;
    let mut rows = Vec::new();
    for processes in [1, 3] {
        let database = Database::create(&server, &format!("processes_{processes}")).await;
        let run = drain(
            binary,
            work,
            DrainCase {
                name: &format!("{processes}-processes"),
                store: &database.url,
                processes,
                hooks: HOOKS,
                events: n,
                // One poster: requests one after the other (see the section's text).
                posters: 1,
                batch: 500,
                answer_after: ANSWER_AFTER,
            },
        )
        .await;
        database.drop().await;
        rows.push((processes, run));
    }
    let one = rows[0].1.delivered;
    let mut table = String::from(
        "| `serve` processes | deliveries | deliveries/s | against one process | bound: 64 in flight per process / 50 ms | hooks spread before posting | resent |\n\
         | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for (processes, run) in &rows {
        let _ = writeln!(
            table,
            "| {processes} | {n} | {:.0} | {:.2} | {:.0}/s | {} | {} |",
            run.delivered,
            run.delivered / one,
            *processes as f64 * 64.0 / ANSWER_AFTER.as_secs_f64(),
            if run.balanced {
                "yes"
            } else {
                "no (not within 60 s)"
            },
            run.extra
        );
    }
    format!(
        "\n## {TITLE}\n\n\
         {HOOKS} hooks (`on_task_state_change`, hook i for task `ti`), {n} task events (event i for hook \
         i mod {HOOKS}), a receiver that answers each webhook 50 ms after it arrives (a receiver doing some \
         work), once with one `linq-hooks serve` and once with three on one fresh PostgreSQL database \
         ({described}; `--lease` at its default). With three, \
         the harness first waits until the `leases` table shows every hook held and none of the three \
         holding more than its share (100). The events are posted round-robin to the processes, in arrays \
         of 500 by one poster (one request after the other), while \
         the receiver holds its answers; then it answers and the queues drain, \
         counted at the receiver from the first arrival to the last. Each hook has one request in flight \
         (its order), and each process at most 64 (its default `--concurrency`): 64 / 50 ms = 1 280 \
         deliveries/s per process is the bound, so three processes sharing the work (not repeating it) \
         approach three times one. All of it, the database included, shares this machine's cores.\n\n{table}"
    )
}

/// The time from a `kill -9` of one of three processes to its hooks delivering again, at the
/// default lease (10 s), three times (a different process each time, started again between).
pub(super) async fn takeover(binary: &Path, work: &Path) -> String {
    const TITLE: &str = "Takeover after a kill -9";
    const HOOKS: usize = 12;
    const ROUNDS: usize = 3;
    const EVERY: Duration = Duration::from_millis(20);
    const LEASE: f64 = 10.0;
    /// Arrivals this soon after the kill may be the killed process's own (requests it had
    /// written): a takeover is the first arrival after.
    const IN_FLIGHT: Duration = Duration::from_secs(1);
    let Some(server) = server() else {
        return not_measured(TITLE);
    };
    let counts = Arc::new(Counts {
        record_paths: true,
        ..Counts::default()
    });
    let (addr, _receiver) = receiver(any_port(), counts.clone()).await;
    let hooks = work.join("takeover-hooks.json");
    let list: Vec<String> = (0..HOOKS)
        .map(|i| {
            format!(r#"{{"filter":"on_new_plan","parameters":{{"url":"http://{addr}/h{i}"}}}}"#)
        })
        .collect();
    std::fs::write(&hooks, format!("[{}]", list.join(","))).unwrap();
    let database = Database::create(&server, "takeover").await;
    let described = describe(&server).await;
    let store = database.url.clone();

    let mut serves: Vec<Option<Serve>> = Vec::new();
    let mut owners = Vec::new();
    for _ in 0..3 {
        let (serve, owner) = start_owned(binary, &hooks, &store, &[]).await;
        serves.push(Some(serve));
        owners.push(owner);
    }
    let spread = balanced(&store, 3, HOOKS, Duration::from_secs(60)).await;
    // hook_N -> its path /h{i}.
    let listed = get_json(&format!("{}/v1/hooks", serves[0].as_ref().unwrap().base)).await;
    let path_of: HashMap<u64, String> = listed["hooks"]
        .as_array()
        .expect("a hook list")
        .iter()
        .map(|h| {
            let id = h["id"].as_str().unwrap();
            let n = id.strip_prefix("hook_").unwrap().parse().unwrap();
            let url = h["parameters"]["url"].as_str().unwrap();
            (n, url[url.rfind("/h").unwrap()..].to_string())
        })
        .collect();

    // A steady stream: one plan event every 20 ms, to the next live process in turn.
    // Where each process listens (a restarted one listens on another port).
    let bases: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        serves
            .iter()
            .map(|s| s.as_ref().unwrap().base.clone())
            .collect(),
    ));
    let alive: Arc<[AtomicBool; 3]> = Arc::new([const { AtomicBool::new(true) }; 3]);
    let posting = Arc::new(AtomicBool::new(true));
    let poster = tokio::spawn({
        let (alive, posting, bases) = (alive.clone(), posting.clone(), bases.clone());
        async move {
            let client = client();
            let mut ticks = tokio::time::interval(EVERY);
            let (mut k, mut n) = (0, 0);
            while posting.load(Ordering::SeqCst) {
                ticks.tick().await;
                k = (k + 1..k + 4)
                    .map(|j| j % 3)
                    .find(|&j| alive[j].load(Ordering::SeqCst))
                    .unwrap();
                let url = format!("{}/v1/events", bases.lock().unwrap()[k]);
                post(&client, &url, Bytes::from(plan_event(n))).await;
                n += 1;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut table = String::from(
        "| kill | hooks it held | first delivery again: fastest hook | median | slowest | lease | lease + one renewal period (lease / 3) | after its restart, hooks spread again within 60 s |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for round in 0..ROUNDS {
        let victim = round % 3;
        let held: Vec<String> = leases(&store)
            .await
            .into_iter()
            .filter(|(_, owner)| *owner == owners[victim])
            .map(|(hook, _)| path_of[&hook].clone())
            .collect();
        alive[victim].store(false, Ordering::SeqCst);
        let killed_at = Instant::now();
        let mut killed = serves[victim].take().unwrap();
        let _ = killed.child.kill().await; // SIGKILL
        let first_after = |counts: &Counts| -> HashMap<String, Duration> {
            let mut first = HashMap::new();
            for (path, at) in counts.paths.lock().unwrap().iter() {
                if held.contains(path) && *at >= killed_at + IN_FLIGHT {
                    first.entry(path.clone()).or_insert(*at - killed_at);
                }
            }
            first
        };
        let deadline = killed_at + Duration::from_secs(60);
        while first_after(&counts).len() < held.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut times: Vec<f64> = first_after(&counts)
            .values()
            .map(Duration::as_secs_f64)
            .collect();
        times.sort_by(f64::total_cmp);
        let missing = held.len() - times.len();
        eprintln!(
            "  kill {}: {} hooks held, delivering again after {times:.2?} s{}",
            round + 1,
            held.len(),
            if missing > 0 {
                format!("; {missing} not within 60 s")
            } else {
                String::new()
            }
        );
        let at = |q: f64| {
            times
                .get(((times.len() as f64 - 1.0) * q).round() as usize)
                .map_or("—".to_string(), |t| format!("{t:.2} s"))
        };
        let row = format!(
            "| {} | {}{} | {} | {} | {} | {LEASE:.0} s | {:.1} s |",
            round + 1,
            held.len(),
            if missing > 0 {
                format!(" ({missing} not again within 60 s)")
            } else {
                String::new()
            },
            at(0.0),
            at(0.5),
            at(1.0),
            LEASE * 4.0 / 3.0
        );
        // Started again: it takes its share back before the next kill.
        let (serve, owner) = start_owned(binary, &hooks, &store, &[]).await;
        bases.lock().unwrap()[victim] = serve.base.clone();
        serves[victim] = Some(serve);
        owners[victim] = owner;
        alive[victim].store(true, Ordering::SeqCst);
        let again = balanced(&store, 3, HOOKS, Duration::from_secs(60)).await;
        if !again {
            eprintln!("  the hooks were not spread again within 60 s of the restart");
        }
        let held_now: Vec<usize> = {
            let leases = leases(&store).await;
            owners
                .iter()
                .map(|o| leases.values().filter(|h| *h == o).count())
                .collect()
        };
        let _ = writeln!(
            table,
            "{row} {} |",
            if again {
                "yes".to_string()
            } else {
                format!("no: {held_now:?} hooks per process")
            }
        );
    }
    posting.store(false, Ordering::SeqCst);
    let _ = poster.await;
    for serve in serves.into_iter().flatten() {
        serve.stop().await;
    }
    database.drop().await;
    format!(
        "\n## {TITLE}\n\n\
         Three `linq-hooks serve` on one fresh PostgreSQL database ({described}), `--lease` at its default ({LEASE:.0} s), {HOOKS} hooks (`on_new_plan`) to a \
         minimal receiver; one plan event every 20 ms posted to the live processes in turn, so every hook \
         has a delivery to send at any time. Before each kill the `leases` table shows which hooks the \
         process holds ({}); then it gets SIGKILL, and for each of those hooks the time from the kill to \
         its first webhook more than 1 s after the kill (earlier ones may be requests the dead process had \
         already written) is taken; then the process is started again (same arguments) and the harness \
         waits up to 60 s for the hooks to be spread again (none of the three holding more than its \
         share, 4) before the next kill, of another process (the last column: whether they were, or \
         how many each held after the 60 s). The reference is the lease itself: a dead \
         process's lease runs out between lease × 2/3 and the lease after the kill (it renews every \
         lease / 3), and the others take its hooks at their next renewal, at most lease / 3 later.\n\n{table}",
        if spread {
            "4 of the 12 each"
        } else {
            "the hooks were not spread evenly before the first kill"
        }
    )
}
