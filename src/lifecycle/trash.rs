//! Files leave the task folders without being freed on the ack path, and their inodes are
//! used again. The write path takes a file out of its folder by renaming it into
//! `work/.agentplane/trash/` (a directory entry moved, nothing freed), and keeps a file it is
//! about to replace alive there by a hard link. The write path's temp files are made in the
//! trash too, and renamed from there into place: the next one is such a spare, overwritten
//! where it lies, when it is a plain file of the daemon's own owner and mode with no other
//! link; so a burst neither allocates nor frees inodes, and a task folder (watched by the
//! daemon and by others) sees one rename per new file instead of a temp file's creation,
//! writes and rename. A background thread unlinks the spares once the daemon has been quiet
//! for a second. Why: freeing an inode can wait on the disk (ext4 mounted with `discard` and
//! without a journal discards the blocks inside `unlink`), allocating one scans past every
//! inode freed in the last minutes on such a filesystem, and every change in a watched folder
//! wakes its watchers; docs/benchmarks.md has the measurements.
//!
//! The trash is never read (a spare is only overwritten). What a crash leaves in it, temp
//! files included, is removed by the next start's sweep.
//! May not: remove anything outside the trash directory, except a file it was asked to remove
//! and could not move there (another filesystem), or a temp file it created itself.

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
    /// The trash's filesystem: a temp file made here can be renamed only onto it.
    dev: u64,
    /// A temp file was made in the trash since the last `sync`; it leaves by a rename.
    taken: bool,
    wake: Option<SyncSender<()>>,
    sweeper: Option<JoinHandle<()>>,
}

impl Trash {
    /// Create the trash directory and start the sweeper, which first removes what an earlier
    /// run left there.
    pub fn open(dir: PathBuf) -> Result<Trash, FsError> {
        fsops::create_dir_all(&dir)?;
        let dev = fs::metadata(&dir).map_err(fsops::ctx("stat", &dir))?.dev();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut trash = Trash {
            dir,
            run: format!("{}.{started}", std::process::id()),
            next: 0,
            pile: Pile::default(),
            own: None,
            dev,
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

    /// `bytes` in a temp file for `dest`, not yet synced, with the fingerprint of what was
    /// written. The temp file is in the trash — a spare when one fits, else a new file — so
    /// writing it wakes no watcher of `dest`'s folder and that folder changes once, by the
    /// rename into place. Where the trash cannot be used (`dest` on another filesystem, or no
    /// file could be made in the trash at open), `fsops::create_temp` next to `dest`.
    pub fn create_temp(&mut self, dest: &Path, bytes: &[u8]) -> Result<(PathBuf, Fingerprint), FsError> {
        let Some(own) = self.own else {
            return fsops::create_temp(dest, bytes);
        };
        if fsops::ensure_dir_of(dest)?.dev() != self.dev {
            return fsops::create_temp(dest, bytes);
        }
        self.taken = true;
        if let Some(written) = self.reuse(bytes, own) {
            return Ok(written);
        }
        let tmp = self.next_name();
        let fingerprint = fsops::write_new(&tmp, bytes)?;
        Ok((tmp, fingerprint))
    }

    fn reuse(&mut self, bytes: &[u8], own: Owner) -> Option<(PathBuf, Fingerprint)> {
        loop {
            // Out of the pile, a spare is out of the sweeper's reach.
            let spare = self.pile.lock().expect("trash pile").spares.pop()?;
            match overwrite(&spare, bytes, own) {
                Ok(fingerprint) => return Some((spare, fingerprint)),
                // Not reusable after all (another owner, another link, a directory): left to
                // be freed; try the next one.
                Err(_) => self.pile.lock().expect("trash pile").unfit.push(spare),
            }
        }
    }

    /// Make the departure of the temp files renamed out of the trash since the last call
    /// durable. The caller does this after those renames and before it fsyncs their new
    /// folders: otherwise a power loss could leave an inode named both in the trash and in a
    /// task folder with one link, and the next start's sweep would free a task file.
    pub fn sync(&mut self) -> Result<(), FsError> {
        if std::mem::take(&mut self.taken) {
            fsops::fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Is `path` in the trash (a temp file `create_temp` made there)?
    pub fn holds(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
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

/// Overwrite a spare in place with `bytes`: no block is freed unless it shrinks past one.
fn overwrite(path: &Path, bytes: &[u8], own: Owner) -> io::Result<Fingerprint> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 || Owner::of(&meta) != own {
        return Err(io::Error::other("not a spare the daemon may reuse"));
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

    /// `create_temp` for `dest`, renamed into place as `flush` does; the written inode.
    fn write_into_place(trash: &mut Trash, dest: &Path, bytes: &[u8]) -> Fingerprint {
        let (temp, fingerprint) = trash.create_temp(dest, bytes).unwrap();
        assert!(trash.holds(&temp), "{} is not in the trash", temp.display());
        std::fs::rename(&temp, dest).unwrap();
        trash.sync().unwrap();
        assert_eq!(std::fs::read(dest).unwrap(), bytes);
        fingerprint
    }

    #[test]
    fn a_removed_file_becomes_the_next_temp_file_and_a_linked_one_never_does() {
        let tmp = tempfile::tempdir().unwrap();
        let (inbox, dest) = (tmp.path().join("inbox"), tmp.path().join("assigned"));
        std::fs::create_dir(&inbox).unwrap();
        let mut trash = Trash::open(tmp.path().join("trash")).unwrap();
        // The first spare is the probe; use it up. Its folder does not exist yet.
        write_into_place(&mut trash, &dest.join("probe.yaml"), b"x");

        let ino = put_in_trash(
            &mut trash,
            &inbox.join("t1.yaml"),
            "a longer text than the one that replaces it\n",
        );
        let fingerprint = write_into_place(&mut trash, &dest.join("t1.yaml"), b"short\n");
        assert_eq!(
            fingerprint.ino, ino,
            "the removed file's inode was not used again"
        );
        assert_eq!(fingerprint.size, 6);

        // A file with another name elsewhere must not change under that name; the next spare
        // is taken instead.
        let plain_ino = put_in_trash(&mut trash, &inbox.join("t3.yaml"), "t3\n");
        let shared = inbox.join("t2.yaml");
        std::fs::write(&shared, "kept\n").unwrap();
        std::fs::hard_link(&shared, tmp.path().join("elsewhere")).unwrap();
        trash.remove(&shared).unwrap();
        let fingerprint = write_into_place(&mut trash, &dest.join("t2.yaml"), b"new\n");
        assert_eq!(
            fingerprint.ino, plain_ino,
            "the spare after the linked one was not used"
        );
        assert_eq!(std::fs::read(tmp.path().join("elsewhere")).unwrap(), b"kept\n");
        // With no spare left, a new file is created.
        write_into_place(&mut trash, &dest.join("t4.yaml"), b"t4\n");
        assert_eq!(std::fs::read(tmp.path().join("elsewhere")).unwrap(), b"kept\n");
        drop(trash);
        assert_eq!(std::fs::read_dir(tmp.path().join("trash")).unwrap().count(), 0);
        let mut left: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["probe.yaml", "t1.yaml", "t2.yaml", "t4.yaml"],
            "no temp file next to the tasks"
        );
    }

    #[test]
    fn a_temp_file_for_another_filesystem_is_made_next_to_its_destination() {
        let trash_dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
        let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
        assert_ne!(
            dev(trash_dir.path()),
            dev(elsewhere.path()),
            "the test needs two filesystems"
        );
        let mut trash = Trash::open(trash_dir.path().join("trash")).unwrap();
        let dest = elsewhere.path().join("assigned/t1.yaml");
        let (temp, _) = trash.create_temp(&dest, b"t1\n").unwrap();
        assert_eq!(temp.parent(), dest.parent());
        assert!(fsops::is_temp_name(&temp.file_name().unwrap().to_string_lossy()));
        std::fs::rename(&temp, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"t1\n");
    }
}
