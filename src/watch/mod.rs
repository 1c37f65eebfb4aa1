//! File watching as hints only: the paths that changed, whether the writer is done with a
//! file (closed after writing, or renamed in), and a rescan flag when events were lost. The
//! daemon decides what to look at; what a directory holds now is always re-read from disk.
//! On Linux our own inotify loop (`tree`), elsewhere notify (`portable`); see decisions.md.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::UnboundedSender;

#[cfg(target_os = "linux")]
pub mod inotify;
#[cfg(any(not(target_os = "linux"), test))]
mod portable;
#[cfg(target_os = "linux")]
mod tree;

#[derive(Debug)]
pub enum Hint {
    /// These paths changed; `complete` when the event says the writer finished.
    Paths { paths: Vec<PathBuf>, complete: bool },
    /// Events were lost: everything must be rescanned.
    Rescan,
}

/// Watches `dir` and everything below it until dropped.
#[cfg(target_os = "linux")]
pub type Watcher = tree::TreeWatcher;
#[cfg(not(target_os = "linux"))]
pub type Watcher = notify::RecommendedWatcher;

/// Start watching `dir` recursively, sending hints to `tx`.
pub fn start(dir: &Path, tx: UnboundedSender<Hint>) -> std::io::Result<Watcher> {
    #[cfg(target_os = "linux")]
    return tree::TreeWatcher::start(dir, tx);
    #[cfg(not(target_os = "linux"))]
    return portable::start(dir, tx).map_err(std::io::Error::other);
}
