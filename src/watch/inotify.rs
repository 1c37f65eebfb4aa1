//! A thin owner of an inotify descriptor: add and remove watches, wait, and read what is
//! queued. Shared by the daemon's watcher and the bench's observers; knows nothing of tasks.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::Duration;

/// One queued event: the watch it came from, what happened, and the entry's name in the
/// watched directory (empty for events about the directory itself).
#[derive(Debug)]
pub struct RawEvent {
    pub wd: i32,
    pub mask: u32,
    pub name: OsString,
}

pub struct Inotify {
    fd: OwnedFd,
    /// Where queued events are read into: allocated (and zeroed) once, not per read — a
    /// fresh 64 KiB buffer per read was 5 % of a busy daemon's instructions, all memset.
    buf: Box<[u8]>,
}

/// Room for hundreds of queued events per read.
const READ_BUFFER: usize = 64 * 1024;

impl Inotify {
    /// A non-blocking descriptor, closed on exec.
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: plain syscall; the descriptor is owned by the returned value.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
        })
    }

    pub fn watch(&self, dir: &Path, mask: u32) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    pub fn unwatch(&self, wd: i32) {
        // SAFETY: plain syscall on our descriptor; a stale `wd` only returns EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    /// Every event queued now; empty when there is none.
    pub fn read_queued(&mut self) -> io::Result<Vec<RawEvent>> {
        let mut out = Vec::new();
        let buf = &mut self.buf;
        loop {
            // SAFETY: reading into a buffer we own, at most its length.
            let len = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if len < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(out),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if len == 0 {
                return Ok(out);
            }
            let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
            let mut off = 0;
            // struct inotify_event: wd, mask, cookie, len, then `len` bytes of NUL-padded name.
            while off + 16 <= len as usize {
                let name_len = word(off + 12) as usize;
                let name = buf[off + 16..off + 16 + name_len]
                    .split(|b| *b == 0)
                    .next()
                    .unwrap_or_default();
                out.push(RawEvent {
                    wd: word(off) as i32,
                    mask: word(off + 4),
                    name: OsString::from_vec(name.to_vec()),
                });
                off += 16 + name_len;
            }
        }
    }

    /// The events that arrive within `timeout`; empty when none did.
    pub fn read_within(&mut self, timeout: Duration) -> io::Result<Vec<RawEvent>> {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        if wait_readable(&[self.as_raw_fd()], ms)?.is_empty() {
            return Ok(Vec::new());
        }
        self.read_queued()
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Wait until one of `fds` is readable, at most `timeout_ms` (−1: no limit); the readable ones.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<RawFd>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfds for the duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(pfds.iter().filter(|p| p.revents != 0).map(|p| p.fd).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
