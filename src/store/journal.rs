//! The event journal `events.jsonl`: open with recovery (a torn last line is truncated,
//! corruption before the end is fatal with its line number), and group-committed appends
//! (many events, one write, one fsync). Only the daemon holding the root lock appends.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::clock;
use crate::event::{self, Event};

pub struct Journal {
    file: File,
    path: PathBuf,
    next_seq: u64,
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
        line: usize,
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
    scan_from(path, bytes, bytes.len(), each)
}

/// `scan` over a reader of `total` bytes, one line in memory at a time.
fn scan_from(
    path: &Path,
    mut reader: impl BufRead,
    total: usize,
    mut each: impl FnMut(Event, usize),
) -> Result<usize, JournalError> {
    let mut line = Vec::with_capacity(1024);
    let mut offset = 0;
    let mut line_no = 0;
    let mut last_seq = 0;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(path, "read the event log"))?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let newline = line.last() == Some(&b'\n');
        let is_last = offset + read >= total;
        let text = &line[..read - usize::from(newline)];
        let decoded = std::str::from_utf8(text)
            .map_err(|_| event::DecodeError::Json("not UTF-8".into()))
            .and_then(event::decode);
        match decoded {
            // A line without its newline was cut short by a crash, even if it parses.
            Ok(ev) if newline && ev.seq > last_seq => {
                last_seq = ev.seq;
                each(ev, offset);
                offset += read;
            }
            Ok(ev) if newline => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    detail: format!("seq {} does not follow {last_seq}", ev.seq),
                });
            }
            _ if is_last => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: line_no,
                    detail: e.to_string(),
                });
            }
            Ok(_) => unreachable!("a parsed line with a newline is handled above"),
        }
    }
    Ok(offset)
}

impl Journal {
    /// Open (creating) the journal, verify every line, hand each event to `replay`, and cut a
    /// torn last line.
    pub fn open(path: &Path, mut replay: impl FnMut(&Event)) -> Result<Opened, JournalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path, "open the event log"))?;
        let total = file.metadata().map_err(io_err(path, "stat the event log"))?.len() as usize;
        let mut last_seq = 0;
        // Where the last group commit starts; its events are decoded again below rather than
        // kept, as a batch can be any size.
        let (mut batch, mut batch_offset) = (None, 0);
        let reader = BufReader::with_capacity(1 << 20, &file);
        let valid_len = scan_from(path, reader, total, |ev, offset| {
            replay(&ev);
            last_seq = ev.seq;
            if batch != Some(ev.batch) {
                (batch, batch_offset) = (Some(ev.batch), offset);
            }
        })?;
        let mut tail = vec![0; valid_len - batch_offset];
        file.seek(SeekFrom::Start(batch_offset as u64))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(io_err(path, "read the event log"))?;
        let (last_batch, _) = parse(path, &tail)?;
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
    /// returns Ok the events are durable; an error is fatal for the daemon (a failed fsync
    /// cannot be retried safely).
    pub fn append(&mut self, events: &mut [Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = String::with_capacity(events.len() * 256);
        let mut batch = 0;
        for ev in events.iter_mut() {
            if ev.seq == 0 {
                self.stamp(ev);
            }
            if batch == 0 {
                batch = ev.seq;
            }
            ev.batch = batch;
            buf.push_str(&event::encode(ev));
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .map_err(io_err(&self.path, "append to the event log"))?;
        self.file
            .sync_data()
            .map_err(io_err(&self.path, "fsync the event log"))
    }

    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
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
}
