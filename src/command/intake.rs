//! Inbox intake: decide, for each file in `inbox/`, whether it is ready (closed, renamed in,
//! or quiet for `settle_ms`), then validate it and either order its move to
//! `assigned/<agent>/<id>.yaml` or its rejection to `rejected/` with a reason sidecar.
//! Command files (a top-level `command` key) are handed to `commands`. Nothing is read through
//! a symlink, and nothing that reaches the inbox disappears without an event. The rejection
//! itself (`reject_as`) also serves `commands` and any move whose destination a file holds
//! (`set_aside_what_is_in_the_way`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

use super::perform::{Taken, edited_parsed, sidecar_of};
use super::state::task_meta;
use super::{Engine, Fatal};
use crate::clock;
use crate::event::Event;
use crate::layout::{self, Layout};
use crate::lifecycle::fsops::{self, Fingerprint, ReadRefusal};
use crate::task::{self, Status, Task, yaml};

/// What the watcher told us about an inbox file.
#[derive(Debug, Clone, Copy)]
pub struct Hint {
    pub changed_at: Instant,
    /// Closed after writing, or renamed into the inbox: the writer is done with it.
    pub complete: bool,
}

/// A file the intake refuses, and why.
pub struct Refusal {
    pub reason: String,
    pub what_to_do: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl Refusal {
    pub fn new(reason: impl Into<String>, what_to_do: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            what_to_do: what_to_do.into(),
            line: None,
            column: None,
        }
    }
}

impl From<task::Invalid> for Refusal {
    fn from(i: task::Invalid) -> Self {
        Refusal::new(i.reason, i.what_to_do)
    }
}

/// A file to move to `rejected/` unchanged (an inbox file, or one in a task's way), with the
/// identity recovery needs.
pub struct InboxFile {
    pub rel: String,
    pub name: String,
    pub ino: u64,
    pub crc: Option<u32>,
}

/// Most inbox files handled per batch, so one huge drop still commits and dispatches in steps.
const BATCH: usize = 2000;
/// Most bytes of inbox files read ahead of their decisions (their edited texts are then held
/// until the batch is committed): a batch of 2,000 ordinary tasks reads ~4 MB.
const CHUNK_BYTES: usize = 16 << 20;

/// Parse a document into a mapping or say what is wrong (with line and column).
pub fn parse_mapping(text: &str) -> Result<Map<String, Value>, Refusal> {
    parse_mapping_shaped(text).map(|(map, _)| map)
}

/// A task file's mapping and where its keys stand (for `edit::apply_parsed`).
type Parsed = (Map<String, Value>, yaml::Shape);

/// `parse_mapping`, also telling where the mapping's keys stand.
fn parse_mapping_shaped(text: &str) -> Result<Parsed, Refusal> {
    match yaml::parse_document_shaped(text, &yaml::Budget::default()) {
        Ok((Value::Object(map), shape)) => Ok((map, shape)),
        Ok((other, _)) => Err(Refusal::new(
            format!(
                "the document is {}, not a mapping of keys to values",
                task::kind_name(&other)
            ),
            "write the task as `key: value` lines (agent, title, …)",
        )),
        Err(e) => {
            let (line, column) = match &e {
                yaml::YamlError::Syntax { line, column, .. }
                | yaml::YamlError::TooComplex { line, column, .. } => (Some(*line), Some(*column)),
                yaml::YamlError::MultipleDocuments { line } => (Some(*line), None),
                yaml::YamlError::Empty => (None, None),
            };
            let what_to_do = match &e {
                yaml::YamlError::MultipleDocuments { .. } => "put each task in its own file",
                yaml::YamlError::Empty => "write the task's keys (agent, title, …) into the file",
                yaml::YamlError::TooComplex { .. } => {
                    "remove the anchors and aliases (&name / *name); tasks do not need them"
                }
                yaml::YamlError::Syntax { .. } => {
                    "fix the YAML at that line and drop the file into inbox/ again"
                }
            };
            Err(Refusal {
                reason: format!("not valid YAML: {e}"),
                what_to_do: what_to_do.into(),
                line,
                column,
            })
        }
    }
}

/// What intake learns about an inbox entry without the engine's state: a chunk of entries is
/// looked at first, then the engine decides on each in turn.
enum Look {
    /// Gone since the listing.
    Gone,
    /// Not a regular file: refused unread.
    Special(fs::Metadata, &'static str),
    /// A regular file whose name is not `.yaml`: left alone.
    NotYaml,
    /// A task file that may still be being written, unread: look again at this moment.
    Unsettled(Instant),
    File(fs::Metadata, Result<Content, ReadRefusal>),
}

/// A regular inbox file as read, checksummed and (if UTF-8) parsed.
struct Content {
    fingerprint: Fingerprint,
    crc: u32,
    len: usize,
    /// The file's text and its parse; `None`: the bytes are not UTF-8.
    text: Option<(String, Result<Parsed, Refusal>)>,
}

impl Look {
    fn bytes(&self) -> usize {
        match self {
            Look::File(_, Ok(content)) => content.len,
            _ => 0,
        }
    }
}

/// The root-relative path of an inbox entry, as hints and events name it.
fn inbox_rel(name: &str) -> String {
    format!("work/collaboration/inbox/{name}")
}

/// `not_settled` says when a file that may still be being written is to be looked at again.
fn look(
    inbox: &Path,
    name: &str,
    max_bytes: u64,
    not_settled: impl Fn(&fs::Metadata) -> Option<Instant>,
) -> Look {
    let path = inbox.join(name);
    let Ok(meta) = fs::symlink_metadata(&path) else {
        return Look::Gone;
    };
    let ft = meta.file_type();
    let special = if ft.is_symlink() {
        "it is a symbolic link; links are never followed"
    } else if ft.is_dir() {
        "it is a directory"
    } else if !ft.is_file() {
        "it is not a regular file (a FIFO, socket or device)"
    } else if !layout::is_yaml_name(name) {
        return Look::NotYaml;
    } else if let Some(at) = not_settled(&meta) {
        return Look::Unsettled(at);
    } else {
        let read = fsops::read_stated_task_file(&path, &meta, max_bytes).map(|(bytes, fingerprint)| {
            let (crc, len) = (crc32c::crc32c(&bytes), bytes.len());
            let text = String::from_utf8(bytes).ok().map(|text| {
                let doc = parse_mapping_shaped(&text);
                (text, doc)
            });
            Content {
                fingerprint,
                crc,
                len,
                text,
            }
        });
        return Look::File(meta, read);
    };
    Look::Special(meta, special)
}

impl Engine {
    /// Process every ready file in the inbox. Returns the earliest moment a not-yet-ready file
    /// should be looked at again.
    pub fn intake(&mut self) -> Result<Option<Instant>, Fatal> {
        let inbox = self.layout.inbox();
        let mut names: Vec<String> = match fs::read_dir(&inbox) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !layout::is_ignored_name(n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fsops::ctx("list", &inbox)(e).into()),
        };
        names.sort();
        // Hints about files no longer in the inbox (taken, or removed) are of no use.
        let present: std::collections::HashSet<String> = names.iter().map(|n| inbox_rel(n)).collect();
        self.inbox_hints.retain(|rel, _| present.contains(rel));
        let mut recheck: Option<Instant> = None;
        let max_bytes = self.config.max_task_bytes;
        let mut rest = names.as_slice();
        while !rest.is_empty() {
            // Each phase over a whole chunk in turn: reading and parsing every file, then
            // deciding on each, keeps each phase's code hot. A chunk ends at `BATCH` files or
            // `CHUNK_BYTES` read, so a drop of large files is never all in memory at once.
            let mut looks = Vec::new();
            let mut read = 0;
            for name in rest.iter().take(BATCH) {
                let rel = inbox_rel(name);
                let look = look(&inbox, name, max_bytes, |meta| self.not_settled(&rel, meta));
                read += look.bytes();
                looks.push(look);
                if read >= CHUNK_BYTES {
                    break;
                }
            }
            let (chunk, after) = rest.split_at(looks.len());
            rest = after;
            for (name, look) in chunk.iter().zip(looks) {
                if let Some(at) = self.intake_one(name, look)? {
                    recheck = Some(recheck.map_or(at, |r: Instant| r.min(at)));
                }
            }
            // Tasks that may start now start with their move out of the inbox (`transition`).
            self.dispatch();
            self.commit()?;
        }
        Ok(recheck)
    }

    /// Decide on one inbox entry. `Some(t)`: not ready yet, look again at `t`.
    fn intake_one(&mut self, name: &str, look: Look) -> Result<Option<Instant>, Fatal> {
        let (meta, read) = match look {
            Look::Gone | Look::NotYaml => return Ok(None),
            Look::Unsettled(at) => return Ok(Some(at)),
            Look::Special(meta, why) => {
                self.reject(
                    &self.inbox_file(name, &meta),
                    Refusal::new(
                        format!("not a task file: {why}"),
                        "drop regular .yaml files into inbox/ (write elsewhere, then rename in)",
                    ),
                );
                return Ok(None);
            }
            Look::File(meta, read) => (meta, read),
        };
        let mut file = self.inbox_file(name, &meta);
        let content = match read {
            Ok(content) => content,
            Err(too_large @ ReadRefusal::TooLarge { .. }) => {
                self.reject(&file, Refusal::new(
                    too_large.to_string(),
                    "shorten the task (put long material in a file and list it under artefacts) or raise max_task_bytes"));
                return Ok(None);
            }
            Err(ReadRefusal::Io(e)) if e.source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // Not the daemon's to read: refused like any bad file. Exiting on it would meet
            // the same file at every restart.
            Err(ReadRefusal::Io(e)) if e.source.kind() == std::io::ErrorKind::PermissionDenied => {
                self.reject(&file, Refusal::new(
                    format!("the daemon may not read the file ({})", e.source),
                    "make the file readable by the daemon's user (chmod a+r) and drop it into inbox/ again"));
                return Ok(None);
            }
            Err(ReadRefusal::Io(e)) => return Err(e.into()),
            Err(_) => {
                // Swapped for a special file between listing and opening: look again.
                return Ok(Some(Instant::now() + self.config.settle));
            }
        };
        file.crc = Some(content.crc);
        let Some((text, doc)) = content.text else {
            self.reject(
                &file,
                Refusal::new(
                    "the file is not UTF-8 text",
                    "save the file as UTF-8 and drop it into inbox/ again",
                ),
            );
            return Ok(None);
        };
        let (doc, shape) = match doc {
            Ok(parsed) => parsed,
            Err(refusal) => {
                // A plain write that is still going on can look broken; give it time.
                if let Some(at) = self.recently_modified(&meta) {
                    return Ok(Some(at));
                }
                self.reject(&file, refusal);
                return Ok(None);
            }
        };
        self.inbox_hints.remove(&file.rel);
        if doc.contains_key("command") {
            self.apply_command_file(&file, doc);
        } else {
            match self.intake_task(&file, doc, &shape, &text, content.fingerprint) {
                Ok(taken) => {
                    self.source_cache.insert(file.rel, taken);
                }
                Err(refusal) => self.reject(&file, refusal),
            }
        }
        Ok(None)
    }

    fn inbox_file(&self, name: &str, meta: &fs::Metadata) -> InboxFile {
        InboxFile {
            rel: inbox_rel(name),
            name: name.to_string(),
            ino: meta.ino(),
            crc: None,
        }
    }

    /// `Some(t)` if the file may still be being written: no close/rename seen and not quiet
    /// for `settle_ms` yet. Quiet is measured from the last event or the last write (mtime),
    /// whichever is later: the Linux watcher asks the kernel for no per-write events, so a
    /// writer that keeps its file open shows itself only through the mtime.
    fn not_settled(&self, rel: &str, meta: &fs::Metadata) -> Option<Instant> {
        let settle = self.config.settle;
        let hint = self.inbox_hints.get(rel);
        if hint.is_some_and(|h| h.complete) {
            return None;
        }
        // A modification time in the future (another machine's clock, `touch -d`) says
        // nothing about when the writer was last busy.
        let since_write = SystemTime::now()
            .duration_since(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))
            .ok();
        let quiet_for = match (hint.map(|h| h.changed_at.elapsed()), since_write) {
            (Some(since_event), Some(since_write)) => since_event.min(since_write),
            (Some(since_event), None) => since_event,
            (None, Some(since_write)) => since_write,
            (None, None) => return None,
        };
        (quiet_for < settle).then(|| Instant::now() + (settle - quiet_for))
    }

    /// Broken files written within the last second get another look before being rejected.
    fn recently_modified(&self, meta: &fs::Metadata) -> Option<Instant> {
        let grace = Duration::from_secs(1).max(self.config.settle * 4);
        let age = SystemTime::now()
            .duration_since(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))
            .unwrap_or(Duration::ZERO);
        (age < grace).then(|| Instant::now() + (grace - age))
    }

    /// Order the move of a valid new task into `assigned/<agent>/` (`doc`: `text` parsed;
    /// `shape`: where its keys stand). Gives back the text the move will write, worked out
    /// while the parse is at hand.
    fn intake_task(
        &mut self,
        file: &InboxFile,
        doc: Map<String, Value>,
        shape: &yaml::Shape,
        text: &str,
        fingerprint: Fingerprint,
    ) -> Result<Taken, Refusal> {
        let task = Task::from_doc(doc)?;
        if let Some(status) = task.status.filter(|s| !matches!(s, Status::New | Status::Inbox)) {
            return Err(Refusal::new(
                format!(
                    "status `{status}` cannot enter through the inbox; only new or inbox (or no status) can"
                ),
                "remove the status line (or set `status: new`), or put the file in its lifecycle folder",
            ));
        }
        if task.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return Err(Refusal::new(
                "the task has no `title`",
                "add `title: <one line saying what to do>`",
            ));
        }
        self.check_agent(&task.agent)?;
        let now = SystemTime::now();
        let id = match &task.id {
            Some(id) => {
                if let Some(existing) = self.state.tasks.get(id.as_str()) {
                    return Err(Refusal::new(
                        format!(
                            "duplicate id `{id}`: a task with this id already exists at {}",
                            existing.path()
                        ),
                        "give the task a new id, or remove the id line to have one generated",
                    ));
                }
                id.clone()
            }
            None => self.generate_id(&task, now),
        };
        let dest = Layout::task_path(Status::Assigned, &task.agent, &id);
        if self.layout.abs(&dest).exists() {
            return Err(Refusal::new(
                format!("duplicate id `{id}`: {dest} already exists"),
                "give the task a new id, or remove the id line to have one generated",
            ));
        }
        let mut edits = Map::new();
        if task.doc.get("id").is_none() {
            edits.insert("id".into(), Value::String(id.clone()));
        }
        edits.insert("status".into(), json!("assigned"));
        if task.priority_needs_rewrite {
            edits.insert("priority".into(), json!(task.priority.as_str()));
        }
        if task.doc.get("created_at").is_none() {
            edits.insert("created_at".into(), json!(clock::rfc3339_seconds(now)));
        }
        edits.insert("assigned_at".into(), json!(clock::rfc3339_seconds(now)));
        if task.doc.get("artefacts").is_none() && task.doc.get("artifacts").is_none() {
            tracing::warn!(file = %file.rel, "task lists no artefacts");
        }
        let from = task.status.unwrap_or(Status::New);
        let mut received = Event::task("task_received", &id);
        received.agent = Some(task.agent.clone());
        received.path = Some(file.rel.clone());
        self.emit(received);
        let mut assigned = Event::task("task_assigned", &id);
        assigned.agent = Some(task.agent.clone());
        assigned.from = Some(from.as_str().into());
        assigned.to = Some("assigned".into());
        assigned.op = Some("move".into());
        assigned.src = Some(file.rel.clone());
        assigned.src_ino = Some(file.ino);
        assigned.src_crc = file.crc;
        assigned.path = Some(dest);
        assigned.edits = Some(edits.clone());
        let assigned = assigned.with_data("task", task_meta(&task));
        let taken = Taken {
            fingerprint,
            edited: edited_parsed(text, task.doc, shape, &edits),
            edits,
        };
        self.emit(assigned);
        Ok(taken)
    }

    pub(super) fn check_agent(&self, agent: &str) -> Result<(), Refusal> {
        match &self.config.agents {
            Some(agents) if !agents.contains_key(agent) => Err(Refusal::new(
                format!(
                    "unknown agent `{agent}`; agentplane.yaml lists: {}",
                    agents.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                "use one of the listed agents, or add this agent under `agents:` in agentplane.yaml",
            )),
            _ => Ok(()),
        }
    }

    /// `YYYY-MM-DDTHHMM-<agent>-<slug>`, suffixed `-2`, `-3`, … until unused.
    fn generate_id(&self, task: &Task, now: SystemTime) -> String {
        let mut base = format!(
            "{}-{}-{}",
            clock::id_prefix(now),
            task.agent,
            task::slug(&task.title_or_id())
        );
        base.truncate(120);
        let taken = |id: &str| {
            self.state.tasks.contains_key(id)
                || self
                    .layout
                    .abs(&Layout::task_path(Status::Assigned, &task.agent, id))
                    .exists()
        };
        if !taken(&base) {
            return base;
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|id| !taken(id))
            .expect("a free suffix exists")
    }

    /// A move never replaces a file: one standing where a task moves to (a second file with
    /// the task's id — a teammate's copy, a merge's leftover — that the scan reported and left
    /// alone) goes to `rejected/` first, unchanged, with a reason. Intake's own moves are not
    /// looked at here: intake refuses an inbox file whose destination is taken.
    pub(super) fn set_aside_what_is_in_the_way(&mut self, ev: &Event) {
        let (Some("move"), Some(src), Some(dest)) = (ev.op.as_deref(), &ev.src, &ev.path) else {
            return;
        };
        if src == dest || layout::in_inbox(src) {
            return;
        }
        let Ok(meta) = fs::symlink_metadata(self.layout.abs(dest)) else {
            return;
        };
        // A file this batch moves away, or one it already set aside, is not in the way (looked
        // for only once a file is there: a batch can hold thousands of moves).
        if self
            .batch
            .iter()
            .any(|p| p.src.as_ref() == Some(dest) || p.path.as_ref() == Some(dest))
        {
            return;
        }
        let (_, crc) = self.identity(dest);
        let file = InboxFile {
            rel: dest.clone(),
            name: dest.rsplit('/').next().unwrap_or_default().to_string(),
            ino: meta.ino(),
            crc,
        };
        let id = ev.task_id.as_deref().unwrap_or_default();
        self.file_problems.remove(dest);
        self.reject(
            &file,
            Refusal::new(
                format!(
                    "a second file with the id `{id}` stood at {dest}, where the task moved ({})",
                    ev.event
                ),
                format!(
                    "this is not the task's file; merge what you need from it into {dest}, then delete it"
                ),
            ),
        );
    }

    /// Order the move of a file to `rejected/`, unchanged, with a reason sidecar.
    pub(super) fn reject(&mut self, file: &InboxFile, refusal: Refusal) {
        self.reject_as("task_rejected", file, refusal, None);
    }

    /// Rejection under a given event name; command rejections also carry the command.
    pub(super) fn reject_as(
        &mut self,
        name: &str,
        file: &InboxFile,
        refusal: Refusal,
        command: Option<Map<String, Value>>,
    ) {
        self.inbox_hints.remove(&file.rel);
        // Neither the file's new name nor its sidecar's may be taken: by a file already there,
        // or by a rejection decided but not carried out yet (the same batch's).
        let claimed = &self.claimed;
        let taken = |p: &Path| {
            let sidecar = sidecar_of(p);
            claimed.contains(p) || claimed.contains(&sidecar) || fs::symlink_metadata(&sidecar).is_ok()
        };
        let dest = fsops::free_name(&self.layout.rejected(), &file.name, taken);
        self.claimed.insert(sidecar_of(&dest));
        self.claimed.insert(dest.clone());
        let mut ev = Event::new(name);
        ev.command = command;
        ev.op = Some("reject".into());
        ev.src = Some(file.rel.clone());
        ev.src_ino = Some(file.ino);
        ev.src_crc = file.crc;
        ev.path = Some(self.layout.rel(&dest));
        ev.error = Some(refusal.reason);
        let mut ev = ev.with_data("what_to_do", Value::String(refusal.what_to_do));
        if let Some(line) = refusal.line {
            ev = ev.with_data("line", json!(line));
        }
        if let Some(column) = refusal.column {
            ev = ev.with_data("column", json!(column));
        }
        tracing::warn!(file = %file.rel, reason = ev.error.as_deref().unwrap_or(""), "rejected");
        self.emit(ev);
    }
}
