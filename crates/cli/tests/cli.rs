//! The `linq-hooks` binary, run as a real process.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{temp_file, text};
use linq_hooks_tests::{fixtures_dir, sdk_hook_cases, sdk_workflow_cases, workspace_root};

/// Runs `linq-hooks ARGS` with `stdin` on standard input.
fn linq_hooks(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_linq-hooks"))
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // A command may exit before it reads its input (an invalid hook file, say): that is fine.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        result => result.unwrap(),
    }
    child.wait_with_output().unwrap()
}

/// linq-hooks refuses header values outside visible US-ASCII, which the SDK accepts
/// (tests/fixtures/linq-sdk/README.md): such a refusal agrees with the SDK when it is the only
/// reason and each problem names the header by its path.
fn refused_only_for_non_ascii_header_values(code: Option<i32>, stderr: &str) -> bool {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    code == Some(1)
        && !errors.is_empty()
        && errors.iter().all(|line| {
            line.contains("parameters.headers.") && line.contains("must be visible US-ASCII")
        })
}

#[test]
fn every_sdk_case_agrees_with_the_sdk_through_the_cli() {
    let mut stricter = 0;
    for case in sdk_hook_cases() {
        let out = linq_hooks(&["validate", "--normalized", "-"], &case.input);
        let stderr = text(&out.stderr);
        if case.valid && refused_only_for_non_ascii_header_values(out.status.code(), &stderr) {
            stricter += 1;
        } else if case.valid {
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", case.id);
            let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(Some(&printed), case.normalized.as_ref(), "{}", case.id);
        } else {
            assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.id);
            assert!(out.stdout.is_empty(), "{}: nothing on stdout", case.id);
            assert!(
                stderr.starts_with("error: <stdin>: "),
                "{}: {stderr}",
                case.id
            );
        }
    }
    assert!(
        stricter > 0,
        "the fixtures exercise the stricter header rule"
    );
}

#[test]
fn every_sdk_workflow_document_agrees_with_the_sdk_through_the_cli() {
    let cases = sdk_workflow_cases();
    assert_eq!(cases.len(), 80);
    let mut stricter = 0;
    for case in cases {
        let out = linq_hooks(&["validate", "--normalized", "-"], &case.input);
        let stderr = text(&out.stderr);
        if case.valid && refused_only_for_non_ascii_header_values(out.status.code(), &stderr) {
            stricter += 1;
        } else if case.valid {
            assert_eq!(out.status.code(), Some(0), "{}: {stderr}", case.id);
            let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(Some(&printed), case.normalized.as_ref(), "{}", case.id);
            // Warnings (unknown hook fields, ids the workflow does not list) name their path.
            for line in stderr.lines() {
                assert!(
                    line.starts_with("warning: <stdin>: workflow.hooks["),
                    "{}: {line}",
                    case.id
                );
            }
        } else {
            assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.id);
            assert!(out.stdout.is_empty(), "{}: nothing on stdout", case.id);
            let lines: Vec<&str> = stderr.lines().collect();
            let (summary, problems) = lines.split_last().expect("something on stderr");
            assert!(
                summary.starts_with("<stdin>: invalid, "),
                "{}: {stderr}",
                case.id
            );
            let errors: Vec<&&str> = problems
                .iter()
                .filter(|line| line.starts_with("error: "))
                .collect();
            assert!(!errors.is_empty(), "{}: {stderr}", case.id);
            for line in errors {
                assert!(
                    line.starts_with("error: <stdin>: workflow.hooks["),
                    "{}: {line}",
                    case.id
                );
            }
        }
    }
    assert!(
        stricter > 0,
        "the fixtures exercise the stricter header rule"
    );
}

#[test]
fn validate_reads_the_sdk_example_workflow_document_and_warns_about_its_task_id() {
    let path = fixtures_dir().join("linq-sdk/workflow-api-input.example.json");
    let path = path.to_str().unwrap();
    let out = linq_hooks(&["validate", path], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{path}: valid, 5 hooks\n"));
    // Its `workflow.tasks` is `{}`, and a hook names task `t1`.
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: {path}: workflow.hooks[1].task_ids[0]: no task \"t1\" in workflow.tasks; this hook can never fire for it\n"
        )
    );
}

/// A workflow document in the API's form with two tasks and one labware, whose hooks name a
/// task and a labware that do not exist.
const WORKFLOW: &str = r#"{"name": "demo", "workflow": {
    "tasks": {"read-plate": {}, "dispense": {}},
    "labware": [{"id": "plate-7"}],
    "hooks": [
        {"filter": "on_task_state_change", "parameters": {"url": "https://a.example"}, "task_ids": ["read-plate", "t9"]},
        {"filter": "on_run_state_change", "parameters": {"url": "https://b.example"}},
        {"filter": "on_labware_movement", "parameters": {"url": "https://d.example"}, "labware_ids": ["plate-9", "plate-7"], "trigger_on": "start"}
    ]
}, "workcell": {"instruments": []}}"#;

#[test]
fn validate_warns_about_ids_the_workflow_does_not_list_and_succeeds() {
    let out = linq_hooks(&["validate", "-"], WORKFLOW);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "<stdin>: valid, 3 hooks\n");
    assert_eq!(
        text(&out.stderr),
        "warning: <stdin>: workflow.hooks[0].task_ids[1]: no task \"t9\" in workflow.tasks; this hook can never fire for it\n\
         warning: <stdin>: workflow.hooks[2].labware_ids[0]: no labware \"plate-9\" in workflow.labware; this hook can never fire for it\n"
    );
}

#[test]
fn validate_names_the_full_path_in_a_workflow_document() {
    let out = linq_hooks(
        &["validate", "-"],
        r#"{"name": "demo", "workflow": {"tasks": {}, "hooks": [
            {"filter": "on_new_plan", "parameters": {"url": "https://ok.example"}},
            {"filter": "on_new_plan", "parameters": {"url": "https://ok.example"}},
            {"filter": "on_new_plan", "parameters": {"url": "hooks/relative"}}
        ]}}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>: workflow.hooks[2].parameters.url: relative URL without a scheme\n\
         <stdin>: invalid, 1 problem\n"
    );
    let out = linq_hooks(
        &["validate", "-"],
        r#"{"name": "demo", "workflow": {"tasks": {}}}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>: workflow.hooks: missing required field `hooks` (use [] for a workflow without hooks)\n\
         <stdin>: invalid, 1 problem\n"
    );
}

#[test]
fn match_reads_a_workflow_document() {
    let hooks = temp_file("match-workflow.json", WORKFLOW);
    let cases = [
        (
            r#"{"event": "task_state_change", "run_id": "r", "task_id": "read-plate", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[0]",
        ),
        (
            r#"{"event": "run_state_change", "run_id": "r", "state": "paused", "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[1]",
        ),
        (
            r#"{"event": "labware_movement", "run_id": "r", "labware_id": "plate-7", "phase": "start", "source": {"instrument": "a", "slot": 1}, "destination": {"instrument": "b", "slot": 2}, "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[2]",
        ),
    ];
    for (event, expected) in cases {
        let out = linq_hooks(&["match", "--hooks", &hooks, "-"], event);
        assert_eq!(out.status.code(), Some(0), "{event}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{expected}\n"), "{event}");
        // The warnings come with every reader of the file, not only `validate`.
        assert_eq!(
            text(&out.stderr).lines().count(),
            2,
            "{}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).starts_with(&format!(
                "warning: {hooks}: workflow.hooks[0].task_ids[1]: no task \"t9\""
            )),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn help_lists_the_workflow_document() {
    for command in ["validate", "match", "dispatch"] {
        let out = linq_hooks(&[command, "--help"], "");
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        assert!(help.contains("workflow"), "{command}: {help}");
        assert!(help.contains(r#"{"hooks": [...]}"#), "{command}: {help}");
    }
}

#[test]
fn validate_names_the_path_of_each_problem() {
    let input = r#"{"hooks": [
        {"filter": "on_new_plan", "parameters": {"url": "https://ok.example"}},
        {"filter": "on_new_plan", "parameters": {"url": "https://ok.example"}},
        {"filter": "on_new_plan", "parameters": {"url": "hooks/relative", "headers": {"Transfer-Encoding": "chunked"}}}
    ]}"#;
    let out = linq_hooks(&["validate", "-"], input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>: hooks[2].parameters.url: relative URL without a scheme\n\
         error: <stdin>: hooks[2].parameters.headers.Transfer-Encoding: header `Transfer-Encoding` is set by the delivery itself and cannot be set by a hook\n\
         <stdin>: invalid, 2 problems\n"
    );
}

#[test]
fn validate_reports_json_syntax_errors_with_line_and_column() {
    let out = linq_hooks(&["validate"], "[\n  {\"filter\": }\n]");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>: invalid JSON: expected value at line 2 column 14\n"
    );
}

#[test]
fn validate_warns_about_unknown_fields_and_succeeds() {
    let out = linq_hooks(
        &["validate", "-"],
        r#"[{"filter": "on_task_state_change", "parameters": {"url": "https://x.example"}, "task_ids": [], "task_id": "t1"}]"#,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "warning: <stdin>: [0].task_id: unknown field, ignored\n"
    );
    assert_eq!(text(&out.stdout), "<stdin>: valid, 1 hook\n");
}

#[test]
fn validate_reads_the_example_workflow_as_the_readme_says() {
    let out = linq_hooks(&["validate", "examples/workflow.json"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "examples/workflow.json: valid, 5 hooks\n"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = linq_hooks(&["validate", "no/such/file.json"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: cannot read no/such/file.json: "),
        "{}",
        text(&out.stderr)
    );
    let out = linq_hooks(&["validate", "--no-such-flag"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = linq_hooks(&["frobnicate"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_explains_the_commands() {
    let out = linq_hooks(&["validate", "--help"], "");
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("--normalized"), "{help}");
    assert!(help.contains("Exit codes"), "{help}");
}

const HOOKS: &str = r#"{"hooks": [
    {"filter": "on_task_state_change", "parameters": {"url": "https://a.example"}, "task_ids": ["read-plate"]},
    {"filter": "on_run_state_change", "parameters": {"url": "https://b.example"}},
    {"filter": "on_task_state_change", "parameters": {"url": "https://c.example"}, "task_ids": []},
    {"filter": "on_labware_movement", "parameters": {"url": "https://d.example"}, "labware_ids": ["plate-7"], "trigger_on": "start"}
]}"#;

#[test]
fn match_prints_the_indices_of_the_hooks_that_fire() {
    let hooks = temp_file("match-hooks.json", HOOKS);
    let cases = [
        (
            r#"{"event": "task_state_change", "run_id": "r", "task_id": "read-plate", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[0,2]",
        ),
        (
            r#"{"event": "task_state_change", "run_id": "r", "task_id": "READ-PLATE", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[2]",
        ),
        (
            r#"{"event": "run_state_change", "run_id": "r", "state": "paused", "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[1]",
        ),
        (
            r#"{"event": "labware_movement", "run_id": "r", "labware_id": "plate-7", "phase": "start", "source": {"instrument": "a", "slot": 1}, "destination": {"instrument": "b", "slot": 2}, "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[3]",
        ),
        (
            r#"{"event": "labware_movement", "run_id": "r", "labware_id": "plate-7", "phase": "end", "source": {"instrument": "a", "slot": 1}, "destination": {"instrument": "b", "slot": 2}, "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[]",
        ),
        (
            r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
            "[]",
        ),
    ];
    for (event, expected) in cases {
        let out = linq_hooks(&["match", "--hooks", &hooks, "-"], event);
        assert_eq!(out.status.code(), Some(0), "{event}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{expected}\n"), "{event}");
    }
    // The event may also be a file.
    let event = temp_file(
        "match-event.json",
        r#"{"event": "run_state_change", "run_id": "r", "state": "stoped", "timestamp": "2025-04-17T09:30:00Z"}"#,
    );
    let out = linq_hooks(&["match", "--hooks", &hooks, &event], "");
    assert_eq!(text(&out.stdout), "[1]\n");
}

#[test]
fn match_refuses_invalid_events_and_hook_files_with_exit_1() {
    let hooks = temp_file("match-hooks-2.json", HOOKS);
    let out = linq_hooks(
        &["match", "--hooks", &hooks],
        r#"{"event": "labware_movement", "phase": "middle"}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        // Named by its line, as `dispatch` names a bad line of its stream.
        "error: <stdin>:1: phase: unknown variant `middle`, expected `start` or `end`\n"
    );
    assert!(out.stdout.is_empty());

    let out = linq_hooks(&["match", "--hooks", &hooks], r#"{"event": "launch"}"#);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(r#"error: <stdin>:1: event: unknown event "launch""#),
        "{}",
        text(&out.stderr)
    );

    let out = linq_hooks(&["match", "--hooks", &hooks], "{not json");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: <stdin>:1: invalid JSON: "),
        "{}",
        text(&out.stderr)
    );

    let bad_hooks = temp_file(
        "match-bad-hooks.json",
        r#"[{"filter": "on_new_plan", "parameters": {"url": "ftp://x.example"}}]"#,
    );
    let out = linq_hooks(
        &["match", "--hooks", &bad_hooks],
        r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("[0].parameters.url: unsupported URL scheme `ftp:`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn match_usage_and_io_errors_exit_2() {
    let event = r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#;
    let out = linq_hooks(&["match", "-"], event);
    assert_eq!(out.status.code(), Some(2), "--hooks is required");
    let out = linq_hooks(&["match", "--hooks", "no/such/hooks.json"], event);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: cannot read no/such/hooks.json: "));
    let out = linq_hooks(&["match", "--hooks", "-"], event);
    assert_eq!(out.status.code(), Some(2));
}

/// The field fault: a hook file that starts with a UTF-8 byte order mark was refused with
/// "expected value at line 1 column 1". It is read as if it had none (RFC 8259 §8.1); so is an
/// NDJSON event line.
#[test]
fn a_byte_order_mark_at_the_start_is_ignored() {
    let hooks =
        "\u{feff}[{\"filter\": \"on_new_plan\", \"parameters\": {\"url\": \"https://x.example\"}}]";
    let out = linq_hooks(&["validate"], hooks);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = common::temp_file("bom-hooks.json", hooks);
    let event = "\u{feff}{\"event\": \"new_plan\", \"plan_id\": \"p\", \"timestamp\": \"2025-04-17T09:30:00Z\"}\n";
    let out = linq_hooks(&["match", "--hooks", &file], event);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
