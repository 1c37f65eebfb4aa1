//! The execution side of the engine: turning a started task into a `RunSpec` (prompt.md, argv
//! from the agent's template), recording the child, and recording its end — done with a
//! result, retry with backoff, error, timeout, cancel, or interruption — plus follow-up
//! tasks (`result.next_agent`) and cost events. Spawning and signalling live in `adapter`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::Engine;
use super::commands::error_block;
use crate::adapter::{self, Ending, Outcome, Placeholders, RunSpec};
use crate::clock;
use crate::event::Event;
use crate::lifecycle::{edit, fsops};
use crate::task::{self, Status};

/// A task whose `task_started` is durable and whose child the daemon must spawn.
#[derive(Debug, Clone)]
pub struct Launch {
    pub task_id: String,
    pub attempt: u32,
}

/// Everything the daemon needs to spawn and supervise one child.
pub struct Prepared {
    pub task_id: String,
    pub attempt: u32,
    pub spec: RunSpec,
    pub timeout: Option<Duration>,
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22), which
/// tells a live child from an unrelated process that reused its pid.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

/// Kill the process group of a child orphaned by a daemon crash, if it is still that child.
pub fn kill_orphan(pid: u32, recorded_start: Option<u64>) {
    let alive_start = process_start(pid);
    let same = match (recorded_start, alive_start) {
        (Some(rec), Some(now)) => rec == now,
        // No /proc (macOS): the pgid is still reserved while any member lives.
        (None, _) | (_, None) => cfg!(not(target_os = "linux")),
    };
    if same && adapter::kill_orphan_group(pid) {
        tracing::warn!(pid, "killed the process group of a child orphaned by a crash");
    }
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s, … up to 5 min, times 0.5–1.5.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(8)).min(Duration::from_secs(300));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    base.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

impl Engine {
    /// Build the child of a launch: write prompt.md, render the argv. Errors name what failed.
    pub fn prepare(&self, launch: &Launch) -> Result<Prepared, String> {
        let entry = self
            .state
            .tasks
            .get(launch.task_id.as_str())
            .ok_or("task vanished before its start")?;
        let agent = self
            .config
            .agent(&entry.agent)
            .ok_or("agent no longer configured")?;
        let template = agent.command.clone().ok_or("agent has no command")?;
        let task_file = self.layout.abs(&entry.path());
        let text = fsops::read_plain(&task_file)
            .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
            .map_err(|e| format!("cannot read {}: {e}", task_file.display()))?;
        let doc = super::intake::parse_mapping(&text)
            .map_err(|r| format!("{}: {}", task_file.display(), r.reason))?;
        let log_dir = self.layout.log_dir(&entry.id, launch.attempt);
        fsops::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let prompt = adapter::render_prompt(&doc);
        let prompt_file = log_dir.join("prompt.md");
        // A log, not state: it is rewritten on every attempt, so it needs no fsync.
        std::fs::write(&prompt_file, prompt.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", prompt_file.display()))?;
        let s = |p: &PathBuf| p.to_string_lossy().into_owned();
        let vars = Placeholders {
            task_id: entry.id.to_string(),
            task_file: s(&task_file),
            agent: entry.agent.to_string(),
            title: entry.title.to_string(),
            prompt,
            prompt_file: s(&prompt_file),
            log_dir: s(&log_dir),
            attempt: launch.attempt.to_string(),
            root: s(&self.layout.root),
        };
        let mut env = agent.env.clone();
        env.extend([
            ("AGENTPLANE_ROOT".to_string(), vars.root.clone()),
            ("AGENTPLANE_TASK_ID".to_string(), entry.id.to_string()),
            ("AGENTPLANE_TASK_FILE".to_string(), vars.task_file.clone()),
            ("AGENTPLANE_LOG_DIR".to_string(), vars.log_dir.clone()),
            ("AGENTPLANE_ATTEMPT".to_string(), vars.attempt.clone()),
        ]);
        let cwd = agent
            .cwd
            .as_ref()
            .map_or_else(|| self.layout.root.clone(), |c| self.layout.root.join(c));
        let timeout = entry.timeout_s().or(agent.timeout_s).map(Duration::from_secs);
        Ok(Prepared {
            task_id: entry.id.to_string(),
            attempt: launch.attempt,
            spec: RunSpec {
                argv: adapter::render_argv(&template, &vars),
                cwd,
                env,
                stdout: log_dir.join("stdout.log"),
                stderr: log_dir.join("stderr.log"),
            },
            timeout,
        })
    }

    /// Record a spawned child.
    pub fn child_started(&mut self, task_id: &str, attempt: u32, pid: u32) {
        let mut ev = Event::task("execution_start", task_id);
        ev.agent = self.state.tasks.get(task_id).map(|e| e.agent.to_string());
        ev.attempt = Some(attempt);
        ev.pid = Some(pid);
        ev.pid_start = process_start(pid);
        self.live_children
            .insert(task_id.to_string(), std::time::Instant::now());
        self.emit(ev);
    }

    fn log_paths(&self, task_id: &str, attempt: u32) -> Vec<String> {
        let dir = self.layout.log_dir(task_id, attempt);
        ["prompt.md", "stdout.log", "stderr.log", "result.yaml"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists())
            .map(|p| self.layout.rel(&p))
            .collect()
    }

    /// Record the end of a child (or a child that could not be spawned: `spawn_error`).
    pub fn child_finished(
        &mut self,
        task_id: &str,
        attempt: u32,
        outcome: Option<&Outcome>,
        spawn_error: Option<String>,
    ) {
        self.live_children.remove(task_id);
        let Some(entry) = self.state.tasks.get(task_id).cloned() else {
            return;
        };
        let mut done = Event::task("execution_complete", task_id);
        done.agent = Some(entry.agent.to_string());
        done.attempt = Some(attempt);
        done.exit_code = outcome.and_then(|o| o.exit_code);
        done.duration_ms = outcome.map(|o| o.duration.as_millis() as u64);
        done.log_paths = Some(self.log_paths(task_id, attempt));
        done.error = spawn_error.clone();
        self.emit(done);
        if entry.status != Status::InProgress {
            return;
        }
        let now = clock::rfc3339_seconds(SystemTime::now());
        let failure = match (outcome, &spawn_error) {
            (_, Some(err)) => Some((format!("could not start the agent: {err}"), None, false)),
            (Some(o), None) => match &o.ending {
                Ending::Stopped(adapter::StopReason::Shutdown) => {
                    self.interrupt(task_id, "the daemon was stopped while the task ran");
                    return;
                }
                Ending::Stopped(adapter::StopReason::Cancel) => {
                    let why = entry.cancel_requested().unwrap_or("cancelled").to_string();
                    let mut ev = Event::task("task_cancelled", task_id);
                    ev.attempt = Some(attempt);
                    ev.agent = Some(entry.agent.to_string());
                    self.transition(
                        &mut ev,
                        &entry,
                        Status::Error,
                        error_block(&format!("cancelled: {why}"), o.exit_code, attempt, &now),
                    );
                    self.emit(ev);
                    self.block_dependents(task_id);
                    return;
                }
                Ending::TimedOut => Some((
                    format!(
                        "timed out after {} s",
                        entry
                            .timeout_s()
                            .or_else(|| self.config.agent(&entry.agent).and_then(|a| a.timeout_s))
                            .unwrap_or(0)
                    ),
                    o.exit_code,
                    true,
                )),
                Ending::Exited if o.exit_code == Some(0) => None,
                Ending::Exited => Some(match (o.exit_code, o.signal) {
                    (Some(code), _) => (format!("the agent exited with code {code}"), Some(code), false),
                    (None, Some(sig)) => (format!("the agent was killed by signal {sig}"), None, false),
                    _ => ("the agent ended abnormally".to_string(), None, false),
                }),
            },
            (None, None) => Some(("the agent ended without a status".to_string(), None, false)),
        };
        match failure {
            None => self.complete(&entry, attempt, &now),
            Some((message, code, timed_out)) => {
                if timed_out {
                    let mut ev = Event::task("task_timed_out", task_id);
                    ev.attempt = Some(attempt);
                    ev.error = Some(message.clone());
                    self.emit(ev);
                }
                let max = entry
                    .max_attempts()
                    .or_else(|| self.config.agent(&entry.agent).map(|a| a.max_attempts))
                    .unwrap_or(1);
                if entry.failures_this_round() < max {
                    let wait = backoff(entry.failures_this_round());
                    let retry_at = clock::rfc3339_millis(SystemTime::now() + wait);
                    let mut edits = Map::new();
                    edits.insert("status".into(), json!("assigned"));
                    let mut ev = Event::task("task_retry_scheduled", task_id);
                    ev.attempt = Some(attempt);
                    ev.exit_code = code;
                    ev.error = Some(message);
                    ev.agent = Some(entry.agent.to_string());
                    self.transition(&mut ev, &entry, Status::Assigned, edits);
                    self.emit(ev.with_data("retry_at", json!(retry_at)));
                } else {
                    let mut ev = Event::task("task_failed", task_id);
                    ev.attempt = Some(attempt);
                    ev.exit_code = code;
                    ev.error = Some(message.clone());
                    ev.agent = Some(entry.agent.to_string());
                    let mut edits = error_block(&message, code, attempt, &now);
                    edits.insert("completed_at".into(), json!(now));
                    self.transition(&mut ev, &entry, Status::Error, edits);
                    self.emit(ev);
                    self.block_dependents(task_id);
                }
            }
        }
    }

    /// Exit 0: build `result` from result.yaml or stdout and move the task to done.
    fn complete(&mut self, entry: &super::state::Entry, attempt: u32, now: &str) {
        let dir = self.layout.log_dir(&entry.id, attempt);
        let mut result = Map::new();
        let mut note = None;
        match std::fs::read_to_string(dir.join("result.yaml")) {
            Ok(text) => match super::intake::parse_mapping(&text) {
                Ok(map) => result = map,
                Err(r) => note = Some(format!("result.yaml ignored: {}", r.reason)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => note = Some(format!("result.yaml unreadable: {e}")),
        }
        let report = adapter::read_stdout_report(&dir.join("stdout.log")).ok();
        let json_out = report.as_ref().and_then(|r| r.json.as_ref());
        if !result.contains_key("summary") {
            let summary = json_out
                .and_then(adapter::summary_from_json)
                .or_else(|| report.as_ref().and_then(|r| r.last_line.clone()));
            if let Some(s) = summary {
                result.insert("summary".into(), json!(s));
            }
        }
        if let Some(metrics) = json_out.and_then(adapter::metrics_from_json)
            && !result.contains_key("metrics")
        {
            result.insert("metrics".into(), metrics);
        }
        result.insert("completed_at".into(), json!(now));
        if let Some(n) = &note {
            tracing::warn!(task = %entry.id, "{n}");
        }
        let mut edits = Map::new();
        edits.insert("completed_at".into(), json!(now));
        edits.insert("result".into(), Value::Object(result.clone()));
        let mut ev = Event::task("task_completed", &entry.id);
        ev.attempt = Some(attempt);
        ev.agent = Some(entry.agent.to_string());
        ev.summary = result.get("summary").and_then(Value::as_str).map(str::to_string);
        self.transition(&mut ev, entry, Status::Done, edits);
        self.emit(ev);
        if let Some(metrics) = result.get("metrics").and_then(Value::as_object) {
            let mut cost = Event::task("cost_update", &entry.id);
            cost.agent = Some(entry.agent.to_string());
            cost.attempt = Some(attempt);
            cost.data = Some(metrics.clone());
            self.emit(cost);
        }
        self.handoff(&entry.id, Some(&Value::Object(result)));
    }

    /// A child did not finish because the daemon stopped or crashed: queue the task again,
    /// or fail it at the third interruption.
    pub(super) fn interrupt(&mut self, task_id: &str, why: &str) {
        let Some(entry) = self.state.tasks.get(task_id).cloned() else {
            return;
        };
        if entry.interruptions + 1 >= 3 {
            let message = format!("interrupted {} times; last: {why}", entry.interruptions + 1);
            let now = clock::rfc3339_seconds(SystemTime::now());
            let mut ev = Event::task("task_interrupted", task_id);
            ev.attempt = Some(entry.attempt);
            ev.error = Some(why.to_string());
            self.emit(ev);
            let entry = self.state.tasks[task_id].clone();
            let mut failed = Event::task("task_failed", task_id);
            failed.attempt = Some(entry.attempt);
            failed.error = Some(message.clone());
            failed.agent = Some(entry.agent.to_string());
            self.transition(
                &mut failed,
                &entry,
                Status::Error,
                error_block(&message, None, entry.attempt, &now),
            );
            self.emit(failed);
            self.block_dependents(task_id);
            return;
        }
        let mut edits = Map::new();
        edits.insert("status".into(), json!("assigned"));
        let mut ev = Event::task("task_interrupted", task_id);
        ev.attempt = Some(entry.attempt);
        ev.error = Some(why.to_string());
        ev.agent = Some(entry.agent.to_string());
        self.transition(&mut ev, &entry, Status::Assigned, edits);
        self.emit(ev);
    }

    /// `result.next_agent` → exactly one follow-up task in the inbox, once.
    pub(super) fn handoff(&mut self, parent: &str, result: Option<&Value>) {
        let Some(result) = result.and_then(Value::as_object) else {
            return;
        };
        let Some(next_agent) = result.get("next_agent").and_then(Value::as_str) else {
            return;
        };
        let Some(entry) = self.state.tasks.get(parent).cloned() else {
            return;
        };
        if entry.handoff_done || !task::valid_agent(next_agent) {
            return;
        }
        let mut id = format!("{parent}-to-{next_agent}");
        id.truncate(128);
        let dest = format!("work/collaboration/inbox/{id}.yaml");
        if self.state.tasks.contains_key(id.as_str()) || !task::valid_id(&id) {
            return;
        }
        let title = result
            .get("next_task_title")
            .and_then(Value::as_str)
            .map_or_else(|| format!("Follow-up of {parent}"), str::to_string);
        let mut doc = Map::new();
        doc.insert("id".into(), json!(id));
        doc.insert("agent".into(), json!(next_agent));
        doc.insert("title".into(), json!(title));
        doc.insert("status".into(), json!("new"));
        doc.insert("priority".into(), json!(entry.priority.as_str()));
        if let Some(a) = result
            .get("next_artefacts")
            .or_else(|| result.get("next_artifacts"))
        {
            doc.insert("artefacts".into(), a.clone());
        }
        if let Some(n) = result.get("next_task_notes") {
            doc.insert("description".into(), n.clone());
        }
        doc.insert(
            "context".into(),
            json!({"previous_task": parent, "previous_agent": entry.agent}),
        );
        doc.insert("created_by".into(), json!("agentplane"));
        let content: String = doc.iter().map(|(k, v)| edit::render_entry(k, v)).collect();
        let mut ev = Event::task("handoff_created", parent);
        ev.agent = Some(next_agent.to_string());
        ev.op = Some("create".into());
        ev.path = Some(dest);
        self.emit(
            ev.with_data("next_task", json!(id))
                .with_data("content", json!(content)),
        );
    }
}
