//! Scanning the lifecycle folders: adoption of files the log does not know (`task_discovered`,
//! with every inconsistency reported and the file left where it is), hand edits of task files
//! (a legal status change is recorded and the file moved where its status belongs; an illegal
//! one is reported and the file left alone), and deletions. Decides events; moves nothing
//! itself.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::state::{Entry, task_meta};
use super::{Engine, Fatal, FileProblem};
use crate::clock;
use crate::event::Event;
use crate::layout::{self, Layout};
use crate::lifecycle::fsops::{self, Fingerprint};
use crate::task::{Status, Task};

/// Where a file lies, as far as lifecycle folders go.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    /// `assigned|done|error/<agent>/`
    Lifecycle {
        folder: String,
        agent: String,
    },
    Fridge,
    Archive,
}

fn place_of(rel: &str) -> Option<Place> {
    let rest = rel.strip_prefix("work/collaboration/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [folder @ ("assigned" | "done" | "error"), agent, _file] => Some(Place::Lifecycle {
            folder: folder.to_string(),
            agent: agent.to_string(),
        }),
        ["fridge", _file] => Some(Place::Fridge),
        ["archive", _month, _file] => Some(Place::Archive),
        _ => None,
    }
}

/// What is inconsistent about a task file where it lies, if anything.
fn inconsistency(rel: &str, task: &Task) -> Option<(String, String)> {
    let file_stem = Path::new(rel).file_stem()?.to_string_lossy().into_owned();
    let status = task.status?;
    match task.id.as_deref() {
        Some(id) if id != file_stem => {
            return Some((
                "id_mismatch".into(),
                format!("id `{id}` differs from the file name `{file_stem}`"),
            ));
        }
        None => return Some(("missing_id".into(), "the task file has no id".into())),
        _ => {}
    }
    match place_of(rel)? {
        Place::Lifecycle { folder, agent } => {
            let want = Layout::status_folder(status, &task.agent);
            let here = format!("work/collaboration/{folder}/{agent}");
            if want != here {
                return Some((
                    "status_folder_mismatch".into(),
                    format!(
                        "status `{status}` (agent `{}`) belongs in {want}/, but the file is in {here}/",
                        task.agent
                    ),
                ));
            }
        }
        Place::Archive if !status.is_terminal() => {
            return Some((
                "status_folder_mismatch".into(),
                format!("archived while still `{status}`"),
            ));
        }
        _ => {}
    }
    None
}

impl Engine {
    /// Every task file in the lifecycle folders, fridge and archive, root-relative.
    pub fn list_task_files(&self) -> Vec<(String, Fingerprint)> {
        let collab = self.layout.collab();
        let mut out = Vec::new();
        let mut dirs = vec![collab.join("fridge")];
        for top in ["assigned", "done", "error", "archive"] {
            if let Ok(rd) = fs::read_dir(collab.join(top)) {
                dirs.extend(
                    rd.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        for dir in dirs {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                if layout::is_ignored_name(&name) || !layout::is_yaml_name(&name) {
                    continue;
                }
                if let Ok(meta) = fs::symlink_metadata(e.path()) {
                    out.push((self.layout.rel(&e.path()), Fingerprint::of(&meta)));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Compare every task file with the state: discover, detect edits and deletions.
    pub fn full_scan(&mut self) -> Result<(), Fatal> {
        // The folders must hold what the state says before they are compared with it.
        self.commit()?;
        let files = self.list_task_files();
        tracing::debug!(files = files.len(), "full scan");
        let present: HashSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        let missing: Vec<String> = self
            .state
            .tasks
            .values()
            .filter(|e| !present.contains(e.path().as_str()))
            .map(|e| e.id.to_string())
            .collect();
        for id in missing {
            self.check_deleted(&id);
        }
        for (rel, fp) in &files {
            self.check_file(rel, Some(*fp));
        }
        self.file_problems
            .retain(|p, _| present.contains(p.as_str()) || layout::in_inbox(p));
        self.commit()?;
        Ok(())
    }

    /// Check specific paths reported by the watcher (files outside the inbox).
    pub fn check_paths(&mut self, paths: &[(String, Option<Fingerprint>)]) -> Result<(), Fatal> {
        self.commit()?;
        // Only task files matter; the daemon's own temp files make most of the events. A file
        // the watcher found as the state knows it needs no look: most are the echo of the
        // daemon's own moves, and a later change would have made a hint of its own.
        let found: Vec<(&String, Option<Fingerprint>)> = paths
            .iter()
            .filter(|(rel, seen)| {
                let name = rel.rsplit('/').next().unwrap_or_default();
                !layout::is_ignored_name(name)
                    && layout::is_yaml_name(name)
                    && place_of(rel).is_some()
                    && !self.is_known_version(rel, *seen)
            })
            .map(|(rel, _)| {
                let meta = fs::symlink_metadata(self.layout.abs(rel));
                (rel, meta.ok().map(|m| Fingerprint::of(&m)))
            })
            .collect();
        let deleted: Vec<String> = found
            .iter()
            .filter(|(_, fp)| fp.is_none())
            .filter_map(|(rel, _)| self.state.at_path(rel).map(|e| e.id.to_string()))
            .collect();
        for id in deleted {
            self.check_deleted(&id);
        }
        for (rel, fp) in found {
            if fp.is_some() {
                self.check_file(rel, fp);
            }
        }
        self.commit()?;
        Ok(())
    }

    fn check_deleted(&mut self, id: &str) {
        let Some(entry) = self.state.tasks.get(id) else {
            return;
        };
        if fs::symlink_metadata(self.layout.abs(&entry.path())).is_ok() || self.live_children.contains_key(id)
        {
            return;
        }
        let mut ev = Event::task("task_deleted", id);
        ev.agent = Some(entry.agent.to_string());
        ev.path = Some(entry.path());
        ev.from = Some(entry.status.as_str().into());
        tracing::warn!(task = id, path = %entry.path(), "task file deleted by hand");
        self.emit(ev);
    }

    fn problem_known(&self, rel: &str, fp: Option<Fingerprint>) -> bool {
        self.file_problems.get(rel).is_some_and(|p| p.fingerprint == fp)
    }

    fn report(
        &mut self,
        rel: &str,
        fp: Option<Fingerprint>,
        task_id: Option<&str>,
        kind: &str,
        message: String,
    ) {
        if self.problem_known(rel, fp) {
            return;
        }
        tracing::warn!(path = rel, kind, "{message}");
        let mut ev = Event::new("problem_detected");
        ev.task_id = task_id.map(str::to_string);
        ev.path = Some(rel.to_string());
        ev.error = Some(message.clone());
        self.emit(ev.with_data("kind", json!(kind)));
        self.file_problems.insert(
            rel.to_string(),
            FileProblem {
                fingerprint: fp,
                kind: kind.into(),
                message,
            },
        );
    }

    /// Is the file at `rel` the version the state records there (a known task's file, as the
    /// daemon last wrote or read it)?
    fn is_known_version(&self, rel: &str, fp: Option<Fingerprint>) -> bool {
        fp.is_some() && self.state.at_path(rel).is_some_and(|e| e.fingerprint == fp)
    }

    /// Look at one task file whose fingerprint may have changed.
    fn check_file(&mut self, rel: &str, fp: Option<Fingerprint>) {
        let known = self.state.at_path(rel).cloned();
        tracing::debug!(
            path = rel,
            known = known.is_some(),
            changed = known.as_ref().is_none_or(|e| e.fingerprint != fp),
            "check file"
        );
        if self.is_known_version(rel, fp) {
            return;
        }
        if known.is_none() && self.problem_known(rel, fp) {
            return;
        }
        // A file being written by an editor right now: wait for it to settle.
        if let Some(fp) = fp
            && SystemTime::now()
                .duration_since(fp.modified())
                .is_ok_and(|age| age < self.config.settle)
        {
            self.settle_pending = true;
            return;
        }
        let mut crc = None;
        let parsed = match fsops::read_task_file(&self.layout.abs(rel), self.config.max_task_bytes) {
            Ok((bytes, _)) => match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    crc = Some(crc32c::crc32c(&bytes));
                    super::intake::parse_mapping(text)
                        .map_err(|r| r.reason)
                        .and_then(|doc| Task::from_doc(doc).map_err(|i| i.reason))
                }
                Err(_) => Err("the file is not UTF-8 text".to_string()),
            },
            Err(e) => Err(format!("cannot read the file: {e}")),
        };
        match (known, parsed) {
            (Some(entry), Ok(task)) => self.hand_edit(&entry, rel, task, fp, crc),
            (Some(entry), Err(msg)) => {
                let id = entry.id.to_string();
                if let Some(e) = self.state.tasks.get_mut(id.as_str()) {
                    e.fingerprint = fp;
                }
                self.report(
                    rel,
                    fp,
                    Some(&id),
                    "invalid_file",
                    format!("{msg}; fix the file (the task keeps its last valid state)"),
                );
            }
            (None, Ok(task)) => self.discover(rel, task, fp, crc),
            (None, Err(msg)) => self.report(
                rel,
                fp,
                None,
                "invalid_file",
                format!("{msg}; fix the file so it can be adopted"),
            ),
        }
    }

    /// A file the log does not know: record it, queue it if consistent, report it if not.
    fn discover(&mut self, rel: &str, task: Task, fp: Option<Fingerprint>, crc: Option<u32>) {
        let Some(id) = task.id.clone().filter(|_| task.status.is_some()) else {
            let what = if task.id.is_none() { "no id" } else { "no status" };
            self.report(
                rel,
                fp,
                task.id.as_deref(),
                "invalid_file",
                format!("the task file has {what}; add it so the task can be adopted"),
            );
            return;
        };
        if let Some(other) = self.state.tasks.get(id.as_str()) {
            let msg = format!("two files with the id `{id}`: this one and {}", other.path());
            self.report(rel, fp, Some(&id), "duplicate_id", msg);
            return;
        }
        let problem = inconsistency(rel, &task);
        let mut ev = Event::task("task_discovered", &id);
        ev.agent = Some(task.agent.clone());
        ev.to = task.status.map(|s| s.as_str().to_string());
        ev.path = Some(rel.to_string());
        let mut ev = ev.with_data("task", task_meta(&task));
        if let Some((kind, message)) = &problem {
            tracing::warn!(path = rel, kind = %kind, "{message}; left where it is until edited");
            ev.error = Some(format!("{message}; left where it is until someone edits it"));
            // The content's checksum tells a later edit from a mere restart.
            ev = ev.with_data("problem", json!(kind)).with_data("crc", json!(crc));
        }
        self.emit(ev);
        if let Some(e) = self.state.tasks.get_mut(id.as_str()) {
            e.fingerprint = fp;
        }
    }

    /// A known task file changed on disk.
    fn hand_edit(&mut self, entry: &Entry, rel: &str, task: Task, fp: Option<Fingerprint>, crc: Option<u32>) {
        let id = entry.id.to_string();
        let set_fp = |engine: &mut Engine| {
            if let Some(e) = engine.state.tasks.get_mut(id.as_str()) {
                e.fingerprint = fp;
            }
        };
        let Some(new_status) = task.status else {
            set_fp(self);
            self.report(
                rel,
                fp,
                Some(&id),
                "invalid_file",
                "the task file lost its `status`; put it back".into(),
            );
            return;
        };
        if task.id.as_deref() != Some(id.as_str()) {
            set_fp(self);
            self.report(
                rel,
                fp,
                Some(&id),
                "id_mismatch",
                format!(
                    "the id in the file changed to `{}`; the file name says `{id}`",
                    task.id.clone().unwrap_or_default()
                ),
            );
            return;
        }
        let meta = task_meta(&task);
        let mut ev = Event::task("task_edited", &id);
        ev.agent = Some(task.agent.clone());
        ev.path = Some(rel.to_string());
        if entry.problem().is_some() && entry.problem_crc().is_some() && entry.problem_crc() == crc {
            set_fp(self);
            return;
        }
        if entry.problem().is_some() {
            // An inconsistent adopted file was edited: now it goes where its status says.
            let dest = if entry.in_fridge() || entry.in_archive() {
                rel.to_string()
            } else {
                Layout::task_path(new_status, &task.agent, &id)
            };
            if dest != rel && self.layout.abs(&dest).exists() {
                set_fp(self);
                self.report(
                    rel,
                    fp,
                    Some(&id),
                    "duplicate_id",
                    format!("cannot move to {dest}: a file is already there"),
                );
                return;
            }
            ev.event = "task_moved".into();
            ev.to = Some(new_status.as_str().into());
            ev.op = Some("move".into());
            ev.src = Some(rel.to_string());
            ev.src_ino = fp.map(|f| f.ino);
            ev.src_crc = crc;
            ev.path = Some(dest);
            self.emit(ev.with_data("task", meta));
            return;
        }
        if new_status == entry.status {
            set_fp(self);
            if meta != task_meta_of(entry) {
                self.emit(ev.with_data("task", meta));
            }
            return;
        }
        if entry.running().is_some() || self.live_children.contains_key(&id) {
            set_fp(self);
            self.report(rel, fp, Some(&id), "illegal_edit",
                format!("status edited to `{new_status}` while the daemon runs the task; use `agentplane cancel {id}` instead; file left as it is"));
            return;
        }
        if !entry.status.can_become(new_status) || entry.in_archive() {
            set_fp(self);
            self.report(rel, fp, Some(&id), "illegal_edit",
                format!("status edited from `{}` to `{new_status}`, which is not a legal transition; file left as it is", entry.status));
            return;
        }
        let now = json!(clock::rfc3339_seconds(SystemTime::now()));
        let mut edits = Map::new();
        let stamp = match new_status {
            Status::InProgress => Some("started_at"),
            Status::Done | Status::Error => Some("completed_at"),
            Status::Assigned => Some("assigned_at"),
            _ => None,
        };
        if let Some(key) = stamp.filter(|k| !task.doc.contains_key(*k) || *k == "assigned_at") {
            edits.insert(key.into(), now);
        }
        ev.from = Some(entry.status.as_str().into());
        ev.to = Some(new_status.as_str().into());
        ev.op = Some("move".into());
        ev.src = Some(rel.to_string());
        ev.src_ino = fp.map(|f| f.ino);
        ev.path = Some(if entry.in_fridge() {
            rel.to_string()
        } else {
            Layout::task_path(new_status, &task.agent, &id)
        });
        ev.edits = Some(edits);
        self.file_problems.remove(rel);
        self.emit(ev.with_data("task", meta));
        if new_status == Status::Error {
            self.block_dependents(&id);
        }
        if new_status == Status::Done {
            self.handoff(&id, task.doc.get("result"));
        }
    }
}

/// The scheduling fields of an entry in the shape `task_meta` gives, to detect edits.
fn task_meta_of(e: &Entry) -> Value {
    json!({
        "title": e.title,
        "agent": e.agent,
        "priority": e.priority.as_str(),
        "depends_on": e.depends_on(),
        "approval_required": e.approval_required,
        "timeout_s": e.timeout_s(),
        "max_attempts": e.max_attempts(),
    })
}
