//! The validating reader.
//!
//! Serde's derived deserializers stop at the first error. Users editing a workflow want every
//! problem at once, each with its path, so hooks are read by walking a `serde_json::Value` here;
//! the `Deserialize` impls of the hook types call into this same reader.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

use crate::check;
use crate::error::{Diagnostic, Error};
use crate::hook::{
    Headers, Hook, HookKind, HookParameters, LabwareMovementHook, NewPlanHook, RunStateChangeHook,
    SafetyStateChangeHook, TaskStateChangeHook, TriggerOn,
};

/// Hooks read from a document, with the warnings found along the way.
///
/// ```
/// let parsed = linq_hooks_model::parse_hooks(
///     r#"[{"filter": "on_task_state_change", "parameters": {"url": "https://x.example"}, "task_ids": [], "task_id": "t1"}]"#,
/// )?;
/// assert_eq!(parsed.hooks.len(), 1);
/// assert_eq!(parsed.warnings[0].to_string(), "[0].task_id: unknown field, ignored");
/// # Ok::<(), linq_hooks_model::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParsedHooks {
    /// The hooks, in document order.
    pub hooks: Vec<Hook>,
    /// Things worth a look that do not make the document invalid, such as unknown fields (the
    /// LINQ API ignores them, but `task_id` for `task_ids` is a typo a user wants to see).
    pub warnings: Vec<Diagnostic>,
}

/// Reads hooks from JSON text in any of four shapes:
///
/// - one hook object (`{"filter": ..., "parameters": ...}`);
/// - an array of hooks;
/// - an object whose `hooks` field is the array, such as a workflow's own object (its other
///   fields are ignored);
/// - the LINQ API's workflow document, as the SDK's `Workflow.to_api_input()` writes it and the
///   API returns it: `{"name": ..., "workflow": {"hooks": [...], "tasks": {...}, ...}, ...}`.
///   Its other fields are the workflow's and are ignored without a warning. When the document
///   lists `workflow.tasks` (keyed by task id) or `workflow.labware` (ids, or objects with an
///   `id`), each `task_ids` / `labware_ids` entry that names none of them gets a warning: such a
///   hook can never fire for it.
///
/// Every problem is reported, each with its JSON path; a syntax error gives a line and column.
/// Warnings never make a document invalid.
///
/// ```
/// let err = linq_hooks_model::parse_hooks(r#"{"hooks": [
///     {"filter": "on_run_state_change", "parameters": {"url": "http://"}},
///     {"filter": "on_labware_movement", "parameters": {"url": "https://x.example"}, "labware_ids": [1]}
/// ]}"#).unwrap_err();
/// let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
/// assert_eq!(problems, [
///     "hooks[0].parameters.url: URL has no host",
///     "hooks[1].labware_ids[0]: expected a string, found number 1",
/// ]);
/// ```
///
/// The workflow document, with a task id that names no task:
///
/// ```
/// let parsed = linq_hooks_model::parse_hooks(r#"{"name": "demo", "workflow": {
///     "tasks": {"t1": {}},
///     "labware": [],
///     "hooks": [{"filter": "on_task_state_change", "parameters": {"url": "https://x.example"},
///                "task_ids": ["t1", "t9"]}]
/// }}"#)?;
/// assert_eq!(parsed.hooks.len(), 1);
/// let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
/// assert_eq!(warnings, [
///     r#"workflow.hooks[0].task_ids[1]: no task "t9" in workflow.tasks; this hook can never fire for it"#,
/// ]);
/// # Ok::<(), linq_hooks_model::Error>(())
/// ```
pub fn parse_hooks(text: &str) -> Result<ParsedHooks, Error> {
    // A byte order mark before the JSON is ignored, as RFC 8259 §8.1 allows: editors on
    // Windows write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(Error::syntax)?;
    parse_hooks_value(&value)
}

/// Like [`parse_hooks`], for a document that is already a `serde_json::Value`.
///
/// ```
/// let doc = serde_json::json!({"filter": "on_new_plan", "parameters": {"url": "https://x.example"}});
/// assert_eq!(linq_hooks_model::parse_hooks_value(&doc)?.hooks.len(), 1);
/// # Ok::<(), linq_hooks_model::Error>(())
/// ```
pub fn parse_hooks_value(value: &Value) -> Result<ParsedHooks, Error> {
    let mut reader = Reader::default();
    let hooks = reader.document(value);
    let (hooks, warnings) = reader.finish(hooks)?;
    Ok(ParsedHooks { hooks, warnings })
}

/// Reads one hook; `expected` is the concrete type asked for, if any (then `filter` may be
/// missing, as the API allows for a concrete hook type, but must not name another kind).
pub(crate) fn read_one_hook(value: &Value, expected: Option<HookKind>) -> Result<Hook, Error> {
    let mut reader = Reader::default();
    let hook = reader.hook(value, &Path::root(), expected);
    Ok(reader.finish(hook)?.0.expect("no problems, so a hook"))
}

pub(crate) fn read_parameters(value: &Value) -> Result<HookParameters, Error> {
    let mut reader = Reader::default();
    let parameters = reader.parameters(value, &Path::root());
    Ok(reader
        .finish(parameters)?
        .0
        .expect("no problems, so parameters"))
}

/// A JSON path under construction: `hooks[2].parameters.url`. Empty means the document itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn root() -> Path {
        Path(String::new())
    }

    pub(crate) fn key(&self, key: &str) -> Path {
        let mut path = self.0.clone();
        let plain = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        } else {
            path.push('[');
            path.push_str(&Value::from(key).to_string());
            path.push(']');
        }
        Path(path)
    }

    pub(crate) fn index(&self, index: usize) -> Path {
        let mut path = self.0.clone();
        write!(path, "[{index}]").expect("writing to a String cannot fail");
        Path(path)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "$" } else { &self.0 })
    }
}

/// Collects problems and warnings while walking a document.
#[derive(Default)]
struct Reader {
    problems: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Reader {
    fn problem(&mut self, path: &Path, message: impl Into<String>) {
        self.problems
            .push(Diagnostic::new(path.to_string(), message));
    }

    /// The value read and the warnings, or every problem found.
    fn finish<T>(self, value: T) -> Result<(T, Vec<Diagnostic>), Error> {
        if self.problems.is_empty() {
            Ok((value, self.warnings))
        } else {
            Err(Error::invalid(self.problems))
        }
    }

    fn document(&mut self, value: &Value) -> Vec<Hook> {
        let root = Path::root();
        match value {
            Value::Array(items) => self.list(items, &root),
            Value::Object(map) => {
                // `hooks` wins over `filter` / `parameters`, as it always has; they win over
                // `workflow`, so a hook with a stray `workflow` field stays a hook (warned about).
                let is_hook = map.contains_key("filter") || map.contains_key("parameters");
                match (map.get("hooks"), map.get("workflow")) {
                    (Some(_), Some(_)) if !is_hook => {
                        self.problem(
                            &root,
                            "found both `hooks` and `workflow`; a document has its hooks in one \
                             place: `hooks`, or `workflow.hooks` in the LINQ API's workflow document",
                        );
                        Vec::new()
                    }
                    (Some(Value::Array(items)), _) => self.list(items, &root.key("hooks")),
                    (Some(other), _) => {
                        self.problem(
                            &root.key("hooks"),
                            format!("expected an array of hooks, found {}", describe(other)),
                        );
                        Vec::new()
                    }
                    (None, Some(workflow)) if !is_hook => {
                        self.workflow(workflow, &root.key("workflow"))
                    }
                    (None, _) if !is_hook => {
                        self.problem(
                            &root,
                            format!(
                                "expected {DOCUMENT_SHAPES}, found an object without `hooks`, \
                                 `workflow`, `filter` or `parameters`"
                            ),
                        );
                        Vec::new()
                    }
                    (None, _) => self.hook(value, &root, None).into_iter().collect(),
                }
            }
            other => {
                self.problem(
                    &root,
                    format!("expected {DOCUMENT_SHAPES}, found {}", describe(other)),
                );
                Vec::new()
            }
        }
    }

    /// The `workflow` object of the LINQ API's workflow document: its `hooks` are read, its
    /// `tasks` and `labware` (when listed) checked against the ids the hooks name, the rest
    /// ignored without a warning (those fields are the workflow's, not the hooks').
    fn workflow(&mut self, value: &Value, path: &Path) -> Vec<Hook> {
        let Value::Object(map) = value else {
            self.problem(
                path,
                format!(
                    "expected a workflow object with a `hooks` array, found {}",
                    describe(value)
                ),
            );
            return Vec::new();
        };
        let hooks_path = path.key("hooks");
        let items = match map.get("hooks") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    &hooks_path,
                    format!("expected an array of hooks, found {}", describe(other)),
                );
                return Vec::new();
            }
            None => {
                self.problem(
                    &hooks_path,
                    "missing required field `hooks` (use [] for a workflow without hooks)",
                );
                return Vec::new();
            }
        };
        let tasks = declared_ids(map.get("tasks"));
        let labware = declared_ids(map.get("labware"));
        let mut hooks = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let path_i = hooks_path.index(i);
            let Some(hook) = self.hook(item, &path_i, None) else {
                continue;
            };
            // Right after the hook's own warnings, so that warnings come in document order.
            match &hook {
                Hook::TaskStateChange(h) => {
                    let list = path.key("tasks");
                    self.warn_undeclared(
                        &h.task_ids,
                        tasks.as_ref(),
                        &path_i.key("task_ids"),
                        "task",
                        &list,
                    );
                }
                Hook::LabwareMovement(h) => {
                    let list = path.key("labware");
                    self.warn_undeclared(
                        &h.labware_ids,
                        labware.as_ref(),
                        &path_i.key("labware_ids"),
                        "labware",
                        &list,
                    );
                }
                _ => {}
            }
            hooks.push(hook);
        }
        hooks
    }

    /// Warns about each of `ids` (at `path`) that is not in `declared` (the ids of the `what`
    /// the workflow lists at `list`); nothing when the workflow does not list them.
    fn warn_undeclared(
        &mut self,
        ids: &[String],
        declared: Option<&BTreeSet<&str>>,
        path: &Path,
        what: &str,
        list: &Path,
    ) {
        let Some(declared) = declared else { return };
        for (i, id) in ids.iter().enumerate() {
            if !declared.contains(id.as_str()) {
                self.warnings.push(Diagnostic::new(
                    path.index(i).to_string(),
                    format!(
                        "no {what} {} in {list}; this hook can never fire for it",
                        Value::from(id.as_str())
                    ),
                ));
            }
        }
    }

    fn list(&mut self, items: &[Value], path: &Path) -> Vec<Hook> {
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.hook(item, &path.index(i), None))
            .collect()
    }

    fn hook(&mut self, value: &Value, path: &Path, expected: Option<HookKind>) -> Option<Hook> {
        let Value::Object(map) = value else {
            self.problem(
                path,
                format!("expected a hook object, found {}", describe(value)),
            );
            return None;
        };
        let problems_before = self.problems.len();
        let kind = self.kind(map, path, expected);
        // `parameters` is common to every kind: check it even when the kind is unknown, so that
        // one pass reports everything.
        let parameters = match map.get("parameters") {
            Some(value) => self.parameters(value, &path.key("parameters")),
            None => {
                self.problem(
                    &path.key("parameters"),
                    "missing required field `parameters`",
                );
                None
            }
        };
        let kind = kind?;
        let hook = match kind {
            HookKind::TaskStateChange => {
                let task_ids = self.id_list(map, "task_ids", "task", path);
                Hook::TaskStateChange(TaskStateChangeHook {
                    parameters: parameters?,
                    task_ids: task_ids?,
                })
            }
            HookKind::LabwareMovement => {
                let labware_ids = self.id_list(map, "labware_ids", "labware", path);
                let trigger_on = self.trigger_on(map.get("trigger_on"), &path.key("trigger_on"));
                Hook::LabwareMovement(LabwareMovementHook {
                    parameters: parameters?,
                    labware_ids: labware_ids?,
                    trigger_on: trigger_on?,
                })
            }
            HookKind::RunStateChange => Hook::RunStateChange(RunStateChangeHook {
                parameters: parameters?,
            }),
            HookKind::SafetyStateChange => Hook::SafetyStateChange(SafetyStateChangeHook {
                parameters: parameters?,
            }),
            HookKind::NewPlan => Hook::NewPlan(NewPlanHook {
                parameters: parameters?,
            }),
        };
        let known: &[&str] = match kind {
            HookKind::TaskStateChange => &["filter", "parameters", "task_ids"],
            HookKind::LabwareMovement => &["filter", "parameters", "labware_ids", "trigger_on"],
            _ => &["filter", "parameters"],
        };
        self.warn_unknown(map, known, path);
        (self.problems.len() == problems_before).then_some(hook)
    }

    fn kind(
        &mut self,
        map: &Map<String, Value>,
        path: &Path,
        expected: Option<HookKind>,
    ) -> Option<HookKind> {
        let path = path.key("filter");
        match (map.get("filter"), expected) {
            (None, Some(expected)) => Some(expected),
            (None, None) => {
                self.problem(
                    &path,
                    format!("missing required field `filter` (one of {})", filters()),
                );
                None
            }
            (Some(Value::String(filter)), expected) => match HookKind::from_filter(filter) {
                Some(kind) if expected.is_none_or(|e| e == kind) => Some(kind),
                Some(_) => {
                    let expected = expected.expect("checked above");
                    self.problem(
                        &path,
                        format!("expected `{}`, found `{filter}`", expected.filter()),
                    );
                    None
                }
                None => {
                    self.problem(
                        &path,
                        format!(
                            "unknown filter {}; expected one of {}",
                            Value::from(filter.as_str()),
                            filters()
                        ),
                    );
                    None
                }
            },
            (Some(other), _) => {
                self.problem(
                    &path,
                    format!(
                        "expected a string (one of {}), found {}",
                        filters(),
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn parameters(&mut self, value: &Value, path: &Path) -> Option<HookParameters> {
        let Value::Object(map) = value else {
            self.problem(
                path,
                format!(
                    "expected an object with `url` and `headers`, found {}",
                    describe(value)
                ),
            );
            return None;
        };
        let problems_before = self.problems.len();
        let url_path = path.key("url");
        let url = match map.get("url") {
            Some(Value::String(url)) => {
                check::url(url, &url_path, &mut self.problems);
                Some(url.clone())
            }
            Some(other) => {
                self.problem(
                    &url_path,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
            None => {
                self.problem(&url_path, "missing required field `url`");
                None
            }
        };
        let headers = self.headers(map.get("headers"), &path.key("headers"));
        self.warn_unknown(map, &["url", "headers"], path);
        let parameters = HookParameters::new_unchecked(url?, headers?);
        (self.problems.len() == problems_before).then_some(parameters)
    }

    fn headers(&mut self, value: Option<&Value>, path: &Path) -> Option<Headers> {
        let map = match value {
            None | Some(Value::Null) => return Some(Headers::new()),
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.problem(
                    path,
                    format!(
                        "expected an object of header names to string values, or null; found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        let problems_before = self.problems.len();
        let mut headers = Headers::new();
        for (name, value) in map {
            let path = path.key(name);
            match value {
                Value::String(value) => {
                    check::header(name, value, &path, &mut self.problems);
                    headers.insert(name.clone(), value.clone());
                }
                other => self.problem(
                    &path,
                    format!("expected a string header value, found {}", describe(other)),
                ),
            }
        }
        (self.problems.len() == problems_before).then_some(headers)
    }

    fn id_list(
        &mut self,
        map: &Map<String, Value>,
        field: &str,
        what: &str,
        path: &Path,
    ) -> Option<Vec<String>> {
        let path = path.key(field);
        let items = match map.get(field) {
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    &path,
                    format!("expected an array of {what} ids, found {}", describe(other)),
                );
                return None;
            }
            None => {
                self.problem(
                    &path,
                    format!("missing required field `{field}` (use [] for every {what})"),
                );
                return None;
            }
        };
        let mut ids = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(id) => ids.push(id.clone()),
                other => self.problem(
                    &path.index(i),
                    format!("expected a string, found {}", describe(other)),
                ),
            }
        }
        (ids.len() == items.len()).then_some(ids)
    }

    fn trigger_on(&mut self, value: Option<&Value>, path: &Path) -> Option<TriggerOn> {
        let Some(value) = value else {
            return Some(TriggerOn::default());
        };
        let found = value
            .as_str()
            .and_then(|s| TriggerOn::ALL.into_iter().find(|t| t.as_str() == s));
        if found.is_none() {
            self.problem(
                path,
                format!(
                    r#"expected "start", "end" or "both", found {}"#,
                    describe(value)
                ),
            );
        }
        found
    }

    fn warn_unknown(&mut self, map: &Map<String, Value>, known: &[&str], path: &Path) {
        for key in map.keys().filter(|key| !known.contains(&key.as_str())) {
            let message = match did_you_mean(key, known, map) {
                Some(meant) => format!("unknown field, ignored; did you mean `{meant}`?"),
                None => "unknown field, ignored".to_string(),
            };
            self.warnings
                .push(Diagnostic::new(path.key(key).to_string(), message));
        }
    }
}

/// The known field an unknown `key` most likely meant: the closest by Jaro similarity (case
/// ignored) above 0.7, clap's threshold for "did you mean" (`trigger` → `trigger_on`,
/// `header` → `headers`, `filtre` → `filter`). A field the object already has is not
/// suggested: `task_id` beside `task_ids` is not a misspelling of it.
fn did_you_mean<'a>(key: &str, known: &[&'a str], map: &Map<String, Value>) -> Option<&'a str> {
    let key = key.to_lowercase();
    known
        .iter()
        .filter(|field| !map.contains_key(**field))
        .map(|field| (strsim::jaro(&key, field), *field))
        .filter(|(similarity, _)| *similarity > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, field)| field)
}

const DOCUMENT_SHAPES: &str = "a hook object, an array of hooks, an object with a `hooks` array, \
     or a LINQ API workflow document with a `workflow.hooks` array";

/// The ids a workflow declares in its `tasks` (an object keyed by task id) or `labware` (an
/// array of labware, each an id or an object with an `id`); `None` when the document does not
/// list them, or lists them in a shape we cannot read ids from (then nothing can be said).
fn declared_ids(value: Option<&Value>) -> Option<BTreeSet<&str>> {
    match value? {
        Value::Object(map) => Some(map.keys().map(String::as_str).collect()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(id) => Some(id.as_str()),
                Value::Object(item) => item.get("id").and_then(Value::as_str),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn filters() -> String {
    HookKind::ALL.map(HookKind::filter).join(", ")
}

/// A short description of a JSON value for error messages: `number 5`, `string "x"`, `an array`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let short: String = s.chars().take(40).collect();
            format!("string {}…", Value::from(short))
        }
        Value::String(s) => format!("string {}", Value::from(s.as_str())),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}
