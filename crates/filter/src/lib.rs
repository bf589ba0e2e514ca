//! Which hooks fire for an event.
//!
//! The rules ([`fires`] says them for one hook):
//! - run, safety and new-plan hooks fire on every event of their kind;
//! - a task hook fires when its `task_ids` is empty or contains the event's `task_id`;
//! - a labware hook fires when its `labware_ids` is empty or contains the event's `labware_id`,
//!   and its `trigger_on` is `both` or equals the event's `phase`;
//! - ids compare exactly (case-sensitive, byte for byte); two identical hooks both fire.
//!
//! A [`Matcher`] is built once from the hooks and indexes them by kind, and task and labware
//! hooks by id, so that matching an event costs in proportion to the hooks that fire, not to
//! the hooks that exist. No IO, no async.
//!
//! ```
//! use linq_hooks_filter::Matcher;
//!
//! let hooks = linq_hooks_model::parse_hooks(r#"[
//!     {"filter": "on_task_state_change", "parameters": {"url": "https://a.example"}, "task_ids": ["read-plate"]},
//!     {"filter": "on_run_state_change", "parameters": {"url": "https://b.example"}},
//!     {"filter": "on_task_state_change", "parameters": {"url": "https://c.example"}, "task_ids": []}
//! ]"#)?.hooks;
//! let matcher = Matcher::new(&hooks);
//!
//! let event = linq_hooks_events::parse_event(r#"{"event": "task_state_change", "run_id": "r1",
//!     "task_id": "read-plate", "state": "started", "timestamp": "2025-04-17T09:30:00Z"}"#)?;
//! assert_eq!(matcher.matching(&event), [0, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

use std::collections::HashMap;

use linq_hooks_events::{Event, Phase};
use linq_hooks_model::{Hook, TriggerOn};

/// Whether one hook fires for an event: the rules, written plainly.
///
/// This is the reference the index is checked against; to match many hooks use [`Matcher`].
///
/// ```
/// # let hooks = linq_hooks_model::parse_hooks(r#"[{"filter": "on_labware_movement", "parameters": {"url": "https://a.example"}, "labware_ids": [], "trigger_on": "end"}]"#).unwrap().hooks;
/// # let picked_up = linq_hooks_events::parse_event(r#"{"event": "labware_movement", "run_id": "r", "labware_id": "p", "phase": "start",
/// #     "source": {"instrument": "a", "slot": 1}, "destination": {"instrument": "b", "slot": 2}, "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
/// // A hook with `"trigger_on": "end"` does not fire when labware is picked up.
/// assert!(!linq_hooks_filter::fires(&hooks[0], &picked_up));
/// ```
pub fn fires(hook: &Hook, event: &Event) -> bool {
    match (hook, event) {
        (Hook::RunStateChange(_), Event::RunStateChange(_)) => true,
        (Hook::SafetyStateChange(_), Event::SafetyStateChange(_)) => true,
        (Hook::NewPlan(_), Event::NewPlan(_)) => true,
        (Hook::TaskStateChange(hook), Event::TaskStateChange(event)) => {
            hook.task_ids.is_empty() || hook.task_ids.contains(&event.task_id)
        }
        (Hook::LabwareMovement(hook), Event::LabwareMovement(event)) => {
            let ids = hook.labware_ids.is_empty() || hook.labware_ids.contains(&event.labware_id);
            ids && triggers_on(hook.trigger_on, event.phase)
        }
        _ => false,
    }
}

fn triggers_on(trigger_on: TriggerOn, phase: Phase) -> bool {
    matches!(
        (trigger_on, phase),
        (TriggerOn::Both, _) | (TriggerOn::Start, Phase::Start) | (TriggerOn::End, Phase::End)
    )
}

/// The hooks that fire for an event, found by an index built once.
///
/// Answers are indices into the hook list the matcher was built from, in ascending order.
///
/// ```
/// # let hooks = linq_hooks_model::parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#).unwrap().hooks;
/// let matcher = linq_hooks_filter::Matcher::new(&hooks);
/// assert_eq!(matcher.len(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    len: usize,
    run: Vec<u32>,
    safety: Vec<u32>,
    new_plan: Vec<u32>,
    tasks: IdIndex,
    /// Labware hooks, one index per phase (`start`, `end`): a `both` hook is in both.
    labware: [IdIndex; 2],
}

/// Hooks that list ids, by id; and hooks whose empty list means "every id".
///
/// foldhash rather than std's SipHash: ids are short and a lookup is most of a match's cost.
/// Its per-process random seed keeps it resistant enough to crafted ids.
#[derive(Clone, Debug, Default)]
struct IdIndex {
    every: Vec<u32>,
    by_id: HashMap<Box<str>, Vec<u32>, foldhash::fast::RandomState>,
}

impl IdIndex {
    fn insert(&mut self, index: u32, ids: &[String]) {
        if ids.is_empty() {
            self.every.push(index);
            return;
        }
        for id in ids {
            let hooks = self.by_id.entry(id.as_str().into()).or_default();
            // A hook that lists an id twice still fires once.
            if hooks.last() != Some(&index) {
                hooks.push(index);
            }
        }
    }

    /// Appends the hooks for `id` to `out`, in ascending order: both lists are ascending and
    /// disjoint, so one merge does it.
    fn matching_into(&self, id: &str, out: &mut Vec<usize>) {
        let listed = self.by_id.get(id).map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (self.every.as_slice(), listed);
        out.reserve(a.len() + b.len());
        while let (Some(&x), Some(&y)) = (a.first(), b.first()) {
            if x < y {
                out.push(x as usize);
                a = &a[1..];
            } else {
                out.push(y as usize);
                b = &b[1..];
            }
        }
        out.extend(a.iter().chain(b).map(|&i| i as usize));
    }
}

impl Matcher {
    /// Indexes the hooks. Cost: linear in the hooks and their ids.
    ///
    /// # Panics
    ///
    /// With more than `u32::MAX` hooks.
    pub fn new<'a>(hooks: impl IntoIterator<Item = &'a Hook>) -> Matcher {
        let mut matcher = Matcher::default();
        for (i, hook) in hooks.into_iter().enumerate() {
            let index = u32::try_from(i).expect("at most u32::MAX hooks");
            match hook {
                Hook::RunStateChange(_) => matcher.run.push(index),
                Hook::SafetyStateChange(_) => matcher.safety.push(index),
                Hook::NewPlan(_) => matcher.new_plan.push(index),
                Hook::TaskStateChange(hook) => matcher.tasks.insert(index, &hook.task_ids),
                Hook::LabwareMovement(hook) => {
                    for phase in [Phase::Start, Phase::End] {
                        if triggers_on(hook.trigger_on, phase) {
                            matcher.labware[phase_slot(phase)].insert(index, &hook.labware_ids);
                        }
                    }
                }
            }
            matcher.len = i + 1;
        }
        matcher
    }

    /// How many hooks the matcher was built from.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it was built from no hooks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The indices of the hooks that fire for `event`, ascending.
    ///
    /// ```
    /// # let hooks = linq_hooks_model::parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#).unwrap().hooks;
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// assert_eq!(linq_hooks_filter::Matcher::new(&hooks).matching(&event), [0]);
    /// ```
    pub fn matching(&self, event: &Event) -> Vec<usize> {
        let mut out = Vec::new();
        self.matching_into(event, &mut out);
        out
    }

    /// Like [`matching`](Matcher::matching), appending to `out` (which it clears first), so a
    /// caller matching many events can reuse one buffer.
    ///
    /// ```
    /// # let hooks = linq_hooks_model::parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#).unwrap().hooks;
    /// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
    /// let matcher = linq_hooks_filter::Matcher::new(&hooks);
    /// let mut out = vec![99];
    /// matcher.matching_into(&event, &mut out);
    /// assert_eq!(out, [0]);
    /// ```
    pub fn matching_into(&self, event: &Event, out: &mut Vec<usize>) {
        out.clear();
        let all = |list: &[u32], out: &mut Vec<usize>| out.extend(list.iter().map(|&i| i as usize));
        match event {
            Event::RunStateChange(_) => all(&self.run, out),
            Event::SafetyStateChange(_) => all(&self.safety, out),
            Event::NewPlan(_) => all(&self.new_plan, out),
            Event::TaskStateChange(event) => self.tasks.matching_into(&event.task_id, out),
            Event::LabwareMovement(event) => {
                self.labware[phase_slot(event.phase)].matching_into(&event.labware_id, out);
            }
            // A kind of event newer than this crate: no hook can name it.
            _ => {}
        }
    }
}

fn phase_slot(phase: Phase) -> usize {
    match phase {
        Phase::Start => 0,
        Phase::End => 1,
    }
}

/// The plain linear scan: every hook tested with [`fires`]. The reference the index is checked
/// against, and the baseline of the benchmark.
///
/// ```
/// # let hooks = linq_hooks_model::parse_hooks(r#"[{"filter": "on_new_plan", "parameters": {"url": "https://a.example"}}]"#).unwrap().hooks;
/// # let event = linq_hooks_events::parse_event(r#"{"event": "new_plan", "plan_id": "p", "timestamp": "2025-04-17T09:30:00Z"}"#).unwrap();
/// assert_eq!(linq_hooks_filter::matching_linear(&hooks, &event), [0]);
/// ```
pub fn matching_linear(hooks: &[Hook], event: &Event) -> Vec<usize> {
    (0..hooks.len())
        .filter(|&i| fires(&hooks[i], event))
        .collect()
}
