//! The hook types, in the LINQ API's own shape.
//!
//! Serialization is derived and gives the API form. Deserialization goes through the same
//! validating reader as [`parse_hooks`](crate::parse_hooks), so a `Hook` that exists is a hook
//! that can be delivered.

use std::collections::BTreeMap;

#[cfg(feature = "schema")]
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, parse};

/// HTTP headers a hook adds to its request: header name to value.
///
/// Names are valid HTTP tokens and values are visible US-ASCII, spaces and tabs: no control
/// characters, nothing beyond ASCII (checked when read; stricter than the LINQ API on purpose).
pub type Headers = BTreeMap<String, String>;

/// Where a hook posts, and which extra headers it sends.
///
/// The fields are private so that every `HookParameters` holds a URL and headers that passed
/// validation; build one with [`HookParameters::new`] or read it from JSON.
///
/// ```
/// use linq_hooks_model::HookParameters;
///
/// let params = HookParameters::new(
///     "https://lims.example/hooks",
///     [("Authorization".to_string(), "Bearer abc".to_string())].into(),
/// )?;
/// assert_eq!(params.url(), "https://lims.example/hooks");
/// assert_eq!(params.headers()["Authorization"], "Bearer abc");
///
/// let err = HookParameters::new("https://lims.example", [("Host".into(), "x".into())].into()).unwrap_err();
/// assert_eq!(err.problems()[0].path(), "headers.Host");
/// # Ok::<(), linq_hooks_model::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[cfg_attr(feature = "schema", schemars(rename = "HookParameters"))]
pub struct HookParameters {
    /// The absolute URL the hook delivers to: `http` or `https` (posted), `mqtt` or `mqtts`
    /// (published to the broker, on the topic its path names).
    url: String,
    /// HTTP headers to include in the request.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<BTreeMap<String, String>>")
    )]
    #[serde(default)]
    headers: Headers,
}

impl HookParameters {
    /// Validates and builds parameters. Problems are reported with paths relative to the
    /// parameters object (`url`, `headers.X-Name`).
    pub fn new(url: impl Into<String>, headers: Headers) -> Result<Self, Error> {
        let (url, headers) = (url.into(), headers);
        let mut problems = Vec::new();
        crate::check::url(&url, &parse::Path::root().key("url"), &mut problems);
        for (name, value) in &headers {
            let path = parse::Path::root().key("headers").key(name);
            crate::check::header(name, value, &path, &mut problems);
        }
        if problems.is_empty() {
            Ok(HookParameters { url, headers })
        } else {
            Err(Error::invalid(problems))
        }
    }

    pub(crate) fn new_unchecked(url: String, headers: Headers) -> Self {
        HookParameters { url, headers }
    }

    /// The URL, exactly as it was written.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The extra headers (empty when the document had none, `null` or `{}`).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }
}

/// When a labware hook fires: on pick-up (`start`), on put-down (`end`), or `both` (the default).
///
/// ```
/// use linq_hooks_model::TriggerOn;
/// assert_eq!(TriggerOn::default(), TriggerOn::Both);
/// assert_eq!(serde_json::to_string(&TriggerOn::Start).unwrap(), r#""start""#);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(rename_all = "lowercase")]
pub enum TriggerOn {
    /// When the labware is picked up.
    Start,
    /// When the labware is put down.
    End,
    /// On both pick-up and put-down.
    #[default]
    Both,
}

impl TriggerOn {
    pub(crate) const ALL: [TriggerOn; 3] = [TriggerOn::Start, TriggerOn::End, TriggerOn::Both];

    /// The wire name: `start`, `end` or `both`.
    ///
    /// ```
    /// assert_eq!(linq_hooks_model::TriggerOn::End.as_str(), "end");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerOn::Start => "start",
            TriggerOn::End => "end",
            TriggerOn::Both => "both",
        }
    }
}

/// Hook to be triggered when a task state changes.
///
/// ```
/// let hook: linq_hooks_model::TaskStateChangeHook = serde_json::from_str(
///     r#"{"parameters": {"url": "https://example.com"}, "task_ids": []}"#,
/// )?;
/// assert!(hook.task_ids.is_empty()); // empty: every task
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct TaskStateChangeHook {
    /// Where to post, and extra headers.
    pub parameters: HookParameters,
    /// List of task IDs that the hook should be triggered for. If empty, the hook will be
    /// triggered for all tasks.
    pub task_ids: Vec<String>,
}

/// Hook to be triggered when a run state changes.
///
/// ```
/// let hook: linq_hooks_model::RunStateChangeHook =
///     serde_json::from_str(r#"{"filter": "on_run_state_change", "parameters": {"url": "https://example.com"}}"#)?;
/// assert_eq!(hook.parameters.url(), "https://example.com");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct RunStateChangeHook {
    /// Where to post, and extra headers.
    pub parameters: HookParameters,
}

/// Hook to be triggered when labware is transported.
///
/// ```
/// use linq_hooks_model::{LabwareMovementHook, TriggerOn};
/// let hook: LabwareMovementHook =
///     serde_json::from_str(r#"{"parameters": {"url": "https://example.com"}, "labware_ids": ["plate-1"]}"#)?;
/// assert_eq!(hook.trigger_on, TriggerOn::Both);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct LabwareMovementHook {
    /// Where to post, and extra headers.
    pub parameters: HookParameters,
    /// List of labware IDs that the hook should be triggered for. If empty, the hook will be
    /// triggered for all labware.
    pub labware_ids: Vec<String>,
    /// When to trigger the hook. 'start' triggers the hook when the labware is picked up, 'end'
    /// triggers the hook when the labware is placed down, 'both' does both.
    #[serde(default)]
    pub trigger_on: TriggerOn,
}

/// Hook to be triggered on changes to the state of the safety adapter.
///
/// ```
/// let hook: linq_hooks_model::SafetyStateChangeHook =
///     serde_json::from_str(r#"{"parameters": {"url": "https://example.com"}}"#)?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct SafetyStateChangeHook {
    /// Where to post, and extra headers.
    pub parameters: HookParameters,
}

/// Hook to be triggered when a new plan is generated.
///
/// ```
/// let hook: linq_hooks_model::NewPlanHook =
///     serde_json::from_str(r#"{"parameters": {"url": "https://example.com"}}"#)?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
pub struct NewPlanHook {
    /// Where to post, and extra headers.
    pub parameters: HookParameters,
}

/// A hook of any kind: the union the LINQ API accepts in a workflow's `hooks` list, tagged by
/// `filter`.
///
/// ```
/// use linq_hooks_model::{Hook, HookKind};
/// let hook: Hook = serde_json::from_str(
///     r#"{"filter": "on_safety_state_change", "parameters": {"url": "https://example.com"}}"#,
/// )?;
/// assert_eq!(hook.kind(), HookKind::SafetyStateChange);
///
/// // In the union, `filter` is required.
/// assert!(serde_json::from_str::<Hook>(r#"{"parameters": {"url": "https://example.com"}}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(tag = "filter")]
pub enum Hook {
    /// `on_task_state_change`
    #[serde(rename = "on_task_state_change")]
    TaskStateChange(TaskStateChangeHook),
    /// `on_run_state_change`
    #[serde(rename = "on_run_state_change")]
    RunStateChange(RunStateChangeHook),
    /// `on_labware_movement`
    #[serde(rename = "on_labware_movement")]
    LabwareMovement(LabwareMovementHook),
    /// `on_safety_state_change`
    #[serde(rename = "on_safety_state_change")]
    SafetyStateChange(SafetyStateChangeHook),
    /// `on_new_plan`
    #[serde(rename = "on_new_plan")]
    NewPlan(NewPlanHook),
}

impl Hook {
    /// Which kind of hook this is.
    ///
    /// ```
    /// # let hook: linq_hooks_model::Hook = serde_json::from_str(r#"{"filter": "on_new_plan", "parameters": {"url": "http://x.example"}}"#).unwrap();
    /// assert_eq!(hook.kind().filter(), "on_new_plan");
    /// ```
    pub fn kind(&self) -> HookKind {
        match self {
            Hook::TaskStateChange(_) => HookKind::TaskStateChange,
            Hook::RunStateChange(_) => HookKind::RunStateChange,
            Hook::LabwareMovement(_) => HookKind::LabwareMovement,
            Hook::SafetyStateChange(_) => HookKind::SafetyStateChange,
            Hook::NewPlan(_) => HookKind::NewPlan,
        }
    }

    /// Where the hook posts, and its extra headers.
    ///
    /// ```
    /// # let hook: linq_hooks_model::Hook = serde_json::from_str(r#"{"filter": "on_new_plan", "parameters": {"url": "http://x.example"}}"#).unwrap();
    /// assert_eq!(hook.parameters().url(), "http://x.example");
    /// ```
    pub fn parameters(&self) -> &HookParameters {
        match self {
            Hook::TaskStateChange(h) => &h.parameters,
            Hook::RunStateChange(h) => &h.parameters,
            Hook::LabwareMovement(h) => &h.parameters,
            Hook::SafetyStateChange(h) => &h.parameters,
            Hook::NewPlan(h) => &h.parameters,
        }
    }
}

impl Hook {
    /// The same hook sending elsewhere: `parameters` replaced, everything else kept.
    ///
    /// ```
    /// use linq_hooks_model::{Hook, HookParameters};
    /// let hook: Hook = serde_json::from_str(r#"{"filter": "on_new_plan", "parameters": {"url": "http://old.example"}}"#)?;
    /// let moved = hook.with_parameters(HookParameters::new("http://new.example", Default::default()).unwrap());
    /// assert_eq!(moved.parameters().url(), "http://new.example");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn with_parameters(mut self, parameters: HookParameters) -> Hook {
        *match &mut self {
            Hook::TaskStateChange(h) => &mut h.parameters,
            Hook::RunStateChange(h) => &mut h.parameters,
            Hook::LabwareMovement(h) => &mut h.parameters,
            Hook::SafetyStateChange(h) => &mut h.parameters,
            Hook::NewPlan(h) => &mut h.parameters,
        } = parameters;
        self
    }

    /// Whether `other` fires for exactly the same events: the same `filter`, the same
    /// `task_ids` or `labware_ids` (as sets: order and repeats do not matter) and the same
    /// `trigger_on`. Only `parameters` (where it posts) may differ. This is what makes an edited
    /// hook "the same hook" that keeps its id and its queue.
    ///
    /// ```
    /// use linq_hooks_model::Hook;
    /// let a: Hook = serde_json::from_str(r#"{"filter": "on_task_state_change", "task_ids": ["t1", "t2"], "parameters": {"url": "http://a.example"}}"#)?;
    /// let b: Hook = serde_json::from_str(r#"{"filter": "on_task_state_change", "task_ids": ["t2", "t1", "t1"], "parameters": {"url": "http://b.example"}}"#)?;
    /// let c: Hook = serde_json::from_str(r#"{"filter": "on_task_state_change", "task_ids": ["t1"], "parameters": {"url": "http://a.example"}}"#)?;
    /// assert!(a.fires_like(&b));
    /// assert!(!a.fires_like(&c));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn fires_like(&self, other: &Hook) -> bool {
        fn set(ids: &[String]) -> std::collections::BTreeSet<&str> {
            ids.iter().map(String::as_str).collect()
        }
        match (self, other) {
            (Hook::TaskStateChange(a), Hook::TaskStateChange(b)) => {
                set(&a.task_ids) == set(&b.task_ids)
            }
            (Hook::LabwareMovement(a), Hook::LabwareMovement(b)) => {
                a.trigger_on == b.trigger_on && set(&a.labware_ids) == set(&b.labware_ids)
            }
            (a, b) => a.kind() == b.kind(),
        }
    }
}

/// The five kinds of hook, named by their `filter` value.
///
/// ```
/// use linq_hooks_model::HookKind;
/// assert_eq!(HookKind::from_filter("on_labware_movement"), Some(HookKind::LabwareMovement));
/// assert_eq!(HookKind::LabwareMovement.filter(), "on_labware_movement");
/// assert_eq!(HookKind::from_filter("on_run_state"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookKind {
    /// `on_task_state_change`: [`TaskStateChangeHook`].
    TaskStateChange,
    /// `on_run_state_change`: [`RunStateChangeHook`].
    RunStateChange,
    /// `on_labware_movement`: [`LabwareMovementHook`].
    LabwareMovement,
    /// `on_safety_state_change`: [`SafetyStateChangeHook`].
    SafetyStateChange,
    /// `on_new_plan`: [`NewPlanHook`].
    NewPlan,
}

impl HookKind {
    /// Every kind, in the order of the LINQ API's union.
    pub const ALL: [HookKind; 5] = [
        HookKind::TaskStateChange,
        HookKind::RunStateChange,
        HookKind::LabwareMovement,
        HookKind::SafetyStateChange,
        HookKind::NewPlan,
    ];

    /// The `filter` value that selects this kind.
    pub fn filter(self) -> &'static str {
        match self {
            HookKind::TaskStateChange => "on_task_state_change",
            HookKind::RunStateChange => "on_run_state_change",
            HookKind::LabwareMovement => "on_labware_movement",
            HookKind::SafetyStateChange => "on_safety_state_change",
            HookKind::NewPlan => "on_new_plan",
        }
    }

    /// The kind a `filter` value selects, if any (exact, case-sensitive).
    pub fn from_filter(filter: &str) -> Option<HookKind> {
        HookKind::ALL.into_iter().find(|k| k.filter() == filter)
    }
}

/// `Deserialize` for a hook type goes through the validating reader, so serde users get the same
/// checks (and the same messages) as [`parse_hooks`](crate::parse_hooks).
macro_rules! deserialize_via_reader {
    ($($ty:ty => $expected:expr, $variant:path;)*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(deserializer)?;
                match parse::read_one_hook(&value, $expected) {
                    Ok($variant(hook)) => Ok(hook),
                    Ok(_) => unreachable!("the reader returns the kind it was asked for"),
                    Err(e) => Err(serde::de::Error::custom(e)),
                }
            }
        }
    )*};
}

deserialize_via_reader! {
    TaskStateChangeHook => Some(HookKind::TaskStateChange), Hook::TaskStateChange;
    RunStateChangeHook => Some(HookKind::RunStateChange), Hook::RunStateChange;
    LabwareMovementHook => Some(HookKind::LabwareMovement), Hook::LabwareMovement;
    SafetyStateChangeHook => Some(HookKind::SafetyStateChange), Hook::SafetyStateChange;
    NewPlanHook => Some(HookKind::NewPlan), Hook::NewPlan;
}

impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        parse::read_one_hook(&value, None).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for HookParameters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        parse::read_parameters(&value).map_err(serde::de::Error::custom)
    }
}
