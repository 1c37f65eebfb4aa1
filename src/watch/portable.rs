//! The watcher where there is no inotify (macOS: FSEvents), through notify: its events are
//! forwarded as hints, never handled in its callback.

use std::path::Path;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::{Hint, Seen};

pub fn start(
    dir: &Path,
    unstated: &Path,
    tx: UnboundedSender<Hint>,
) -> notify::Result<notify::RecommendedWatcher> {
    let unstated = unstated.to_path_buf();
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
                    paths: ev
                        .paths
                        .into_iter()
                        .map(|p| Seen::new(p, complete, &unstated))
                        .collect(),
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

/// Run on Linux too (notify's inotify backend), so that CI builds and exercises this file.
#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::*;

    /// The hints that arrive within `wait`, stopping early once `done` says so.
    fn hints_for(
        rx: &mut UnboundedReceiver<Hint>,
        wait: Duration,
        done: impl Fn(&[Hint]) -> bool,
    ) -> Vec<Hint> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        while Instant::now() < deadline && !done(&seen) {
            match rx.try_recv() {
                Ok(hint) => seen.push(hint),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        seen
    }

    fn names(hints: &[Hint], path: &Path, complete: bool) -> bool {
        hints.iter().any(|h| {
            matches!(h, Hint::Paths { paths, complete: c } if *c == complete && paths.iter().any(|p| p.path == path))
        })
    }

    #[test]
    fn a_file_renamed_in_and_a_file_closed_after_writing_are_complete() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("inbox")).unwrap();
        let (tx, mut rx) = unbounded_channel();
        let _watcher = start(&root, &root.join("inbox"), tx).unwrap();
        let renamed: PathBuf = root.join("inbox/a.yaml");
        std::fs::write(root.join("inbox/.a.tmp"), "agent: x\n").unwrap();
        std::fs::rename(root.join("inbox/.a.tmp"), &renamed).unwrap();
        let written = root.join("inbox/b.yaml");
        std::fs::write(&written, "agent: x\n").unwrap();
        let hints = hints_for(&mut rx, Duration::from_secs(5), |h| {
            names(h, &renamed, true) && names(h, &written, true)
        });
        assert!(
            names(&hints, &renamed, true),
            "no complete hint for the rename: {hints:?}"
        );
        assert!(
            names(&hints, &written, true),
            "no complete hint for the close: {hints:?}"
        );
    }

    #[test]
    fn reading_a_file_is_no_hint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let file = root.join("a.yaml");
        std::fs::write(&file, "agent: x\n").unwrap();
        let (tx, mut rx) = unbounded_channel();
        let _watcher = start(&root, &root.join("inbox"), tx).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "agent: x\n");
        let hints = hints_for(&mut rx, Duration::from_millis(300), |h| !h.is_empty());
        assert!(hints.is_empty(), "a read was reported: {hints:?}");
    }
}
