//! The index agrees with the plain linear reference on random hooks and events, and each rule
//! holds on hand-made cases.

use linq_hooks_events::{
    Event, LabwareMovement, Location, NewPlan, Phase, RunState, RunStateChange, SafetyState,
    SafetyStateChange, TaskState, TaskStateChange, Timestamp,
};
use linq_hooks_filter::{Matcher, fires, matching_linear};
use linq_hooks_model::{
    Headers, Hook, HookParameters, LabwareMovementHook, NewPlanHook, RunStateChangeHook,
    SafetyStateChangeHook, TaskStateChangeHook, TriggerOn,
};
use proptest::prelude::*;

fn parameters() -> HookParameters {
    HookParameters::new("https://hooks.example/", Headers::new()).unwrap()
}

fn task_hook(ids: &[&str]) -> Hook {
    Hook::TaskStateChange(TaskStateChangeHook {
        parameters: parameters(),
        task_ids: ids.iter().map(|s| s.to_string()).collect(),
    })
}

fn labware_hook(ids: &[&str], trigger_on: TriggerOn) -> Hook {
    Hook::LabwareMovement(LabwareMovementHook {
        parameters: parameters(),
        labware_ids: ids.iter().map(|s| s.to_string()).collect(),
        trigger_on,
    })
}

fn ts() -> Timestamp {
    Timestamp::from_unix_millis(1_744_882_200_000).unwrap()
}

fn task_event(id: &str) -> Event {
    Event::TaskStateChange(TaskStateChange {
        run_id: "r".into(),
        task_id: id.into(),
        state: TaskState::Started,
        message: "m".into(),
        timestamp: ts(),
        error: None,
        extra: Default::default(),
    })
}

fn labware_event(id: &str, phase: Phase) -> Event {
    let at = Location {
        instrument: "hotel".into(),
        slot: 1,
        extra: Default::default(),
    };
    Event::LabwareMovement(LabwareMovement {
        run_id: "r".into(),
        labware_id: id.into(),
        phase,
        source: at.clone(),
        destination: at,
        message: "m".into(),
        timestamp: ts(),
        extra: Default::default(),
    })
}

fn run_event() -> Event {
    Event::RunStateChange(RunStateChange {
        run_id: "r".into(),
        state: RunState::Started,
        message: "m".into(),
        timestamp: ts(),
        extra: Default::default(),
    })
}

fn safety_event() -> Event {
    Event::SafetyStateChange(SafetyStateChange {
        state: SafetyState::Alert,
        message: "m".into(),
        timestamp: ts(),
        run_id: None,
        workcell_id: None,
        extra: Default::default(),
    })
}

fn plan_event() -> Event {
    Event::NewPlan(NewPlan {
        plan_id: "p".into(),
        message: "m".into(),
        timestamp: ts(),
        run_id: None,
        workflow_id: None,
        extra: Default::default(),
    })
}

/// Checks the index and the reference against an expected answer.
#[track_caller]
fn check(hooks: &[Hook], event: &Event, expected: &[usize]) {
    assert_eq!(matching_linear(hooks, event), expected, "reference");
    assert_eq!(Matcher::new(hooks).matching(event), expected, "index");
}

#[test]
fn each_kind_fires_only_on_its_own_events() {
    let hooks = [
        Hook::RunStateChange(RunStateChangeHook {
            parameters: parameters(),
        }),
        Hook::SafetyStateChange(SafetyStateChangeHook {
            parameters: parameters(),
        }),
        Hook::NewPlan(NewPlanHook {
            parameters: parameters(),
        }),
        task_hook(&[]),
        labware_hook(&[], TriggerOn::Both),
    ];
    check(&hooks, &run_event(), &[0]);
    check(&hooks, &safety_event(), &[1]);
    check(&hooks, &plan_event(), &[2]);
    check(&hooks, &task_event("any"), &[3]);
    check(&hooks, &labware_event("any", Phase::Start), &[4]);
}

#[test]
fn task_ids_rules() {
    let hooks = [
        task_hook(&["t1", "t2"]),
        task_hook(&[]),
        task_hook(&["T1"]),
        task_hook(&["t1", "t1"]),
        task_hook(&["t1 "]),
    ];
    check(&hooks, &task_event("t1"), &[0, 1, 3]);
    check(&hooks, &task_event("T1"), &[1, 2]); // case-sensitive
    check(&hooks, &task_event("t3"), &[1]);
    check(&hooks, &task_event(""), &[1]);
}

#[test]
fn labware_rules() {
    let hooks = [
        labware_hook(&["p1"], TriggerOn::Start),
        labware_hook(&["p1"], TriggerOn::End),
        labware_hook(&["p1"], TriggerOn::Both),
        labware_hook(&[], TriggerOn::End),
        labware_hook(&["p2"], TriggerOn::Both),
    ];
    check(&hooks, &labware_event("p1", Phase::Start), &[0, 2]);
    check(&hooks, &labware_event("p1", Phase::End), &[1, 2, 3]);
    check(&hooks, &labware_event("p2", Phase::Start), &[4]);
    check(&hooks, &labware_event("p3", Phase::End), &[3]);
}

#[test]
fn identical_hooks_both_fire() {
    let hooks = [
        task_hook(&["t1"]),
        task_hook(&["t1"]),
        Hook::NewPlan(NewPlanHook {
            parameters: parameters(),
        }),
        Hook::NewPlan(NewPlanHook {
            parameters: parameters(),
        }),
    ];
    check(&hooks, &task_event("t1"), &[0, 1]);
    check(&hooks, &plan_event(), &[2, 3]);
}

#[test]
fn no_hooks_no_matches() {
    let matcher = Matcher::new(&[]);
    assert!(matcher.is_empty());
    assert!(matcher.matching(&run_event()).is_empty());
}

// Small id alphabets so that random hooks and events meet often.
const IDS: [&str; 5] = ["a", "b", "c", "A", "é"];

fn id() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&IDS[..])
}

fn ids() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(id(), 0..4)
}

fn hook() -> impl Strategy<Value = Hook> {
    let trigger = prop_oneof![
        Just(TriggerOn::Start),
        Just(TriggerOn::End),
        Just(TriggerOn::Both)
    ];
    prop_oneof![
        Just(Hook::RunStateChange(RunStateChangeHook {
            parameters: parameters()
        })),
        Just(Hook::SafetyStateChange(SafetyStateChangeHook {
            parameters: parameters()
        })),
        Just(Hook::NewPlan(NewPlanHook {
            parameters: parameters()
        })),
        ids().prop_map(|ids| task_hook(&ids)),
        (ids(), trigger).prop_map(|(ids, trigger)| labware_hook(&ids, trigger)),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let phase = prop_oneof![Just(Phase::Start), Just(Phase::End)];
    prop_oneof![
        Just(run_event()),
        Just(safety_event()),
        Just(plan_event()),
        id().prop_map(task_event),
        (id(), phase).prop_map(|(id, phase)| labware_event(id, phase)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_index_agrees_with_the_linear_reference(hooks in proptest::collection::vec(hook(), 0..40), events in proptest::collection::vec(event(), 1..10)) {
        let matcher = Matcher::new(&hooks);
        let mut buffer = Vec::new();
        for event in &events {
            let expected = matching_linear(&hooks, event);
            prop_assert_eq!(&matcher.matching(event), &expected);
            matcher.matching_into(event, &mut buffer);
            prop_assert_eq!(&buffer, &expected);
            // And the reference is the rule applied hook by hook.
            for (i, hook) in hooks.iter().enumerate() {
                prop_assert_eq!(expected.contains(&i), fires(hook, event));
            }
        }
    }
}
