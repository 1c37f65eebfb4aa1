//! Governance and the Direct distributor: which assigned tasks may start now (agent has a
//! command, dependencies done, approval given, backoff over, not frozen or inconsistent), in
//! which order (priority, then age), within `max_concurrent` overall and per agent. A task
//! whose dependency failed is blocked with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, json};

use super::Engine;
use super::queue::Step;
use super::state::Entry;
use crate::clock;
use crate::event::Event;
use crate::task::Status;

/// Why an assigned task is not started, or `None` if it may start.
fn gate(engine: &Engine, e: &Entry, now: SystemTime) -> Option<Gate> {
    if e.status != Status::Assigned || e.problem().is_some() || e.in_fridge() || e.in_archive() {
        return Some(Gate::NotQueued);
    }
    if e.running().is_some() || engine.live_children.contains_key(&*e.id) {
        return Some(Gate::NotQueued);
    }
    if engine
        .config
        .agent(&e.agent)
        .and_then(|a| a.command.as_ref())
        .is_none()
    {
        return Some(Gate::NotQueued);
    }
    for dep in e.depends_on() {
        match engine.state.tasks.get(dep.as_str()).map(|d| d.status) {
            Some(Status::Done) => {}
            Some(Status::Error) => return Some(Gate::DependencyFailed(dep.clone())),
            _ => return Some(Gate::Waiting),
        }
    }
    if e.approval_required && !e.approved {
        return Some(Gate::Waiting);
    }
    if e.retry_at().is_some_and(|t| t > now) {
        return Some(Gate::Waiting);
    }
    None
}

enum Gate {
    NotQueued,
    Waiting,
    DependencyFailed(String),
}

impl Engine {
    /// Start as many queued tasks as the limits allow: each start is a `task_started` event
    /// (file to `in_progress`) and a launch the daemon spawns after the commit.
    pub fn dispatch(&mut self) {
        if self.draining {
            return;
        }
        let now = SystemTime::now();
        let mut per_agent: HashMap<Arc<str>, usize> = HashMap::new();
        // Started ones count whether their child runs yet or is still to be spawned.
        let started = self
            .live_children
            .keys()
            .chain(self.launches.iter().map(|l| &l.task_id));
        for id in started {
            if let Some(e) = self.state.tasks.get(id.as_str()) {
                *per_agent.entry(Arc::clone(&e.agent)).or_default() += 1;
            }
        }
        let mut total = self.live_children.len() + self.launches.len();
        // A task whose dependency failed is blocked wherever it is in the queue.
        let mut to_block: Vec<(String, String)> = self
            .state
            .queue
            .with_dependencies()
            .filter_map(|id| self.state.tasks.get(id))
            .filter_map(|e| match gate(self, e, now) {
                Some(Gate::DependencyFailed(dep)) => Some((e.id.to_string(), dep)),
                _ => None,
            })
            .collect();
        to_block.sort();
        for (id, dep) in to_block {
            self.block(&id, &dep);
        }
        // Starts in queue order (priority, then age) until every slot is taken; an agent
        // without a command, or at its own limit, is passed over whole.
        let mut starts = Vec::new();
        let max = self.config.max_concurrent;
        self.state.queue.walk(|agent, id| {
            if total >= max {
                return Step::Stop;
            }
            let Some(config) = self.config.agent(agent).filter(|a| a.command.is_some()) else {
                return Step::SkipAgent;
            };
            let used = per_agent.entry(Arc::clone(agent)).or_default();
            if *used >= config.max_concurrent.unwrap_or(usize::MAX) {
                return Step::SkipAgent;
            }
            if let Some(entry) = self.state.tasks.get(id)
                && gate(self, entry, now).is_none()
            {
                *used += 1;
                total += 1;
                starts.push(Arc::clone(id));
            }
            Step::Next
        });
        for id in starts {
            self.start(&id);
        }
    }

    /// The earliest pending retry of a task that would run then, for the daemon's timer.
    pub fn next_retry(&self) -> Option<SystemTime> {
        self.state
            .queue
            .retrying()
            .filter_map(|id| self.state.tasks.get(id))
            .filter(|e| e.running().is_none() && e.problem().is_none())
            .filter(|e| self.config.agent(&e.agent).is_some_and(|a| a.command.is_some()))
            .filter_map(|e| e.retry_at())
            .min()
    }

    fn start(&mut self, id: &str) {
        let entry = self.state.tasks[id].clone();
        let attempt = entry.attempt + 1;
        let mut edits = Map::new();
        edits.insert("status".into(), json!("in_progress"));
        edits.insert(
            "started_at".into(),
            json!(clock::rfc3339_seconds(SystemTime::now())),
        );
        let mut ev = Event::task("task_started", id);
        ev.agent = Some(entry.agent.to_string());
        ev.attempt = Some(attempt);
        self.transition(&mut ev, &entry, Status::InProgress, edits);
        self.emit(ev);
        self.launches.push(super::run::Launch {
            task_id: id.to_string(),
            attempt,
        });
    }

    /// Block a waiting task because a task it depends on failed.
    fn block(&mut self, id: &str, dep: &str) {
        let entry = self.state.tasks[id].clone();
        if entry.status != Status::Assigned {
            return;
        }
        let reason = format!("dependency `{dep}` ended in error");
        let mut edits = Map::new();
        edits.insert("blocked_reason".into(), json!(reason));
        let mut ev = Event::task("task_blocked", id);
        ev.agent = Some(entry.agent.to_string());
        ev.error = Some(reason);
        self.transition(&mut ev, &entry, Status::Blocked, edits);
        self.emit(ev.with_data("dependency", json!(dep)));
    }

    /// After `id` failed: block every assigned task that waits for it.
    pub(super) fn block_dependents(&mut self, id: &str) {
        for dependent in self.state.dependents(id) {
            self.block(&dependent, id);
        }
    }

    /// After `id` was retried: tasks the daemon blocked for it wait normally again.
    pub(super) fn unblock_dependents(&mut self, id: &str) {
        for dependent in self.state.dependents(id) {
            let entry = self.state.tasks[dependent.as_str()].clone();
            if entry.status != Status::Blocked || !entry.blocked_by_dependency {
                continue;
            }
            let mut edits = Map::new();
            edits.insert("blocked_reason".into(), serde_json::Value::Null);
            edits.insert(
                "assigned_at".into(),
                json!(clock::rfc3339_seconds(SystemTime::now())),
            );
            let mut ev = Event::task("task_unblocked", &dependent);
            ev.agent = Some(entry.agent.to_string());
            self.transition(&mut ev, &entry, Status::Assigned, edits);
            self.emit(ev.with_data("dependency", json!(id)));
        }
    }
}
