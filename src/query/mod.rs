//! The READ side (ADR-047 query path): `status`, `list`, `show`, `events`, `logs`, `costs`,
//! `runs`, `wait` and `check`. Answers come from the SQLite index through
//! `store::index::read` (opened read-only, `immutable` while no daemon runs, so not even a
//! `-wal` file appears), from the event log through `store::logread`, and from task files
//! and attempt logs through plain reads. Without a usable index the answer is projected from
//! the log in memory and stderr says so; the index is never created from here.
//!
//! Nothing here writes: no task file, log, index, read model or lock. This module may not
//! import the write side — `command`, `store::journal::Journal`, the index's write half
//! (`Index`, `rebuild`), `lifecycle::fsops` writers, `request`, `daemon`, `publish`,
//! `readmodel` — and `tests/readonly.rs` fails if it does.

mod check;
mod costs;
mod events;
mod status;
mod table;
mod tasks;
mod wait;

use std::io::Write;

use crate::event::Event;
use crate::layout::Layout;
use crate::store::index::read::{CostKey, IndexError, Origin, Reader, db_path};
use crate::store::logread::{self, LogError};

/// A query that could not answer: its exit code (1 refused / not found, 2 environment) and
/// what to tell the user.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    fn environment(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<IndexError> for Failure {
    fn from(e: IndexError) -> Self {
        Failure::environment(format!(
            "{e}; run `agentplane check`, and `agentplane index rebuild` while no daemon runs"
        ))
    }
}

impl From<LogError> for Failure {
    fn from(e: LogError) -> Self {
        Failure::environment(e.to_string())
    }
}

type Answer = Result<i32, Failure>;

/// The read-only commands, as the CLI parsed them.
pub enum Query {
    Status,
    List {
        status: Option<String>,
        agent: Option<String>,
        priority: Option<String>,
    },
    Show {
        id: String,
    },
    Events {
        task: Option<String>,
        since: u64,
        follow: bool,
    },
    Logs {
        id: String,
        attempt: Option<u32>,
        stderr: bool,
        follow: bool,
    },
    Costs {
        by: CostKey,
    },
    Runs {
        run_id: Option<String>,
    },
    Wait {
        id: String,
        timeout_s: Option<f64>,
    },
    Check,
}

/// Answer a query; returns the exit code.
pub fn run(layout: &Layout, query: Query, json: bool) -> i32 {
    if !layout.collab().is_dir() {
        eprintln!(
            "agentplane: {} has no work/collaboration/; run `agentplane init {}` or pass --root",
            layout.root.display(),
            layout.root.display()
        );
        return 2;
    }
    let answer = match query {
        Query::Status => status::status(layout, json),
        Query::List {
            status,
            agent,
            priority,
        } => tasks::list(layout, status, agent, priority, json),
        Query::Show { id } => tasks::show(layout, &id, json),
        Query::Events { task, since, follow } => events::events(layout, task.as_deref(), since, follow, json),
        Query::Logs {
            id,
            attempt,
            stderr,
            follow,
        } => events::logs(layout, &id, attempt, stderr, follow, json),
        Query::Costs { by } => costs::costs(layout, by, json),
        Query::Runs { run_id } => costs::runs(layout, run_id.as_deref(), json),
        Query::Wait { id, timeout_s } => wait::wait(layout, &id, timeout_s, json),
        Query::Check => check::check(layout, json),
    };
    match answer {
        Ok(code) => code,
        Err(f) => {
            eprintln!("agentplane: {}", f.message);
            f.code
        }
    }
}

fn note(text: &str) {
    eprintln!("agentplane: note: {text}");
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

fn print_json(value: &impl serde::Serialize) {
    print(&(serde_json::to_string(value).expect("answers serialize") + "\n"));
}

/// The pid of the daemon holding the root's lock, if one is alive. Reads the lock file's pid
/// (never takes the lock: that could make a starting daemon fail).
pub(crate) fn daemon_pid(layout: &Layout) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(layout.lock()).ok()?.trim().parse().ok()?;
    if pid == 0 || pid == std::process::id() {
        return None;
    }
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
        return None;
    }
    // Where /proc exists, a recycled pid of another program does not count.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(argv0)
                .contains("agentplane")
                .then_some(pid)
        }
        Err(_) => Some(pid),
    }
}

/// Where a query's answer comes from.
struct Source {
    reader: Reader,
    /// Seq of the log's last complete event.
    log_last: u64,
    daemon: Option<u32>,
}

impl Source {
    /// The index if it is usable (saying on stderr when it is behind the log), else the log
    /// projected into memory (saying so).
    fn open(layout: &Layout) -> Result<Source, Failure> {
        let daemon = daemon_pid(layout);
        let log = layout.events();
        let last = logread::last_event(&log)?;
        let log_last = last.as_ref().map_or(0, |(e, _)| e.seq);
        let db = db_path(layout);
        let fallback = |why: String| -> Result<Source, Failure> {
            if log_last > 0 {
                note(&format!(
                    "{why}; answering from the event log instead (slower). The daemon rebuilds the \
                     index at start; without a daemon run `agentplane index rebuild`"
                ));
            }
            let (reader, _) = Reader::from_log(&log)?;
            Ok(Source {
                reader,
                log_last,
                daemon,
            })
        };
        if !db.exists() {
            return fallback(format!("there is no index ({})", db.display()));
        }
        let reader = match Reader::open(&db, &log, daemon.is_some()) {
            Ok(r) => r,
            Err(e) => return fallback(format!("the index cannot be used ({e})")),
        };
        let at = reader.last_seq();
        if at > log_last {
            return fallback(format!(
                "the index ({}) is ahead of the event log (seq {at} > {log_last}): it belongs to another log",
                db.display()
            ));
        }
        if at == log_last && at > 0 {
            let ours = reader.event_line(at)?;
            if ours.as_deref() != last.as_ref().map(|(_, l)| l.as_str()) {
                return fallback(format!(
                    "the index ({}) diverges from the event log at seq {at}",
                    db.display()
                ));
            }
        }
        if at < log_last {
            let why = match daemon {
                Some(pid) => format!("the daemon (pid {pid}) is catching up"),
                None => "no daemon is running; start one, or run `agentplane index rebuild`".into(),
            };
            note(&format!(
                "the index is behind the event log (index at seq {at}, log at {log_last}): answers may \
                 miss the latest {} event(s); {why}",
                log_last - at
            ));
        }
        Ok(Source {
            reader,
            log_last,
            daemon,
        })
    }

    /// Events the log has beyond what the reader knows (none when the reader is the log).
    fn tail(&self, layout: &Layout) -> Result<Vec<(Event, String)>, Failure> {
        if self.reader.origin() == Origin::Log || self.reader.last_seq() >= self.log_last {
            return Ok(Vec::new());
        }
        Ok(logread::read_after(&layout.events(), self.reader.last_seq())?.0)
    }
}
