//! The Linux watcher: one inotify descriptor over a directory tree, read on its own thread,
//! turned into hints. Keeps the tree's watches current as directories come and go. Opens no
//! file; lists new directories and stats the files their writers are done with (on this
//! thread, so that the daemon's echo of its own moves costs its thread no syscall).
//!
//! After each read it pauses before waiting again. A thread blocked on the descriptor is
//! woken by every event that arrives, and in a burst most events are the daemon's own
//! writes in the task folders: those wake-ups were a fifth of the daemon's CPU per task
//! (docs/benchmarks.md, run 12). During the pause the kernel queues events, waking no one;
//! they are read at once afterwards. An event that arrives while the thread waits is
//! forwarded at once, so a lone change (a hand edit, one task) is never delayed.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::inotify::{Inotify, RawEvent, wait_readable};
use super::{Hint, Seen};

/// Names coming and going and writers closing. Opens, reads, writes and attribute changes
/// are not asked for: the daemon's own reads and writes would be most of them, and a writer
/// that keeps its file open is seen through its mtime (the intake's settle rule).
const MASK: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_ONLYDIR;

/// Far below what fills the kernel's queue (16,384 events by default) at any rate the
/// daemon writes.
const PAUSE: Duration = Duration::from_millis(5);

pub struct TreeWatcher {
    /// Written to stop the thread.
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl TreeWatcher {
    pub fn start(dir: &Path, unstated: &Path, tx: UnboundedSender<Hint>) -> io::Result<TreeWatcher> {
        let mut tree = Tree {
            inotify: Inotify::new()?,
            dirs: HashMap::new(),
            unstated: unstated.to_path_buf(),
            tx,
        };
        // The root may be a symlink (a shared folder linked into the work tree); below it
        // only real directories are followed, so a link can never lead the walk in a loop.
        tree.add(dir, 0, None)?;
        // SAFETY: plain syscall; the descriptor is owned by the `OwnedFd` below.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if stop < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just opened, owned by nothing else.
        let stop = unsafe { OwnedFd::from_raw_fd(stop) };
        let stop_fd = stop.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || tree.run(stop_fd))?;
        Ok(TreeWatcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TreeWatcher {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes we own to our eventfd.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Tree {
    inotify: Inotify,
    /// Each watched directory by its watch.
    dirs: HashMap<i32, PathBuf>,
    /// Whose files are not stat-ed.
    unstated: PathBuf,
    tx: UnboundedSender<Hint>,
}

impl Tree {
    fn run(mut self, stop: i32) {
        loop {
            let read = wait_readable(&[self.inotify.as_raw_fd(), stop], -1).and_then(|ready| {
                if ready.contains(&stop) {
                    Ok(None)
                } else {
                    self.inotify.read_queued().map(Some)
                }
            });
            match read {
                Ok(Some(events)) if self.forward(&events) => std::thread::sleep(PAUSE),
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("file watching stopped ({e}); relying on periodic rescans");
                    // What happened since the last read is known only from the folders.
                    let _ = self.tx.send(Hint::Rescan);
                    return;
                }
            }
        }
    }

    /// Send what `events` say, consecutive paths of the same kind as one hint; false when
    /// the daemon is gone.
    fn forward(&mut self, events: &[RawEvent]) -> bool {
        let mut hints: Vec<Hint> = Vec::new();
        for ev in events {
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                hints.push(Hint::Rescan);
                continue;
            }
            if ev.mask & libc::IN_IGNORED != 0 {
                self.dirs.remove(&ev.wd);
                continue;
            }
            let Some(dir) = self.dirs.get(&ev.wd) else {
                continue;
            };
            if ev.name.is_empty() {
                continue;
            }
            let path = dir.join(&ev.name);
            if ev.mask & libc::IN_ISDIR != 0 {
                if ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                    // Files may be in it before its watch is: report them.
                    let mut found = Vec::new();
                    let _ = self.add(&path, libc::IN_DONT_FOLLOW, Some(&mut found));
                    let found = found.into_iter().map(|p| Seen::new(p, false, &self.unstated));
                    push_paths(&mut hints, found.collect(), false);
                } else if ev.mask & libc::IN_MOVED_FROM != 0 {
                    // Its tasks left with it, and no event says so for each.
                    self.forget(&path);
                    hints.push(Hint::Rescan);
                }
                continue;
            }
            let complete = ev.mask & (libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO) != 0;
            push_paths(
                &mut hints,
                vec![Seen::new(path, complete, &self.unstated)],
                complete,
            );
        }
        hints.into_iter().all(|h| self.tx.send(h).is_ok())
    }

    /// Watch `dir` (`flags` added to the mask) and every directory below it; with `found`,
    /// collect the files in them.
    fn add(&mut self, dir: &Path, flags: u32, mut found: Option<&mut Vec<PathBuf>>) -> io::Result<()> {
        let wd = self.inotify.watch(dir, MASK | flags)?;
        self.dirs.insert(wd, dir.to_path_buf());
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    // A directory removed meanwhile is no longer ours to watch.
                    let _ = self.add(&path, libc::IN_DONT_FOLLOW, found.as_deref_mut());
                }
                _ => {
                    if let Some(f) = found.as_deref_mut() {
                        f.push(path);
                    }
                }
            }
        }
        Ok(())
    }

    /// Stop watching `dir` and everything below it (moved away: its watches would report
    /// paths it no longer has).
    fn forget(&mut self, dir: &Path) {
        let gone: Vec<i32> = self
            .dirs
            .iter()
            .filter(|(_, p)| p.starts_with(dir))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            self.inotify.unwatch(wd);
            self.dirs.remove(&wd);
        }
    }
}

/// Append `paths` to the last hint when it is of the same kind, else as a new hint.
fn push_paths(hints: &mut Vec<Hint>, paths: Vec<Seen>, complete: bool) {
    if paths.is_empty() {
        return;
    }
    if let Some(Hint::Paths {
        paths: last,
        complete: c,
    }) = hints.last_mut()
        && *c == complete
    {
        last.extend(paths);
        return;
    }
    hints.push(Hint::Paths { paths, complete });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    /// Hints until one satisfies `done`, or panic after 5 s.
    fn until(rx: &mut UnboundedReceiver<Hint>, what: &str, done: impl Fn(&Hint) -> bool) -> Vec<Hint> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        loop {
            while let Ok(h) = rx.try_recv() {
                let hit = done(&h);
                seen.push(h);
                if hit {
                    return seen;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no hint for {what}: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A temp root holding `dirs`, watched.
    fn watched(dirs: &[&str]) -> (tempfile::TempDir, TreeWatcher, UnboundedReceiver<Hint>) {
        let root = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let (tx, rx) = unbounded_channel();
        let watcher = TreeWatcher::start(root.path(), &root.path().join("inbox"), tx).unwrap();
        (root, watcher, rx)
    }

    fn names(hint: &Hint, path: &Path, complete: bool) -> bool {
        matches!(hint, Hint::Paths { paths, complete: c } if *c == complete && paths.iter().any(|p| p.path == path))
    }

    #[test]
    fn files_written_renamed_and_removed_below_the_root_are_reported() {
        let (root, watcher, mut rx) = watched(&["assigned/bot"]);
        let file = root.path().join("assigned/bot/t.yaml");
        std::fs::write(&file, "id: t\n").unwrap();
        until(&mut rx, "a write closed", |h| names(h, &file, true));
        let moved = root.path().join("assigned/bot/u.yaml");
        std::fs::rename(&file, &moved).unwrap();
        until(&mut rx, "the rename's source", |h| names(h, &file, false));
        std::fs::remove_file(&moved).unwrap();
        until(&mut rx, "the removal", |h| names(h, &moved, false));
        drop(watcher);
    }

    #[test]
    fn a_finished_file_comes_with_what_its_stat_found_except_in_the_unstated_folder() {
        let (root, _watcher, mut rx) = watched(&["assigned/bot", "inbox"]);
        let task = root.path().join("assigned/bot/t.yaml");
        std::fs::write(&task, "id: t\n").unwrap();
        let dropped = root.path().join("inbox/u.yaml");
        std::fs::write(&dropped, "id: u\n").unwrap();
        let mut hints = until(&mut rx, "the task's write closed", |h| names(h, &task, true));
        hints.extend(until(&mut rx, "the drop's write closed", |h| {
            names(h, &dropped, true)
        }));
        let stat_of = |path: &Path| -> Vec<Option<crate::lifecycle::fsops::Fingerprint>> {
            hints
                .iter()
                .filter_map(|h| match h {
                    Hint::Paths {
                        paths,
                        complete: true,
                    } => Some(paths),
                    _ => None,
                })
                .flatten()
                .filter(|seen| seen.path == path)
                .map(|seen| seen.fingerprint)
                .collect()
        };
        let now = crate::lifecycle::fsops::Fingerprint::of(&std::fs::symlink_metadata(&task).unwrap());
        assert_eq!(stat_of(&task), vec![Some(now)]);
        assert_eq!(stat_of(&dropped), vec![None], "the inbox's files are read anyway");
    }

    #[test]
    fn a_new_directory_is_watched_and_what_it_already_holds_is_reported() {
        let (root, _watcher, mut rx) = watched(&[]);
        // Made elsewhere and moved in whole: no event names the file inside.
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("zed/deep")).unwrap();
        std::fs::write(outside.path().join("zed/deep/early.yaml"), "x").unwrap();
        std::fs::rename(outside.path().join("zed"), root.path().join("zed")).unwrap();
        let early = root.path().join("zed/deep/early.yaml");
        until(&mut rx, "the file that came with its directory", |h| {
            names(h, &early, false)
        });
        let later = root.path().join("zed/deep/later.yaml");
        std::fs::write(&later, "y").unwrap();
        until(&mut rx, "a file in the new directory", |h| names(h, &later, true));
    }

    #[test]
    fn a_directory_moved_away_asks_for_a_rescan_and_is_no_longer_watched() {
        let (root, _watcher, mut rx) = watched(&["done/bot"]);
        let away = tempfile::tempdir().unwrap();
        std::fs::rename(root.path().join("done"), away.path().join("done")).unwrap();
        until(&mut rx, "the rescan", |h| matches!(h, Hint::Rescan));
        std::fs::write(away.path().join("done/bot/gone.yaml"), "x").unwrap();
        let marker = root.path().join("marker.yaml");
        std::fs::write(&marker, "x").unwrap();
        let seen = until(&mut rx, "the marker", |h| names(h, &marker, true));
        assert!(
            !seen.iter().any(
                |h| matches!(h, Hint::Paths { paths, .. } if paths.iter().any(|p| p.path.ends_with("gone.yaml")))
            ),
            "a directory outside the root is not reported: {seen:?}"
        );
    }

    #[test]
    fn a_root_that_is_a_symlink_is_followed() {
        let (real, _keep, _rx) = watched(&["inbox"]);
        let holder = tempfile::tempdir().unwrap();
        let link = holder.path().join("collaboration");
        std::os::unix::fs::symlink(real.path(), &link).unwrap();
        let (tx, mut rx) = unbounded_channel();
        let _watcher = TreeWatcher::start(&link, &link.join("inbox"), tx).unwrap();
        let file = link.join("inbox/t.yaml");
        std::fs::write(&file, "x").unwrap();
        until(&mut rx, "a file below the linked root", |h| names(h, &file, true));
    }

    #[test]
    fn dropping_the_watcher_stops_its_thread() {
        let (_root, watcher, mut rx) = watched(&[]);
        drop(watcher);
        // The thread held the only sender: the channel closes once it has ended.
        assert!(rx.blocking_recv().is_none());
    }
}
