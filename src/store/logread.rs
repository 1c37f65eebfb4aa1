//! Read-only access to the event log for everything that is not the daemon's journal: the
//! index (rebuild, catch-up), the read models' start-up scan, and the query CLI (`events`,
//! `wait`, `check`, `--follow`). Streams lines instead of loading the whole log, finds the
//! first line after a `seq` by binary search over byte offsets (lines are ordered by `seq`),
//! and follows the log as it grows. Opens the log read-only; never repairs, truncates or
//! appends (that is `store::journal`, the daemon's alone). A stream through a whole log may
//! read it on a thread of its own (`stream_ahead`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::event::{self, Event};

/// Where an event's line is in the log, and the checksum it carries: what the index keeps of
/// each line, and what the journal reports of each line it appends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Located {
    pub offset: u64,
    /// Without its newline.
    pub len: u64,
    pub crc: u32,
}

impl Located {
    /// The place of `line` (without its newline), read at `offset`.
    pub fn of(line: &str, offset: u64) -> Located {
        Located {
            offset,
            len: line.len() as u64,
            // A line the log reader decoded always carries its checksum.
            crc: event::claimed_crc(line).unwrap_or(0),
        }
    }
}

/// Why the log could not be read, with the file and the operation or the damaged place.
#[derive(Debug)]
pub enum LogError {
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// A damaged line that is not the last one (a torn last line is not an error).
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            LogError::Corrupt { path, offset, detail } => write!(
                f,
                "{} at byte {offset}: corrupt event ({detail}); the daemon refuses to start over it — \
                 inspect that line (see docs/operations.md, Recovery)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LogError {}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// How a stream over the log ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamEnd {
    /// Seq of the last event read (0 if none).
    pub last_seq: u64,
    /// Events handed to the callback.
    pub events: u64,
    /// Byte offset just after the last complete line read.
    pub offset: u64,
    /// Bytes after `offset` that do not form a complete line: a torn last line (or one being
    /// appended right now).
    pub torn_bytes: u64,
}

/// The `seq` of a line from its first bytes (`{"v":1,"seq":N,…`), without parsing the rest.
fn quick_seq(line: &[u8]) -> Option<u64> {
    let head = &line[..line.len().min(48)];
    let at = head.windows(6).position(|w| w == b"\"seq\":")? + 6;
    let digits: &[u8] = &head[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn decode_line(path: &Path, offset: u64, bytes: &[u8]) -> Result<Event, LogError> {
    decode_as::<Events>(path, offset, bytes).map(|(ev, _)| ev)
}

/// A line decoded by `D`, with its text.
fn decode_as<'l, D: Decode>(
    path: &Path,
    offset: u64,
    bytes: &'l [u8],
) -> Result<(D::Out<'l>, &'l str), LogError> {
    std::str::from_utf8(bytes)
        .map_err(|_| event::DecodeError::Json("not UTF-8".into()))
        .and_then(|text| Ok((D::decode(text)?, text)))
        .map_err(|e| LogError::Corrupt {
            path: path.to_path_buf(),
            offset,
            detail: e.to_string(),
        })
}

/// Offset of the first newline at or after `from`, if the first `len` bytes have one.
fn newline_from(file: &File, path: &Path, from: u64, len: u64) -> Result<Option<u64>, LogError> {
    let mut pos = from;
    let mut chunk = vec![0u8; 64 * 1024];
    while pos < len {
        let want = chunk.len().min((len - pos) as usize);
        let n = file
            .read_at(&mut chunk[..want], pos)
            .map_err(io_err(path, "read the event log"))?;
        if n == 0 {
            break;
        }
        if let Some(nl) = chunk[..n].iter().position(|&b| b == b'\n') {
            return Ok(Some(pos + nl as u64));
        }
        pos += n as u64;
    }
    Ok(None)
}

/// Read the complete line starting at `start`, if there is one (without its newline).
fn line_at(file: &File, path: &Path, start: u64, len: u64) -> Result<Option<Vec<u8>>, LogError> {
    let Some(end) = newline_from(file, path, start, len)? else {
        return Ok(None);
    };
    let mut line = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut line, start)
        .map_err(io_err(path, "read the event log"))?;
    Ok(Some(line))
}

/// The start of the first line at or after `off`.
fn next_line_start(file: &File, path: &Path, off: u64, len: u64) -> Result<u64, LogError> {
    if off == 0 {
        return Ok(0);
    }
    Ok(newline_from(file, path, off - 1, len)?.map_or(len, |nl| nl + 1))
}

/// Seq of the complete line at `start`; `None` past the last complete line.
fn seq_of_line(file: &File, path: &Path, start: u64, len: u64) -> Result<Option<u64>, LogError> {
    let Some(line) = line_at(file, path, start, len)? else {
        return Ok(None);
    };
    match quick_seq(&line) {
        Some(seq) => Ok(Some(seq)),
        None => decode_line(path, start, &line).map(|e| Some(e.seq)),
    }
}

/// Byte offset of the first complete line whose seq is greater than `after`, by binary search
/// (lines are in seq order). Returns `len` when there is none.
fn offset_after(file: &File, path: &Path, after: u64, len: u64) -> Result<u64, LogError> {
    if after == 0 {
        return Ok(0);
    }
    let (mut lo, mut hi) = (0u64, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = next_line_start(file, path, mid, len)?;
        let past = match seq_of_line(file, path, start, len)? {
            Some(seq) => seq > after,
            None => true,
        };
        if past {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    next_line_start(file, path, lo, len)
}

fn open(path: &Path) -> Result<Option<(File, u64)>, LogError> {
    match File::open(path) {
        Ok(f) => {
            let len = f.metadata().map_err(io_err(path, "stat the event log"))?.len();
            Ok(Some((f, len)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "open the event log")(e)),
    }
}

/// How a stream decodes each line: into an `Event`, or into less (the index's view of an
/// event, borrowed from the line).
pub trait Decode {
    type Out<'l>;
    /// Check the line's checksum and decode it.
    fn decode(line: &str) -> Result<Self::Out<'_>, event::DecodeError>;
    fn seq(out: &Self::Out<'_>) -> u64;
}

/// Lines decoded into `Event`s.
pub struct Events;

impl Decode for Events {
    type Out<'l> = Event;
    fn decode(line: &str) -> Result<Event, event::DecodeError> {
        event::decode(line)
    }
    fn seq(out: &Event) -> u64 {
        out.seq
    }
}

/// Hand every event with `seq > after` to `f`, in order, with its line (without newline) and
/// the byte offset where the line starts.
/// A missing log is an empty one. A torn last line ends the stream (reported in `torn_bytes`);
/// any other damaged line, or a seq that does not increase, is an error.
pub fn stream<E>(
    path: &Path,
    after: u64,
    f: impl FnMut(Event, &str, u64) -> Result<(), E>,
) -> Result<Result<StreamEnd, E>, LogError> {
    stream_as::<Events, E>(path, after, f)
}

/// `stream`, each line decoded by `D`.
pub fn stream_as<D: Decode, E>(
    path: &Path,
    after: u64,
    f: impl for<'l> FnMut(D::Out<'l>, &'l str, u64) -> Result<(), E>,
) -> Result<Result<StreamEnd, E>, LogError> {
    stream_through::<D, E>(path, after, Reading::Here, f)
}

/// `stream_as`, the file read on a thread of its own, a few megabytes ahead: for a stream
/// through a whole large log (an index rebuild) whose thread has more to do with each line
/// than the other core has (a rebuild's reading thread spent a tenth of its time in `read`).
pub fn stream_ahead<D: Decode, E>(
    path: &Path,
    after: u64,
    f: impl for<'l> FnMut(D::Out<'l>, &'l str, u64) -> Result<(), E>,
) -> Result<Result<StreamEnd, E>, LogError> {
    stream_through::<D, E>(path, after, Reading::Ahead, f)
}

/// Where a stream's reads happen.
enum Reading {
    Here,
    Ahead,
}

fn stream_through<D: Decode, E>(
    path: &Path,
    after: u64,
    reading: Reading,
    mut f: impl for<'l> FnMut(D::Out<'l>, &'l str, u64) -> Result<(), E>,
) -> Result<Result<StreamEnd, E>, LogError> {
    let Some((mut file, len)) = open(path)? else {
        return Ok(Ok(StreamEnd::default()));
    };
    let start = offset_after(&file, path, after, len)?;
    file.seek(SeekFrom::Start(start))
        .map_err(io_err(path, "seek in the event log"))?;
    let mut reader: Box<dyn BufRead> = match reading {
        Reading::Here => Box::new(BufReader::with_capacity(READ_SIZE, file)),
        Reading::Ahead => Box::new(ReadAhead::start(file).map_err(io_err(path, "start a thread to read"))?),
    };
    let mut end = StreamEnd {
        last_seq: after,
        offset: start,
        ..StreamEnd::default()
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path, "read the event log"))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            end.torn_bytes = n as u64;
            break;
        }
        let line = &buf[..n - 1];
        let (ev, text) = match decode_as::<D>(path, end.offset, line) {
            Ok(decoded) => decoded,
            // A damaged last line without anything after it is torn, not corrupt.
            Err(_) if end.offset + n as u64 >= len => {
                end.torn_bytes = n as u64;
                break;
            }
            Err(e) => return Err(e),
        };
        let seq = D::seq(&ev);
        if seq <= end.last_seq {
            return Err(LogError::Corrupt {
                path: path.to_path_buf(),
                offset: end.offset,
                detail: format!("seq {seq} does not follow {}", end.last_seq),
            });
        }
        let at = end.offset;
        end.last_seq = seq;
        end.events += 1;
        end.offset += n as u64;
        if let Err(e) = f(ev, text, at) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(end))
}

/// Bytes read from the log at a time.
const READ_SIZE: usize = 1 << 20;

/// Reads read ahead (`READ_SIZE` each) that may wait to be consumed.
const READS_AHEAD: usize = 4;

/// A file read from its current position to its end on a thread of its own, in reads of
/// `READ_SIZE`; each buffer goes back to that thread once consumed. The thread ends at the
/// end of the file, at an error (handed on), or when the `ReadAhead` is dropped.
struct ReadAhead {
    filled: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    emptied: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    consumed: usize,
}

impl ReadAhead {
    fn start(mut file: File) -> io::Result<ReadAhead> {
        let (to_reader, filled) = std::sync::mpsc::sync_channel(READS_AHEAD);
        let (emptied, from_reader) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("log-read".into())
            .spawn(move || {
                loop {
                    let mut buf = from_reader.try_recv().unwrap_or_default();
                    buf.resize(READ_SIZE, 0);
                    let read = fill(&mut file, &mut buf).map(|n| {
                        buf.truncate(n);
                        buf
                    });
                    let last = !matches!(&read, Ok(buf) if !buf.is_empty());
                    if to_reader.send(read).is_err() || last {
                        return;
                    }
                }
            })?;
        Ok(ReadAhead {
            filled,
            emptied,
            current: Vec::new(),
            consumed: 0,
        })
    }
}

/// Read until `buf` is full or the file ends; how many bytes were read.
fn fill(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(read) => n += read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.consumed == self.current.len() {
            // The thread is gone after the end of the file (or an error it handed on):
            // nothing more to read.
            if let Ok(next) = self.filled.recv() {
                let used = std::mem::replace(&mut self.current, next?);
                let _ = self.emptied.send(used);
                self.consumed = 0;
            }
        }
        Ok(&self.current[self.consumed..])
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n;
    }
}

/// Hand every complete line to `f` with its seq, from the start, without verifying checksums
/// (for views of a log the daemon verified when it opened it); `f` returns false to stop.
pub fn stream_raw(path: &Path, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<(), LogError> {
    let Some((file, _)) = open(path)? else {
        return Ok(());
    };
    let mut reader = BufReader::with_capacity(READ_SIZE, file);
    let mut buf = Vec::with_capacity(1024);
    let mut offset = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path, "read the event log"))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(());
        }
        let line = &buf[..n - 1];
        let seq = match quick_seq(line) {
            Some(seq) => seq,
            None => decode_line(path, offset, line)?.seq,
        };
        offset += n as u64;
        if !f(seq, line) {
            return Ok(());
        }
    }
}

/// Every event with `seq > after`, with its line.
pub fn read_after(path: &Path, after: u64) -> Result<(Vec<(Event, String)>, StreamEnd), LogError> {
    let mut out = Vec::new();
    let end = stream(path, after, |ev, line, _| {
        out.push((ev, line.to_string()));
        Ok::<(), std::convert::Infallible>(())
    })?;
    let Ok(end) = end;
    Ok((out, end))
}

/// The last complete event of the log and its line; `None` for an empty or missing log.
/// A torn last line is skipped: the complete line before it counts.
pub fn last_event(path: &Path) -> Result<Option<(Event, String)>, LogError> {
    let Some((file, len)) = open(path)? else {
        return Ok(None);
    };
    let mut window = 64 * 1024u64;
    loop {
        let from = len.saturating_sub(window);
        let mut buf = vec![0u8; (len - from) as usize];
        file.read_exact_at(&mut buf, from)
            .map_err(io_err(path, "read the event log"))?;
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            if from == 0 {
                return Ok(None);
            }
            window *= 4;
            continue;
        };
        let start = match buf[..last_nl].iter().rposition(|&b| b == b'\n') {
            Some(prev) => prev + 1,
            None if from == 0 => 0,
            None => {
                // The last line is longer than the window: widen it.
                window *= 4;
                continue;
            }
        };
        let line = &buf[start..last_nl];
        let ev = decode_line(path, from + start as u64, line)?;
        return Ok(Some((ev, String::from_utf8_lossy(line).into_owned())));
    }
}

/// Follows the log as it grows: each `poll` returns the complete lines appended since the
/// last one. Survives the log not existing yet; starts again after a repair shortened it.
pub struct Follower {
    path: PathBuf,
    offset: Option<u64>,
    last_seq: u64,
}

impl Follower {
    /// Follow from the first event with `seq > after`.
    pub fn after(path: &Path, after: u64) -> Follower {
        Follower {
            path: path.to_path_buf(),
            offset: None,
            last_seq: after,
        }
    }

    pub fn poll(&mut self) -> Result<Vec<(Event, String)>, LogError> {
        let Some((file, len)) = open(&self.path)? else {
            return Ok(Vec::new());
        };
        let offset = match self.offset {
            Some(o) if o <= len => o,
            _ => offset_after(&file, &self.path, self.last_seq, len)?,
        };
        let mut buf = Vec::new();
        let mut file = file;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(&self.path, "seek in the event log"))?;
        file.read_to_end(&mut buf)
            .map_err(io_err(&self.path, "read the event log"))?;
        let mut out = Vec::new();
        let mut pos = 0usize;
        while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
            let line = &buf[pos..pos + nl];
            let at = offset + pos as u64;
            pos += nl + 1;
            let ev = decode_line(&self.path, at, line)?;
            if ev.seq > self.last_seq {
                self.last_seq = ev.seq;
                out.push((ev, String::from_utf8_lossy(line).into_owned()));
            }
        }
        self.offset = Some(offset + pos as u64);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::Journal;

    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut j = Journal::open(&path, |_| {}).unwrap().journal;
        let mut evs: Vec<Event> = (0..n)
            .map(|i| {
                let e = Event::task("task_received", &format!("t{i}"));
                // Some long lines, so binary search crosses chunk boundaries.
                if i % 7 == 0 {
                    e.with_data("pad", serde_json::json!("x".repeat(10_000)))
                } else {
                    e
                }
            })
            .collect();
        j.append(&mut evs).unwrap();
        (dir, path)
    }

    #[test]
    fn streams_from_any_seq_and_finds_lines() {
        let (_d, path) = log_with(60);
        for after in [0u64, 1, 6, 7, 30, 59, 60, 80] {
            let (evs, end) = read_after(&path, after).unwrap();
            let want: Vec<u64> = (after + 1..=60).collect();
            assert_eq!(
                evs.iter().map(|e| e.0.seq).collect::<Vec<_>>(),
                want,
                "after {after}"
            );
            assert_eq!(end.last_seq, 60.max(after));
            assert_eq!(end.torn_bytes, 0);
        }
        assert_eq!(last_event(&path).unwrap().unwrap().0.seq, 60);
    }

    #[test]
    fn torn_tail_is_reported_and_corruption_is_an_error() {
        let (_d, path) = log_with(5);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let (evs, end) = read_after(&path, 0).unwrap();
        assert_eq!(evs.len(), 4);
        assert!(end.torn_bytes > 0);
        assert_eq!(last_event(&path).unwrap().unwrap().0.seq, 4);
        let text = String::from_utf8(full).unwrap().replacen("t1", "tX", 1);
        std::fs::write(&path, text).unwrap();
        assert!(matches!(read_after(&path, 0), Err(LogError::Corrupt { .. })));
    }

    /// Every line, its offset and the end, whether the file is read on the stream's thread
    /// or ahead on another: across reads (the log is over three `READ_SIZE`s), from a seq in
    /// the middle, up to a torn tail.
    #[test]
    fn a_stream_read_ahead_sees_what_one_read_here_sees() {
        let (_d, path) = log_with(2_400);
        assert!(std::fs::metadata(&path).unwrap().len() > 3 * READ_SIZE as u64);
        let collect = |ahead: bool, after: u64| {
            let mut lines = Vec::new();
            let each = |ev: Event, line: &str, at: u64| {
                lines.push((ev.seq, line.len(), at));
                Ok::<(), ()>(())
            };
            let end = if ahead {
                stream_ahead::<Events, ()>(&path, after, each)
            } else {
                stream_as::<Events, ()>(&path, after, each)
            };
            (lines, end.unwrap().unwrap())
        };
        for after in [0, 1_234] {
            let (here, end) = collect(false, after);
            assert_eq!(here.len() as u64, 2_400 - after);
            assert_eq!(collect(true, after), (here, end));
        }
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        let (lines, end) = collect(true, 0);
        assert_eq!((lines.len(), end.last_seq), (2_399, 2_399));
        assert!(end.torn_bytes > 0);
        assert_eq!(end.offset + end.torn_bytes, full.len() as u64 - 3);
    }

    #[test]
    fn follower_sees_appends() {
        let (_d, path) = log_with(3);
        let mut f = Follower::after(&path, 1);
        assert_eq!(f.poll().unwrap().len(), 2);
        assert!(f.poll().unwrap().is_empty());
        let mut j = Journal::open(&path, |_| {}).unwrap().journal;
        j.append(&mut [Event::new("rescan")]).unwrap();
        let got = f.poll().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.seq, 4);
    }
}
