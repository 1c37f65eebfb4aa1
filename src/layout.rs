//! The root and its folders: finding the root, and the one place that turns a task's status,
//! agent and id into a path. Pure path arithmetic plus root discovery; never creates or moves files.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
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
        self.abs("work/collaboration")
    }
    pub fn inbox(&self) -> PathBuf {
        self.abs("work/collaboration/inbox")
    }
    pub fn rejected(&self) -> PathBuf {
        self.abs("work/collaboration/rejected")
    }
    pub fn fridge(&self) -> PathBuf {
        self.abs("work/collaboration/fridge")
    }
    pub fn archive(&self) -> PathBuf {
        self.abs("work/collaboration/archive")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.abs("work/.agentplane")
    }
    pub fn events(&self) -> PathBuf {
        self.abs("work/.agentplane/events.jsonl")
    }
    /// Files the daemon took out of the task folders, until its sweeper unlinks them.
    pub fn trash(&self) -> PathBuf {
        self.abs("work/.agentplane/trash")
    }
    /// The new contents of the last batch's in-place rewrites of inbox files (`lifecycle::redo`).
    pub fn redo_record(&self) -> PathBuf {
        self.abs("work/.agentplane/redo.jsonl")
    }
    /// The seq of the last event whose file changes are committed to git.
    pub fn audit_mark(&self) -> PathBuf {
        self.abs("work/.agentplane/audited-seq")
    }
    pub fn lock(&self) -> PathBuf {
        self.abs("work/.agentplane/daemon.lock")
    }
    pub fn status_dir(&self) -> PathBuf {
        self.abs("work/status")
    }
    pub fn logs(&self) -> PathBuf {
        self.abs("work/logs")
    }
    pub fn config(&self) -> PathBuf {
        self.abs("agentplane.yaml")
    }
    pub fn log_dir(&self, task_id: &str, attempt: u32) -> PathBuf {
        self.abs(&format!("work/logs/{task_id}/{attempt}"))
    }

    /// The lifecycle folder that a status names, relative to the root: `assigned/<agent>`,
    /// `done/<agent>`, `error/<agent>`, or the inbox for statuses that only exist before intake.
    pub fn status_folder(status: Status, agent: &str) -> String {
        Self::folder_with_room(status, agent, 0)
    }

    /// `status_folder`, with room for `more` bytes after it. Pushed, not `format!`ted: every
    /// task taken in makes one, and formatting its path cost ~1,800 instructions.
    fn folder_with_room(status: Status, agent: &str, more: usize) -> String {
        let (base, agent) = match status {
            Status::New | Status::Inbox => ("work/collaboration/inbox", ""),
            Status::Assigned | Status::InProgress | Status::Blocked => {
                ("work/collaboration/assigned/", agent)
            }
            Status::Done => ("work/collaboration/done/", agent),
            Status::Error => ("work/collaboration/error/", agent),
        };
        let mut folder = String::with_capacity(base.len() + agent.len() + more);
        folder.push_str(base);
        folder.push_str(agent);
        folder
    }

    /// Relative path of the file a task with this status should live in.
    pub fn task_path(status: Status, agent: &str, id: &str) -> String {
        let mut path = Self::folder_with_room(status, agent, 1 + id.len() + ".yaml".len());
        path.push('/');
        path.push_str(id);
        path.push_str(".yaml");
        path
    }

    /// The root joined with a root-relative path. `Path::join` copies the root and then grows
    /// the copy (two allocations, ~1,200 instructions); a task's intake joins about ten paths,
    /// so this one allocates once. The same result: an absolute `rel` stands for itself.
    pub fn abs(&self, rel: &str) -> PathBuf {
        let root = self.root.as_os_str();
        if rel.starts_with('/') || root.is_empty() {
            return self.root.join(rel);
        }
        let mut path = OsString::with_capacity(root.len() + 1 + rel.len());
        path.push(root);
        if !root.as_bytes().ends_with(b"/") {
            path.push("/");
        }
        path.push(rel);
        PathBuf::from(path)
    }

    /// Root-relative form of a path under the root, with `/` separators (as logged).
    pub fn rel(&self, path: &Path) -> String {
        // The paths the daemon meets are the root joined with names: their bytes start with
        // the root's and a separator. `strip_prefix` compares component by component, ~3,000
        // instructions for a task file's path; this, ~400 with the `String` (once per
        // watcher hint, among others).
        let (root, bytes) = (self.root.as_os_str().as_bytes(), path.as_os_str().as_bytes());
        if let Some(rest) = bytes.strip_prefix(root).and_then(|r| r.strip_prefix(b"/"))
            && !root.is_empty()
            && !root.ends_with(b"/")
            && plain_ends(rest)
        {
            return String::from_utf8_lossy(rest).into_owned();
        }
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

/// Neither end of `rest` is a separator or a `.` component, the ones `Path::strip_prefix`
/// leaves out of what it returns.
fn plain_ends(rest: &[u8]) -> bool {
    !rest.is_empty()
        && !rest.starts_with(b"/")
        && !rest.starts_with(b"./")
        && rest != b"."
        && !rest.ends_with(b"/")
        && !rest.ends_with(b"/.")
}

/// Is the root-relative path `rel` (as logged) a file in the inbox?
pub fn in_inbox(rel: &str) -> bool {
    rel.starts_with("work/collaboration/inbox/")
}

/// Is the root-relative path `rel` a file right in the inbox, not in a folder under it?
pub fn directly_in_inbox(rel: &str) -> bool {
    rel.strip_prefix("work/collaboration/inbox/")
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

pub fn is_yaml_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn abs_joins_as_path_join_does() {
        for root in ["/r", "/r/", "r", "/"] {
            let layout = Layout::new(root);
            for rel in ["work/collaboration/inbox/a.yaml", "a", "", "/abs/b.yaml", "x//y"] {
                assert_eq!(layout.abs(rel), Path::new(root).join(rel), "{root:?} + {rel:?}");
            }
        }
    }

    #[test]
    fn only_files_right_in_the_inbox_are_directly_in_it() {
        assert!(directly_in_inbox("work/collaboration/inbox/a.yaml"));
        assert!(!directly_in_inbox("work/collaboration/inbox/sub/a.yaml"));
        assert!(!directly_in_inbox("work/collaboration/inbox/"));
        assert!(!directly_in_inbox("work/collaboration/assigned/bot/a.yaml"));
    }

    fn by_components(root: &str, path: &str) -> String {
        Path::new(path)
            .strip_prefix(root)
            .unwrap_or(Path::new(path))
            .to_string_lossy()
            .into_owned()
    }

    /// A path of `parts` names (some empty, `.` or `..`), absolute or not.
    fn made_path(parts: std::ops::Range<usize>) -> impl Strategy<Value = String> {
        (
            prop::bool::ANY,
            prop::collection::vec(
                prop::sample::select(vec!["", ".", "..", "r", "srv", "work", "x.yaml"]),
                parts,
            ),
        )
            .prop_map(|(absolute, parts)| format!("{}{}", if absolute { "/" } else { "" }, parts.join("/")))
    }

    proptest! {
        #[test]
        fn rel_is_strip_prefix(root in made_path(1..4), tail in made_path(0..6), joined in prop::bool::ANY) {
            let path = if joined { format!("{root}/{tail}") } else { tail };
            prop_assert_eq!(Layout::new(PathBuf::from(&root)).rel(Path::new(&path)), by_components(&root, &path));
        }
    }

    #[test]
    fn rel_agrees_with_the_component_comparison() {
        for root in ["/srv/r", "/srv/r/", "r", "./r", "/srv/./r", "/"] {
            let layout = Layout::new(PathBuf::from(root));
            for path in [
                "/srv/r/work/collaboration/inbox/t.yaml",
                "/srv/r//work/x",
                "/srv/r/./work/x",
                "/srv/r/.",
                "/srv/r/work/./x",
                "/srv/r/../x",
                "/srv/r/work/",
                "/srv/r/work/.",
                "/srv/r/work//x",
                "/srv/rr/work/x",
                "/srv/r",
                "/srv/r/",
                "r/work/x",
                "./r/work/x",
                "/srv/./r/work/x",
                "/elsewhere/x",
            ] {
                assert_eq!(
                    layout.rel(Path::new(path)),
                    by_components(root, path),
                    "root {root}, path {path}"
                );
            }
        }
    }
}
