//! `agentplane events` (the log's events after a seq — of one task located through the index,
//! plus whatever the log has beyond it — and `--follow`ing the log as it grows) and
//! `agentplane logs` (an attempt's stdout.log or stderr.log, `--follow`ing it until the
//! attempt ends). Reads only.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use serde_json::json;

use super::table::{self, one_line};
use super::{Answer, Failure, Source, print_json};
use crate::event::Event;
use crate::layout::Layout;
use crate::store::logread::{self, Follower};
use crate::task;

/// How often `--follow` looks for more.
const POLL: Duration = Duration::from_millis(200);

pub(super) const EVENT_HEADERS: [&str; 6] = ["SEQ", "TS", "EVENT", "TASK", "TRANSITION", "NOTE"];

pub(super) fn parse_event(line: &str) -> Option<Event> {
    serde_json::from_str(line).ok()
}

/// The human columns of an event.
pub(super) fn event_row(e: &Event) -> Vec<String> {
    let transition = match (&e.from, &e.to) {
        (Some(f), Some(t)) => format!("{f} → {t}"),
        (None, Some(t)) => format!("→ {t}"),
        _ => "—".into(),
    };
    let mut note = e
        .summary
        .clone()
        .or_else(|| e.error.clone())
        .or_else(|| e.data_str("kind").map(str::to_string))
        .or_else(|| e.path.clone())
        .map(|n| one_line(&n))
        .unwrap_or_default();
    if note.chars().count() > 120 {
        note = note.chars().take(117).collect::<String>() + "…";
    }
    vec![
        e.seq.to_string(),
        e.ts.clone(),
        e.event.clone(),
        e.task_id.clone().unwrap_or_else(|| "—".into()),
        transition,
        note,
    ]
}

/// Writes events to stdout as JSON lines or aligned rows; false once stdout is closed.
struct EventOut {
    json: bool,
    widths: Vec<usize>,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
}

impl EventOut {
    fn write(&mut self, line: &str) -> bool {
        let text = if self.json {
            format!("{line}\n")
        } else {
            let Some(e) = parse_event(line) else { return true };
            let row = event_row(&e);
            for (w, c) in self.widths.iter_mut().zip(&row) {
                *w = (*w).max(c.chars().count());
            }
            table::line(&self.widths, &row)
        };
        self.out.write_all(text.as_bytes()).is_ok()
    }

    fn flush(&mut self) -> bool {
        self.out.flush().is_ok()
    }

    fn header(&mut self) -> bool {
        let header = table::line(&self.widths, &EVENT_HEADERS);
        self.out.write_all(header.as_bytes()).is_ok()
    }
}

pub(super) fn events(layout: &Layout, task: Option<&str>, since: u64, follow: bool, json: bool) -> Answer {
    let log = layout.events();
    let mut out = EventOut {
        json,
        widths: EVENT_HEADERS.iter().map(|h| h.len()).collect(),
        out: std::io::BufWriter::new(std::io::stdout().lock()),
    };
    let mut upto = since;
    match task {
        // All events: streamed straight from the log, which is the truth and ordered by seq
        // (for a table, a first pass measures the columns).
        None => {
            if !json {
                logread::stream(&log, since, |e, _, _| {
                    let row = event_row(&e);
                    for (w, c) in out.widths.iter_mut().zip(&row) {
                        *w = (*w).max(c.chars().count());
                    }
                    Ok::<(), ()>(())
                })?
                .ok();
                if !out.header() {
                    return Ok(0);
                }
            }
            let end = logread::stream(
                &log,
                since,
                |_, line, _| if out.write(line) { Ok(()) } else { Err(()) },
            )?;
            match end {
                Ok(end) => upto = upto.max(end.last_seq),
                Err(()) => return Ok(0), // stdout closed
            }
        }
        // One task's: located by the index, plus whatever the log has beyond it.
        Some(id) => {
            let src = Source::open(layout)?;
            let mut lines: Vec<String> = Vec::new();
            src.reader
                .task_events(id, since, |_, line| lines.push(line.to_string()))?;
            upto = upto.max(src.reader.last_seq());
            for (ev, line) in src.tail(layout)? {
                upto = upto.max(ev.seq);
                if ev.seq > since && ev.task_id.as_deref() == Some(id) {
                    lines.push(line);
                }
            }
            if !json {
                let rows: Vec<Vec<String>> = lines
                    .iter()
                    .filter_map(|l| parse_event(l))
                    .map(|e| event_row(&e))
                    .collect();
                out.widths = table::widths(&EVENT_HEADERS, &rows);
                if !out.header() {
                    return Ok(0);
                }
            }
            for line in &lines {
                if !out.write(line) {
                    return Ok(0);
                }
            }
        }
    }
    if !out.flush() || !follow {
        return Ok(0);
    }
    let mut follower = Follower::after(&log, upto);
    loop {
        for (ev, line) in follower.poll()? {
            if (task.is_none() || ev.task_id.as_deref() == task) && !out.write(&line) {
                return Ok(0);
            }
        }
        if !out.flush() {
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

/// Does this event end attempt `n` of task `id`?
fn ends_attempt(e: &Event, id: &str, n: u32) -> bool {
    e.task_id.as_deref() == Some(id)
        && e.attempt == Some(n)
        && matches!(
            e.event.as_str(),
            "execution_complete"
                | "task_completed"
                | "task_failed"
                | "task_retry_scheduled"
                | "task_timed_out"
                | "task_cancelled"
                | "task_interrupted"
        )
}

/// The highest attempt folder under `work/logs/<id>/`.
fn latest_log_dir(layout: &Layout, id: &str) -> Option<u32> {
    std::fs::read_dir(layout.logs().join(id))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
}

pub(super) fn logs(
    layout: &Layout,
    id: &str,
    attempt: Option<u32>,
    stderr: bool,
    follow: bool,
    json: bool,
) -> Answer {
    if !task::valid_id(id) {
        return Err(Failure::environment(format!(
            "`{id}` is not a task id (1-128 characters of A-Z a-z 0-9 . _ -)"
        )));
    }
    let src = Source::open(layout)?;
    let attempts = src.reader.attempts(id)?;
    let n = attempt
        .or_else(|| attempts.last().map(|a| a.attempt))
        .or_else(|| latest_log_dir(layout, id))
        .ok_or_else(|| {
            Failure::refused(format!(
                "task `{id}` has no attempts yet (only tasks of agents with a `command` are run); \
                 `agentplane show {id}` shows its state"
            ))
        })?;
    let stream = if stderr { "stderr.log" } else { "stdout.log" };
    let rel = format!("work/logs/{id}/{n}/{stream}");
    let path = layout.abs(&rel);
    let mut ended = attempts.iter().any(|a| a.attempt == n && a.outcome != "running");
    if !path.exists() && (!follow || ended) {
        return Err(Failure::refused(format!(
            "{rel} does not exist: attempt {n} of `{id}` wrote no {stream} (`agentplane show {id}` lists its attempts)"
        )));
    }
    let read = |offset: u64| {
        read_from(&path, offset)
            .map_err(|e| Failure::environment(format!("cannot read {}: {e}", path.display())))
    };
    let as_json = |text: &[u8]| {
        json!({"task_id": id, "attempt": n, "stream": stream.trim_end_matches(".log"), "path": rel,
               "text": String::from_utf8_lossy(text)})
    };
    if !follow {
        let bytes = read(0)?;
        if json {
            print_json(&as_json(&bytes));
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes).and_then(|_| out.flush());
        }
        return Ok(0);
    }
    let mut follower = Follower::after(&layout.events(), src.reader.last_seq());
    let mut offset = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        // Whether the attempt has ended is decided before reading, so nothing written before
        // its end is missed.
        if !ended {
            ended = follower.poll()?.iter().any(|(e, _)| ends_attempt(e, id, n));
        }
        let chunk = read(offset)?;
        offset += chunk.len() as u64;
        if !chunk.is_empty() {
            let written = if json {
                out.write_all(format!("{}\n", as_json(&chunk)).as_bytes())
            } else {
                out.write_all(&chunk)
            };
            if written.and_then(|_| out.flush()).is_err() {
                return Ok(0);
            }
        }
        if ended {
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}

/// Everything in the file after `offset` (nothing if it does not exist yet).
fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    Ok(buf)
}
