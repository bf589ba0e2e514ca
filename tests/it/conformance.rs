//! The LINQ SDK's 400 judged hook documents, through the library and the JSON Schema.

use linq_hooks_model::parse_hooks;
use linq_hooks_tests::{read_json, sdk_hook_cases};
use serde_json::Value;

#[test]
fn every_sdk_case_agrees_with_the_sdk() {
    let cases = sdk_hook_cases();
    assert_eq!(cases.len(), 400);
    let mut disagreements = Vec::new();
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
