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
    decode_bytes::<Events>(bytes)
        .map(|(ev, _)| ev)
        .map_err(|e| corrupt(path, offset, e))
}

/// A line decoded by `D`, with its text.
fn decode_bytes<D: Decode>(bytes: &[u8]) -> Result<(D::Out<'_>, &str), event::DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| event::DecodeError::Json("not UTF-8".into()))?;
    Ok((D::decode(text)?, text))
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
    /// Decode a line whose checksum was verified (`verify`).
    fn read(line: &str) -> Result<Self::Out<'_>, event::DecodeError>;
    fn seq(out: &Self::Out<'_>) -> u64;

    /// Check the line's checksum.
    fn verify(line: &str) -> Result<(), event::DecodeError> {
        event::verified_crc(line).map(drop)
    }

    /// Check the line's checksum and decode it.
    fn decode(line: &str) -> Result<Self::Out<'_>, event::DecodeError> {
        Self::verify(line)?;
        Self::read(line)
    }
}

/// Lines decoded into `Event`s.
pub struct Events;

impl Decode for Events {
    type Out<'l> = Event;
    fn read(line: &str) -> Result<Event, event::DecodeError> {
        event::parse(line)
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
    let Some((file, len, end)) = open_after(path, after)? else {
        return Ok(Ok(StreamEnd::default()));
    };
    let mut pieces = Pieces::new(file);
    stream_pieces::<D, E>(path, len, end, |used| pieces.next::<D>(used), f)
}

/// `stream_as`, the pieces read and checked on a thread of its own, a few megabytes ahead:
/// for a stream through a whole large log (an index rebuild) whose thread has more to do
/// with each line than the other core has (a rebuild's projecting thread spent a tenth of
/// its time reading, cutting and checking lines).
pub fn stream_ahead<D: Decode + 'static, E>(
    path: &Path,
    after: u64,
    f: impl for<'l> FnMut(D::Out<'l>, &'l str, u64) -> Result<(), E>,
) -> Result<Result<StreamEnd, E>, LogError> {
    let Some((file, len, end)) = open_after(path, after)? else {
        return Ok(Ok(StreamEnd::default()));
    };
    let (to_reader, checked) = std::sync::mpsc::sync_channel(PIECES_AHEAD);
    let (emptied, from_reader) = std::sync::mpsc::channel();
    // Ends at the end of the file, after an error it handed on, or once nobody takes its
    // pieces; pieces that come back are read into again.
    let read_ahead = move || {
        let mut pieces = Pieces::new(file);
        while let Some(piece) = pieces.next::<D>(from_reader.try_recv().ok()) {
            if to_reader.send(piece).is_err() {
                return;
            }
        }
    };
    std::thread::Builder::new()
        .name("log-read".into())
        .spawn(read_ahead)
        .map_err(io_err(path, "start a thread to read"))?;
    let next = |used: Option<Piece>| {
        if let Some(used) = used {
            let _ = emptied.send(used);
        }
        checked.recv().ok()
    };
    stream_pieces::<D, E>(path, len, end, next, f)
}

/// The log open and positioned at the first line after `after`, its length, and the end of a
/// stream that has read nothing yet; `None` if there is no log.
fn open_after(path: &Path, after: u64) -> Result<Option<(File, u64, StreamEnd)>, LogError> {
    let Some((mut file, len)) = open(path)? else {
        return Ok(None);
    };
    let start = offset_after(&file, path, after, len)?;
    file.seek(SeekFrom::Start(start))
        .map_err(io_err(path, "seek in the event log"))?;
    let end = StreamEnd {
        last_seq: after,
        offset: start,
        ..StreamEnd::default()
    };
    Ok(Some((file, len, end)))
}

/// Hand every line of the pieces `next` gives (handing it back each piece used) to `f`,
/// from `end` on, in a log of `len` bytes when it was opened.
fn stream_pieces<D: Decode, E>(
    path: &Path,
    len: u64,
    mut end: StreamEnd,
    mut next: impl FnMut(Option<Piece>) -> Option<io::Result<Piece>>,
    mut f: impl for<'l> FnMut(D::Out<'l>, &'l str, u64) -> Result<(), E>,
) -> Result<Result<StreamEnd, E>, LogError> {
    let mut used = None;
    while let Some(piece) = next(used.take()) {
        let piece = piece.map_err(io_err(path, "read the event log"))?;
        let mut start = 0;
        for (stop, check) in &piece.lines {
            let n = stop - start;
            let (ev, text) = match piece.decode::<D>(start..stop - 1, check) {
                Ok(decoded) => decoded,
                // A damaged last line without anything after it is torn, not corrupt.
                Err(_) if end.offset + n as u64 >= len => {
                    end.torn_bytes = n as u64;
                    return Ok(Ok(end));
                }
                Err(e) => return Err(corrupt(path, end.offset, e)),
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
            start = *stop;
        }
        // Only the last piece may end without a newline: a torn last line.
        end.torn_bytes = (piece.len() - start) as u64;
        used = Some(piece);
    }
    Ok(Ok(end))
}

fn corrupt(path: &Path, offset: u64, e: event::DecodeError) -> LogError {
    LogError::Corrupt {
        path: path.to_path_buf(),
        offset,
        detail: e.to_string(),
    }
}

/// Bytes read from the log at a time.
const READ_SIZE: usize = 1 << 20;

/// Pieces (about `READ_SIZE` each) read ahead that may wait to be consumed.
const PIECES_AHEAD: usize = 4;

/// A file read from its current position in pieces of whole lines.
struct Pieces {
    file: File,
    /// The start of a line that went on past the last read.
    carried: Vec<u8>,
    ended: bool,
}

impl Pieces {
    fn new(file: File) -> Pieces {
        Pieces {
            file,
            carried: Vec::new(),
            ended: false,
        }
    }

    /// The next piece, checked by `D`, in the memory of `used` if given; at the end of the
    /// file, what is left of it (a torn line, or nothing); then `None`.
    fn next<D: Decode>(&mut self, used: Option<Piece>) -> Option<io::Result<Piece>> {
        if self.ended {
            return None;
        }
        let (mut bytes, lines) = used.map_or_else(
            || (Vec::with_capacity(2 * READ_SIZE), Vec::new()),
            Piece::into_parts,
        );
        bytes.append(&mut self.carried);
        loop {
            let kept = bytes.len();
            // Into the buffer's spare room, which it has for a read and a part line.
            match (&mut self.file).take(READ_SIZE as u64).read_to_end(&mut bytes) {
                Ok(0) => {
                    self.ended = true;
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
            // A line that goes on past this read goes into the next piece; a line longer
            // than a read is read on.
            if let Some(at) = memchr::memrchr(b'\n', &bytes[kept..]) {
                self.carried.extend_from_slice(&bytes[kept + at + 1..]);
                bytes.truncate(kept + at + 1);
                break;
            }
        }
        Some(Ok(Piece::of::<D>(bytes, lines)))
    }
}

/// Whole lines of the log (the last piece may end in a torn line), and where each ends
/// (after its newline) with whether its checksum holds.
struct Piece {
    content: Content,
    lines: Vec<LineEnd>,
}

/// A piece's bytes: checked as UTF-8 in one go, or, if they are not (a damaged line), left
/// as they are, their lines checked one by one as they are decoded.
enum Content {
    Text(String),
    Bytes(Vec<u8>),
}

/// Where a line of a piece ends (after its newline), and whether its checksum holds (always
/// `Ok` in `Content::Bytes`, which is checked as it is decoded).
type LineEnd = (usize, Result<(), event::DecodeError>);

impl Piece {
    /// The lines of `bytes`, checked by `D`.
    fn of<D: Decode>(bytes: Vec<u8>, mut lines: Vec<LineEnd>) -> Piece {
        lines.clear();
        lines.extend(memchr::memchr_iter(b'\n', &bytes).map(|at| (at + 1, Ok(()))));
        let content = match String::from_utf8(bytes) {
            Ok(text) => {
                let mut start = 0;
                for (stop, check) in &mut lines {
                    *check = D::verify(&text[start..*stop - 1]);
                    start = *stop;
                }
                Content::Text(text)
            }
            Err(e) => Content::Bytes(e.into_bytes()),
        };
        Piece { content, lines }
    }

    fn len(&self) -> usize {
        match &self.content {
            Content::Text(text) => text.len(),
            Content::Bytes(bytes) => bytes.len(),
        }
    }

    /// The line in `range` (without its newline), decoded.
    fn decode<D: Decode>(
        &self,
        range: std::ops::Range<usize>,
        check: &Result<(), event::DecodeError>,
    ) -> Result<(D::Out<'_>, &str), event::DecodeError> {
        match &self.content {
            Content::Text(text) => {
                let text = &text[range];
                check.clone()?;
                Ok((D::read(text)?, text))
            }
            Content::Bytes(bytes) => decode_bytes::<D>(&bytes[range]),
        }
    }

    /// Its memory, for the next piece.
    fn into_parts(self) -> (Vec<u8>, Vec<LineEnd>) {
        let mut bytes = match self.content {
            Content::Text(text) => text.into_bytes(),
            Content::Bytes(bytes) => bytes,
        };
        bytes.clear();
        (bytes, self.lines)
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

    /// Each line's seq, length and offset, and how the stream ended.
    type Streamed = (Vec<(u64, usize, u64)>, StreamEnd);

    /// Every line, its offset and the end (or the error), whether the file is read on the
    /// stream's thread or ahead on another.
    fn read_both_ways(path: &Path, after: u64) -> [Result<Streamed, String>; 2] {
        [false, true].map(|ahead| {
            let mut lines = Vec::new();
            let each = |ev: Event, line: &str, at: u64| {
                lines.push((ev.seq, line.len(), at));
                Ok::<(), ()>(())
            };
            let end = if ahead {
                stream_ahead::<Events, ()>(path, after, each)
            } else {
                stream_as::<Events, ()>(path, after, each)
            };
            end.map(|end| (lines, end.unwrap())).map_err(|e| e.to_string())
        })
    }

    #[test]
    fn a_stream_read_ahead_sees_what_one_read_here_sees() {
        // Over three reads' worth, with a line longer than a read, from a seq in the middle.
        let (_d, path) = log_with(2_400);
        let mut j = Journal::open(&path, |_| {}).unwrap().journal;
        let long = Event::task("task_received", "long")
            .with_data("pad", serde_json::json!("y".repeat(READ_SIZE + 10)));
        j.append(&mut [long, Event::new("rescan")]).unwrap();
        let full = std::fs::read(&path).unwrap();
        assert!(full.len() > 3 * READ_SIZE);
        for after in [0, 1_234, 2_401] {
            let [here, ahead] = read_both_ways(&path, after);
            assert_eq!(here.as_ref().unwrap().0.len() as u64, 2_402 - after);
            assert_eq!(ahead, here, "after {after}");
        }
        // A torn last line; a damaged last line; a damaged line, or one not UTF-8, before
        // others.
        let last_line = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let middle = full.len() / 2;
        let damaged = |at: usize, byte: u8| {
            let mut bytes = full.clone();
            bytes[at] = byte;
            bytes
        };
        for (case, bytes) in [
            ("torn", full[..full.len() - 3].to_vec()),
            ("damaged last", damaged(last_line + 30, b'#')),
            ("damaged", damaged(middle, b'#')),
            ("not UTF-8", damaged(middle, 0xff)),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let [here, ahead] = read_both_ways(&path, 0);
            assert_eq!(ahead, here, "{case}");
            match case {
                "torn" | "damaged last" => {
                    let end = here.unwrap().1;
                    assert_eq!((end.last_seq, end.offset), (2_401, last_line as u64), "{case}");
                    assert_eq!(end.torn_bytes, (bytes.len() - last_line) as u64, "{case}");
                }
                _ => assert!(here.unwrap_err().contains("corrupt event"), "{case}"),
            }
        }
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
