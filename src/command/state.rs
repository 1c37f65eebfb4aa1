//! The daemon's in-memory picture of every task, derived from the event log. `State::apply`
//! is the one function that turns an event into state, used both live (after the event is
//! durable) and when replaying the log at start, so the two can never disagree.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::queue::{Listing, Queue};
use crate::card::{Card, Names, change_out_of_line};
use crate::clock;
use crate::event::Event;
use crate::lifecycle::fsops::Fingerprint;
use crate::task::{Priority, Status, Task};

/// A task as the daemon knows it: the shown part (`Card`, shared with the read models; an
/// `Entry` derefs to it) and what only scheduling needs.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Changed only by `State::apply`, copy-on-write.
    card: Arc<Card>,
    /// Sequence number of the event that first recorded the task: its age in the queue.
    pub order: u64,
    pub approval_required: bool,
    pub approved: bool,
    /// The daemon blocked this task because a dependency failed; it unblocks it again.
    pub blocked_by_dependency: bool,
    pub handoff_done: bool,
    /// Attempts before the current retry round: a `retry` command gives a fresh budget.
    pub round_start: u32,
    pub interruptions: u32,
    /// What the file looked like when the daemon last read or wrote it.
    pub fingerprint: Option<Fingerprint>,
    /// What a task has only while it runs, waits for a retry, is being cancelled, has
    /// overrides or a reported inconsistency; `None` for the great many that have none.
    rare: Option<Box<Rare>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    timeout_s: Option<u64>,
    max_attempts: Option<u32>,
    /// A child was started for the current attempt and has not been recorded as ended.
    running: Option<RunRecord>,
    cancel_requested: Option<String>,
    /// Not before this time is the task dispatched (retry backoff).
    retry_at: Option<SystemTime>,
    /// Checksum of the inconsistent file's content when it was reported.
    problem_crc: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub attempt: u32,
    pub pid: Option<u32>,
    pub pid_start: Option<u64>,
}

impl std::ops::Deref for Entry {
    type Target = Card;
    fn deref(&self) -> &Card {
        &self.card
    }
}

impl Entry {
    pub fn in_fridge(&self) -> bool {
        self.is_within("work/collaboration/fridge")
    }
    pub fn in_archive(&self) -> bool {
        self.is_within("work/collaboration/archive")
    }
    /// Attempts used in the current round.
    pub fn failures_this_round(&self) -> u32 {
        self.attempt.saturating_sub(self.round_start)
    }
    pub fn timeout_s(&self) -> Option<u64> {
        self.rare.as_ref().and_then(|r| r.timeout_s)
    }
    pub fn max_attempts(&self) -> Option<u32> {
        self.rare.as_ref().and_then(|r| r.max_attempts)
    }
    pub fn running(&self) -> Option<&RunRecord> {
        self.rare.as_ref().and_then(|r| r.running.as_ref())
    }
    pub fn cancel_requested(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.cancel_requested.as_deref())
    }
    pub fn retry_at(&self) -> Option<SystemTime> {
        self.rare.as_ref().and_then(|r| r.retry_at)
    }
    pub fn problem_crc(&self) -> Option<u32> {
        self.rare.as_ref().and_then(|r| r.problem_crc)
    }

    fn change_rare(&mut self, change: impl FnOnce(&mut Rare)) {
        change_out_of_line(&mut self.rare, change);
    }

    /// The shown part, to share with the read models.
    pub fn card(&self) -> &Arc<Card> {
        &self.card
    }

    /// The card to change: copied first if a read model still holds this version.
    fn card_mut(&mut self) -> &mut Card {
        Arc::make_mut(&mut self.card)
    }
}

/// The fields of a task file that the daemon schedules by, as carried in events.
pub fn task_meta(task: &Task) -> Value {
    // Built by hand, sized once: `json!` grows the map and goes through serde for each value,
    // and every task taken in makes one.
    let mut meta = Map::with_capacity(7);
    meta.insert("title".into(), Value::String(task.title_or_id()));
    meta.insert("agent".into(), Value::String(task.agent.clone()));
    meta.insert("priority".into(), Value::String(task.priority.as_str().into()));
    let depends_on = task.depends_on.iter().cloned().map(Value::String).collect();
    meta.insert("depends_on".into(), Value::Array(depends_on));
    meta.insert("approval_required".into(), Value::Bool(task.approval_required));
    meta.insert(
        "timeout_s".into(),
        task.timeout_s.map_or(Value::Null, Value::from),
    );
    meta.insert(
        "max_attempts".into(),
        task.max_attempts.map_or(Value::Null, Value::from),
    );
    Value::Object(meta)
}

/// Every task by id. A table of boxed entries found by their own id: 8 bytes a slot, where a
/// map would also hold a key (a large root has 100,000 tasks and the table twice the slots).
pub struct Tasks {
    table: HashTable<Box<Entry>>,
    hasher: RandomState,
}

impl Default for Tasks {
    fn default() -> Tasks {
        Tasks {
            table: HashTable::new(),
            hasher: RandomState::new(),
        }
    }
}

impl Tasks {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.table.find(self.hash(id), |e| *e.id == *id).map(|e| &**e)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        let hash = self.hash(id);
        self.table.find_mut(hash, |e| *e.id == *id).map(|e| &mut **e)
    }
    pub fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }
    /// Add a task whose id is not present yet.
    fn insert_new(&mut self, entry: Entry) {
        let hash = self.hash(&entry.id);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, Box::new(entry), |e| hasher.hash_one(&*e.id));
    }
    pub fn remove(&mut self, id: &str) -> Option<Box<Entry>> {
        let hash = self.hash(id);
        let found = self.table.find_entry(hash, |e| *e.id == *id).ok()?;
        Some(found.remove().0)
    }
    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter().map(|e| &**e)
    }
    pub fn len(&self) -> usize {
        self.table.len()
    }
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl std::ops::Index<&str> for Tasks {
    type Output = Entry;
    fn index(&self, id: &str) -> &Entry {
        self.get(id).unwrap_or_else(|| panic!("task `{id}` is not known"))
    }
}

#[derive(Default)]
pub struct State {
    pub tasks: Tasks,
    /// Task id by the root-relative path of its file, for the few files not named after their
    /// task (`<id>.yaml`): every other path names its task itself.
    odd_paths: HashMap<String, String>,
    /// The assigned tasks in dispatch order: the only ones dispatch has to look at.
    pub queue: Queue,
    /// Agent names and folders, shared by the cards.
    names: Names,
    pub last_seq: u64,
}

impl State {
    pub fn apply(&mut self, ev: &Event) {
        self.last_seq = ev.seq;
        let Some(id) = ev.task_id.as_deref() else { return };
        if ev.event == "task_rejected" || ev.event == "command_rejected" {
            return;
        }
        if ev.event == "task_deleted" {
            if let Some(e) = self.tasks.remove(id) {
                if !self.odd_paths.is_empty() {
                    self.odd_paths.remove(&e.path());
                }
                self.queue.relist(Listing::of(&e), Listing::default());
            }
            return;
        }
        if ev.event == "handoff_created" {
            if let Some(parent) = self.tasks.get_mut(id) {
                parent.handoff_done = true;
            }
            return;
        }
        let meta = ev.data.as_ref().and_then(|d| d.get("task"));
        let listed = self.tasks.get(id).map(Listing::of).unwrap_or_default();
        if !self.tasks.contains_key(id) {
            // Only events that describe a task file can introduce a task.
            let (Some(path), Some(meta)) = (ev.path.as_ref(), meta) else {
                return;
            };
            let status = ev
                .to
                .as_deref()
                .and_then(Status::parse)
                .unwrap_or(Status::Assigned);
            if file_stem(path) != Some(id) {
                self.odd_paths.insert(path.clone(), id.to_string());
            }
            let agent = self.names.get(meta["agent"].as_str().unwrap_or_default());
            let card = Card::new(id, agent, status, path, &mut self.names);
            let entry = Entry {
                card: Arc::new(card),
                order: ev.seq,
                approval_required: false,
                approved: false,
                blocked_by_dependency: false,
                handoff_done: false,
                round_start: 0,
                interruptions: 0,
                fingerprint: None,
                rare: None,
            };
            self.tasks.insert_new(entry);
        }
        let entry = self.tasks.get_mut(id).expect("present or just inserted");
        if ev.op.is_some() {
            // The operation makes a new version of the file; its fingerprint is taken when
            // it is carried out. Replayed from a snapshot, the file is read again.
            entry.fingerprint = None;
        }
        let names = &mut self.names;
        let card = entry.card_mut();
        card.updated_at = clock::parse_utc(&ev.ts);
        if let Some(meta) = meta {
            apply_meta(card, meta, names);
        }
        let problem = ev.data.as_ref().and_then(|d| d.get("problem"));
        if let Some(problem) = problem {
            card.set_problem(problem.as_str().map(str::to_string));
        } else if ev.to.is_some() || ev.op.is_some() {
            card.set_problem(None);
        }
        if let Some(to) = ev.to.as_deref().and_then(Status::parse) {
            card.status = to;
        }
        if let Some(path) = &ev.path
            && matches!(ev.op.as_deref(), Some("move" | "create"))
            && !card.is_at(path)
        {
            if !self.odd_paths.is_empty() {
                self.odd_paths.remove(&card.path());
            }
            if file_stem(path) != Some(id) {
                self.odd_paths.insert(path.clone(), id.to_string());
            }
            card.set_path(path, names);
        }
        if let Some(agent) = ev.agent.as_ref().filter(|_| ev.event == "task_reassigned") {
            card.agent = names.get(agent);
        }
        if ev.event == "task_started" {
            card.attempt = ev.attempt.unwrap_or(card.attempt + 1);
        }
        if let Some(meta) = meta {
            entry.approval_required = meta["approval_required"]
                .as_bool()
                .unwrap_or(entry.approval_required);
        }
        let attempt = entry.attempt;
        entry.change_rare(|r| {
            if let Some(meta) = meta {
                r.timeout_s = meta["timeout_s"].as_u64();
                r.max_attempts = meta["max_attempts"].as_u64().map(|n| n as u32);
            }
            if problem.is_some() {
                r.problem_crc = ev
                    .data
                    .as_ref()
                    .and_then(|d| d.get("crc"))
                    .and_then(Value::as_u64)
                    .map(|c| c as u32);
            } else if ev.to.is_some() || ev.op.is_some() {
                r.problem_crc = None;
            }
            match ev.event.as_str() {
                "task_started" => {
                    r.running = Some(RunRecord {
                        attempt,
                        pid: None,
                        pid_start: None,
                    });
                    r.retry_at = None;
                }
                "execution_start" => {
                    if let Some(run) = r.running.as_mut() {
                        run.pid = ev.pid;
                        run.pid_start = ev.pid_start;
                    }
                }
                "task_interrupted" => r.running = None,
                "task_retry_scheduled" => {
                    r.running = None;
                    r.retry_at = ev.data_str("retry_at").and_then(clock::parse_utc);
                }
                "execution_complete" => r.running = None,
                "task_completed" | "task_failed" | "task_timed_out" | "task_cancelled" => {
                    r.running = None;
                    r.cancel_requested = None;
                }
                "cancel_requested" => r.cancel_requested = Some(ev.error.clone().unwrap_or_default()),
                "task_retried" => r.retry_at = None,
                _ => {}
            }
        });
        match ev.event.as_str() {
            "task_interrupted" => entry.interruptions += 1,
            "task_blocked" => entry.blocked_by_dependency = ev.data_str("dependency").is_some(),
            "task_unblocked" => entry.blocked_by_dependency = false,
            "task_approved" => entry.approved = true,
            "task_retried" => {
                entry.round_start = entry.attempt;
                entry.interruptions = 0;
            }
            "task_edited" if ev.to.is_some() => entry.blocked_by_dependency = false,
            _ => {}
        }
        self.queue.relist(listed, Listing::of(entry));
    }

    /// Take the fingerprints `earlier` (an older state of the same log) had for files that
    /// are still the files of the same tasks: a changed file never matches its fingerprint,
    /// so the scan still reads whatever changed since.
    pub fn adopt_fingerprints(&mut self, earlier: &State) {
        for old in earlier.tasks.values() {
            if let Some(fingerprint) = old.fingerprint
                && let Some(id) = self.at_path(&old.path()).map(|e| Arc::clone(&e.id))
                && let Some(entry) = self.tasks.get_mut(&id)
            {
                entry.fingerprint = Some(fingerprint);
            }
        }
    }

    /// The task whose file is at this root-relative path.
    pub fn at_path(&self, path: &str) -> Option<&Entry> {
        let id = match self.odd_paths.get(path) {
            Some(id) => id.as_str(),
            None => file_stem(path)?,
        };
        self.tasks.get(id).filter(|e| e.is_at(path))
    }

    /// Ids of tasks that wait for `id` to finish.
    pub fn dependents(&self, id: &str) -> Vec<String> {
        self.tasks
            .values()
            .filter(|e| e.depends_on().iter().any(|d| d == id))
            .map(|e| e.id.to_string())
            .collect()
    }
}

/// A task as a snapshot of the state keeps it: every field of its entry, by value, so that
/// a start can take the state as of the snapshot's event and replay only the events after it.
/// Times are nanoseconds since the epoch; empty fields are left out of the text. Saving
/// borrows from the entry; reading back owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTask<'a> {
    id: Cow<'a, str>,
    title: Cow<'a, str>,
    agent: Cow<'a, str>,
    path: Cow<'a, str>,
    status: Cow<'a, str>,
    priority: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "is_zero")]
    attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<u64>,
    #[serde(default, skip_serializing_if = "<[String]>::is_empty")]
    depends_on: Cow<'a, [String]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    problem: Option<Cow<'a, str>>,
    order: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    approval_required: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    approved: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    blocked_by_dependency: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    handoff_done: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    round_start: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    interruptions: u32,
    /// Inode, size and mtime (ns) of the file as last read or written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<(u64, u64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    /// Attempt, pid and pid start time of a child recorded as running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    running: Option<(u32, Option<u32>, Option<u64>)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancel_requested: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    problem_crc: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A time as nanoseconds since the epoch; `Err` for one a snapshot cannot hold exactly.
fn to_ns(time: Option<SystemTime>) -> Result<Option<u64>, String> {
    time.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
            .ok_or_else(|| format!("{t:?} is outside what a snapshot holds"))
    })
    .transpose()
}

fn from_ns(ns: Option<u64>) -> Option<SystemTime> {
    ns.map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
}

impl State {
    /// Every task in its saved form, in no particular order.
    pub fn save(&self) -> impl Iterator<Item = Result<SavedTask<'_>, String>> {
        self.tasks.values().map(Entry::save)
    }

    /// The state as saved when `last_seq` was the last event applied, from its tasks as they
    /// are read (one at a time: a large root's saved form is never all in memory).
    pub fn restore<'a>(
        saved: impl IntoIterator<Item = Result<SavedTask<'a>, String>>,
        last_seq: u64,
    ) -> Result<State, String> {
        let mut state = State {
            last_seq,
            ..State::default()
        };
        for task in saved {
            let entry = Entry::restore(task?, &mut state.names)?;
            let (id, path) = (Arc::clone(&entry.id), entry.path());
            if state.tasks.contains_key(&id) {
                return Err(format!("task `{id}` is saved twice"));
            }
            if file_stem(&path) != Some(&*id) {
                state.odd_paths.insert(path, id.to_string());
            }
            state.queue.relist(Listing::default(), Listing::of(&entry));
            state.tasks.insert_new(entry);
        }
        Ok(state)
    }
}

impl Entry {
    fn save(&self) -> Result<SavedTask<'_>, String> {
        // Taken apart field by field, so that a field added to the entry does not compile
        // until the snapshot keeps it too.
        let Entry {
            card,
            order,
            approval_required,
            approved,
            blocked_by_dependency,
            handoff_done,
            round_start,
            interruptions,
            fingerprint,
            rare,
        } = self;
        // A static, not a local: the saved task borrows from it.
        static NONE: Rare = Rare {
            timeout_s: None,
            max_attempts: None,
            running: None,
            cancel_requested: None,
            retry_at: None,
            problem_crc: None,
        };
        let Rare {
            timeout_s,
            max_attempts,
            running,
            cancel_requested,
            retry_at,
            problem_crc,
        } = rare.as_deref().unwrap_or(&NONE);
        Ok(SavedTask {
            id: Cow::Borrowed(&card.id),
            title: Cow::Borrowed(&card.title),
            agent: Cow::Borrowed(&card.agent),
            path: Cow::Owned(card.path()),
            status: Cow::Borrowed(card.status.as_str()),
            priority: Cow::Borrowed(card.priority.as_str()),
            attempt: card.attempt,
            updated_at: to_ns(card.updated_at)?,
            depends_on: Cow::Borrowed(card.depends_on()),
            problem: card.problem().map(Cow::Borrowed),
            order: *order,
            approval_required: *approval_required,
            approved: *approved,
            blocked_by_dependency: *blocked_by_dependency,
            handoff_done: *handoff_done,
            round_start: *round_start,
            interruptions: *interruptions,
            fingerprint: fingerprint.map(|f| (f.ino, f.size, f.mtime_ns)),
            timeout_s: *timeout_s,
            max_attempts: *max_attempts,
            running: running.as_ref().map(|r| (r.attempt, r.pid, r.pid_start)),
            cancel_requested: cancel_requested.as_deref().map(Cow::Borrowed),
            retry_at: to_ns(*retry_at)?,
            problem_crc: *problem_crc,
        })
    }

    fn restore(t: SavedTask, names: &mut Names) -> Result<Entry, String> {
        let status =
            Status::parse(&t.status).ok_or_else(|| format!("task `{}`: no status `{}`", t.id, t.status))?;
        let priority = Priority::parse(&t.priority)
            .ok_or_else(|| format!("task `{}`: no priority `{}`", t.id, t.priority))?;
        let mut card = Card::new(&t.id, names.get(&t.agent), status, &t.path, names);
        card.title = t.title.into_owned().into();
        card.priority = priority;
        card.attempt = t.attempt;
        card.updated_at = from_ns(t.updated_at);
        card.set_depends_on(t.depends_on.into_owned());
        card.set_problem(t.problem.map(Cow::into_owned));
        let mut entry = Entry {
            card: Arc::new(card),
            order: t.order,
            approval_required: t.approval_required,
            approved: t.approved,
            blocked_by_dependency: t.blocked_by_dependency,
            handoff_done: t.handoff_done,
            round_start: t.round_start,
            interruptions: t.interruptions,
            fingerprint: t
                .fingerprint
                .map(|(ino, size, mtime_ns)| Fingerprint { ino, size, mtime_ns }),
            rare: None,
        };
        entry.change_rare(|r| {
            *r = Rare {
                timeout_s: t.timeout_s,
                max_attempts: t.max_attempts,
                running: t.running.map(|(attempt, pid, pid_start)| RunRecord {
                    attempt,
                    pid,
                    pid_start,
                }),
                cancel_requested: t.cancel_requested.map(Cow::into_owned),
                retry_at: from_ns(t.retry_at),
                problem_crc: t.problem_crc,
            }
        });
        Ok(entry)
    }
}

/// `t1` for `…/t1.yaml` or `…/t1.yml`.
fn file_stem(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml"))
}

fn apply_meta(card: &mut Card, meta: &Value, names: &mut Names) {
    if let Some(t) = meta["title"].as_str()
        && *card.title != *t
    {
        card.title = t.into();
    }
    if let Some(a) = meta["agent"].as_str()
        && *card.agent != *a
    {
        card.agent = names.get(a);
    }
    if let Some(p) = meta["priority"].as_str().and_then(Priority::parse) {
        card.priority = p;
    }
    if let Some(deps) = meta["depends_on"].as_array() {
        card.set_depends_on(
            deps.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::queue::Step;
    use serde_json::json;

    #[test]
    fn task_meta_holds_the_scheduling_fields_in_order() {
        let task =
            |yaml: &str| Task::from_doc(crate::command::intake::parse_mapping(yaml).ok().unwrap()).unwrap();
        let full = task(
            "agent: bot\ntitle: Do it\npriority: high\ndepends_on: [a, b]\n\
             human_approval_required: true\ntimeout_s: 60\nmax_attempts: 3\n",
        );
        let meta = json!({"title": "Do it", "agent": "bot", "priority": "high",
            "depends_on": ["a", "b"], "approval_required": true, "timeout_s": 60, "max_attempts": 3});
        assert_eq!(
            serde_json::to_string(&task_meta(&full)).unwrap(),
            meta.to_string()
        );
        let bare = task("id: t1\nagent: bot\n");
        let meta = json!({"title": "t1", "agent": "bot", "priority": "normal",
            "depends_on": [], "approval_required": false, "timeout_s": null, "max_attempts": null});
        assert_eq!(
            serde_json::to_string(&task_meta(&bare)).unwrap(),
            meta.to_string()
        );
    }

    /// The `data` of an event that describes a task file: its metadata.
    fn task_data(meta: Value) -> Option<Map<String, Value>> {
        Some(Map::from_iter([("task".into(), meta)]))
    }

    /// A large root holds 100,000 of each (docs/benchmarks.md, idle RSS): growing them is a
    /// decision, not an accident.
    #[test]
    fn an_entry_and_its_card_stay_small() {
        assert!(size_of::<Entry>() <= 72, "Entry: {} bytes", size_of::<Entry>());
        assert!(size_of::<Card>() <= 96, "Card: {} bytes", size_of::<Card>());
    }

    fn discovered(seq: u64, id: &str, path: &str) -> Event {
        let mut ev = Event::task("task_discovered", id);
        ev.seq = seq;
        ev.path = Some(path.into());
        ev.to = Some("assigned".into());
        ev.with_data("task", json!({"agent": "a", "title": "T"}))
    }

    #[test]
    fn files_are_found_by_path_whether_or_not_named_after_their_task() {
        let mut state = State::default();
        state.apply(&discovered(1, "t1", "work/collaboration/assigned/a/t1.yaml"));
        state.apply(&discovered(2, "t2", "work/collaboration/assigned/a/other.yml"));
        let at = |s: &State, p: &str| s.at_path(p).map(|e| e.id.to_string());
        assert_eq!(
            at(&state, "work/collaboration/assigned/a/t1.yaml").as_deref(),
            Some("t1")
        );
        assert_eq!(
            at(&state, "work/collaboration/assigned/a/other.yml").as_deref(),
            Some("t2")
        );
        // A second file named after a known task is not that task.
        assert_eq!(at(&state, "work/collaboration/done/a/t1.yaml"), None);
        assert_eq!(at(&state, "work/collaboration/assigned/a/t2.yaml"), None);

        let mut moved = Event::task("task_completed", "t2");
        moved.seq = 3;
        moved.op = Some("move".into());
        moved.to = Some("done".into());
        moved.path = Some("work/collaboration/done/a/t2.yaml".into());
        state.apply(&moved);
        assert_eq!(at(&state, "work/collaboration/assigned/a/other.yml"), None);
        assert_eq!(
            at(&state, "work/collaboration/done/a/t2.yaml").as_deref(),
            Some("t2")
        );
        assert!(state.odd_paths.is_empty(), "{:?}", state.odd_paths);

        let mut deleted = Event::task("task_deleted", "t1");
        deleted.seq = 4;
        state.apply(&deleted);
        assert_eq!(at(&state, "work/collaboration/assigned/a/t1.yaml"), None);
    }

    /// Every kind of event that changes an entry, for the snapshot's round trip.
    fn history() -> Vec<Event> {
        let dir = "work/collaboration";
        let mut events = Vec::new();
        let mut add = |name: &str, id: &str, change: &dyn Fn(&mut Event)| {
            let mut ev = Event::task(name, id);
            ev.seq = events.len() as u64 + 1;
            ev.ts = format!("2026-12-02T10:00:{:02}.{:03}Z", ev.seq % 60, ev.seq);
            change(&mut ev);
            events.push(ev);
        };
        let meta = json!({"agent": "a", "title": "First", "priority": "high", "depends_on": ["t2"],
            "approval_required": true, "timeout_s": 30, "max_attempts": 3});
        add("task_assigned", "t1", &|e| {
            e.op = Some("move".into());
            e.to = Some("assigned".into());
            e.path = Some(format!("{dir}/assigned/a/t1.yaml"));
            e.data = task_data(meta.clone());
        });
        add("task_discovered", "t2", &|e| {
            e.to = Some("assigned".into());
            e.path = Some(format!("{dir}/assigned/a/other.yml"));
            e.data = task_data(json!({"agent": "a", "title": "Second"}));
        });
        // A new priority while assigned: the task's place in the dispatch queue changes.
        add("task_edited", "t2", &|e| {
            e.data = task_data(json!({"agent": "a", "title": "Second", "priority": "critical"}));
        });
        add("task_discovered", "t3", &|e| {
            e.path = Some(format!("{dir}/done/a/t3.yaml"));
            e.data = Some(Map::from_iter([
                ("task".into(), json!({"agent": "b", "title": "Third"})),
                ("problem".into(), json!("status says assigned, folder says done")),
                ("crc".into(), json!(1234)),
            ]));
        });
        add("task_approved", "t1", &|_| {});
        add("task_started", "t1", &|e| {
            e.attempt = Some(1);
            e.op = Some("move".into());
            e.to = Some("in_progress".into());
            e.path = Some(format!("{dir}/in_progress/a/t1.yaml"));
        });
        add("execution_start", "t1", &|e| {
            e.pid = Some(42);
            e.pid_start = Some(99);
        });
        add("cancel_requested", "t2", &|e| e.error = Some("not needed".into()));
        add("task_blocked", "t2", &|e| {
            e.to = Some("blocked".into());
            e.data = Some(Map::from_iter([("dependency".into(), json!("t9"))]));
        });
        add("task_interrupted", "t1", &|_| {});
        add("task_retry_scheduled", "t1", &|e| {
            e.op = Some("move".into());
            e.to = Some("assigned".into());
            e.path = Some(format!("{dir}/assigned/a/t1.yaml"));
            e.data = Some(Map::from_iter([(
                "retry_at".into(),
                json!("2026-12-02T11:00:00.250Z"),
            )]));
        });
        add("handoff_created", "t1", &|_| {});
        add("task_reassigned", "t2", &|e| e.agent = Some("b".into()));
        add("task_discovered", "t4", &|e| {
            e.to = Some("assigned".into());
            e.path = Some(format!("{dir}/assigned/b/t4.yaml"));
            e.data = task_data(json!({"agent": "b", "title": "Fourth"}));
        });
        add("task_retried", "t1", &|_| {});
        // Reassigned while queued: the task changes agent queue.
        add("task_reassigned", "t4", &|e| e.agent = Some("a".into()));
        add("task_deleted", "t4", &|_| {});
        add("task_edited", "t3", &|e| e.to = Some("done".into()));
        add("task_unblocked", "t2", &|_| {});
        events
    }

    fn replay(events: &[Event]) -> State {
        let mut state = State::default();
        events.iter().for_each(|ev| state.apply(ev));
        state
    }

    /// Everything a state holds, as sorted text: each task as the snapshot writes it, the
    /// odd paths, the assigned ids, the last seq.
    fn saved(state: &State) -> Vec<String> {
        let mut all: Vec<String> = state
            .save()
            .map(|t| serde_json::to_string(&t.unwrap()).unwrap())
            .collect();
        all.extend(state.odd_paths.iter().map(|(p, id)| format!("odd {p} {id}")));
        let mut queued = Vec::new();
        state.queue.walk(|agent, id| {
            queued.push(format!("queued {} {agent} {id}", queued.len()));
            Step::Next
        });
        all.extend(queued);
        all.extend(
            state
                .queue
                .with_dependencies()
                .map(|id| format!("with dependencies {id}")),
        );
        all.extend(state.queue.retrying().map(|id| format!("retrying {id}")));
        all.push(format!("last_seq {}", state.last_seq));
        all.sort();
        all
    }

    /// A snapshot taken after any event, read back and followed by the rest of the log, is
    /// the state the whole log gives.
    #[test]
    fn a_snapshot_and_the_events_after_it_give_the_state_of_the_whole_log() {
        let events = history();
        let whole = saved(&replay(&events));
        assert_eq!(
            whole.iter().filter(|t| t.starts_with('{')).count(),
            3,
            "{whole:?}"
        );
        for k in 0..=events.len() {
            let mut before = replay(&events[..k]);
            if let Some(t1) = before.tasks.get_mut("t1") {
                t1.fingerprint = Some(Fingerprint {
                    ino: 7,
                    size: 8,
                    mtime_ns: -9,
                });
            }
            let text: Vec<String> = before
                .save()
                .map(|t| serde_json::to_string(&t.unwrap()).unwrap())
                .collect();
            let read_back: Vec<SavedTask> = text.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
            let mut restored = State::restore(read_back.into_iter().map(Ok), before.last_seq).unwrap();
            assert_eq!(saved(&restored), saved(&before), "after {k} events");
            events[k..].iter().for_each(|ev| restored.apply(ev));
            if let Some(t1) = restored.tasks.get_mut("t1") {
                // Only an event that moved the file since the snapshot drops its fingerprint.
                let moved = events[k..]
                    .iter()
                    .any(|ev| ev.task_id.as_deref() == Some("t1") && ev.op.is_some());
                assert_eq!(t1.fingerprint.is_some(), k > 0 && !moved, "after {k} events");
                t1.fingerprint = None;
            }
            assert_eq!(saved(&restored), whole, "snapshot after {k} events");
        }
    }

    #[test]
    fn fingerprints_are_adopted_only_for_files_still_where_they_were() {
        let events = history();
        let mut earlier = replay(&events[..4]);
        for id in ["t1", "t2", "t3"] {
            earlier.tasks.get_mut(id).unwrap().fingerprint = Some(Fingerprint {
                ino: 1,
                size: 2,
                mtime_ns: 3,
            });
        }
        let mut now = replay(&events);
        now.adopt_fingerprints(&earlier);
        // t1 moved to in_progress and back to assigned: the same path again, so adopted (its
        // file may have changed meanwhile, which the scan sees by the fingerprint itself).
        assert!(now.tasks.get("t1").unwrap().fingerprint.is_some());
        assert!(now.tasks.get("t2").unwrap().fingerprint.is_some());
        assert!(now.tasks.get("t3").unwrap().fingerprint.is_some());
        let mut moved = Event::task("task_completed", "t2");
        moved.seq = 100;
        moved.op = Some("move".into());
        moved.to = Some("done".into());
        moved.path = Some("work/collaboration/done/a/t2.yaml".into());
        let mut after_move = replay(&events);
        after_move.apply(&moved);
        after_move.adopt_fingerprints(&earlier);
        assert!(
            after_move.tasks.get("t2").unwrap().fingerprint.is_none(),
            "t2's file is elsewhere now"
        );
        assert!(after_move.tasks.get("t3").unwrap().fingerprint.is_some());
    }
}
