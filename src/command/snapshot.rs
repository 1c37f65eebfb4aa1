//! The state snapshot `work/.agentplane/snapshot`: the engine's `State` as of one event of
//! the log (named by its line, `LineAt`), with the fingerprints of the task files as last read
//! or written. A start takes it and replays only the events after that line, so its time
//! follows the number of tasks, not the length of the history (the log's bytes are still
//! read, for their checksums). The daemon writes it after READY, after the round that follows
//! each `rescan_s` tick if events came, and at a clean stop.
//!
//! It is only a cache. A missing, damaged (checksum), outdated (format) or foreign snapshot
//! (its line is not in the log as it is: a log replaced, restored or cut) means the whole log
//! is replayed, as does an audit backlog that reaches back before it. It is written from a
//! state whose events are all durable, so it never runs ahead of the log.
//!
//! Format: a header line, a line locating the event, one JSON object per task, and a last
//! line `end <crc32c>` over every byte before it.

use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Engine;
use super::state::{SavedTask, State};
use crate::layout::Layout;
use crate::lifecycle::fsops;
use crate::store::journal::LineAt;

const HEADER: &str = "agentplane snapshot v1";

/// Where a snapshot's state stands in the log, and how many tasks follow.
#[derive(Serialize, Deserialize)]
struct Anchor {
    at: LineAt,
    tasks: usize,
}

pub fn path(layout: &Layout) -> PathBuf {
    layout.state_dir().join("snapshot")
}

/// The state a snapshot holds and the line of its last event; `Ok(None)` when there is none.
/// The caller still checks that the line holds in the log.
pub fn load(layout: &Layout) -> Result<Option<(State, LineAt)>, String> {
    let text = match std::fs::read_to_string(path(layout)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let body_len = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let (body, end) = text.split_at(body_len);
    if end.trim_end() != format!("end {:08x}", crc32c::crc32c(body.as_bytes())) {
        return Err("it is incomplete or damaged (checksum)".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(HEADER) {
        return Err("it was written by another version".into());
    }
    let anchor: Anchor = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("its second line does not say where it stands in the log")?;
    let tasks = lines
        .map(|l| serde_json::from_str::<SavedTask>(l).map_err(|e| format!("a task does not read back: {e}")));
    let state = State::restore(tasks, anchor.at.seq)?;
    if state.tasks.len() != anchor.tasks {
        return Err(format!(
            "it holds {} tasks, not {}",
            state.tasks.len(),
            anchor.tasks
        ));
    }
    Ok(Some((state, anchor.at)))
}

impl Engine {
    /// Save the state as of the last durable event (temp + rename; no fsync: a cache). Does
    /// nothing while events are applied but not yet durable, while the log is empty, or when
    /// no event came since the last save (fingerprints a scan refreshed without an event are
    /// then not saved: the next start reads those few files again).
    pub fn save_snapshot(&mut self) {
        let Some(line) = self.journal.last_line().filter(|_| self.batch.is_empty()) else {
            return;
        };
        if self.snapshot_seq == Some(line.seq) {
            return;
        }
        let started = std::time::Instant::now();
        let tasks = self.state.tasks.len();
        let mut text = Vec::with_capacity(300 * tasks + 256);
        text.extend_from_slice(HEADER.as_bytes());
        text.push(b'\n');
        let anchor = Anchor { at: line, tasks };
        serde_json::to_writer(&mut text, &anchor).expect("plain data always serializes");
        text.push(b'\n');
        for task in self.state.save() {
            match task {
                Ok(task) => serde_json::to_writer(&mut text, &task).expect("plain data always serializes"),
                Err(e) => {
                    tracing::warn!("cannot save the state snapshot: {e}");
                    return;
                }
            }
            text.push(b'\n');
        }
        let crc = crc32c::crc32c(&text);
        let _ = writeln!(text, "end {crc:08x}");
        let dest = path(&self.layout);
        let written = fsops::create_temp(&dest, &text).and_then(|(tmp, _)| fsops::rename(&tmp, &dest));
        match written {
            Ok(()) => {
                self.snapshot_seq = Some(line.seq);
                let ms = started.elapsed().as_millis() as u64;
                tracing::debug!(
                    seq = line.seq,
                    tasks,
                    bytes = text.len(),
                    ms,
                    "saved the state snapshot"
                );
            }
            Err(e) => tracing::warn!("cannot save the state snapshot: {e}"),
        }
    }
}
