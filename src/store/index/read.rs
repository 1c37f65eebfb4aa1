//! The READ half of the index, and the only part of it the query side may use: rows as typed
//! values and the queries the CLI needs. `Reader::open` opens the file with
//! `SQLITE_OPEN_READ_ONLY` — and, while no daemon runs, `immutable=1`, so that not even a
//! `-wal`/`-shm` file is created. `Reader::from_log` answers from the log when there is no
//! usable index: it projects the log into a private in-memory database (nothing on disk).
//! No function here can change `index.sqlite`.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

pub use super::{IndexError, db_path};
use super::{SCHEMA_VERSION, TABLE_KEYS, sql_err};
use crate::store::logread::{Located, StreamEnd};

/// A task's current state as the log describes it (SPEC section 5 fields first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub agent: String,
    pub status: String,
    pub priority: String,
    pub path: String,
    pub updated_at: String,
    pub attempt: u32,
    pub depends_on: Vec<String>,
    pub approval_required: bool,
    pub approved: bool,
    /// Kind of inconsistency the daemon found in the file, which it leaves alone until edited.
    pub problem: Option<String>,
    pub problem_message: Option<String>,
    /// Summary of the last completion.
    pub summary: Option<String>,
    /// Message of the last failure, cancellation, block or retry.
    pub error: Option<String>,
    pub created_seq: u64,
    pub created_at: String,
    pub updated_seq: u64,
}

/// The columns `list` shows of a task (read from a covering index).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    pub id: String,
    pub status: String,
    pub agent: String,
    pub priority: String,
    pub attempt: u32,
    pub updated_at: String,
    pub title: String,
}

/// One run of a task's agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRow {
    pub task_id: String,
    pub attempt: u32,
    pub started_seq: u64,
    pub started_at: String,
    pub pid: Option<u32>,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    /// `running`, `done`, `failed`, `timed_out`, `cancelled` or `interrupted`.
    pub outcome: String,
    pub error: Option<String>,
    /// Root-relative folder of the attempt's prompt.md, stdout.log, stderr.log, result.yaml.
    pub log_dir: String,
    /// The files of `log_dir` that existed when the run ended.
    pub log_paths: Vec<String>,
}

/// A problem the daemon recorded for a file (`problem_detected`), until a later event about
/// that file supersedes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemRow {
    pub path: String,
    pub task_id: Option<String>,
    pub kind: String,
    pub message: String,
    pub seq: u64,
    pub ts: String,
}

/// A run container (ADR-048): events that carry its `run_id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub run_id: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub started_at: String,
    pub updated_at: String,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub run: RunRow,
    pub tasks: u64,
}

/// Costs summed over one key (agent, model or day).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    pub key: String,
    pub events: u64,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

/// What to sum costs by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CostKey {
    Agent,
    Model,
    Day,
    Task,
}

/// Filters of `list`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub agent: Option<String>,
    pub priority: Option<String>,
}

/// Statuses in the order lists show them: work in progress first, finished work last.
pub const LIST_ORDER: [&str; 7] = [
    "in_progress",
    "assigned",
    "blocked",
    "error",
    "done",
    "new",
    "inbox",
];

pub(super) const TASK_COLS: &str = "id, title, agent, status, priority, path, updated_at, attempt, depends_on, \
    approval_required, approved, problem, problem_message, summary, error, created_seq, created_at, updated_seq";

pub(super) const ATTEMPT_COLS: &str = "task_id, attempt, started_seq, started_at, pid, ended_at, exit_code, \
    duration_ms, outcome, error, log_dir, log_paths";

pub(super) const PROBLEM_COLS: &str = "path, task_id, kind, message, seq, ts";

pub(super) const RUN_COLS: &str = "run_id, first_seq, last_seq, started_at, updated_at, events";

fn json_list(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_default()
}

pub(super) fn task_from_row(r: &Row) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        title: r.get(1)?,
        agent: r.get(2)?,
        status: r.get(3)?,
        priority: r.get(4)?,
        path: r.get(5)?,
        updated_at: r.get(6)?,
        attempt: r.get(7)?,
        depends_on: json_list(r.get(8)?),
        approval_required: r.get(9)?,
        approved: r.get(10)?,
        problem: r.get(11)?,
        problem_message: r.get(12)?,
        summary: r.get(13)?,
        error: r.get(14)?,
        created_seq: r.get(15)?,
        created_at: r.get(16)?,
        updated_seq: r.get(17)?,
    })
}

pub(super) fn attempt_from_row(r: &Row) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        task_id: r.get(0)?,
        attempt: r.get(1)?,
        started_seq: r.get(2)?,
        started_at: r.get(3)?,
        pid: r.get(4)?,
        ended_at: r.get(5)?,
        exit_code: r.get(6)?,
        duration_ms: r.get(7)?,
        outcome: r.get(8)?,
        error: r.get(9)?,
        log_dir: r.get(10)?,
        log_paths: json_list(r.get(11)?),
    })
}

pub(super) fn problem_from_row(r: &Row) -> rusqlite::Result<ProblemRow> {
    Ok(ProblemRow {
        path: r.get(0)?,
        task_id: r.get(1)?,
        kind: r.get(2)?,
        message: r.get(3)?,
        seq: r.get(4)?,
        ts: r.get(5)?,
    })
}

pub(super) fn run_from_row(r: &Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        run_id: r.get(0)?,
        first_seq: r.get(1)?,
        last_seq: r.get(2)?,
        started_at: r.get(3)?,
        updated_at: r.get(4)?,
        events: r.get(5)?,
    })
}

/// Check that `conn` holds an index of this schema version; return its `last_seq`.
pub(super) fn check_meta(conn: &Connection, path: &Path) -> Result<u64, IndexError> {
    let meta = |key: &str| -> Result<Option<String>, IndexError> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql_err(path, "read the meta table of"))
    };
    let version = meta("schema_version")?;
    if version.as_deref() != Some(SCHEMA_VERSION.to_string().as_str()) {
        return Err(IndexError::Foreign {
            path: path.to_path_buf(),
            detail: format!(
                "schema version {} (this agentplane writes {SCHEMA_VERSION})",
                version.unwrap_or_else(|| "unknown".into())
            ),
        });
    }
    meta("last_seq")?
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| IndexError::Foreign {
            path: path.to_path_buf(),
            detail: "no last_seq in its meta table".into(),
        })
}

/// `file:` URI of a path, for SQLite's URI parameters.
fn file_uri(path: &Path, params: &str) -> String {
    let mut out = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('?');
    out.push_str(params);
    out
}

pub(super) fn locate(conn: &Connection, path: &Path, seq: u64) -> Result<Option<Located>, IndexError> {
    conn.prepare_cached("SELECT offset, len, crc FROM events WHERE seq = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([seq], |r| {
                Ok(Located {
                    offset: r.get(0)?,
                    len: r.get(1)?,
                    crc: r.get(2)?,
                })
            })
            .optional()
        })
        .map_err(sql_err(path, "read the events of"))
}

/// The line at `at` in the log, if it is there intact with the recorded checksum.
fn read_located(file: &File, at: &Located) -> Option<String> {
    let mut buf = vec![0u8; usize::try_from(at.len).ok()?];
    file.read_exact_at(&mut buf, at.offset).ok()?;
    let line = String::from_utf8(buf).ok()?;
    (crate::event::verified_crc(&line).ok()? == at.crc).then_some(line)
}

/// Open the log and read one located line (`None`: not there as recorded).
pub(super) fn line_at(log: &Path, at: &Located) -> Result<Option<String>, IndexError> {
    match File::open(log) {
        Ok(f) => Ok(read_located(&f, at)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IndexError::Io {
            path: log.to_path_buf(),
            op: "open the event log",
            source: e,
        }),
    }
}

/// Where a reader's answers come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Origin {
    /// `index.sqlite`, opened read-only.
    Index,
    /// The log, projected into memory because there was no usable index.
    Log,
}

/// Read-only access to an index.
pub struct Reader {
    conn: Connection,
    origin: Origin,
    last_seq: u64,
    /// The event log, whose lines the events table locates.
    log: PathBuf,
}

impl Reader {
    /// Open `db` read-only. `writer_alive`: a daemon holds the root lock and may be writing
    /// (WAL); otherwise the file is opened `immutable`, which reads without locks or side files.
    pub fn open(db: &Path, log: &Path, writer_alive: bool) -> Result<Reader, IndexError> {
        let params = if writer_alive {
            "mode=ro"
        } else {
            "mode=ro&immutable=1"
        };
        let conn = super::connect(
            file_uri(db, params),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err(db, "open (read-only)"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql_err(db, "configure"))?;
        let last_seq = check_meta(&conn, db)?;
        Ok(Reader {
            conn,
            origin: Origin::Index,
            last_seq,
            log: log.to_path_buf(),
        })
    }

    /// Project the log into a private in-memory database and read that.
    pub fn from_log(log: &Path) -> Result<(Reader, StreamEnd), IndexError> {
        let memory = Path::new(":memory:");
        let conn = super::open_in_memory().map_err(sql_err(memory, "open"))?;
        super::create_tables(&conn, memory)?;
        let end = super::project_beside(&conn, memory, log, super::Pace::REBUILD, None)?;
        Ok((
            Reader {
                conn,
                origin: Origin::Log,
                last_seq: end.last_seq,
                log: log.to_path_buf(),
            },
            end,
        ))
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The seq of the last event this index has applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError + '_ {
        let path = match self.origin {
            Origin::Index => self.conn.path().unwrap_or(":memory:"),
            Origin::Log => ":memory:",
        };
        sql_err(Path::new(path), op)
    }

    /// The line of the event with this seq, read where the index locates it in the log;
    /// `None` when the index has no such event or the log holds something else there.
    pub fn event_line(&self, seq: u64) -> Result<Option<String>, IndexError> {
        match locate(&self.conn, Path::new(self.conn.path().unwrap_or(":memory:")), seq)? {
            Some(at) => line_at(&self.log, &at),
            None => Ok(None),
        }
    }

    /// Task counts by agent and status.
    pub fn counts(&self) -> Result<Vec<(String, String, u64)>, IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT agent, status, count(*) FROM tasks GROUP BY agent, status ORDER BY agent, status",
            )
            .map_err(self.err("count the tasks in"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err("count the tasks in"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("count the tasks in"))
    }

    /// In-progress tasks, most recently changed first: (agent, id).
    pub fn in_progress(&self) -> Result<Vec<(String, String)>, IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT agent, id FROM tasks WHERE status = 'in_progress' ORDER BY updated_seq DESC",
            )
            .map_err(self.err("read the running tasks from"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err("read the running tasks from"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read the running tasks from"))
    }

    /// Tasks matching `filter`, by status (in `LIST_ORDER`), then priority, then age.
    pub fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRow>, IndexError> {
        self.select_tasks(filter, TASK_COLS, task_from_row)
    }

    /// `tasks`, with only the columns `list` shows (from the covering index: fast).
    pub fn task_lines(&self, filter: &TaskFilter) -> Result<Vec<TaskLine>, IndexError> {
        self.select_tasks(
            filter,
            "id, status, agent, priority, attempt, updated_at, title",
            |r| {
                Ok(TaskLine {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    agent: r.get(2)?,
                    priority: r.get(3)?,
                    attempt: r.get(4)?,
                    updated_at: r.get(5)?,
                    title: r.get(6)?,
                })
            },
        )
    }

    fn select_tasks<T>(
        &self,
        filter: &TaskFilter,
        columns: &str,
        row: impl Fn(&Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, IndexError> {
        let statuses: Vec<&str> = match &filter.status {
            Some(s) => vec![s.as_str()],
            None => LIST_ORDER.to_vec(),
        };
        let sql = format!(
            "SELECT {columns} FROM tasks WHERE status = ?1 AND (?2 IS NULL OR agent = ?2) \
             AND (?3 IS NULL OR priority = ?3) ORDER BY priority_rank, created_seq"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("list the tasks in"))?;
        let mut out = Vec::new();
        for status in statuses {
            let rows = stmt
                .query_map(params![status, filter.agent, filter.priority], &row)
                .map_err(self.err("list the tasks in"))?;
            for r in rows {
                out.push(r.map_err(self.err("list the tasks in"))?);
            }
        }
        Ok(out)
    }

    pub fn task(&self, id: &str) -> Result<Option<TaskRow>, IndexError> {
        let sql = format!("SELECT {TASK_COLS} FROM tasks WHERE id = ?1");
        self.conn
            .query_row(&sql, [id], task_from_row)
            .optional()
            .map_err(self.err("read a task from"))
    }

    /// The events of one task with `seq > since`, in order, with their lines read from the
    /// log: `f(seq, line)`. A line that is not where the index says is an error.
    pub fn task_events(
        &self,
        task: &str,
        since: u64,
        mut f: impl FnMut(u64, &str),
    ) -> Result<(), IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, offset, len, crc FROM events WHERE task_id = ?1 AND seq > ?2 ORDER BY seq",
            )
            .map_err(self.err("read the events in"))?;
        let rows = stmt
            .query_map(params![task, since], |r| {
                Ok((
                    r.get::<_, u64>(0)?,
                    Located {
                        offset: r.get(1)?,
                        len: r.get(2)?,
                        crc: r.get(3)?,
                    },
                ))
            })
            .map_err(self.err("read the events in"))?;
        let mut file: Option<File> = None;
        for row in rows {
            let (seq, at) = row.map_err(self.err("read the events in"))?;
            if file.is_none() {
                file = Some(File::open(&self.log).map_err(|e| IndexError::Io {
                    path: self.log.clone(),
                    op: "open the event log",
                    source: e,
                })?);
            }
            let line = file
                .as_ref()
                .and_then(|f| read_located(f, &at))
                .ok_or_else(|| IndexError::Foreign {
                    path: self.log.clone(),
                    detail: format!(
                        "event {seq} is not at byte {} as the index says: the index does not belong to this log",
                        at.offset
                    ),
                })?;
            f(seq, &line);
        }
        Ok(())
    }

    pub fn attempts(&self, task: &str) -> Result<Vec<AttemptRow>, IndexError> {
        let sql = format!("SELECT {ATTEMPT_COLS} FROM attempts WHERE task_id = ?1 ORDER BY attempt");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("read the attempts in"))?;
        let rows = stmt
            .query_map([task], attempt_from_row)
            .map_err(self.err("read the attempts in"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read the attempts in"))
    }

    /// Costs summed by `by`, largest first.
    pub fn costs(&self, by: CostKey) -> Result<Vec<CostRow>, IndexError> {
        let key = match by {
            CostKey::Agent => "agent",
            CostKey::Model => "model",
            CostKey::Day => "day",
            CostKey::Task => "task_id",
        };
        let sql = format!(
            "SELECT coalesce({key}, ''), count(*), coalesce(sum(cost_usd), 0.0), coalesce(sum(input_tokens), 0), \
             coalesce(sum(output_tokens), 0), coalesce(sum(cache_creation_input_tokens), 0), \
             coalesce(sum(cache_read_input_tokens), 0) FROM costs GROUP BY 1 ORDER BY 3 DESC, 1"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("sum the costs in"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CostRow {
                    key: r.get(0)?,
                    events: r.get(1)?,
                    cost_usd: r.get(2)?,
                    input_tokens: r.get(3)?,
                    output_tokens: r.get(4)?,
                    cache_creation_input_tokens: r.get(5)?,
                    cache_read_input_tokens: r.get(6)?,
                })
            })
            .map_err(self.err("sum the costs in"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("sum the costs in"))
    }

    /// Run containers, most recently active first (or just `run_id`).
    pub fn runs(&self, run_id: Option<&str>) -> Result<Vec<RunSummary>, IndexError> {
        let sql = format!(
            "SELECT {RUN_COLS}, (SELECT count(*) FROM run_tasks t WHERE t.run_id = runs.run_id) FROM runs \
             WHERE ?1 IS NULL OR run_id = ?1 ORDER BY last_seq DESC"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("read the runs in"))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(RunSummary {
                    run: run_from_row(r)?,
                    tasks: r.get(6)?,
                })
            })
            .map_err(self.err("read the runs in"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read the runs in"))
    }

    /// Ids of the tasks of a run, in the order they joined it.
    pub fn run_tasks(&self, run_id: &str) -> Result<Vec<String>, IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT task_id FROM run_tasks WHERE run_id = ?1 ORDER BY first_seq")
            .map_err(self.err("read the runs in"))?;
        let rows = stmt
            .query_map([run_id], |r| r.get(0))
            .map_err(self.err("read the runs in"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read the runs in"))
    }

    /// Problems as the log records them: reported files, and tasks whose file the daemon
    /// found inconsistent. Ordered by path.
    pub fn problems(&self) -> Result<Vec<ProblemRow>, IndexError> {
        let mut out: BTreeMap<String, ProblemRow> = BTreeMap::new();
        let sql = format!("SELECT {PROBLEM_COLS} FROM problems");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.err("read the problems in"))?;
        for row in stmt
            .query_map([], problem_from_row)
            .map_err(self.err("read the problems in"))?
        {
            let row = row.map_err(self.err("read the problems in"))?;
            out.insert(row.path.clone(), row);
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT path, id, problem, coalesce(problem_message, ''), updated_seq, updated_at FROM tasks \
                 WHERE problem IS NOT NULL",
            )
            .map_err(self.err("read the problems in"))?;
        for row in stmt
            .query_map([], problem_from_row)
            .map_err(self.err("read the problems in"))?
        {
            let row = row.map_err(self.err("read the problems in"))?;
            out.entry(row.path.clone()).or_insert(row);
        }
        Ok(out.into_values().collect())
    }

    /// Ids of every task some event names.
    pub fn logged_task_ids(&self) -> Result<std::collections::HashSet<String>, IndexError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT task_id FROM events WHERE task_id IS NOT NULL")
            .map_err(self.err("read the events in"))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.err("read the events in"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("read the events in"))
    }

    /// Compare every row of every table with `other`'s (each table in key order). `None`:
    /// equal; otherwise the first difference, described.
    pub fn compare(&self, other: &Reader) -> Result<Option<String>, IndexError> {
        for (table, key) in TABLE_KEYS {
            let sql = format!("SELECT * FROM {table} ORDER BY {key}");
            let mut mine = self.conn.prepare(&sql).map_err(self.err("read"))?;
            let mut theirs = other.conn.prepare(&sql).map_err(other.err("read"))?;
            let columns = mine.column_count();
            let mut a = mine.query([]).map_err(self.err("read"))?;
            let mut b = theirs.query([]).map_err(other.err("read"))?;
            let mut n = 0u64;
            loop {
                let ra = a.next().map_err(self.err("read"))?.map(|r| row_text(r, columns));
                let rb = b.next().map_err(other.err("read"))?.map(|r| row_text(r, columns));
                n += 1;
                match (ra, rb) {
                    (None, None) => break,
                    (Some(x), Some(y)) if x == y => {}
                    (x, y) => {
                        let show = |r: Option<String>| r.unwrap_or_else(|| "(no row)".into());
                        return Ok(Some(format!(
                            "table {table}, row {n} (by {key}): {} here, {} in the projection of the log",
                            show(x),
                            show(y)
                        )));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// A row as a JSON array, for comparisons and messages.
fn row_text(row: &Row, columns: usize) -> String {
    let values: Vec<Value> = (0..columns)
        .map(|i| match row.get_ref(i) {
            Ok(ValueRef::Null) | Err(_) => Value::Null,
            Ok(ValueRef::Integer(n)) => Value::from(n),
            Ok(ValueRef::Real(x)) => Value::from(x),
            Ok(ValueRef::Text(t)) => Value::from(String::from_utf8_lossy(t).into_owned()),
            Ok(ValueRef::Blob(b)) => Value::from(format!("blob:{}", b.len())),
        })
        .collect();
    Value::Array(values).to_string()
}
