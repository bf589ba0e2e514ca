//! A deterministic generator of what a LINQ workcell run emits: the [`Event`]s of whole runs,
//! in a plausible order, from a seed.
//!
//! For demos, load tests and trying hooks without a lab. The same seed gives the same events,
//! byte for byte once serialized; no IO, no async, no clock: timestamps start at a configurable
//! instant and advance by simulated durations, strictly increasing through the stream.
//!
//! ```
//! use linq_hooks_simulator::Simulation;
//!
//! let events: Vec<_> = Simulation::new(1).runs(2).events().collect();
//! let first = serde_json::to_string(&events[0]).unwrap();
//! assert_eq!(
//!     first,
//!     r#"{"event":"run_state_change","run_id":"run-1-1","state":"started","message":"The run has started.","timestamp":"2025-04-17T09:30:00.000Z"}"#
//! );
//! assert_eq!(events.last().unwrap().run_id(), Some("run-1-2"));
//! // Reproducible:
//! assert_eq!(events, Simulation::new(1).runs(2).events().collect::<Vec<_>>());
//! ```
//!
//! # What a run emits
//!
//! Run `n` of seed `s` has the id `run-<s>-<n>` and happens on workcell `cell-a`. It follows one
//! of a few workflows (`elisa`, `cell-viability`, `pcr-setup`, `kinetic-read`): each of its 1 to
//! 3 plates (`plate-1`, ...) goes through the workflow's steps in order, the plates' steps
//! interleaved, 4 to 10 tasks in all. In order:
//!
//! 1. `run_state_change` **started**, then a **`new_plan`** (`plan-<s>-<n>-1`, with the run id
//!    and the workflow as `workflow_id`).
//! 2. The **tasks**. Each is `task_state_change` **started**, then labware movements, each a
//!    `labware_movement` **start** (picked up from where it sits) and **end** (put down on the
//!    task's instrument, same source and destination): the plate, and before it the tip box
//!    (`tips-1`) if liquid handling needs it and it is not yet on the liquid handler, and before
//!    that, if the instrument is full, labware cleared back to the hotel. Then, after the
//!    instrument's working time, the task **succeeded**, or (one time in ten) **failed** with
//!    an `error` from the instrument.
//! 3. After a failure, when tasks remain, the scheduler makes a **new plan** without the failed
//!    plate: that plate's remaining tasks are **skipped** (never started) at once; the other
//!    plates go on. Tasks are never cancelled.
//! 4. Once, between two tasks after the first (or after the last, when a failure left no task
//!    to run before it): a **safety alert** with a custom message (such as "Light curtain
//!    interrupted at the plate-reader."), the run **paused**, the safety state back to
//!    **normal**, the run **resumed**, and a **new plan**. Nothing else happens while paused.
//! 5. `run_state_change` **stopped**.
//!
//! Labware starts each run in the hotel (`hotel`, slots 1 to 12); a labware is always picked up
//! where it was last put down, and never put down on an occupied slot. Instruments: `hotel`,
//! `liquid-handler` (4 slots), `incubator` (4), `washer`, `plate-reader`, `sealer`,
//! `centrifuge` (2) and `thermocycler` (1 slot each). Every `message` is the events crate's
//! default sentence, except the safety alert's.
//!
//! Simulated durations are those of a real workcell (an incubation takes 5 to 20 minutes), so a
//! run spans minutes to hours of simulated time; runs follow one another 1 to 10 minutes apart.
//!
//! # Reproducibility
//!
//! A seed's events depend on this crate's version and on the xoshiro256++ generator (from
//! `rand`, seeded by SplitMix64), both fixed algorithms; ranges are drawn by this crate itself,
//! not by `rand`'s distributions, so `rand`'s features and sampling changes do not alter them.
#![forbid(unsafe_code)]

mod dice;
mod run;
mod workcell;

use std::iter::FusedIterator;

use linq_hooks_events::{Event, Timestamp};

use crate::dice::Dice;

/// 2025-04-17T09:30:00.000Z, the default start: a fixed instant, so output is reproducible.
const DEFAULT_START_MILLIS: i64 = 1_744_882_200_000;

/// How a simulation runs: the seed, how many runs, and when the first starts.
///
/// ```
/// use linq_hooks_simulator::Simulation;
///
/// let simulation = Simulation::new(42).runs(3).start("2026-01-05T08:00:00Z".parse()?);
/// let events: Vec<_> = simulation.events().collect();
/// assert_eq!(events[0].timestamp().to_string(), "2026-01-05T08:00:00.000Z");
/// assert_eq!(events[0].run_id(), Some("run-42-1"));
/// # Ok::<(), linq_hooks_events::TimestampError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Simulation {
    seed: u64,
    runs: usize,
    start: Timestamp,
}

impl Simulation {
    /// A simulation of one run from `seed`, starting at 2025-04-17T09:30:00.000Z.
    ///
    /// ```
    /// use linq_hooks_simulator::Simulation;
    ///
    /// let first = Simulation::new(7).events().next().unwrap();
    /// assert_eq!(first.timestamp().to_string(), "2025-04-17T09:30:00.000Z");
    /// assert_eq!(first.message(), "The run has started.");
    /// ```
    pub fn new(seed: u64) -> Simulation {
        Simulation {
            seed,
            runs: 1,
            start: Timestamp::from_unix_millis(DEFAULT_START_MILLIS)
                .expect("the default start is a timestamp"),
        }
    }

    /// How many runs to simulate, one after the other (default 1). Runs are made one at a time
    /// as the events are read, so `runs(usize::MAX)` is an endless stream. The first `k` runs
    /// are the same whatever the number of runs.
    ///
    /// ```
    /// use linq_hooks_simulator::Simulation;
    ///
    /// let one: Vec<_> = Simulation::new(3).events().collect();
    /// let three: Vec<_> = Simulation::new(3).runs(3).events().collect();
    /// assert_eq!(three[..one.len()], one[..]);
    /// assert!(Simulation::new(3).runs(0).events().next().is_none());
    /// ```
    pub fn runs(self, runs: usize) -> Simulation {
        Simulation { runs, ..self }
    }

    /// When the first run starts: the timestamp of the first event.
    ///
    /// Runs that would end after the last representable timestamp (9999-12-30T22:00:00Z, the
    /// end of [`Timestamp`]'s range) are left out: the stream ends before them.
    ///
    /// ```
    /// use linq_hooks_simulator::Simulation;
    ///
    /// let at = "2025-12-24T18:00:00+01:00".parse()?;
    /// let first = Simulation::new(1).start(at).events().next().unwrap();
    /// assert_eq!(first.timestamp().to_string(), "2025-12-24T17:00:00.000Z");
    /// assert!(Simulation::new(1).start("9999-12-30T21:59:00Z".parse()?).events().next().is_none());
    /// # Ok::<(), linq_hooks_events::TimestampError>(())
    /// ```
    pub fn start(self, at: Timestamp) -> Simulation {
        Simulation { start: at, ..self }
    }

    /// The events of the simulated runs, in order.
    ///
    /// ```
    /// use linq_hooks_events::{Event, RunState};
    /// use linq_hooks_simulator::Simulation;
    ///
    /// let events: Vec<Event> = Simulation::new(5).events().collect();
    /// let Event::RunStateChange(last) = events.last().unwrap() else { unreachable!() };
    /// assert_eq!(last.state, RunState::Stopped);
    /// assert!(events.windows(2).all(|w| w[0].timestamp() < w[1].timestamp()));
    /// ```
    pub fn events(&self) -> Events {
        Events {
            dice: Dice::new(self.seed),
            seed: self.seed,
            runs: self.runs,
            simulated: 0,
            now: self.start.unix_millis(),
            pending: Vec::new().into_iter(),
            ended: false,
        }
    }
}

/// The events of a [`Simulation`], made one run at a time as they are read.
///
/// ```
/// use linq_hooks_simulator::Simulation;
///
/// // An endless stream: take what you need.
/// let ndjson: Vec<String> = Simulation::new(9)
///     .runs(usize::MAX)
///     .events()
///     .take(200)
///     .map(|event| serde_json::to_string(&event).unwrap())
///     .collect();
/// assert_eq!(ndjson.len(), 200);
/// ```
#[derive(Clone, Debug)]
pub struct Events {
    dice: Dice,
    seed: u64,
    runs: usize,
    /// Runs simulated so far.
    simulated: usize,
    /// Simulated time: Unix milliseconds of the last event (or the start).
    now: i64,
    pending: std::vec::IntoIter<Event>,
    ended: bool,
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.next() {
                return Some(event);
            }
            if self.ended || self.simulated >= self.runs {
                return None;
            }
            if self.simulated > 0 {
                // The next run starts 1 to 10 minutes after the last one stopped.
                let pause = self.dice.between(60_000, 600_000) as i64;
                self.now = self.now.saturating_add(pause);
            }
            self.simulated += 1;
            match run::simulate(&mut self.dice, self.seed, self.simulated, self.now) {
                Some((events, last)) => {
                    self.pending = events.into_iter();
                    self.now = last;
                }
                None => self.ended = true,
            }
        }
    }
}

impl FusedIterator for Events {}
