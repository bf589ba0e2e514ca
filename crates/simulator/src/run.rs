//! One simulated run, from `started` to `stopped`.

use std::collections::VecDeque;

use linq_hooks_events::{
    Event, LabwareMovement, Location, NewPlan, Phase, RunState, RunStateChange, SafetyState,
    SafetyStateChange, TaskState, TaskStateChange, Timestamp,
};

use crate::dice::Dice;
use crate::workcell::{self, ALERTS, Deck, HOTEL, Instrument, TaskKind, WORKFLOWS, Workflow};

/// The workcell every simulated run happens on.
pub(crate) const WORKCELL_ID: &str = "cell-a";

/// A task fails once in this many times.
const FAILS_ONE_IN: u64 = 10;

/// A planned task: which kind, on which plate (an index into the deck).
#[derive(Debug)]
struct Task {
    id: String,
    kind: &'static TaskKind,
    plate: usize,
}

/// Simulates run `number` (1-based) of the stream of `seed`, starting at `now` (Unix
/// milliseconds). Returns its events and the time of its last event, or `None` when the run
/// would leave the range of [`Timestamp`].
pub(crate) fn simulate(
    dice: &mut Dice,
    seed: u64,
    number: usize,
    now: i64,
) -> Option<(Vec<Event>, i64)> {
    let workflow = dice.pick(WORKFLOWS);
    let plates = dice.between(workflow.plates.0, workflow.plates.1) as usize;
    let mut run = Run {
        dice,
        run_id: format!("run-{seed}-{number}"),
        plan_prefix: format!("plan-{seed}-{number}-"),
        plans: 0,
        workflow,
        deck: Deck::new(),
        tips: plates,
        last_instrument: HOTEL.id,
        now,
        out_of_range: false,
        events: Vec::new(),
    };
    // Everything starts in the hotel: plates 0..plates, then the tip box.
    for id in (1..=plates)
        .map(|n| format!("plate-{n}"))
        .chain(["tips-1".to_string()])
    {
        let slot = *run.dice.pick(&run.deck.free_slots(&HOTEL));
        run.deck.add(id, workcell::at(&HOTEL, slot));
    }
    let tasks = run.plan(plates);
    run.run(tasks);
    (!run.out_of_range).then_some((run.events, run.now))
}

struct Run<'a> {
    dice: &'a mut Dice,
    run_id: String,
    plan_prefix: String,
    plans: u32,
    workflow: &'static Workflow,
    deck: Deck,
    /// The tip box's index in the deck.
    tips: usize,
    /// The instrument of the last task that ran (where the safety alert happens).
    last_instrument: &'static str,
    /// Simulated time, Unix milliseconds.
    now: i64,
    out_of_range: bool,
    events: Vec<Event>,
}

impl Run<'_> {
    /// Every plate goes through the workflow's steps in order; the plates' steps are interleaved
    /// at random. Task ids number each kind of task in plan order: `dispense-reagent-1`, ...
    fn plan(&mut self, plates: usize) -> VecDeque<Task> {
        let steps = self.workflow.steps;
        let mut next_step = vec![0; plates];
        let mut counts: Vec<(&str, u32)> = Vec::new();
        let mut tasks = VecDeque::new();
        loop {
            let ready: Vec<usize> = (0..plates)
                .filter(|&p| next_step[p] < steps.len())
                .collect();
            if ready.is_empty() {
                return tasks;
            }
            let plate = *self.dice.pick(&ready);
            let kind = steps[next_step[plate]];
            next_step[plate] += 1;
            let n = match counts.iter_mut().find(|(name, _)| *name == kind.name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((kind.name, 1));
                    1
                }
            };
            tasks.push_back(Task {
                id: format!("{}-{n}", kind.name),
                kind,
                plate,
            });
        }
    }

    fn run(&mut self, mut tasks: VecDeque<Task>) {
        self.run_state(RunState::Started);
        self.advance(100, 400);
        self.new_plan();
        // The safety alert (and the pause around it) comes after this many tasks are done with.
        let pause_after = self.dice.between(1, tasks.len() as u64 - 1) as usize;
        let mut done_with = 0;
        let mut paused = false;
        while let Some(task) = tasks.pop_front() {
            if !paused && done_with >= pause_after {
                self.safety_pause();
                paused = true;
            }
            done_with += 1;
            if self.execute(&task) || tasks.is_empty() {
                continue;
            }
            // A failed step spoils its plate: the scheduler plans again without the plate's
            // remaining steps, which are skipped; the other plates go on.
            self.advance(200, 1000);
            self.new_plan();
            let (skipped, kept) = tasks.drain(..).partition(|t| t.plate == task.plate);
            tasks = kept;
            for skipped in Vec::from(skipped) {
                self.advance(10, 50);
                self.task_state(&skipped.id, TaskState::Skipped, None);
                done_with += 1;
            }
        }
        if !paused {
            self.safety_pause();
        }
        self.advance(1000, 5000);
        self.run_state(RunState::Stopped);
    }

    /// Runs a task; returns whether it succeeded.
    fn execute(&mut self, task: &Task) -> bool {
        let instrument = task.kind.instrument;
        self.advance(500, 3000);
        self.task_state(&task.id, TaskState::Started, None);
        let keep = [task.plate, self.tips];
        if task.kind.needs_tips && self.deck.location(self.tips).instrument != instrument.id {
            self.bring(self.tips, instrument, &keep);
        }
        self.bring(task.plate, instrument, &keep);
        self.last_instrument = instrument.id;
        let (low, high) = task.kind.seconds;
        self.advance(low * 1000, high * 1000);
        if self.dice.one_in(FAILS_ONE_IN) {
            let error = *self.dice.pick(task.kind.errors);
            self.task_state(&task.id, TaskState::Failed, Some(error));
            false
        } else {
            self.task_state(&task.id, TaskState::Succeeded, None);
            true
        }
    }

    /// Moves labware to a free slot of an instrument, first clearing a slot (back to the hotel)
    /// when the instrument is full. Labware in `keep` is never cleared away.
    fn bring(&mut self, labware: usize, instrument: &Instrument, keep: &[usize]) {
        let free = self.deck.free_slots(instrument);
        let slot = if free.is_empty() {
            // The labware brought is never on the instrument already (consecutive steps use
            // different instruments), and the tip box is only ever on the liquid handler, which
            // has a slot more than a run has plates: so a full instrument holds other labware.
            let occupant = self
                .deck
                .on(instrument)
                .into_iter()
                .find(|i| !keep.contains(i))
                .expect("a full instrument holds labware the task does not need");
            let slot = self.deck.location(occupant).slot;
            // The hotel has more slots than a run has labware.
            let to = *self.dice.pick(&self.deck.free_slots(&HOTEL));
            self.move_labware(occupant, workcell::at(&HOTEL, to));
            slot
        } else {
            *self.dice.pick(&free)
        };
        self.move_labware(labware, workcell::at(instrument, slot));
    }

    /// Picks labware up where it is and puts it down at `to`.
    fn move_labware(&mut self, labware: usize, to: Location) {
        let from = self.deck.location(labware).clone();
        self.advance(300, 1500);
        self.movement(labware, Phase::Start, &from, &to);
        self.advance(4000, 12_000);
        self.movement(labware, Phase::End, &from, &to);
        self.deck.set_location(labware, to);
    }

    /// Someone reaches into the workcell: the safety adapter raises an alert, the scheduler
    /// pauses the run, the workcell is back to normal, the run resumes and the scheduler plans
    /// again (the pause made the old plan's timings stale).
    fn safety_pause(&mut self) {
        self.advance(1000, 20_000);
        let message = self
            .dice
            .pick(ALERTS)
            .replace("{instrument}", self.last_instrument);
        self.safety(SafetyState::Alert, message);
        self.advance(50, 300);
        self.run_state(RunState::Paused);
        self.advance(20_000, 120_000);
        self.safety(SafetyState::Normal, String::new());
        self.advance(2000, 10_000);
        self.run_state(RunState::Resumed);
        self.advance(100, 500);
        self.new_plan();
    }

    /// Lets `low..=high` milliseconds pass (at least one, so timestamps strictly increase).
    fn advance(&mut self, low: u64, high: u64) {
        let millis = self.dice.between(low.max(1), high);
        self.now = self
            .now
            .saturating_add(i64::try_from(millis).unwrap_or(i64::MAX));
    }

    fn timestamp(&mut self) -> Timestamp {
        Timestamp::from_unix_millis(self.now).unwrap_or_else(|| {
            // The run is dropped; any timestamp will do meanwhile.
            self.out_of_range = true;
            Timestamp::from_unix_millis(0).expect("the epoch is a timestamp")
        })
    }

    /// Adds an event; an empty `message` becomes the events crate's default sentence.
    fn emit(&mut self, event: Event) {
        let value = serde_json::to_value(&event).expect("an event always serializes");
        let event = linq_hooks_events::parse_event_value(&value)
            .expect("a simulated event is a valid event");
        self.events.push(event);
    }

    fn run_state(&mut self, state: RunState) {
        let timestamp = self.timestamp();
        self.emit(Event::RunStateChange(RunStateChange {
            run_id: self.run_id.clone(),
            state,
            message: String::new(),
            timestamp,
            extra: Default::default(),
        }));
    }

    fn task_state(&mut self, task_id: &str, state: TaskState, error: Option<&str>) {
        let timestamp = self.timestamp();
        self.emit(Event::TaskStateChange(TaskStateChange {
            run_id: self.run_id.clone(),
            task_id: task_id.to_string(),
            state,
            message: String::new(),
            timestamp,
            error: error.map(str::to_string),
            extra: Default::default(),
        }));
    }

    fn safety(&mut self, state: SafetyState, message: String) {
        let timestamp = self.timestamp();
        self.emit(Event::SafetyStateChange(SafetyStateChange {
            state,
            message,
            timestamp,
            run_id: Some(self.run_id.clone()),
            workcell_id: Some(WORKCELL_ID.to_string()),
            extra: Default::default(),
        }));
    }

    fn movement(&mut self, labware: usize, phase: Phase, from: &Location, to: &Location) {
        let timestamp = self.timestamp();
        self.emit(Event::LabwareMovement(LabwareMovement {
            run_id: self.run_id.clone(),
            labware_id: self.deck.id(labware).to_string(),
            phase,
            source: from.clone(),
            destination: to.clone(),
            message: String::new(),
            timestamp,
            extra: Default::default(),
        }));
    }

    fn new_plan(&mut self) {
        self.plans += 1;
        let timestamp = self.timestamp();
        self.emit(Event::NewPlan(NewPlan {
            plan_id: format!("{}{}", self.plan_prefix, self.plans),
            message: String::new(),
            timestamp,
            run_id: Some(self.run_id.clone()),
            workflow_id: Some(self.workflow.id.to_string()),
            extra: Default::default(),
        }));
    }
}
