//! Durable file primitives. `rename` is atomic but not durable, so every change goes
//! temp file in the destination directory → fsync file → rename → fsync directory; a move
//! fsyncs both directories. Reads never follow symlinks and never read more than a cap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// An I/O failure with the operation and the path it concerned.
#[derive(Debug)]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot {} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for FsError {}

pub fn ctx<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What identifies one version of a file cheaply: if none of these changed, neither did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

impl Fingerprint {
    pub fn of(meta: &fs::Metadata) -> Fingerprint {
        Fingerprint {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }

    pub fn modified(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(self.mtime_ns.max(0) as u64)
    }
}

/// Why a file in a task folder cannot be read as a task.
#[derive(Debug)]
pub enum ReadRefusal {
    Symlink,
    Directory,
    NotRegular,
    TooLarge { size: u64, max: u64 },
    Io(FsError),
}

impl std::fmt::Display for ReadRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadRefusal::Symlink => f.write_str("it is a symbolic link, which is never followed"),
            ReadRefusal::Directory => f.write_str("it is a directory"),
            ReadRefusal::NotRegular => f.write_str("it is not a regular file"),
            ReadRefusal::TooLarge { size, max } => {
                write!(f, "the file is {size} bytes, over max_task_bytes ({max})")
            }
            ReadRefusal::Io(e) => e.fmt(f),
        }
    }
}

/// Read a regular file of at most `max` bytes without following a symlink. The file type is
/// checked on the opened descriptor, so a file swapped in between stat and open is still caught.
pub fn read_task_file(path: &Path, max: u64) -> Result<(Vec<u8>, Fingerprint), ReadRefusal> {
    let meta = fs::symlink_metadata(path).map_err(|e| ReadRefusal::Io(ctx("stat", path)(e)))?;
    read_stated_task_file(path, &meta, max)
}

/// The bytes of a plain file. A symlink, FIFO, device or directory is an `InvalidInput`
/// error, never opened as such: opening a FIFO waits for a writer, forever if none comes. For
/// files the daemon expects to be its own (task files in their folders), which a person can
/// still replace by anything.
pub fn read_plain(path: &Path) -> io::Result<Vec<u8>> {
    // No size limit: a file's size is at most `i64::MAX` (and `max + 1` must not overflow).
    match read_task_file(path, i64::MAX as u64) {
        Ok((bytes, _)) => Ok(bytes),
        Err(ReadRefusal::Io(e)) => Err(e.source),
        Err(refusal) => Err(io::Error::new(io::ErrorKind::InvalidInput, refusal.to_string())),
    }
}

/// `read_task_file` for a caller that has just taken the file's `lstat` itself.
pub fn read_stated_task_file(
    path: &Path,
    lstat: &fs::Metadata,
    max: u64,
) -> Result<(Vec<u8>, Fingerprint), ReadRefusal> {
    // Special files are refused before they are opened: opening a device can have effects.
    refuse_special(lstat)?;
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                ReadRefusal::Symlink
            } else {
                ReadRefusal::Io(ctx("open", path)(e))
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| ReadRefusal::Io(ctx("stat", path)(e)))?;
    refuse_special(&meta)?;
    if meta.len() > max {
        return Err(ReadRefusal::TooLarge {
            size: meta.len(),
            max,
        });
    }
    let bytes = read_expecting(&mut file, meta.len() as usize, max)
        .map_err(|e| ReadRefusal::Io(ctx("read", path)(e)))?;
    if bytes.len() as u64 > max {
        return Err(ReadRefusal::TooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok((bytes, Fingerprint::of(&meta)))
}

/// Everything up to `max + 1` bytes from a file of `expected` bytes (its length just taken).
/// The first read asks for a byte more than that: coming back with exactly `expected`, it has
/// met the end, and no second read is needed to find it (one syscall of a dozen per task at
/// intake). Any other count (the file changed meanwhile) reads on to the end.
fn read_expecting(file: &mut impl Read, expected: usize, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; expected + 1];
    let first = loop {
        match file.read(&mut bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            done => break done?,
        }
    };
    bytes.truncate(first);
    if first != expected {
        file.take((max + 1).saturating_sub(first as u64))
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

fn refuse_special(meta: &fs::Metadata) -> Result<(), ReadRefusal> {
    let ft = meta.file_type();
    if ft.is_symlink() {
        Err(ReadRefusal::Symlink)
    } else if ft.is_dir() {
        Err(ReadRefusal::Directory)
    } else if !ft.is_file() {
        Err(ReadRefusal::NotRegular)
    } else {
        Ok(())
    }
}

pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ctx("fsync directory", dir))
}

pub fn create_dir_all(dir: &Path) -> Result<(), FsError> {
    fs::create_dir_all(dir).map_err(ctx("create directory", dir))
}

/// Create the folder `dest` goes into when it is missing (an agent's first task, or one
/// removed by hand), durably: its own entry must survive a power loss like the file will.
pub fn make_parent(dest: &Path) -> Result<(), FsError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    if dir.is_dir() {
        return Ok(());
    }
    create_dir_all(dir)?;
    fsync_dir(dir.parent().unwrap_or(Path::new(".")))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

const TEMP_PREFIX: &str = ".agentplane-";
const TEMP_SUFFIX: &str = ".tmp";

/// A dot-name in `dir` that no other writer uses, `.agentplane-<pid>-<n>.tmp`: never read by
/// the daemon, cleaned at start once its writer is gone.
pub fn temp_path(dir: &Path) -> PathBuf {
    static PID: OnceLock<u32> = OnceLock::new();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "{TEMP_PREFIX}{}-{n}{TEMP_SUFFIX}",
        PID.get_or_init(std::process::id)
    ))
}

/// Is `name` a temp file name of an agentplane process (`temp_path`)?
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// The pid of the process that made the temp file `name`, if the name carries one.
pub fn temp_name_pid(name: &str) -> Option<u32> {
    name.strip_prefix(TEMP_PREFIX)?.split('-').next()?.parse().ok()
}

/// Create a new file the way the daemon creates every file (owner-writable, world-readable);
/// fails if `path` exists.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
}

/// Write `bytes` to a temp file next to `dest`, not yet synced: the caller makes a batch of
/// them durable at once (`sync_data_of`) before renaming them into place. The fingerprint is
/// that of the content just written; a rename keeps it, so a later edit by someone else is
/// always told apart from the daemon's own write.
/// The directory is created when missing (an agent's first task, or one removed by hand).
pub fn create_temp(dest: &Path, bytes: &[u8]) -> Result<(PathBuf, Fingerprint), FsError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(dir);
    let create = || create_new(&tmp);
    let mut file = match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_parent(dest)?;
            create()
        }
        other => other,
    }
    .map_err(ctx("create", &tmp))?;
    file.write_all(bytes).map_err(ctx("write", &tmp))?;
    let meta = file.metadata().map_err(ctx("stat", &tmp))?;
    Ok((tmp, Fingerprint::of(&meta)))
}

/// Write `bytes` to a temp file next to `dest` and fsync it; the caller renames it into place.
pub fn write_temp(dest: &Path, bytes: &[u8]) -> Result<PathBuf, FsError> {
    let (tmp, _) = create_temp(dest, bytes)?;
    sync_data_of(std::slice::from_ref(&tmp))?;
    Ok(tmp)
}

/// Make the data of these files durable. On Linux one `syncfs` covers any number of files
/// on the filesystem (one journal commit instead of one per file); elsewhere each is fsynced.
pub fn sync_data_of(files: &[PathBuf]) -> Result<(), FsError> {
    #[cfg(target_os = "linux")]
    if files.len() > 1 {
        return sync_filesystem(&files[0]);
    }
    for f in files {
        File::open(f)
            .and_then(|file| file.sync_data())
            .map_err(ctx("fsync", f))?;
    }
    Ok(())
}

/// `syncfs`: make everything written to the filesystem that holds `any` durable.
#[cfg(target_os = "linux")]
pub fn sync_filesystem(any: &Path) -> Result<(), FsError> {
    let fd = File::open(any).map_err(ctx("open", any))?;
    // SAFETY: `fd` is an open descriptor for the duration of the call.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&fd)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ctx("syncfs", any)(io::Error::last_os_error()))
    }
}

pub fn rename(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(ctx("rename into place", to))
}

/// Durably replace (or create) `dest` with `bytes`: temp + fsync + rename + fsync directory.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let tmp = write_temp(dest, bytes)?;
    rename(&tmp, dest)?;
    fsync_dir(dest.parent().unwrap_or(Path::new(".")))
}

/// Remove a file; a file that is already gone is fine (recovery redoes removals).
pub fn remove_file(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ctx("remove", path)(e)),
        _ => Ok(()),
    }
}

/// The inode of a path without following symlinks, if it exists.
pub fn inode(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// A name in `dir` that does not exist and that `taken` does not rule out: `name`, else
/// `name.1`, `name.2`, …
pub fn free_name(dir: &Path, name: &str, taken: impl Fn(&Path) -> bool) -> PathBuf {
    std::iter::once(dir.join(name))
        .chain((1..).map(|n| dir.join(format!("{name}.{n}"))))
        .find(|p| !taken(p) && fs::symlink_metadata(p).is_err())
        .expect("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_fifos_dirs_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        fs::write(&real, b"a: 1\n").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.yaml")).unwrap();
        fs::create_dir(dir.path().join("d.yaml")).unwrap();
        let fifo = dir.path().join("f.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(read_task_file(&real, 100).is_ok());
        assert!(matches!(
            read_task_file(&dir.path().join("link.yaml"), 100),
            Err(ReadRefusal::Symlink)
        ));
        assert!(matches!(
            read_task_file(&dir.path().join("d.yaml"), 100),
            Err(ReadRefusal::Directory)
        ));
        assert!(matches!(read_task_file(&fifo, 100), Err(ReadRefusal::NotRegular)));
        assert!(matches!(
            read_task_file(&real, 2),
            Err(ReadRefusal::TooLarge { .. })
        ));
        // `read_plain`: the whole of a plain file, and nothing else opened.
        assert_eq!(read_plain(&real).unwrap(), b"a: 1\n");
        for special in ["link.yaml", "d.yaml", "f.yaml"] {
            let refused = read_plain(&dir.path().join(special)).unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{special}");
        }
        assert_eq!(
            read_plain(&dir.path().join("gone.yaml")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    /// A reader that counts its reads and gives at most `step` bytes a read.
    struct Counted<'a> {
        rest: &'a [u8],
        step: usize,
        reads: usize,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = buf.len().min(self.step).min(self.rest.len());
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_file_is_read_to_its_end_in_one_read_when_its_length_holds() {
        let text = b"id: t\nagent: bot\n";
        let read = |len: usize, expected: usize, step: usize, max: u64| {
            let mut r = Counted {
                rest: &text[..len],
                step,
                reads: 0,
            };
            (read_expecting(&mut r, expected, max).unwrap(), r.reads)
        };
        // As long as stated: one read.
        assert_eq!(read(text.len(), text.len(), 64, 100), (text.to_vec(), 1));
        assert_eq!(read(0, 0, 64, 100), (Vec::new(), 1));
        // Grown since its stat, shrunk, or read short: on to the end.
        assert_eq!(read(text.len(), 5, 64, 100).0, text);
        assert_eq!(read(5, text.len(), 64, 100).0, &text[..5]);
        assert_eq!(read(text.len(), text.len(), 3, 100).0, text);
        // Never more than a byte past `max`, so the caller can tell it is too large.
        assert_eq!(read(text.len(), 2, 64, 3).0.len(), 4);
    }

    #[test]
    fn atomic_write_replaces_and_free_name_suffixes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.yaml");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            free_name(dir.path(), "x.yaml", |_| false),
            dir.path().join("x.yaml.1")
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp files left");
    }

    #[test]
    fn a_temp_file_creates_its_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("assigned/new-agent/t1.yaml");
        let (tmp, fp) = create_temp(&dest, b"id: t1\n").unwrap();
        assert_eq!(tmp.parent(), dest.parent());
        rename(&tmp, &dest).unwrap();
        let meta = fs::symlink_metadata(&dest).unwrap();
        assert_eq!(Fingerprint::of(&meta), fp, "a rename keeps the fingerprint");
    }
}
