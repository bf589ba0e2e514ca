//! The hook reader's verdicts and messages, data-driven: one `check` helper, many small cases.

use linq_hooks_model::{
    Hook, HookKind, LabwareMovementHook, TaskStateChangeHook, TriggerOn, parse_hooks,
};

/// Asserts that `input` is refused with exactly these problems (`path: message`, in order).
#[track_caller]
fn check_invalid(input: &str, expected: &[&str]) {
    let err = parse_hooks(input).expect_err(input);
    let got: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(got, expected, "input: {input}");
}

/// Asserts that `input` is accepted with exactly these warnings, and returns the hooks.
#[track_caller]
fn check_valid(input: &str, warnings: &[&str]) -> Vec<Hook> {
    let parsed = parse_hooks(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let got: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(got, warnings, "input: {input}");
    parsed.hooks
}

const GOOD: &str = r#"{"url": "https://lims.example/hook"}"#;

fn task_hook(parameters: &str) -> String {
    format!(r#"{{"filter": "on_task_state_change", "parameters": {parameters}, "task_ids": []}}"#)
}

const NEITHER: &str = "$: expected a hook object, an array of hooks, an object with a `hooks` array, or a LINQ API workflow document with a `workflow.hooks` array, found an object without `hooks`, `workflow`, `filter` or `parameters`";

#[test]
fn the_four_document_shapes() {
    let one = task_hook(GOOD);
    assert_eq!(check_valid(&one, &[]).len(), 1);
    assert_eq!(check_valid(&format!("[{one}, {one}]"), &[]).len(), 2);
    assert_eq!(
        check_valid(
            &format!(r#"{{"name": "wf", "tasks": [], "hooks": [{one}]}}"#),
            &[]
        )
        .len(),
        1
    );
    // The LINQ API's workflow document: the hooks at `workflow.hooks`, every other field (of the
    // document and of `workflow`) ignored without a warning.
    assert_eq!(
        check_valid(
            &format!(
                r#"{{"name": "wf", "metadata": {{"x": 1}}, "workflow": {{"batches": 1, "hooks": [{one}, {one}]}}, "workcell": null}}"#
            ),
            &[]
        )
        .len(),
        2
    );
    assert_eq!(check_valid("[]", &[]).len(), 0);
    assert_eq!(check_valid(r#"{"workflow": {"hooks": []}}"#, &[]).len(), 0);
    check_invalid(
        "5",
        &[
            "$: expected a hook object, an array of hooks, an object with a `hooks` array, or a LINQ API workflow document with a `workflow.hooks` array, found number 5",
        ],
    );
    check_invalid(r#"{"name": "wf"}"#, &[NEITHER]);
    check_invalid(
        r#"{"hooks": {"filter": "on_new_plan"}}"#,
        &["hooks: expected an array of hooks, found an object"],
    );
    check_invalid(r#"[null]"#, &["[0]: expected a hook object, found null"]);
}

#[test]
fn workflow_document_errors_name_the_full_path() {
    let input = format!(
        r#"{{"name": "wf", "workflow": {{"tasks": {{}}, "hooks": [
            {one},
            {{"filter": "on_new_plan", "parameters": {{"url": "https://ok.example"}}}},
            {{"filter": "on_new_plan", "parameters": {{"url": "/relative"}}}},
            {{"filter": "on_labware_movement", "parameters": {{"url": "https://ok.example"}}, "labware_ids": [3]}}
        ]}}}}"#,
        one = task_hook(GOOD)
    );
    check_invalid(
        &input,
        &[
            "workflow.hooks[2].parameters.url: relative URL without a scheme",
            "workflow.hooks[3].labware_ids[0]: expected a string, found number 3",
        ],
    );
    check_invalid(
        r#"{"workflow": "wf"}"#,
        &[r#"workflow: expected a workflow object with a `hooks` array, found string "wf""#],
    );
    check_invalid(
        r#"{"workflow": null}"#,
        &["workflow: expected a workflow object with a `hooks` array, found null"],
    );
    check_invalid(
        r#"{"name": "wf", "workflow": {"tasks": {}}}"#,
        &["workflow.hooks: missing required field `hooks` (use [] for a workflow without hooks)"],
    );
    check_invalid(
        r#"{"workflow": {"hooks": {"filter": "on_new_plan"}}}"#,
        &["workflow.hooks: expected an array of hooks, found an object"],
    );
    check_invalid(
        r#"{"workflow": {"hooks": null}}"#,
        &["workflow.hooks: expected an array of hooks, found null"],
    );
    // Two places for the hooks: which one was meant is anyone's guess.
    check_invalid(
        r#"{"hooks": [], "workflow": {"hooks": []}}"#,
        &[
            "$: found both `hooks` and `workflow`; a document has its hooks in one place: `hooks`, or `workflow.hooks` in the LINQ API's workflow document",
        ],
    );
    // A hook with a stray `workflow` field is still a hook, as before.
    assert_eq!(
        check_valid(
            r#"{"filter": "on_new_plan", "parameters": {"url": "https://ok.example"}, "workflow": 1}"#,
            &["workflow: unknown field, ignored"]
        )
        .len(),
        1
    );
}

#[test]
fn ids_that_name_nothing_in_the_workflow_are_warned_about() {
    let input = r#"{"name": "wf", "workflow": {
        "tasks": {"t1": {"name": "dispense"}, "t2": {}},
        "labware": [{"id": "plate-1", "labware_type": "plate"}, "plate-2"],
        "hooks": [
            {"filter": "on_task_state_change", "parameters": {"url": "https://ok.example"}, "task_ids": ["t1", "t2"]},
            {"filter": "on_task_state_change", "parameters": {"url": "https://ok.example"}, "task_ids": ["t9", "t1", "plate-1"]},
            {"filter": "on_task_state_change", "parameters": {"url": "https://ok.example"}, "task_ids": []},
            {"filter": "on_labware_movement", "parameters": {"url": "https://ok.example"}, "labware_ids": ["plate-1", "plate-2", "t1"]},
            {"filter": "on_run_state_change", "parameters": {"url": "https://ok.example"}, "task_ids": ["t9"]}
        ]
    }}"#;
    let hooks = check_valid(
        input,
        &[
            r#"workflow.hooks[1].task_ids[0]: no task "t9" in workflow.tasks; this hook can never fire for it"#,
            r#"workflow.hooks[1].task_ids[2]: no task "plate-1" in workflow.tasks; this hook can never fire for it"#,
            r#"workflow.hooks[3].labware_ids[2]: no labware "t1" in workflow.labware; this hook can never fire for it"#,
            // Not a field of this kind: ignored as any unknown field, and not checked.
            "workflow.hooks[4].task_ids: unknown field, ignored",
        ],
    );
    assert_eq!(hooks.len(), 5);
}

#[test]
fn an_empty_list_declares_nothing_and_an_absent_one_says_nothing() {
    let hooks = r#"[
        {"filter": "on_task_state_change", "parameters": {"url": "https://ok.example"}, "task_ids": ["t1"]},
        {"filter": "on_labware_movement", "parameters": {"url": "https://ok.example"}, "labware_ids": ["p1"]}
    ]"#;
    // Present but empty: the document says there are no tasks and no labware.
    check_valid(
        &format!(r#"{{"workflow": {{"tasks": {{}}, "labware": [], "hooks": {hooks}}}}}"#),
        &[
            r#"workflow.hooks[0].task_ids[0]: no task "t1" in workflow.tasks; this hook can never fire for it"#,
            r#"workflow.hooks[1].labware_ids[0]: no labware "p1" in workflow.labware; this hook can never fire for it"#,
        ],
    );
    // Absent, null, or in a shape whose ids cannot be read: nothing to check against.
    for lists in [
        "",
        r#""tasks": null, "labware": null,"#,
        r#""tasks": 5, "labware": [{"name": "no id"}],"#,
    ] {
        check_valid(
            &format!(r#"{{"workflow": {{{lists} "hooks": {hooks}}}}}"#),
            &[],
        );
    }
    // The `{"hooks": [...]}` shape is not checked against its neighbours, as before.
    check_valid(
        &format!(r#"{{"tasks": {{}}, "labware": [], "hooks": {hooks}}}"#),
        &[],
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let err = parse_hooks("[\n  {\"filter\": \"on_new_plan\",}\n]").unwrap_err();
    assert!(err.is_syntax());
    assert_eq!(err.line_column(), Some((2, 28)));
    // The error says its own level; serde_json's message, with the place, is its source.
    assert_eq!(err.to_string(), "invalid JSON");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("line 2 column 28"), "{source}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let input = r#"{"hooks": [
        {"filter": "on_run_state_change", "parameters": {"url": "https://ok.example"}},
        {"filter": "on_run_state_change", "parameters": {"url": "ftp://files.example"}},
        {"filter": "on_run_state_change", "parameters": {"url": "/relative"}},
        {"filter": "on_task_state_change", "parameters": {"url": "http://", "headers": {"Host": "x", "X-A": "1\r\nX-B: 2"}}, "task_ids": ["t", 7]}
    ]}"#;
    check_invalid(
        input,
        &[
            "hooks[1].parameters.url: unsupported URL scheme `ftp:`; hook URLs are http://, https://, mqtt://, mqtts://",
            "hooks[2].parameters.url: relative URL without a scheme",
            "hooks[3].parameters.url: URL has no host",
            "hooks[3].parameters.headers.Host: header `Host` is set by the delivery itself and cannot be set by a hook",
            "hooks[3].parameters.headers.X-A: header value contains a line break (CR or LF), which would inject headers",
            "hooks[3].task_ids[1]: expected a string, found number 7",
        ],
    );
}

#[test]
fn stricter_url_checks() {
    let cases = [
        ("", "URL is empty"),
        ("relative/path", "relative URL without a scheme"),
        (
            "ftp://example.com",
            "unsupported URL scheme `ftp:`; hook URLs are http://, https://, mqtt://, mqtts://",
        ),
        (
            "javascript:alert(1)",
            "unsupported URL scheme `javascript:`; hook URLs are http://, https://, mqtt://, mqtts://",
        ),
        ("http://exa mple.com", "URL contains whitespace (\\u{20})"),
        ("http://", "URL has no host"),
        (
            "https://user:secret@example.com",
            "URL contains credentials, which are not sent; use an Authorization header instead",
        ),
    ];
    for (url, message) in cases {
        let parameters = serde_json::json!({ "url": url }).to_string();
        check_invalid(
            &task_hook(&parameters),
            &[&format!("parameters.url: {message}")],
        );
    }
}

#[test]
fn stricter_header_checks() {
    let cases = [
        (
            "X Y",
            "v",
            r#"parameters.headers["X Y"]: header name is not a valid HTTP token (it contains a space)"#,
        ),
        (
            "X-A:",
            "v",
            r#"parameters.headers["X-A:"]: header name is not a valid HTTP token (it contains `:`)"#,
        ),
        ("", "v", r#"parameters.headers[""]: header name is empty"#),
        (
            "content-length",
            "1",
            "parameters.headers.content-length: header `content-length` is set by the delivery itself and cannot be set by a hook",
        ),
        (
            "Webhook-Signature",
            "v1,x",
            "parameters.headers.Webhook-Signature: header `Webhook-Signature` is set by the delivery itself and cannot be set by a hook",
        ),
        (
            "X-A",
            "a\nb",
            "parameters.headers.X-A: header value contains a line break (CR or LF), which would inject headers",
        ),
        (
            "X-A",
            "a\u{0}b",
            "parameters.headers.X-A: header value contains a NUL character",
        ),
        (
            "X-Lab-Site",
            "Zürich",
            "parameters.headers.X-Lab-Site: header value contains \\u{fc} (ü) at character 2; header values must be visible US-ASCII (receivers garble or refuse anything else)",
        ),
    ];
    for (name, value, message) in cases {
        let parameters =
            serde_json::json!({ "url": "https://x.example", "headers": { name: value } })
                .to_string();
        check_invalid(&task_hook(&parameters), &[message]);
    }
    // Headers the delivery does not own stay allowed.
    for name in ["Content-Type", "User-Agent", "Authorization", "X-Api-Key"] {
        let parameters =
            serde_json::json!({ "url": "https://x.example", "headers": { name: "v 1; x=\"y\"" } })
                .to_string();
        check_valid(&task_hook(&parameters), &[]);
    }
}

#[test]
fn filter_rules() {
    let params = r#""parameters": {"url": "https://x.example"}"#;
    check_invalid(
        &format!("[{{{params}}}]"),
        &[
            "[0].filter: missing required field `filter` (one of on_task_state_change, on_run_state_change, on_labware_movement, on_safety_state_change, on_new_plan)",
        ],
    );
    check_invalid(
        &format!(r#"[{{"filter": "ON_NEW_PLAN", {params}}}]"#),
        &[
            r#"[0].filter: unknown filter "ON_NEW_PLAN"; expected one of on_task_state_change, on_run_state_change, on_labware_movement, on_safety_state_change, on_new_plan"#,
        ],
    );
    check_invalid(
        &format!(r#"[{{"filter": null, {params}}}]"#),
        &[
            "[0].filter: expected a string (one of on_task_state_change, on_run_state_change, on_labware_movement, on_safety_state_change, on_new_plan), found null",
        ],
    );
    // A concrete type read on its own: a missing filter is fine (deprecated), a wrong one is not.
    let hook: TaskStateChangeHook =
        serde_json::from_str(&format!(r#"{{{params}, "task_ids": ["a"]}}"#)).unwrap();
    assert_eq!(hook.task_ids, ["a"]);
    let err = serde_json::from_str::<TaskStateChangeHook>(&format!(
        r#"{{"filter": "on_new_plan", {params}, "task_ids": []}}"#
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "filter: expected `on_task_state_change`, found `on_new_plan`"
    );
}

#[test]
fn field_rules() {
    check_invalid(
        r#"[{"filter": "on_new_plan"}]"#,
        &["[0].parameters: missing required field `parameters`"],
    );
    check_invalid(
        r#"[{"filter": "on_new_plan", "parameters": 5}]"#,
        &["[0].parameters: expected an object with `url` and `headers`, found number 5"],
    );
    check_invalid(
        r#"[{"filter": "on_new_plan", "parameters": {}}]"#,
        &["[0].parameters.url: missing required field `url`"],
    );
    check_invalid(
        r#"[{"filter": "on_new_plan", "parameters": {"url": ["http://x"]}}]"#,
        &["[0].parameters.url: expected a string, found an array"],
    );
    check_invalid(
        r#"[{"filter": "on_new_plan", "parameters": {"url": "http://x.example", "headers": "X: y"}}]"#,
        &[
            r#"[0].parameters.headers: expected an object of header names to string values, or null; found string "X: y""#,
        ],
    );
    check_invalid(
        r#"[{"filter": "on_new_plan", "parameters": {"url": "http://x.example", "headers": {"X-A": 1}}}]"#,
        &["[0].parameters.headers.X-A: expected a string header value, found number 1"],
    );
    check_invalid(
        r#"[{"filter": "on_task_state_change", "parameters": {"url": "http://x.example"}}]"#,
        &["[0].task_ids: missing required field `task_ids` (use [] for every task)"],
    );
    check_invalid(
        r#"[{"filter": "on_labware_movement", "parameters": {"url": "http://x.example"}, "labware_ids": null}]"#,
        &["[0].labware_ids: expected an array of labware ids, found null"],
    );
    for bad in [r#""""#, "null", r#""Start""#, "1"] {
        let input = format!(
            r#"[{{"filter": "on_labware_movement", "parameters": {{"url": "http://x.example"}}, "labware_ids": [], "trigger_on": {bad}}}]"#
        );
        let err = parse_hooks(&input).unwrap_err();
        assert_eq!(err.problems()[0].path(), "[0].trigger_on", "{bad}");
    }
}

#[test]
fn defaults_and_normal_form() {
    let hooks = check_valid(
        r#"[{"filter": "on_labware_movement", "parameters": {"url": "http://x.example", "headers": null}, "labware_ids": ["p1"]}]"#,
        &[],
    );
    let Hook::LabwareMovement(LabwareMovementHook {
        trigger_on,
        parameters,
        ..
    }) = &hooks[0]
    else {
        panic!()
    };
    assert_eq!(*trigger_on, TriggerOn::Both);
    assert!(parameters.headers().is_empty());
    assert_eq!(
        serde_json::to_string(&hooks).unwrap(),
        r#"[{"filter":"on_labware_movement","parameters":{"url":"http://x.example","headers":{}},"labware_ids":["p1"],"trigger_on":"both"}]"#
    );
    // Serialized hooks read back to the same values.
    let again = parse_hooks(&serde_json::to_string(&hooks).unwrap())
        .unwrap()
        .hooks;
    assert_eq!(again, hooks);
    assert_eq!(hooks[0].kind(), HookKind::LabwareMovement);
}

#[test]
fn unknown_fields_are_warned_about_and_ignored() {
    let hooks = check_valid(
        r#"{"hooks": [{"filter": "on_task_state_change", "parameters": {"url": "http://x.example", "header": {}}, "task_ids": [], "task_id": "t1"},
                      {"filter": "on_run_state_change", "parameters": {"url": "http://x.example"}, "task_ids": ["t1"]}]}"#,
        &[
            "hooks[0].parameters.header: unknown field, ignored; did you mean `headers`?",
            // `task_ids` is there already: `task_id` is not a misspelling of it.
            "hooks[0].task_id: unknown field, ignored",
            "hooks[1].task_ids: unknown field, ignored",
        ],
    );
    assert_eq!(hooks.len(), 2);
}

/// An unknown field close to a known one of its object names it (Jaro similarity above 0.7,
/// case ignored); one close to nothing does not.
#[test]
fn unknown_fields_suggest_the_field_meant() {
    let cases = [
        (
            r#"{"filter": "on_labware_movement", "parameters": {"url": "http://x.example"}, "labware_ids": [], "trigger": "end"}"#,
            "trigger: unknown field, ignored; did you mean `trigger_on`?",
        ),
        (
            r#"{"filter": "on_new_plan", "parameters": {"url": "http://x.example", "header": {"X-A": "1"}}}"#,
            "parameters.header: unknown field, ignored; did you mean `headers`?",
        ),
        (
            r#"{"filter": "on_labware_movement", "parameters": {"url": "http://x.example"}, "labware_ids": [], "TriggerOn": "end"}"#,
            "TriggerOn: unknown field, ignored; did you mean `trigger_on`?",
        ),
        (
            r#"{"filter": "on_new_plan", "parameters": {"url": "http://x.example"}, "Parameter": 1}"#,
            "Parameter: unknown field, ignored",
        ),
        (
            r#"{"filter": "on_new_plan", "parameters": {"url": "http://x.example", "Headers": {}}}"#,
            "parameters.Headers: unknown field, ignored; did you mean `headers`?",
        ),
        (
            r#"{"filter": "on_new_plan", "parameters": {"url": "http://x.example"}, "tags": ["a"]}"#,
            "tags: unknown field, ignored",
        ),
    ];
    for (input, warning) in cases {
        check_valid(input, &[warning]);
    }
}

/// A byte order mark before the JSON (what some Windows editors write) is ignored, as RFC 8259
/// allows; one anywhere else is still an error.
#[test]
fn a_leading_byte_order_mark_is_ignored() {
    let hooks = r#"[{"filter": "on_new_plan", "parameters": {"url": "https://x.example"}}]"#;
    let with_bom = format!("\u{feff}{hooks}");
    assert_eq!(
        parse_hooks(&with_bom).unwrap().hooks,
        parse_hooks(hooks).unwrap().hooks
    );
    assert!(
        parse_hooks(&format!(" \u{feff}{hooks}"))
            .unwrap_err()
            .is_syntax()
    );
}
