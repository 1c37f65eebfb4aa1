//! The read models in `work/status/` (SPEC section 5): `status.json`, `AGENT_STATUS.md`,
//! `BOARD.md`, `HANDOFFS.md`, `WORKFLOW_LOG.md`. `Model` is kept up to date incrementally
//! from the daemon's state — one `Update` per committed round, carrying only the tasks that
//! changed — and renders the five files; `writer` is the thread that coalesces updates and
//! writes a file (atomically) only when its content changed.
//!
//! Rendering is pure. Only `writer` writes, and only inside `work/status/`; this module never
//! touches task files, the log or the index, and never reads the write side's types (the
//! daemon's publisher converts its state into the views below).

pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use memchr::memmem::Finder;
use serde::Serialize;
use serde_json::{Value, json};

use crate::card::Card;
use crate::clock;
use crate::event::Event;
use crate::task::Status;

/// Events shown in `WORKFLOW_LOG.md`, handoffs in `HANDOFFS.md`, tasks per `BOARD.md` section.
pub const RECENT_EVENTS: usize = 200;
pub const RECENT_HANDOFFS: usize = 200;
pub const BOARD_ROWS: usize = 200;

/// A task as the read models show it: the engine's card (shared, not copied) and, when this
/// update knows it, what the daemon said about the file's inconsistency.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub card: Arc<Card>,
    pub problem_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ProblemView {
    pub path: String,
    pub task_id: Option<String>,
    pub kind: String,
    pub message: String,
}

/// One line of `WORKFLOW_LOG.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLine {
    pub seq: u64,
    pub ts: String,
    pub event: String,
    pub task_id: Option<String>,
    pub agent: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub note: Option<String>,
}

impl EventLine {
    pub fn of(ev: &Event) -> EventLine {
        let note = ev
            .summary
            .clone()
            .or_else(|| ev.error.clone())
            .or_else(|| ev.data_str("kind").map(str::to_string));
        EventLine {
            seq: ev.seq,
            ts: ev.ts.clone(),
            event: ev.event.clone(),
            task_id: ev.task_id.clone(),
            agent: ev.agent.clone(),
            from: ev.from.clone(),
            to: ev.to.clone(),
            note,
        }
    }
}

/// A follow-up task created from `result.next_agent`.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffView {
    pub seq: u64,
    pub ts: String,
    pub from_task: String,
    pub to_task: String,
    pub to_agent: String,
}

impl HandoffView {
    pub fn of(ev: &Event) -> Option<HandoffView> {
        (ev.event == "handoff_created").then(|| HandoffView {
            seq: ev.seq,
            ts: ev.ts.clone(),
            from_task: ev.task_id.clone().unwrap_or_default(),
            to_task: ev.data_str("next_task").unwrap_or_default().to_string(),
            to_agent: ev.agent.clone().unwrap_or_default(),
        })
    }
}

/// An event that carries a `run_id` (ADR-048 run containers).
#[derive(Debug, Clone, PartialEq)]
pub struct RunEvent {
    pub run_id: String,
    pub seq: u64,
    pub ts: String,
    pub task_id: Option<String>,
}

impl RunEvent {
    pub fn of(ev: &Event) -> Option<RunEvent> {
        Some(RunEvent {
            run_id: ev.run_id.clone()?,
            seq: ev.seq,
            ts: ev.ts.clone(),
            task_id: ev.task_id.clone(),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct RunView {
    started_at: String,
    updated_at: String,
    events: u64,
    last_seq: u64,
    tasks: BTreeSet<String>,
}

/// What changed since the previous update.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub last_seq: u64,
    pub upserts: Vec<TaskView>,
    pub removed: Vec<String>,
    /// The complete list of file problems, when it changed.
    pub file_problems: Option<Vec<ProblemView>>,
    pub events: Vec<EventLine>,
    pub handoffs: Vec<HandoffView>,
    pub runs: Vec<RunEvent>,
    /// Agents named in agentplane.yaml (shown even without tasks), when known.
    pub agents: Option<Vec<String>>,
}

/// The rendered read models.
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    /// `status.json` without its first line (`{"generated_at": …,`), which the writer adds.
    pub status_body: String,
    pub agent_status: String,
    pub board: String,
    pub handoffs: String,
    pub workflow_log: String,
}

/// A card ordered and found by its task id: the set then needs no key of its own.
struct ById(Arc<Card>);

impl std::ops::Deref for ById {
    type Target = Card;
    fn deref(&self) -> &Card {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &ById) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &ById) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &ById) -> std::cmp::Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

#[derive(Default)]
pub struct Model {
    tasks: BTreeSet<ById>,
    /// What the daemon said about inconsistent task files, by task id.
    problem_messages: HashMap<Arc<str>, String>,
    file_problems: Vec<ProblemView>,
    recent: VecDeque<EventLine>,
    handoffs: VecDeque<HandoffView>,
    runs: BTreeMap<String, RunView>,
    agents: Vec<String>,
    last_seq: u64,
}

/// Generic words for an inconsistency whose message the current run of the daemon has not seen.
fn problem_text(kind: &str) -> String {
    match kind {
        "status_folder_mismatch" => {
            "the status in the file disagrees with its folder; left where it is until edited"
        }
        "id_mismatch" => "the id in the file differs from its file name; left where it is until edited",
        "missing_id" => "the task file has no id; left where it is until edited",
        _ => "the task file is inconsistent; left where it is until edited",
    }
    .to_string()
}

fn push_capped<T>(ring: &mut VecDeque<T>, item: T, cap: usize) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// Markdown table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A task as `status.json` lists it (SPEC section 5), serialized without a `Value` tree.
#[derive(Serialize)]
struct TaskJson<'a> {
    id: &'a str,
    title: &'a str,
    agent: &'a str,
    status: &'static str,
    priority: &'static str,
    path: &'a str,
    updated_at: &'a str,
    attempt: u32,
    depends_on: &'a [String],
}

impl<'a> TaskJson<'a> {
    fn of(t: &'a Card, path: &'a str, updated_at: &'a str) -> TaskJson<'a> {
        TaskJson {
            id: &t.id,
            title: &t.title,
            agent: &t.agent,
            status: t.status.as_str(),
            priority: t.priority.as_str(),
            path,
            updated_at,
            attempt: t.attempt,
            depends_on: t.depends_on(),
        }
    }
}

/// How the read models write a time: RFC 3339 with milliseconds; empty when unknown.
fn time_text(t: Option<SystemTime>) -> String {
    t.map(clock::rfc3339_millis).unwrap_or_default()
}

/// The per-status counts every view shows, in this order.
const COUNTED: [Status; 5] = [
    Status::Assigned,
    Status::InProgress,
    Status::Blocked,
    Status::Done,
    Status::Error,
];

#[derive(Default)]
struct AgentTally<'a> {
    counts: BTreeMap<Status, u64>,
    /// (updated_at, id) of the most recently changed in-progress task.
    current: Option<(Option<SystemTime>, &'a str)>,
    last_activity: Option<SystemTime>,
}

impl Model {
    pub fn apply(&mut self, u: Update) {
        self.last_seq = self.last_seq.max(u.last_seq);
        for view in u.upserts {
            let card = view.card;
            match card.problem() {
                None => {
                    self.problem_messages.remove(&*card.id);
                }
                Some(kind) => {
                    if let Some(message) = view.problem_message {
                        self.problem_messages.insert(Arc::clone(&card.id), message);
                    } else if self.tasks.get(&*card.id).and_then(|old| old.problem()) != Some(kind) {
                        // A message said about another kind of inconsistency does not apply.
                        self.problem_messages.remove(&*card.id);
                    }
                }
            }
            self.tasks.replace(ById(card));
        }
        for id in u.removed {
            self.tasks.remove(id.as_str());
            self.problem_messages.remove(id.as_str());
        }
        if let Some(problems) = u.file_problems {
            self.file_problems = problems;
        }
        for e in u.events {
            if e.seq > self.recent.back().map_or(0, |l| l.seq) {
                push_capped(&mut self.recent, e, RECENT_EVENTS);
            }
        }
        for h in u.handoffs {
            if h.seq > self.handoffs.back().map_or(0, |l| l.seq) {
                push_capped(&mut self.handoffs, h, RECENT_HANDOFFS);
            }
        }
        for r in u.runs {
            let run = self.runs.entry(r.run_id).or_default();
            if r.seq <= run.last_seq {
                continue;
            }
            if run.events == 0 {
                run.started_at.clone_from(&r.ts);
            }
            run.updated_at = r.ts;
            run.last_seq = r.seq;
            run.events += 1;
            run.tasks.extend(r.task_id);
        }
        if let Some(agents) = u.agents {
            self.agents = agents;
        }
    }

    /// Every problem: reported files, and tasks whose file is inconsistent. By path.
    fn problems(&self) -> Vec<ProblemView> {
        let mut out: BTreeMap<String, ProblemView> = BTreeMap::new();
        for p in &self.file_problems {
            out.insert(p.path.clone(), p.clone());
        }
        for t in &self.tasks {
            let id = &t.id;
            if let Some(kind) = t.problem() {
                let path = t.path();
                out.entry(path.clone()).or_insert_with(|| ProblemView {
                    path,
                    task_id: Some(id.to_string()),
                    kind: kind.to_string(),
                    message: self
                        .problem_messages
                        .get(&**id)
                        .cloned()
                        .unwrap_or_else(|| problem_text(kind)),
                });
            }
        }
        out.into_values().collect()
    }

    fn tally(&self) -> BTreeMap<&str, AgentTally<'_>> {
        let mut agents: BTreeMap<&str, AgentTally> = BTreeMap::new();
        for name in &self.agents {
            agents.entry(name).or_default();
        }
        for t in &self.tasks {
            let id = &t.id;
            let a = agents.entry(&t.agent).or_default();
            *a.counts.entry(t.status).or_default() += 1;
            let at = t.updated_at;
            if t.status == Status::InProgress && a.current.is_none_or(|(when, cur)| (at, &**id) > (when, cur))
            {
                a.current = Some((at, id));
            }
            if at > a.last_activity {
                a.last_activity = at;
            }
        }
        agents
    }

    pub fn render(&self) -> Files {
        let agents = self.tally();
        let problems = self.problems();
        Files {
            status_body: self.status_body(&agents, &problems),
            agent_status: self.agent_status(&agents),
            board: self.board(),
            handoffs: self.handoffs_md(),
            workflow_log: self.workflow_log(),
        }
    }

    fn status_body(&self, agents: &BTreeMap<&str, AgentTally>, problems: &[ProblemView]) -> String {
        let mut counts: BTreeMap<Status, u64> = COUNTED.iter().map(|s| (*s, 0)).collect();
        for t in &self.tasks {
            *counts.entry(t.status).or_default() += 1;
        }
        let counts: serde_json::Map<String, Value> = counts
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), json!(n)))
            .collect();
        let agents_json: serde_json::Map<String, Value> = agents
            .iter()
            .map(|(name, a)| {
                let mut m = serde_json::Map::new();
                for s in COUNTED {
                    m.insert(s.as_str().into(), json!(a.counts.get(&s).copied().unwrap_or(0)));
                }
                m.insert("current".into(), json!(a.current.map(|(_, id)| id)));
                (name.to_string(), Value::Object(m))
            })
            .collect();
        let mut out = String::with_capacity(256 + self.tasks.len() * 220);
        let _ = writeln!(out, "\"last_seq\":{},", self.last_seq);
        let _ = writeln!(out, "\"counts\":{},", Value::Object(counts));
        let _ = writeln!(out, "\"agents\":{},", Value::Object(agents_json));
        out.push_str("\"tasks\":[");
        let mut line = Vec::with_capacity(512);
        let (mut path, mut updated_at) = (String::new(), String::new());
        for (i, t) in self.tasks.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            line.clear();
            path.clear();
            t.write_path(&mut path);
            updated_at.clear();
            if let Some(when) = t.updated_at {
                clock::write_rfc3339_millis(&mut updated_at, when);
            }
            serde_json::to_writer(&mut line, &TaskJson::of(t, &path, &updated_at)).expect("tasks serialize");
            out.push_str(std::str::from_utf8(&line).expect("serde_json writes UTF-8"));
        }
        out.push_str(if self.tasks.is_empty() {
            "],\n\"problems\":["
        } else {
            "\n],\n\"problems\":["
        });
        for (i, p) in problems.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&serde_json::to_string(p).expect("problems serialize"));
        }
        out.push_str(if problems.is_empty() {
            "],\n\"runs\":["
        } else {
            "\n],\n\"runs\":["
        });
        for (i, (id, r)) in self.runs.iter().rev().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            let v = json!({"run_id": id, "tasks": r.tasks.len(), "events": r.events,
                           "started_at": r.started_at, "updated_at": r.updated_at});
            out.push_str(&v.to_string());
        }
        out.push_str(if self.runs.is_empty() { "]}\n" } else { "\n]}\n" });
        out
    }

    fn agent_status(&self, agents: &BTreeMap<&str, AgentTally>) -> String {
        let mut out = String::from(
            "# Agent status\n\nGenerated by the agentplane daemon from its state; do not edit.\n\n\
             | agent | state | assigned | in progress | blocked | done | error | current task | last activity |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
        );
        if agents.is_empty() {
            out.push_str("\nNo agents yet.\n");
            return out;
        }
        for (name, a) in agents {
            let n = |s: Status| a.counts.get(&s).copied().unwrap_or(0);
            let state = if n(Status::InProgress) > 0 {
                "working"
            } else if n(Status::Assigned) > 0 {
                "queued"
            } else if n(Status::Blocked) > 0 {
                "blocked"
            } else {
                "idle"
            };
            let _ = writeln!(
                out,
                "| {} | {state} | {} | {} | {} | {} | {} | {} | {} |",
                cell(name),
                n(Status::Assigned),
                n(Status::InProgress),
                n(Status::Blocked),
                n(Status::Done),
                n(Status::Error),
                a.current.map_or("—".to_string(), |(_, id)| cell(id)),
                a.last_activity.map_or("—".to_string(), clock::rfc3339_millis),
            );
        }
        out
    }

    fn board(&self) -> String {
        let mut by_status: BTreeMap<Status, Vec<(&str, &Card)>> = BTreeMap::new();
        for t in &self.tasks {
            by_status.entry(t.status).or_default().push((&t.id, t));
        }
        let mut out = String::from(
            "# Board\n\nTasks by status, most recently changed first. Generated; do not edit.\n",
        );
        let sections = [
            (Status::InProgress, "In progress"),
            (Status::Assigned, "Assigned"),
            (Status::Blocked, "Blocked"),
            (Status::Error, "Error"),
            (Status::Done, "Done"),
            (Status::New, "New"),
            (Status::Inbox, "Inbox"),
        ];
        for (status, heading) in sections {
            let mut tasks = by_status.remove(&status).unwrap_or_default();
            if tasks.is_empty() && matches!(status, Status::New | Status::Inbox) {
                continue;
            }
            let _ = write!(out, "\n## {heading} ({})\n\n", tasks.len());
            if tasks.is_empty() {
                out.push_str("—\n");
                continue;
            }
            let newest_first = |a: &(&str, &Card), b: &(&str, &Card)| {
                b.1.updated_at.cmp(&a.1.updated_at).then_with(|| a.0.cmp(b.0))
            };
            let total = tasks.len();
            if total > BOARD_ROWS {
                tasks.select_nth_unstable_by(BOARD_ROWS, newest_first);
                tasks.truncate(BOARD_ROWS);
            }
            tasks.sort_by(newest_first);
            out.push_str("| id | title | agent | priority | attempt | updated |\n| --- | --- | --- | --- | ---: | --- |\n");
            for (id, t) in &tasks {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    cell(id),
                    cell(&t.title),
                    cell(&t.agent),
                    t.priority.as_str(),
                    t.attempt,
                    time_text(t.updated_at)
                );
            }
            if total > BOARD_ROWS {
                let _ = writeln!(
                    out,
                    "\n… and {} more: `agentplane list --status {}`",
                    total - BOARD_ROWS,
                    status.as_str()
                );
            }
        }
        out
    }

    fn handoffs_md(&self) -> String {
        let mut out = String::from(
            "# Handoffs\n\nFollow-up tasks created from `result.next_agent`, newest first. Generated; do not edit.\n\n",
        );
        if self.handoffs.is_empty() {
            out.push_str("No handoffs yet.\n");
            return out;
        }
        out.push_str("| when | from task | from agent | follow-up | to agent | follow-up status |\n| --- | --- | --- | --- | --- | --- |\n");
        for h in self.handoffs.iter().rev() {
            let from_agent = self.tasks.get(h.from_task.as_str()).map_or("—", |t| &*t.agent);
            let status = self
                .tasks
                .get(h.to_task.as_str())
                .map_or("waiting in inbox", |t| t.status.as_str());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                h.ts,
                cell(&h.from_task),
                cell(from_agent),
                cell(&h.to_task),
                cell(&h.to_agent),
                status
            );
        }
        out
    }

    fn workflow_log(&self) -> String {
        let mut out = String::from(
            "# Workflow log\n\nThe most recent events, oldest first (all of them: `agentplane events`). Generated; do not edit.\n\n",
        );
        if self.recent.is_empty() {
            out.push_str("No events yet.\n");
            return out;
        }
        for e in &self.recent {
            let _ = write!(out, "- `{}` {} **{}**", e.seq, e.ts, e.event);
            if let Some(id) = &e.task_id {
                let _ = write!(out, " {}", cell(id));
            }
            if let Some(agent) = &e.agent {
                let _ = write!(out, " ({})", cell(agent));
            }
            match (&e.from, &e.to) {
                (Some(f), Some(t)) => {
                    let _ = write!(out, " {f} → {t}");
                }
                (None, Some(t)) => {
                    let _ = write!(out, " → {t}");
                }
                _ => {}
            }
            if let Some(note) = &e.note {
                let mut note = cell(note);
                if note.chars().count() > 160 {
                    note = note.chars().take(157).collect::<String>() + "…";
                }
                let _ = write!(out, " — {note}");
            }
            out.push('\n');
        }
        out
    }
}

/// The history the read models show that the daemon's state does not keep — recent events,
/// handoffs, run containers — read from the log's lines at start (events up to `upto`).
/// Lines are filtered on their text before they are decoded, so a large log is cheap.
pub fn history_from_log(
    path: &std::path::Path,
    upto: u64,
) -> Result<Update, crate::store::logread::LogError> {
    let mut recent: VecDeque<EventLine> = VecDeque::with_capacity(RECENT_EVENTS);
    let mut handoffs: VecDeque<HandoffView> = VecDeque::new();
    let mut runs = Vec::new();
    let mut last_seq = 0;
    let handoff_created = Finder::new(b"\"event\":\"handoff_created\"");
    let run_id = Finder::new(b"\"run_id\":");
    crate::store::logread::stream_raw(path, |seq, line| {
        if seq > upto {
            return false;
        }
        last_seq = seq;
        // Where `event`, `task_id` and `run_id` are written, near the start of a line.
        let head = &line[..line.len().min(400)];
        let handoff = handoff_created.find(head).is_some();
        let run = run_id.find(head).is_some();
        let recent_enough = seq + RECENT_EVENTS as u64 > upto;
        if (handoff || run || recent_enough)
            && let Some(ev) = std::str::from_utf8(line)
                .ok()
                .and_then(|l| crate::event::decode(l).ok())
        {
            if recent_enough {
                push_capped(&mut recent, EventLine::of(&ev), RECENT_EVENTS);
            }
            if let Some(h) = HandoffView::of(&ev) {
                push_capped(&mut handoffs, h, RECENT_HANDOFFS);
            }
            runs.extend(RunEvent::of(&ev));
        }
        true
    })?;
    Ok(Update {
        last_seq,
        events: recent.into(),
        handoffs: handoffs.into(),
        runs,
        ..Update::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::Names;

    fn update(card: &Arc<Card>, message: Option<&str>) -> Update {
        Update {
            upserts: vec![TaskView {
                card: Arc::clone(card),
                problem_message: message.map(str::to_string),
            }],
            ..Update::default()
        }
    }

    fn messages(model: &Model) -> Vec<(String, String)> {
        model
            .problems()
            .into_iter()
            .map(|p| (p.kind, p.message))
            .collect()
    }

    #[test]
    fn the_history_read_at_start_finds_every_handoff_and_run_event_and_the_recent_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.jsonl");
        let mut events = Vec::new();
        for i in 0..1000u64 {
            let mut ev = Event::task("task_assigned", &format!("t-{i}"));
            if i % 250 == 7 {
                ev.event = "handoff_created".into();
                ev.agent = Some("next".into());
            }
            if i % 300 == 11 {
                ev.run_id = Some(format!("run-{i}"));
            }
            events.push(ev);
        }
        let mut journal = crate::store::journal::Journal::open(&log, |_| {})
            .unwrap()
            .journal;
        journal.append(&mut events).unwrap();
        let upto = 990;
        let history = history_from_log(&log, upto).unwrap();
        assert_eq!(history.last_seq, upto);
        // Event i has seq i + 1.
        let handoffs: Vec<u64> = history.handoffs.iter().map(|h| h.seq).collect();
        assert_eq!(handoffs, [8, 258, 508, 758]);
        let runs: Vec<u64> = history.runs.iter().map(|r| r.seq).collect();
        assert_eq!(runs, [12, 312, 612, 912]);
        assert_eq!(history.events.len(), RECENT_EVENTS);
        assert_eq!(history.events.last().map(|e| e.seq), Some(upto));
    }

    #[test]
    fn a_problem_keeps_its_message_until_its_kind_changes_or_it_is_gone() {
        let mut names = Names::default();
        let path = "work/collaboration/done/a/t.yaml";
        let mut card = Card::new("t", names.get("a"), Status::Assigned, path, &mut names);
        card.set_problem(Some("status_folder_mismatch".into()));
        let mut model = Model::default();
        model.apply(update(&Arc::new(card.clone()), Some("said once")));
        let said = vec![("status_folder_mismatch".to_string(), "said once".to_string())];
        assert_eq!(messages(&model), said);

        // A later update of the same task that does not repeat the message keeps it.
        card.attempt = 1;
        model.apply(update(&Arc::new(card.clone()), None));
        assert_eq!(messages(&model), said);

        // Another kind of inconsistency: the old message does not describe it.
        card.set_problem(Some("id_mismatch".into()));
        model.apply(update(&Arc::new(card.clone()), None));
        assert_eq!(
            messages(&model),
            [("id_mismatch".to_string(), problem_text("id_mismatch"))]
        );

        card.set_problem(None);
        model.apply(update(&Arc::new(card), None));
        assert!(messages(&model).is_empty());
        assert!(model.problem_messages.is_empty());
    }

    #[test]
    fn the_model_keeps_the_engines_card_rather_than_a_copy() {
        let mut names = Names::default();
        let card = Arc::new(Card::new(
            "t",
            names.get("a"),
            Status::Done,
            "work/collaboration/done/a/t.yaml",
            &mut names,
        ));
        let mut model = Model::default();
        model.apply(update(&card, None));
        let kept = model.tasks.get("t").expect("the task is shown");
        assert!(Arc::ptr_eq(&kept.0, &card));
        assert!(
            model
                .render()
                .status_body
                .contains("\"path\":\"work/collaboration/done/a/t.yaml\"")
        );
    }
}
