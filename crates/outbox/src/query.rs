//! What the operations API's reads take and give: a filter for listing deliveries newest
//! first in pages of bounded work, the page, and one event with its body and its deliveries.

use std::time::SystemTime;

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_transport::Bytes;

use crate::{DeliveryInfo, DeliveryState};

/// The most index entries one page of [`Store::deliveries`](crate::Store::deliveries)
/// examines. A filter that matches little in a large store returns a short page (even an empty one) with a cursor to go on
/// from, rather than walking the whole store in one request: follow `next_before` until it
/// is `None`.
pub const SCAN_PER_PAGE: usize = 10_000;

/// The class of a delivery's last attempt's status, for [`DeliveryFilter::status`]: `2xx`,
/// `3xx`, `4xx`, `5xx`, or `none` (no answer: a connection error or a timeout, or no attempt
/// yet).
///
/// ```
/// use linq_hooks_outbox::StatusClass;
/// let class: StatusClass = "4xx".parse().unwrap();
/// assert!(class.matches(Some(401)));
/// assert!(!class.matches(Some(500)) && !class.matches(None));
/// assert!("none".parse::<StatusClass>().unwrap().matches(None));
/// assert!("6xx".parse::<StatusClass>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusClass {
    /// 200–299.
    Success,
    /// 300–399 (redirects are never followed: they fail).
    Redirect,
    /// 400–499.
    ClientError,
    /// 500–599.
    ServerError,
    /// No status: no answer came, or no attempt was made.
    None,
}

impl StatusClass {
    /// Whether a last status (`None`: no answer) is of this class.
    pub fn matches(self, status: Option<u16>) -> bool {
        match (self, status) {
            (StatusClass::None, None) => true,
            (StatusClass::Success, Some(s)) => (200..300).contains(&s),
            (StatusClass::Redirect, Some(s)) => (300..400).contains(&s),
            (StatusClass::ClientError, Some(s)) => (400..500).contains(&s),
            (StatusClass::ServerError, Some(s)) => (500..600).contains(&s),
            _ => false,
        }
    }
}

impl std::str::FromStr for StatusClass {
    type Err = String;

    fn from_str(s: &str) -> Result<StatusClass, String> {
        Ok(match s {
            "2xx" => StatusClass::Success,
            "3xx" => StatusClass::Redirect,
            "4xx" => StatusClass::ClientError,
            "5xx" => StatusClass::ServerError,
            "none" => StatusClass::None,
            _ => {
                return Err(format!(
                    "unknown status class `{s}`; expected 2xx, 3xx, 4xx, 5xx or none"
                ));
            }
        })
    }
}

/// Which deliveries [`Store::deliveries`](crate::Store::deliveries) lists: every field narrows
/// (all `None`: every delivery), newest first (highest id first).
///
/// ```
/// use linq_hooks_outbox::{DeliveryFilter, DeliveryState};
/// let mut failed_of_hook_3 = DeliveryFilter::default();
/// assert_eq!(failed_of_hook_3.limit, 100);
/// failed_of_hook_3.hook = Some(3);
/// failed_of_hook_3.state = Some(DeliveryState::Failed);
/// failed_of_hook_3.limit = 50;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeliveryFilter {
    /// Deliveries of the hooks of this workflow (its removed hooks included).
    pub workflow: Option<String>,
    /// Deliveries of this hook.
    pub hook: Option<HookId>,
    /// Deliveries in this state.
    pub state: Option<DeliveryState>,
    /// Created at or after this time.
    pub since: Option<SystemTime>,
    /// Created before this time.
    pub until: Option<SystemTime>,
    /// Whose last attempt's status is of this class.
    pub status: Option<StatusClass>,
    /// Ids below this one: the `next_before` of the page before.
    pub before: Option<DeliveryId>,
    /// At most this many (the caller bounds it).
    pub limit: usize,
}

impl Default for DeliveryFilter {
    fn default() -> DeliveryFilter {
        DeliveryFilter {
            workflow: None,
            hook: None,
            state: None,
            since: None,
            until: None,
            status: None,
            before: None,
            limit: 100,
        }
    }
}

/// A page of [`Store::deliveries`](crate::Store::deliveries).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryPage {
    /// Newest first; may be fewer than the limit (even none) when the page stopped after
    /// [`SCAN_PER_PAGE`] index entries.
    pub deliveries: Vec<DeliveryInfo>,
    /// Where the next page starts (pass as [`DeliveryFilter::before`]); `None` when there is
    /// nothing more.
    pub next_before: Option<DeliveryId>,
}

/// An event as stored: its body and its deliveries ([`Store::event`](crate::Store::event)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventInfo {
    /// Its number.
    pub id: u64,
    /// When it was stored (its deliveries' creation time).
    pub received_at: SystemTime,
    /// The workflow whose hooks it was matched against.
    pub workflow: Option<String>,
    /// The JSON every delivery of it posts; `None` only when it was damaged in the store file
    /// (its deliveries are then quarantined). It is kept as long as any of its deliveries is.
    pub body: Option<Bytes>,
    /// Its deliveries, one per hook that fired, in id order.
    pub deliveries: Vec<DeliveryInfo>,
}
