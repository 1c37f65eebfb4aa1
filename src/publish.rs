//! Everything the daemon derives after a batch is durable, kept off the acknowledgement path.
//! The engine hands each committed batch to a `Sink` (cheap: a digest under a mutex and a
//! channel send); a dedicated thread applies the batches to the SQLite index (everything
//! that arrived together in one transaction; opened, rebuilt if need be, and caught up from
//! the log at start); and after each round of the daemon `Publisher::update` snapshots the
//! tasks that changed from the engine's state and sends them to the read-model writer thread.
//! Neither thread can delay an acknowledgement, and a failing index never stops the daemon:
//! it is reopened (and caught up from the log) later. Reads the engine's state; never changes
//! it, the log or a task file.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::command::state::Entry;
use crate::command::{CommitSink, Engine};
use crate::event::Event;
use crate::readmodel::{self, EventLine, HandoffView, ProblemView, RunEvent, TaskView, Update, writer};
use crate::store::index::{self, Index};
use crate::store::logread::Located;

/// How long a failed index waits before it is opened (and caught up) again.
const INDEX_RETRY: Duration = Duration::from_secs(10);

/// After this long without batches the index's WAL is checkpointed and emptied: readers then
/// touch nothing, and a daemon killed while idle leaves an index that is not behind.
const CHECKPOINT_WHEN_QUIET: Duration = Duration::from_millis(500);

/// A WAL this large is checkpointed in the first pause of this length between batches.
/// Left to SQLite, the checkpoint comes at 1,000 pages (16 MB here), whenever a batch
/// happens to cross that: ~40 ms of fsync that the engine's next fdatasync waits behind in
/// the device queue — the whole tail of the latency figure. Done in pauses at 1 MB, each
/// checkpoint is a few ms of I/O and rarely meets a commit; under a steady stream there
/// are no pauses and SQLite's own checkpoint still bounds the WAL. See docs/decisions.md.
const CHECKPOINT_BYTES: u64 = 1 << 20;
const CHECKPOINT_IN_A_PAUSE: Duration = Duration::from_millis(2);

enum IndexMsg {
    /// Committed events and the places of their lines in the log, in the same order.
    Batch(Vec<Event>, Vec<Located>),
    Stop,
}

/// What committed batches told us since the last `update`.
#[derive(Default)]
struct Pending {
    dirty: HashSet<String>,
    events: VecDeque<EventLine>,
    handoffs: Vec<HandoffView>,
    runs: Vec<RunEvent>,
    /// Task id → what the daemon said about its inconsistent file.
    problem_messages: HashMap<String, String>,
    /// Path → task of a reported file problem.
    problem_tasks: HashMap<String, Option<String>>,
    last_seq: u64,
}

impl Pending {
    fn digest(&mut self, ev: &Event) {
        self.last_seq = ev.seq;
        if let Some(id) = &ev.task_id
            && !matches!(ev.event.as_str(), "task_rejected" | "command_rejected")
        {
            self.dirty.insert(id.clone());
            if ev.data.as_ref().is_some_and(|d| d.contains_key("problem"))
                && let Some(msg) = &ev.error
            {
                self.problem_messages.insert(id.clone(), msg.clone());
            }
        }
        if ev.event == "problem_detected"
            && let Some(path) = &ev.path
        {
            self.problem_tasks.insert(path.clone(), ev.task_id.clone());
        }
        if self.events.len() == readmodel::RECENT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(EventLine::of(ev));
        self.handoffs.extend(HandoffView::of(ev));
        self.runs.extend(RunEvent::of(ev));
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Installed in the engine: receives every committed batch.
struct Sink {
    pending: Arc<Mutex<Pending>>,
    index: Sender<IndexMsg>,
}

impl CommitSink for Sink {
    fn committed(&mut self, events: Vec<Event>, places: Vec<Located>) {
        {
            let mut p = lock(&self.pending);
            for ev in &events {
                p.digest(ev);
            }
        }
        // A stopped index thread is not an error: the next start catches up from the log.
        let _ = self.index.send(IndexMsg::Batch(events, places));
    }
}

fn view(e: &Entry, message: Option<&String>) -> TaskView {
    TaskView {
        card: Arc::clone(e.card()),
        problem_message: e.problem().and(message.cloned()),
    }
}

fn file_problems(engine: &Engine, tasks: &HashMap<String, Option<String>>) -> Vec<ProblemView> {
    // A problem about a file that is gone no longer applies (the daemon forgets it at its
    // next full scan).
    let mut out: Vec<ProblemView> = engine
        .file_problems
        .iter()
        .filter(|(path, _)| engine.layout.abs(path).exists())
        .map(|(path, p)| ProblemView {
            path: path.clone(),
            task_id: tasks.get(path).cloned().flatten(),
            kind: p.kind.clone(),
            message: p.message.clone(),
        })
        .collect();
    out.sort();
    out
}

/// Owned by the daemon: starts both threads, feeds the read models after each round, and
/// stops both (after they wrote everything) when dropped or finished.
pub struct Publisher {
    pending: Arc<Mutex<Pending>>,
    problem_tasks: HashMap<String, Option<String>>,
    sent_problems: Vec<ProblemView>,
    /// Until the first round is done: the index thread's end of the channel, and the last seq
    /// before the daemon's first round (the read models read the history up to it).
    waiting: Option<(Receiver<IndexMsg>, u64)>,
    index_tx: Sender<IndexMsg>,
    index: Option<JoinHandle<()>>,
    models: Option<(Sender<writer::Msg>, JoinHandle<()>)>,
}

impl Publisher {
    /// Install the sink in the engine. The threads start after the daemon's first round, so
    /// that start-up recovery and intake do not share the disk with an index rebuild or the
    /// first writing of the read models; batches committed meanwhile wait in the channel.
    pub fn start(engine: &mut Engine) -> Publisher {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (index_tx, index_rx) = mpsc::channel();
        engine.sink = Some(Box::new(Sink {
            pending: Arc::clone(&pending),
            index: index_tx.clone(),
        }));
        Publisher {
            pending,
            problem_tasks: HashMap::new(),
            sent_problems: Vec::new(),
            waiting: Some((index_rx, engine.last_seq())),
            index_tx,
            index: None,
            models: None,
        }
    }

    /// Start the index thread (which opens, rebuilds or catches up the index itself) and the
    /// read-model thread with the engine's whole state.
    fn launch(&mut self, engine: &Engine, index_rx: Receiver<IndexMsg>, history_upto: u64) {
        let layout = engine.layout.clone();
        let db = index::db_path(&layout);
        let log = layout.events();
        self.index = std::thread::Builder::new()
            .name("index".into())
            .spawn(move || index_thread(&db, &log, &index_rx))
            .map_err(|e| tracing::error!("cannot start the index thread ({e}); the index is not maintained"))
            .ok();
        let p = std::mem::take(&mut *lock(&self.pending));
        self.problem_tasks.extend(p.problem_tasks);
        self.sent_problems = file_problems(engine, &self.problem_tasks);
        let first = Update {
            last_seq: engine.last_seq(),
            upserts: engine
                .state
                .tasks
                .values()
                .map(|e| view(e, p.problem_messages.get(&*e.id)))
                .collect(),
            file_problems: Some(self.sent_problems.clone()),
            events: p.events.into(),
            handoffs: p.handoffs,
            runs: p.runs,
            agents: engine.config.agents.as_ref().map(|a| a.keys().cloned().collect()),
            ..Update::default()
        };
        let (models_tx, models_rx) = mpsc::channel();
        self.models = writer::spawn(
            layout.status_dir(),
            layout.events(),
            history_upto,
            first,
            models_rx,
        )
        .map_err(|e| tracing::error!("cannot start the read-model thread ({e}); work/status/ is not updated"))
        .ok()
        .map(|handle| (models_tx, handle));
    }

    /// After a round: send the read models the tasks that changed, as the state holds them now.
    pub fn update(&mut self, engine: &Engine) {
        if let Some((index_rx, history_upto)) = self.waiting.take() {
            self.launch(engine, index_rx, history_upto);
            return;
        }
        let p = std::mem::take(&mut *lock(&self.pending));
        self.problem_tasks.extend(p.problem_tasks);
        let problems = file_problems(engine, &self.problem_tasks);
        let problems_changed = problems != self.sent_problems;
        if p.dirty.is_empty() && p.events.is_empty() && !problems_changed {
            return;
        }
        let mut update = Update {
            last_seq: p.last_seq,
            events: p.events.into(),
            handoffs: p.handoffs,
            runs: p.runs,
            ..Update::default()
        };
        for id in p.dirty {
            match engine.state.tasks.get(id.as_str()) {
                Some(e) => update.upserts.push(view(e, p.problem_messages.get(&id))),
                None => update.removed.push(id),
            }
        }
        if problems_changed {
            update.file_problems = Some(problems.clone());
            self.sent_problems = problems;
        }
        if let Some((tx, _)) = &self.models {
            let _ = tx.send(writer::Msg::Update(update));
        }
    }

    /// Let both threads write what they have and end.
    pub fn finish(&mut self) {
        if let Some(handle) = self.index.take() {
            let _ = self.index_tx.send(IndexMsg::Stop);
            let _ = handle.join();
        }
        if let Some((tx, handle)) = self.models.take() {
            let _ = tx.send(writer::Msg::Stop);
            let _ = handle.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.finish();
    }
}

fn open_index(db: &Path, log: &Path) -> Option<Index> {
    let started = Instant::now();
    match Index::open(db, log) {
        Ok((index, opened)) => {
            let ms = started.elapsed().as_millis() as u64;
            // A rebuild or a long catch-up peaks at tens of MB the daemon will not need again.
            crate::memory::release();
            match opened.rebuilt {
                Some(why) => tracing::info!(seq = index.last_seq(), ms, "index rebuilt from the log ({why})"),
                None => tracing::debug!(
                    seq = index.last_seq(),
                    caught_up = opened.caught_up,
                    ms,
                    "index opened"
                ),
            }
            Some(index)
        }
        Err(e) => {
            tracing::error!("index unavailable, retrying later: {e}");
            None
        }
    }
}

/// The index thread: apply whatever batches are waiting, together, until told to stop.
fn index_thread(db: &Path, log: &Path, rx: &Receiver<IndexMsg>) {
    let mut index = open_index(db, log);
    let mut retry_at = Instant::now() + INDEX_RETRY;
    // Whether the WAL may hold writes since the last checkpoint: opening the index (a
    // rebuild, a catch-up) and applying any batch may write, even a batch of events the
    // open had already taken in.
    let mut to_checkpoint = index.is_some();
    loop {
        let (mut events, mut places) = (Vec::new(), Vec::new());
        let mut stop = false;
        let first = if to_checkpoint {
            let quiet = match index.as_ref().map(Index::wal_bytes) {
                Some(bytes) if bytes >= CHECKPOINT_BYTES => CHECKPOINT_IN_A_PAUSE,
                _ => CHECKPOINT_WHEN_QUIET,
            };
            match rx.recv_timeout(quiet) {
                Err(RecvTimeoutError::Timeout) => {
                    // A query holding the WAL at that moment means another quiet window.
                    to_checkpoint = match index.as_mut().map(Index::checkpoint) {
                        Some(Ok(done)) => !done,
                        Some(Err(e)) => {
                            tracing::debug!("{e}");
                            true
                        }
                        None => false,
                    };
                    continue;
                }
                other => other.map_err(|_| ()),
            }
        } else {
            rx.recv().map_err(|_| ())
        };
        match first {
            Ok(IndexMsg::Batch(e, p)) => (events, places) = (e, p),
            Ok(IndexMsg::Stop) | Err(()) => stop = true,
        }
        while !stop {
            match rx.try_recv() {
                Ok(IndexMsg::Batch(e, p)) => {
                    events.extend(e);
                    places.extend(p);
                }
                Ok(IndexMsg::Stop) | Err(TryRecvError::Disconnected) => stop = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        if index.as_ref().is_some_and(|ix| !ix.in_place()) {
            // Deleted or replaced under the daemon: the file we write is not the one readers see.
            tracing::warn!(path = %db.display(), "the index file was deleted or replaced; opening it again");
            index = None;
            retry_at = Instant::now();
        }
        if index.is_none() && Instant::now() >= retry_at {
            index = open_index(db, log);
            to_checkpoint |= index.is_some();
            retry_at = Instant::now() + INDEX_RETRY;
        }
        if let Some(ix) = index.as_mut() {
            match ix.apply(&events, &places) {
                Ok(_) => to_checkpoint = true,
                Err(e) => {
                    tracing::error!("index not updated, reopening it later: {e}");
                    index = None;
                    retry_at = Instant::now() + INDEX_RETRY;
                }
            }
        }
        if stop {
            if let Some(ix) = index.take()
                && let Err(e) = ix.close()
            {
                tracing::warn!("{e}");
            }
            return;
        }
    }
}
