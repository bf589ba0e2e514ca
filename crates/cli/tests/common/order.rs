//! The order and duplicate checks of the kill tests: what one hook received against what was
//! acknowledged. Used by `serve.rs` (one process killed while one hook drains) and `cluster.rs`
//! (three processes on one PostgreSQL, one killed).

/// One webhook as the receiver got it: the event's number (its place in the order of the 202s)
/// and its `webhook-id`.
pub type Arrival = (usize, String);

/// What the test saw just before one SIGKILL.
#[derive(Clone, Copy, Debug)]
pub struct KillPoint {
    /// Events the API showed as delivered (acknowledged minus the hook's pending count): the
    /// first `recorded` ones, the hook's queue being in order. An ingest acknowledged after that
    /// answer (a durable commit of the same store) made those records durable.
    pub recorded: usize,
    /// Webhooks that had arrived when the API had answered.
    pub arrived: usize,
}

/// Checks what one hook received (`arrivals`, in the order they came) against what was
/// acknowledged (`acked[n]`: the `webhook-id` of event `n`, numbered in the order of the 202s).
/// Returns the length of each run of resends (where the arrivals step back), or what is wrong:
/// - every arrival is an acknowledged event, with the `webhook-id` it was acknowledged with (so
///   a webhook that arrives twice has the same `webhook-id` both times);
/// - the first arrivals of the events are in the order they were acknowledged, and all came.
///
/// A run of resends starts where the arrivals step back (a resend of what had been sent but
/// whose outcome was not on record); [`check_drain`] also asks that a run skips nothing.
pub fn check_order(acked: &[String], arrivals: &[Arrival]) -> Result<Vec<usize>, String> {
    let mut next = 0; // the next event to arrive for the first time
    for (i, (n, id)) in arrivals.iter().enumerate() {
        let Some(expected) = acked.get(*n) else {
            return Err(format!("arrival {i}: p{n} was never acknowledged"));
        };
        if id != expected {
            return Err(format!(
                "arrival {i}: p{n} came with webhook-id {id}, acknowledged with {expected}"
            ));
        }
        if *n > next {
            return Err(format!(
                "arrival {i}: p{n} came before p{next} ever did (lost or out of order)"
            ));
        }
        next = next.max(n + 1);
    }
    if next < acked.len() {
        return Err(format!(
            "p{next} to p{} never arrived ({} of {} did)",
            acked.len() - 1,
            next,
            acked.len()
        ));
    }
    let resent = (arrivals.windows(2))
        .filter(|pair| pair[1].0 <= pair[0].0)
        .map(|pair| pair[0].0 + 1 - pair[1].0)
        .collect();
    Ok(resent)
}

/// Where `arrivals` jump ahead (`p{after}` right after `p{before}`, after > before + 1): in a
/// run of resends, events skipped (sent again not in the order of the queue, or not all).
pub fn skips(arrivals: &[Arrival]) -> Vec<(usize, usize, usize)> {
    (arrivals.windows(2).enumerate())
        .filter(|(_, pair)| pair[1].0 > pair[0].0 + 1)
        .map(|(i, pair)| (i + 1, pair[0].0, pair[1].0))
        .collect()
}

/// [`check_order`] for one hook while `serve` was killed and restarted, with what was known at
/// each kill. Beyond its checks:
/// - a run of resends skips nothing ([`skips`]);
/// - resends come at most once per kill: in one run right after a restart;
/// - after each kill, nothing is sent again that the API had shown delivered before a later
///   ingest was acknowledged.
pub fn check_drain(
    acked: &[String],
    arrivals: &[Arrival],
    kills: &[KillPoint],
) -> Result<Vec<usize>, String> {
    let resent = check_order(acked, arrivals)?;
    if let Some((i, before, after)) = skips(arrivals).first() {
        return Err(format!(
            "arrival {i}: p{after} right after p{before}: a resend skipped some"
        ));
    }
    if resent.len() > kills.len() {
        return Err(format!(
            "{} runs of resends (of {resent:?} events) for {} kills: resends not in one run after \
             each restart",
            resent.len(),
            kills.len()
        ));
    }
    for (k, kill) in kills.iter().enumerate() {
        let mut later = arrivals.iter().enumerate().skip(kill.arrived);
        if let Some((i, (n, _))) = later.find(|(_, (n, _))| *n < kill.recorded) {
            return Err(format!(
                "arrival {i}: p{n} was sent again after kill {k}, although the API had shown the \
                 first {} events delivered before an ingest was acknowledged",
                kill.recorded
            ));
        }
    }
    Ok(resent)
}
