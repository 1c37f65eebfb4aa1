//! The projection: how one event line changes the index's rows. It mirrors the meaning of
//! `command::state::State::apply` (which events introduce a task, when status, path, agent,
//! problem and attempt change) without depending on the write side. Rows are read into a
//! cache on first touch, changed there, and written by `flush` (once per batch; every so many
//! events in a rebuild), so the result does not depend on how events are cut into batches: a
//! rebuild equals the incremental index. Touches only the index's tables (through the
//! statements it is given): never the log, task files or the write side's state.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use hashbrown::HashTable;
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use serde_json::Value;

use super::read::{
    ATTEMPT_COLS, AttemptRow, PROBLEM_COLS, ProblemRow, RUN_COLS, RunRow, TASK_COLS, TaskRow,
    attempt_from_row, problem_from_row, run_from_row, task_from_row,
};
use crate::event::Event;
use crate::store::logread::Located;
use crate::task::{Priority, Status};

/// A cached row: `None` = no such row (or deleted).
struct Slot<T> {
    row: Option<T>,
    dirty: bool,
}

/// FxHash (as in rustc): the row caches are keyed by ids from the log, and SipHash's
/// protection against crafted keys costs a rebuild more than it could ever save.
#[derive(Default, Clone, Copy)]
pub(super) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write(&[n]);
    }
    fn write_u32(&mut self, n: u32) {
        self.write(&n.to_le_bytes());
    }
    fn write_usize(&mut self, n: usize) {
        self.write(&n.to_le_bytes());
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A key's hash (equal for a key and its borrowed form).
fn key_hash<Q: Hash + ?Sized>(key: &Q) -> u64 {
    BuildHasherDefault::<FxHasher>::default().hash_one(key)
}

/// Every statement the projection runs, taken from the connection's cache for each
/// transaction (the daemon's batches are small: preparing them afresh cost more than
/// applying a batch of a few events).
pub(super) struct Stmts<'c> {
    insert_event: CachedStatement<'c>,
    insert_events: CachedStatement<'c>,
    insert_cost: CachedStatement<'c>,
    insert_run_task: CachedStatement<'c>,
    select_task: CachedStatement<'c>,
    select_attempt: CachedStatement<'c>,
    select_run: CachedStatement<'c>,
    select_problem: CachedStatement<'c>,
    upsert_task: CachedStatement<'c>,
    delete_task: CachedStatement<'c>,
    upsert_attempt: CachedStatement<'c>,
    upsert_run: CachedStatement<'c>,
    upsert_problem: CachedStatement<'c>,
    delete_problem: CachedStatement<'c>,
    update_last_seq: CachedStatement<'c>,
}

impl<'c> Stmts<'c> {
    pub(super) fn new(conn: &'c Connection) -> rusqlite::Result<Stmts<'c>> {
        Ok(Stmts {
            insert_event: conn.prepare_cached(&insert_events_sql(1))?,
            insert_events: conn.prepare_cached(&insert_events_sql(EVENTS_PER_INSERT))?,
            insert_cost: conn.prepare_cached(
                "INSERT INTO costs (seq, ts, day, task_id, agent, model, attempt, cost_usd, input_tokens,
                 output_tokens, cache_creation_input_tokens, cache_read_input_tokens, num_turns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?,
            insert_run_task: conn.prepare_cached(
                "INSERT OR IGNORE INTO run_tasks (run_id, task_id, first_seq) VALUES (?1, ?2, ?3)",
            )?,
            select_task: conn.prepare_cached(&format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1"))?,
            select_attempt: conn.prepare_cached(&format!(
                "SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = ?1 AND attempt = ?2"
            ))?,
            select_run: conn.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE run_id = ?1"))?,
            select_problem: conn
                .prepare_cached(&format!("SELECT {PROBLEM_COLS} FROM problems WHERE path = ?1"))?,
            upsert_task: conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO tasks ({TASK_COLS}, priority_rank) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
            ))?,
            delete_task: conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?,
            upsert_attempt: conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO attempts ({ATTEMPT_COLS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?,
            upsert_run: conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO runs ({RUN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?,
            upsert_problem: conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO problems ({PROBLEM_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?,
            delete_problem: conn.prepare_cached("DELETE FROM problems WHERE path = ?1")?,
            update_last_seq: conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'last_seq'")?,
        })
    }
}

/// Rows of the events table one statement inserts: a statement's fixed cost (bind, step,
/// reset) was over half of the cost of a six-column row.
const EVENTS_PER_INSERT: usize = 64;

fn insert_events_sql(rows: usize) -> String {
    format!(
        "INSERT INTO events (seq, task_id, event, offset, len, crc) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ")
    )
}

/// Insert the events table's rows of `events`, each located by its line in the log. The
/// events table locates each line (offset, length, checksum) rather than copying it: the log
/// is the truth, and the index stays a fraction of its size. Nothing in the projection reads
/// this table, so its rows may go in ahead of or after the other tables' changes.
fn insert_events<'e>(
    st: &mut Stmts,
    events: impl IntoIterator<Item = (&'e Event, &'e Located)>,
) -> rusqlite::Result<()> {
    let mut group = Vec::with_capacity(EVENTS_PER_INSERT);
    for row in events {
        group.push(row);
        if group.len() == EVENTS_PER_INSERT {
            bind_event_rows(&mut st.insert_events, &group)?;
            st.insert_events.raw_execute()?;
            group.clear();
        }
    }
    for row in group {
        bind_event_rows(&mut st.insert_event, &[row])?;
        st.insert_event.raw_execute()?;
    }
    Ok(())
}

fn bind_event_rows(stmt: &mut CachedStatement, rows: &[(&Event, &Located)]) -> rusqlite::Result<()> {
    for (i, (ev, at)) in rows.iter().enumerate() {
        let first = i * 6 + 1;
        stmt.raw_bind_parameter(first, ev.seq)?;
        stmt.raw_bind_parameter(first + 1, &ev.task_id)?;
        stmt.raw_bind_parameter(first + 2, &ev.event)?;
        stmt.raw_bind_parameter(first + 3, at.offset)?;
        stmt.raw_bind_parameter(first + 4, at.len)?;
        stmt.raw_bind_parameter(first + 5, at.crc)?;
    }
    Ok(())
}

/// Cached rows of one table, each with its key's hash: computed once per touch, it finds the
/// slot in one probe and, when the rows are written, is what `written` remembers. When the
/// projection started on an empty database, the hashes of the keys it has written are
/// remembered, so a key neither cached nor written needs no lookup. Hashes, not keys: a
/// rebuild writes hundreds of thousands of keys, and moving each into a set (and freeing the
/// set at the end) cost a tenth of it. Two keys sharing a hash only cost a lookup that finds
/// nothing; a hash is never forgotten for the same reason.
struct Cache<K, T> {
    rows: HashTable<Cached<K, T>>,
    written: Option<HashSet<u64, BuildHasherDefault<FxHasher>>>,
}

struct Cached<K, T> {
    hash: u64,
    key: K,
    slot: Slot<T>,
}

impl<K: Eq + Hash, T> Cache<K, T> {
    fn new(empty: bool) -> Cache<K, T> {
        Cache {
            rows: HashTable::new(),
            written: empty.then(HashSet::default),
        }
    }

    fn cached<Q: Eq + ?Sized>(&self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.rows.find(hash, |c| c.key.borrow() == key).is_some()
    }

    /// Could the database hold a row for a key of this hash?
    fn maybe_in_db(&self, hash: u64) -> bool {
        self.written.as_ref().is_none_or(|w| w.contains(&hash))
    }

    /// Could the database or the cache hold a row for `key`?
    fn may_exist<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        let hash = key_hash(key);
        self.cached(hash, key) || self.maybe_in_db(hash)
    }

    /// The slot of `key`, loaded on first use; the key is copied only then.
    fn get<Q: Hash + Eq + ToOwned<Owned = K> + ?Sized>(
        &mut self,
        key: &Q,
        load: impl FnOnce() -> rusqlite::Result<Option<T>>,
    ) -> rusqlite::Result<&mut Slot<T>>
    where
        K: Borrow<Q>,
    {
        self.get_by(key_hash(key), |k| k.borrow() == key, || key.to_owned(), load)
    }

    /// The slot of the key of this hash that `is_key` recognises, loaded on first use; the
    /// key is made (`make_key`) only then. For keys without a borrowed form (a task id and
    /// an attempt number), which would otherwise be built for every lookup.
    fn get_by(
        &mut self,
        hash: u64,
        is_key: impl Fn(&K) -> bool,
        make_key: impl FnOnce() -> K,
        load: impl FnOnce() -> rusqlite::Result<Option<T>>,
    ) -> rusqlite::Result<&mut Slot<T>> {
        if self.rows.find(hash, |c| is_key(&c.key)).is_none() {
            let row = if self.maybe_in_db(hash) { load()? } else { None };
            let slot = Slot { row, dirty: false };
            let cached = Cached {
                hash,
                key: make_key(),
                slot,
            };
            return Ok(&mut self.rows.insert_unique(hash, cached, |c| c.hash).into_mut().slot);
        }
        let found = self.rows.find_mut(hash, |c| is_key(&c.key));
        Ok(&mut found.expect("cached").slot)
    }

    /// The changed rows, in key order.
    fn dirty(&self) -> Vec<(&K, &Option<T>)>
    where
        K: Ord,
    {
        let mut out: Vec<(&K, &Option<T>)> = self
            .rows
            .iter()
            .filter(|c| c.slot.dirty)
            .map(|c| (&c.key, &c.slot.row))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Forget the cached rows (after they were written), remembering which exist.
    fn clear(&mut self) {
        if let Some(written) = &mut self.written {
            written.extend(self.rows.iter().filter(|c| c.slot.row.is_some()).map(|c| c.hash));
        }
        self.rows.clear();
    }
}

/// Row caches of one batch (or of a stretch of a rebuild).
pub(super) struct Projector {
    tasks: Cache<String, TaskRow>,
    attempts: Cache<(String, u32), AttemptRow>,
    runs: Cache<String, RunRow>,
    problems: Cache<String, ProblemRow>,
    last_seq: u64,
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
    /// `empty`: the database has no rows yet (a rebuild).
    pub(super) fn new(empty: bool, last_seq: u64) -> Projector {
        Projector {
            tasks: Cache::new(empty),
            attempts: Cache::new(empty),
            runs: Cache::new(empty),
            problems: Cache::new(empty),
            last_seq,
        }
    }

    /// For a batch on a database whose problems table is empty (as it nearly always is):
    /// moves then need no lookups to find problems they supersede.
    pub(super) fn without_problems(mut self) -> Projector {
        self.problems = Cache::new(true);
        self
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Apply events, each with where its line is in the log, in order: the events table's
    /// rows in groups (`insert_events`), every other table's changes one event at a time.
    pub(super) fn apply_all<'e>(
        &mut self,
        st: &mut Stmts,
        events: impl IntoIterator<Item = (&'e Event, &'e Located)> + Clone,
    ) -> rusqlite::Result<()> {
        insert_events(st, events.clone())?;
        events.into_iter().try_for_each(|(ev, _)| self.apply(st, ev))
    }

    /// Apply one event to every table but `events`.
    fn apply(&mut self, st: &mut Stmts, ev: &Event) -> rusqlite::Result<()> {
        self.last_seq = ev.seq;
        if let Some(run_id) = &ev.run_id {
            self.run(st, ev, run_id)?;
        }
        self.problem(st, ev)?;
        if ev.event == "cost_update" {
            cost(st, ev)?;
        }
        self.task(st, ev)
    }

    /// Rows held in the caches (a rebuild flushes when there are many).
    pub(super) fn cached(&self) -> usize {
        self.tasks.rows.len() + self.attempts.rows.len()
    }

    fn run(&mut self, st: &mut Stmts, ev: &Event, run_id: &str) -> rusqlite::Result<()> {
        let s = self.runs.get(run_id, || {
            st.select_run.query_row([run_id], run_from_row).optional()
        })?;
        let row = s.row.get_or_insert_with(|| RunRow {
            run_id: run_id.to_string(),
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
            st.insert_run_task.execute(params![run_id, task, ev.seq])?;
        }
        Ok(())
    }

    /// `problem_detected` records a problem for a file; a later event about a task at that
    /// file (adopted, edited, moved, deleted), or its rejection, supersedes it.
    fn problem(&mut self, st: &mut Stmts, ev: &Event) -> rusqlite::Result<()> {
        if ev.event == "problem_detected" {
            let Some(path) = &ev.path else { return Ok(()) };
            let s = self.problems.get(path, || {
                st.select_problem.query_row([path], problem_from_row).optional()
            })?;
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
        // A rejection takes its file away (a file in a task's way had a problem recorded);
        // an event about a task at a file speaks for that file and where it went.
        let superseded = if matches!(ev.event.as_str(), "task_rejected" | "command_rejected") {
            [&ev.src, &None]
        } else if ev.task_id.is_some() && about_file {
            [&ev.src, &ev.path]
        } else {
            return Ok(());
        };
        for path in superseded.into_iter().flatten() {
            if !self.problems.may_exist(path) {
                continue; // no such problem: nothing to supersede
            }
            let s = self.problems.get(path, || {
                st.select_problem.query_row([path], problem_from_row).optional()
            })?;
            if s.row.is_some() {
                s.row = None;
                s.dirty = true;
            }
        }
        Ok(())
    }

    fn task(&mut self, st: &mut Stmts, ev: &Event) -> rusqlite::Result<()> {
        let Some(id) = ev.task_id.as_deref() else {
            return Ok(());
        };
        if matches!(
            ev.event.as_str(),
            "task_rejected" | "command_rejected" | "handoff_created"
        ) {
            return Ok(());
        }
        let s = self
            .tasks
            .get(id, || st.select_task.query_row([id], task_from_row).optional())?;
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
                id: id.to_string(),
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
            set(&mut row.status, to.as_str());
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
        self.attempt(st, ev, id, current)
    }

    /// The attempts table: started by `task_started`, filled by `execution_start` and
    /// `execution_complete`, closed by the event that decides the attempt's outcome.
    fn attempt(&mut self, st: &mut Stmts, ev: &Event, id: &str, current: u32) -> rusqlite::Result<()> {
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
        let s = self.attempts.get_by(
            key_hash(&(id, n)),
            |(task, attempt)| task == id && *attempt == n,
            || (id.to_string(), n),
            || {
                st.select_attempt
                    .query_row(params![id, n], attempt_from_row)
                    .optional()
            },
        )?;
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
                set(&mut row.outcome, outcome.expect("checked above"));
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

    /// Write every changed row, and `last_seq`, then empty the caches (rows are read back
    /// from the database when touched again). Rows go out in key order, which keeps B-tree
    /// inserts sequential.
    pub(super) fn flush(&mut self, st: &mut Stmts) -> rusqlite::Result<()> {
        for (id, row) in self.tasks.dirty() {
            match row {
                Some(t) => {
                    st.upsert_task.execute(params![
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
                    st.delete_task.execute([id])?;
                }
            }
        }
        for (_, row) in self.attempts.dirty() {
            if let Some(a) = row {
                st.upsert_attempt.execute(params![
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
        }
        for (_, row) in self.runs.dirty() {
            if let Some(r) = row {
                st.upsert_run.execute(params![
                    r.run_id,
                    r.first_seq,
                    r.last_seq,
                    r.started_at,
                    r.updated_at,
                    r.events
                ])?;
            }
        }
        for (path, row) in self.problems.dirty() {
            match row {
                Some(p) => {
                    st.upsert_problem
                        .execute(params![p.path, p.task_id, p.kind, p.message, p.seq, p.ts])?;
                }
                None => {
                    st.delete_problem.execute([path])?;
                }
            }
        }
        st.update_last_seq.execute([self.last_seq.to_string()])?;
        self.tasks.clear();
        self.attempts.clear();
        self.runs.clear();
        self.problems.clear();
        Ok(())
    }
}

/// Overwrite a row's text in the memory it already has (most events change a few fields of
/// a cached row, and a rebuild applies a million of them).
fn set(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

fn apply_meta(row: &mut TaskRow, meta: &Value) {
    if let Some(t) = meta["title"].as_str() {
        set(&mut row.title, t);
    }
    if let Some(a) = meta["agent"].as_str() {
        set(&mut row.agent, a);
    }
    if let Some(p) = meta["priority"].as_str().and_then(Priority::parse) {
        set(&mut row.priority, p.as_str());
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
fn cost(st: &mut Stmts, ev: &Event) -> rusqlite::Result<()> {
    let data = ev.data.as_ref();
    let model = data.and_then(|d| d.get("model")).and_then(Value::as_str);
    let cost_usd = data.and_then(|d| d.get("cost_usd")).and_then(Value::as_f64);
    st.insert_cost.execute(params![
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
