//! Command files: `cancel`, `retry`, `approve`, `reassign`, `priority`, `freeze`, `thaw`,
//! `archive`. Each applied command is one event that carries the command, its effect (a file
//! operation when there is one) and the command file's identity, so a crash can neither lose
//! nor repeat it. A command that does not apply is rejected with a reason, like a bad task.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::Engine;
use super::intake::{InboxFile, Refusal};
use crate::clock;
use crate::event::Event;
use crate::layout::Layout;
use crate::task::{self, Priority, Status};

pub const COMMANDS: [&str; 8] = [
    "cancel", "retry", "approve", "reassign", "priority", "freeze", "thaw", "archive",
];

impl Engine {
    pub(super) fn apply_command_file(&mut self, file: &InboxFile, doc: Map<String, Value>) {
        match self.command_effect(&doc) {
            Ok(mut ev) => {
                ev.command = Some(doc);
                // The command file is removed after the effect; its identity lets recovery
                // finish that removal without applying the command twice.
                // The command file's identity lets recovery finish its removal without ever
                // removing a newer file of the same name.
                let ev = ev
                    .with_data("command_file", Value::String(file.rel.clone()))
                    .with_data("command_ino", json!(file.ino))
                    .with_data("command_crc", json!(file.crc));
                let ev = self.fill_source(ev);
                let retried = (ev.event == "task_retried").then(|| ev.task_id.clone()).flatten();
                self.emit(ev);
                if let Some(id) = retried {
                    self.unblock_dependents(&id);
                }
            }
            Err(refusal) => self.reject_as("command_rejected", file, refusal, Some(doc)),
        }
    }

    /// Moves that only relocate or edit the task file start from where the file is now.
    fn fill_source(&self, mut ev: Event) -> Event {
        if ev.op.as_deref() == Some("move")
            && ev.src.is_none()
            && let Some(entry) = ev.task_id.as_deref().and_then(|id| self.state.tasks.get(id))
        {
            (ev.src_ino, ev.src_crc) = self.identity(&entry.path());
            ev.src = Some(entry.path());
        }
        ev
    }

    /// Inode and content checksum of a task file, so recovery can tell it from a newer file.
    pub(super) fn identity(&self, rel: &str) -> (Option<u64>, Option<u32>) {
        let path = self.layout.abs(rel);
        let ino = crate::lifecycle::fsops::inode(&path);
        let crc = crate::lifecycle::fsops::read_plain(&path)
            .ok()
            .map(|b| crc32c::crc32c(&b));
        (ino, crc)
    }

    /// Decide what a command does, as the event that records it.
    fn command_effect(&mut self, doc: &Map<String, Value>) -> Result<Event, Refusal> {
        let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_string);
        let name = text("command").unwrap_or_default();
        if !COMMANDS.contains(&name.as_str()) {
            return Err(Refusal::new(
                format!(
                    "unknown command `{}`",
                    doc.get("command").map(|v| v.to_string()).unwrap_or_default()
                ),
                format!("use one of: {}", COMMANDS.join(", ")),
            ));
        }
        let id = text("task")
            .ok_or_else(|| Refusal::new("the command names no `task`", "add `task: <task id>`"))?;
        let reason = text("reason");
        let Some(entry) = self.state.tasks.get(id.as_str()).cloned() else {
            return Err(Refusal::new(
                format!("unknown task `{id}`"),
                "check the id with `agentplane list`",
            ));
        };
        let state_word = if entry.in_fridge() {
            "frozen".to_string()
        } else {
            entry.status.to_string()
        };
        let refuse = |why: String| {
            Err(Refusal::new(
                why,
                "check the task's state with `agentplane show ID`",
            ))
        };
        if entry.in_archive() {
            return refuse(format!("task `{id}` is archived"));
        }
        if entry.problem().is_some() {
            return refuse(format!(
                "task `{id}` has an inconsistent file ({}); fix the file first",
                entry.problem().unwrap_or_default()
            ));
        }
        let now = clock::rfc3339_seconds(SystemTime::now());
        let running = entry.running().is_some();
        let mut ev = Event::task("", &id);
        ev.agent = Some(entry.agent.to_string());
        match name.as_str() {
            "cancel" => {
                if running {
                    if entry.cancel_requested().is_some() {
                        return refuse(format!("task `{id}` is already being cancelled"));
                    }
                    ev.event = "cancel_requested".into();
                    ev.error = Some(reason.unwrap_or_else(|| "cancelled".into()));
                    self.stops.push(id);
                    return Ok(ev);
                }
                if entry.in_fridge() || !matches!(entry.status, Status::Assigned | Status::Blocked) {
                    return refuse(format!(
                        "task `{id}` is {state_word}; only assigned, blocked or running tasks can be cancelled"
                    ));
                }
                let message = format!("cancelled: {}", reason.as_deref().unwrap_or("by command"));
                ev.event = "task_cancelled".into();
                self.transition(
                    &mut ev,
                    &entry,
                    Status::Error,
                    error_block(&message, None, entry.attempt, &now),
                );
            }
            "retry" => {
                if entry.in_fridge() || !matches!(entry.status, Status::Error | Status::Blocked) {
                    return refuse(format!(
                        "task `{id}` is {state_word}; only error or blocked tasks can be retried"
                    ));
                }
                ev.event = "task_retried".into();
                let mut edits = Map::new();
                edits.insert("status".into(), json!("assigned"));
                edits.insert("error".into(), Value::Null);
                edits.insert("assigned_at".into(), json!(now));
                self.transition(&mut ev, &entry, Status::Assigned, edits);
            }
            "approve" => {
                if !entry.approval_required {
                    return refuse(format!("task `{id}` does not require approval"));
                }
                if entry.approved {
                    return refuse(format!("task `{id}` is already approved"));
                }
                if entry.status.is_terminal() {
                    return refuse(format!("task `{id}` is already {state_word}"));
                }
                ev.event = "task_approved".into();
            }
            "reassign" => {
                let agent = text("agent")
                    .ok_or_else(|| Refusal::new("reassign needs `agent`", "add `agent: <new agent>`"))?;
                if !task::valid_agent(&agent) {
                    return Err(Refusal::new(
                        format!("agent `{agent}` is not a valid agent name"),
                        "use a-z 0-9 . _ -",
                    ));
                }
                self.check_agent(&agent)?;
                if running || entry.status == Status::Done || entry.in_fridge() {
                    return refuse(format!(
                        "task `{id}` is {}; it cannot be reassigned",
                        if running { "running".into() } else { state_word }
                    ));
                }
                if *agent == *entry.agent {
                    return refuse(format!("task `{id}` is already assigned to `{agent}`"));
                }
                ev.event = "task_reassigned".into();
                ev.agent = Some(agent.clone());
                let mut edits = Map::new();
                edits.insert("agent".into(), Value::String(agent.clone()));
                ev.op = Some("move".into());
                ev.path = Some(Layout::task_path(entry.status, &agent, &id));
                ev.edits = Some(edits);
                if self.layout.abs(ev.path.as_deref().unwrap_or_default()).exists() {
                    return refuse(format!("{} already exists", ev.path.clone().unwrap_or_default()));
                }
            }
            "priority" => {
                let p = text("priority")
                    .and_then(|p| Priority::parse(&p))
                    .ok_or_else(|| {
                        Refusal::new(
                            "priority needs `priority: critical|high|medium|normal|low`",
                            "add a valid priority",
                        )
                    })?;
                if entry.status == Status::Done {
                    return refuse(format!("task `{id}` is done"));
                }
                ev.event = "task_priority_changed".into();
                let mut edits = Map::new();
                edits.insert("priority".into(), json!(p.as_str()));
                ev.op = Some("move".into());
                ev.path = Some(entry.path());
                ev.edits = Some(edits);
                let mut meta = json!({"priority": p.as_str()});
                meta["agent"] = json!(entry.agent);
                meta["depends_on"] = json!(entry.depends_on());
                meta["approval_required"] = json!(entry.approval_required);
                meta["title"] = json!(entry.title);
                meta["timeout_s"] = json!(entry.timeout_s());
                meta["max_attempts"] = json!(entry.max_attempts());
                return Ok(ev.with_data("task", meta));
            }
            "freeze" => {
                if running || entry.in_fridge() {
                    return refuse(format!(
                        "task `{id}` is {}; it cannot be frozen",
                        if running {
                            "running".to_string()
                        } else {
                            state_word
                        }
                    ));
                }
                ev.event = "task_frozen".into();
                ev.op = Some("move".into());
                ev.path = Some(format!("work/collaboration/fridge/{id}.yaml"));
            }
            "thaw" => {
                if !entry.in_fridge() {
                    return refuse(format!("task `{id}` is not frozen"));
                }
                ev.event = "task_thawed".into();
                ev.op = Some("move".into());
                ev.path = Some(Layout::task_path(entry.status, &entry.agent, &id));
            }
            "archive" => {
                if !entry.status.is_terminal() || entry.in_fridge() {
                    return refuse(format!(
                        "task `{id}` is {state_word}; only done or error tasks can be archived"
                    ));
                }
                ev.event = "task_archived".into();
                ev.op = Some("move".into());
                ev.path = Some(super::housekeeping::archive_path(&entry));
            }
            _ => unreachable!("checked against COMMANDS"),
        }
        if let Some(r) = reason {
            ev = ev.with_data("reason", Value::String(r));
        }
        Ok(ev)
    }

    /// Fill in a status transition of `entry`'s file: to the folder of `to`, with `edits`.
    /// When the file's last move is still in the uncommitted batch and goes to the same place
    /// (a task taken from the inbox and started in the same batch), the edits join that move
    /// and this event orders no operation of its own: one new version of the file, made
    /// durable once, instead of two in two commits. Events of a batch are durable together,
    /// so recovery redoes the joined move as a whole or finds it done.
    pub(super) fn transition(
        &mut self,
        ev: &mut Event,
        entry: &super::state::Entry,
        to: Status,
        edits: Map<String, Value>,
    ) {
        ev.from = Some(entry.status.as_str().into());
        ev.to = Some(to.as_str().into());
        let dest = if entry.in_fridge() {
            entry.path()
        } else {
            Layout::task_path(to, &entry.agent, &entry.id)
        };
        let mut edits = edits;
        edits.entry("status").or_insert_with(|| json!(to.as_str()));
        let pending = self
            .batch
            .iter_mut()
            .rev()
            .find(|p| p.op.is_some() && p.task_id.as_deref() == Some(&*entry.id))
            .filter(|p| p.op.as_deref() == Some("move") && p.path.as_deref() == Some(dest.as_str()));
        if let Some(pending) = pending {
            pending.edits.get_or_insert_default().extend(edits);
            return;
        }
        ev.op = Some("move".into());
        ev.src = Some(entry.path());
        (ev.src_ino, ev.src_crc) = self.identity(&entry.path());
        ev.path = Some(dest);
        ev.edits = Some(edits);
    }
}

/// The `error` block written into a failed task.
pub fn error_block(message: &str, exit_code: Option<i32>, attempt: u32, now: &str) -> Map<String, Value> {
    let mut err = Map::new();
    err.insert("message".into(), json!(message));
    err.insert("timestamp".into(), json!(now));
    if let Some(code) = exit_code {
        err.insert("exit_code".into(), json!(code));
    }
    err.insert("attempt".into(), json!(attempt));
    let mut edits = Map::new();
    edits.insert("status".into(), json!("error"));
    edits.insert("error".into(), Value::Object(err));
    edits
}
