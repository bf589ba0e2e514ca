//! What an attempt's result means, and when to try again.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use linq_hooks_transport::{Error as TransportError, Response};

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// When to try a failed delivery again: the delays after the first attempt, each with ±20 %
/// jitter. A receiver's `Retry-After` is a minimum: the wait is the longer of it and the
/// scheduled delay, so a `Retry-After: 0` cannot burn through a schedule meant for hours.
///
/// A delivery gets one attempt plus one per delay; after the last it is given up.
///
/// ```
/// use std::time::Duration;
/// use linq_hooks_delivery::RetryPolicy;
///
/// let policy: RetryPolicy = "1s,5s,30s".parse()?;
/// assert_eq!(policy.max_attempts(), 4);
/// let delay = policy.delay_after(1, None).unwrap(); // after the first attempt: about 1 s
/// assert!(delay >= Duration::from_millis(800) && delay <= Duration::from_millis(1200));
/// assert_eq!(policy.delay_after(2, Some(Duration::from_secs(60))), Some(Duration::from_secs(60)));
/// assert!(policy.delay_after(2, Some(Duration::ZERO)).unwrap() >= Duration::from_secs(4));
/// assert_eq!(policy.delay_after(4, None), None); // exhausted
/// # Ok::<(), linq_hooks_delivery::ParsePolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    delays: Vec<Duration>,
    jitter_percent: u32,
}

impl RetryPolicy {
    /// A policy with these delays after the first attempt, and ±20 % jitter.
    pub fn new(delays: impl Into<Vec<Duration>>) -> RetryPolicy {
        RetryPolicy {
            delays: delays.into(),
            jitter_percent: 20,
        }
    }

    /// `linq-hooks dispatch`'s default: 1 s, 5 s, 30 s.
    ///
    /// ```
    /// assert_eq!(linq_hooks_delivery::RetryPolicy::dispatch_default().to_string(), "1s,5s,30s");
    /// ```
    pub fn dispatch_default() -> RetryPolicy {
        RetryPolicy::new([1, 5, 30].map(Duration::from_secs))
    }

    /// `linq-hooks serve`'s default, for receivers down for hours: 5 s, 5 min, 30 min, 2 h,
    /// 5 h, 10 h, 10 h (about 28 hours in all).
    ///
    /// ```
    /// assert_eq!(linq_hooks_delivery::RetryPolicy::service_default().to_string(), "5s,5m,30m,2h,5h,10h,10h");
    /// ```
    pub fn service_default() -> RetryPolicy {
        let minutes = [5, 30, 120, 300, 600, 600].map(|m| Duration::from_secs(m * 60));
        RetryPolicy::new([&[Duration::from_secs(5)][..], &minutes].concat())
    }

    /// The same delays with a different jitter (0 for none; at most 100).
    ///
    /// ```
    /// use std::time::Duration;
    /// let policy = linq_hooks_delivery::RetryPolicy::new([Duration::from_secs(2)]).with_jitter_percent(0);
    /// assert_eq!(policy.delay_after(1, None), Some(Duration::from_secs(2)));
    /// ```
    pub fn with_jitter_percent(mut self, percent: u32) -> RetryPolicy {
        self.jitter_percent = percent.min(100);
        self
    }

    /// How many attempts a delivery gets in all.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// How long to wait after `attempts` failed attempts, or `None` when they are used up.
    /// `retry_after` is the receiver's `Retry-After`: the wait is at least that long.
    pub fn delay_after(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
        let scheduled = *self.delays.get(index)?;
        let jitter = u64::from(self.jitter_percent);
        let percent = fastrand::u64(100 - jitter..=100 + jitter);
        let millis = u64::try_from(scheduled.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(millis.saturating_mul(percent) / 100);
        Some(retry_after.map_or(jittered, |asked| asked.min(MAX_RETRY_AFTER).max(jittered)))
    }
}

impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, delay) in self.delays.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", humantime::format_duration(*delay))?;
        }
        Ok(())
    }
}

/// Why a retry schedule could not be read.
///
/// ```
/// let err = "1s,soon".parse::<linq_hooks_delivery::RetryPolicy>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid delay `soon` in the retry schedule: expected a number like 5s, 10m or 2h");
/// ```
#[derive(Debug)]
pub struct ParsePolicyError(String);

impl fmt::Display for ParsePolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParsePolicyError {}

impl FromStr for RetryPolicy {
    type Err = ParsePolicyError;

    /// Reads delays separated by commas, such as `1s,5s,30s` or `500ms,2m,1h`. An empty string
    /// means no retries.
    fn from_str(s: &str) -> Result<RetryPolicy, ParsePolicyError> {
        if s.trim().is_empty() {
            return Ok(RetryPolicy::new([]));
        }
        let delays = s
            .split(',')
            .map(|part| {
                let part = part.trim();
                humantime::parse_duration(part).map_err(|_| {
                    ParsePolicyError(format!(
                        "invalid delay `{part}` in the retry schedule: expected a number like 5s, 10m or 2h"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RetryPolicy::new(delays))
    }
}

/// What one attempt's result means for its delivery.
///
/// ```
/// use linq_hooks_delivery::Verdict;
/// use linq_hooks_delivery::{Response, transport::Error};
///
/// assert_eq!(Verdict::of(&Ok(Response::new(204))), Verdict::Delivered);
/// assert_eq!(Verdict::of(&Ok(Response::new(503))), Verdict::Retry { retry_after: None });
/// assert_eq!(Verdict::of(&Ok(Response::new(410))), Verdict::Gone);
/// assert!(matches!(Verdict::of(&Ok(Response::new(400))), Verdict::Fail { .. }));
/// assert_eq!(Verdict::of(&Err(Error::timeout())), Verdict::Retry { retry_after: None });
/// let refused = Error::refused("refused by --deny-private (loopback 127.0.0.0/8): 127.0.0.1:80");
/// assert_eq!(
///     Verdict::of(&Err(refused)),
///     Verdict::Fail {
///         reason: "blocked by the egress policy: refused by --deny-private (loopback 127.0.0.0/8): 127.0.0.1:80".into()
///     }
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: delivered.
    Delivered,
    /// Worth another try: a connection or TLS failure, a timeout, a broken response, 408, 429
    /// or 5xx. `retry_after` is the receiver's `Retry-After`, if it sent one.
    Retry {
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 410 Gone: the receiver asks never to be called again; the hook is disabled.
    Gone,
    /// Any other answer (a 3xx, which is never followed; another 4xx), a request that cannot
    /// be sent, or an address the transport's egress policy refuses (the reason names the rule):
    /// trying again would not help.
    Fail {
        /// Why, for the record.
        reason: String,
    },
}

impl Verdict {
    /// Judges one attempt's result.
    pub fn of(result: &Result<Response, TransportError>) -> Verdict {
        match result {
            Ok(response) => match response.status() {
                200..=299 => Verdict::Delivered,
                410 => Verdict::Gone,
                408 | 429 | 500..=599 => Verdict::Retry {
                    retry_after: response.retry_after(),
                },
                300..=399 => Verdict::Fail {
                    reason: format!(
                        "redirect {} (redirects are not followed)",
                        response.status()
                    ),
                },
                status => Verdict::Fail {
                    reason: format!("status {status}"),
                },
            },
            Err(error) if error.is_invalid_request() => Verdict::Fail {
                reason: error.to_string(),
            },
            // The rule and the address are in the source: `{:#}` keeps them in the reason.
            Err(error) if error.is_refused() => Verdict::Fail {
                reason: format!("{error:#}"),
            },
            Err(_) => Verdict::Retry { retry_after: None },
        }
    }
}
