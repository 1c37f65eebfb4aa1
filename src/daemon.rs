//! The composition root of the daemon: take the root lock, open the engine (replay +
//! recovery), adopt the tree, then loop — watcher hints, child endings, timers and signals in;
//! intake, scans, dispatch and spawns out, each round committed as one batch. On SIGTERM or
//! SIGINT: stop intake, take children down the signal ladder, record them, exit 0.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::adapter::{self, Ladder, Outcome, StopReason};
use crate::command::{Engine, Fatal, intake::Hint as InboxHint};
use crate::config::Config;
use crate::event::Event;
use crate::layout::Layout;
use crate::lifecycle::fsops::{self, Fingerprint};
use crate::publish::Publisher;
use crate::service;
use crate::watch::{self as fswatch, Hint};

pub enum Exit {
    Ok,
    /// Environment problem (lock held, unreadable config): exit 2.
    Environment(String),
    /// The daemon had to stop (journal corrupt, fsync failed): exit 1.
    Failed(String),
}

enum Msg {
    ChildDone {
        task_id: String,
        attempt: u32,
        outcome: Outcome,
    },
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission; it sends nothing.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// Hold the root's lock for the daemon's lifetime; a second daemon gets the holder's pid.
fn lock(layout: &Layout) -> Result<File, Exit> {
    let path = layout.lock();
    fsops::create_dir_all(&layout.state_dir()).map_err(|e| Exit::Environment(e.to_string()))?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Exit::Environment(format!("cannot open {}: {e}", path.display())))?;
    // A daemon killed while it was starting a child leaves that child holding the lock until
    // it execs (a moment, longer on a loaded machine): if the recorded holder is dead, wait
    // for the leftover to let go rather than refuse.
    let deadline = Instant::now() + Duration::from_secs(5);
    while file.try_lock().is_err() {
        let mut pid = String::new();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut pid);
        let holder_alive = pid.trim().parse::<i32>().is_ok_and(process_exists);
        if !holder_alive && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return Err(Exit::Environment(format!(
            "another agentplane daemon is already running on {} (pid {}); stop it first, or use a different --root",
            layout.root.display(),
            pid.trim()
        )));
    }
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| write!(file, "{}", std::process::id()));
    written.map_err(|e| Exit::Environment(format!("cannot write {}: {e}", path.display())))?;
    Ok(file)
}

/// The folders every root has.
pub fn ensure_folders(layout: &Layout) -> Result<(), fsops::FsError> {
    for dir in [
        layout.inbox(),
        layout.collab().join("assigned"),
        layout.collab().join("done"),
        layout.collab().join("error"),
        layout.rejected(),
        layout.fridge(),
        layout.archive(),
        layout.status_dir(),
        layout.logs(),
        layout.state_dir(),
    ] {
        fsops::create_dir_all(&dir)?;
    }
    Ok(())
}

/// Remove temp files a crash left behind (they are never read): in the task folders, the
/// state directory (state snapshot) and `work/status/` (read models). A temp file names
/// its writer's pid: one a live process is writing (`agentplane submit` or a command
/// running right now, or this daemon's own threads) is left to it.
fn clean_temp_files(engine: &Engine, started: SystemTime) {
    let collab = engine.layout.collab();
    let mut dirs = vec![
        collab.join("inbox"),
        collab.join("rejected"),
        collab.join("fridge"),
        engine.layout.state_dir(),
        engine.layout.status_dir(),
    ];
    for top in ["assigned", "done", "error", "archive"] {
        if let Ok(rd) = std::fs::read_dir(collab.join(top)) {
            dirs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if fsops::is_temp_name(&name) && left_behind(&e, &name, started) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Is the temp file `.agentplane-<pid>-<n>.tmp` a leftover? Yes when its writer is gone, or
/// when it carries this daemon's pid but is older than this start (a pid reused across a
/// reboot or in a container).
fn left_behind(entry: &std::fs::DirEntry, name: &str, started: SystemTime) -> bool {
    let pid = fsops::temp_name_pid(name)
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|&pid| pid > 0);
    let Some(pid) = pid else { return true };
    if pid as u32 == std::process::id() {
        return entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|mtime| mtime < started);
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

/// After a burst of this many events, freed memory is given back once the daemon has been
/// quiet for `RELEASE_WHEN_QUIET` (glibc would keep the burst's peak heap; trimming during
/// the burst would only make the next round fault the pages in again).
const RELEASE_AFTER_EVENTS: u64 = 2_000;
const RELEASE_WHEN_QUIET: Duration = Duration::from_secs(1);

pub fn run(root: PathBuf, once: bool) -> Exit {
    crate::memory::tune_allocator();
    // notify (off Linux) reports canonical paths; the root must be in the same form to match.
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let layout = Layout::new(root);
    if !layout.collab().is_dir() {
        return Exit::Environment(format!(
            "{} has no work/collaboration/; run `agentplane init {}` first",
            layout.root.display(),
            layout.root.display()
        ));
    }
    let _lock = match lock(&layout) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let config = match Config::load(&layout.config()) {
        Ok(c) => c,
        Err(e) => return Exit::Environment(e),
    };
    if let Err(e) = ensure_folders(&layout) {
        return Exit::Environment(e.to_string());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return Exit::Environment(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(layout, config, once)) {
        Ok(()) => Exit::Ok,
        Err(Fatal(msg)) => Exit::Failed(msg),
    }
}

struct Daemon {
    engine: Engine,
    committer: Option<crate::audit::Committer>,
    tx: mpsc::UnboundedSender<Msg>,
    stop_senders: HashMap<String, watch::Sender<Option<StopReason>>>,
    ladder: Ladder,
    /// Inbox wake-up for files still settling.
    inbox_recheck: Option<Instant>,
    need_intake: bool,
    need_full_scan: bool,
    /// A snapshot of the state is to be saved once the round has committed.
    snapshot_due: bool,
    /// Paths in the task folders the watcher named, with what its stat of each found (the
    /// latest hint's).
    changed_paths: HashMap<String, Option<Fingerprint>>,
    /// Index and read models, fed after each round (off the ack path).
    publish: Publisher,
}

async fn serve(layout: Layout, config: Config, once: bool) -> Result<(), Fatal> {
    let started = Instant::now();
    // File times come from a coarse clock that can lag this one by a tick; a second of
    // margin keeps this process's own first temp files from looking older than its start.
    let start_time = SystemTime::now() - Duration::from_secs(1);
    // Before anything else: a stop request during recovery or right after READY must be
    // handled as one, not kill the process.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Fatal(format!("cannot handle SIGTERM: {e}")))?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Fatal(format!("cannot handle SIGINT: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let (watch_tx, mut watch_rx) = mpsc::unbounded_channel::<Hint>();
    let _watcher = match fswatch::start(&layout.collab(), &layout.inbox(), watch_tx) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("file watching unavailable ({e}); relying on periodic rescans");
            None
        }
    };
    let ladder = Ladder {
        interrupt: config.interrupt,
        terminate: config.terminate,
    };
    let committer = crate::audit::Committer::start(&layout.root, &config, &layout.audit_mark());
    let backlog = committer.as_ref().map(crate::audit::Committer::backlog);
    let (mut engine, truncated) = Engine::open(layout, config, backlog)?;
    let publish = Publisher::start(&mut engine);
    let mut d = Daemon {
        engine,
        committer,
        tx,
        stop_senders: HashMap::new(),
        ladder,
        inbox_recheck: None,
        need_intake: true,
        need_full_scan: true,
        snapshot_due: false,
        changed_paths: HashMap::new(),
        publish,
    };
    clean_temp_files(&d.engine, start_time);
    let mut started_ev = Event::new("daemon_started")
        .with_data("pid", serde_json::json!(std::process::id()))
        .with_data("version", serde_json::json!(env!("CARGO_PKG_VERSION")));
    if truncated > 0 {
        started_ev = started_ev.with_data("truncated_torn_bytes", serde_json::json!(truncated));
        tracing::warn!(bytes = truncated, "cut a torn last line from the event log");
    }
    d.engine.emit(started_ev);
    d.engine.housekeeping(SystemTime::now());
    d.round().await?;
    // The replay of the log is over: give back what it used.
    crate::memory::release();
    let mut released_at_seq = d.engine.last_seq();
    tracing::info!(
        tasks = d.engine.state.tasks.len(),
        seq = d.engine.last_seq(),
        ms = started.elapsed().as_millis() as u64,
        "READY"
    );
    service::notify(&format!(
        "READY=1\nSTATUS=watching {} tasks",
        d.engine.state.tasks.len()
    ));
    // After READY: a snapshot is a cache, and the next start wants the state as it is now
    // (the files just read, the log's tail just replayed).
    d.engine.save_snapshot();

    let mut rescan = tokio::time::interval(d.engine.config.rescan);
    // A rescan that took long must not be followed by a burst of make-up rescans.
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    let watchdog = service::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));

    loop {
        if once && d.idle() {
            break;
        }
        let wake = d.next_wake();
        tokio::select! {
            Some(hint) = watch_rx.recv() => d.on_hint(hint),
            Some(msg) = rx.recv() => d.on_msg(msg),
            _ = tokio::time::sleep_until(wake.into()) => d.need_intake = true,
            _ = rescan.tick() => {
                d.need_full_scan = true;
                d.need_intake = true;
                d.engine.housekeeping(SystemTime::now());
                d.snapshot_due = true;
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => service::notify("WATCHDOG=1"),
            _ = tokio::time::sleep(RELEASE_WHEN_QUIET),
                if d.engine.last_seq() - released_at_seq >= RELEASE_AFTER_EVENTS =>
            {
                released_at_seq = d.engine.last_seq();
                crate::memory::release();
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        // Take everything else that is already waiting: one round, one commit.
        while let Ok(hint) = watch_rx.try_recv() {
            d.on_hint(hint);
        }
        while let Ok(msg) = rx.try_recv() {
            d.on_msg(msg);
        }
        d.round().await?;
        // The round committed everything it applied: the state is the log's.
        if std::mem::take(&mut d.snapshot_due) {
            d.engine.save_snapshot();
        }
    }
    d.shutdown(&mut rx).await
}

impl Daemon {
    fn on_hint(&mut self, hint: Hint) {
        match hint {
            Hint::Rescan => {
                tracing::debug!("watcher asks for a full rescan (events were lost)");
                self.need_full_scan = true;
                self.need_intake = true;
            }
            Hint::Paths { paths, complete } => {
                tracing::debug!(?paths, complete, "watch hint");
                for seen in paths {
                    let rel = self.engine.layout.rel(&seen.path);
                    if crate::layout::in_inbox(&rel) {
                        self.need_intake = true;
                        let h = self.engine.inbox_hints.entry(rel).or_insert(InboxHint {
                            changed_at: Instant::now(),
                            complete,
                        });
                        h.changed_at = Instant::now();
                        h.complete = complete;
                    } else if rel.starts_with("work/collaboration/") {
                        self.changed_paths.insert(rel, seen.fingerprint);
                    }
                }
            }
        }
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::ChildDone {
                task_id,
                attempt,
                outcome,
            } => {
                self.stop_senders.remove(&task_id);
                self.engine
                    .child_finished(&task_id, attempt, Some(&outcome), None);
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = Instant::now() + Duration::from_secs(3600);
        if let Some(t) = self.inbox_recheck {
            wake = wake.min(t);
        }
        if let Some(t) = self.engine.next_retry() {
            let wait = t.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
            wake = wake.min(Instant::now() + wait);
        }
        if self.engine.settle_pending {
            wake = wake.min(Instant::now() + self.engine.config.settle);
        }
        wake
    }

    /// `--once`: nothing in the inbox still settling, nothing running, no retry pending.
    fn idle(&self) -> bool {
        self.inbox_recheck.is_none()
            && self.engine.live_children.is_empty()
            && self.engine.launches.is_empty()
            && self.engine.next_retry().is_none()
            && !self.engine.settle_pending
            && !self.need_intake
    }

    /// One round: look at what changed, decide, commit, start children.
    async fn round(&mut self) -> Result<(), Fatal> {
        if self.need_full_scan {
            self.need_full_scan = false;
            self.engine.settle_pending = false;
            self.changed_paths.clear();
            self.engine.full_scan()?;
        } else if !self.changed_paths.is_empty() || self.engine.settle_pending {
            self.engine.settle_pending = false;
            let mut paths: Vec<(String, Option<Fingerprint>)> = self.changed_paths.drain().collect();
            paths.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if paths.is_empty() {
                tracing::debug!("full rescan: a file was still being written");
                self.engine.full_scan()?;
            } else {
                self.engine.check_paths(&paths)?;
            }
        }
        if self.need_intake {
            self.need_intake = false;
            self.inbox_recheck = self.engine.intake()?;
        }
        loop {
            self.engine.dispatch();
            self.engine.commit()?;
            for id in std::mem::take(&mut self.engine.stops) {
                if let Some(tx) = self.stop_senders.get(&id) {
                    let _ = tx.send(Some(StopReason::Cancel));
                }
            }
            let launches = std::mem::take(&mut self.engine.launches);
            if launches.is_empty() {
                break;
            }
            for launch in launches {
                self.spawn(launch);
            }
            self.engine.commit()?;
        }
        self.flush_audit();
        self.publish.update(&self.engine);
        Ok(())
    }

    fn flush_audit(&mut self) {
        let changes = std::mem::take(&mut self.engine.audit);
        if let Some(c) = &self.committer {
            changes.into_iter().for_each(|change| c.record(change));
        }
    }

    fn spawn(&mut self, launch: crate::command::run::Launch) {
        let prepared = self.engine.prepare(&launch);
        let spawned =
            prepared.and_then(|p| adapter::spawn(&p.spec).map(|r| (p, r)).map_err(|e| e.to_string()));
        match spawned {
            Ok((prepared, running)) => {
                self.engine
                    .child_started(&launch.task_id, launch.attempt, running.pid);
                let (stop_tx, stop_rx) = watch::channel(None);
                self.stop_senders.insert(launch.task_id.clone(), stop_tx);
                let tx = self.tx.clone();
                let ladder = self.ladder;
                let timeout = prepared.timeout;
                tokio::spawn(async move {
                    let outcome = running.supervise(timeout, ladder, stop_rx).await;
                    let _ = tx.send(Msg::ChildDone {
                        task_id: launch.task_id,
                        attempt: launch.attempt,
                        outcome,
                    });
                });
            }
            Err(e) => {
                tracing::error!(task = %launch.task_id, "cannot start the agent: {e}");
                self.engine
                    .child_finished(&launch.task_id, launch.attempt, None, Some(e));
            }
        }
    }

    /// Stop intake, take children down the ladder, record them as interrupted, exit.
    async fn shutdown(mut self, rx: &mut mpsc::UnboundedReceiver<Msg>) -> Result<(), Fatal> {
        self.engine.draining = true;
        service::notify("STOPPING=1");
        if !self.stop_senders.is_empty() {
            tracing::info!(children = self.stop_senders.len(), "stopping children");
        }
        for tx in self.stop_senders.values() {
            let _ = tx.send(Some(StopReason::Shutdown));
        }
        while !self.engine.live_children.is_empty() {
            match rx.recv().await {
                Some(msg) => self.on_msg(msg),
                None => break,
            }
        }
        self.engine.emit(Event::new("daemon_stopped"));
        self.engine.commit()?;
        self.engine.save_snapshot();
        self.flush_audit();
        self.publish.update(&self.engine);
        self.publish.finish();
        // Let the audit thread make its last commit before the process exits.
        if let Some(c) = self.committer.take() {
            c.finish();
        }
        tracing::info!("stopped");
        Ok(())
    }
}
