//! Attempt outcomes written behind the sends.
//!
//! [`Store::record`](crate::Store) hands an outcome to the writer and returns at once, so that
//! a hook's next delivery does not wait for a commit; many outcomes then share one commit. What
//! was handed over is kept here, per hook, until its commit is known: the hook's next
//! [`head`](linq_hooks_delivery::Outbox::head) (and [`flush`](linq_hooks_delivery::Outbox::flush))
//! waits for it, and an outcome whose commit failed is handed over again, never forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use linq_hooks_delivery::{Attempt, Delivery, HookId, Outcome};
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::StoreError;

/// The most outcomes handed to the writer and not yet committed, over all hooks: recording
/// waits beyond it, so a writer that falls behind slows the sends instead of piling them up.
pub(crate) const MAX_BEHIND: usize = 4096;

/// An outcome to record: the delivery as it was attempted, the attempt, what became of it.
pub(crate) type Outcomes = Box<(Delivery, Attempt, Outcome)>;

/// The outcomes handed to the writer whose commit is not yet known, per hook, oldest first.
pub(crate) struct Behind {
    hooks: Mutex<HashMap<HookId, VecDeque<Waiting>>>,
    /// One permit per outcome the writer has not answered yet (see [`MAX_BEHIND`]).
    room: Arc<Semaphore>,
}

/// One outcome handed over.
pub(crate) struct Waiting {
    /// A copy, to hand over again if its commit fails.
    outcomes: Outcomes,
    answer: oneshot::Receiver<Result<(), StoreError>>,
    /// The answer, once taken.
    done: Option<Result<(), StoreError>>,
}

impl Waiting {
    pub(crate) fn new(
        outcomes: Outcomes,
        answer: oneshot::Receiver<Result<(), StoreError>>,
    ) -> Waiting {
        Waiting {
            outcomes,
            answer,
            done: None,
        }
    }

    /// Its answer, if the writer has given it.
    fn answered(&mut self) -> Option<&Result<(), StoreError>> {
        if self.done.is_none() {
            self.done = match self.answer.try_recv() {
                Ok(result) => Some(result),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Closed) => Some(Err(StoreError::closed())),
            };
        }
        self.done.as_ref()
    }

    /// Waits for its answer.
    async fn answer(mut self) -> (Outcomes, Result<(), StoreError>) {
        let result = match self.done.take() {
            Some(result) => result,
            None => (&mut self.answer)
                .await
                .unwrap_or_else(|_| Err(StoreError::closed())),
        };
        (self.outcomes, result)
    }
}

/// Lets go of the outcomes at the front of `queue` that are committed; whether the first one
/// left was refused.
fn prune(queue: &mut VecDeque<Waiting>) -> bool {
    while let Some(front) = queue.front_mut() {
        match front.answered() {
            Some(Ok(())) => {
                queue.pop_front();
            }
            Some(Err(_)) => return true,
            None => return false,
        }
    }
    false
}

impl Behind {
    pub(crate) fn new() -> Behind {
        Behind {
            hooks: Mutex::default(),
            room: Arc::new(Semaphore::new(MAX_BEHIND)),
        }
    }

    /// Room for one more outcome in the writer's queue; waits while [`MAX_BEHIND`] are there.
    pub(crate) async fn room(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.room)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Keeps `waiting` (an outcome of `hook` just handed over), and lets go of the hook's
    /// older outcomes already committed.
    pub(crate) fn push(&self, hook: HookId, waiting: Waiting) {
        let mut hooks = self.hooks.lock().expect("not poisoned");
        let queue = hooks.entry(hook).or_default();
        let _ = prune(queue);
        queue.push_back(waiting);
    }

    /// Whether an outcome of `hook` was refused by the writer (its commit failed) and waits to
    /// be handed over again: then the hook must not go on reading ahead, but ask for its head,
    /// which settles (and backs off while the store cannot write). Lets go of the outcomes
    /// already committed on the way.
    pub(crate) fn refused(&self, hook: HookId) -> bool {
        let mut hooks = self.hooks.lock().expect("not poisoned");
        let Some(queue) = hooks.get_mut(&hook) else {
            return false;
        };
        let refused = prune(queue);
        if queue.is_empty() {
            hooks.remove(&hook);
        }
        refused
    }

    /// Puts back, first in `hook`'s line, an outcome handed over again.
    pub(crate) fn push_front(&self, hook: HookId, waiting: Waiting) {
        let mut hooks = self.hooks.lock().expect("not poisoned");
        hooks.entry(hook).or_default().push_front(waiting);
    }

    /// Waits until every outcome of `hook` handed over so far is committed. The first that
    /// failed comes back with its error (the ones after it stay, to be waited for next time):
    /// the caller hands it over again.
    pub(crate) async fn settle(&self, hook: HookId) -> Result<(), (Outcomes, StoreError)> {
        loop {
            let next = {
                let mut hooks = self.hooks.lock().expect("not poisoned");
                let next = hooks.get_mut(&hook).and_then(VecDeque::pop_front);
                if next.is_none() {
                    hooks.remove(&hook);
                }
                next
            };
            let Some(waiting) = next else {
                return Ok(());
            };
            if let (outcomes, Err(e)) = waiting.answer().await {
                return Err((outcomes, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use linq_hooks_delivery::{Attempt, AttemptResult, Delivery, Outcome};
    use tokio::sync::oneshot;

    use super::{Behind, Outcomes, Waiting};
    use crate::StoreError;

    fn outcomes(id: u64) -> Outcomes {
        let delivery = Delivery {
            id,
            hook: 7,
            webhook_id: format!("msg_{id}"),
            body: "{}".into(),
            attempts: 0,
            next_attempt_at: None,
        };
        let attempt = Attempt::new(
            SystemTime::now(),
            Duration::ZERO,
            AttemptResult::Status(200),
        );
        Box::new((delivery, attempt, Outcome::Delivered))
    }

    /// An outcome answered `result` by the writer.
    fn answered(id: u64, result: Result<(), StoreError>) -> Waiting {
        let (reply, answer) = oneshot::channel();
        reply.send(result).unwrap();
        Waiting::new(outcomes(id), answer)
    }

    #[test]
    fn committed_outcomes_are_let_go_and_a_refused_one_stops_the_read_ahead() {
        let behind = Behind::new();
        behind.push(7, answered(1, Ok(())));
        behind.push(7, answered(2, Ok(())));
        assert!(!behind.refused(7));
        assert!(
            !behind.hooks.lock().unwrap().contains_key(&7),
            "nothing kept once committed"
        );

        behind.push(7, answered(3, Err(StoreError::closed())));
        for id in 4..100 {
            behind.push(7, answered(id, Ok(())));
        }
        assert!(behind.refused(7), "a refused outcome is first in line");
        assert!(!behind.refused(8), "another hook reads ahead");
    }

    #[tokio::test]
    async fn settling_hands_back_the_refused_outcome_and_keeps_the_rest() {
        let behind = Behind::new();
        behind.push(7, answered(1, Ok(())));
        behind.push(7, answered(2, Err(StoreError::closed())));
        behind.push(7, answered(3, Ok(())));
        let (refused, _) = behind.settle(7).await.expect_err("refused");
        assert_eq!(refused.0.id, 2);
        assert!(behind.settle(7).await.is_ok(), "the committed one after it");
    }
}
