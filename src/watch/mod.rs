//! File watching as hints only: the paths that changed, whether the writer is done with a
//! file (closed after writing, or renamed in), what a stat of it found once the event was
//! read, and a rescan flag when events were lost. The daemon decides what to look at; what a
//! directory holds now is always re-read from disk. On Linux our own inotify loop (`tree`),
//! elsewhere notify (`portable`); see decisions.md.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::UnboundedSender;

use crate::lifecycle::fsops::Fingerprint;

#[cfg(target_os = "linux")]
pub mod inotify;
#[cfg(any(not(target_os = "linux"), test))]
mod portable;
#[cfg(target_os = "linux")]
mod tree;

#[derive(Debug)]
pub enum Hint {
    /// These paths changed; `complete` when the event says the writer finished.
    Paths { paths: Vec<Seen>, complete: bool },
    /// Events were lost: everything must be rescanned.
    Rescan,
}

/// A path an event named.
#[derive(Debug)]
pub struct Seen {
    pub path: PathBuf,
    /// What a stat of the path found after the event was read: its file was that version at
    /// some moment since the event, and any later change makes an event of its own. `None`:
    /// gone, not a file, or not stat-ed (a portable watcher, a folder whose files nobody
    /// compares).
    pub fingerprint: Option<Fingerprint>,
}

impl Seen {
    /// A path an event named; `complete`: the event says its writer finished, so it is
    /// stat-ed (unless it is directly in `unstated`).
    fn new(path: PathBuf, complete: bool, unstated: &Path) -> Seen {
        let fingerprint = if complete && path.parent() != Some(unstated) {
            std::fs::symlink_metadata(&path)
                .ok()
                .map(|meta| Fingerprint::of(&meta))
        } else {
            None
        };
        Seen { path, fingerprint }
    }
}

/// Watches `dir` and everything below it until dropped.
#[cfg(target_os = "linux")]
pub type Watcher = tree::TreeWatcher;
#[cfg(not(target_os = "linux"))]
pub type Watcher = notify::RecommendedWatcher;

/// Start watching `dir` recursively, sending hints to `tx`. Files written or renamed in are
/// stat-ed on the watcher's thread, except those directly in `unstated` (where the daemon
/// reads every file anyway).
pub fn start(dir: &Path, unstated: &Path, tx: UnboundedSender<Hint>) -> std::io::Result<Watcher> {
    #[cfg(target_os = "linux")]
    return tree::TreeWatcher::start(dir, unstated, tx);
    #[cfg(not(target_os = "linux"))]
    return portable::start(dir, unstated, tx).map_err(std::io::Error::other);
}
