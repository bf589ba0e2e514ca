//! The simulated workcell: its instruments, what tasks they do, the workflows that chain those
//! tasks, and where each labware is.

use linq_hooks_events::Location;

/// An instrument and how many labware positions (slots) it has.
#[derive(Debug)]
pub(crate) struct Instrument {
    pub(crate) id: &'static str,
    pub(crate) slots: u32,
}

/// Where labware waits between tasks: every run's labware starts here, and labware cleared off
/// an instrument goes back here.
pub(crate) static HOTEL: Instrument = Instrument {
    id: "hotel",
    slots: 12,
};
static LIQUID_HANDLER: Instrument = Instrument {
    id: "liquid-handler",
    slots: 4,
};
static INCUBATOR: Instrument = Instrument {
    id: "incubator",
    slots: 4,
};
static WASHER: Instrument = Instrument {
    id: "washer",
    slots: 1,
};
static PLATE_READER: Instrument = Instrument {
    id: "plate-reader",
    slots: 1,
};
static SEALER: Instrument = Instrument {
    id: "sealer",
    slots: 1,
};
static CENTRIFUGE: Instrument = Instrument {
    id: "centrifuge",
    slots: 2,
};
static THERMOCYCLER: Instrument = Instrument {
    id: "thermocycler",
    slots: 1,
};

/// A kind of task: its name (task ids are `<name>-<n>`), the instrument that does it, and how
/// long it takes.
#[derive(Debug)]
pub(crate) struct TaskKind {
    pub(crate) name: &'static str,
    pub(crate) instrument: &'static Instrument,
    /// Liquid handling needs the tip box on the liquid handler's deck.
    pub(crate) needs_tips: bool,
    /// How long the instrument works on the plate, in seconds (inclusive range).
    pub(crate) seconds: (u64, u64),
    /// What the instrument reports when the task fails.
    pub(crate) errors: &'static [&'static str],
}

static DISPENSE_REAGENT: TaskKind = TaskKind {
    name: "dispense-reagent",
    instrument: &LIQUID_HANDLER,
    needs_tips: true,
    seconds: (20, 90),
    errors: &[
        "Liquid level below threshold in the reagent trough.",
        "Tip pick-up failed on channel 3.",
    ],
};
static TRANSFER_SAMPLES: TaskKind = TaskKind {
    name: "transfer-samples",
    instrument: &LIQUID_HANDLER,
    needs_tips: true,
    seconds: (30, 120),
    errors: &[
        "Clot detected while aspirating sample.",
        "Tip pick-up failed on channel 5.",
    ],
};
static INCUBATE: TaskKind = TaskKind {
    name: "incubate",
    instrument: &INCUBATOR,
    needs_tips: false,
    seconds: (300, 1200),
    errors: &["Incubator temperature out of range."],
};
static WASH: TaskKind = TaskKind {
    name: "wash",
    instrument: &WASHER,
    needs_tips: false,
    seconds: (45, 120),
    errors: &["Washer manifold clogged.", "Wash buffer bottle empty."],
};
static READ_PLATE: TaskKind = TaskKind {
    name: "read-plate",
    instrument: &PLATE_READER,
    needs_tips: false,
    seconds: (30, 90),
    errors: &[
        "Reader lid did not open.",
        "Plate barcode could not be read.",
    ],
};
static SEAL: TaskKind = TaskKind {
    name: "seal",
    instrument: &SEALER,
    needs_tips: false,
    seconds: (5, 15),
    errors: &["Seal foil roll empty."],
};
static CENTRIFUGE_PLATE: TaskKind = TaskKind {
    name: "centrifuge",
    instrument: &CENTRIFUGE,
    needs_tips: false,
    seconds: (60, 300),
    errors: &["Centrifuge imbalance detected."],
};
static THERMOCYCLE: TaskKind = TaskKind {
    name: "thermocycle",
    instrument: &THERMOCYCLER,
    needs_tips: false,
    seconds: (1800, 3600),
    errors: &["Thermocycler lid heater fault."],
};

/// A workflow: the steps every plate of a run goes through, in order, and how many plates a run
/// of it processes. Consecutive steps are on different instruments, so every task moves its
/// plate (a test checks this).
#[derive(Debug)]
pub(crate) struct Workflow {
    pub(crate) id: &'static str,
    pub(crate) steps: &'static [&'static TaskKind],
    /// How many plates a run processes (inclusive range); steps × plates is 4 to 10 tasks.
    pub(crate) plates: (u64, u64),
}

pub(crate) static WORKFLOWS: &[Workflow] = &[
    Workflow {
        id: "elisa",
        steps: &[
            &DISPENSE_REAGENT,
            &INCUBATE,
            &WASH,
            &DISPENSE_REAGENT,
            &READ_PLATE,
        ],
        plates: (1, 2),
    },
    Workflow {
        id: "cell-viability",
        steps: &[&DISPENSE_REAGENT, &INCUBATE, &READ_PLATE],
        plates: (2, 3),
    },
    Workflow {
        id: "pcr-setup",
        steps: &[&TRANSFER_SAMPLES, &SEAL, &CENTRIFUGE_PLATE, &THERMOCYCLE],
        plates: (1, 2),
    },
    Workflow {
        id: "kinetic-read",
        steps: &[&DISPENSE_REAGENT, &READ_PLATE, &INCUBATE, &READ_PLATE],
        plates: (1, 2),
    },
];

/// What the safety adapter says when it raises an alert, near an instrument (`{instrument}`).
pub(crate) static ALERTS: &[&str] = &[
    "Light curtain interrupted at the {instrument}.",
    "Safety door opened at the {instrument}.",
    "Area scanner detected a person near the {instrument}.",
];

/// The labware of a run and where each piece is.
#[derive(Debug)]
pub(crate) struct Deck {
    /// `(labware id, where it is)`.
    labware: Vec<(String, Location)>,
}

impl Deck {
    pub(crate) fn new() -> Deck {
        Deck {
            labware: Vec::new(),
        }
    }

    /// Adds labware at a location; returns its index.
    pub(crate) fn add(&mut self, id: String, at: Location) -> usize {
        self.labware.push((id, at));
        self.labware.len() - 1
    }

    pub(crate) fn id(&self, labware: usize) -> &str {
        &self.labware[labware].0
    }

    pub(crate) fn location(&self, labware: usize) -> &Location {
        &self.labware[labware].1
    }

    pub(crate) fn set_location(&mut self, labware: usize, at: Location) {
        self.labware[labware].1 = at;
    }

    /// The labware on an instrument, by slot order.
    pub(crate) fn on(&self, instrument: &Instrument) -> Vec<usize> {
        let mut on: Vec<usize> = (0..self.labware.len())
            .filter(|&i| self.labware[i].1.instrument == instrument.id)
            .collect();
        on.sort_by_key(|&i| self.labware[i].1.slot);
        on
    }

    /// The instrument's slots that hold no labware, in order.
    pub(crate) fn free_slots(&self, instrument: &Instrument) -> Vec<u32> {
        (1..=instrument.slots)
            .filter(|&slot| {
                !self
                    .labware
                    .iter()
                    .any(|(_, at)| at.instrument == instrument.id && at.slot == slot)
            })
            .collect()
    }
}

/// A location on an instrument.
pub(crate) fn at(instrument: &Instrument, slot: u32) -> Location {
    Location {
        instrument: instrument.id.to_string(),
        slot,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_steps_use_different_instruments() {
        for workflow in WORKFLOWS {
            for pair in workflow.steps.windows(2) {
                assert_ne!(
                    pair[0].instrument.id, pair[1].instrument.id,
                    "{}",
                    workflow.id
                );
            }
        }
    }

    #[test]
    fn runs_have_four_to_ten_tasks_and_fit_the_deck() {
        for workflow in WORKFLOWS {
            let steps = workflow.steps.len() as u64;
            let (low, high) = workflow.plates;
            assert!(
                low >= 1 && steps * low >= 4 && steps * high <= 10,
                "{}",
                workflow.id
            );
            // Every plate and the tip box fit in the hotel, and on the liquid handler there is
            // always a free slot for a plate that is not already there.
            assert!(high < u64::from(HOTEL.slots));
            assert!(high < u64::from(LIQUID_HANDLER.slots));
        }
    }

    #[test]
    fn every_kind_can_fail_with_a_reason() {
        for workflow in WORKFLOWS {
            for step in workflow.steps {
                assert!(!step.errors.is_empty() && step.seconds.0 <= step.seconds.1);
                assert_ne!(step.instrument.id, HOTEL.id);
            }
        }
    }
}
