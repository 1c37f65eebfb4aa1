//! Command-line surface: argument parsing and the mapping of each subcommand onto the
//! daemon, a command file written into the inbox (`request`), or setup (`init`, `demo`).
//! Exit codes: 0 ok, 1 refused, 2 usage or environment error.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::layout::{self, Layout};
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
        cmd => {
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
                Command::Init { .. }
                | Command::Daemon { .. }
                | Command::Submit { .. }
                | Command::Demo { .. } => {
                    unreachable!("handled above")
                }
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
