//! Match cost at 10, 1 000 and 100 000 hooks, beside the linear scan.
//!
//! Run: `cargo bench -p linq-hooks-filter --bench matching`. Figures go in BENCHMARKS.md.
//!
//! The hook sets model a site with many narrow hooks: every task and labware hook lists one to
//! three ids from a pool that grows with the set (so each id is listed by about two hooks),
//! plus a fixed handful of hooks for every task or labware. An event therefore matches about
//! the same few hooks at every size, and what grows is only the number that exist.

use linq_hooks_events::{
    Event, LabwareMovement, Location, Phase, TaskState, TaskStateChange, Timestamp,
};
use linq_hooks_filter::{Matcher, matching_linear};
use linq_hooks_model::{
    Headers, Hook, HookParameters, LabwareMovementHook, RunStateChangeHook, TaskStateChangeHook,
    TriggerOn,
};

fn main() {
    divan::main();
}

/// A deterministic hook set of `n` hooks (a small xorshift keeps it reproducible without a dependency).
fn hooks(n: usize) -> Vec<Hook> {
    let parameters = HookParameters::new("https://hooks.example/", Headers::new()).unwrap();
    let pool = (n / 2).max(1) as u64;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let ids: Vec<String> = (0..1 + next() % 3)
                .map(|_| format!("id-{}", next() % pool))
                .collect();
            match i {
                // A fixed few hooks fire for every task / every labware / every run event.
                0 => Hook::TaskStateChange(TaskStateChangeHook {
                    parameters: parameters.clone(),
                    task_ids: vec![],
                }),
                1 => Hook::LabwareMovement(LabwareMovementHook {
                    parameters: parameters.clone(),
                    labware_ids: vec![],
                    trigger_on: TriggerOn::Both,
                }),
                2 => Hook::RunStateChange(RunStateChangeHook {
                    parameters: parameters.clone(),
                }),
                _ if i % 2 == 0 => Hook::TaskStateChange(TaskStateChangeHook {
                    parameters: parameters.clone(),
                    task_ids: ids,
                }),
                _ => Hook::LabwareMovement(LabwareMovementHook {
                    parameters: parameters.clone(),
                    labware_ids: ids,
                    trigger_on: [TriggerOn::Start, TriggerOn::End, TriggerOn::Both][i % 3],
                }),
            }
        })
        .collect()
}

/// How many different events a benchmark cycles through, so that with many hooks the index is
/// not all in cache, as in a real stream of events.
const EVENTS: usize = 1024;

/// Deterministic ids from the pool of a set of `n` hooks.
fn event_ids(n: usize) -> impl Iterator<Item = String> {
    let pool = (n / 2).max(1);
    (0..EVENTS).map(move |i| format!("id-{}", (i * 7919) % pool))
}

fn task_event(task_id: String) -> Event {
    Event::TaskStateChange(TaskStateChange {
        run_id: "run-1".into(),
        task_id,
        state: TaskState::Started,
        message: "Task started.".into(),
        timestamp: Timestamp::from_unix_millis(1_744_882_200_000).unwrap(),
        error: None,
        extra: Default::default(),
    })
}

fn labware_event(labware_id: String) -> Event {
    let at = Location {
        instrument: "hotel".into(),
        slot: 1,
        extra: Default::default(),
    };
    Event::LabwareMovement(LabwareMovement {
        run_id: "run-1".into(),
        labware_id,
        phase: Phase::End,
        source: at.clone(),
        destination: at,
        message: "Labware put down.".into(),
        timestamp: Timestamp::from_unix_millis(1_744_882_200_000).unwrap(),
        extra: Default::default(),
    })
}

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

fn task_events(n: usize) -> Vec<Event> {
    event_ids(n).map(task_event).collect()
}

fn labware_events(n: usize) -> Vec<Event> {
    event_ids(n).map(labware_event).collect()
}

/// Measures `matching` over the events in turn, one event per iteration.
fn bench_events(
    bencher: divan::Bencher<'_, '_>,
    events: &[Event],
    mut matching: impl FnMut(&Event) -> Vec<usize>,
) {
    let mut next = 0;
    bencher.bench_local(|| {
        next = (next + 1) % events.len();
        matching(divan::black_box(&events[next]))
    });
}

#[divan::bench(args = SIZES, sample_size = 2000)]
fn indexed_task(bencher: divan::Bencher<'_, '_>, n: usize) {
    let matcher = Matcher::new(&hooks(n));
    bench_events(bencher, &task_events(n), |event| matcher.matching(event));
}

#[divan::bench(args = SIZES, sample_size = 2000)]
fn indexed_labware(bencher: divan::Bencher<'_, '_>, n: usize) {
    let matcher = Matcher::new(&hooks(n));
    bench_events(bencher, &labware_events(n), |event| matcher.matching(event));
}

#[divan::bench(args = SIZES)]
fn linear_task(bencher: divan::Bencher<'_, '_>, n: usize) {
    let hooks = hooks(n);
    bench_events(bencher, &task_events(n), |event| {
        matching_linear(&hooks, event)
    });
}

#[divan::bench(args = SIZES)]
fn linear_labware(bencher: divan::Bencher<'_, '_>, n: usize) {
    let hooks = hooks(n);
    bench_events(bencher, &labware_events(n), |event| {
        matching_linear(&hooks, event)
    });
}

#[divan::bench(args = SIZES, sample_count = 10)]
fn build_index(bencher: divan::Bencher<'_, '_>, n: usize) {
    let hooks = hooks(n);
    bencher.bench_local(|| Matcher::new(divan::black_box(&hooks)));
}
