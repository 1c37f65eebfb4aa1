//! Slow-timer duties: archiving terminal tasks older than `archive_after_days` into
//! `archive/YYYY-MM/`, and reporting `in_progress` tasks without activity for
//! `stall_after_s` (once per stall). Decides events; moves nothing itself.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::Engine;
use super::state::Entry;
use crate::clock;
use crate::event::Event;
use crate::task::Status;

/// Where an archived task goes: the month it reached its final state.
pub fn archive_path(entry: &Entry) -> String {
    let month = entry
        .updated_at
        .map_or_else(|| clock::year_month(SystemTime::now()), clock::year_month);
    format!("work/collaboration/archive/{month}/{}.yaml", entry.id)
}

impl Engine {
    pub fn housekeeping(&mut self, now: SystemTime) {
        self.archive_old(now);
        self.report_stalls(now);
    }

    fn archive_old(&mut self, now: SystemTime) {
        if self.config.archive_after_days == 0 {
            return;
        }
        let cutoff = now - Duration::from_secs(self.config.archive_after_days * 86_400);
        let old: Vec<Entry> = self
            .state
            .tasks
            .values()
            .filter(|e| e.status.is_terminal() && e.problem().is_none() && !e.in_fridge() && !e.in_archive())
            .filter(|e| e.updated_at.is_some_and(|t| t < cutoff))
            .cloned()
            .collect();
        for entry in old {
            let dest = archive_path(&entry);
            if self.layout.abs(&dest).exists() {
                continue;
            }
            let mut ev = Event::task("task_archived", &entry.id);
            ev.agent = Some(entry.agent.to_string());
            ev.op = Some("move".into());
            ev.src = Some(entry.path());
            (ev.src_ino, ev.src_crc) = self.identity(&entry.path());
            ev.path = Some(dest);
            self.emit(ev.with_data(
                "reason",
                json!(format!(
                    "older than archive_after_days ({})",
                    self.config.archive_after_days
                )),
            ));
        }
    }

    /// Last sign of life of an in-progress task: its task file, or its run's output.
    fn last_activity(&self, e: &Entry) -> Option<SystemTime> {
        let mut times = vec![e.updated_at];
        let mtime = |p: std::path::PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        times.push(mtime(self.layout.abs(&e.path())));
        if e.attempt > 0 {
            let dir = self.layout.log_dir(&e.id, e.attempt);
            times.push(mtime(dir.join("stdout.log")));
            times.push(mtime(dir.join("stderr.log")));
        }
        times.into_iter().flatten().max()
    }

    fn report_stalls(&mut self, now: SystemTime) {
        if self.config.stall_after_s == 0 {
            return;
        }
        let limit = Duration::from_secs(self.config.stall_after_s);
        let mut stalled = Vec::new();
        for e in self
            .state
            .tasks
            .values()
            .filter(|e| e.status == Status::InProgress)
        {
            let idle = self
                .last_activity(e)
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if idle >= limit {
                stalled.push((e.id.to_string(), e.path(), idle));
            } else {
                self.stalled.remove(&*e.id);
            }
        }
        for (id, path, idle) in stalled {
            if !self.stalled.insert(id.clone()) {
                continue;
            }
            let message = format!(
                "in_progress with no activity for {} s (stall_after_s is {}); check on the agent, or cancel the task",
                idle.as_secs(),
                self.config.stall_after_s
            );
            tracing::warn!(task = %id, "{message}");
            let mut ev = Event::task("problem_detected", &id);
            ev.path = Some(path);
            ev.error = Some(message);
            self.emit(ev.with_data("kind", json!("stalled")));
        }
    }
}
