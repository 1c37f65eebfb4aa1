//! Where the projection's rows come from and go: `Stmts`, every SQL statement the projection
//! runs; `Load`, how it reads back a row it does not hold; and `Outbox`, the rows it wrote,
//! held until `Outbox::write` runs them through the statements. The projection only ever
//! writes into an outbox, so the same rows reach SQLite whether the projection runs on the
//! thread that holds the connection (the daemon's batches, a catch-up) or on another one (a
//! rebuild, whose reading thread projects and hands its outboxes over). Knows the tables'
//! columns; nothing about events.

use rusqlite::{CachedStatement, Connection, OptionalExtension, params};

use super::read::{
    ATTEMPT_COLS, AttemptRow, PROBLEM_COLS, ProblemRow, RUN_COLS, RunRow, TASK_COLS, TaskRow,
    attempt_from_row, problem_from_row, run_from_row, task_from_row,
};
use crate::store::logread::Located;
use crate::task::Priority;

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
    upsert_tasks: CachedStatement<'c>,
    delete_task: CachedStatement<'c>,
    upsert_attempt: CachedStatement<'c>,
    upsert_attempts: CachedStatement<'c>,
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
            upsert_task: conn.prepare_cached(&upsert_tasks_sql(1))?,
            upsert_tasks: conn.prepare_cached(&upsert_tasks_sql(ROWS_PER_UPSERT))?,
            upsert_attempt: conn.prepare_cached(&upsert_attempts_sql(1))?,
            upsert_attempts: conn.prepare_cached(&upsert_attempts_sql(ROWS_PER_UPSERT))?,
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
            delete_task: conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?,
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

    /// The statement that writes one change of this kind.
    fn for_one(&mut self, kind: Kind) -> &mut CachedStatement<'c> {
        match kind {
            Kind::Cost => &mut self.insert_cost,
            Kind::RunTask => &mut self.insert_run_task,
            Kind::Task => &mut self.upsert_task,
            Kind::TaskGone => &mut self.delete_task,
            Kind::Attempt => &mut self.upsert_attempt,
            Kind::Run => &mut self.upsert_run,
            Kind::Problem => &mut self.upsert_problem,
            Kind::ProblemGone => &mut self.delete_problem,
            Kind::LastSeq => &mut self.update_last_seq,
        }
    }

    /// The statement that writes `ROWS_PER_UPSERT` changes of this kind at once, for the
    /// kinds a rebuild writes by the hundred thousand.
    fn for_rows(&mut self, kind: Kind) -> Option<&mut CachedStatement<'c>> {
        match kind {
            Kind::Task => Some(&mut self.upsert_tasks),
            Kind::Attempt => Some(&mut self.upsert_attempts),
            _ => None,
        }
    }
}

/// How the projection reads back a row it does not hold.
pub(super) trait Load {
    fn task(&mut self, id: &str) -> rusqlite::Result<Option<TaskRow>>;
    fn attempt(&mut self, task_id: &str, attempt: u32) -> rusqlite::Result<Option<AttemptRow>>;
    fn run(&mut self, run_id: &str) -> rusqlite::Result<Option<RunRow>>;
    fn problem(&mut self, path: &str) -> rusqlite::Result<Option<ProblemRow>>;
}

impl Load for Stmts<'_> {
    fn task(&mut self, id: &str) -> rusqlite::Result<Option<TaskRow>> {
        self.select_task.query_row([id], task_from_row).optional()
    }
    fn attempt(&mut self, task_id: &str, attempt: u32) -> rusqlite::Result<Option<AttemptRow>> {
        self.select_attempt
            .query_row(params![task_id, attempt], attempt_from_row)
            .optional()
    }
    fn run(&mut self, run_id: &str) -> rusqlite::Result<Option<RunRow>> {
        self.select_run.query_row([run_id], run_from_row).optional()
    }
    fn problem(&mut self, path: &str) -> rusqlite::Result<Option<ProblemRow>> {
        self.select_problem.query_row([path], problem_from_row).optional()
    }
}

/// The rows of a database the projection started on empty and of which it keeps every row it
/// wrote (a rebuild): a row it does not hold does not exist.
pub(super) struct NothingElse;

impl Load for NothingElse {
    fn task(&mut self, _: &str) -> rusqlite::Result<Option<TaskRow>> {
        Ok(None)
    }
    fn attempt(&mut self, _: &str, _: u32) -> rusqlite::Result<Option<AttemptRow>> {
        Ok(None)
    }
    fn run(&mut self, _: &str) -> rusqlite::Result<Option<RunRow>> {
        Ok(None)
    }
    fn problem(&mut self, _: &str) -> rusqlite::Result<Option<ProblemRow>> {
        Ok(None)
    }
}

/// A row of the events table: its text lives in the outbox's one buffer, so a rebuild makes
/// no allocation per event to hand its rows over.
struct EventRow {
    seq: u64,
    task_id: Option<(u32, u32)>,
    event: (u32, u32),
    at: Located,
}

/// A value bound to a statement; text lives in the outbox's buffer.
enum Param {
    Null,
    Int(i64),
    Real(f64),
    Text(u32, u32),
}

/// Which statement a change runs.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Cost,
    RunTask,
    Task,
    TaskGone,
    Attempt,
    Run,
    Problem,
    ProblemGone,
    LastSeq,
}

/// A change to a table other than `events`: a statement and where its parameters start (they
/// end where the next change's start).
struct Change {
    kind: Kind,
    first: usize,
}

/// Rows written by the projection and not yet in the database, held as the parameters of
/// the statements that will write them: a row is copied in without an allocation of its own
/// (a rebuild hands over copies of ~300,000 rows, and cloning them cost more than writing
/// them here).
#[derive(Default)]
pub(super) struct Outbox {
    text: String,
    events: Vec<EventRow>,
    changes: Vec<Change>,
    params: Vec<Param>,
}

impl Outbox {
    /// Rows of the events table held.
    pub(super) fn events(&self) -> usize {
        self.events.len()
    }

    /// Empty it, keeping its memory for the next rows.
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.events.clear();
        self.changes.clear();
        self.params.clear();
    }

    fn keep(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        (start, s.len() as u32)
    }

    fn text_at(&self, (start, len): (u32, u32)) -> &str {
        &self.text[start as usize..(start + len) as usize]
    }

    /// The events table's row of an event, located by its line in the log. The events
    /// table locates each line (offset, length, checksum) rather than copying it: the log is
    /// the truth, and the index stays a fraction of its size.
    pub(super) fn event(&mut self, seq: u64, task_id: Option<&str>, event: &str, at: Located) {
        let task_id = task_id.map(|t| self.keep(t));
        let event = self.keep(event);
        self.events.push(EventRow {
            seq,
            task_id,
            event,
            at,
        });
    }

    fn begin(&mut self, kind: Kind) -> &mut Self {
        self.changes.push(Change {
            kind,
            first: self.params.len(),
        });
        self
    }

    fn text(&mut self, s: &str) -> &mut Self {
        let (start, len) = self.keep(s);
        self.params.push(Param::Text(start, len));
        self
    }

    fn opt_text(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    fn null(&mut self) -> &mut Self {
        self.params.push(Param::Null);
        self
    }

    fn int(&mut self, n: impl Into<i64>) -> &mut Self {
        self.params.push(Param::Int(n.into()));
        self
    }

    /// A `u64` column (seqs, counts, durations), which SQLite stores as its signed integer.
    fn uint(&mut self, n: u64) -> &mut Self {
        self.int(n as i64)
    }

    fn opt_uint(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            Some(n) => self.uint(n),
            None => self.null(),
        }
    }

    fn opt_int(&mut self, n: Option<impl Into<i64>>) -> &mut Self {
        match n {
            Some(n) => self.int(n),
            None => self.null(),
        }
    }

    fn opt_real(&mut self, n: Option<f64>) -> &mut Self {
        self.params.push(n.map_or(Param::Null, Param::Real));
        self
    }

    /// A list column, as a JSON array.
    fn list(&mut self, items: &[String]) -> &mut Self {
        if items.is_empty() {
            return self.text("[]");
        }
        self.text(&serde_json::to_string(items).expect("strings serialize"))
    }

    /// In the order of the costs table's columns (`day` from `ts`).
    pub(super) fn cost(&mut self, c: &CostRow) {
        self.begin(Kind::Cost)
            .uint(c.seq)
            .text(c.ts)
            .text(c.ts.get(..10).unwrap_or_default())
            .opt_text(c.task_id)
            .opt_text(c.agent)
            .opt_text(c.model)
            .opt_int(c.attempt)
            .opt_real(c.cost_usd)
            .opt_uint(c.input_tokens)
            .opt_uint(c.output_tokens)
            .opt_uint(c.cache_creation_input_tokens)
            .opt_uint(c.cache_read_input_tokens)
            .opt_uint(c.num_turns);
    }

    pub(super) fn run_task(&mut self, run_id: &str, task_id: &str, seq: u64) {
        self.begin(Kind::RunTask).text(run_id).text(task_id).uint(seq);
    }

    /// In the order of `TASK_COLS`, then `priority_rank`.
    pub(super) fn task(&mut self, t: &TaskRow) {
        self.begin(Kind::Task)
            .text(&t.id)
            .text(&t.title)
            .text(&t.agent)
            .text(&t.status)
            .text(&t.priority)
            .text(&t.path)
            .text(&t.updated_at)
            .int(t.attempt)
            .list(&t.depends_on)
            .int(t.approval_required)
            .int(t.approved)
            .opt_text(t.problem.as_deref())
            .opt_text(t.problem_message.as_deref())
            .opt_text(t.summary.as_deref())
            .opt_text(t.error.as_deref())
            .uint(t.created_seq)
            .text(&t.created_at)
            .uint(t.updated_seq)
            .int(priority_rank(&t.priority));
    }

    pub(super) fn task_gone(&mut self, id: &str) {
        self.begin(Kind::TaskGone).text(id);
    }

    /// In the order of `ATTEMPT_COLS`.
    pub(super) fn attempt(&mut self, a: &AttemptRow) {
        self.begin(Kind::Attempt)
            .text(&a.task_id)
            .int(a.attempt)
            .uint(a.started_seq)
            .text(&a.started_at)
            .opt_int(a.pid)
            .opt_text(a.ended_at.as_deref())
            .opt_int(a.exit_code)
            .opt_uint(a.duration_ms)
            .text(&a.outcome)
            .opt_text(a.error.as_deref())
            .text(&a.log_dir)
            .list(&a.log_paths);
    }

    /// In the order of `RUN_COLS`.
    pub(super) fn run(&mut self, r: &RunRow) {
        self.begin(Kind::Run)
            .text(&r.run_id)
            .uint(r.first_seq)
            .uint(r.last_seq)
            .text(&r.started_at)
            .text(&r.updated_at)
            .uint(r.events);
    }

    /// In the order of `PROBLEM_COLS`.
    pub(super) fn problem(&mut self, p: &ProblemRow) {
        self.begin(Kind::Problem)
            .text(&p.path)
            .opt_text(p.task_id.as_deref())
            .text(&p.kind)
            .text(&p.message)
            .uint(p.seq)
            .text(&p.ts);
    }

    pub(super) fn problem_gone(&mut self, path: &str) {
        self.begin(Kind::ProblemGone).text(path);
    }

    pub(super) fn last_seq(&mut self, seq: u64) {
        self.begin(Kind::LastSeq).text(&seq.to_string());
    }

    /// Run every row through the statements: the events rows first (nothing in the projection
    /// reads that table, so they may go in ahead of the other tables' changes), then the
    /// changes in the order they were made.
    pub(super) fn write(&self, st: &mut Stmts) -> rusqlite::Result<()> {
        let mut groups = self.events.chunks_exact(EVENTS_PER_INSERT);
        for group in &mut groups {
            self.bind_events(&mut st.insert_events, group)?;
            st.insert_events.raw_execute()?;
        }
        for row in groups.remainder() {
            self.bind_events(&mut st.insert_event, std::slice::from_ref(row))?;
            st.insert_event.raw_execute()?;
        }
        let mut first = 0;
        while first < self.changes.len() {
            let kind = self.changes[first].kind;
            let run = self.changes[first..]
                .iter()
                .take_while(|c| c.kind == kind)
                .count();
            let mut done = 0;
            if let Some(stmt) = st.for_rows(kind) {
                while run - done >= ROWS_PER_UPSERT {
                    self.execute(stmt, first + done, ROWS_PER_UPSERT)?;
                    done += ROWS_PER_UPSERT;
                }
            }
            for one in first + done..first + run {
                self.execute(st.for_one(kind), one, 1)?;
            }
            first += run;
        }
        Ok(())
    }

    /// Run `stmt` with the parameters of `changes` changes from the `first`: consecutive
    /// changes have consecutive parameters.
    fn execute(&self, stmt: &mut CachedStatement, first: usize, changes: usize) -> rusqlite::Result<()> {
        let start = self.changes[first].first;
        let end = self
            .changes
            .get(first + changes)
            .map_or(self.params.len(), |next| next.first);
        for (n, param) in self.params[start..end].iter().enumerate() {
            match *param {
                Param::Null => stmt.raw_bind_parameter(n + 1, rusqlite::types::Null)?,
                Param::Int(v) => stmt.raw_bind_parameter(n + 1, v)?,
                Param::Real(v) => stmt.raw_bind_parameter(n + 1, v)?,
                Param::Text(start, len) => stmt.raw_bind_parameter(n + 1, self.text_at((start, len)))?,
            }
        }
        stmt.raw_execute()?;
        Ok(())
    }

    fn bind_events(&self, stmt: &mut CachedStatement, rows: &[EventRow]) -> rusqlite::Result<()> {
        for (i, row) in rows.iter().enumerate() {
            let first = i * 6 + 1;
            stmt.raw_bind_parameter(first, row.seq)?;
            stmt.raw_bind_parameter(first + 1, row.task_id.map(|t| self.text_at(t)))?;
            stmt.raw_bind_parameter(first + 2, self.text_at(row.event))?;
            stmt.raw_bind_parameter(first + 3, row.at.offset)?;
            stmt.raw_bind_parameter(first + 4, row.at.len)?;
            stmt.raw_bind_parameter(first + 5, row.at.crc)?;
        }
        Ok(())
    }
}

/// One `cost_update` event as a costs row: the metrics of an agent's JSON result.
pub(super) struct CostRow<'a> {
    pub seq: u64,
    pub ts: &'a str,
    pub task_id: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub model: Option<&'a str>,
    pub attempt: Option<u32>,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub num_turns: Option<u64>,
}

/// Rows of the events table one statement inserts: a statement's fixed cost (bind, step,
/// reset) was over half of the cost of a six-column row.
const EVENTS_PER_INSERT: usize = 64;

/// Tasks or attempts rows one statement writes, for the same reason (a rebuild writes a row
/// for each task and each attempt of the log).
pub(super) const ROWS_PER_UPSERT: usize = 32;

/// `rows` rows of `width` parameters each, for `VALUES`.
fn rows_sql(width: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; rows].join(", ")
}

fn insert_events_sql(rows: usize) -> String {
    format!(
        "INSERT INTO events (seq, task_id, event, offset, len, crc) VALUES {}",
        rows_sql(6, rows)
    )
}

/// In the order of `TASK_COLS`, then `priority_rank` (`Outbox::task`).
fn upsert_tasks_sql(rows: usize) -> String {
    format!(
        "INSERT OR REPLACE INTO tasks ({TASK_COLS}, priority_rank) VALUES {}",
        rows_sql(19, rows)
    )
}

/// In the order of `ATTEMPT_COLS` (`Outbox::attempt`).
fn upsert_attempts_sql(rows: usize) -> String {
    format!(
        "INSERT OR REPLACE INTO attempts ({ATTEMPT_COLS}) VALUES {}",
        rows_sql(12, rows)
    )
}

fn priority_rank(p: &str) -> i64 {
    Priority::ALL
        .iter()
        .position(|q| q.as_str() == p)
        .unwrap_or(Priority::ALL.len()) as i64
}
