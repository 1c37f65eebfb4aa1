//! Command-line surface: argument parsing and the mapping of each subcommand onto the
//! daemon, a command file written into the inbox (`request`), a read-only query (`query`),
//! the index rebuild, or setup (`init`, `demo`).
//! Exit codes: 0 ok, 1 refused / problems found, 2 usage or environment error.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::layout::{self, Layout};
use crate::query::{self, Query};
use crate::store::index::{self, RebuildRefused, read::CostKey};
use crate::{daemon, demo, init, request};

#[derive(Parser)]
#[command(
    name = "agentplane",
    version,
    about = "A filesystem-native control plane for AI coding agents"
)]
pub struct Cli {
    /// The root holding work/collaboration/ (default: $AGENTPLANE_ROOT, else the nearest parent that has one)
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the folders, a commented agentplane.yaml and .gitignore entries
    Init { dir: Option<PathBuf> },
    /// Run the control plane in the foreground
    Daemon {
        /// Process everything pending, wait for running tasks, then exit
        #[arg(long)]
        once: bool,
    },
    /// Write a task into the inbox atomically and print its id
    Submit {
        /// A task file to submit
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file", requires = "agent")]
        title: Option<String>,
        #[arg(long, conflicts_with = "file", requires = "title")]
        agent: Option<String>,
        #[arg(long, conflicts_with = "file")]
        priority: Option<String>,
        #[arg(long = "depends-on", conflicts_with = "file")]
        depends_on: Vec<String>,
    },
    /// Cancel a task (a running child is stopped with SIGINT → SIGTERM → SIGKILL)
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Queue a failed or blocked task again with a fresh attempt budget
    Retry {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give the approval a task with human_approval_required waits for
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move a task to the fridge (it keeps its status and is not dispatched)
    Freeze {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Bring a frozen task back
    Thaw {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move a done or failed task to archive/YYYY-MM/
    Archive {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give a task to another agent
    Reassign {
        id: String,
        agent: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Change a task's priority (critical, high, medium, normal, low)
    Priority {
        id: String,
        priority: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show the daemon at work on a scratch root with example tasks and an example agent
    Demo { dir: Option<PathBuf> },
    /// Task counts, per-agent queues and recorded problems (read-only)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List tasks in queue order (read-only)
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        priority: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A task: its file's fields, attempts with log paths, and event history (read-only)
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Events of the log, optionally of one task and after a seq; --follow waits for more
    Events {
        #[arg(long)]
        task: Option<String>,
        /// Only events with a greater seq
        #[arg(long, default_value_t = 0)]
        since: u64,
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// An attempt's stdout (or --stderr); --follow until the attempt ends
    Logs {
        id: String,
        /// Attempt number (default: the latest)
        #[arg(long)]
        attempt: Option<u32>,
        #[arg(long)]
        stderr: bool,
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Costs and tokens from cost_update events, summed
    Costs {
        #[arg(long, value_enum, default_value_t = CostBy::Agent)]
        by: CostBy,
        #[arg(long)]
        json: bool,
    },
    /// Run containers (events carrying a run_id), or one run and its tasks
    Runs {
        run_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Block until a task is terminal: exit 0 done, 1 error (or deleted, rejected, timeout)
    Wait {
        id: String,
        /// Give up after this many seconds (exit 1)
        #[arg(long)]
        timeout: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Consistency of folders, task files, log and index; exit 1 on problems
    Check {
        #[arg(long)]
        json: bool,
    },
    /// The SQLite index (work/.agentplane/index.sqlite)
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CostBy {
    Agent,
    Model,
    Day,
    Task,
}

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Rebuild the index from the event log (refused while a daemon runs: it maintains it)
    Rebuild {
        #[arg(long)]
        json: bool,
    },
}

/// The read-only commands as queries, with their `--json` flag.
fn as_query(command: Command) -> Result<(Query, bool), Command> {
    Ok(match command {
        Command::Status { json } => (Query::Status, json),
        Command::List {
            status,
            agent,
            priority,
            json,
        } => (
            Query::List {
                status,
                agent,
                priority,
            },
            json,
        ),
        Command::Show { id, json } => (Query::Show { id }, json),
        Command::Events {
            task,
            since,
            follow,
            json,
        } => (Query::Events { task, since, follow }, json),
        Command::Logs {
            id,
            attempt,
            stderr,
            follow,
            json,
        } => (
            Query::Logs {
                id,
                attempt,
                stderr,
                follow,
            },
            json,
        ),
        Command::Costs { by, json } => {
            let by = match by {
                CostBy::Agent => CostKey::Agent,
                CostBy::Model => CostKey::Model,
                CostBy::Day => CostKey::Day,
                CostBy::Task => CostKey::Task,
            };
            (Query::Costs { by }, json)
        }
        Command::Runs { run_id, json } => (Query::Runs { run_id }, json),
        Command::Wait { id, timeout, json } => (
            Query::Wait {
                id,
                timeout_s: timeout,
            },
            json,
        ),
        Command::Check { json } => (Query::Check, json),
        other => return Err(other),
    })
}

/// `agentplane index rebuild`.
fn index_rebuild(layout: &Layout, json: bool) -> i32 {
    match index::rebuild_locked(layout) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string(&report).expect("reports serialize"));
            } else {
                println!(
                    "rebuilt {} from {} events (up to seq {}): {} tasks, {} ms",
                    report.path, report.events, report.last_seq, report.tasks, report.ms
                );
                if report.torn_bytes > 0 {
                    println!(
                        "left out a torn last line of the log ({} bytes); the daemon cuts it at its next start",
                        report.torn_bytes
                    );
                }
            }
            0
        }
        Err(RebuildRefused::DaemonRunning { pid, lock }) => {
            eprintln!(
                "agentplane: refused: a daemon (pid {pid}) holds {} and maintains the index itself; \
                 stop it first to rebuild by hand — or delete the index and restart the daemon, which rebuilds it at start",
                lock.display()
            );
            2
        }
        Err(RebuildRefused::Failed(e)) => {
            eprintln!("agentplane: index rebuild failed: {e}");
            2
        }
    }
}

pub fn run(cli: Cli) -> i32 {
    let root = || layout::find_root(cli.root.as_deref());
    let fail = |code: i32, msg: String| {
        eprintln!("agentplane: {msg}");
        code
    };
    match cli.command {
        Command::Init { dir } => {
            let dir = dir.or(cli.root.clone()).unwrap_or_else(|| PathBuf::from("."));
            match init::init(&dir) {
                Ok(done) => {
                    for d in done {
                        println!("created {d}");
                    }
                    println!(
                        "next: drop task files into {}/work/collaboration/inbox/ and run `agentplane daemon`",
                        dir.display()
                    );
                    0
                }
                Err(e) => fail(2, e),
            }
        }
        Command::Daemon { once } => match root() {
            Ok(root) => match daemon::run(root, once) {
                daemon::Exit::Ok => 0,
                daemon::Exit::Environment(e) => fail(2, e),
                daemon::Exit::Failed(e) => fail(1, e),
            },
            Err(e) => fail(2, e),
        },
        Command::Demo { dir } => match demo::run(dir) {
            Ok(()) => 0,
            Err(e) => fail(2, e),
        },
        Command::Submit {
            file,
            title,
            agent,
            priority,
            depends_on,
        } => {
            let layout = match root() {
                Ok(r) => Layout::new(r),
                Err(e) => return fail(2, e),
            };
            let result = match (file, title, agent) {
                (Some(file), _, _) => request::submit_file(&layout, &file).map(|(path, id)| {
                    id.unwrap_or_else(|| format!("(id to be generated; written as {})", path.display()))
                }),
                (None, Some(title), Some(agent)) => {
                    request::submit_new(&layout, &title, &agent, priority.as_deref(), &depends_on)
                }
                _ => return fail(2, "give a FILE, or --title and --agent".into()),
            };
            match result {
                Ok(id) => {
                    println!("{id}");
                    0
                }
                Err(e) => fail(1, e),
            }
        }
        Command::Index {
            command: IndexCommand::Rebuild { json },
        } => match root() {
            Ok(root) => index_rebuild(&Layout::new(root), json),
            Err(e) => fail(2, e),
        },
        cmd => {
            let cmd = match as_query(cmd) {
                Ok((query, json)) => {
                    return match root() {
                        Ok(root) => query::run(&Layout::new(root), query, json),
                        Err(e) => fail(2, e),
                    };
                }
                Err(cmd) => cmd,
            };
            let (name, id, extra) = match cmd {
                Command::Cancel { id, reason } => ("cancel", id, reason_only(reason)),
                Command::Retry { id, reason } => ("retry", id, reason_only(reason)),
                Command::Approve { id, reason } => ("approve", id, reason_only(reason)),
                Command::Freeze { id, reason } => ("freeze", id, reason_only(reason)),
                Command::Thaw { id, reason } => ("thaw", id, reason_only(reason)),
                Command::Archive { id, reason } => ("archive", id, reason_only(reason)),
                Command::Reassign { id, agent, reason } => {
                    let mut extra = reason_only(reason);
                    extra.push(("agent", agent));
                    ("reassign", id, extra)
                }
                Command::Priority { id, priority, reason } => {
                    let mut extra = reason_only(reason);
                    extra.push(("priority", priority));
                    ("priority", id, extra)
                }
                _ => unreachable!("handled above"),
            };
            let layout = match root() {
                Ok(r) => Layout::new(r),
                Err(e) => return fail(2, e),
            };
            match request::command(&layout, name, &id, &extra) {
                Ok(path) => {
                    println!("{name} {id}: written {}", path.display());
                    0
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

fn reason_only(reason: Option<String>) -> Vec<(&'static str, String)> {
    reason.map(|r| vec![("reason", r)]).unwrap_or_default()
}
