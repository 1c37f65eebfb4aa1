//! The watcher where there is no inotify (macOS: FSEvents), through notify: its events are
//! forwarded as hints, never handled in its callback.

use std::path::Path;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::Hint;

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
