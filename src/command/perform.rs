//! Carrying out the file operation an event orders, and redoing it after a crash. Every
//! operation is idempotent given the event: recovery re-runs the last operation of each task
//! (and of each inbox file) whose source still exists unchanged.

use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{Engine, Fatal};
use crate::event::Event;
use crate::layout;
use crate::lifecycle::edit::{self, Edit};
use crate::lifecycle::fsops::{self, Fingerprint};
use crate::lifecycle::redo::{self, Rewrite};
use crate::task::Status;
use crate::task::yaml::Shape;

/// Apply lifecycle edits to a task file's text. Edits only ever come from the daemon on files
/// it has parsed, so a failure here means the file changed under us; the text is then kept
/// as it is rather than lost.
pub fn edited_bytes(bytes: &[u8], edits: Option<&Map<String, Value>>) -> Vec<u8> {
    let Some(edits) = edits.filter(|e| !e.is_empty()) else {
        return bytes.to_vec();
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    match edit::apply(text, &edit_list(edits)) {
        Ok(edited) => surgical_or_warn(edited).into_bytes(),
        Err(_) => bytes.to_vec(),
    }
}

/// `edited_bytes` for intake, which has just parsed `text` into `parsed` (with the task
/// parser's default budget, keys standing as `shape` says) and so spares the edit that parse.
pub(super) fn edited_parsed(
    text: &str,
    parsed: Map<String, Value>,
    shape: &Shape,
    edits: &Map<String, Value>,
) -> String {
    if edits.is_empty() {
        return text.to_owned();
    }
    surgical_or_warn(edit::apply_parsed(text, parsed, shape, &edit_list(edits)))
}

fn edit_list(edits: &Map<String, Value>) -> Vec<Edit<'_>> {
    edits
        .iter()
        .map(|(k, v)| match v {
            Value::Null => Edit::Remove(k),
            other => Edit::Set(k, other.clone()),
        })
        .collect()
}

fn surgical_or_warn(edited: edit::Edited) -> String {
    if !edited.surgical {
        tracing::warn!("task file layout too unusual for a surgical edit; rewrote it whole");
    }
    edited.text
}

/// Does `path` still hold the very file the event was decided on?
fn same_source(path: &Path, ino: Option<u64>, crc: Option<u32>) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if ino.is_some_and(|i| i != std::os::unix::fs::MetadataExt::ino(&meta)) {
        return false;
    }
    match crc {
        None => true,
        Some(want) => fsops::read_plain(path).is_ok_and(|b| crc32c::crc32c(&b) == want),
    }
}

/// The text of a rejection sidecar.
pub fn reason_text(ev: &Event) -> String {
    let mut out = String::new();
    let file = ev
        .src
        .as_deref()
        .and_then(|s| s.rsplit('/').next())
        .unwrap_or_default();
    out.push_str(&edit::render_entry("file", &Value::String(file.to_string())));
    out.push_str(&edit::render_entry("rejected_at", &Value::String(ev.ts.clone())));
    out.push_str(&edit::render_entry(
        "reason",
        &Value::String(ev.error.clone().unwrap_or_default()),
    ));
    if let Some(data) = &ev.data {
        for key in ["line", "column", "what_to_do"] {
            if let Some(v) = data.get(key) {
                out.push_str(&edit::render_entry(key, v));
            }
        }
    }
    out.push_str(&edit::render_entry("event_seq", &Value::from(ev.seq)));
    out
}

/// Where the reason for rejecting a file moved to `dest` is written.
pub fn sidecar_of(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_owned();
    name.push(".reason.yaml");
    dest.with_file_name(name)
}

/// The file operations of one batch, staged so that the batch costs one data sync and one
/// fsync per directory, while every destination is durable before any source is removed.
#[derive(Default)]
pub(super) struct Stage {
    /// Temp files to make durable before they are renamed into place.
    temps: Vec<PathBuf>,
    /// (from, to), in order: temp files, and rejected inbox entries moved unchanged.
    renames: Vec<(PathBuf, PathBuf)>,
    removals: Vec<PathBuf>,
    /// Files a rename of this stage replaces: kept alive in the trash until the sweeper frees them.
    replaced: Vec<PathBuf>,
    /// Paths the staged operations create or remove: an operation on one of them must wait
    /// until the stage is flushed. Their bytes, not `PathBuf`s: the paths are all made the
    /// same way (root + a relative path), and a `PathBuf` hashes component by component
    /// (~1,000 instructions for a task file's path; a batch hashes thousands).
    touched: HashSet<OsString>,
    /// Task files written, with the fingerprint of what the daemon wrote.
    written: Vec<(String, Fingerprint)>,
    /// Moves out of the inbox that rewrite the file in its own inode, and the batch they are
    /// of (their redo record names it).
    rewrites: Vec<Rewrite>,
    batch: u64,
}

impl Stage {
    fn conflicts(&self, paths: &[&PathBuf]) -> bool {
        paths.iter().any(|p| self.touched.contains(p.as_os_str()))
    }

    fn touch<'p>(&mut self, paths: impl IntoIterator<Item = &'p PathBuf>) {
        self.touched
            .extend(paths.into_iter().map(|p| p.as_os_str().to_owned()));
    }
}

/// A task file intake took in this round: what it looked like, the edits decided on it, and
/// its text with those edits made (worked out while intake's parse was at hand; the parse
/// itself is not kept, a batch's mappings would cost the idle daemon ~4 MB of fragments).
pub(super) struct Taken {
    pub fingerprint: Fingerprint,
    pub edits: Map<String, Value>,
    pub edited: String,
}

/// The new content of a move from `src`: what intake worked out, if the file is still that
/// version and the edits are the same (one stat instead of a read and an edit); else the file
/// as it is now with the edits made.
fn moved_content(
    cached: Option<Taken>,
    src: &Path,
    edits: Option<&Map<String, Value>>,
) -> std::io::Result<Vec<u8>> {
    if let Some(taken) = cached
        && edits == Some(&taken.edits)
        && std::fs::symlink_metadata(src).is_ok_and(|m| Fingerprint::of(&m) == taken.fingerprint)
    {
        return Ok(taken.edited.into_bytes());
    }
    Ok(edited_bytes(&fsops::read_plain(src)?, edits))
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

impl Engine {
    /// Stage the event's file operation. `recovering`: the operation may have been done,
    /// partly or fully, before a crash.
    pub(super) fn perform(&mut self, ev: &Event, recovering: bool, stage: &mut Stage) -> Result<(), Fatal> {
        let src = ev.src.as_deref().map(|s| self.layout.abs(s));
        let dest = ev.path.as_deref().map(|p| self.layout.abs(p));
        let involved: Vec<&PathBuf> = match ev.op {
            Some(_) => src.iter().chain(dest.iter()).collect(),
            None => Vec::new(),
        };
        if stage.conflicts(&involved) {
            self.flush(stage)?;
        }
        match (ev.op.as_deref(), &src, &dest) {
            (Some("move"), Some(src), Some(dest)) => {
                let cached = ev.src.as_deref().and_then(|rel| self.source_cache.remove(rel));
                let new = match moved_content(cached, src, ev.edits.as_ref()) {
                    Ok(new) => new,
                    // Gone since the decision (deleted by a user), or no longer a plain file
                    // (replaced by one): left where it is, the next scan records it.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                        tracing::warn!(src = %src.display(), "not moved: {e}");
                        return Ok(());
                    }
                    Err(e) => return Err(fsops::ctx("read", src)(e).into()),
                };
                if recovering && src != dest && dest.exists() {
                    // The destination was renamed into place before the crash; only the
                    // removal of the source is missing — unless the destination is another file.
                    if fsops::read_plain(dest).is_ok_and(|d| d == new) {
                        stage.removals.push(src.clone());
                    } else {
                        tracing::error!(src = %src.display(), dest = %dest.display(),
                            "both the source and a different destination exist; left both for a human");
                    }
                } else {
                    // A taken inbox file is rewritten in place (at the flush, after its redo
                    // record); anything else, or text that is not UTF-8, is copied.
                    let in_place = !recovering && ev.src.as_deref().is_some_and(layout::directly_in_inbox);
                    match (in_place, ev.src_ino, String::from_utf8(new)) {
                        (true, Some(ino), Ok(content)) => {
                            stage.batch = ev.batch;
                            stage.rewrites.push(Rewrite {
                                src: self.layout.rel(src),
                                ino,
                                dest: self.layout.rel(dest),
                                task_id: ev.task_id.clone(),
                                content,
                            });
                        }
                        (_, _, new) => {
                            let new = new.map_or_else(|e| e.into_bytes(), String::into_bytes);
                            self.copy_into_place(stage, src, dest, &new, ev.task_id.as_ref())?;
                        }
                    }
                }
            }
            (Some("reject"), Some(src), Some(dest)) => {
                let sidecar = sidecar_of(dest);
                let (tmp, _) = self.trash.create_temp(&sidecar, reason_text(ev).as_bytes())?;
                stage.temps.push(tmp.clone());
                stage.renames.push((tmp, sidecar));
                if std::fs::symlink_metadata(src).is_ok() {
                    stage.renames.push((src.clone(), dest.clone()));
                }
            }
            (Some("create"), _, Some(dest)) if !dest.exists() => {
                let content = ev.data_str("content").unwrap_or_default();
                let (tmp, _) = self.trash.create_temp(dest, content.as_bytes())?;
                stage.temps.push(tmp.clone());
                stage.renames.push((tmp, dest.clone()));
            }
            _ => {}
        }
        if let Some(file) = ev.data_str("command_file") {
            stage.removals.push(self.layout.abs(file));
        }
        stage.touch(involved);
        Ok(())
    }

    /// The copy path of a move: `new` in another inode (a spare, or a new file) next to
    /// `dest`, renamed into place once durable; `src` removed after that.
    fn copy_into_place(
        &mut self,
        stage: &mut Stage,
        src: &Path,
        dest: &Path,
        new: &[u8],
        task_id: Option<&String>,
    ) -> Result<(), Fatal> {
        let (tmp, fingerprint) = self.trash.create_temp(dest, new)?;
        stage.temps.push(tmp.clone());
        stage.renames.push((tmp, dest.to_path_buf()));
        if src != dest {
            stage.removals.push(src.to_path_buf());
        } else {
            stage.replaced.push(dest.to_path_buf());
        }
        if let Some(id) = task_id {
            stage.written.push((id.clone(), fingerprint));
        }
        Ok(())
    }

    /// The in-place moves of a stage: their redo record made durable first, then each inbox
    /// file rewritten in its own inode and staged for the rename into place (after the data
    /// sync, like any new file). A file that may not be rewritten so (another link, owner or
    /// mode, or swapped since it was read) takes the copy path.
    fn rewrite_in_place(&mut self, stage: &mut Stage) -> Result<(), Fatal> {
        let rewrites = std::mem::take(&mut stage.rewrites);
        let record = self.layout.redo_record();
        redo::write(&record, stage.batch, &rewrites)?;
        // The folders made sure of: a batch's tasks go to a few (one per agent), and a
        // `PathBuf` hashes component by component.
        let mut folders: Vec<PathBuf> = Vec::new();
        for r in rewrites {
            let (src, dest) = (self.layout.abs(&r.src), self.layout.abs(&r.dest));
            match self.trash.rewrite(&src, r.ino, r.content.as_bytes()) {
                Ok(fingerprint) => {
                    let folder = parent(&dest);
                    if !folders.iter().any(|f| f.as_os_str() == folder.as_os_str()) {
                        fsops::make_parent(&dest)?;
                        folders.push(folder.to_path_buf());
                    }
                    stage.temps.push(src.clone());
                    stage.renames.push((src, dest));
                    if let Some(id) = r.task_id {
                        stage.written.push((id, fingerprint));
                    }
                }
                // Gone since the decision (deleted by a user): the next scan records it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => {
                    self.copy_into_place(stage, &src, &dest, r.content.as_bytes(), r.task_id.as_ref())?
                }
            }
        }
        Ok(())
    }

    /// Carry out a stage: rewrite its in-place moves, sync the new data, rename it into place,
    /// fsync those directories, then remove the sources and fsync their directories. Removed
    /// and replaced files go to the trash; the sweeper frees them off the ack path.
    pub(super) fn flush(&mut self, stage: &mut Stage) -> Result<(), Fatal> {
        let mut stage = std::mem::take(stage);
        if !stage.rewrites.is_empty() {
            self.rewrite_in_place(&mut stage)?;
        }
        if !stage.temps.is_empty() {
            fsops::sync_data_of(&stage.temps)?;
        }
        self.trash.sync()?;
        for path in &stage.replaced {
            self.trash.keep(path);
        }
        // Folders as bytes: a `Path` compares component by component (~1,000 instructions a
        // task for a batch's two inserts per rename).
        let mut dirs: BTreeSet<&OsStr> = BTreeSet::new();
        for (from, to) in &stage.renames {
            fsops::rename(from, to)?;
            dirs.insert(parent(from).as_os_str());
            dirs.insert(parent(to).as_os_str());
        }
        for dir in &dirs {
            fsops::fsync_dir(Path::new(dir))?;
        }
        let mut dirs: BTreeSet<&OsStr> = BTreeSet::new();
        for path in &stage.removals {
            self.trash.remove(path)?;
            dirs.insert(parent(path).as_os_str());
        }
        for dir in &dirs {
            fsops::fsync_dir(Path::new(dir))?;
        }
        if !stage.removals.is_empty() || !stage.replaced.is_empty() {
            self.trash.sweep();
        }
        for (id, fingerprint) in stage.written {
            if let Some(entry) = self.state.tasks.get_mut(id.as_str()) {
                entry.fingerprint = Some(fingerprint);
            }
        }
        Ok(())
    }

    /// Bring the folders in line with the log after a crash: finish the last batch's file
    /// operations, then record children that were running as interrupted.
    pub(super) fn recover(&mut self, events: &[Event]) -> Result<(), Fatal> {
        let last_batch = events.last().map_or(0, |e| e.batch);
        let mut redone = 0;
        let mut stage = Stage::default();
        // An inbox file of the last batch still in the inbox under its inode was (perhaps
        // partly) rewritten but not renamed: its content is in the redo record.
        if let Some((batch, rewrites)) = redo::read(&self.layout.redo_record())
            && batch == last_batch
        {
            for r in rewrites {
                let (src, dest) = (self.layout.abs(&r.src), self.layout.abs(&r.dest));
                if fsops::inode(&src) == Some(r.ino) {
                    self.copy_into_place(&mut stage, &src, &dest, r.content.as_bytes(), r.task_id.as_ref())?;
                    stage.touch([&src, &dest]);
                    redone += 1;
                }
            }
        }
        // Files an earlier operation of the batch wrote. A later operation on such a file (a
        // command on a task another command of the batch moved or edited) recorded the
        // identity the file had before the batch, when both were decided, not the one the
        // earlier operation gave it: while that file exists, it is the later one's source.
        let mut written: HashSet<&str> = HashSet::new();
        for ev in events
            .iter()
            .rev()
            .take_while(|e| e.batch == last_batch)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let op_unfinished = match (ev.op.as_deref(), ev.src.as_deref(), ev.path.as_deref()) {
                (Some("create"), _, Some(path)) => !self.layout.abs(path).exists(),
                (Some(_), Some(src), _) if written.contains(src) => self.layout.abs(src).exists(),
                (Some(_), Some(src), _) => same_source(&self.layout.abs(src), ev.src_ino, ev.src_crc),
                _ => false,
            };
            if let (Some(_), Some(path)) = (ev.op.as_deref(), ev.path.as_deref()) {
                written.insert(path);
            }
            if op_unfinished {
                self.perform(ev, true, &mut stage)?;
                redone += 1;
            } else if let Some(file) = ev.data_str("command_file") {
                let data = ev.data.as_ref();
                let ino = data.and_then(|d| d.get("command_ino")).and_then(Value::as_u64);
                let crc = data
                    .and_then(|d| d.get("command_crc"))
                    .and_then(Value::as_u64)
                    .map(|c| c as u32);
                if same_source(&self.layout.abs(file), ino, crc) {
                    stage.removals.push(self.layout.abs(file));
                    redone += 1;
                }
            }
        }
        self.flush(&mut stage)?;
        if redone > 0 {
            tracing::info!(redone, "recovery completed unfinished operations from the log");
        }
        let interrupted: Vec<String> = self
            .state
            .tasks
            .values()
            .filter(|e| e.running().is_some() && e.status == Status::InProgress)
            .map(|e| e.id.to_string())
            .collect();
        for id in interrupted {
            if let Some(run) = self.state.tasks[id.as_str()].running().cloned()
                && let Some(pid) = run.pid
            {
                super::run::kill_orphan(pid, run.pid_start);
            }
            self.interrupt(&id, "the daemon stopped while the task ran");
        }
        self.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edits(status: &str) -> Map<String, Value> {
        let mut edits = Map::new();
        edits.insert("status".into(), json!(status));
        edits
    }

    #[test]
    fn a_move_uses_intakes_edit_only_for_the_same_file_and_edits() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("t.yaml");
        std::fs::write(&src, "id: t\n# kept\nstatus: new\n").unwrap();
        let taken = |edits: Map<String, Value>| {
            Some(Taken {
                fingerprint: Fingerprint::of(&std::fs::symlink_metadata(&src).unwrap()),
                edits,
                edited: "what intake worked out\n".into(),
            })
        };
        let assigned = edits("assigned");
        let content =
            |cached| String::from_utf8(moved_content(cached, &src, Some(&assigned)).unwrap()).unwrap();
        assert_eq!(content(taken(assigned.clone())), "what intake worked out\n");
        // Other edits than intake's: the file is edited again, surgically.
        assert_eq!(content(taken(edits("done"))), "id: t\n# kept\nstatus: assigned\n");
        assert_eq!(content(None), "id: t\n# kept\nstatus: assigned\n");
        // The file changed since intake read it: its new version is edited.
        let stale = taken(assigned.clone());
        std::fs::write(&src, "id: t\nstatus: new\ntitle: longer now\n").unwrap();
        assert_eq!(content(stale), "id: t\nstatus: assigned\ntitle: longer now\n");
    }
}
