//! File watching as hints only: notify's events are forwarded (never handled in the callback)
//! as the paths they name, whether the writer is done with the file (closed after writing or
//! renamed in), and a rescan flag when the kernel queue overflowed. The daemon decides what
//! to look at; what a directory holds now is always re-read from disk.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug)]
pub enum Hint {
    /// These paths changed; `complete` when the event says the writer finished.
    Paths { paths: Vec<PathBuf>, complete: bool },
    /// Events were lost: everything must be rescanned.
    Rescan,
}

pub fn start(dir: &Path, tx: UnboundedSender<Hint>) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let hint = match res {
            Ok(ev) if ev.need_rescan() => Hint::Rescan,
            Ok(ev) => {
                let complete = matches!(
                    ev.kind,
                    EventKind::Access(AccessKind::Close(AccessMode::Write))
                        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                );
                if matches!(
                    ev.kind,
                    EventKind::Access(
                        AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
                    )
                ) {
                    return;
                }
                Hint::Paths {
                    paths: ev.paths,
                    complete,
                }
            }
            Err(_) => Hint::Rescan,
        };
        // The receiver is gone only when the daemon is shutting down.
        let _ = tx.send(hint);
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}
