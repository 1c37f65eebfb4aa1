//! The task domain: statuses and their legal transitions, priorities, the id and agent rules,
//! and validation of a parsed task document. Pure: no I/O, no paths, no events.

pub mod yaml;

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    New,
    Inbox,
    Assigned,
    InProgress,
    Blocked,
    Done,
    Error,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::New,
        Status::Inbox,
        Status::Assigned,
        Status::InProgress,
        Status::Blocked,
        Status::Done,
        Status::Error,
    ];

    pub fn parse(text: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Inbox => "inbox",
            Status::Assigned => "assigned",
            Status::InProgress => "in_progress",
            Status::Blocked => "blocked",
            Status::Done => "done",
            Status::Error => "error",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Done | Status::Error)
    }

    /// The transitions anyone may make by editing a file or by command (SPEC section 2).
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (New | Inbox, Assigned)
                | (Assigned, InProgress | Blocked | Error)
                | (InProgress, Done | Blocked | Error)
                | (Blocked, Assigned | InProgress | Error)
                | (Error, Assigned)
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    Critical,
    High,
    Medium,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Medium,
        Priority::Normal,
        Priority::Low,
    ];

    /// Case-insensitive: `LOW` is accepted and written back as `low`.
    pub fn parse(text: &str) -> Option<Priority> {
        let lower = text.to_ascii_lowercase();
        Self::ALL.into_iter().find(|p| p.as_str() == lower)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: ids become file names, so nothing else may pass.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// `^[a-z0-9][a-z0-9._-]{0,63}$`: agent names become folder names.
pub fn valid_agent(agent: &str) -> bool {
    let b = agent.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

/// The ASCII letter(s) an accented Latin letter is usually written as in a file name;
/// other non-ASCII characters are dropped.
fn fold(c: char) -> &'static str {
    const TABLE: [(&str, &str); 13] = [
        ("àáâãäåā", "a"),
        ("çćč", "c"),
        ("èéêëēę", "e"),
        ("ìíîïī", "i"),
        ("ñń", "n"),
        ("òóôõöøō", "o"),
        ("ùúûüū", "u"),
        ("ýÿ", "y"),
        ("šś", "s"),
        ("žźż", "z"),
        ("ł", "l"),
        ("ß", "ss"),
        ("æ", "ae"),
    ];
    let lower = c.to_lowercase().next().unwrap_or(c);
    TABLE
        .iter()
        .find(|(from, _)| from.contains(lower))
        .map_or("", |(_, to)| to)
}

/// Lower-case words of a title joined by `-`, at most 40 characters: the tail of generated ids.
pub fn slug(title: &str) -> String {
    let folded: String = title
        .chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else if c.is_alphabetic() {
                fold(c).to_string()
            } else {
                " ".to_string()
            }
        })
        .collect();
    let mut out = String::new();
    for word in folded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if out.len() + word.len() + 1 > 40 {
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    if out.is_empty() { "task".into() } else { out }
}

/// What is wrong with a document, and what its author should do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub reason: String,
    pub what_to_do: String,
}

fn invalid(reason: impl Into<String>, what_to_do: impl Into<String>) -> Invalid {
    Invalid {
        reason: reason.into(),
        what_to_do: what_to_do.into(),
    }
}

/// The fields the daemon acts on, read from a task document. Every other key stays in the file.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: Option<String>,
    pub agent: String,
    pub title: Option<String>,
    /// `None` when the file has no `status` key.
    pub status: Option<Status>,
    pub priority: Priority,
    /// True when the file spells the priority differently from its canonical form (e.g. `LOW`).
    pub priority_needs_rewrite: bool,
    pub depends_on: Vec<String>,
    pub approval_required: bool,
    pub timeout_s: Option<u64>,
    pub max_attempts: Option<u32>,
    pub doc: Map<String, Value>,
}

/// A text field; numbers and booleans count as their text (`id: 12345`, `title: 42`).
fn string_field(doc: &Map<String, Value>, key: &str) -> Result<Option<String>, Invalid> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(other) => Err(invalid(
            format!("`{key}` must be a string, found {}", kind_name(other)),
            format!("write `{key}:` as plain text"),
        )),
    }
}

fn positive_int(doc: &Map<String, Value>, key: &str) -> Result<Option<u64>, Invalid> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > 0) => Ok(n.as_u64()),
        Some(other) => Err(invalid(
            format!("`{key}` must be a positive whole number, found {other}"),
            format!("set `{key}` to a number such as 3, or remove it"),
        )),
    }
}

pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
        || matches!(v, Some(Value::String(s)) if matches!(s.to_ascii_lowercase().as_str(), "true" | "yes"))
}

impl Task {
    /// Read the fields of a parsed document. Validates shapes and the id/agent character sets;
    /// whether a status is acceptable where the file lies is the caller's question.
    pub fn from_doc(doc: Map<String, Value>) -> Result<Task, Invalid> {
        let id = match string_field(&doc, "id")? {
            Some(id) => Some(id),
            None => string_field(&doc, "task_id")?,
        };
        if let Some(id) = &id
            && !valid_id(id)
        {
            return Err(invalid(
                format!(
                    "id `{id}` is not allowed: ids are 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
                ),
                "rename the id (or remove it to let agentplane generate one)",
            ));
        }
        let agent = match string_field(&doc, "agent")? {
            Some(a) => a,
            None => {
                return Err(invalid(
                    "the task has no `agent`",
                    "add `agent: <name>` naming the agent that should do the task",
                ));
            }
        };
        if !valid_agent(&agent) {
            return Err(invalid(
                format!(
                    "agent `{agent}` is not allowed: agent names are 1-64 characters of a-z 0-9 . _ - starting with a letter or digit"
                ),
                "use a lower-case agent name such as `python-pedro`",
            ));
        }
        let title = string_field(&doc, "title")?;
        let status = match doc.get("status") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Status::parse(s).ok_or_else(|| {
                invalid(
                    format!("unknown status `{s}`"),
                    "use one of new, inbox, assigned, in_progress, blocked, done, error",
                )
            })?),
            Some(other) => {
                return Err(invalid(
                    format!("`status` must be text, found {}", kind_name(other)),
                    "write e.g. `status: new`",
                ));
            }
        };
        let (priority, priority_needs_rewrite) = match string_field(&doc, "priority")? {
            None => (Priority::Normal, false),
            Some(p) => {
                let parsed = Priority::parse(&p).ok_or_else(|| {
                    invalid(
                        format!("unknown priority `{p}`"),
                        "use one of critical, high, medium, normal, low",
                    )
                })?;
                (parsed, parsed.as_str() != p)
            }
        };
        let depends_on = match doc.get("depends_on") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) if valid_id(s) => Ok(s.clone()),
                    other => Err(invalid(
                        format!("`depends_on` entry {other} is not a task id"),
                        "list the ids of the tasks this one waits for",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid(
                    format!(
                        "`depends_on` must be a list of task ids, found {}",
                        kind_name(other)
                    ),
                    "write `depends_on: [id-1, id-2]`",
                ));
            }
        };
        if let Some(bad) = depends_on.iter().find(|d| !valid_id(d)) {
            return Err(invalid(
                format!("`depends_on` entry `{bad}` is not a task id"),
                "list the ids of the tasks this one waits for",
            ));
        }
        let approval_required = truthy(doc.get("human_approval_required"))
            || truthy(
                doc.get("context")
                    .and_then(Value::as_object)
                    .and_then(|c| c.get("human_approval_required")),
            );
        let timeout_s = positive_int(&doc, "timeout_s")?;
        let max_attempts = positive_int(&doc, "max_attempts")?.map(|n| n.min(1000) as u32);
        Ok(Task {
            id,
            agent,
            title,
            status,
            priority,
            priority_needs_rewrite,
            depends_on,
            approval_required,
            timeout_s,
            max_attempts,
            doc,
        })
    }

    pub fn title_or_id(&self) -> String {
        self.title.clone().or_else(|| self.id.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn transitions_follow_the_contract() {
        use Status::*;
        assert!(New.can_become(Assigned));
        assert!(Assigned.can_become(InProgress));
        assert!(InProgress.can_become(Done));
        assert!(Error.can_become(Assigned));
        assert!(!Done.can_become(InProgress));
        assert!(!Done.can_become(Assigned));
        assert!(!Assigned.can_become(Done));
        assert!(!New.can_become(Done));
    }

    #[test]
    fn ids_and_agents_are_checked() {
        assert!(valid_id("2026-02-13T1002-m61-query-service-facade"));
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id(&"a".repeat(129)));
        assert!(valid_agent("python-pedro"));
        assert!(!valid_agent("Python"));
        assert!(!valid_agent("a/b"));
    }

    #[test]
    fn legacy_and_loose_fields_are_read() {
        let t = Task::from_doc(doc(json!({"task_id": "x1", "agent": "a", "title": "T",
            "priority": "LOW", "context": {"human_approval_required": true}})))
        .unwrap();
        assert_eq!(t.id.as_deref(), Some("x1"));
        assert_eq!(t.priority, Priority::Low);
        assert!(t.priority_needs_rewrite);
        assert!(t.approval_required);
    }

    #[test]
    fn bad_documents_say_what_to_do() {
        let e = Task::from_doc(doc(json!({"title": "T"}))).unwrap_err();
        assert!(e.reason.contains("agent"), "{e:?}");
        let e = Task::from_doc(doc(json!({"agent": "a", "status": "pending"}))).unwrap_err();
        assert!(e.reason.contains("pending"));
        let e = Task::from_doc(doc(json!({"agent": "a", "id": "../../etc/passwd"}))).unwrap_err();
        assert!(e.reason.contains("not allowed"));
    }

    #[test]
    fn slugs_are_short_and_safe() {
        assert_eq!(
            slug("M6.1 Task 2: Query Service Facade"),
            "m6-1-task-2-query-service-facade"
        );
        assert_eq!(slug("!!!"), "task");
        assert_eq!(slug("Ünïcödé — 日本語 task"), "unicode-task");
        assert_eq!(slug("Straße café"), "strasse-cafe");
        assert!(slug(&"word ".repeat(50)).len() <= 40);
    }
}
