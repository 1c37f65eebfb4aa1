//! The projection: how one event line changes the index's rows. It mirrors the meaning of
//! `command::state::State::apply` (which events introduce a task, when status, path, agent,
//! problem and attempt change) without depending on the write side. Rows are read into a
//! cache on first touch, changed there, and written once per batch by `flush`, so the result
//! does not depend on how events are cut into batches: a rebuild equals the incremental index.

use std::collections::HashMap;
use std::hash::Hash;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::read::{
    ATTEMPT_COLS, AttemptRow, PROBLEM_COLS, ProblemRow, RUN_COLS, RunRow, TASK_COLS, TaskRow,
    attempt_from_row, problem_from_row, run_from_row, task_from_row,
};
use crate::event::Event;
use crate::task::{Priority, Status};

/// A cached row: `None` = no such row (or deleted).
struct Slot<T> {
    row: Option<T>,
    dirty: bool,
}

/// Row caches of one batch (or of a whole rebuild).
pub(super) struct Projector {
    /// The database had no rows when this projector started: a row not in the cache does not
    /// exist (a rebuild never has to look).
    empty: bool,
    tasks: HashMap<String, Slot<TaskRow>>,
    attempts: HashMap<(String, u32), Slot<AttemptRow>>,
    runs: HashMap<String, Slot<RunRow>>,
    problems: HashMap<String, Slot<ProblemRow>>,
    last_seq: u64,
}

fn slot<'a, K: Eq + Hash + Clone, T>(
    map: &'a mut HashMap<K, Slot<T>>,
    key: &K,
    empty: bool,
    load: impl FnOnce() -> rusqlite::Result<Option<T>>,
) -> rusqlite::Result<&'a mut Slot<T>> {
    if !map.contains_key(key) {
        let row = if empty { None } else { load()? };
        map.insert(key.clone(), Slot { row, dirty: false });
    }
    Ok(map.get_mut(key).expect("just inserted"))
}

fn priority_rank(p: &str) -> i64 {
    Priority::ALL
        .iter()
        .position(|q| q.as_str() == p)
        .unwrap_or(Priority::ALL.len()) as i64
}

fn data_u64(ev: &Event, key: &str) -> Option<u64> {
    ev.data.as_ref()?.get(key)?.as_u64()
}

/// What ends an attempt, as its outcome.
fn outcome_of(event: &str) -> Option<&'static str> {
    Some(match event {
        "task_completed" => "done",
        "task_timed_out" => "timed_out",
        "task_cancelled" => "cancelled",
        "task_interrupted" => "interrupted",
        "task_retry_scheduled" | "task_failed" => "failed",
        _ => return None,
    })
}

impl Projector {
    pub(super) fn new(empty: bool, last_seq: u64) -> Projector {
        Projector {
            empty,
            tasks: HashMap::new(),
            attempts: HashMap::new(),
            runs: HashMap::new(),
            problems: HashMap::new(),
            last_seq,
        }
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Apply one event (with its line as logged).
    pub(super) fn apply(&mut self, conn: &Connection, ev: &Event, line: &str) -> rusqlite::Result<()> {
        self.last_seq = ev.seq;
        conn.prepare_cached("INSERT INTO events (seq, task_id, line) VALUES (?1, ?2, ?3)")?
            .execute(params![ev.seq, ev.task_id, line])?;
        if let Some(run_id) = &ev.run_id {
            self.run(conn, ev, run_id)?;
        }
        self.problem(conn, ev)?;
        if ev.event == "cost_update" {
            cost(conn, ev)?;
        }
        self.task(conn, ev)
    }

    fn run(&mut self, conn: &Connection, ev: &Event, run_id: &str) -> rusqlite::Result<()> {
        let key = run_id.to_string();
        let s = slot(&mut self.runs, &key, self.empty, || {
            conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE run_id = ?1"))?
                .query_row([run_id], run_from_row)
                .optional()
        })?;
        let row = s.row.get_or_insert_with(|| RunRow {
            run_id: key.clone(),
            first_seq: ev.seq,
            last_seq: ev.seq,
            started_at: ev.ts.clone(),
            updated_at: ev.ts.clone(),
            events: 0,
        });
        row.last_seq = ev.seq;
        row.updated_at.clone_from(&ev.ts);
        row.events += 1;
        s.dirty = true;
        if let Some(task) = &ev.task_id {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO run_tasks (run_id, task_id, first_seq) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![run_id, task, ev.seq])?;
        }
        Ok(())
    }

    /// `problem_detected` records a problem for a file; a later event about a task at that
    /// file (adopted, edited, moved, deleted) supersedes it.
    fn problem(&mut self, conn: &Connection, ev: &Event) -> rusqlite::Result<()> {
        let load = |path: &str| {
            conn.prepare_cached(&format!("SELECT {PROBLEM_COLS} FROM problems WHERE path = ?1"))?
                .query_row([path], problem_from_row)
                .optional()
        };
        if ev.event == "problem_detected" {
            let Some(path) = &ev.path else { return Ok(()) };
            let s = slot(&mut self.problems, path, self.empty, || load(path))?;
            s.row = Some(ProblemRow {
                path: path.clone(),
                task_id: ev.task_id.clone(),
                kind: ev.data_str("kind").unwrap_or("problem").to_string(),
                message: ev.error.clone().unwrap_or_default(),
                seq: ev.seq,
                ts: ev.ts.clone(),
            });
            s.dirty = true;
            return Ok(());
        }
        let about_file = ev.op.is_some()
            || matches!(
                ev.event.as_str(),
                "task_discovered" | "task_edited" | "task_deleted"
            );
        if ev.task_id.is_none()
            || !about_file
            || matches!(ev.event.as_str(), "task_rejected" | "command_rejected")
        {
            return Ok(());
        }
        for path in [&ev.src, &ev.path].into_iter().flatten() {
            let s = slot(&mut self.problems, path, self.empty, || load(path))?;
            if s.row.is_some() {
                s.row = None;
                s.dirty = true;
            }
        }
        Ok(())
    }

    fn task(&mut self, conn: &Connection, ev: &Event) -> rusqlite::Result<()> {
        let Some(id) = ev.task_id.as_deref() else {
            return Ok(());
        };
        if matches!(
            ev.event.as_str(),
            "task_rejected" | "command_rejected" | "handoff_created"
        ) {
            return Ok(());
        }
        let key = id.to_string();
        let s = slot(&mut self.tasks, &key, self.empty, || {
            conn.prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))?
                .query_row([id], task_from_row)
                .optional()
        })?;
        if ev.event == "task_deleted" {
            if s.row.take().is_some() {
                s.dirty = true;
            }
            return Ok(());
        }
        let meta = ev.data.as_ref().and_then(|d| d.get("task"));
        if s.row.is_none() {
            // Only events that describe a task file can introduce a task.
            let (Some(path), Some(meta)) = (ev.path.as_ref(), meta) else {
                return Ok(());
            };
            let status = ev
                .to
                .as_deref()
                .and_then(Status::parse)
                .unwrap_or(Status::Assigned);
            s.row = Some(TaskRow {
                id: key.clone(),
                title: String::new(),
                agent: meta["agent"].as_str().unwrap_or_default().to_string(),
                status: status.as_str().to_string(),
                priority: Priority::Normal.as_str().to_string(),
                path: path.clone(),
                updated_at: ev.ts.clone(),
                attempt: 0,
                depends_on: Vec::new(),
                approval_required: false,
                approved: false,
                problem: None,
                problem_message: None,
                summary: None,
                error: None,
                created_seq: ev.seq,
                created_at: ev.ts.clone(),
                updated_seq: ev.seq,
            });
        }
        s.dirty = true;
        let row = s.row.as_mut().expect("present");
        row.updated_at.clone_from(&ev.ts);
        row.updated_seq = ev.seq;
        if let Some(meta) = meta {
            apply_meta(row, meta);
        }
        if let Some(problem) = ev.data.as_ref().and_then(|d| d.get("problem")) {
            row.problem = problem.as_str().map(str::to_string);
            row.problem_message.clone_from(&ev.error);
        } else if ev.to.is_some() || ev.op.is_some() {
            row.problem = None;
            row.problem_message = None;
        }
        if let Some(to) = ev.to.as_deref().and_then(Status::parse) {
            row.status = to.as_str().to_string();
        }
        if let Some(path) = &ev.path
            && matches!(ev.op.as_deref(), Some("move" | "create"))
        {
            row.path.clone_from(path);
        }
        if let Some(agent) = ev.agent.as_ref().filter(|_| ev.event == "task_reassigned") {
            row.agent.clone_from(agent);
        }
        match ev.event.as_str() {
            "task_completed" => {
                row.summary.clone_from(&ev.summary);
                row.error = None;
            }
            "task_failed"
            | "task_cancelled"
            | "task_retry_scheduled"
            | "task_timed_out"
            | "task_blocked"
            | "task_interrupted"
                if ev.error.is_some() =>
            {
                row.error.clone_from(&ev.error);
            }
            "task_retried" => row.error = None,
            "task_approved" => row.approved = true,
            "task_started" => row.attempt = ev.attempt.unwrap_or(row.attempt + 1),
            _ => {}
        }
        let current = row.attempt;
        self.attempt(conn, ev, id, current)
    }

    /// The attempts table: started by `task_started`, filled by `execution_start` and
    /// `execution_complete`, closed by the event that decides the attempt's outcome.
    fn attempt(&mut self, conn: &Connection, ev: &Event, id: &str, current: u32) -> rusqlite::Result<()> {
        let outcome = outcome_of(&ev.event);
        if !matches!(
            ev.event.as_str(),
            "task_started" | "execution_start" | "execution_complete"
        ) && outcome.is_none()
        {
            return Ok(());
        }
        let n = ev.attempt.unwrap_or(current);
        if n == 0 {
            return Ok(());
        }
        let key = (id.to_string(), n);
        let s = slot(&mut self.attempts, &key, self.empty, || {
            conn.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = ?1 AND attempt = ?2"
            ))?
            .query_row(params![id, n], attempt_from_row)
            .optional()
        })?;
        if ev.event == "task_started" {
            s.row = Some(AttemptRow {
                task_id: id.to_string(),
                attempt: n,
                started_seq: ev.seq,
                started_at: ev.ts.clone(),
                pid: None,
                ended_at: None,
                exit_code: None,
                duration_ms: None,
                outcome: "running".into(),
                error: None,
                log_dir: format!("work/logs/{id}/{n}"),
                log_paths: Vec::new(),
            });
            s.dirty = true;
            return Ok(());
        }
        let Some(row) = s.row.as_mut() else {
            return Ok(());
        };
        match ev.event.as_str() {
            "execution_start" => row.pid = ev.pid,
            "execution_complete" => {
                row.ended_at = Some(ev.ts.clone());
                row.exit_code = ev.exit_code;
                row.duration_ms = ev.duration_ms;
                row.log_paths = ev.log_paths.clone().unwrap_or_default();
                if ev.error.is_some() {
                    row.error.clone_from(&ev.error);
                }
            }
            _ => {
                if row.outcome != "running" {
                    return Ok(());
                }
                row.outcome = outcome.expect("checked above").to_string();
                if row.ended_at.is_none() {
                    row.ended_at = Some(ev.ts.clone());
                }
                if row.error.is_none() {
                    row.error.clone_from(&ev.error);
                }
            }
        }
        s.dirty = true;
        Ok(())
    }

    /// Write every changed row, and `last_seq`.
    pub(super) fn flush(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut tasks: Vec<(&String, &mut Slot<TaskRow>)> =
            self.tasks.iter_mut().filter(|(_, s)| s.dirty).collect();
        tasks.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, s) in tasks {
            s.dirty = false;
            match &s.row {
                Some(t) => {
                    conn.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO tasks ({TASK_COLS}, priority_rank) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
                    ))?
                    .execute(params![
                        t.id,
                        t.title,
                        t.agent,
                        t.status,
                        t.priority,
                        t.path,
                        t.updated_at,
                        t.attempt,
                        serde_json::to_string(&t.depends_on).expect("strings serialize"),
                        t.approval_required,
                        t.approved,
                        t.problem,
                        t.problem_message,
                        t.summary,
                        t.error,
                        t.created_seq,
                        t.created_at,
                        t.updated_seq,
                        priority_rank(&t.priority),
                    ])?;
                }
                None => {
                    conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
                        .execute([id])?;
                }
            }
        }
        let mut attempts: Vec<(&(String, u32), &mut Slot<AttemptRow>)> =
            self.attempts.iter_mut().filter(|(_, s)| s.dirty).collect();
        attempts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for ((id, n), s) in attempts {
            s.dirty = false;
            match &s.row {
                Some(a) => {
                    conn.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO attempts ({ATTEMPT_COLS}) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                    ))?
                    .execute(params![
                        a.task_id,
                        a.attempt,
                        a.started_seq,
                        a.started_at,
                        a.pid,
                        a.ended_at,
                        a.exit_code,
                        a.duration_ms,
                        a.outcome,
                        a.error,
                        a.log_dir,
                        serde_json::to_string(&a.log_paths).expect("strings serialize"),
                    ])?;
                }
                None => {
                    conn.prepare_cached("DELETE FROM attempts WHERE task_id = ?1 AND attempt = ?2")?
                        .execute(params![id, n])?;
                }
            }
        }
        for s in self.runs.values_mut().filter(|s| s.dirty) {
            s.dirty = false;
            if let Some(r) = &s.row {
                conn.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO runs ({RUN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ))?
                .execute(params![
                    r.run_id,
                    r.first_seq,
                    r.last_seq,
                    r.started_at,
                    r.updated_at,
                    r.events
                ])?;
            }
        }
        for (path, s) in self.problems.iter_mut().filter(|(_, s)| s.dirty) {
            s.dirty = false;
            match &s.row {
                Some(p) => {
                    conn.prepare_cached(&format!(
                        "INSERT OR REPLACE INTO problems ({PROBLEM_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                    ))?
                    .execute(params![p.path, p.task_id, p.kind, p.message, p.seq, p.ts])?;
                }
                None => {
                    conn.prepare_cached("DELETE FROM problems WHERE path = ?1")?
                        .execute([path])?;
                }
            }
        }
        conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'last_seq'")?
            .execute([self.last_seq.to_string()])?;
        if !self.empty {
            // Incremental batches keep no rows between transactions.
            self.tasks.clear();
            self.attempts.clear();
            self.runs.clear();
            self.problems.clear();
        }
        Ok(())
    }
}

fn apply_meta(row: &mut TaskRow, meta: &Value) {
    if let Some(t) = meta["title"].as_str() {
        row.title = t.to_string();
    }
    if let Some(a) = meta["agent"].as_str() {
        row.agent = a.to_string();
    }
    if let Some(p) = meta["priority"].as_str().and_then(Priority::parse) {
        row.priority = p.as_str().to_string();
    }
    if let Some(deps) = meta["depends_on"].as_array() {
        row.depends_on = deps
            .iter()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
    }
    if let Some(b) = meta["approval_required"].as_bool() {
        row.approval_required = b;
    }
}

/// One `cost_update` event as a costs row: the metrics of an agent's JSON result.
fn cost(conn: &Connection, ev: &Event) -> rusqlite::Result<()> {
    let data = ev.data.as_ref();
    let model = data.and_then(|d| d.get("model")).and_then(Value::as_str);
    let cost_usd = data.and_then(|d| d.get("cost_usd")).and_then(Value::as_f64);
    conn.prepare_cached(
        "INSERT INTO costs (seq, ts, day, task_id, agent, model, attempt, cost_usd, input_tokens, output_tokens,
         cache_creation_input_tokens, cache_read_input_tokens, num_turns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        ev.seq,
        ev.ts,
        ev.ts.get(..10).unwrap_or_default(),
        ev.task_id,
        ev.agent,
        model,
        ev.attempt,
        cost_usd,
        data_u64(ev, "input_tokens"),
        data_u64(ev, "output_tokens"),
        data_u64(ev, "cache_creation_input_tokens"),
        data_u64(ev, "cache_read_input_tokens"),
        data_u64(ev, "num_turns"),
    ])?;
    Ok(())
}
