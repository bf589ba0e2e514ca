//! The redb store's reads behind the operations API: deliveries listed newest first with
//! filters, in pages of bounded work, and one event with its body and its deliveries.

use linq_hooks_delivery::{DeliveryId, HookId};
use linq_hooks_transport::Bytes;
use redb::{ReadableTable, StorageError};

use super::Store;
use super::records::*;
use crate::records::millis;
use crate::{
    DeliveryFilter, DeliveryInfo, DeliveryPage, DeliveryState, EventInfo, SCAN_PER_PAGE, StoreError,
};

/// The one field of a hook definition a workflow filter needs.
#[derive(serde::Deserialize)]
struct Owner {
    workflow: String,
}

impl super::wire::JsonRecord for Owner {}

type Ids<'a> = Box<dyn Iterator<Item = Result<u64, StorageError>> + 'a>;

/// Several id streams, each newest first, merged newest first.
struct Merged<'a> {
    sources: Vec<(Option<u64>, Ids<'a>)>,
}

impl<'a> Merged<'a> {
    fn new(sources: Vec<Ids<'a>>) -> Result<Merged<'a>, StorageError> {
        let mut merged = Merged {
            sources: Vec::with_capacity(sources.len()),
        };
        for mut ids in sources {
            let head = ids.next().transpose()?;
            merged.sources.push((head, ids));
        }
        Ok(merged)
    }

    fn peek(&self) -> Option<u64> {
        self.sources.iter().filter_map(|(head, _)| *head).max()
    }

    fn next(&mut self) -> Result<Option<u64>, StorageError> {
        let Some((head, ids)) = self
            .sources
            .iter_mut()
            .filter(|(head, _)| head.is_some())
            .max_by_key(|(head, _)| *head)
        else {
            return Ok(None);
        };
        let id = *head;
        *head = ids.next().transpose()?;
        Ok(id)
    }
}

/// The view of a delivery record, with its last attempt's status read from the attempts table
/// for a record older than format 4, which does not keep it.
pub(crate) fn info_of(
    attempts: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: DeliveryId,
    record: &DeliveryRecord,
) -> Result<DeliveryInfo, ReadError> {
    let mut info = DeliveryInfo::new(id, record);
    if !record.last_known()
        && let Some(value) = attempts.get((id, record.attempts))?
    {
        info.last_status = decode::<AttemptRecord>(value.value())?.status;
    }
    Ok(info)
}

impl Store {
    /// Deliveries newest first (highest id first), narrowed by `filter`, one page of at most
    /// `filter.limit`.
    ///
    /// Each call does bounded work whatever the store holds: it walks the narrowest index the
    /// filter allows (by hook and state for `hook` or `workflow`, with each hook's queue for
    /// its pending deliveries; by state for `state`; else
    /// the deliveries themselves) and examines at most [`SCAN_PER_PAGE`] entries; the time
    /// and status filters are checked on the records. A page cut short by that bound has
    /// fewer deliveries than asked (even none) and a `next_before`.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("outbox-doc-query-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let _ = std::fs::remove_file(dir.join("q.redb"));
    /// use linq_hooks_outbox::{DeliveryFilter, Store};
    /// let store = Store::open(dir.join("q.redb"))?;
    /// let mut filter = DeliveryFilter::default();
    /// filter.workflow = Some("lab-a".into());
    /// let page = store.deliveries(&filter)?;
    /// assert!(page.deliveries.is_empty() && page.next_before.is_none());
    /// # Ok::<(), linq_hooks_outbox::StoreError>(())
    /// ```
    pub fn deliveries(&self, filter: &DeliveryFilter) -> Result<DeliveryPage, StoreError> {
        let empty = DeliveryPage {
            deliveries: Vec::new(),
            next_before: None,
        };
        let upper = match filter.before {
            Some(0) => return Ok(empty),
            Some(before) => before - 1,
            None => u64::MAX,
        };
        let since = filter.since.map(millis);
        let until = filter.until.map(millis);
        self.read("list deliveries", |txn| {
            let hooks: Option<Vec<HookId>> = match (&filter.workflow, filter.hook) {
                (None, None) => None,
                (workflow, hook) => {
                    let defs = txn.open_table(HOOK_DEFS)?;
                    let mut hooks = Vec::new();
                    match hook {
                        Some(hook) => {
                            let belongs = match (workflow, defs.get(hook)?) {
                                (_, None) => false,
                                (None, Some(_)) => true,
                                (Some(workflow), Some(def)) => {
                                    decode::<Owner>(def.value())?.workflow == *workflow
                                }
                            };
                            if belongs {
                                hooks.push(hook);
                            }
                        }
                        None => {
                            let workflow = workflow.as_deref().unwrap_or_default();
                            for entry in defs.iter()? {
                                let (id, def) = entry?;
                                if decode::<Owner>(def.value())?.workflow == workflow {
                                    hooks.push(id.value());
                                }
                            }
                        }
                    }
                    Some(hooks)
                }
            };
            let by_hook_state = txn.open_table(BY_HOOK_STATE)?;
            let queues = txn.open_table(PENDING)?;
            let by_state = txn.open_table(BY_STATE)?;
            let deliveries = txn.open_table(DELIVERIES)?;
            let attempts = txn.open_table(ATTEMPTS)?;
            let states: Vec<u8> = match filter.state {
                Some(state) => vec![state.code()],
                None => DeliveryState::ALL.iter().map(|s| s.code()).collect(),
            };
            let mut sources: Vec<Ids<'_>> = Vec::new();
            match &hooks {
                Some(hooks) => {
                    for &hook in hooks {
                        for &state in &states {
                            // A hook's pending deliveries are its queue (format 5).
                            if state == DeliveryState::Pending.code() {
                                let range = queues
                                    .range((hook, 0)..=(hook, upper))?
                                    .rev()
                                    .map(|entry| entry.map(|(key, _)| key.value().1));
                                sources.push(Box::new(range));
                                continue;
                            }
                            let range = by_hook_state
                                .range((hook, state, 0)..=(hook, state, upper))?
                                .rev()
                                .map(|entry| entry.map(|(key, _)| key.value().2));
                            sources.push(Box::new(range));
                        }
                    }
                }
                None => match filter.state {
                    Some(state) => {
                        let range = by_state
                            .range((state.code(), 0)..=(state.code(), upper))?
                            .rev()
                            .map(|entry| entry.map(|(key, _)| key.value().1));
                        sources.push(Box::new(range));
                    }
                    None => {
                        let range = deliveries
                            .range(0..=upper)?
                            .rev()
                            .map(|entry| entry.map(|(key, _)| key.value()));
                        sources.push(Box::new(range));
                    }
                },
            }
            let mut merged = Merged::new(sources)?;
            let mut out = Vec::new();
            let mut examined = 0;
            let mut next_before = None;
            while out.len() < filter.limit {
                if examined == SCAN_PER_PAGE {
                    next_before = merged.peek().map(|id| id + 1);
                    break;
                }
                let Some(id) = merged.next()? else {
                    break;
                };
                examined += 1;
                let Some(value) = deliveries.get(id)? else {
                    continue;
                };
                let record: DeliveryRecord = decode(value.value()).map_err(|e| match e {
                    ReadError::Corrupt(why) => ReadError::Corrupt(format!("delivery {id}: {why}")),
                    other => other,
                })?;
                if since.is_some_and(|since| record.created_ms < since)
                    || until.is_some_and(|until| record.created_ms >= until)
                    || filter.state.is_some_and(|state| record.state != state)
                {
                    continue;
                }
                let info = info_of(&attempts, id, &record)?;
                if filter
                    .status
                    .is_some_and(|class| !class.matches(info.last_status))
                {
                    continue;
                }
                out.push(info);
            }
            if out.len() == filter.limit && merged.peek().is_some() {
                next_before = out.last().map(|d| d.id);
            }
            Ok(DeliveryPage {
                deliveries: out,
                next_before,
            })
        })
    }

    /// Event `id`: its body and its deliveries; `None` if there is no such event (or every
    /// delivery of it was pruned, and its body with them).
    pub fn event(&self, id: u64) -> Result<Option<EventInfo>, StoreError> {
        self.read("read an event", |txn| {
            let ids: Vec<u64> = txn
                .open_table(EVENT_DELIVERIES)?
                .range((id, 0)..=(id, u64::MAX))?
                .map(|entry| entry.map(|(key, _)| key.value().1))
                .collect::<Result<_, _>>()?;
            let body = match txn.open_table(EVENT_BODIES)?.get(id)? {
                Some(value) => unseal(value.value()).ok().map(Bytes::copy_from_slice),
                None => None,
            };
            if ids.is_empty() && body.is_none() {
                return Ok(None);
            }
            let deliveries_table = txn.open_table(DELIVERIES)?;
            let attempts = txn.open_table(ATTEMPTS)?;
            let mut deliveries = Vec::with_capacity(ids.len());
            for delivery in ids {
                if let Some(value) = deliveries_table.get(delivery)? {
                    let record: DeliveryRecord = decode(value.value())?;
                    deliveries.push(info_of(&attempts, delivery, &record)?);
                }
            }
            let Some(first) = deliveries.first() else {
                // A body without deliveries is not kept: an event is shown by its deliveries.
                return Ok(None);
            };
            let (received_at, hook) = (first.created_at, first.hook);
            let workflow = match txn.open_table(HOOK_DEFS)?.get(hook)? {
                Some(def) => Some(decode::<Owner>(def.value())?.workflow),
                None => None,
            };
            Ok(Some(EventInfo {
                id,
                received_at,
                workflow,
                body,
                deliveries,
            }))
        })
    }
}
