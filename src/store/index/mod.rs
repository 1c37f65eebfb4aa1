//! The SQLite index `work/.agentplane/index.sqlite`: a projection of the event log alone
//! (tasks, events, attempts, costs, runs, problems, and `meta.last_seq`). Deleting it loses
//! nothing: `rebuild` projects the whole log into a temp file and renames it over the index;
//! `Index::open` rebuilds a missing, corrupt or foreign index and catches up from `last_seq`.
//!
//! This module holds the WRITE half, used only by the daemon's index thread and by
//! `agentplane index rebuild` under the root lock. The projection itself lives in `project`
//! (one function turns an event line into row changes, so a rebuilt index equals the
//! incrementally maintained one row for row). The read half is `read`, which opens the file
//! read-only and is all the query side may use. Nothing here touches task files or the log.

mod json;
mod project;
pub mod read;
mod tables;
mod view;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

use crate::event::Event;
use crate::layout::Layout;
use crate::store::logread::{self, Located, LogError, StreamEnd};
use project::Projector;
use tables::{NothingElse, Outbox, Stmts};
use view::{EventView, Views};

/// Bumped whenever the tables or the projection change; an index of another version is rebuilt.
pub const SCHEMA_VERSION: u32 = 1;

/// Where the index of a root lives.
pub fn db_path(layout: &Layout) -> PathBuf {
    layout.state_dir().join("index.sqlite")
}

const TABLES: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE events (seq INTEGER PRIMARY KEY, task_id TEXT, event TEXT NOT NULL, offset INTEGER NOT NULL,
  len INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE tasks (id TEXT PRIMARY KEY, agent TEXT NOT NULL, status TEXT NOT NULL, path TEXT NOT NULL,
  title TEXT NOT NULL, priority TEXT NOT NULL, priority_rank INTEGER NOT NULL, depends_on TEXT NOT NULL,
  attempt INTEGER NOT NULL, approval_required INTEGER NOT NULL, approved INTEGER NOT NULL, problem TEXT,
  problem_message TEXT, summary TEXT, error TEXT, created_seq INTEGER NOT NULL, created_at TEXT NOT NULL,
  updated_seq INTEGER NOT NULL, updated_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE attempts (task_id TEXT NOT NULL, attempt INTEGER NOT NULL, started_seq INTEGER NOT NULL,
  started_at TEXT NOT NULL, pid INTEGER, ended_at TEXT, exit_code INTEGER, duration_ms INTEGER,
  outcome TEXT NOT NULL, error TEXT, log_dir TEXT NOT NULL, log_paths TEXT NOT NULL,
  PRIMARY KEY (task_id, attempt)) WITHOUT ROWID;
CREATE TABLE costs (seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, day TEXT NOT NULL, task_id TEXT, agent TEXT,
  model TEXT, attempt INTEGER, cost_usd REAL, input_tokens INTEGER, output_tokens INTEGER,
  cache_creation_input_tokens INTEGER, cache_read_input_tokens INTEGER, num_turns INTEGER);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
  started_at TEXT NOT NULL, updated_at TEXT NOT NULL, events INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE run_tasks (run_id TEXT NOT NULL, task_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
  PRIMARY KEY (run_id, task_id)) WITHOUT ROWID;
CREATE TABLE problems (path TEXT PRIMARY KEY, task_id TEXT, kind TEXT NOT NULL, message TEXT NOT NULL,
  seq INTEGER NOT NULL, ts TEXT NOT NULL) WITHOUT ROWID;
";

/// Created with the tables, so a rebuild maintains them as it writes: its writing thread
/// has time to spare while the reading thread projects, and creating them at the end took a
/// tenth of a rebuild on one thread alone. `tasks_by_status` covers what `list` shows, so
/// listing reads the index alone.
const INDEXES: &str = "
CREATE INDEX tasks_by_status ON tasks(status, priority_rank, created_seq, agent, priority, attempt, updated_at, title);
CREATE INDEX tasks_by_agent ON tasks(agent, status, priority_rank, created_seq);
CREATE INDEX events_by_task ON events(task_id, seq) WHERE task_id IS NOT NULL;
";

/// Every table, in dump order, with the columns that order its rows.
pub const TABLE_KEYS: [(&str, &str); 8] = [
    ("meta", "key"),
    ("events", "seq"),
    ("tasks", "id"),
    ("attempts", "task_id, attempt"),
    ("costs", "seq"),
    ("runs", "run_id"),
    ("run_tasks", "run_id, task_id"),
    ("problems", "path"),
];

/// A failure of the index, naming the file and the operation.
#[derive(Debug)]
pub enum IndexError {
    Sqlite {
        path: PathBuf,
        op: &'static str,
        source: rusqlite::Error,
    },
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    Log(LogError),
    /// The file is an index of another schema version, or not an index at all.
    Foreign {
        path: PathBuf,
        detail: String,
    },
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::Sqlite { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            IndexError::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            IndexError::Log(e) => e.fmt(f),
            IndexError::Foreign { path, detail } => {
                write!(f, "{} is not a usable index: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for IndexError {}

impl From<LogError> for IndexError {
    fn from(e: LogError) -> Self {
        IndexError::Log(e)
    }
}

pub(crate) fn sql_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(rusqlite::Error) -> IndexError + 'a {
    move |source| IndexError::Sqlite {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> IndexError + 'a {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Create the tables and their indexes in an empty database.
fn create_tables(conn: &Connection, path: &Path) -> Result<(), IndexError> {
    conn.execute_batch(TABLES)
        .map_err(sql_err(path, "create the tables of"))?;
    conn.execute_batch(INDEXES)
        .map_err(sql_err(path, "create the indexes of"))?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('last_seq', '0')",
        [SCHEMA_VERSION.to_string()],
    )
    .map_err(sql_err(path, "initialise"))?;
    Ok(())
}

/// Project every event of the log with `seq > after` into `conn`, in one transaction, on
/// this thread (`project_here`: rows it has not cached are read back). An empty database that
/// nobody sees before it is complete (a rebuild's scratch file, memory) takes every event on
/// two threads instead (`project_beside`).
fn project_log(conn: &mut Connection, db: &Path, log: &Path, after: u64) -> Result<StreamEnd, IndexError> {
    let tx = conn
        .transaction()
        .map_err(sql_err(db, "begin a transaction on"))?;
    let end = project_here(&tx, db, log, after)?;
    tx.commit().map_err(sql_err(db, "commit"))?;
    Ok(end)
}

/// Project on the thread that holds the connection: rows not cached are read back from it.
/// The outbox is written at each flush, before any row can be read back.
fn project_here(conn: &Connection, db: &Path, log: &Path, after: u64) -> Result<StreamEnd, IndexError> {
    let mut st = Stmts::new(conn).map_err(sql_err(db, "prepare statements for"))?;
    let mut projector = Projector::new(false, after);
    let mut out = Outbox::default();
    let end = logread::stream_as::<Views, rusqlite::Error>(log, after, |ev, line, at| {
        if projector.step(&mut st, &mut out, &ev, &Located::of(line, at), CHUNK)? {
            out.write(&mut st)?;
            out.clear();
        }
        Ok(())
    })?;
    let end = end.map_err(sql_err(db, "write the projection into"))?;
    projector.flush(&mut out);
    out.write(&mut st)
        .map_err(sql_err(db, "write the projection into"))?;
    Ok(end)
}

/// What the reading thread of a rebuild hands over.
enum Handed {
    Rows(Outbox),
    /// How its stream ended; nothing follows.
    End(Result<Result<StreamEnd, ()>, LogError>),
}

/// Project into an empty database on two threads: the reading thread reads, verifies,
/// decodes and projects the log (keeping every row, so nothing is read back), and hands
/// over outboxes of rows; this thread, which holds the connection, writes them. The
/// outboxes go back to the reader to be emptied and reused, so memory is freed by the
/// thread that allocated it (glibc's arenas make freeing across threads slow). The reader
/// reports its end before it frees the rows it kept, and is not waited for: freeing them
/// takes a tenth of its time, and the writer has the last rows to write meanwhile. The writer
/// commits as `pace` says; `file`, the database's file if it has one, starts being written
/// to disk at each commit.
fn project_beside(
    conn: &Connection,
    db: &Path,
    log: &Path,
    pace: Pace,
    file: Option<&File>,
) -> Result<StreamEnd, IndexError> {
    let (to_writer, from_reader) = std::sync::mpsc::sync_channel::<Handed>(AHEAD);
    let (to_reader, from_writer) = std::sync::mpsc::channel::<Outbox>();
    let log_path = log.to_path_buf();
    std::thread::Builder::new()
        .name("index-read".into())
        .spawn(move || {
            let mut projector = Projector::keeping();
            let mut out = Outbox::default();
            let hand_over = |out: &mut Outbox| {
                let next = match from_writer.try_recv() {
                    Ok(mut used) => {
                        used.clear();
                        used
                    }
                    Err(_) => Outbox::default(),
                };
                to_writer
                    .send(Handed::Rows(std::mem::replace(out, next)))
                    .map_err(|_| ())
            };
            let end = logread::stream_ahead::<Views, ()>(&log_path, 0, |ev, line, at| {
                // Nothing is read back: `NothingElse` cannot fail.
                let due = projector
                    .step(
                        &mut NothingElse,
                        &mut out,
                        &ev,
                        &Located::of(line, at),
                        pace.chunk,
                    )
                    .map_err(|_| ())?;
                if due {
                    hand_over(&mut out)?;
                }
                Ok(())
            });
            if matches!(end, Ok(Ok(_))) {
                projector.flush(&mut out);
                let _ = hand_over(&mut out);
            }
            let _ = to_writer.send(Handed::End(end));
            drop(to_writer);
            drop(projector);
            for used in from_writer {
                drop(used);
            }
            // Nobody waits for this thread, so it returns what it freed itself (a daemon
            // that rebuilt its index at start would otherwise keep ~10 MB of it).
            crate::memory::release();
        })
        .map_err(io_err(log, "start a thread to read"))?;
    let mut end = None;
    let written = (|| {
        let mut st = Stmts::new(conn)?;
        conn.execute_batch("BEGIN")?;
        let mut uncommitted = 0;
        for handed in from_reader {
            match handed {
                Handed::Rows(out) => {
                    uncommitted += out.events();
                    out.write(&mut st)?;
                    let _ = to_reader.send(out);
                    if uncommitted >= pace.commit_at {
                        conn.execute_batch("COMMIT; BEGIN")?;
                        uncommitted = 0;
                        if let Some(file) = file {
                            start_writeback(file);
                        }
                    }
                }
                Handed::End(stream_end) => end = Some(stream_end),
            }
        }
        conn.execute_batch("COMMIT")
    })();
    drop(to_reader);
    written.map_err(sql_err(db, "write the projection into"))?;
    // The reader ends on its own: at the end of the log, or when the writer is gone.
    let end = end.ok_or_else(|| IndexError::Foreign {
        path: log.to_path_buf(),
        detail: "the thread reading it stopped without an end".into(),
    })?;
    end?.map_err(|()| IndexError::Foreign {
        path: db.to_path_buf(),
        detail: "the projection stopped early".into(),
    })
}

/// Open a SQLite connection (a file, or a `file:` URI with `SQLITE_OPEN_URI`). Every
/// connection this crate opens goes through here or `open_in_memory`, so SQLite is
/// configured first.
pub fn connect(target: impl AsRef<Path>, flags: OpenFlags) -> rusqlite::Result<Connection> {
    configure_sqlite();
    let conn = Connection::open_with_flags(target, flags)?;
    // Room for every statement the projection (`tables::Stmts`) and the queries prepare.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 48;

/// `connect` for a private in-memory database.
fn open_in_memory() -> rusqlite::Result<Connection> {
    configure_sqlite();
    let conn = Connection::open_in_memory()?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// SQLite keeps allocation statistics under one global mutex unless told not to; nothing here
/// reads them, and a rebuild allocates millions of times (rebuild time −4 %). SQLite accepts
/// the setting only before it initialises, which its first connection does.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config must not run while SQLite is in use; it runs once, before
        // this process opens its first connection (the `Once` holds back any other opener).
        unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::os::raw::c_int);
        }
    });
}

/// Outboxes the reading thread may be ahead of the writing one (each ~1,024 events rows, a
/// flush's more): the depth run 21 measured for its queue of decoded events, kept for the
/// outboxes without being measured again.
const AHEAD: usize = 128;

/// Events rows an outbox collects before it is written (or handed over).
const CHUNK: usize = 1024;

/// How a projection on two threads (`project_beside`) cuts its work.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Events rows an outbox collects before it is handed over.
    chunk: usize,
    /// Events after which the writer commits. Nobody sees the database before it is
    /// complete, so a commit only makes SQLite write the pages it changed: as it goes, while
    /// the reader projects, rather than ~160 MB of them at the end with both threads
    /// otherwise done. It keeps its pages cached (the file is locked exclusively), so nothing
    /// is read back.
    commit_at: usize,
}

impl Pace {
    const REBUILD: Pace = Pace {
        chunk: CHUNK,
        commit_at: 100_000,
    };
}

/// How a rebuild configures its new file: a scratch file until it is renamed into place, so
/// no journal and no syncs (one fsync at the end). A page cache of up to 256 MB: the index of
/// 1,000,000 events is ~160 MB, and with 64 MB the pages its indexes touch went out to the
/// file and back (a rebuild 15 % slower); the memory is freed when the rebuild closes it.
pub const SCRATCH_PRAGMAS: &str = "PRAGMA page_size=16384; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
    PRAGMA locking_mode=EXCLUSIVE; PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY;";

/// What a rebuild did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildReport {
    pub path: String,
    pub events: u64,
    pub last_seq: u64,
    pub tasks: u64,
    /// Bytes of a torn last line that were left out (the daemon cuts them at its start).
    pub torn_bytes: u64,
    pub ms: u64,
}

/// Project the whole log into a new database next to `db`, then rename it over `db`. The
/// caller guarantees that no connection writes `db` meanwhile (the daemon's index thread
/// before it opens it; the CLI under the root lock).
pub fn rebuild(db: &Path, log: &Path) -> Result<RebuildReport, IndexError> {
    let started = Instant::now();
    let dir = db.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".index.sqlite.rebuild");
    for stale in [tmp.clone(), with_suffix(&tmp, "-journal")] {
        remove_if_present(&stale)?;
    }
    let conn = connect(
        &tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err(&tmp, "create"))?;
    conn.execute_batch(SCRATCH_PRAGMAS)
        .map_err(sql_err(&tmp, "configure"))?;
    create_tables(&conn, &tmp)?;
    let scratch = File::open(&tmp).map_err(io_err(&tmp, "open"))?;
    let end = project_beside(&conn, &tmp, log, Pace::REBUILD, Some(&scratch))?;
    let tasks: u64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .map_err(sql_err(&tmp, "count the tasks of"))?;
    conn.execute_batch("PRAGMA journal_mode=DELETE;")
        .map_err(sql_err(&tmp, "configure"))?;
    conn.close().map_err(|(_, e)| sql_err(&tmp, "close")(e))?;
    scratch.sync_all().map_err(io_err(&tmp, "fsync"))?;
    // A WAL left by a crashed writer belongs to the old file; it must not meet the new one.
    for stale in [
        with_suffix(db, "-wal"),
        with_suffix(db, "-shm"),
        with_suffix(db, "-journal"),
    ] {
        remove_if_present(&stale)?;
    }
    std::fs::rename(&tmp, db).map_err(io_err(db, "rename the rebuilt index onto"))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))?;
    Ok(RebuildReport {
        path: db.to_string_lossy().into_owned(),
        events: end.events,
        last_seq: end.last_seq,
        tasks,
        torn_bytes: end.torn_bytes,
        ms: started.elapsed().as_millis() as u64,
    })
}

/// Start writing a file's changed pages to disk without waiting for them, so that the fsync
/// that makes it durable finds little left to write (a rebuild's scratch file: its last fsync
/// took 0.12 s with ~160 MB to write, 2 ms after writeback started at each commit). Only a
/// hint: where it fails, or where there is no `sync_file_range` (not Linux), the fsync does
/// all the writing.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range touches no memory of ours, and `file` keeps the descriptor
        // open for the call.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_if_present(path: &Path) -> Result<(), IndexError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// Why `agentplane index rebuild` did not run.
#[derive(Debug)]
pub enum RebuildRefused {
    /// A daemon holds the root lock; it maintains (and at start rebuilds) the index itself.
    DaemonRunning {
        pid: String,
        lock: PathBuf,
    },
    Failed(IndexError),
}

/// `agentplane index rebuild`: take the root lock (so no daemon starts meanwhile), rebuild,
/// release. Refused while a daemon holds the lock.
pub fn rebuild_locked(layout: &Layout) -> Result<RebuildReport, RebuildRefused> {
    let lock_path = layout.lock();
    let state_dir = layout.state_dir();
    std::fs::create_dir_all(&state_dir)
        .map_err(|e| RebuildRefused::Failed(io_err(&state_dir, "create directory")(e)))?;
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| RebuildRefused::Failed(io_err(&lock_path, "open")(e)))?;
    if lock.try_lock().is_err() {
        let pid = std::fs::read_to_string(&lock_path).unwrap_or_default();
        return Err(RebuildRefused::DaemonRunning {
            pid: pid.trim().to_string(),
            lock: lock_path,
        });
    }
    let report = rebuild(&db_path(layout), &layout.events()).map_err(RebuildRefused::Failed);
    drop(lock);
    report
}

/// What `Index::open` had to do.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    /// Why the index was rebuilt, if it was.
    pub rebuilt: Option<String>,
    /// Events applied from the log to catch up.
    pub caught_up: u64,
}

/// The index as the daemon maintains it: WAL, `synchronous=NORMAL`, one transaction per batch.
pub struct Index {
    conn: Connection,
    path: PathBuf,
    log: PathBuf,
    last_seq: u64,
    /// Where the line of the next event starts in the log (the journal appends contiguously).
    next_offset: u64,
    /// Inode of the file this connection has open.
    ino: u64,
}

impl Index {
    /// Open the index of `log` for writing: rebuild it if it is missing, unreadable, of
    /// another schema, or not a projection of this log; then apply what the log has beyond
    /// `last_seq`.
    pub fn open(db: &Path, log: &Path) -> Result<(Index, Opened), IndexError> {
        let mut opened = Opened::default();
        let existing = if db.exists() {
            match Index::open_existing(db, log) {
                Ok(index) => Some(index),
                Err(e) => {
                    opened.rebuilt = Some(e.to_string());
                    None
                }
            }
        } else {
            opened.rebuilt = Some(format!("{} does not exist", db.display()));
            None
        };
        let mut index = match existing {
            Some(index) => index,
            None => {
                rebuild(db, log)?;
                Index::open_existing(db, log)?
            }
        };
        opened.caught_up = index.catch_up()?;
        Ok((index, opened))
    }

    fn open_existing(db: &Path, log: &Path) -> Result<Index, IndexError> {
        let conn = connect(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_err(db, "open"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;
             PRAGMA busy_timeout=5000;",
        )
        .map_err(sql_err(db, "configure"))?;
        let last_seq = read::check_meta(&conn, db)?;
        let mut next_offset = 0;
        if last_seq > 0 {
            let located = read::locate(&conn, db, last_seq)?;
            let found = match located {
                Some(at) => read::line_at(log, &at)?.map(|_| at.offset + at.len + 1),
                None => None,
            };
            next_offset = found.ok_or_else(|| IndexError::Foreign {
                path: db.to_path_buf(),
                detail: format!(
                    "its event {last_seq} is not in the log (the log was replaced or is shorter)"
                ),
            })?;
        }
        let ino = std::fs::metadata(db).map_err(io_err(db, "stat"))?.ino();
        Ok(Index {
            conn,
            path: db.to_path_buf(),
            log: log.to_path_buf(),
            last_seq,
            next_offset,
            ino,
        })
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Is the file this index writes still the one at its path (not deleted or replaced)?
    pub fn in_place(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino)
    }

    /// Apply what the log holds beyond `last_seq`.
    pub fn catch_up(&mut self) -> Result<u64, IndexError> {
        let end = project_log(&mut self.conn, &self.path, &self.log, self.last_seq)?;
        if end.events > 0 {
            self.last_seq = end.last_seq;
            self.next_offset = end.offset;
        }
        Ok(end.events)
    }

    /// Apply committed events, `places[i]` being where the journal wrote the line of
    /// `events[i]` (those at or below `last_seq` are skipped), in one transaction. A gap —
    /// events the index never saw — is filled from the log first.
    pub fn apply(&mut self, events: &[Event], places: &[Located]) -> Result<usize, IndexError> {
        let Some(first) = events.iter().find(|e| e.seq > self.last_seq) else {
            return Ok(0);
        };
        if first.seq != self.last_seq + 1 {
            self.catch_up()?;
        }
        self.apply_fresh(events, places)
    }

    fn apply_fresh(&mut self, events: &[Event], places: &[Located]) -> Result<usize, IndexError> {
        if events.len() != places.len() {
            return Err(IndexError::Foreign {
                path: self.log.clone(),
                detail: format!("{} events handed over with {} places", events.len(), places.len()),
            });
        }
        let db = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err(&db, "begin a transaction on"))?;
        let mut st = Stmts::new(&tx).map_err(sql_err(&db, "prepare statements for"))?;
        let no_problems = !tx
            .query_row("SELECT EXISTS (SELECT 1 FROM problems)", [], |r| {
                r.get::<_, bool>(0)
            })
            .map_err(sql_err(&db, "read the problems of"))?;
        let mut projector = Projector::new(false, self.last_seq);
        if no_problems {
            projector = projector.without_problems();
        }
        let mut offset = self.next_offset;
        let mut out = Outbox::default();
        let mut last: Option<(u64, Located)> = None;
        let mut applied = 0;
        for (ev, at) in events.iter().zip(places).filter(|(e, _)| e.seq > self.last_seq) {
            // The log is contiguous: each line starts where the one before ended.
            if at.offset != offset {
                return Err(IndexError::Foreign {
                    path: self.log.clone(),
                    detail: format!(
                        "event {} is at byte {}, not at byte {offset} where the index expects it",
                        ev.seq, at.offset
                    ),
                });
            }
            // The event itself is projected, not its line read back: an event's view reads
            // back from its line as it was (`Views::decode`, tested), so a rebuild, which
            // projects the decoded lines, writes the same rows.
            projector
                .apply(&mut st, &mut out, &EventView::of(ev), at)
                .map_err(sql_err(&db, "write the projection into"))?;
            last = Some((ev.seq, *at));
            offset += at.len + 1;
            applied += 1;
        }
        // The batch is durable before it is handed over: its last line must be where the
        // offsets say. If not (the log was written some other way), nothing is committed and
        // the next open rebuilds.
        if let Some((seq, at)) = last
            && read::line_at(&self.log, &at)?.is_none()
        {
            return Err(IndexError::Foreign {
                path: self.log.clone(),
                detail: format!(
                    "event {seq} is not at byte {} where the index expects it",
                    at.offset
                ),
            });
        }
        projector.flush(&mut out);
        out.write(&mut st)
            .map_err(sql_err(&db, "write the projection into"))?;
        drop(st);
        tx.commit().map_err(sql_err(&db, "commit"))?;
        self.last_seq = projector.last_seq();
        self.next_offset = offset;
        Ok(applied)
    }

    /// Bytes in the WAL file: what the next checkpoint has to copy and sync (an overestimate
    /// after SQLite's own checkpoint, which restarts the WAL without shrinking the file).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(with_suffix(&self.path, "-wal")).map_or(0, |m| m.len())
    }

    /// Copy the WAL into the database and empty it. `false`: a reader held an older snapshot
    /// (a query running at that moment), so the WAL could not be emptied; try again later.
    pub fn checkpoint(&mut self) -> Result<bool, IndexError> {
        let blocked: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(sql_err(&self.path, "checkpoint"))?;
        Ok(blocked == 0)
    }

    /// Checkpoint and leave the file in rollback-journal mode, so that readers opening it
    /// read-only while no daemon runs create no `-wal`/`-shm` files.
    pub fn close(self) -> Result<(), IndexError> {
        let db = self.path.clone();
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;")
            .map_err(sql_err(&db, "checkpoint"))?;
        self.conn.close().map_err(|(_, e)| sql_err(&db, "close")(e))
    }
}

#[cfg(test)]
mod tests;
