//! The WRITE side (ADR-047 command path). One `Engine` owns the journal and the task state;
//! every change is an event that is appended and fsynced (group commit: one fsync per batch)
//! *before* the file operation it orders is performed. Submodules: `intake` (inbox files),
//! `commands` (command files), `scan` (adoption and hand edits), `dispatch` (governance and
//! ordering), `queue` (each agent's assigned tasks in start order), `run` (children's start
//! and end), `housekeeping` (archiving, stalls), `state` (events → state), `perform` (file
//! operations and their redo), `snapshot` (the state as of one event, so a start replays only
//! the log after it). Nothing here reads the SQLite index or the read models.

pub mod commands;
pub mod dispatch;
pub mod housekeeping;
pub mod intake;
pub mod perform;
pub mod queue;
pub mod run;
pub mod scan;
pub mod snapshot;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::audit::Backlog;
use crate::config::Config;
use crate::event::Event;
use crate::layout::Layout;
use crate::lifecycle::trash::Trash;
use crate::store::journal::{Journal, JournalError};
use crate::store::logread::Located;

pub use state::State;

/// A failure the daemon cannot continue after: the journal or the task folders are not
/// writable as required. The daemon exits non-zero and recovery finishes the work at start.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<JournalError> for Fatal {
    fn from(e: JournalError) -> Self {
        Fatal(e.to_string())
    }
}

impl From<crate::lifecycle::fsops::FsError> for Fatal {
    fn from(e: crate::lifecycle::fsops::FsError) -> Self {
        Fatal(e.to_string())
    }
}

/// A problem with a file that is not (or not yet) a task the daemon tracks, remembered so that
/// it is reported once per version of the file rather than on every rescan.
#[derive(Debug, Clone)]
pub struct FileProblem {
    pub fingerprint: Option<crate::lifecycle::fsops::Fingerprint>,
    pub kind: String,
    pub message: String,
}

/// Receives every batch once it is durable and its file operations are done — the daemon
/// hands it on to the index and the read models. Must not block: it runs on the ack path.
pub trait CommitSink {
    /// `places[i]`: where the line of `events[i]` is in the log.
    fn committed(&mut self, events: Vec<Event>, places: Vec<Located>);
}

pub struct Engine {
    pub layout: Layout,
    pub config: Config,
    journal: Journal,
    pub state: State,
    /// Events stamped and applied to `state` but not yet durable.
    batch: Vec<Event>,
    /// Files outside the task set that have a reported problem, by root-relative path.
    pub file_problems: HashMap<String, FileProblem>,
    /// Inbox files and when they were last seen changing (from watcher hints).
    pub inbox_hints: HashMap<String, intake::Hint>,
    /// Children the daemon must start, produced by `dispatch` after the batch is durable.
    pub launches: Vec<run::Launch>,
    /// Running children the daemon must stop (cancel).
    pub stops: Vec<String>,
    /// Task ids whose child is supervised right now by the daemon.
    pub live_children: HashMap<String, Instant>,
    pub draining: bool,
    /// Tasks already reported as stalled (reported again only after activity resumes).
    pub stalled: std::collections::HashSet<String>,
    /// File changes made by committed events, for the git audit trail.
    pub audit: Vec<crate::audit::Change>,
    /// A changed task file was still being written: look at the folders again after settling.
    pub settle_pending: bool,
    /// Where committed batches go (the daemon's publisher); `None`: nowhere.
    pub sink: Option<Box<dyn CommitSink>>,
    /// Task files taken by intake in this round, by root-relative path, with their edited
    /// text: `perform` moves them without reading or editing them again when they are still
    /// that version. Emptied at each commit.
    source_cache: HashMap<String, perform::Taken>,
    /// Where removed and replaced files go, so that freeing them never waits on the ack path.
    trash: Trash,
    /// Names in `rejected/` that rejections decided but not carried out yet will take (the
    /// file's and its reason sidecar's), so that no later rejection picks one of them too: the
    /// batch's rejections by destination, kept as a set so that a drop of thousands of bad
    /// files does not scan the batch for each. Emptied with the batch, at each commit.
    claimed: HashSet<PathBuf>,
    /// The seq of the last event the saved snapshot includes.
    snapshot_seq: Option<u64>,
}

/// The paths an event's file operation touched and a line describing it.
fn audit_change(ev: &Event) -> Option<crate::audit::Change> {
    ev.op.as_ref()?;
    let mut paths: Vec<String> = ev.src.iter().chain(ev.path.iter()).cloned().collect();
    if ev.op.as_deref() == Some("reject")
        && let Some(p) = &ev.path
    {
        paths.push(format!("{p}.reason.yaml"));
    }
    if let Some(cmd) = ev.data_str("command_file") {
        paths.push(cmd.to_string());
    }
    // `subject: from → to (event)` or `subject: event`, pushed rather than formatted (one
    // per file operation; `format!` cost ~2,300 instructions).
    let subject = ev.task_id.as_deref().or(ev.src.as_deref()).unwrap_or_default();
    let mut line = String::with_capacity(subject.len() + ev.event.len() + 40);
    line.push_str(subject);
    line.push_str(": ");
    match (&ev.from, &ev.to) {
        (Some(from), Some(to)) if from != to => {
            for part in [from.as_str(), " → ", to, " (", &ev.event, ")"] {
                line.push_str(part);
            }
        }
        _ => line.push_str(&ev.event),
    }
    Some(crate::audit::Change {
        paths,
        line,
        task_id: ev.task_id.clone(),
        seq: ev.seq,
    })
}

impl Engine {
    /// Open the journal and rebuild the state — from the snapshot and the events after it, or
    /// by replaying the whole log — then finish the last batch.
    /// With `backlog`, the file changes of the events it wants are gathered on the way and
    /// queued for the audit trail first.
    pub fn open(
        layout: Layout,
        config: Config,
        mut backlog: Option<Backlog>,
    ) -> Result<(Engine, u64), Fatal> {
        crate::lifecycle::fsops::create_dir_all(&layout.state_dir())?;
        // The snapshot's state, or the fingerprints of an older picture of the tree to give
        // the state the whole log yields.
        let (mut state, after, earlier) = match snapshot::load(&layout) {
            Ok(Some((_, line))) if !line.holds_in(&layout.events()) => {
                tracing::info!(
                    seq = line.seq,
                    "the state snapshot is of another log; replaying the whole log"
                );
                (State::default(), None, None)
            }
            Ok(Some((saved, line))) if backlog.as_ref().is_some_and(|b| b.wants(line.seq)) => {
                tracing::info!("the audit trail is behind the state snapshot; replaying the whole log");
                (State::default(), None, Some(saved))
            }
            Ok(Some((state, line))) => (state, Some(line), None),
            Ok(None) => (State::default(), None, None),
            Err(why) => {
                tracing::warn!(file = %snapshot::path(&layout).display(), "the state snapshot is not usable ({why}); replaying the whole log");
                (State::default(), None, None)
            }
        };
        let mut replayed = 0u64;
        let opened = Journal::open_after(&layout.events(), after, |ev| {
            state.apply(ev);
            replayed += 1;
            if let Some(b) = backlog.as_mut().filter(|b| b.wants(ev.seq))
                && let Some(change) = audit_change(ev)
            {
                b.add(change);
            }
        })?;
        tracing::info!(
            events = replayed,
            after_seq = after.map_or(0, |line| line.seq),
            "replayed the log"
        );
        if let Some(earlier) = earlier {
            state.adopt_fingerprints(&earlier);
        }
        // The fingerprint cache of earlier versions; the snapshot carries fingerprints now.
        let _ = std::fs::remove_file(layout.state_dir().join("fingerprints"));
        let trash = Trash::open(layout.trash())?;
        let engine = Engine {
            layout,
            config,
            journal: opened.journal,
            state,
            batch: Vec::new(),
            file_problems: HashMap::new(),
            inbox_hints: HashMap::new(),
            launches: Vec::new(),
            stops: Vec::new(),
            live_children: HashMap::new(),
            draining: false,
            settle_pending: false,
            audit: backlog.and_then(Backlog::into_change).into_iter().collect(),
            stalled: Default::default(),
            sink: None,
            source_cache: HashMap::new(),
            trash,
            claimed: HashSet::new(),
            snapshot_seq: None,
        };
        let mut engine = engine;
        engine.recover(&opened.last_batch)?;
        Ok((engine, opened.truncated_bytes))
    }

    /// Stamp an event with its seq and apply it to the state now; it becomes durable at the
    /// next `commit`, and its file operation is performed only then.
    pub fn emit(&mut self, mut ev: Event) {
        self.set_aside_what_is_in_the_way(&ev);
        self.journal.stamp(&mut ev);
        self.state.apply(&ev);
        self.batch.push(ev);
    }

    /// Make the batch durable (one write, one fsync), then perform the file operations it
    /// orders, in order.
    pub fn commit(&mut self) -> Result<usize, Fatal> {
        if self.batch.is_empty() {
            return Ok(0);
        }
        // The batch leaves for the index thread; its successor is sized like it, so that a
        // burst's batch of thousands of events is not grown (copied, its pages touched anew)
        // a dozen times.
        let capacity = self.batch.len();
        let mut batch = std::mem::replace(&mut self.batch, Vec::with_capacity(capacity));
        let places = self.journal.append(&mut batch)?;
        let mut stage = perform::Stage::default();
        for ev in &batch {
            self.perform(ev, false, &mut stage)?;
            if let Some(change) = audit_change(ev) {
                self.audit.push(change);
            }
        }
        self.flush(&mut stage)?;
        self.source_cache.clear();
        self.claimed.clear();
        let n = batch.len();
        if let Some(sink) = self.sink.as_mut() {
            sink.committed(batch, places);
        }
        Ok(n)
    }

    pub fn last_seq(&self) -> u64 {
        self.journal.last_seq()
    }

    pub fn now() -> SystemTime {
        SystemTime::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_line_names_the_subject_and_the_transition() {
        let mut moved = Event::task("task_assigned", "t1");
        moved.op = Some("move".into());
        moved.src = Some("work/collaboration/inbox/a.yaml".into());
        moved.path = Some("work/collaboration/assigned/bot/t1.yaml".into());
        moved.from = Some("new".into());
        moved.to = Some("assigned".into());
        let change = audit_change(&moved).expect("a move is a change");
        assert_eq!(change.line, "t1: new → assigned (task_assigned)");
        assert_eq!(
            change.paths,
            [moved.src.clone().unwrap(), moved.path.clone().unwrap()]
        );

        let mut rejected = Event::new("file_rejected");
        rejected.op = Some("reject".into());
        rejected.src = Some("work/collaboration/inbox/b.yaml".into());
        rejected.path = Some("work/collaboration/rejected/b.yaml".into());
        let change = audit_change(&rejected).expect("a rejection is a change");
        assert_eq!(change.line, "work/collaboration/inbox/b.yaml: file_rejected");
        assert_eq!(change.paths[2], "work/collaboration/rejected/b.yaml.reason.yaml");

        assert!(
            audit_change(&Event::task("task_started", "t1")).is_none(),
            "no file operation"
        );
    }
}
