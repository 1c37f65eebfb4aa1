//! Files leave the task folders without being freed on the ack path, and their inodes are
//! used again. The write path takes a file out of its folder by renaming it into
//! `work/.agentplane/trash/` (a directory entry moved, nothing freed), and keeps a file it is
//! about to replace alive there by a hard link. The next temp file the daemon needs is such a
//! spare, renamed next to its destination and overwritten, when it is a plain file of the
//! daemon's own owner and mode with no other link; so a burst neither allocates nor frees
//! inodes. A background thread unlinks the spares once the daemon has been quiet for a second.
//! Why: freeing an inode can wait on the disk (ext4 mounted with `discard` and without a
//! journal discards the blocks inside `unlink`), and allocating one scans past every inode
//! freed in the last minutes on such a filesystem; docs/benchmarks.md has the measurements.
//!
//! The same test of "one of the daemon's own files" decides whether intake may rewrite a taken
//! inbox file in its own inode (`rewrite`).
//!
//! The trash is never read. What a crash leaves in it is removed by the next start's sweep.
//! May not: remove anything outside the trash directory, except a file it was asked to remove
//! and could not move there (another filesystem), or a temp file it created itself; write a
//! file that fails that test.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::fsops::{self, Fingerprint, FsError};

/// Who owns a file the daemon creates and with which mode: a spare is used again only when it
/// is the same, so a reused inode never carries another owner's rights into a task folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Owner {
    fn of(meta: &fs::Metadata) -> Owner {
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }
    }
}

/// The files in the trash this run put there: shared by the write path, which takes spares
/// from it, and the sweeper, which frees what is left.
#[derive(Default)]
struct Heap {
    /// Files that may become temp files.
    spares: Vec<PathBuf>,
    /// Files found not to fit (another owner, another link): only ever freed.
    unfit: Vec<PathBuf>,
}

type Pile = Arc<Mutex<Heap>>;

pub struct Trash {
    dir: PathBuf,
    /// Names in the trash are `<run>-<n>`, `<run>` being this process's pid and start time:
    /// unique across runs even where every run gets the same pid (a container), and what the
    /// start's sweep tells apart from an earlier run's leftovers.
    run: String,
    next: u64,
    pile: Pile,
    /// What the daemon's own new files look like; `None` when that could not be learnt (no
    /// reuse then).
    own: Option<Owner>,
    /// A spare left the trash since the last `sync`.
    taken: bool,
    wake: Option<SyncSender<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl Trash {
    /// Create the trash directory and start the sweeper, which first removes what an earlier
    /// run left there.
    pub fn open(dir: PathBuf) -> Result<Trash, FsError> {
        fsops::create_dir_all(&dir)?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut trash = Trash {
            dir,
            run: format!("{}.{started}", std::process::id()),
            next: 0,
            pile: Pile::default(),
            own: None,
            taken: false,
            wake: None,
            sweeper: None,
        };
        // A file created the way the daemon creates every file shows what its files look like;
        // it is the first spare.
        let probe = trash.next_name();
        if let Ok(file) = fsops::create_new(&probe) {
            trash.own = file.metadata().ok().map(|m| Owner::of(&m));
            trash.spare(probe);
        }
        // One pending wake-up is enough: a sweep takes everything there is.
        let (wake, woken) = mpsc::sync_channel(1);
        let (swept, pile) = (trash.dir.clone(), trash.pile.clone());
        let ours = format!("{}-", trash.run);
        let sweeper = std::thread::Builder::new()
            .name("trash".into())
            .spawn(move || sweep_until_closed(&swept, &ours, &pile, &woken))
            .map_err(fsops::ctx("start the sweeper of", &trash.dir))?;
        trash.wake = Some(wake);
        trash.sweeper = Some(sweeper);
        Ok(trash)
    }

    fn next_name(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.join(format!("{}-{}", self.run, self.next))
    }

    fn spare(&self, path: PathBuf) {
        self.pile.lock().expect("trash pile").spares.push(path);
    }

    /// Take `path` out of its folder; the caller fsyncs that folder. A file already gone is
    /// fine (recovery redoes removals).
    pub fn remove(&mut self, path: &Path) -> Result<(), FsError> {
        let to = self.next_name();
        match fs::rename(path, &to) {
            Ok(()) => {
                self.spare(to);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            // Not on the trash's filesystem (or not movable): free it here instead.
            Err(_) => fsops::remove_file(path),
        }
    }

    /// Keep the file now at `path` alive in the trash, so that renaming another file over it
    /// does not free it inside the rename. Best effort: without the link, the rename frees
    /// the old file itself, which is only slower.
    pub fn keep(&mut self, path: &Path) {
        let to = self.next_name();
        if fs::hard_link(path, &to).is_ok() {
            self.spare(to);
        }
    }

    /// `fsops::create_temp`, on a spare inode when there is one that fits: `bytes` in a temp
    /// file next to `dest`, not yet synced, with the fingerprint of what was written.
    pub fn create_temp(&mut self, dest: &Path, bytes: &[u8]) -> Result<(PathBuf, Fingerprint), FsError> {
        if let Some(written) = self.reuse(dest, bytes) {
            return Ok(written);
        }
        fsops::create_temp(dest, bytes)
    }

    fn reuse(&mut self, dest: &Path, bytes: &[u8]) -> Option<(PathBuf, Fingerprint)> {
        let own = self.own?;
        let dir = dest.parent()?;
        loop {
            let spare = self.pile.lock().expect("trash pile").spares.pop()?;
            let tmp = fsops::temp_path(dir);
            // Out of the pile, the sweeper no longer sees it. Next to its destination before it
            // is written, so that the batch's trash fsync (`sync`) makes its departure durable
            // before it gets its task name. On a failure (the folder does not exist yet, say)
            // the spare goes back and a new file is created instead.
            if fs::rename(&spare, &tmp).is_err() {
                self.spare(spare);
                return None;
            }
            self.taken = true;
            match overwrite(&tmp, bytes, own, None) {
                Ok(fingerprint) => return Some((tmp, fingerprint)),
                // Not reusable after all (another owner, another link, a directory): back to
                // the trash to be freed, or freed here if even that fails; try the next one.
                Err(_) => {
                    let back = self.next_name();
                    match fs::rename(&tmp, &back) {
                        Ok(()) => self.pile.lock().expect("trash pile").unfit.push(back),
                        Err(_) => drop(fs::remove_file(&tmp)),
                    }
                }
            }
        }
    }

    /// Rewrite the file at `path` with `bytes` in its own inode — intake's in-place move —
    /// when it is still inode `ino` and looks like one of the daemon's own files (owner,
    /// mode, one link, so no other name and no other owner's rights see the change). An
    /// error means the caller takes the copy path; the file may then be partly rewritten.
    pub fn rewrite(&self, path: &Path, ino: u64, bytes: &[u8]) -> io::Result<Fingerprint> {
        let own = self
            .own
            .ok_or_else(|| io::Error::other("the daemon's own files are unknown"))?;
        overwrite(path, bytes, own, Some(ino))
    }

    /// Make the departure of the spares taken since the last call durable. The caller does
    /// this before it makes their new names durable: otherwise a power loss could leave an
    /// inode named both in the trash and in a task folder with one link, and the next start's
    /// sweep would free a task file.
    pub fn sync(&mut self) -> Result<(), FsError> {
        if std::mem::take(&mut self.taken) {
            fsops::fsync_dir(&self.dir)?;
        }
        Ok(())
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
/// the last minutes and scans on past them, see docs/benchmarks.md).
fn sweep_until_closed(dir: &Path, ours: &str, pile: &Pile, woken: &Receiver<()>) {
    // What an earlier run left: every name without this run's prefix.
    if let Ok(entries) = fs::read_dir(dir) {
        entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with(ours))
            .for_each(|e| free(&e.path()));
    }
    // A closed channel (the daemon stopping) ends the wait at once and then the loop.
    while woken.recv().is_ok() {
        let first = Instant::now();
        while first.elapsed() < AT_MOST && woken.recv_timeout(QUIET).is_ok() {}
        sweep(pile);
    }
    sweep(pile);
}

fn sweep(pile: &Pile) {
    let taken = std::mem::take(&mut *pile.lock().expect("trash pile"));
    taken.spares.iter().chain(&taken.unfit).for_each(|p| free(p));
}

fn free(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a file from the trash");
    }
}

/// Overwrite a file of the daemon's own (and inode `ino`, when given) in place with `bytes`:
/// no block is freed unless it shrinks past one.
fn overwrite(path: &Path, bytes: &[u8], own: Owner, ino: Option<u64>) -> io::Result<Fingerprint> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 || Owner::of(&meta) != own || ino.is_some_and(|i| i != meta.ino())
    {
        return Err(io::Error::other("not a file the daemon may rewrite"));
    }
    file.write_all_at(bytes, 0)?;
    if meta.len() > bytes.len() as u64 {
        file.set_len(bytes.len() as u64)?;
    }
    Ok(Fingerprint::of(&file.metadata()?))
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
        std::fs::write(leftover_dir.join("0-1"), "left by a crash").unwrap();
        // An earlier run with this very pid (a container gives every run the same one).
        let same_pid = leftover_dir.join(format!("{}-1", std::process::id()));
        std::fs::write(&same_pid, "left by a crash").unwrap();
        let mut trash = Trash::open(leftover_dir.clone()).unwrap();
        assert!(trash.own.is_some(), "no probe: the spares would never be reused");
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

    /// Write `path`, remove it through the trash, and return its inode.
    fn put_in_trash(trash: &mut Trash, path: &Path, text: &str) -> u64 {
        std::fs::write(path, text).unwrap();
        let ino = std::fs::metadata(path).unwrap().ino();
        trash.remove(path).unwrap();
        ino
    }

    #[test]
    fn a_removed_file_becomes_the_next_temp_file_and_a_linked_one_never_does() {
        let tmp = tempfile::tempdir().unwrap();
        let (inbox, dest) = (tmp.path().join("inbox"), tmp.path().join("assigned"));
        std::fs::create_dir(&inbox).unwrap();
        std::fs::create_dir(&dest).unwrap();
        let mut trash = Trash::open(tmp.path().join("trash")).unwrap();
        // The first spare is the probe; use it up.
        trash.create_temp(&dest.join("probe.yaml"), b"x").unwrap();

        let ino = put_in_trash(
            &mut trash,
            &inbox.join("t1.yaml"),
            "a longer text than the one that replaces it\n",
        );
        let (temp, fingerprint) = trash.create_temp(&dest.join("t1.yaml"), b"short\n").unwrap();
        assert_eq!(
            fingerprint.ino, ino,
            "the removed file's inode was not used again"
        );
        assert_eq!(std::fs::read(&temp).unwrap(), b"short\n");
        assert_eq!(fingerprint.size, 6);
        assert_eq!(temp.parent(), Some(dest.as_path()));

        // A file with another name elsewhere must not change under that name; the next spare
        // is taken instead.
        let plain_ino = put_in_trash(&mut trash, &inbox.join("t3.yaml"), "t3\n");
        let shared = inbox.join("t2.yaml");
        std::fs::write(&shared, "kept\n").unwrap();
        std::fs::hard_link(&shared, tmp.path().join("elsewhere")).unwrap();
        trash.remove(&shared).unwrap();
        let (temp, fingerprint) = trash.create_temp(&dest.join("t2.yaml"), b"new\n").unwrap();
        assert_eq!(
            fingerprint.ino, plain_ino,
            "the spare after the linked one was not used"
        );
        assert_eq!(std::fs::read(&temp).unwrap(), b"new\n");
        assert_eq!(std::fs::read(tmp.path().join("elsewhere")).unwrap(), b"kept\n");
        // With no spare left, a new file is created.
        let (temp, _) = trash.create_temp(&dest.join("t4.yaml"), b"t4\n").unwrap();
        assert_eq!(std::fs::read(&temp).unwrap(), b"t4\n");
        assert_eq!(std::fs::read(tmp.path().join("elsewhere")).unwrap(), b"kept\n");
        drop(trash);
        assert_eq!(std::fs::read_dir(tmp.path().join("trash")).unwrap().count(), 0);
    }
}
