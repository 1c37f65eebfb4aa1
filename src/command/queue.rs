//! The dispatch queue: the assigned tasks in the order the dispatcher starts them (priority,
//! then age), and the two small sets it checks every round (tasks with dependencies, tasks
//! waiting out a retry's backoff). `State::apply` keeps it up to date from each entry, so a
//! round walks the queue from its head until the slots are taken instead of looking at every
//! assigned task (which made draining a drop of n tasks cost O(n²)). Ids only: nothing here
//! touches files, the journal or the entries themselves.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::state::Entry;
use crate::task::{Priority, Status};

/// One assigned task, ordered as the dispatcher takes them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    priority: Priority,
    /// The seq of the event that first recorded the task: its age.
    order: u64,
    id: Arc<str>,
}

/// Where an entry belongs in the queue; the default is nowhere (not assigned, or gone).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Listing {
    queued: Option<Queued>,
    has_dependencies: bool,
    retrying: bool,
}

impl Listing {
    pub(super) fn of(e: &Entry) -> Listing {
        if e.status != Status::Assigned {
            return Listing::default();
        }
        Listing {
            queued: Some(Queued {
                priority: e.priority,
                order: e.order,
                id: Arc::clone(&e.id),
            }),
            has_dependencies: !e.depends_on().is_empty(),
            retrying: e.retry_at().is_some(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Queue {
    order: BTreeSet<Queued>,
    with_dependencies: HashSet<Arc<str>>,
    retrying: HashSet<Arc<str>>,
}

impl Queue {
    /// Move a task from where `before` lists it to where `after` does.
    pub(super) fn relist(&mut self, before: Listing, after: Listing) {
        if before == after {
            return;
        }
        if let Some(q) = before.queued {
            self.with_dependencies.remove(&q.id);
            self.retrying.remove(&q.id);
            self.order.remove(&q);
        }
        if let Some(q) = after.queued {
            if after.has_dependencies {
                self.with_dependencies.insert(Arc::clone(&q.id));
            }
            if after.retrying {
                self.retrying.insert(Arc::clone(&q.id));
            }
            self.order.insert(q);
        }
    }

    /// Every assigned task, highest priority first, then oldest first.
    pub fn in_order(&self) -> impl Iterator<Item = &Arc<str>> {
        self.order.iter().map(|q| &q.id)
    }

    /// Assigned tasks that depend on other tasks.
    pub fn with_dependencies(&self) -> impl Iterator<Item = &Arc<str>> {
        self.with_dependencies.iter()
    }

    /// Assigned tasks with a retry time (their backoff may not be over).
    pub fn retrying(&self) -> impl Iterator<Item = &Arc<str>> {
        self.retrying.iter()
    }
}
