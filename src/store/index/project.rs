//! The projection: how one event changes the index's rows. It mirrors the meaning of
//! `command::state::State::apply` (which events introduce a task, when status, path, agent,
//! problem and attempt change) without depending on the write side. Rows are read into a
//! cache on first touch (`Load`), changed there, and handed to an `Outbox` by `flush` (once
//! per batch; every so many events in a rebuild), so the result does not depend on how events
//! are cut into batches: a rebuild equals the incremental index. Reads events through
//! `EventView` and writes nothing itself: never SQLite, the log, task files or the write
//! side's state.

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use hashbrown::HashTable;

use super::read::{AttemptRow, ProblemRow, RunRow, TaskRow};
use super::tables::{CostRow, Load, Outbox};
use super::view::{EventView, TaskMeta};
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

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
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

/// Cached rows of one table, each with its key's hash: computed once per touch, it finds the
/// slot in one probe and, when the rows are written, is what `written` remembers. The rows
/// live in a `Vec` in the order they were first touched and the hash table holds their
/// positions: a rebuild keeps every task and attempt of the log, and a table of the rows
/// themselves copied each one as it went in and again at every growth (a twentieth of the
/// reading thread). When the projection started on an empty database, the hashes of the keys
/// it has written are remembered, so a key neither cached nor written needs no lookup.
/// Hashes, not keys: a rebuild writes hundreds of thousands of keys, and moving each into a
/// set (and freeing the set at the end) cost a tenth of it. Two keys sharing a hash only cost
/// a lookup that finds nothing; a hash is never forgotten for the same reason.
struct Cache<K, T> {
    positions: HashTable<u32>,
    rows: Vec<Cached<K, T>>,
    written: Option<HashSet<u64, BuildHasherDefault<FxHasher>>>,
    /// Positions of the rows handed out clean since the last flush (with repeats): where the
    /// changed ones are.
    touched: Vec<u32>,
}

struct Cached<K, T> {
    hash: u64,
    key: K,
    slot: Slot<T>,
}

impl<K: Eq + Hash, T> Cache<K, T> {
    fn new(empty: bool) -> Cache<K, T> {
        Cache {
            positions: HashTable::new(),
            rows: Vec::new(),
            written: empty.then(HashSet::default),
            touched: Vec::new(),
        }
    }

    /// The position of the row of the key of this hash that `is_key` recognises.
    fn position(&self, hash: u64, is_key: impl Fn(&K) -> bool) -> Option<u32> {
        let rows = &self.rows;
        self.positions
            .find(hash, |&at| {
                let c = &rows[at as usize];
                c.hash == hash && is_key(&c.key)
            })
            .copied()
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
        // A table with no rows anywhere (the problems table, nearly always): no hashing.
        if self.rows.is_empty() && self.written.as_ref().is_some_and(HashSet::is_empty) {
            return false;
        }
        let hash = key_hash(key);
        self.position(hash, |k| k.borrow() == key).is_some() || self.maybe_in_db(hash)
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
        let at = match self.position(hash, is_key) {
            Some(at) => {
                if !self.rows[at as usize].slot.dirty {
                    self.touched.push(at);
                }
                at
            }
            None => {
                let row = if self.maybe_in_db(hash) { load()? } else { None };
                let at = u32::try_from(self.rows.len()).expect("fewer than 2^32 rows cached");
                self.rows.push(Cached {
                    hash,
                    key: make_key(),
                    slot: Slot { row, dirty: false },
                });
                let rows = &self.rows;
                self.positions
                    .insert_unique(hash, at, |&at| rows[at as usize].hash);
                self.touched.push(at);
                at
            }
        };
        Ok(&mut self.rows[at as usize].slot)
    }

    /// Hand every changed row to `emit`, in key order (B-tree inserts stay sequential). With
    /// `keep` the rows stay cached, clean; else the cache is emptied, remembering which keys
    /// have rows. Only the rows touched since the last flush are looked at: a cache that keeps
    /// its rows holds every task of the log.
    fn flush(&mut self, keep: bool, mut emit: impl FnMut(&K, Option<&T>))
    where
        K: Ord,
    {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        let mut dirty: Vec<&Cached<K, T>> = touched
            .iter()
            .map(|&at| &self.rows[at as usize])
            .filter(|c| c.slot.dirty)
            .collect();
        // In the order they were first touched, which is often (ids that grow with time)
        // nearly key order already: the stable sort runs through such a list in one pass.
        dirty.sort_by(|a, b| a.key.cmp(&b.key));
        for c in dirty {
            emit(&c.key, c.slot.row.as_ref());
        }
        if keep {
            for &at in &touched {
                self.rows[at as usize].slot.dirty = false;
            }
        } else {
            if let Some(written) = &mut self.written {
                written.extend(self.rows.iter().filter(|c| c.slot.row.is_some()).map(|c| c.hash));
            }
            self.rows.clear();
            self.positions.clear();
        }
        touched.clear();
        self.touched = touched;
    }
}

/// Rows (or, for a projection that keeps every row, events) after which a long projection
/// writes what it changed.
const FLUSH_AT: usize = 100_000;

/// Row caches of one batch (or of a stretch of a rebuild).
pub(super) struct Projector {
    tasks: Cache<String, TaskRow>,
    attempts: Cache<(String, u32), AttemptRow>,
    runs: Cache<String, RunRow>,
    problems: Cache<String, ProblemRow>,
    last_seq: u64,
    /// Rows stay cached after they are written: the projection started on an empty database
    /// and never reads a row back (a rebuild, projecting on a thread without the connection).
    keep: bool,
    /// Events applied since the last flush.
    applied: usize,
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

fn owned(text: &Option<Cow<str>>) -> Option<String> {
    text.as_deref().map(str::to_string)
}

/// Overwrite an optional text in the memory it already has.
fn set_opt(field: &mut Option<String>, value: &Option<Cow<str>>) {
    match (field.as_mut(), value.as_deref()) {
        (Some(f), Some(v)) => set(f, v),
        (_, v) => *field = v.map(str::to_string),
    }
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
            keep: false,
            applied: 0,
        }
    }

    /// For a database with no rows yet, a projector that keeps every row it writes, so it
    /// never needs to read one back (`tables::NothingElse`). Memory grows with the tasks and
    /// attempts of the log (~2.5 KB a task with its attempts), as the daemon's own state does.
    pub(super) fn keeping() -> Projector {
        Projector {
            keep: true,
            ..Projector::new(true, 0)
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

    /// Apply one event, with where its line is in the log.
    pub(super) fn apply(
        &mut self,
        load: &mut impl Load,
        out: &mut Outbox,
        ev: &EventView,
        at: &Located,
    ) -> rusqlite::Result<()> {
        out.event(ev.seq, ev.task_id.as_deref(), &ev.event, *at);
        self.last_seq = ev.seq;
        self.applied += 1;
        if let Some(run_id) = &ev.run_id {
            self.run(load, out, ev, run_id)?;
        }
        self.problem(load, ev)?;
        if ev.event == "cost_update" {
            out.cost(&cost(ev));
        }
        self.task(load, ev)
    }

    /// `apply` within a long projection (a rebuild, a catch-up), flushing when it should;
    /// `true` when the outbox is due to be written: after a flush (a projector that reads
    /// rows back must not read one still in the outbox), or once it holds `chunk` events.
    pub(super) fn step(
        &mut self,
        load: &mut impl Load,
        out: &mut Outbox,
        ev: &EventView,
        at: &Located,
        chunk: usize,
    ) -> rusqlite::Result<bool> {
        self.apply(load, out, ev, at)?;
        let flush = self.should_flush();
        if flush {
            self.flush(out);
        }
        Ok(flush || out.events() >= chunk)
    }

    /// Has it changed enough rows (or, keeping every row, applied enough events) that a long
    /// projection should write them out now?
    fn should_flush(&self) -> bool {
        if self.keep {
            self.applied >= FLUSH_AT
        } else {
            self.tasks.rows.len() + self.attempts.rows.len() >= FLUSH_AT
        }
    }

    fn run(
        &mut self,
        load: &mut impl Load,
        out: &mut Outbox,
        ev: &EventView,
        run_id: &str,
    ) -> rusqlite::Result<()> {
        let s = self.runs.get(run_id, || load.run(run_id))?;
        let row = s.row.get_or_insert_with(|| RunRow {
            run_id: run_id.to_string(),
            first_seq: ev.seq,
            last_seq: ev.seq,
            started_at: ev.ts.to_string(),
            updated_at: ev.ts.to_string(),
            events: 0,
        });
        row.last_seq = ev.seq;
        set(&mut row.updated_at, &ev.ts);
        row.events += 1;
        s.dirty = true;
        if let Some(task) = &ev.task_id {
            out.run_task(run_id, task, ev.seq);
        }
        Ok(())
    }

    /// `problem_detected` records a problem for a file; a later event about a task at that
    /// file (adopted, edited, moved, deleted), or its rejection, supersedes it.
    fn problem(&mut self, load: &mut impl Load, ev: &EventView) -> rusqlite::Result<()> {
        if ev.event == "problem_detected" {
            let Some(path) = ev.path.as_deref() else {
                return Ok(());
            };
            let s = self.problems.get(path, || load.problem(path))?;
            s.row = Some(ProblemRow {
                path: path.to_string(),
                task_id: owned(&ev.task_id),
                kind: ev
                    .data
                    .kind
                    .as_ref()
                    .and_then(|k| k.as_str())
                    .unwrap_or("problem")
                    .to_string(),
                message: ev.error.as_deref().unwrap_or_default().to_string(),
                seq: ev.seq,
                ts: ev.ts.to_string(),
            });
            s.dirty = true;
            return Ok(());
        }
        let about_file =
            ev.op.is_some() || matches!(&*ev.event, "task_discovered" | "task_edited" | "task_deleted");
        // A rejection takes its file away (a file in a task's way had a problem recorded);
        // an event about a task at a file speaks for that file and where it went.
        let superseded = if matches!(&*ev.event, "task_rejected" | "command_rejected") {
            [&ev.src, &None]
        } else if ev.task_id.is_some() && about_file {
            [&ev.src, &ev.path]
        } else {
            return Ok(());
        };
        for path in superseded.into_iter().flatten() {
            if !self.problems.may_exist(&**path) {
                continue; // no such problem: nothing to supersede
            }
            let s = self.problems.get(&**path, || load.problem(path))?;
            if s.row.is_some() {
                s.row = None;
                s.dirty = true;
            }
        }
        Ok(())
    }

    fn task(&mut self, load: &mut impl Load, ev: &EventView) -> rusqlite::Result<()> {
        let Some(id) = ev.task_id.as_deref() else {
            return Ok(());
        };
        if matches!(
            &*ev.event,
            "task_rejected" | "command_rejected" | "handoff_created"
        ) {
            return Ok(());
        }
        let s = self.tasks.get(id, || load.task(id))?;
        if ev.event == "task_deleted" {
            if s.row.take().is_some() {
                s.dirty = true;
            }
            return Ok(());
        }
        let meta = ev.data.task.as_ref();
        if s.row.is_none() {
            // Only events that describe a task file can introduce a task.
            let (Some(path), Some(meta)) = (ev.path.as_deref(), meta) else {
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
                agent: meta
                    .agent
                    .as_ref()
                    .and_then(|a| a.as_str())
                    .unwrap_or_default()
                    .to_string(),
                status: status.as_str().to_string(),
                priority: Priority::Normal.as_str().to_string(),
                path: path.to_string(),
                updated_at: ev.ts.to_string(),
                attempt: 0,
                depends_on: Vec::new(),
                approval_required: false,
                approved: false,
                problem: None,
                problem_message: None,
                summary: None,
                error: None,
                created_seq: ev.seq,
                created_at: ev.ts.to_string(),
                updated_seq: ev.seq,
            });
        }
        s.dirty = true;
        let row = s.row.as_mut().expect("present");
        set(&mut row.updated_at, &ev.ts);
        row.updated_seq = ev.seq;
        if let Some(meta) = meta {
            apply_meta(row, meta);
        }
        if let Some(problem) = &ev.data.problem {
            row.problem = problem.as_str().map(str::to_string);
            set_opt(&mut row.problem_message, &ev.error);
        } else if ev.to.is_some() || ev.op.is_some() {
            row.problem = None;
            row.problem_message = None;
        }
        if let Some(to) = ev.to.as_deref().and_then(Status::parse) {
            set(&mut row.status, to.as_str());
        }
        if let Some(path) = ev.path.as_deref()
            && matches!(ev.op.as_deref(), Some("move" | "create"))
        {
            set(&mut row.path, path);
        }
        if let Some(agent) = ev.agent.as_deref().filter(|_| ev.event == "task_reassigned") {
            set(&mut row.agent, agent);
        }
        match &*ev.event {
            "task_completed" => {
                set_opt(&mut row.summary, &ev.summary);
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
                set_opt(&mut row.error, &ev.error);
            }
            "task_retried" => row.error = None,
            "task_approved" => row.approved = true,
            "task_started" => row.attempt = ev.attempt.unwrap_or(row.attempt + 1),
            _ => {}
        }
        let current = row.attempt;
        self.attempt(load, ev, id, current)
    }

    /// The attempts table: started by `task_started`, filled by `execution_start` and
    /// `execution_complete`, closed by the event that decides the attempt's outcome.
    fn attempt(
        &mut self,
        load: &mut impl Load,
        ev: &EventView,
        id: &str,
        current: u32,
    ) -> rusqlite::Result<()> {
        let outcome = outcome_of(&ev.event);
        if !matches!(
            &*ev.event,
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
            || load.attempt(id, n),
        )?;
        if ev.event == "task_started" {
            s.row = Some(AttemptRow {
                task_id: id.to_string(),
                attempt: n,
                started_seq: ev.seq,
                started_at: ev.ts.to_string(),
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
        match &*ev.event {
            "execution_start" => row.pid = ev.pid,
            "execution_complete" => {
                row.ended_at = Some(ev.ts.to_string());
                row.exit_code = ev.exit_code;
                row.duration_ms = ev.duration_ms;
                row.log_paths = ev
                    .log_paths
                    .as_ref()
                    .map(|paths| paths.iter().map(|p| p.to_string()).collect())
                    .unwrap_or_default();
                if ev.error.is_some() {
                    set_opt(&mut row.error, &ev.error);
                }
            }
            _ => {
                if row.outcome != "running" {
                    return Ok(());
                }
                set(&mut row.outcome, outcome.expect("checked above"));
                if row.ended_at.is_none() {
                    row.ended_at = Some(ev.ts.to_string());
                }
                if row.error.is_none() {
                    row.error = owned(&ev.error);
                }
            }
        }
        s.dirty = true;
        Ok(())
    }

    /// Hand every changed row, and `last_seq`, to `out`. Unless it keeps its rows, the caches
    /// are emptied (rows are read back from the database when touched again).
    pub(super) fn flush(&mut self, out: &mut Outbox) {
        let keep = self.keep;
        self.tasks.flush(keep, |id, row| match row {
            Some(t) => out.task(t),
            None => out.task_gone(id),
        });
        self.attempts.flush(keep, |_, row| {
            if let Some(a) = row {
                out.attempt(a);
            }
        });
        self.runs.flush(keep, |_, row| {
            if let Some(r) = row {
                out.run(r);
            }
        });
        self.problems.flush(keep, |path, row| match row {
            Some(p) => out.problem(p),
            None => out.problem_gone(path),
        });
        out.last_seq(self.last_seq);
        self.applied = 0;
    }
}

/// Overwrite a row's text in the memory it already has (most events change a few fields of
/// a cached row, and a rebuild applies a million of them).
fn set(field: &mut String, value: &str) {
    field.clear();
    field.push_str(value);
}

fn apply_meta(row: &mut TaskRow, meta: &TaskMeta) {
    if let Some(t) = meta.title.as_ref().and_then(|t| t.as_str()) {
        set(&mut row.title, t);
    }
    if let Some(a) = meta.agent.as_ref().and_then(|a| a.as_str()) {
        set(&mut row.agent, a);
    }
    if let Some(p) = meta
        .priority
        .as_ref()
        .and_then(|p| p.as_str())
        .and_then(Priority::parse)
    {
        set(&mut row.priority, p.as_str());
    }
    if let Some(deps) = meta.depends_on.as_ref().and_then(|d| d.as_strings()) {
        row.depends_on = deps.iter().map(|d| d.to_string()).collect();
    }
    if let Some(b) = meta.approval_required.as_ref().and_then(|b| b.as_bool()) {
        row.approval_required = b;
    }
}

/// The costs row of a `cost_update` event: the metrics of an agent's JSON result.
fn cost<'e>(ev: &'e EventView) -> CostRow<'e> {
    let d = &ev.data;
    let num = |v: &Option<super::view::Loose>| v.as_ref().and_then(|v| v.as_u64());
    CostRow {
        seq: ev.seq,
        ts: &ev.ts,
        task_id: ev.task_id.as_deref(),
        agent: ev.agent.as_deref(),
        model: d.model.as_ref().and_then(|m| m.as_str()),
        attempt: ev.attempt,
        cost_usd: d.cost_usd.as_ref().and_then(|c| c.as_f64()),
        input_tokens: num(&d.input_tokens),
        output_tokens: num(&d.output_tokens),
        cache_creation_input_tokens: num(&d.cache_creation_input_tokens),
        cache_read_input_tokens: num(&d.cache_read_input_tokens),
        num_turns: num(&d.num_turns),
    }
}
