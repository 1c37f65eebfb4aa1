//! `agentplane wait ID [--timeout S]`: block until the task is terminal — exit 0 when it is
//! done, 1 when it ends in error, is deleted or rejected, or the timeout passes. The state
//! comes from the index, then from the log as it grows (so a lagging index never delays the
//! answer); works whether or not the daemon runs. Reads only.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Answer, Failure, Source, note, print, print_json};
use crate::layout::Layout;
use crate::store::logread::Follower;
use crate::task::{self, Status};

const POLL: Duration = Duration::from_millis(100);

pub(super) fn wait(layout: &Layout, id: &str, timeout_s: Option<f64>, json: bool) -> Answer {
    if !task::valid_id(id) {
        return Err(Failure::environment(format!(
            "`{id}` is not a task id (1-128 characters of A-Z a-z 0-9 . _ -)"
        )));
    }
    if timeout_s.is_some_and(|t| !t.is_finite() || t < 0.0) {
        return Err(Failure::environment(
            "--timeout takes a number of seconds, 0 or more",
        ));
    }
    let deadline = timeout_s.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let src = Source::open(layout)?;
    let row = src.reader.task(id)?;
    let mut status: Option<String> = row.as_ref().map(|t| t.status.clone());
    let mut message: Option<String> = row.as_ref().and_then(|t| t.error.clone().or(t.summary.clone()));
    let mut ending: Option<&str> = None;
    let mut seq = src.reader.last_seq();
    let mut follower = Follower::after(&layout.events(), seq);
    let mut told = false;
    loop {
        for (ev, _) in follower.poll()? {
            seq = ev.seq;
            if ev.task_id.as_deref() == Some(id) {
                if ev.event == "task_deleted" {
                    ending = Some("deleted");
                    message = Some(format!(
                        "the task file {} was deleted",
                        ev.path.unwrap_or_default()
                    ));
                } else if let Some(to) = ev.to.as_deref().and_then(Status::parse) {
                    status = Some(to.as_str().to_string());
                    message = ev.summary.clone().or(ev.error.clone());
                    ending = None;
                }
            } else if status.is_none()
                && ev.event == "task_rejected"
                && ev
                    .src
                    .as_deref()
                    .and_then(|s| s.rsplit('/').next())
                    .is_some_and(|name| name == format!("{id}.yaml") || name == format!("{id}.yml"))
            {
                ending = Some("rejected");
                message = ev.error.clone();
            }
        }
        let outcome = ending.or(match status.as_deref() {
            Some("done") => Some("done"),
            Some("error") => Some("error"),
            _ => None,
        });
        let timed_out = outcome.is_none() && deadline.is_some_and(|d| Instant::now() >= d);
        if let Some(outcome) = outcome.or(timed_out.then_some("timeout")) {
            let code = i32::from(outcome != "done");
            if json {
                print_json(
                    &json!({"id": id, "outcome": outcome, "status": status, "message": message, "seq": seq}),
                );
            } else {
                let state = match outcome {
                    "timeout" => format!(
                        "timed out after {} s; the task is {}",
                        timeout_s.unwrap_or_default(),
                        status.as_deref().unwrap_or("not in the log yet")
                    ),
                    other => other.to_string(),
                };
                let detail = message.as_deref().map(|m| format!(" — {m}")).unwrap_or_default();
                print(&format!("{id}: {state}{detail}\n"));
            }
            return Ok(code);
        }
        if status.is_none() && !told {
            told = true;
            note(&format!(
                "task `{id}` is not in the log yet; waiting for the daemon to take it in{}",
                if src.daemon.is_none() {
                    " (no daemon is running)"
                } else {
                    ""
                }
            ));
        }
        std::thread::sleep(POLL);
    }
}
