//! `agentplane list` (tasks from the index, filtered by status, agent and priority, in queue
//! order) and `agentplane show ID` (the task file's fields as they are on disk, the task as the
//! log describes it, its attempts with their log files, and its whole event history). Reads
//! only.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::events::{EVENT_HEADERS, event_row, parse_event};
use super::table::{self, opt};
use super::{Answer, Failure, Source, print, print_json};
use crate::config::Config;
use crate::layout::Layout;
use crate::lifecycle::fsops::read_task_file;
use crate::store::index::read::{AttemptRow, TaskFilter, TaskRow};
use crate::task::{self, Priority, Status, yaml};

pub(super) fn list(
    layout: &Layout,
    status: Option<String>,
    agent: Option<String>,
    priority: Option<String>,
    json: bool,
) -> Answer {
    let status = match status {
        None => None,
        Some(s) => Some(
            Status::parse(&s)
                .ok_or_else(|| {
                    Failure::environment(format!(
                        "unknown status `{s}`; use one of new, inbox, assigned, in_progress, blocked, done, error"
                    ))
                })?
                .as_str()
                .to_string(),
        ),
    };
    let priority = match priority {
        None => None,
        Some(p) => Some(
            Priority::parse(&p)
                .ok_or_else(|| {
                    Failure::environment(format!(
                        "unknown priority `{p}`; use one of critical, high, medium, normal, low"
                    ))
                })?
                .as_str()
                .to_string(),
        ),
    };
    let src = Source::open(layout)?;
    let filter = TaskFilter {
        status,
        agent,
        priority,
    };
    if json {
        #[derive(serde::Serialize)]
        struct Listing {
            last_seq: u64,
            tasks: Vec<TaskRow>,
        }
        let listing = Listing {
            last_seq: src.reader.last_seq(),
            tasks: src.reader.tasks(&filter)?,
        };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = serde_json::to_writer(&mut out, &listing)
            .map_err(std::io::Error::other)
            .and_then(|_| out.write_all(b"\n"))
            .and_then(|_| out.flush());
        return Ok(0);
    }
    let rows = src.reader.task_lines(&filter)?;
    if rows.is_empty() {
        print("no tasks\n");
        return Ok(0);
    }
    let headers = ["ID", "STATUS", "AGENT", "PRIORITY", "ATTEMPT", "UPDATED", "TITLE"];
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for t in &rows {
        for (w, cell) in widths.iter_mut().zip([&t.id, &t.status, &t.agent, &t.priority]) {
            *w = (*w).max(cell.chars().count());
        }
        widths[4] = widths[4].max(t.attempt.to_string().len());
        widths[5] = widths[5].max(t.updated_at.chars().count());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut text = table::line(&widths, &headers);
    for t in &rows {
        if out.write_all(text.as_bytes()).is_err() {
            return Ok(0);
        }
        let attempt = t.attempt.to_string();
        let title = table::one_line(&t.title);
        text = table::line(
            &widths,
            &[
                &t.id,
                &t.status,
                &t.agent,
                &t.priority,
                &attempt,
                &t.updated_at,
                &title,
            ],
        );
    }
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(0)
}

/// A task file named `<id>.yaml` (or `.yml`) anywhere a task file may be, rejected ones last.
fn find_file(layout: &Layout, id: &str) -> Option<String> {
    let collab = layout.collab();
    let mut dirs = vec![collab.join("inbox"), collab.join("fridge")];
    for top in ["assigned", "done", "error", "archive"] {
        if let Ok(rd) = std::fs::read_dir(collab.join(top)) {
            let mut subs: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            subs.sort();
            dirs.extend(subs);
        }
    }
    dirs.push(layout.rejected());
    dirs.iter()
        .flat_map(|d| [d.join(format!("{id}.yaml")), d.join(format!("{id}.yml"))])
        .find(|p| p.is_file())
        .map(|p| layout.rel(&p))
}

/// The task file's fields as they are on disk, or why they cannot be read.
fn file_fields(layout: &Layout, rel: &str) -> (Option<Map<String, Value>>, Option<String>) {
    let max = Config::load(&layout.config()).map_or(1_048_576, |c| c.max_task_bytes);
    let bytes = match read_task_file(&layout.abs(rel), max) {
        Ok((bytes, _)) => bytes,
        Err(refusal) => return (None, Some(refusal.to_string())),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return (None, Some("the file is not UTF-8 text".into()));
    };
    match yaml::parse_document(text, &yaml::Budget::default()) {
        Ok(Value::Object(map)) => (Some(map), None),
        Ok(other) => (
            None,
            Some(format!(
                "the document is {}, not a mapping",
                task::kind_name(&other)
            )),
        ),
        Err(e) => (None, Some(format!("not valid YAML: {e}"))),
    }
}

/// The files an attempt's log folder holds now.
fn log_files(layout: &Layout, a: &AttemptRow) -> Vec<String> {
    let dir = layout.abs(&a.log_dir);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| layout.rel(&e.path()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

pub(super) fn show(layout: &Layout, id: &str, json: bool) -> Answer {
    if !task::valid_id(id) {
        return Err(Failure::environment(format!(
            "`{id}` is not a task id (1-128 characters of A-Z a-z 0-9 . _ -)"
        )));
    }
    let src = Source::open(layout)?;
    let row: Option<TaskRow> = src.reader.task(id)?;
    let mut lines: Vec<String> = Vec::new();
    src.reader
        .task_events(id, 0, |_, line| lines.push(line.to_string()))?;
    for (ev, line) in src.tail(layout)? {
        if ev.task_id.as_deref() == Some(id) {
            lines.push(line);
        }
    }
    let path = row
        .as_ref()
        .map(|r| r.path.clone())
        .or_else(|| find_file(layout, id));
    if row.is_none() && path.is_none() && lines.is_empty() {
        return Err(Failure::refused(format!(
            "unknown task `{id}`: no event names it and no {id}.yaml is in the task folders \
             (`agentplane list` shows the tasks)"
        )));
    }
    let (fields, file_error) = match &path {
        Some(p) if layout.abs(p).exists() => file_fields(layout, p),
        Some(p) => (None, Some(format!("no file at {p}"))),
        None => (None, Some("no task file".into())),
    };
    let attempts = src.reader.attempts(id)?;
    // A rejected file has a sidecar saying why.
    let rejection = path
        .as_ref()
        .filter(|p| p.starts_with("work/collaboration/rejected/"))
        .and_then(|p| file_fields(layout, &format!("{p}.reason.yaml")).0);
    if json {
        let attempts: Vec<Value> = attempts
            .iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).expect("rows serialize");
                v["files"] = json!(log_files(layout, a));
                v
            })
            .collect();
        let events: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect();
        print_json(&json!({
            "id": id,
            "task": row,
            "file": {"path": path, "fields": fields, "error": file_error},
            "rejection": rejection,
            "attempts": attempts,
            "events": events,
        }));
        return Ok(0);
    }
    let mut out = String::new();
    match &row {
        Some(t) => {
            out.push_str(&format!("{} — {}\n\n", t.id, table::one_line(&t.title)));
            let mut facts = vec![
                ("status", t.status.clone()),
                ("agent", t.agent.clone()),
                ("priority", t.priority.clone()),
                ("path", t.path.clone()),
                ("attempt", t.attempt.to_string()),
                (
                    "depends_on",
                    if t.depends_on.is_empty() {
                        "—".into()
                    } else {
                        t.depends_on.join(", ")
                    },
                ),
                ("created", t.created_at.clone()),
                ("updated", t.updated_at.clone()),
            ];
            if t.approval_required {
                facts.push(("approval", if t.approved { "given" } else { "waiting" }.into()));
            }
            for (k, v) in [("summary", &t.summary), ("error", &t.error)] {
                if let Some(v) = v {
                    facts.push((k, table::one_line(v)));
                }
            }
            if let Some(p) = &t.problem {
                facts.push(("problem", format!("{p}: {}", opt(t.problem_message.as_deref()))));
            }
            let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in facts {
                out.push_str(&format!("  {k:width$}  {v}\n"));
            }
        }
        None if rejection.is_some() => out.push_str(&format!("{id} — rejected at intake, not a task\n")),
        None => out.push_str(&format!(
            "{id} — not in the log yet (the daemon records it when it sees the file)\n"
        )),
    }
    if let Some(r) = &rejection {
        let why = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("—").to_string();
        out.push_str(&format!(
            "\nrejected: {}\n  what to do: {}\n",
            table::one_line(&why("reason")),
            table::one_line(&why("what_to_do"))
        ));
    }
    out.push_str(&format!("\nfile {}:\n", path.as_deref().unwrap_or("—")));
    match (&fields, &file_error) {
        (Some(map), _) => {
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => table::one_line(s),
                    other => other.to_string(),
                };
                out.push_str(&format!("  {k}: {text}\n"));
            }
        }
        (None, Some(e)) => out.push_str(&format!("  ({e})\n")),
        (None, None) => {}
    }
    out.push_str(&format!("\nattempts ({}):\n", attempts.len()));
    if !attempts.is_empty() {
        let rows: Vec<Vec<String>> = attempts
            .iter()
            .map(|a| {
                vec![
                    a.attempt.to_string(),
                    a.outcome.clone(),
                    a.started_at.clone(),
                    opt(a.ended_at.as_deref()),
                    a.exit_code.map_or("—".into(), |c| c.to_string()),
                    a.duration_ms.map_or("—".into(), |d| format!("{d} ms")),
                    a.log_dir.clone(),
                ]
            })
            .collect();
        out.push_str(&indent(&table::render(
            &["N", "OUTCOME", "STARTED", "ENDED", "EXIT", "DURATION", "LOGS"],
            &rows,
        )));
    }
    out.push_str(&format!("\nevents ({}):\n", lines.len()));
    let rows: Vec<Vec<String>> = lines
        .iter()
        .filter_map(|l| parse_event(l))
        .map(|e| event_row(&e))
        .collect();
    if !rows.is_empty() {
        out.push_str(&indent(&table::render(&EVENT_HEADERS, &rows)));
    }
    print(&out);
    Ok(0)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
