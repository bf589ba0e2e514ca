//! Event bodies: parsing, defaults, normal form, bad input, and the schemas.

use linq_hooks_events::{Event, EventKind, RunState, RunStateChange, TaskState, parse_event};
use linq_hooks_tests::{read_json, workspace_root};
use serde_json::{Value, json};

/// LINQ's documented run-state body, verbatim.
const DOCUMENTED: &str = r#"{"state": "paused", "message": "The run is paused.", "run_id": "00000000-0000-0000-000000000000", "timestamp": "2025-04-17T09:30:00.000Z"}"#;

/// Asserts that `input` parses and serializes to `expected`.
#[track_caller]
fn check(input: Value, expected: Value) {
    let event = parse_event(&input.to_string()).unwrap_or_else(|e| panic!("{input}: {e}"));
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        expected,
        "input: {input}"
    );
    // The normal form reads back to the same event.
    assert_eq!(parse_event(&expected.to_string()).unwrap(), event);
}

/// Asserts that `input` is refused with exactly this `path: reason` (or, when `expected` ends
/// with `...`, a reason that starts so: for messages a dependency words).
#[track_caller]
fn check_refused(input: &str, expected: &str) {
    let err = parse_event(input).expect_err(input);
    assert!(err.is_invalid(), "{input}: {err}");
    match expected.strip_suffix("...") {
        Some(prefix) => assert!(
            err.to_string().starts_with(prefix),
            "input: {input}\n got: {err}"
        ),
        None => assert_eq!(err.to_string(), expected, "input: {input}"),
    }
}

fn example_events() -> Vec<Value> {
    let text = std::fs::read_to_string(workspace_root().join("examples/events.ndjson")).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_documented_body_parses_unchanged_through_its_own_type() {
    let body: RunStateChange = serde_json::from_str(DOCUMENTED).unwrap();
    assert_eq!(body.state, RunState::Paused);
    assert_eq!(body.run_id, "00000000-0000-0000-000000000000");
    let mut written = serde_json::to_value(&body).unwrap();
    assert_eq!(written, serde_json::from_str::<Value>(DOCUMENTED).unwrap());
    // Through the union, it is the same body plus `event`.
    written["event"] = json!("run_state_change");
    assert_eq!(
        serde_json::to_value(parse_event(&written.to_string()).unwrap()).unwrap(),
        written
    );
    // And it validates against the kind's own schema.
    let schema =
        jsonschema::draft202012::new(&read_json("schemas/events/run_state_change.schema.json"))
            .unwrap();
    assert!(schema.is_valid(&serde_json::from_str(DOCUMENTED).unwrap()));
}

#[test]
fn stoped_is_read_as_stopped() {
    check(
        json!({"event": "run_state_change", "run_id": "r", "state": "stoped", "timestamp": "2025-04-17T09:30:00.000Z"}),
        json!({"event": "run_state_change", "run_id": "r", "state": "stopped", "message": "The run has stopped.", "timestamp": "2025-04-17T09:30:00.000Z"}),
    );
}

#[test]
fn unknown_states_pass_through_and_wrong_types_are_refused() {
    check(
        json!({"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "retrying", "message": "m", "timestamp": "2025-04-17T09:30:00.000Z"}),
        json!({"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "retrying", "message": "m", "timestamp": "2025-04-17T09:30:00.000Z"}),
    );
    let event = parse_event(r#"{"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "retrying", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    let Event::TaskStateChange(task) = event else {
        panic!()
    };
    assert_eq!(task.state, TaskState::Other("retrying".into()));
    assert_eq!(task.message, "Task t is now retrying.");
    check_refused(
        r#"{"event": "run_state_change", "run_id": "r", "state": 3, "timestamp": "2025-04-17T09:30:00Z"}"#,
        "state: invalid type: integer `3`, expected a string",
    );
    check_refused(
        r#"{"event": "safety_state_change", "state": null, "timestamp": "2025-04-17T09:30:00Z"}"#,
        "state: invalid type: null, expected a string",
    );
}

#[test]
fn messages_are_made_from_the_state_when_absent() {
    let ts = "2025-04-17T09:30:00.000Z";
    let cases = [
        (
            json!({"event": "run_state_change", "run_id": "r", "state": "started"}),
            "The run has started.",
        ),
        (
            json!({"event": "run_state_change", "run_id": "r", "state": "paused"}),
            "The run is paused.",
        ),
        (
            json!({"event": "run_state_change", "run_id": "r", "state": "resumed", "message": ""}),
            "The run has resumed.",
        ),
        (
            json!({"event": "run_state_change", "run_id": "r", "state": "aborted"}),
            "The run is now aborted.",
        ),
        (
            json!({"event": "task_state_change", "run_id": "r", "task_id": "t1", "state": "started"}),
            "Task t1 started.",
        ),
        (
            json!({"event": "task_state_change", "run_id": "r", "task_id": "t1", "state": "succeeded"}),
            "Task t1 succeeded.",
        ),
        (
            json!({"event": "task_state_change", "run_id": "r", "task_id": "t1", "state": "failed"}),
            "Task t1 failed.",
        ),
        (
            json!({"event": "task_state_change", "run_id": "r", "task_id": "t1", "state": "failed", "error": "jammed"}),
            "Task t1 failed: jammed",
        ),
        (
            json!({"event": "task_state_change", "run_id": "r", "task_id": "t1", "state": "skipped"}),
            "Task t1 was skipped.",
        ),
        (
            json!({"event": "task_state_change", "run_id": "r", "task_id": "t1", "state": "cancelled"}),
            "Task t1 was cancelled.",
        ),
        (
            json!({"event": "safety_state_change", "state": "normal"}),
            "The workcell is back to normal.",
        ),
        (
            json!({"event": "safety_state_change", "state": "alert"}),
            "The workcell raised a safety alert.",
        ),
        (
            json!({"event": "safety_state_change", "state": "emergency_stop"}),
            "The workcell is in emergency stop.",
        ),
        (
            json!({"event": "labware_movement", "run_id": "r", "labware_id": "p7", "phase": "start", "source": {"instrument": "hotel", "slot": 3}, "destination": {"instrument": "reader", "slot": 1}}),
            "Labware p7 was picked up from hotel slot 3.",
        ),
        (
            json!({"event": "labware_movement", "run_id": "r", "labware_id": "p7", "phase": "end", "source": {"instrument": "hotel", "slot": 3}, "destination": {"instrument": "reader", "slot": 1}}),
            "Labware p7 was put down on reader slot 1.",
        ),
        (
            json!({"event": "new_plan", "plan_id": "p2"}),
            "The scheduler made a new plan, p2.",
        ),
    ];
    for (mut input, message) in cases {
        input["timestamp"] = json!(ts);
        let event = parse_event(&input.to_string()).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(event.message(), message, "{input}");
    }
    // A message that is there is kept.
    let event = parse_event(r#"{"event": "new_plan", "plan_id": "p", "message": "Replanned after the alert.", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    assert_eq!(event.message(), "Replanned after the alert.");
}

#[test]
fn timestamps_are_written_in_utc_with_milliseconds() {
    let cases = [
        ("2025-04-17T09:30:00.000Z", "2025-04-17T09:30:00.000Z"),
        ("2025-04-17T09:30:00Z", "2025-04-17T09:30:00.000Z"),
        ("2025-04-17T11:30:00.25+02:00", "2025-04-17T09:30:00.250Z"),
        ("2025-04-17T09:30:00.123456789Z", "2025-04-17T09:30:00.123Z"),
        // Cut before 1970 too, not rounded up into the next second.
        ("1969-12-31T23:59:59.9999Z", "1969-12-31T23:59:59.999Z"),
        ("2025-04-16T23:30:00-10:00", "2025-04-17T09:30:00.000Z"),
        ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000Z"),
    ];
    for (input, written) in cases {
        check(
            json!({"event": "new_plan", "plan_id": "p", "message": "m", "timestamp": input}),
            json!({"event": "new_plan", "plan_id": "p", "message": "m", "timestamp": written}),
        );
    }
}

#[test]
fn bad_input_is_refused_with_path_and_reason() {
    let labware = |phase: &str, slot: &str| {
        format!(
            r#"{{"event": "labware_movement", "run_id": "r", "labware_id": "l", "phase": {phase}, "source": {{"instrument": "a", "slot": {slot}}}, "destination": {{"instrument": "b", "slot": 2}}, "timestamp": "2025-04-17T09:30:00Z"}}"#
        )
    };
    let cases = [
        (r#"{"event": "run_started", "run_id": "r"}"#.to_string(), r#"event: unknown event "run_started"; expected one of run_state_change, task_state_change, safety_state_change, labware_movement, new_plan"#),
        (r#"{"run_id": "r", "state": "paused"}"#.to_string(), "event: missing required field `event` (one of run_state_change, task_state_change, safety_state_change, labware_movement, new_plan)"),
        (r#"{"event": 5}"#.to_string(), "event: expected a string (one of run_state_change, task_state_change, safety_state_change, labware_movement, new_plan), found a number"),
        (r#"[1]"#.to_string(), "$: expected an event object, found an array"),
        (r#"{"event": "run_state_change", "state": "paused", "timestamp": "2025-04-17T09:30:00Z"}"#.to_string(), "run_id: missing required field `run_id`"),
        (r#"{"event": "run_state_change", "run_id": "r", "state": "paused", "timestamp": "yesterday"}"#.to_string(), "timestamp: invalid RFC 3339 timestamp \"yesterday\": ..."),
        (r#"{"event": "run_state_change", "run_id": "r", "state": "paused", "timestamp": 1744882200}"#.to_string(), "timestamp: invalid type: integer `1744882200`, expected a string"),
        (labware(r#""middle""#, "1"), "phase: unknown variant `middle`, expected `start` or `end`"),
        (labware(r#""start""#, "-1"), "source.slot: invalid value: integer `-1`, expected u32"),
        (labware(r#""start""#, r#""3""#), "source.slot: invalid type: string \"3\", expected u32"),
        (r#"{"event": "labware_movement", "run_id": "r", "labware_id": "l", "phase": "end", "source": {"slot": 1}, "destination": {"instrument": "b", "slot": 2}, "timestamp": "2025-04-17T09:30:00Z"}"#.to_string(), "source.instrument: missing required field `instrument`"),
    ];
    for (input, expected) in cases {
        check_refused(&input, expected);
    }
    // RFC 3339 has no year before 0000 (found by the parse_event fuzz target).
    check_refused(
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "0000-01-01T00:00:00+00:01"}"#,
        "timestamp: timestamp \"0000-01-01T00:00:00+00:01\" is outside the years 0000 to 9999 (UTC) that RFC 3339 can write",
    );
    // The last second of jiff's range reads (it once panicked); the next one is refused.
    let last = parse_event(
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "9999-12-30T22:00:00.5Z"}"#,
    )
    .unwrap();
    assert_eq!(last.timestamp().to_string(), "9999-12-30T22:00:00.500Z");
    let err = parse_event(
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "9999-12-30T22:00:01Z"}"#,
    )
    .unwrap_err();
    assert_eq!(err.path(), Some("timestamp"));
    let err = parse_event("{\n\"event\": }").unwrap_err();
    assert!(err.is_syntax());
    assert_eq!(err.line_column(), Some((2, 10)));
}

#[test]
fn the_timestamp_without_an_offset_is_refused() {
    let err =
        parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00"}"#)
            .unwrap_err();
    assert_eq!(err.path(), Some("timestamp"));
}

#[test]
fn every_example_event_parses_and_matches_the_schemas() {
    let union = jsonschema::draft202012::new(&read_json("schemas/event.schema.json")).unwrap();
    let events = example_events();
    assert!(!events.is_empty());
    let mut seen = std::collections::BTreeSet::new();
    for input in events {
        let event = parse_event(&input.to_string()).unwrap_or_else(|e| panic!("{input}: {e}"));
        seen.insert(event.kind());
        let body = serde_json::to_value(&event).unwrap();
        assert!(union.is_valid(&body), "{body}");
        let own = read_json(&format!(
            "schemas/events/{}.schema.json",
            event.kind().name()
        ));
        assert!(
            jsonschema::draft202012::new(&own).unwrap().is_valid(&body),
            "{body}"
        );
    }
    assert_eq!(
        seen.len(),
        EventKind::ALL.len(),
        "the examples show every kind"
    );
}

#[test]
fn the_schemas_refuse_bodies_that_break_the_contract() {
    let union = jsonschema::draft202012::new(&read_json("schemas/event.schema.json")).unwrap();
    let good = json!({"event": "run_state_change", "run_id": "r", "state": "paused", "message": "m", "timestamp": "2025-04-17T09:30:00.000Z"});
    assert!(union.is_valid(&good));
    for (field, bad) in [
        ("event", json!("run_started")),
        ("state", json!(3)),
        ("run_id", json!(null)),
    ] {
        let mut body = good.clone();
        body[field] = bad;
        assert!(!union.is_valid(&body), "{body}");
    }
    let mut no_message = good.clone();
    no_message.as_object_mut().unwrap().remove("message");
    assert!(
        !union.is_valid(&no_message),
        "bodies as sent always carry a message"
    );
}

#[test]
fn the_committed_event_schemas_are_what_the_types_generate() {
    assert_eq!(
        read_json("schemas/event.schema.json"),
        linq_hooks_events::schema::event().to_value(),
        "run `cargo xtask schema`"
    );
    for kind in EventKind::ALL {
        let path = format!("schemas/events/{}.schema.json", kind.name());
        assert_eq!(
            read_json(&path),
            linq_hooks_events::schema::body(kind).to_value(),
            "{path}: run `cargo xtask schema`"
        );
    }
}

/// A byte order mark before an event (a file or an NDJSON line written by a Windows tool) is
/// ignored, as RFC 8259 allows.
#[test]
fn a_leading_byte_order_mark_is_ignored() {
    let event = r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let with_bom = format!("\u{feff}{event}");
    assert_eq!(
        linq_hooks_events::parse_event(&with_bom).unwrap(),
        linq_hooks_events::parse_event(event).unwrap()
    );
}

/// The field fault: `23:59:60.5Z` was written as `23:59:59.500Z`, before an event at
/// `23:59:59.900Z`. A leap second keeps its place: after all of second 59, before the next
/// minute, whatever the offset it is written in.
#[test]
fn a_leap_second_keeps_its_order() {
    use linq_hooks_events::Timestamp;
    let t = |s: &str| s.parse::<Timestamp>().unwrap();
    let leap = t("2016-12-31T23:59:60.5Z");
    assert_eq!(leap.to_string(), "2016-12-31T23:59:59.999Z");
    assert!(t("2016-12-31T23:59:59.900Z") < leap);
    assert!(leap < t("2017-01-01T00:00:00Z"));
    assert_eq!(t("2016-12-31T23:59:60Z"), leap);
    assert_eq!(t("2017-01-01T00:59:60.25+01:00"), leap);
    // Not a leap second: a minute or an hour of 60 stays refused; second 59 is untouched.
    assert_eq!(
        t("2016-12-31T23:59:59.5Z").to_string(),
        "2016-12-31T23:59:59.500Z"
    );
    assert!("2016-12-31T23:60:00Z".parse::<Timestamp>().is_err());
}

/// Issue 11, item 14: a field a newer scheduler adds reaches receivers. Unknown fields are kept
/// as received, after the known fields (normalised as always), at the top and in a location,
/// whatever their type; `event` is written once; the schemas accept them.
#[test]
fn unknown_fields_are_kept_after_the_known_ones() {
    // The input from the field report: a field the scheduler added.
    check(
        json!({"event": "run_state_change", "run_id": "r", "state": "paused", "timestamp": "2025-04-17T11:30:00+02:00", "operator": "ada"}),
        json!({"event": "run_state_change", "run_id": "r", "state": "paused", "message": "The run is paused.", "timestamp": "2025-04-17T09:30:00.000Z", "operator": "ada"}),
    );
    // Other kinds, nested values, null and numbers; in a location too.
    let ts = "2025-04-17T09:30:00.000Z";
    check(
        json!({"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "failed", "timestamp": ts,
               "retry": null, "instrument": {"id": "reader", "firmware": [1, 2]}, "load": 0.75}),
        json!({"event": "task_state_change", "run_id": "r", "task_id": "t", "state": "failed", "message": "Task t failed.", "timestamp": ts,
               "instrument": {"id": "reader", "firmware": [1, 2]}, "load": 0.75, "retry": null}),
    );
    check(
        json!({"event": "labware_movement", "run_id": "r", "labware_id": "l", "phase": "start",
               "source": {"instrument": "hotel", "slot": 3, "rack": "A"}, "destination": {"instrument": "reader", "slot": 1},
               "timestamp": ts, "barcode": "X1"}),
        json!({"event": "labware_movement", "run_id": "r", "labware_id": "l", "phase": "start",
               "source": {"instrument": "hotel", "slot": 3, "rack": "A"}, "destination": {"instrument": "reader", "slot": 1},
               "message": "Labware l was picked up from hotel slot 3.", "timestamp": ts, "barcode": "X1"}),
    );
    for (kind, fields) in [
        ("safety_state_change", json!({"state": "alert"})),
        ("new_plan", json!({"plan_id": "p"})),
    ] {
        let mut input = fields.clone();
        input["event"] = json!(kind);
        input["timestamp"] = json!(ts);
        input["zone"] = json!(4);
        let event = parse_event(&input.to_string()).unwrap();
        assert_eq!(event.extra().len(), 1, "{input}");
        assert_eq!(serde_json::to_value(&event).unwrap()["zone"], 4, "{input}");
    }

    // Known fields are not also extras; `event` appears once in what is sent.
    let event = parse_event(
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z", "plan_version": 3}"#,
    )
    .unwrap();
    assert_eq!(event.extra().keys().collect::<Vec<_>>(), ["plan_version"]);
    let sent = String::from_utf8(event.to_json_bytes()).unwrap();
    assert_eq!(sent.matches("\"event\"").count(), 1, "{sent}");
    assert_eq!(
        sent,
        r#"{"event":"new_plan","plan_id":"p","message":"The scheduler made a new plan, p.","timestamp":"2025-04-17T09:30:00.000Z","plan_version":3}"#
    );

    // A receiver reading one kind's body keeps them too.
    let body: RunStateChange =
        serde_json::from_str(r#"{"run_id": "r", "state": "paused", "timestamp": "2025-04-17T09:30:00Z", "operator": "ada"}"#)
            .unwrap();
    assert_eq!(body.extra["operator"], "ada");

    // Wrong types of known fields are still refused, with their path.
    check_refused(
        r#"{"event": "run_state_change", "run_id": 7, "state": "paused", "timestamp": "2025-04-17T09:30:00Z", "operator": "ada"}"#,
        "run_id: invalid type: integer `7`, expected a string",
    );

    // The schemas allow them: the union and each kind's own.
    let body = serde_json::to_value(&event).unwrap();
    let union = jsonschema::draft202012::new(&read_json("schemas/event.schema.json")).unwrap();
    assert!(union.is_valid(&body), "{body}");
    let own = read_json("schemas/events/new_plan.schema.json");
    assert!(
        jsonschema::draft202012::new(&own).unwrap().is_valid(&body),
        "{body}"
    );
}

/// Every kind of operational webhook (`serve --ops-url`) as sent validates against the
/// committed `schemas/ops-event.schema.json` and reads back the same; a body with an unknown
/// `type`, or without its `data`, does not validate.
#[test]
fn operational_webhooks_match_their_schema() {
    use linq_hooks_events::ops::{
        DeliveryFailed, HookDisabled, HookRecovered, OpsData, OpsEvent, Trouble,
    };
    let schema = read_json("schemas/ops-event.schema.json");
    assert_eq!(
        schema,
        linq_hooks_events::schema::ops_event().to_value(),
        "run `cargo xtask schema`"
    );
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let timestamp = "2026-11-30T02:46:42.123Z".parse().unwrap();
    let all = [
        OpsData::HookDisabled(HookDisabled {
            workflow_id: "lab".into(),
            hook: "hook_1".into(),
            delivery: 4,
            webhook_id: "msg_4".into(),
            reason: "the receiver answered 410 Gone".into(),
        }),
        OpsData::DeliveryFailed(DeliveryFailed {
            workflow_id: "lab".into(),
            hook: "hook_2".into(),
            delivery: 5,
            webhook_id: "msg_5".into(),
            attempts: 8,
            last_status: None,
            reason: "gave up after 8 attempts; the last: could not connect".into(),
        }),
        OpsData::HookRecovered(HookRecovered {
            workflow_id: "lab".into(),
            hook: "hook_2".into(),
            delivery: 6,
            since: timestamp,
            after: vec![Trouble::DeliveryFailed, Trouble::HookPaused],
        }),
    ];
    for data in all {
        let event = OpsEvent { timestamp, data };
        let body = serde_json::to_value(&event).unwrap();
        assert!(validator.is_valid(&body), "{body}");
        assert_eq!(body["type"], event.data.type_name());
        assert_eq!(
            serde_json::from_value::<OpsEvent>(body.clone()).unwrap(),
            event
        );
        let mut unknown = body.clone();
        unknown["type"] = json!("hook.exploded");
        assert!(!validator.is_valid(&unknown), "{unknown}");
        let mut no_data = body;
        no_data.as_object_mut().unwrap().remove("data");
        assert!(!validator.is_valid(&no_data), "{no_data}");
    }
}
