//! `agentplane costs` (the `cost_update` events summed by agent, model, day or task) and
//! `agentplane runs` (run containers, ADR-048: the events that carry a `run_id`, with the
//! container file `work/runs/<run-id>/run.yaml` when it exists). Reads only.

use serde_json::{Value, json};

use super::table::{self, opt};
use super::{Answer, Failure, Source, print, print_json};
use crate::layout::Layout;
use crate::store::index::read::{CostKey, RunSummary};
use crate::task;

fn key_name(by: CostKey) -> &'static str {
    match by {
        CostKey::Agent => "agent",
        CostKey::Model => "model",
        CostKey::Day => "day",
        CostKey::Task => "task",
    }
}

pub(super) fn costs(layout: &Layout, by: CostKey, json: bool) -> Answer {
    let src = Source::open(layout)?;
    let rows = src.reader.costs(by)?;
    let total = json!({
        "events": rows.iter().map(|r| r.events).sum::<u64>(),
        "cost_usd": rows.iter().map(|r| r.cost_usd).sum::<f64>(),
        "input_tokens": rows.iter().map(|r| r.input_tokens).sum::<u64>(),
        "output_tokens": rows.iter().map(|r| r.output_tokens).sum::<u64>(),
        "cache_creation_input_tokens": rows.iter().map(|r| r.cache_creation_input_tokens).sum::<u64>(),
        "cache_read_input_tokens": rows.iter().map(|r| r.cache_read_input_tokens).sum::<u64>(),
    });
    if json {
        print_json(&json!({"by": key_name(by), "rows": rows, "total": total}));
        return Ok(0);
    }
    if rows.is_empty() {
        print(
            "no costs recorded (cost_update events come from agents whose JSON output reports cost or usage)\n",
        );
        return Ok(0);
    }
    let mut cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                if r.key.is_empty() {
                    "(unknown)".into()
                } else {
                    r.key.clone()
                },
                r.events.to_string(),
                format!("{:.4}", r.cost_usd),
                r.input_tokens.to_string(),
                r.output_tokens.to_string(),
                r.cache_creation_input_tokens.to_string(),
                r.cache_read_input_tokens.to_string(),
            ]
        })
        .collect();
    cells.push(vec![
        "TOTAL".into(),
        total["events"].to_string(),
        format!("{:.4}", total["cost_usd"].as_f64().unwrap_or(0.0)),
        total["input_tokens"].to_string(),
        total["output_tokens"].to_string(),
        total["cache_creation_input_tokens"].to_string(),
        total["cache_read_input_tokens"].to_string(),
    ]);
    let header = key_name(by).to_uppercase();
    print(&table::render(
        &[
            &header,
            "EVENTS",
            "COST_USD",
            "INPUT",
            "OUTPUT",
            "CACHE_WRITE",
            "CACHE_READ",
        ],
        &cells,
    ));
    Ok(0)
}

/// The run's container file, if the run id can name a folder and the file exists.
fn container(layout: &Layout, run_id: &str) -> Option<String> {
    let rel = format!("work/runs/{run_id}/run.yaml");
    (task::valid_id(run_id) && layout.abs(&rel).is_file()).then_some(rel)
}

fn run_json(layout: &Layout, r: &RunSummary) -> Value {
    let mut v = serde_json::to_value(r).expect("rows serialize");
    v["path"] = json!(container(layout, &r.run.run_id));
    v
}

pub(super) fn runs(layout: &Layout, run_id: Option<&str>, json: bool) -> Answer {
    let src = Source::open(layout)?;
    let runs = src.reader.runs(run_id)?;
    let Some(id) = run_id else {
        if json {
            let list: Vec<Value> = runs.iter().map(|r| run_json(layout, r)).collect();
            print_json(&json!({"runs": list}));
        } else if runs.is_empty() {
            print("no runs: no event carries a run_id (run containers, ADR-048)\n");
        } else {
            let cells: Vec<Vec<String>> = runs
                .iter()
                .map(|r| {
                    vec![
                        r.run.run_id.clone(),
                        r.tasks.to_string(),
                        r.run.events.to_string(),
                        r.run.started_at.clone(),
                        r.run.updated_at.clone(),
                        opt(container(layout, &r.run.run_id).as_deref()),
                    ]
                })
                .collect();
            print(&table::render(
                &["RUN", "TASKS", "EVENTS", "STARTED", "UPDATED", "CONTAINER"],
                &cells,
            ));
        }
        return Ok(0);
    };
    let Some(run) = runs.first() else {
        return Err(Failure::refused(format!(
            "unknown run `{id}`: no event carries this run_id (`agentplane runs` lists the runs)"
        )));
    };
    let mut tasks = Vec::new();
    for task_id in src.reader.run_tasks(id)? {
        if let Some(t) = src.reader.task(&task_id)? {
            tasks.push(t);
        }
    }
    if json {
        print_json(&json!({"run": run_json(layout, run), "tasks": tasks}));
        return Ok(0);
    }
    let mut out = format!(
        "run {id}\n  started    {}\n  updated    {}\n  events     {}\n  container  {}\n\ntasks ({}):\n",
        run.run.started_at,
        run.run.updated_at,
        run.run.events,
        opt(container(layout, id).as_deref()),
        tasks.len()
    );
    let cells: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.status.clone(),
                t.agent.clone(),
                table::one_line(&t.title),
            ]
        })
        .collect();
    if !cells.is_empty() {
        out.push_str(&table::render(&["ID", "STATUS", "AGENT", "TITLE"], &cells));
    }
    print(&out);
    Ok(0)
}
