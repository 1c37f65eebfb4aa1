//! The event journal `events.jsonl`: open with recovery (a torn last line is truncated,
//! corruption before the end is fatal with its line number), and group-committed appends
//! (many events, one write, one fsync). Only the daemon holding the root lock appends.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::clock;
use crate::event::{self, Event};
use crate::store::logread::Located;

pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
    /// Where the last event's line is (`None`: the log is empty).
    last_line: Option<LineAt>,
}

/// One line of the log, identified by where it is and a checksum of its bytes: a snapshot
/// of the state names the line of the last event it includes, so that a start can tell
/// whether the log it meets still holds that very line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineAt {
    pub seq: u64,
    /// Offset of its first byte.
    pub start: u64,
    /// Offset just past its newline: where the next event's line starts.
    pub end: u64,
    /// CRC-32C of the line without its newline.
    pub crc: u32,
}

impl LineAt {
    fn of(seq: u64, start: u64, line: &[u8]) -> LineAt {
        LineAt {
            seq,
            start,
            end: start + line.len() as u64 + 1,
            crc: crc32c::crc32c(line),
        }
    }

    /// Does the log at `path` hold this line where it was (a log replaced, cut short or
    /// rewritten does not)? Reads the line alone.
    pub fn holds_in(&self, path: &Path) -> bool {
        let Ok(mut file) = File::open(path) else {
            return false;
        };
        let Some(len) = self.end.checked_sub(self.start).filter(|&n| n > 0 && n < 1 << 30) else {
            return false;
        };
        // The byte before the line too, which must end the line before it.
        let before = u64::from(self.start > 0);
        let mut bytes = vec![0; (len + before) as usize];
        if file.seek(SeekFrom::Start(self.start - before)).is_err() || file.read_exact(&mut bytes).is_err() {
            return false;
        }
        let (prev, line) = bytes.split_at(before as usize);
        prev.iter().all(|&b| b == b'\n')
            && line.last() == Some(&b'\n')
            && crc32c::crc32c(&line[..line.len() - 1]) == self.crc
    }
}

/// What `open` found and did.
pub struct Opened {
    pub journal: Journal,
    /// The events of the last group commit: the only ones whose file operations may be
    /// unfinished. Every event was handed to `open`'s callback.
    pub last_batch: Vec<Event>,
    /// Bytes cut off the end because the last line was torn by a crash.
    pub truncated_bytes: u64,
}

#[derive(Debug)]
pub enum JournalError {
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    Corrupt {
        path: PathBuf,
        line: u64,
        detail: String,
    },
}

impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalError::Io { path, op, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            JournalError::Corrupt { path, line, detail } => write!(
                f,
                "{}:{line}: corrupt event ({detail}); the log is the source of truth, so the daemon \
                 will not start over it. Inspect that line; if it cannot be repaired, move the file \
                 aside and restart (tasks are then rediscovered from their files)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Split the journal text into verified events. Returns the events and the byte length of
/// the valid prefix (what follows it is a torn last line).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Event>, usize), JournalError> {
    let mut events = Vec::new();
    let valid = scan(path, bytes, |ev, _| events.push(ev))?;
    Ok((events, valid))
}

/// Verify the journal text line by line, handing each event and the offset of its line to
/// `each` in order without keeping them. Returns the byte length of the valid prefix.
pub fn scan(path: &Path, bytes: &[u8], each: impl FnMut(Event, usize)) -> Result<usize, JournalError> {
    scan_from(path, bytes, bytes.len(), (0, 0), each)
}

/// `scan` over a reader of `total` bytes, one line in memory at a time, of the lines that
/// follow `(seq, line number)` (line numbers in corruption errors count from there).
fn scan_from(
    path: &Path,
    mut reader: impl BufRead,
    total: usize,
    (mut last_seq, mut line_no): (u64, u64),
    mut each: impl FnMut(Event, usize),
) -> Result<usize, JournalError> {
    let mut line = Vec::with_capacity(1024);
    let mut offset = 0;
    loop {
        let read = next_line(path, &mut reader, &mut line)?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let newline = line.last() == Some(&b'\n');
        let is_last = offset + read >= total;
        let decoded = utf8(&line[..read - usize::from(newline)]).and_then(event::decode);
        match decoded {
            // A line without its newline was cut short by a crash, even if it parses.
            Ok(ev) if newline && ev.seq > last_seq => {
                last_seq = ev.seq;
                each(ev, offset);
                offset += read;
            }
            Ok(ev) if newline => {
                return Err(corrupt(
                    path,
                    line_no,
                    format!("seq {} does not follow {last_seq}", ev.seq),
                ));
            }
            _ if is_last => break,
            Err(e) => return Err(corrupt(path, line_no, e)),
            Ok(_) => unreachable!("a parsed line with a newline is handled above"),
        }
    }
    Ok(offset)
}

/// Read the next line into `line` (with its newline, if it has one); 0 at the end.
fn next_line(path: &Path, reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<usize, JournalError> {
    line.clear();
    reader
        .read_until(b'\n', line)
        .map_err(io_err(path, "read the event log"))
}

fn utf8(line: &[u8]) -> Result<&str, event::DecodeError> {
    std::str::from_utf8(line).map_err(|_| event::DecodeError::Json("not UTF-8".into()))
}

fn corrupt(path: &Path, line: u64, detail: impl ToString) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        line,
        detail: detail.to_string(),
    }
}

/// Check the checksum of every line in the first `len` bytes of the log at `path` (open as
/// `file`) — lines a snapshot of the state has taken in, so not decoded again — and count
/// them. Corruption anywhere in the log still stops the daemon with its line number.
pub fn verify_checksums(path: &Path, file: &mut File, len: u64) -> Result<u64, JournalError> {
    file.seek(SeekFrom::Start(0)).map_err(io_err(path, "seek in"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file.take(len));
    let mut line = Vec::with_capacity(1024);
    let mut line_no = 0;
    loop {
        if next_line(path, &mut reader, &mut line)? == 0 {
            return Ok(line_no);
        }
        line_no += 1;
        let checked = line
            .strip_suffix(b"\n")
            .ok_or(event::DecodeError::NoChecksum)
            .and_then(utf8)
            .and_then(event::verified_crc);
        if let Err(e) = checked {
            return Err(corrupt(path, line_no, e));
        }
    }
}

impl Journal {
    /// Open (creating) the journal, verify every line, hand each event to `replay`, and cut a
    /// torn last line.
    pub fn open(path: &Path, replay: impl FnMut(&Event)) -> Result<Opened, JournalError> {
        Journal::open_after(path, None, replay)
    }

    /// `open` for a caller whose state already includes every event up to the line `after`
    /// (which the caller has checked with `LineAt::holds_in`): the lines up to it only have
    /// their checksums verified; the events after it are decoded and replayed.
    pub fn open_after(
        path: &Path,
        after: Option<LineAt>,
        mut replay: impl FnMut(&Event),
    ) -> Result<Opened, JournalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path, "open the event log"))?;
        let total = file.metadata().map_err(io_err(path, "stat the event log"))?.len() as usize;
        let from = after.map_or(0, |line| line.end as usize).min(total);
        let mut last_seq = after.map_or(0, |line| line.seq);
        let lines_before = verify_checksums(path, &mut file, from as u64)?;
        // Where the last group commit starts; its events are decoded again below rather than
        // kept, as a batch can be any size.
        let (mut batch, mut batch_offset) = (None, from);
        file.seek(SeekFrom::Start(from as u64))
            .map_err(io_err(path, "seek in"))?;
        let reader = BufReader::with_capacity(1 << 20, &file);
        let valid = scan_from(
            path,
            reader,
            total - from,
            (last_seq, lines_before),
            |ev, offset| {
                replay(&ev);
                last_seq = ev.seq;
                if batch != Some(ev.batch) {
                    (batch, batch_offset) = (Some(ev.batch), from + offset);
                }
            },
        )?;
        let valid_len = from + valid;
        let mut tail = vec![0; valid_len - batch_offset];
        file.seek(SeekFrom::Start(batch_offset as u64))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(io_err(path, "read the event log"))?;
        let (last_batch, _) = parse(path, &tail)?;
        let last_line = match last_batch.last() {
            Some(ev) => {
                let body = &tail[..tail.len() - 1];
                let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                Some(LineAt::of(ev.seq, (batch_offset + start) as u64, &body[start..]))
            }
            None => after,
        };
        let truncated_bytes = (total - valid_len) as u64;
        if truncated_bytes > 0 {
            file.set_len(valid_len as u64)
                .map_err(io_err(path, "truncate the torn last line of"))?;
            file.sync_all().map_err(io_err(path, "fsync"))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_err(path, "seek in"))?;
        Ok(Opened {
            journal: Journal {
                file,
                path: path.to_path_buf(),
                next_seq: last_seq + 1,
                last_line,
            },
            last_batch,
            truncated_bytes,
        })
    }

    /// Give an event the next `seq` and the current time. Events are stamped when they are
    /// decided, so the state can refer to them before the batch is written.
    pub fn stamp(&mut self, ev: &mut Event) {
        ev.seq = self.next_seq;
        self.next_seq += 1;
        ev.ts = clock::now_millis();
    }

    /// Write stamped events (unstamped ones are stamped here) in one go and fsync. When this
    /// returns Ok the events are durable, at the places it returns (one per event); an error
    /// is fatal for the daemon (a failed fsync cannot be retried safely).
    pub fn append(&mut self, events: &mut [Event]) -> Result<Vec<Located>, JournalError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let start = self.last_line.map_or(0, |line| line.end);
        // An intake's task_assigned line is ~600 bytes, its task_received ~250.
        let mut buf: Vec<u8> = Vec::with_capacity(events.len() * 512);
        let mut places = Vec::with_capacity(events.len());
        let mut batch = 0;
        let mut last_start = 0;
        for ev in events.iter_mut() {
            if ev.seq == 0 {
                self.stamp(ev);
            }
            if batch == 0 {
                batch = ev.seq;
            }
            ev.batch = batch;
            last_start = buf.len();
            let crc = event::write_line(&mut buf, ev);
            places.push(Located {
                offset: start + last_start as u64,
                len: (buf.len() - last_start) as u64,
                crc,
            });
            buf.push(b'\n');
        }
        self.file
            .write_all(&buf)
            .map_err(io_err(&self.path, "append to the event log"))?;
        self.file
            .sync_data()
            .map_err(io_err(&self.path, "fsync the event log"))?;
        let last = &buf[last_start..buf.len() - 1];
        let seq = events.last().map_or(0, |ev| ev.seq);
        self.last_line = Some(LineAt::of(seq, start + last_start as u64, last));
        Ok(places)
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The line of the last durable event.
    pub fn last_line(&self) -> Option<LineAt> {
        self.last_line
    }
}

/// Read the journal without opening it for writing (for tools and tests).
pub fn read_all(path: &Path) -> Result<Vec<Event>, JournalError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, "read the event log")(e)),
    };
    parse(path, &bytes).map(|(events, _)| events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append_n(path: &Path, n: usize) {
        let mut j = Journal::open(path, |_| {}).unwrap().journal;
        let mut evs: Vec<Event> = (0..n)
            .map(|i| Event::task("task_received", &format!("t{i}")))
            .collect();
        j.append(&mut evs).unwrap();
    }

    #[test]
    fn append_tells_where_each_line_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append_n(&path, 2);
        let mut j = Journal::open(&path, |_| {}).unwrap().journal;
        let mut evs = vec![Event::new("rescan"), Event::task("task_received", "x")];
        let places = j.append(&mut evs).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(places.len(), 2);
        for (ev, at) in evs.iter().zip(&places) {
            let line =
                std::str::from_utf8(&bytes[at.offset as usize..(at.offset + at.len) as usize]).unwrap();
            assert_eq!(event::decode(line).as_ref(), Ok(ev));
            assert_eq!(event::claimed_crc(line), Some(at.crc));
        }
        assert_eq!(places[1].offset + places[1].len + 1, bytes.len() as u64);
    }

    #[test]
    fn appends_survive_reopen_with_increasing_seq() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append_n(&path, 3);
        append_n(&path, 2);
        let opened = Journal::open(&path, |_| {}).unwrap();
        assert_eq!(opened.journal.last_seq(), 5);
        let seqs: Vec<u64> = opened.last_batch.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 5], "the last group commit");
        assert_eq!(opened.truncated_bytes, 0);
    }

    #[test]
    fn torn_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append_n(&path, 3);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 10]).unwrap();
        let opened = Journal::open(&path, |_| {}).unwrap();
        assert_eq!(opened.journal.last_seq(), 2);
        assert!(opened.truncated_bytes > 0);
        drop(opened);
        append_n(&path, 1);
        let again = Journal::open(&path, |_| {}).unwrap();
        assert_eq!(again.journal.last_seq(), 3);
    }

    #[test]
    fn corruption_before_the_end_is_fatal_with_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append_n(&path, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("t1", "tX", 1)).unwrap();
        match Journal::open(&path, |_| {}) {
            Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("corruption was accepted"),
        }
    }

    /// A log of three events in `dir`, and the line of its last event.
    fn log_of_three(dir: &Path) -> (PathBuf, LineAt) {
        let path = dir.join("events.jsonl");
        append_n(&path, 3);
        let line = Journal::open(&path, |_| {}).unwrap().journal.last_line().unwrap();
        (path, line)
    }

    #[test]
    fn a_start_after_a_known_line_replays_only_what_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, line) = log_of_three(dir.path());
        assert_eq!(line.seq, 3);
        assert!(line.holds_in(&path));
        append_n(&path, 2);
        let mut replayed = Vec::new();
        let opened = Journal::open_after(&path, Some(line), |ev| replayed.push(ev.seq)).unwrap();
        assert_eq!(replayed, vec![4, 5]);
        assert_eq!(opened.journal.last_seq(), 5);
        let seqs: Vec<u64> = opened.last_batch.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        // The line the journal tracks while appending is the one a full open finds.
        let mut journal = opened.journal;
        journal.append(&mut [Event::new("x")]).unwrap();
        let appended = journal.last_line().unwrap();
        drop(journal);
        assert_eq!(
            Journal::open(&path, |_| {}).unwrap().journal.last_line(),
            Some(appended)
        );
        // Nothing after the line: nothing replayed, and the line is still the last one.
        let opened = Journal::open_after(&path, Some(appended), |_| panic!("replayed")).unwrap();
        assert_eq!(opened.journal.last_line(), Some(appended));
        assert!(opened.last_batch.is_empty());
        // Corruption is reported at its line number in the whole file, before the known line
        // (checksums) as after it (decoded).
        let text = std::fs::read_to_string(&path).unwrap();
        for (nth, line_no) in [(1, 1), (2, 4)] {
            let corrupt: String = text
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    let l = if i + 1 == line_no {
                        l.replacen("t", "T", nth)
                    } else {
                        l.to_string()
                    };
                    l + "\n"
                })
                .collect();
            std::fs::write(&path, corrupt).unwrap();
            match Journal::open_after(&path, Some(line), |_| {}) {
                Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, line_no as u64),
                _ => panic!("corruption on line {line_no} was accepted"),
            }
        }
    }

    #[test]
    fn a_known_line_does_not_hold_in_another_log() {
        let dir = tempfile::tempdir().unwrap();
        let (path, line) = log_of_three(dir.path());
        let original = std::fs::read(&path).unwrap();
        // Another history of the same length: the same names, another time.
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        append_n(&path, 3);
        assert_eq!(std::fs::read(&path).unwrap().len(), original.len());
        assert!(!line.holds_in(&path), "a log written again");
        std::fs::write(&path, &original[..original.len() - 1]).unwrap();
        assert!(!line.holds_in(&path), "a log cut short");
        std::fs::remove_file(&path).unwrap();
        assert!(!line.holds_in(&path), "no log");
        std::fs::write(&path, &original).unwrap();
        assert!(line.holds_in(&path), "the log as it was");
    }
}
