//! The root and its folders: finding the root, and the one place that turns a task's status,
//! agent and id into a path. Pure path arithmetic plus root discovery; never creates or moves files.

use std::path::{Path, PathBuf};

use crate::task::Status;

/// Where everything of one root lives.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    pub fn collab(&self) -> PathBuf {
        self.root.join("work/collaboration")
    }
    pub fn inbox(&self) -> PathBuf {
        self.collab().join("inbox")
    }
    pub fn rejected(&self) -> PathBuf {
        self.collab().join("rejected")
    }
    pub fn fridge(&self) -> PathBuf {
        self.collab().join("fridge")
    }
    pub fn archive(&self) -> PathBuf {
        self.collab().join("archive")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("work/.agentplane")
    }
    pub fn events(&self) -> PathBuf {
        self.state_dir().join("events.jsonl")
    }
    /// Files the daemon took out of the task folders, until its sweeper unlinks them.
    pub fn trash(&self) -> PathBuf {
        self.state_dir().join("trash")
    }
    /// The new contents of the last batch's in-place rewrites of inbox files (`lifecycle::redo`).
    pub fn redo_record(&self) -> PathBuf {
        self.state_dir().join("redo.jsonl")
    }
    /// The seq of the last event whose file changes are committed to git.
    pub fn audit_mark(&self) -> PathBuf {
        self.state_dir().join("audited-seq")
    }
    pub fn lock(&self) -> PathBuf {
        self.state_dir().join("daemon.lock")
    }
    pub fn status_dir(&self) -> PathBuf {
        self.root.join("work/status")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("work/logs")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("agentplane.yaml")
    }
    pub fn log_dir(&self, task_id: &str, attempt: u32) -> PathBuf {
        self.logs().join(task_id).join(attempt.to_string())
    }

    /// The lifecycle folder that a status names, relative to the root: `assigned/<agent>`,
    /// `done/<agent>`, `error/<agent>`, or the inbox for statuses that only exist before intake.
    pub fn status_folder(status: Status, agent: &str) -> String {
        match status {
            Status::New | Status::Inbox => "work/collaboration/inbox".to_string(),
            Status::Assigned | Status::InProgress | Status::Blocked => {
                format!("work/collaboration/assigned/{agent}")
            }
            Status::Done => format!("work/collaboration/done/{agent}"),
            Status::Error => format!("work/collaboration/error/{agent}"),
        }
    }

    /// Relative path of the file a task with this status should live in.
    pub fn task_path(status: Status, agent: &str, id: &str) -> String {
        format!("{}/{id}.yaml", Self::status_folder(status, agent))
    }

    pub fn abs(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Root-relative form of a path under the root, with `/` separators (as logged).
    pub fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

/// Find the root: `--root`, else `$AGENTPLANE_ROOT`, else the nearest ancestor of the current
/// directory that holds `work/collaboration/` (the way git finds `.git`).
pub fn find_root(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("AGENTPLANE_ROOT").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let cwd = std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    cwd.ancestors()
        .find(|dir| dir.join("work/collaboration").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "no agentplane root found: no work/collaboration/ in {} or any parent; \
                 run `agentplane init` or pass --root DIR",
                cwd.display()
            )
        })
}

/// Names the daemon never reads in any task folder: dot-files and editor/writer temp files.
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".tmp")
        || name.ends_with(".partial")
        || name.ends_with(".swp")
        || name.ends_with(".swx")
}

pub fn is_yaml_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}
