//! `agentplane status`: task counts by status, per-agent queues with the current task, the
//! problems the log records (about files that still exist), and run containers — aggregate
//! queries on the index, no task list, so it answers in milliseconds whatever the number of
//! tasks. Reads only.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::table::{self, opt};
use super::{Answer, Source, print, print_json};
use crate::config::Config;
use crate::layout::Layout;
use crate::store::index::read::Origin;

/// The statuses every count shows (others appear only when some task has them).
pub(super) const COUNTED: [&str; 5] = ["assigned", "in_progress", "blocked", "done", "error"];

pub(super) fn status(layout: &Layout, json: bool) -> Answer {
    let src = Source::open(layout)?;
    let r = &src.reader;
    let mut totals: BTreeMap<String, u64> = COUNTED.iter().map(|s| (s.to_string(), 0)).collect();
    let mut agents: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    if let Ok(Some(configured)) = Config::load(&layout.config()).map(|c| c.agents) {
        for name in configured.into_keys() {
            agents.entry(name).or_default();
        }
    }
    for (agent, status, n) in r.counts()? {
        *totals.entry(status.clone()).or_default() += n;
        *agents.entry(agent).or_default().entry(status).or_default() += n;
    }
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    for (agent, id) in r.in_progress()? {
        current.entry(agent).or_insert(id);
    }
    // A recorded problem about a file that is gone no longer applies.
    let problems: Vec<_> = r
        .problems()?
        .into_iter()
        .filter(|p| layout.abs(&p.path).exists())
        .collect();
    let runs = r.runs(None)?;
    let total: u64 = totals.values().sum();
    if json {
        let agents_json: Map<String, Value> = agents
            .iter()
            .map(|(name, counts)| {
                let mut m: Map<String, Value> = COUNTED
                    .iter()
                    .map(|s| (s.to_string(), json!(counts.get(*s).copied().unwrap_or(0))))
                    .collect();
                m.insert("current".into(), json!(current.get(name)));
                (name.clone(), Value::Object(m))
            })
            .collect();
        print_json(&json!({
            "last_seq": r.last_seq(),
            "log_last_seq": src.log_last,
            "source": if r.origin() == Origin::Index { "index" } else { "log" },
            "daemon": {"running": src.daemon.is_some(), "pid": src.daemon},
            "total": total,
            "counts": totals,
            "agents": agents_json,
            "problems": problems.iter().map(|p| json!({
                "path": p.path, "task_id": p.task_id, "kind": p.kind, "message": p.message,
            })).collect::<Vec<_>>(),
            "runs": runs,
        }));
        return Ok(0);
    }
    let mut out = String::new();
    let daemon = match src.daemon {
        Some(pid) => format!("daemon running (pid {pid})"),
        None => "no daemon running".into(),
    };
    let source = match r.origin() {
        Origin::Index => format!("index at seq {} of {}", r.last_seq(), src.log_last),
        Origin::Log => format!("read from the log, seq {}", src.log_last),
    };
    out.push_str(&format!("{} — {daemon}; {source}\n\n", layout.root.display()));
    let mut order: Vec<&String> = totals.keys().collect();
    order.sort_by_key(|s| COUNTED.iter().position(|c| c == s).unwrap_or(COUNTED.len()));
    let counts: Vec<String> = order.iter().map(|s| format!("{s} {}", totals[*s])).collect();
    out.push_str(&format!("tasks: {total} ({})\n\n", counts.join(", ")));
    if agents.is_empty() {
        out.push_str("no agents yet\n");
    } else {
        let rows: Vec<Vec<String>> = agents
            .iter()
            .map(|(name, counts)| {
                let mut row = vec![name.clone()];
                row.extend(
                    COUNTED
                        .iter()
                        .map(|s| counts.get(*s).copied().unwrap_or(0).to_string()),
                );
                row.push(opt(current.get(name).map(String::as_str)));
                row
            })
            .collect();
        out.push_str(&table::render(
            &[
                "AGENT",
                "ASSIGNED",
                "IN_PROGRESS",
                "BLOCKED",
                "DONE",
                "ERROR",
                "CURRENT",
            ],
            &rows,
        ));
    }
    out.push('\n');
    if problems.is_empty() {
        out.push_str("problems: none recorded (`agentplane check` inspects the tree itself)\n");
    } else {
        out.push_str(&format!("problems ({}):\n", problems.len()));
        let rows: Vec<Vec<String>> = problems
            .iter()
            .map(|p| {
                vec![
                    p.path.clone(),
                    opt(p.task_id.as_deref()),
                    p.kind.clone(),
                    table::one_line(&p.message),
                ]
            })
            .collect();
        out.push_str(&table::render(&["PATH", "TASK", "KIND", "MESSAGE"], &rows));
    }
    if !runs.is_empty() {
        out.push_str(&format!(
            "\nruns ({}): `agentplane runs` lists them\n",
            runs.len()
        ));
    }
    print(&out);
    Ok(0)
}
