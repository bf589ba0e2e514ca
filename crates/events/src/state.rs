//! The state values of events. Run, task and safety states are *open*: a value this version
//! does not know (from a newer scheduler) is kept and passed on as it came.

use std::borrow::Cow;
use std::fmt;

#[cfg(feature = "schema")]
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! open_state {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal $(| $alias:literal)*, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A state this version does not know, kept exactly as it came.
            Other(String),
        }

        impl $name {
            /// The states this version knows, as written on the wire.
            pub const KNOWN: &'static [&'static str] = &[$($wire),*];

            /// The wire form: a known state's name, or an unknown state as it came.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )*
                    $name::Other(other) => other,
                }
            }

            /// Whether this version knows the state.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                match s {
                    $( $wire $(| $alias)* => $name::$variant, )*
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                Ok($name::from(Cow::<'de, str>::deserialize(deserializer)?.as_ref()))
            }
        }

        #[cfg(feature = "schema")]
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "description": concat!(
                        "One of the known states, or (from a newer scheduler) another string, ",
                        "passed on as it came."
                    ),
                    "anyOf": [
                        { "enum": [$($wire),*] },
                        { "type": "string" }
                    ]
                })
            }
        }
    };
}

open_state! {
    /// The state of a run: `started`, `paused`, `resumed` or `stopped`.
    ///
    /// LINQ's documentation spells the last `stoped`; that spelling is read as `stopped`.
    ///
    /// ```
    /// use linq_hooks_events::RunState;
    /// assert_eq!(RunState::from("stoped"), RunState::Stopped);
    /// assert_eq!(RunState::Stopped.as_str(), "stopped");
    /// assert_eq!(RunState::from("aborted").as_str(), "aborted"); // unknown: kept
    /// ```
    RunState {
        /// `started`
        Started = "started",
        /// `paused`
        Paused = "paused",
        /// `resumed`
        Resumed = "resumed",
        /// `stopped` (also read from LINQ's documented spelling `stoped`)
        Stopped = "stopped" | "stoped",
    }
}

open_state! {
    /// The state of a task: `started`, `succeeded`, `failed`, `skipped` or `cancelled`.
    ///
    /// ```
    /// use linq_hooks_events::TaskState;
    /// assert_eq!(TaskState::from("failed"), TaskState::Failed);
    /// assert!(!TaskState::from("retrying").is_known());
    /// ```
    TaskState {
        /// `started`
        Started = "started",
        /// `succeeded`
        Succeeded = "succeeded",
        /// `failed`
        Failed = "failed",
        /// `skipped`
        Skipped = "skipped",
        /// `cancelled`
        Cancelled = "cancelled",
    }
}

open_state! {
    /// The state of the workcell's safety adapter: `normal`, `alert` or `emergency_stop`.
    ///
    /// ```
    /// use linq_hooks_events::SafetyState;
    /// assert_eq!(SafetyState::from("emergency_stop"), SafetyState::EmergencyStop);
    /// ```
    SafetyState {
        /// `normal`
        Normal = "normal",
        /// `alert`
        Alert = "alert",
        /// `emergency_stop`
        EmergencyStop = "emergency_stop",
    }
}

/// Which end of a labware movement: `start` (picked up) or `end` (put down).
///
/// Unlike the states, the phase is closed: any other value is refused, since a labware hook's
/// `trigger_on` must be able to decide on it.
///
/// ```
/// use linq_hooks_events::Phase;
/// assert_eq!(serde_json::from_str::<Phase>(r#""end""#).unwrap(), Phase::End);
/// assert!(serde_json::from_str::<Phase>(r#""middle""#).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::summary))]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The labware was picked up.
    Start,
    /// The labware was put down.
    End,
}

impl Phase {
    /// The wire form: `start` or `end`.
    ///
    /// ```
    /// assert_eq!(linq_hooks_events::Phase::Start.as_str(), "start");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::End => "end",
        }
    }
}
