//! Removing files without freeing them on the ack path. The write path takes a file out of
//! its folder by renaming it into `work/.agentplane/trash/` (a directory entry moved, nothing
//! freed), and keeps a file it is about to replace alive there by a hard link; a background
//! thread unlinks what lands in the trash once the daemon has been quiet for a second.
//! Freeing an inode can wait on the disk: on ext4 mounted with `discard` and without a
//! journal, every unlink discards the file's blocks synchronously (`blkdev_issue_discard`
//! inside `unlink`, measured in docs/benchmarks.md).
//!
//! The trash is never read. What a crash leaves in it is removed by the next start's sweep.
//! May not: remove anything outside the trash directory, except a file it was asked to remove
//! and could not move there (another filesystem).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fsops::{self, FsError};

pub struct Trash {
    dir: PathBuf,
    /// Names in the trash are `<pid>-<n>`: unique within this run; a clash with a leftover of
    /// an earlier run only replaces one piece of garbage with another.
    pid: u32,
    next: u64,
    wake: Option<SyncSender<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl Trash {
    /// Create the trash directory and start the sweeper, which first removes what an earlier
    /// run left there.
    pub fn open(dir: PathBuf) -> Result<Trash, FsError> {
        fsops::create_dir_all(&dir)?;
        // One pending wake-up is enough: a sweep takes everything in the directory.
        let (wake, woken) = mpsc::sync_channel(1);
        let swept = dir.clone();
        let sweeper = std::thread::Builder::new()
            .name("trash".into())
            .spawn(move || sweep_until_closed(&swept, &woken))
            .map_err(fsops::ctx("start the sweeper of", &dir))?;
        let trash = Trash {
            dir,
            pid: std::process::id(),
            next: 0,
            wake: Some(wake),
            sweeper: Some(sweeper),
        };
        trash.sweep();
        Ok(trash)
    }

    fn next_name(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("{}-{}", self.pid, self.next))
    }

    /// Take `path` out of its folder; the caller fsyncs that folder. A file already gone is
    /// fine (recovery redoes removals).
    pub fn remove(&mut self, path: &Path) -> Result<(), FsError> {
        let to = self.next_name();
        match std::fs::rename(path, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // Not on the trash's filesystem (or not movable): free it here instead.
            Err(_) => fsops::remove_file(path),
        }
    }

    /// Keep the file now at `path` alive in the trash, so that renaming another file over it
    /// does not free it inside the rename. Best effort: without the link, the rename frees
    /// the old file itself, which is only slower.
    pub fn keep(&mut self, path: &Path) {
        let to = self.next_name();
        let _ = std::fs::hard_link(path, &to);
    }

    /// Ask the sweeper to empty the trash.
    pub fn sweep(&self) {
        if let Some(wake) = &self.wake
            && let Err(TrySendError::Disconnected(())) = wake.try_send(())
        {
            tracing::warn!(dir = %self.dir.display(), "the trash sweeper has stopped; files stay in the trash until the next start");
        }
    }
}

impl Drop for Trash {
    /// A clean stop leaves the trash empty: the sweeper finishes its last sweep first.
    fn drop(&mut self) {
        self.wake.take();
        if let Some(sweeper) = self.sweeper.take() {
            let _ = sweeper.join();
        }
    }
}

/// The sweeper waits for this long without new trash before it sweeps…
const QUIET: Duration = Duration::from_secs(1);
/// …but never longer than this after the first unswept file, so a steady stream of work
/// cannot grow the trash without bound.
const AT_MOST: Duration = Duration::from_secs(30);

/// Sweep once the daemon has been quiet for `QUIET`: freeing inodes in the middle of a
/// burst slows the burst's own file creations (ext4 without a journal skips inodes freed in
/// the last half minute and scans on past them, see docs/benchmarks.md).
fn sweep_until_closed(dir: &Path, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        let first = Instant::now();
        loop {
            match woken.recv_timeout(QUIET) {
                Ok(()) if first.elapsed() < AT_MOST => continue,
                Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return sweep(dir),
            }
        }
        sweep(dir);
    }
    sweep(dir);
}

fn sweep(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the trash");
            return;
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a file from the trash");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_files_leave_their_folder_and_the_trash_empties() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("inbox");
        std::fs::create_dir(&folder).unwrap();
        let leftover_dir = tmp.path().join("trash");
        std::fs::create_dir(&leftover_dir).unwrap();
        std::fs::write(leftover_dir.join("1-1"), "left by a crash").unwrap();
        let mut trash = Trash::open(leftover_dir.clone()).unwrap();
        for i in 0..50 {
            let f = folder.join(format!("t{i}.yaml"));
            std::fs::write(&f, "id: t").unwrap();
            trash.remove(&f).unwrap();
            assert!(!f.exists(), "{} is still in its folder", f.display());
        }
        trash.remove(&folder.join("never-there.yaml")).unwrap();
        trash.sweep();
        drop(trash);
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(&leftover_dir).unwrap().count(),
            0,
            "the trash was not emptied"
        );
    }

    #[test]
    fn a_kept_file_survives_being_replaced_until_the_sweep() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("t.yaml");
        std::fs::write(&file, "old").unwrap();
        let mut trash = Trash::open(tmp.path().join("trash")).unwrap();
        trash.keep(&file);
        std::fs::write(tmp.path().join("new"), "new").unwrap();
        std::fs::rename(tmp.path().join("new"), &file).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        drop(trash);
        assert_eq!(std::fs::read_dir(tmp.path().join("trash")).unwrap().count(), 0);
    }
}
