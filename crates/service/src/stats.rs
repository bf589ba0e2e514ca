//! Attempts per hook per minute, for the dashboard's chart (`GET /v1/stats/deliveries`).
//!
//! In memory only, since the service started (a restart starts from nothing): the store keeps
//! every attempt, but reading the last hour of them on every poll of a chart would be a scan.
//! Bounded: at most [`KEEP_MINUTES`] minutes per hook, for registered hooks only (a removed
//! hook's minutes are dropped with it).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use linq_hooks_delivery::HookId;

/// How many minutes are kept per hook (and the most a query may ask for).
pub(crate) const KEEP_MINUTES: u64 = 60;

/// One hook's counts in one minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Minute {
    /// The minute, as whole minutes since the Unix epoch (UTC).
    pub(crate) minute: u64,
    /// Attempts that delivered.
    pub(crate) delivered: u64,
    /// Attempts that did not (to be retried, given up, or a 410).
    pub(crate) failed_attempts: u64,
}

/// The counts of every registered hook, minute by minute.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    hooks: Mutex<HashMap<HookId, VecDeque<Minute>>>,
}

/// Whole minutes since the Unix epoch.
pub(crate) fn minute_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

impl Stats {
    /// Counts one attempt of `hook`, made at `at`.
    pub(crate) fn observe(&self, hook: HookId, at: SystemTime, delivered: bool) {
        let minute = minute_of(at);
        let mut hooks = self.hooks.lock().expect("not poisoned");
        let minutes = hooks.entry(hook).or_default();
        // Attempts are recorded nearly in time order; one from a minute already passed (a
        // clock stepped back) is counted in the latest minute rather than reordering.
        match minutes.back_mut() {
            Some(last) if last.minute >= minute => {
                if delivered {
                    last.delivered += 1;
                } else {
                    last.failed_attempts += 1;
                }
            }
            _ => minutes.push_back(Minute {
                minute,
                delivered: u64::from(delivered),
                failed_attempts: u64::from(!delivered),
            }),
        }
        while minutes
            .front()
            .is_some_and(|first| first.minute + KEEP_MINUTES <= minute)
        {
            minutes.pop_front();
        }
    }

    /// Drops a hook's counts (it was removed).
    pub(crate) fn forget(&self, hook: HookId) {
        self.hooks.lock().expect("not poisoned").remove(&hook);
    }

    /// The minutes with activity among the last `minutes` (the current one included) at `now`,
    /// of `hook` or of every hook: ordered by minute, then hook.
    pub(crate) fn per_minute(
        &self,
        now: SystemTime,
        minutes: u64,
        hook: Option<HookId>,
    ) -> Vec<(HookId, Minute)> {
        let first = (minute_of(now) + 1).saturating_sub(minutes);
        let hooks = self.hooks.lock().expect("not poisoned");
        let mut out: Vec<(HookId, Minute)> = hooks
            .iter()
            .filter(|(id, _)| hook.is_none_or(|hook| hook == **id))
            .flat_map(|(id, counts)| {
                counts
                    .iter()
                    .filter(|m| m.minute >= first)
                    .map(move |m| (*id, *m))
            })
            .collect();
        out.sort_unstable_by_key(|(id, m)| (m.minute, *id));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(minute: u64, second: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(minute * 60 + second)
    }

    #[test]
    fn counts_per_minute_and_keeps_the_last_hour() {
        let stats = Stats::default();
        stats.observe(1, at(1000, 5), true);
        stats.observe(1, at(1000, 59), false);
        stats.observe(2, at(1000, 30), false);
        stats.observe(1, at(1003, 0), true);
        let all = stats.per_minute(at(1003, 10), 60, None);
        let rows: Vec<(HookId, u64, u64, u64)> = all
            .iter()
            .map(|(h, m)| (*h, m.minute, m.delivered, m.failed_attempts))
            .collect();
        assert_eq!(
            rows,
            [(1, 1000, 1, 1), (2, 1000, 0, 1), (1, 1003, 1, 0)],
            "only minutes with activity, by minute then hook"
        );
        // The window: the last 2 minutes at 1003 are 1002 and 1003.
        assert_eq!(stats.per_minute(at(1003, 10), 2, None).len(), 1);
        // One hook only.
        assert_eq!(stats.per_minute(at(1003, 10), 60, Some(2)).len(), 1);
        // An hour later the old minutes are dropped as new ones come.
        stats.observe(1, at(1063, 0), false);
        let left: Vec<u64> = stats
            .per_minute(at(1063, 0), 60, Some(1))
            .iter()
            .map(|(_, m)| m.minute)
            .collect();
        assert_eq!(left, [1063], "minute 1003 is 60 minutes old: dropped");
        assert!(
            stats.hooks.lock().unwrap()[&1].len() <= KEEP_MINUTES as usize,
            "bounded"
        );
        stats.forget(1);
        assert!(stats.per_minute(at(1063, 0), 60, Some(1)).is_empty());
    }

    #[test]
    fn a_clock_stepped_back_counts_in_the_latest_minute() {
        let stats = Stats::default();
        stats.observe(1, at(500, 0), true);
        stats.observe(1, at(499, 0), true);
        let rows = stats.per_minute(at(500, 0), 60, None);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1.delivered, 2);
    }
}
