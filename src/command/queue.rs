//! The dispatch queue: each agent's assigned tasks in the order the dispatcher starts them
//! (priority, then age), and the two small sets it checks every round (tasks with
//! dependencies, tasks waiting out a retry's backoff). `State::apply` keeps it up to date from
//! each entry, so a round walks the queues from their heads until the slots are taken, and
//! passes over an agent that cannot start anything (no command, or at its limit) at once,
//! instead of looking at every assigned task (which made draining a drop of n tasks cost
//! O(n²)). Ids only: nothing here touches files, the journal or the entries themselves.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
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
    /// The agent's queue and the place in it.
    queued: Option<(Arc<str>, Queued)>,
    has_dependencies: bool,
    retrying: bool,
}

impl Listing {
    pub(super) fn of(e: &Entry) -> Listing {
        if e.status != Status::Assigned {
            return Listing::default();
        }
        Listing {
            queued: Some((
                Arc::clone(&e.agent),
                Queued {
                    priority: e.priority,
                    order: e.order,
                    id: Arc::clone(&e.id),
                },
            )),
            has_dependencies: !e.depends_on().is_empty(),
            retrying: e.retry_at().is_some(),
        }
    }
}

/// What the dispatcher makes of a queued task.
pub enum Step {
    Next,
    /// Pass over the rest of this agent's queue.
    SkipAgent,
    Stop,
}

#[derive(Debug, Default)]
pub struct Queue {
    by_agent: HashMap<Arc<str>, BTreeSet<Queued>>,
    with_dependencies: HashSet<Arc<str>>,
    retrying: HashSet<Arc<str>>,
}

impl Queue {
    /// Move a task from where `before` lists it to where `after` does.
    pub(super) fn relist(&mut self, before: Listing, after: Listing) {
        if before == after {
            return;
        }
        if let Some((agent, q)) = before.queued {
            self.with_dependencies.remove(&q.id);
            self.retrying.remove(&q.id);
            if let Some(queue) = self.by_agent.get_mut(&agent) {
                queue.remove(&q);
                if queue.is_empty() {
                    self.by_agent.remove(&agent);
                }
            }
        }
        if let Some((agent, q)) = after.queued {
            if after.has_dependencies {
                self.with_dependencies.insert(Arc::clone(&q.id));
            }
            if after.retrying {
                self.retrying.insert(Arc::clone(&q.id));
            }
            self.by_agent.entry(agent).or_default().insert(q);
        }
    }

    /// Hand `visit` every assigned task (its agent and id), highest priority first, then
    /// oldest first, across all agents, until it says stop; an agent it skips is not
    /// visited again in this walk.
    pub fn walk(&self, mut visit: impl FnMut(&Arc<str>, &Arc<str>) -> Step) {
        let mut lanes: Vec<(&Arc<str>, std::collections::btree_set::Iter<'_, Queued>)> =
            self.by_agent.iter().map(|(agent, q)| (agent, q.iter())).collect();
        let mut heads = BinaryHeap::new();
        for (i, (_, lane)) in lanes.iter_mut().enumerate() {
            if let Some(q) = lane.next() {
                heads.push(Reverse((q, i)));
            }
        }
        while let Some(Reverse((q, i))) = heads.pop() {
            match visit(lanes[i].0, &q.id) {
                Step::Stop => return,
                Step::SkipAgent => {}
                Step::Next => {
                    if let Some(next) = lanes[i].1.next() {
                        heads.push(Reverse((next, i)));
                    }
                }
            }
        }
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
