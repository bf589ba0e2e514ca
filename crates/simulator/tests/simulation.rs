//! What the simulated event stream promises, checked over many seeds.

use std::collections::{HashMap, HashSet};

use linq_hooks_events::{
    Event, LabwareMovement, Location, Phase, RunState, SafetyState, TaskState, parse_event,
};
use linq_hooks_simulator::Simulation;
use proptest::prelude::*;

/// Seeds every check runs over: small ones, and some whose ids are long.
fn seeds() -> impl Iterator<Item = u64> {
    (0..100).chain([u64::MAX, u64::MAX - 1, 1 << 63, 0xdead_beef])
}

fn events(seed: u64, runs: usize) -> Vec<Event> {
    Simulation::new(seed).runs(runs).events().collect()
}

fn ndjson(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}

/// Splits a stream into runs: maximal stretches of events with the same run id.
fn split_runs(events: &[Event]) -> Vec<&[Event]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=events.len() {
        if i == events.len() || events[i].run_id() != events[start].run_id() {
            runs.push(&events[start..i]);
            start = i;
        }
    }
    runs
}

fn run_state(event: &Event) -> Option<&RunState> {
    match event {
        Event::RunStateChange(e) => Some(&e.state),
        _ => None,
    }
}

fn safety_state(event: &Event) -> Option<&SafetyState> {
    match event {
        Event::SafetyStateChange(e) => Some(&e.state),
        _ => None,
    }
}

fn movement(event: &Event) -> Option<&LabwareMovement> {
    match event {
        Event::LabwareMovement(e) => Some(e),
        _ => None,
    }
}

/// The index of the one event in `run` satisfying `is`.
fn only(run: &[Event], what: &str, is: impl Fn(&Event) -> bool) -> usize {
    let at: Vec<usize> = (0..run.len()).filter(|&i| is(&run[i])).collect();
    assert_eq!(at.len(), 1, "{what}: expected exactly one in {run:#?}");
    at[0]
}

// ---- the checks, one run at a time ----

fn check_starts_and_stops(run: &[Event]) {
    assert!(
        run.iter().all(|e| e.run_id().is_some()),
        "every event names its run"
    );
    assert_eq!(run_state(&run[0]), Some(&RunState::Started));
    assert_eq!(run_state(run.last().unwrap()), Some(&RunState::Stopped));
    assert_eq!(
        only(run, "started", |e| run_state(e) == Some(&RunState::Started)),
        0
    );
    assert_eq!(
        only(run, "stopped", |e| run_state(e) == Some(&RunState::Stopped)),
        run.len() - 1
    );
}

/// Tasks run one at a time: started, then succeeded or failed (with an error); or skipped
/// without starting. Returns the finished tasks' final states.
fn check_tasks(run: &[Event]) -> Vec<TaskState> {
    let mut running: Option<&str> = None;
    let mut seen = HashSet::new();
    let mut outcomes = Vec::new();
    for event in run {
        let Event::TaskStateChange(task) = event else {
            continue;
        };
        match &task.state {
            TaskState::Started => {
                assert_eq!(
                    running, None,
                    "{} starts while another task runs",
                    task.task_id
                );
                assert!(
                    seen.insert(task.task_id.as_str()),
                    "{} starts twice",
                    task.task_id
                );
                running = Some(&task.task_id);
            }
            TaskState::Succeeded | TaskState::Failed => {
                assert_eq!(
                    running,
                    Some(task.task_id.as_str()),
                    "{task:?} was not running"
                );
                assert_eq!(
                    task.error.is_some(),
                    task.state == TaskState::Failed,
                    "{task:?}"
                );
                running = None;
                outcomes.push(task.state.clone());
            }
            TaskState::Skipped => {
                assert_eq!(running, None, "{task:?} skipped while a task runs");
                assert!(
                    seen.insert(task.task_id.as_str()),
                    "{} seen twice",
                    task.task_id
                );
                outcomes.push(task.state.clone());
            }
            other => panic!("unexpected task state {other:?}"),
        }
    }
    assert_eq!(running, None, "a task never finished");
    let started = run
        .iter()
        .filter(|e| matches!(e, Event::TaskStateChange(t) if t.state == TaskState::Started))
        .count();
    assert!(
        (4..=10).contains(&outcomes.len()),
        "{} tasks",
        outcomes.len()
    );
    assert!(started >= 1);
    outcomes
}

/// Movements happen only inside a started task, in pick-up / put-down pairs of the same labware
/// with the same source and destination; every started task moves labware, ending with a
/// put-down on its instrument (moves to other places only clear the way, to the hotel).
fn check_movements_within_tasks(run: &[Event]) {
    let mut in_task: Option<Vec<&LabwareMovement>> = None;
    for event in run {
        match event {
            Event::TaskStateChange(t) if t.state == TaskState::Started => {
                in_task = Some(Vec::new());
            }
            Event::TaskStateChange(t) if t.state != TaskState::Skipped => {
                let moves = in_task.take().expect("a task finished that had started");
                assert!(!moves.is_empty(), "{} moved no labware", t.task_id);
                assert_eq!(moves.len() % 2, 0, "{}: unpaired movement", t.task_id);
                for pair in moves.chunks(2) {
                    let (up, down) = (pair[0], pair[1]);
                    assert_eq!((up.phase, down.phase), (Phase::Start, Phase::End));
                    assert_eq!(up.labware_id, down.labware_id);
                    assert_eq!(
                        (&up.source, &up.destination),
                        (&down.source, &down.destination)
                    );
                    assert_ne!(up.source, up.destination);
                }
                let instrument = &moves.last().unwrap().destination.instrument;
                assert_ne!(instrument, "hotel", "{}", t.task_id);
                for m in &moves {
                    let to = &m.destination.instrument;
                    assert!(to == instrument || to == "hotel", "{}: {m:?}", t.task_id);
                }
            }
            Event::LabwareMovement(m) => {
                in_task
                    .as_mut()
                    .unwrap_or_else(|| panic!("{m:?} outside a task"))
                    .push(m);
            }
            _ => {}
        }
    }
}

/// A labware is picked up where it was last put down, and put down only on a free slot.
fn check_labware_positions(run: &[Event]) {
    // Where each labware was at the start: where it was first picked up.
    let mut at: HashMap<&str, &Location> = HashMap::new();
    for m in run.iter().filter_map(movement) {
        at.entry(&m.labware_id).or_insert(&m.source);
    }
    let initial: HashSet<&Location> = at.values().copied().collect();
    assert_eq!(initial.len(), at.len(), "two labware start on one slot");
    for m in run.iter().filter_map(movement) {
        match m.phase {
            Phase::Start => assert_eq!(at[m.labware_id.as_str()], &m.source, "{m:?}"),
            Phase::End => {
                let occupant = at
                    .iter()
                    .find(|&(id, loc)| *loc == &m.destination && *id != m.labware_id);
                assert_eq!(occupant, None, "{m:?} onto an occupied slot");
                at.insert(&m.labware_id, &m.destination);
            }
        }
    }
}

/// One safety alert and return to normal, with the run paused around them:
/// alert, paused, normal, resumed, then a new plan; nothing runs while paused.
fn check_pause_and_safety(run: &[Event]) {
    let alert = only(run, "alert", |e| {
        safety_state(e) == Some(&SafetyState::Alert)
    });
    let paused = only(run, "paused", |e| run_state(e) == Some(&RunState::Paused));
    let normal = only(run, "normal", |e| {
        safety_state(e) == Some(&SafetyState::Normal)
    });
    let resumed = only(run, "resumed", |e| run_state(e) == Some(&RunState::Resumed));
    assert!(alert < paused && paused < normal && normal < resumed);
    assert!(
        run[paused..resumed]
            .iter()
            .all(|e| matches!(e, Event::RunStateChange(_) | Event::SafetyStateChange(_))),
        "nothing happens while the run is paused"
    );
    assert!(
        matches!(run[resumed + 1], Event::NewPlan(_)),
        "a new plan after resuming"
    );
    // In the middle: after some task finished, and before the run stops.
    assert!(
        run[..alert]
            .iter()
            .any(|e| matches!(e, Event::TaskStateChange(t) if t.state == TaskState::Succeeded || t.state == TaskState::Failed))
    );
    assert!(resumed + 2 < run.len());
    for i in [alert, normal] {
        let Event::SafetyStateChange(safety) = &run[i] else {
            unreachable!()
        };
        assert_eq!(safety.run_id.as_deref(), run[0].run_id());
        assert_eq!(safety.workcell_id.as_deref(), Some("cell-a"));
    }
}

/// A new plan before the first task, another later; each for this run and its workflow.
fn check_new_plans(run: &[Event]) {
    let plans: Vec<usize> = (0..run.len())
        .filter(|&i| matches!(run[i], Event::NewPlan(_)))
        .collect();
    assert!(plans.len() >= 2, "{} plans", plans.len());
    let first_task = run
        .iter()
        .position(|e| matches!(e, Event::TaskStateChange(_)))
        .unwrap();
    assert!(plans[0] < first_task);
    let mut ids = HashSet::new();
    let mut workflows = HashSet::new();
    for &i in &plans {
        let Event::NewPlan(plan) = &run[i] else {
            unreachable!()
        };
        assert!(
            ids.insert(&plan.plan_id),
            "plan id {} repeated",
            plan.plan_id
        );
        assert_eq!(plan.run_id.as_deref(), run[0].run_id());
        workflows.insert(plan.workflow_id.as_deref().expect("a workflow id"));
    }
    assert_eq!(workflows.len(), 1, "one workflow per run");
}

fn check_run(run: &[Event]) {
    check_starts_and_stops(run);
    check_tasks(run);
    check_movements_within_tasks(run);
    check_labware_positions(run);
    check_pause_and_safety(run);
    check_new_plans(run);
}

fn check_timestamps_increase(events: &[Event]) {
    for pair in events.windows(2) {
        assert!(pair[0].timestamp() < pair[1].timestamp(), "{pair:#?}");
    }
}

// ---- the tests ----

#[test]
fn the_same_seed_gives_the_same_bytes() {
    for seed in seeds() {
        assert_eq!(ndjson(&events(seed, 3)), ndjson(&events(seed, 3)));
    }
    // A copy of the iterator, taken part-way, goes on the same.
    let mut events = Simulation::new(11).runs(2).events();
    events.nth(10);
    let copy = events.clone();
    assert_eq!(events.collect::<Vec<_>>(), copy.collect::<Vec<_>>());
}

#[test]
fn different_seeds_give_different_runs() {
    // Not only the ids (which carry the seed): the timing differs.
    let timings: Vec<Vec<i64>> = (0..60)
        .map(|seed| {
            events(seed, 1)
                .iter()
                .map(|e| e.timestamp().unix_millis())
                .collect()
        })
        .collect();
    let distinct: HashSet<&Vec<i64>> = timings.iter().collect();
    assert_eq!(distinct.len(), timings.len());
}

#[test]
fn seed_1_is_pinned() {
    // Guards reproducibility across builds and dependency updates. After a deliberate change to
    // the simulation, regenerate the file with `BLESS=1 cargo test -p linq-hooks-simulator`.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed-1.ndjson");
    let actual = ndjson(&events(1, 2));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap();
    assert!(actual == expected, "seed 1 no longer gives {path}");
}

#[test]
fn every_event_round_trips_through_parse_event() {
    for seed in seeds() {
        for event in events(seed, 2) {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(parse_event(&json).unwrap(), event, "{json}");
        }
    }
}

#[test]
fn messages_are_the_default_sentences_except_the_safety_alerts() {
    for seed in seeds() {
        for event in events(seed, 2) {
            let mut value = serde_json::to_value(&event).unwrap();
            value.as_object_mut().unwrap().remove("message");
            let without = linq_hooks_events::parse_event_value(&value).unwrap();
            if safety_state(&event) == Some(&SafetyState::Alert) {
                assert_ne!(without.message(), event.message());
                assert!(!event.message().is_empty());
            } else {
                assert_eq!(without, event);
            }
        }
    }
}

#[test]
fn each_run_starts_and_stops() {
    for seed in seeds() {
        for run in split_runs(&events(seed, 2)) {
            check_starts_and_stops(run);
        }
    }
}

#[test]
fn every_task_that_starts_finishes() {
    for seed in seeds() {
        for run in split_runs(&events(seed, 2)) {
            check_tasks(run);
        }
    }
}

#[test]
fn labware_is_picked_up_and_put_down_within_its_task() {
    for seed in seeds() {
        for run in split_runs(&events(seed, 2)) {
            check_movements_within_tasks(run);
        }
    }
}

#[test]
fn labware_positions_are_consistent() {
    for seed in seeds() {
        for run in split_runs(&events(seed, 2)) {
            check_labware_positions(run);
        }
    }
}

#[test]
fn the_run_pauses_around_a_safety_alert() {
    for seed in seeds() {
        for run in split_runs(&events(seed, 2)) {
            check_pause_and_safety(run);
        }
    }
}

#[test]
fn the_scheduler_plans_early_and_again_mid_run() {
    for seed in seeds() {
        for run in split_runs(&events(seed, 2)) {
            check_new_plans(run);
        }
    }
}

#[test]
fn timestamps_strictly_increase_from_the_start() {
    let start = "2026-02-03T04:05:06.789Z".parse().unwrap();
    for seed in seeds() {
        let events: Vec<Event> = Simulation::new(seed)
            .runs(3)
            .start(start)
            .events()
            .collect();
        assert_eq!(events[0].timestamp(), start);
        check_timestamps_increase(&events);
    }
}

#[test]
fn three_runs_are_three_complete_runs_with_distinct_ids() {
    let stream = events(4, 3);
    let runs = split_runs(&stream);
    assert_eq!(runs.len(), 3);
    let ids: Vec<&str> = runs.iter().map(|run| run[0].run_id().unwrap()).collect();
    assert_eq!(ids, ["run-4-1", "run-4-2", "run-4-3"]);
    for run in runs {
        check_run(run);
    }
    // The first run is the same whether or not more follow.
    let one = events(4, 1);
    assert_eq!(stream[..one.len()], one[..]);
}

#[test]
fn most_tasks_succeed_and_some_fail() {
    let mut counts: HashMap<TaskState, usize> = HashMap::new();
    for seed in 0..200 {
        for run in split_runs(&events(seed, 1)) {
            for outcome in check_tasks(run) {
                *counts.entry(outcome).or_default() += 1;
            }
        }
    }
    let count = |state: TaskState| counts.get(&state).copied().unwrap_or(0);
    let total: usize = counts.values().sum();
    let (succeeded, failed, skipped) = (
        count(TaskState::Succeeded),
        count(TaskState::Failed),
        count(TaskState::Skipped),
    );
    assert!(failed > 0 && skipped > 0, "{counts:?}");
    assert!(succeeded * 10 > total * 7, "{counts:?}");
    assert!(failed * 4 < total, "{counts:?}");
    assert_eq!(count(TaskState::Cancelled), 0);
}

#[test]
fn runs_that_would_pass_the_last_timestamp_are_left_out() {
    let late = "9999-12-30T18:00:00Z".parse().unwrap();
    let events: Vec<Event> = Simulation::new(2).runs(50).start(late).events().collect();
    let runs = split_runs(&events);
    assert!(runs.len() < 50);
    for run in runs {
        check_run(run);
    }
    assert!(Simulation::new(2).runs(0).events().next().is_none());
}

proptest! {
    #[test]
    fn any_seed_gives_complete_consistent_runs(seed in any::<u64>(), runs in 1usize..4) {
        let events = events(seed, runs);
        check_timestamps_increase(&events);
        let split = split_runs(&events);
        prop_assert_eq!(split.len(), runs);
        let ids: HashSet<_> = split.iter().map(|run| run[0].run_id()).collect();
        prop_assert_eq!(ids.len(), runs);
        for run in split {
            check_run(run);
        }
    }
}
