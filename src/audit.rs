//! The audit trail in git: the daemon's task-file changes, committed in batches (at most one
//! commit per second) on a background thread, so git never blocks or undoes the lifecycle.
//! Commits are made with plumbing on a private index (`read-tree`, `update-index`,
//! `write-tree`, `commit-tree`, `update-ref`): no hooks run, and the user's other staged or
//! unstaged changes are never included. Reads nothing of the task state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::config::{Config, GitCommit};

/// One change to commit: the root-relative paths it touched and a line for the message.
#[derive(Debug, Clone)]
pub struct Change {
    pub paths: Vec<String>,
    pub line: String,
    pub task_id: Option<String>,
}

pub struct Committer {
    tx: Sender<Change>,
    thread: std::thread::JoinHandle<()>,
}

impl Committer {
    /// Start committing if the config and the root allow it; `None` means no git trail.
    pub fn start(root: &Path, config: &Config) -> Option<Committer> {
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
            .spawn(move || run(repo, name, email, rx))
            .ok()?;
        Some(Committer { tx, thread })
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
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "git {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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
        let mut args = vec!["update-index", "--add", "--remove", "--"];
        args.extend(paths.iter().map(String::as_str));
        git(&top, &args, &env)?;
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
        let mut reset = vec!["reset", "-q", "--"];
        reset.extend(paths.iter().map(String::as_str));
        git(&top, &reset, &[]).map(|_| ())
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

fn run(repo: Repo, name: String, email: String, rx: Receiver<Change>) {
    let mut last_commit = Instant::now() - Duration::from_secs(1);
    while let Ok(first) = rx.recv() {
        let wait = Duration::from_secs(1).saturating_sub(last_commit.elapsed());
        std::thread::sleep(wait);
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        if let Err(e) = repo.commit(&batch, &name, &email) {
            tracing::warn!(
                "git commit of {} task changes failed (the lifecycle goes on): {e}",
                batch.len()
            );
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
            },
            Change {
                paths: vec!["b".into()],
                line: "t2: assigned → done".into(),
                task_id: Some("t2".into()),
            },
        ];
        let m = message(&changes);
        assert!(m.starts_with("agentplane: 2 changes to 2 tasks\n\nt1: new → assigned\n"));
        assert!(m.ends_with("Task: t1\nTask: t2\n"));
    }
}
