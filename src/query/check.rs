//! `agentplane check`: the consistency of folders, files, log and index, inspected from the
//! tree itself (not from what the daemon reported). Finds: a task whose status disagrees with
//! its folder, an id that differs from its file name, an invalid or unreadable task file, two
//! files with one id, a task file no event mentions, a task the log places where no file is,
//! a torn or corrupt log, and an index that is missing, unreadable, behind, or different from
//! a fresh projection of the log (compared row for row). Exit 1 when anything is found.
//! Reads only; repairs nothing (the daemon does, or the user).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::table;
use super::{Answer, Failure, daemon_pid, print, print_json};
use crate::config::Config;
use crate::layout::{self, Layout};
use crate::lifecycle::fsops::read_task_file;
use crate::store::index::read::{IndexError, Reader, TaskFilter, db_path};
use crate::store::logread::{self, LogError, StreamEnd};
use crate::task::{self, Status, Task, yaml};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct Problem {
    path: String,
    task_id: Option<String>,
    kind: &'static str,
    message: String,
}

fn problem(path: &str, task_id: Option<&str>, kind: &'static str, message: String) -> Problem {
    Problem {
        path: path.to_string(),
        task_id: task_id.map(str::to_string),
        kind,
        message,
    }
}

/// Task files where the daemon looks for them, plus files lying directly in a folder that
/// only holds agent folders (`misplaced`).
fn task_files(layout: &Layout) -> (Vec<String>, Vec<String>) {
    let collab = layout.collab();
    let mut dirs = vec![collab.join("fridge")];
    let mut misplaced = Vec::new();
    let names = |dir: &Path| -> Vec<(String, bool)> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                        (e.file_name().to_string_lossy().into_owned(), is_dir)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let wanted = |name: &str| !layout::is_ignored_name(name) && layout::is_yaml_name(name);
    for top in ["assigned", "done", "error", "archive"] {
        for (name, is_dir) in names(&collab.join(top)) {
            if is_dir {
                dirs.push(collab.join(top).join(&name));
            } else if wanted(&name) {
                misplaced.push(layout.rel(&collab.join(top).join(&name)));
            }
        }
    }
    let mut files = Vec::new();
    for dir in dirs {
        for (name, _) in names(&dir) {
            if wanted(&name) {
                files.push(layout.rel(&dir.join(&name)));
            }
        }
    }
    files.sort();
    misplaced.sort();
    (files, misplaced)
}

/// Read and validate one task file: its task, or what is wrong with it.
fn read_task(layout: &Layout, rel: &str, max: u64) -> Result<Task, String> {
    let (bytes, _) = read_task_file(&layout.abs(rel), max).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let doc = match yaml::parse_document(text, &yaml::Budget::default()) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(other) => {
            return Err(format!(
                "the document is {}, not a mapping",
                task::kind_name(&other)
            ));
        }
        Err(e) => return Err(format!("not valid YAML: {e}")),
    };
    Task::from_doc(doc).map_err(|i| format!("{}; {}", i.reason, i.what_to_do))
}

/// What is wrong with where a valid task file lies, if anything.
fn placement(rel: &str, task: &Task, status: Status) -> Option<String> {
    let parts: Vec<&str> = rel.strip_prefix("work/collaboration/")?.split('/').collect();
    match parts.as_slice() {
        [folder @ ("assigned" | "done" | "error"), agent, _] => {
            let want = Layout::status_folder(status, &task.agent);
            let here = format!("work/collaboration/{folder}/{agent}");
            (want != here).then(|| {
                format!(
                    "status `{status}` (agent `{}`) belongs in {want}/, but the file is in {here}/",
                    task.agent
                )
            })
        }
        ["archive", _, _] if !status.is_terminal() => Some(format!("archived while still `{status}`")),
        _ => None,
    }
}

/// Project the log into memory; a corrupt log is a problem, not a failure of `check`.
fn project(
    log: &Path,
    problems: &mut Vec<Problem>,
    rel: &str,
) -> Result<Option<(Reader, StreamEnd)>, Failure> {
    match Reader::from_log(log) {
        Ok(p) => Ok(Some(p)),
        Err(IndexError::Log(e @ LogError::Corrupt { .. })) => {
            problems.push(problem(rel, None, "corrupt_log", e.to_string()));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) fn check(layout: &Layout, json: bool) -> Answer {
    let mut problems: Vec<Problem> = Vec::new();
    let daemon = daemon_pid(layout);
    let log = layout.events();
    let log_rel = layout.rel(&log);
    let mut projection = project(&log, &mut problems, &log_rel)?;
    if let Some((_, end)) = &projection
        && end.torn_bytes > 0
    {
        // With a daemon running, the "torn" tail may be an append in progress: look again.
        let settled = daemon.is_some() && {
            std::thread::sleep(Duration::from_millis(200));
            logread::stream(&log, end.last_seq, |_, _, _| Ok::<(), ()>(()))?
                .is_ok_and(|again| again.torn_bytes == 0 || again.last_seq > end.last_seq)
        };
        if !settled {
            problems.push(problem(
                &log_rel,
                None,
                "torn_log",
                format!(
                    "the last {} bytes of the log are a torn line (a crash cut an append short); \
                     the daemon cuts them at its next start",
                    end.torn_bytes
                ),
            ));
        }
    }

    // The task files themselves.
    let max = Config::load(&layout.config()).map_or(1_048_576, |c| c.max_task_bytes);
    let (files, misplaced) = task_files(layout);
    for rel in &misplaced {
        problems.push(problem(
            rel,
            None,
            "status_folder_mismatch",
            "a task file directly in a status folder; task files live in <folder>/<agent>/, and the daemon \
             does not read this one"
                .into(),
        ));
    }
    let logged: Option<HashSet<String>> = match &projection {
        Some((reader, _)) => Some(reader.logged_task_ids()?),
        None => None,
    };
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rel in &files {
        let stem = Path::new(rel)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let task = match read_task(layout, rel, max) {
            Ok(t) => t,
            Err(why) => {
                problems.push(problem(rel, None, "invalid_file", why));
                continue;
            }
        };
        let Some(id) = task.id.clone() else {
            problems.push(problem(
                rel,
                None,
                "invalid_file",
                "the task file has no `id`".into(),
            ));
            continue;
        };
        by_id.entry(id.clone()).or_default().push(rel.clone());
        if id != stem {
            problems.push(problem(
                rel,
                Some(&id),
                "id_mismatch",
                format!("id `{id}` differs from the file name `{stem}`"),
            ));
        }
        match task.status {
            None => problems.push(problem(
                rel,
                Some(&id),
                "invalid_file",
                "the task file has no `status`".into(),
            )),
            Some(status) => {
                if let Some(why) = placement(rel, &task, status) {
                    problems.push(problem(rel, Some(&id), "status_folder_mismatch", why));
                }
            }
        }
        if logged.as_ref().is_some_and(|l| !l.contains(&id)) {
            problems.push(problem(
                rel,
                Some(&id),
                "unlogged_task",
                "no event in the log mentions this task; the daemon records it (task_discovered) at its next scan"
                    .into(),
            ));
        }
    }

    // The log against the files.
    if let Some((reader, _)) = &projection {
        let mut known: HashSet<String> = HashSet::new();
        for t in reader.tasks(&TaskFilter::default())? {
            known.insert(t.path.clone());
            if !layout.abs(&t.path).exists() {
                let elsewhere = by_id
                    .get(&t.id)
                    .map(|paths| format!("; a file with this id is at {}", paths.join(", ")))
                    .unwrap_or_default();
                problems.push(problem(
                    &t.path,
                    Some(&t.id),
                    "missing_file",
                    format!(
                        "the log places `{}` ({}) here, but there is no file{elsewhere}",
                        t.id, t.status
                    ),
                ));
            }
        }
        for (id, paths) in &by_id {
            if paths.len() > 1 {
                let keep = paths.iter().find(|p| known.contains(*p)).unwrap_or(&paths[0]);
                for p in paths.iter().filter(|p| *p != keep) {
                    problems.push(problem(
                        p,
                        Some(id),
                        "duplicate_id",
                        format!("two files with the id `{id}`: this one and {keep}"),
                    ));
                }
            }
        }
    } else {
        for (id, paths) in by_id.iter().filter(|(_, p)| p.len() > 1) {
            for p in &paths[1..] {
                problems.push(problem(
                    p,
                    Some(id),
                    "duplicate_id",
                    format!("two files with the id `{id}`: this one and {}", paths[0]),
                ));
            }
        }
    }

    // The index against a fresh projection of the log.
    let db = db_path(layout);
    let db_rel = layout.rel(&db);
    let mut index_seq = None;
    let mut rounds = 0;
    while let Some((proj, _)) = &projection {
        let want = proj.last_seq();
        if !db.exists() {
            if want > 0 {
                let why =
                    "there is no index; the daemon rebuilds it at start, or run `agentplane index rebuild`";
                problems.push(problem(&db_rel, None, "index_missing", why.into()));
            }
            break;
        }
        let index = match Reader::open(&db, &log, daemon.is_some()) {
            Ok(r) => r,
            Err(e) => {
                problems.push(problem(
                    &db_rel,
                    None,
                    "index_unreadable",
                    format!(
                        "{e}; stop the daemon and run `agentplane index rebuild` (or restart the daemon)"
                    ),
                ));
                break;
            }
        };
        let at = index.last_seq();
        index_seq = Some(at);
        rounds += 1;
        if at != want && daemon.is_some() && rounds < 50 {
            // A running daemon moves both: let the index catch up, or read the log again.
            std::thread::sleep(Duration::from_millis(100));
            if at > want {
                projection = project(&log, &mut problems, &log_rel)?;
            }
            continue;
        }
        if at < want {
            problems.push(problem(
                &db_rel,
                None,
                "index_behind",
                format!(
                    "the index is at seq {at}, the log at {want}; {}",
                    if daemon.is_some() {
                        "the daemon has not caught up"
                    } else {
                        "start the daemon (it catches up at start) or run `agentplane index rebuild`"
                    }
                ),
            ));
        } else if at > want {
            let why = format!(
                "the index has events up to seq {at} but the log ends at {want}: it belongs to another log; \
                     run `agentplane index rebuild`"
            );
            problems.push(problem(&db_rel, None, "index_diverged", why));
        } else if let Some(diff) = index.compare(proj)? {
            let why = format!(
                "the index differs from the projection of the log: {diff}; run `agentplane index rebuild`"
            );
            problems.push(problem(&db_rel, None, "index_diverged", why));
        }
        break;
    }

    problems.sort();
    let events = projection.as_ref().map_or(0, |(p, _)| p.last_seq());
    if json {
        print_json(&json!({
            "ok": problems.is_empty(),
            "problems": problems,
            "task_files": files.len(),
            "last_seq": events,
            "index_last_seq": index_seq,
        }));
    } else if problems.is_empty() {
        print(&format!(
            "consistent: {} task files, log at seq {events}, index {}\n",
            files.len(),
            index_seq.map_or("absent (empty log)".to_string(), |s| format!(
                "at seq {s}, equal to the log's projection"
            ))
        ));
    } else {
        let rows: Vec<Vec<String>> = problems
            .iter()
            .map(|p| {
                vec![
                    p.path.clone(),
                    table::opt(p.task_id.as_deref()),
                    p.kind.to_string(),
                    table::one_line(&p.message),
                ]
            })
            .collect();
        print(&table::render(&["PATH", "TASK", "KIND", "MESSAGE"], &rows));
        print(&format!(
            "\n{} problem{} in {} task files and the log (seq {events})\n",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            files.len()
        ));
    }
    Ok(i32::from(!problems.is_empty()))
}
