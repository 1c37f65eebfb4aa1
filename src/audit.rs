//! The audit trail in git: the daemon's task-file changes, committed in batches (at most one
//! commit per second) on a background thread, so git never blocks or undoes the lifecycle.
//! Commits are made with plumbing on a private index (`read-tree`, `update-index`,
//! `write-tree`, `commit-tree`, `update-ref`): no hooks run, and the user's other staged or
//! unstaged changes are never included. Reads nothing of the task state.
//!
//! A mark file holds the seq of the last event whose changes are in git. Changes queued when
//! the daemon was killed are found at the next start from the events after it (`Backlog`)
//! and committed first. Committing a path whose content git already has changes nothing, so
//! a mark that lags (a failed commit, a lost write) only repeats work.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::config::{Config, GitCommit};

/// One change to commit: the root-relative paths it touched and a line for the message.
#[derive(Debug, Clone)]
pub struct Change {
    pub paths: Vec<String>,
    pub line: String,
    pub task_id: Option<String>,
    /// The event that made it.
    pub seq: u64,
}

/// The changes of events the audit trail has not seen yet, gathered while the log is read
/// at start: one change of all their paths.
pub struct Backlog {
    after: u64,
    first: Option<u64>,
    last: u64,
    paths: BTreeSet<String>,
}

impl Backlog {
    /// Gather the changes of events after `after`.
    pub fn after(after: u64) -> Backlog {
        Backlog {
            after,
            first: None,
            last: after,
            paths: BTreeSet::new(),
        }
    }

    pub fn wants(&self, seq: u64) -> bool {
        seq > self.after
    }

    /// A change of the next event (the log is read in order).
    pub fn add(&mut self, change: Change) {
        self.first.get_or_insert(change.seq);
        self.last = change.seq;
        self.paths.extend(change.paths);
    }

    /// One change for everything gathered, if anything was.
    pub fn into_change(self) -> Option<Change> {
        let first = self.first?;
        Some(Change {
            line: format!(
                "changes of events {first}–{} (made before the last restart, not committed then)",
                self.last
            ),
            paths: self.paths.into_iter().collect(),
            task_id: None,
            seq: self.last,
        })
    }
}

pub struct Committer {
    tx: Sender<Change>,
    thread: std::thread::JoinHandle<()>,
    /// Keeps the seq of the last event whose changes are committed.
    mark: PathBuf,
}

impl Committer {
    /// Start committing if the config and the root allow it; `None` means no git trail.
    /// `mark` is the file that keeps the seq of the last event whose changes are committed.
    pub fn start(root: &Path, config: &Config, mark: &Path) -> Option<Committer> {
        if config.git_commit == GitCommit::Never {
            return None;
        }
        let repo = match Repo::find(root) {
            Some(repo) => repo,
            None => {
                if config.git_commit == GitCommit::Always {
                    tracing::error!(root = %root.display(), "git.commit is true but the root is not in a git repository; not committing");
                }
                return None;
            }
        };
        let (name, email) = split_author(&config.git_author);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("git-audit".into())
            .spawn({
                let mark = mark.to_path_buf();
                move || run(repo, name, email, rx, mark)
            })
            .ok()?;
        Some(Committer {
            tx,
            thread,
            mark: mark.to_path_buf(),
        })
    }

    /// What to gather while the log is read at start: the events after the mark (all of
    /// them when no mark was ever written: a first start, or a root that had no trail).
    pub fn backlog(&self) -> Backlog {
        let committed = std::fs::read_to_string(&self.mark)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Backlog::after(committed)
    }

    pub fn record(&self, change: Change) {
        // The thread only stops when the daemon drops the committer.
        let _ = self.tx.send(change);
    }

    /// Commit what is pending and stop the thread.
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// `Name <mail>` → (Name, mail).
fn split_author(author: &str) -> (String, String) {
    match author.split_once('<') {
        Some((name, rest)) => (
            name.trim().to_string(),
            rest.trim_end_matches('>').trim().to_string(),
        ),
        None => (author.trim().to_string(), "agentplane@localhost".to_string()),
    }
}

struct Repo {
    /// Directory git commands run in (the root).
    root: PathBuf,
    /// The root's path inside the repository, with a trailing `/` (or empty).
    prefix: String,
    index: PathBuf,
}

fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    git_with_input(dir, args, env, &[])
}

/// `git` with `input` on its stdin: path lists go there, never into argv, whose size the
/// kernel limits (about 2 MB here: a catch-up after a long outage, or a burst of tens of
/// thousands of tasks within the second a commit waits, would exceed it).
fn git_with_input(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Result<String, String> {
    let what = args.first().unwrap_or(&"");
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    // Fed from a thread: git may fill its output pipe before it has read all its input.
    let feeder = child.stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        std::thread::spawn(move || stdin.write_all(&input))
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot run git {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if let Some(Ok(Err(e))) = feeder.map(|f| f.join()) {
        return Err(format!("git {what}: writing its input: {e}"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Repo {
    fn find(root: &Path) -> Option<Repo> {
        git(root, &["rev-parse", "--is-inside-work-tree"], &[])
            .ok()
            .filter(|s| s == "true")?;
        let prefix = git(root, &["rev-parse", "--show-prefix"], &[]).ok()?;
        let index = git(
            root,
            &[
                "rev-parse",
                "--path-format=absolute",
                "--git-path",
                "agentplane.index",
            ],
            &[],
        )
        .ok()?;
        Some(Repo {
            root: root.to_path_buf(),
            prefix,
            index: PathBuf::from(index),
        })
    }

    fn commit(&self, changes: &[Change], name: &str, email: &str) -> Result<(), String> {
        let paths: BTreeSet<String> = changes
            .iter()
            .flat_map(|c| c.paths.iter())
            .map(|p| format!("{}{p}", self.prefix))
            .collect();
        let index = self.index.to_string_lossy().into_owned();
        let env = [
            ("GIT_INDEX_FILE", index.as_str()),
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_COMMITTER_NAME", name),
            ("GIT_COMMITTER_EMAIL", email),
        ];
        // Paths are given relative to the top level, so run from there.
        let top = PathBuf::from(git(&self.root, &["rev-parse", "--show-toplevel"], &[])?);
        let head = git(&top, &["rev-parse", "-q", "--verify", "HEAD"], &[]).ok();
        match &head {
            Some(h) => git(&top, &["read-tree", h], &env)?,
            None => git(&top, &["read-tree", "--empty"], &env)?,
        };
        let mut listed = Vec::new();
        for p in &paths {
            listed.extend_from_slice(p.as_bytes());
            listed.push(0);
        }
        git_with_input(
            &top,
            &["update-index", "--add", "--remove", "-z", "--stdin"],
            &env,
            &listed,
        )?;
        let tree = git(&top, &["write-tree"], &env)?;
        if let Some(h) = &head
            && git(&top, &["rev-parse", &format!("{h}^{{tree}}")], &[])? == tree
        {
            return Ok(());
        }
        let message = message(changes);
        let mut commit_args = vec!["commit-tree", tree.as_str(), "-m", message.as_str()];
        if let Some(h) = &head {
            commit_args.extend(["-p", h.as_str()]);
        }
        let commit = git(&top, &commit_args, &env)?;
        let mut update = vec![
            "update-ref",
            "-m",
            "agentplane: task transitions",
            "HEAD",
            commit.as_str(),
        ];
        if let Some(h) = &head {
            update.push(h.as_str());
        }
        git(&top, &update, &[])?;
        // The user's index now lags HEAD for exactly these paths; bring just them up to date.
        git_with_input(
            &top,
            &["reset", "-q", "--pathspec-from-file=-", "--pathspec-file-nul"],
            // Paths, not patterns: a rejected file may be called `a[1].yaml`.
            &[("GIT_LITERAL_PATHSPECS", "1")],
            &listed,
        )
        .map(|_| ())
    }
}

fn message(changes: &[Change]) -> String {
    let ids: BTreeSet<&str> = changes.iter().filter_map(|c| c.task_id.as_deref()).collect();
    let subject = if changes.len() == 1 {
        format!("agentplane: {}", changes[0].line)
    } else {
        format!("agentplane: {} changes to {} tasks", changes.len(), ids.len())
    };
    let mut msg = subject;
    msg.push_str("\n\n");
    for c in changes {
        msg.push_str(&c.line);
        msg.push('\n');
    }
    msg.push('\n');
    for id in ids {
        msg.push_str(&format!("Task: {id}\n"));
    }
    msg
}

fn run(repo: Repo, name: String, email: String, rx: Receiver<Change>, mark: PathBuf) {
    let mut last_commit = Instant::now() - Duration::from_secs(1);
    // After a failed commit the mark stays where it was, so the next start commits that
    // batch's paths again.
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let wait = Duration::from_secs(1).saturating_sub(last_commit.elapsed());
        std::thread::sleep(wait);
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        match repo.commit(&batch, &name, &email) {
            Ok(()) if !failed => {
                let seq = batch.iter().map(|c| c.seq).max().unwrap_or(0);
                if let Err(e) = crate::lifecycle::fsops::write_atomic(&mark, seq.to_string().as_bytes()) {
                    tracing::warn!("{e}; the next start commits these changes again (no harm)");
                }
            }
            Ok(()) => {}
            Err(e) => {
                failed = true;
                tracing::warn!(
                    "git commit of {} task changes failed (the lifecycle goes on; the next start tries again): {e}",
                    batch.len()
                );
            }
        }
        last_commit = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_and_messages() {
        assert_eq!(
            split_author("agentplane <ap@localhost>"),
            ("agentplane".into(), "ap@localhost".into())
        );
        let changes = vec![
            Change {
                paths: vec!["a".into()],
                line: "t1: new → assigned".into(),
                task_id: Some("t1".into()),
                seq: 1,
            },
            Change {
                paths: vec!["b".into()],
                line: "t2: assigned → done".into(),
                task_id: Some("t2".into()),
                seq: 2,
            },
        ];
        let m = message(&changes);
        assert!(m.starts_with("agentplane: 2 changes to 2 tasks\n\nt1: new → assigned\n"));
        assert!(m.ends_with("Task: t1\nTask: t2\n"));
    }
}
