//! The LINQ SDK's 400 judged hook documents, through the library and the JSON Schema, and its
//! 80 judged workflow documents (the API's form, hooks at `workflow.hooks`), through the library.

use linq_hooks_model::parse_hooks;
use linq_hooks_tests::{fixtures_dir, read_json, sdk_hook_cases, sdk_workflow_cases};
use serde_json::Value;

#[test]
fn every_sdk_case_agrees_with_the_sdk() {
    let cases = sdk_hook_cases();
    assert_eq!(cases.len(), 400);
    let mut disagreements = Vec::new();
    // Cases the SDK accepts and linq-hooks refuses on purpose: header values outside visible
    // US-ASCII (see `refused_only_for_non_ascii_header_values`).
    let mut stricter = Vec::new();
    for case in &cases {
        match (parse_hooks(&case.input), case.valid) {
            (Ok(parsed), true) => {
                let ours = serde_json::to_value(&parsed.hooks).unwrap();
                if Some(&ours) != case.normalized.as_ref() {
                    disagreements.push(format!(
                        "{}: normalized differs:\n ours {ours}\n sdk  {}",
                        case.id,
                        case.normalized.as_ref().unwrap()
                    ));
                }
            }
            (Err(err), false) => {
                assert!(
                    err.is_invalid(),
                    "{}: the inputs are all JSON, got {err}",
                    case.id
                );
                assert!(!err.problems().is_empty());
            }
            (Ok(_), false) => disagreements.push(format!(
                "{}: accepted, but the SDK refuses it ({:?})",
                case.id, case.error
            )),
            (Err(err), true) if refused_only_for_non_ascii_header_values(&err) => {
                stricter.push(case.id.clone());
            }
            (Err(err), true) => disagreements.push(format!(
                "{}: refused, but the SDK accepts it: {err}",
                case.id
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        !stricter.is_empty(),
        "the fixtures exercise the stricter header rule"
    );
}

#[test]
fn every_sdk_workflow_document_agrees_with_the_sdk() {
    let cases = sdk_workflow_cases();
    assert_eq!(cases.len(), 80);
    // Both verdicts are exercised, and invalid hooks inside otherwise valid documents among them.
    assert!(cases.iter().filter(|case| case.valid).count() >= 10);
    assert!(cases.iter().filter(|case| !case.valid).count() >= 10);
    let mut disagreements = Vec::new();
    // Cases the SDK accepts and linq-hooks refuses on purpose: header values outside visible
    // US-ASCII (see `refused_only_for_non_ascii_header_values`).
    let mut stricter = Vec::new();
    for case in &cases {
        match (parse_hooks(&case.input), case.valid) {
            (Ok(parsed), true) => {
                let ours = serde_json::to_value(&parsed.hooks).unwrap();
                if Some(&ours) != case.normalized.as_ref() {
                    disagreements.push(format!(
                        "{}: normalized differs:\n ours {ours}\n sdk  {}",
                        case.id,
                        case.normalized.as_ref().unwrap()
                    ));
                }
                // Warnings there may be (unknown fields of a hook; ids, as the documents list no
                // tasks), but none about the workflow's own fields.
                for warning in &parsed.warnings {
                    assert!(
                        warning.to_string().starts_with("workflow.hooks["),
                        "{}: {warning}",
                        case.id
                    );
                }
            }
            (Err(err), false) => {
                assert!(
                    err.is_invalid(),
                    "{}: the inputs are all JSON, got {err}",
                    case.id
                );
                assert!(!err.problems().is_empty());
                for problem in err.problems() {
                    assert!(
                        problem.to_string().starts_with("workflow.hooks["),
                        "{}: a problem without its full path: {problem}",
                        case.id
                    );
                }
            }
            (Ok(_), false) => {
                disagreements.push(format!("{}: accepted, but the SDK refuses it", case.id))
            }
            (Err(err), true) if refused_only_for_non_ascii_header_values(&err) => {
                stricter.push(case.id.clone());
            }
            (Err(err), true) => disagreements.push(format!(
                "{}: refused, but the SDK accepts it: {err}",
                case.id
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        !stricter.is_empty(),
        "the fixtures exercise the stricter header rule"
    );
}

/// linq-hooks refuses header values outside visible US-ASCII, which the SDK accepts: receivers
/// garble or refuse them (tests/fixtures/linq-sdk/README.md). Such a refusal agrees with the SDK
/// when it is the only reason, and each problem names the header by its path.
fn refused_only_for_non_ascii_header_values(err: &linq_hooks_model::Error) -> bool {
    err.is_invalid()
        && err.problems().iter().all(|problem| {
            problem.path().contains("parameters.headers.")
                && problem.message().contains("must be visible US-ASCII")
        })
}

#[test]
fn the_sdk_example_workflow_document_gives_five_hooks() {
    let path = fixtures_dir().join("linq-sdk/workflow-api-input.example.json");
    let parsed = parse_hooks(&std::fs::read_to_string(path).unwrap()).unwrap();
    let filters: Vec<&str> = parsed
        .hooks
        .iter()
        .map(|hook| hook.kind().filter())
        .collect();
    assert_eq!(
        filters,
        [
            "on_run_state_change",
            "on_task_state_change",
            "on_labware_movement",
            "on_safety_state_change",
            "on_new_plan"
        ]
    );
    // `workflow.tasks` is `{}`: the document says there are no tasks, so `t1` names nothing.
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            r#"workflow.hooks[1].task_ids[0]: no task "t1" in workflow.tasks; this hook can never fire for it"#
        ]
    );
}

/// The hooks of a case, as a list, whatever the document's shape.
fn hook_list(input: &Value) -> Vec<Value> {
    match input {
        Value::Array(items) => items.clone(),
        Value::Object(map) if map.contains_key("hooks") => map["hooks"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![map["hooks"].clone()]),
        other => vec![other.clone()],
    }
}

#[test]
fn the_schemas_accept_what_the_sdk_accepts_and_refuse_what_it_refuses() {
    let hook_schema = jsonschema::draft202012::new(&read_json("schemas/hook.schema.json")).unwrap();
    let hooks_schema =
        jsonschema::draft202012::new(&read_json("schemas/hooks.schema.json")).unwrap();
    for case in sdk_hook_cases() {
        let input: Value = serde_json::from_str(&case.input).unwrap();
        let hooks = hook_list(&input);
        let each_valid = hooks.iter().all(|hook| hook_schema.is_valid(hook));
        assert_eq!(
            each_valid, case.valid,
            "{}: hook.schema.json says {each_valid}: {}",
            case.id, case.input
        );
        let list_valid = hooks_schema.is_valid(&Value::Array(hooks));
        assert_eq!(
            list_valid, case.valid,
            "{}: hooks.schema.json says {list_valid}",
            case.id
        );
        if let Some(normalized) = &case.normalized {
            assert!(
                hooks_schema.is_valid(normalized),
                "{}: the SDK's own output",
                case.id
            );
        }
    }
}

#[test]
fn the_committed_schemas_are_what_the_types_generate() {
    assert_eq!(
        read_json("schemas/hook.schema.json"),
        linq_hooks_model::schema::hook().to_value(),
        "run `cargo xtask schema`"
    );
    assert_eq!(
        read_json("schemas/hooks.schema.json"),
        linq_hooks_model::schema::hooks().to_value(),
        "run `cargo xtask schema`"
    );
}

#[test]
fn our_schema_describes_the_same_fields_as_the_sdk_schema() {
    // Same variants, same required fields and same properties per hook kind as pydantic's.
    let ours = read_json("schemas/hook.schema.json");
    let sdk = read_json("tests/fixtures/linq-sdk/hook.pydantic-schema.json");
    for (filter, sdk_ref) in sdk["discriminator"]["mapping"].as_object().unwrap() {
        let sdk_def = &sdk["$defs"][sdk_ref.as_str().unwrap().trim_start_matches("#/$defs/")];
        let variant = ours["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["properties"]["filter"]["const"] == *filter)
            .unwrap_or_else(|| panic!("no variant for {filter}"));
        let our_def = &ours["$defs"][variant["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/$defs/")];
        let keys = |v: &Value| -> Vec<String> {
            let mut keys: Vec<String> = v["properties"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "filter")
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(our_def), keys(sdk_def), "{filter}: properties");
        assert_eq!(
            our_def["required"], sdk_def["required"],
            "{filter}: required"
        );
    }
}
