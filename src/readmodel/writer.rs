//! The read-model writer: a thread that owns the `Model`, applies the daemon's updates as they
//! come, and rewrites the files of `work/status/` at most once per `MIN_INTERVAL` (a burst of
//! thousands of events costs a few rewrites per second, never one per event), each atomically
//! (temp + fsync + rename) and only when its content changed (`status.json`: apart from
//! `generated_at`). Writes nothing outside `work/status/`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Files, Model, Update, history_from_log};
use crate::clock;
use crate::lifecycle::fsops;

/// The shortest time between two rewrites of the read models.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// After a rewrite that took `t`, the next waits at least `PACE × t`: with a very large tree
/// (a `status.json` of many megabytes) the writer uses at most a tenth of a core and of the
/// disk, whatever the event rate.
const PACE: u32 = 10;

pub enum Msg {
    Update(Update),
    /// Write what is pending and end the thread.
    Stop,
}

const STATUS_JSON: &str = "status.json";

fn digest(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// `status.json` minus its first line, which holds only `generated_at`.
fn status_body(text: &str) -> &str {
    text.split_once('\n').map_or("", |(_, rest)| rest)
}

/// Each file's name and content (for status.json: its body).
fn parts(f: &Files) -> [(&'static str, &str); 5] {
    [
        (STATUS_JSON, f.status_body.as_str()),
        ("AGENT_STATUS.md", f.agent_status.as_str()),
        ("BOARD.md", f.board.as_str()),
        ("HANDOFFS.md", f.handoffs.as_str()),
        ("WORKFLOW_LOG.md", f.workflow_log.as_str()),
    ]
}

struct Writer {
    dir: PathBuf,
    /// Digest of what each file holds now (for status.json: of its body).
    written: HashMap<&'static str, u64>,
}

impl Writer {
    /// Remember what the files hold already, so a restart rewrites only what differs.
    fn new(dir: &Path) -> Writer {
        let mut written = HashMap::new();
        for name in [
            STATUS_JSON,
            "AGENT_STATUS.md",
            "BOARD.md",
            "HANDOFFS.md",
            "WORKFLOW_LOG.md",
        ] {
            if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                let body = if name == STATUS_JSON {
                    status_body(&text)
                } else {
                    &text
                };
                written.insert(name, digest(body));
            }
        }
        Writer {
            dir: dir.to_path_buf(),
            written,
        }
    }

    /// Render and write what changed; returns when the next write may happen.
    fn write(&mut self, model: &Model) -> Instant {
        let started = Instant::now();
        let files = model.render();
        for (name, body) in parts(&files) {
            let d = digest(body);
            if self.written.get(name) == Some(&d) {
                continue;
            }
            let bytes = if name == STATUS_JSON {
                format!("{{\"generated_at\":\"{}\",\n{body}", clock::now_millis())
            } else {
                body.to_string()
            };
            let path = self.dir.join(name);
            match fsops::create_dir_all(&self.dir).and_then(|_| fsops::write_atomic(&path, bytes.as_bytes()))
            {
                Ok(()) => {
                    self.written.insert(name, d);
                }
                Err(e) => tracing::warn!("read model not updated: {e}"),
            }
        }
        let large = files.status_body.len() > 1 << 20;
        drop(files);
        if large {
            crate::memory::release();
        }
        started + MIN_INTERVAL.max(started.elapsed() * PACE)
    }
}

/// Start the writer: it first reads the history the models show from the log (events up to
/// `history_upto`), applies `first`, writes, then follows the updates sent to it.
pub fn spawn(
    status_dir: PathBuf,
    log: PathBuf,
    history_upto: u64,
    first: Update,
    rx: Receiver<Msg>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("read-models".into())
        .spawn(move || run(&status_dir, &log, history_upto, first, &rx))
}

fn run(dir: &Path, log: &Path, history_upto: u64, first: Update, rx: &Receiver<Msg>) {
    let mut model = Model::default();
    match history_from_log(log, history_upto) {
        Ok(history) => model.apply(history),
        Err(e) => tracing::warn!("read models start without history: {e}"),
    }
    model.apply(first);
    let mut writer = Writer::new(dir);
    let mut next_write = writer.write(&model);
    let mut dirty = false;
    loop {
        let msg = if dirty {
            let wait = next_write.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Msg::Stop),
            }
        } else {
            Some(rx.recv().unwrap_or(Msg::Stop))
        };
        match msg {
            Some(Msg::Update(u)) => {
                model.apply(u);
                dirty = true;
            }
            Some(Msg::Stop) => {
                if dirty {
                    writer.write(&model);
                }
                return;
            }
            None => {}
        }
        if dirty && Instant::now() >= next_write {
            next_write = writer.write(&model);
            dirty = false;
        }
    }
}
