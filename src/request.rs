//! The CLI's only way to change state: writing a task or command file into `inbox/`
//! atomically (a dot-named temp file, fsync, rename in). The daemon does the rest.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::clock;
use crate::layout::Layout;
use crate::lifecycle::{edit, fsops};
use crate::task::{self, yaml};

/// Write `content` into the inbox under `name` via a temp file and rename; refuses to
/// overwrite an existing inbox file.
pub fn drop_into_inbox(layout: &Layout, name: &str, content: &[u8]) -> Result<PathBuf, String> {
    let inbox = layout.inbox();
    if !inbox.is_dir() {
        return Err(format!(
            "{} does not exist; run `agentplane init` first",
            inbox.display()
        ));
    }
    let dest = inbox.join(name);
    if dest.exists() {
        return Err(format!(
            "{} already exists; wait for the daemon to take it",
            dest.display()
        ));
    }
    let tmp = fsops::write_temp(&dest, content).map_err(|e| e.to_string())?;
    // link+unlink instead of rename: never replaces a file that appeared meanwhile.
    std::fs::hard_link(&tmp, &dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", dest.display())
    })?;
    let _ = std::fs::remove_file(&tmp);
    fsops::fsync_dir(&inbox).map_err(|e| e.to_string())?;
    Ok(dest)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{:x}", std::process::id(), nanos % 0xffff_ffff)
}

pub fn render(doc: &Map<String, Value>) -> String {
    doc.iter().map(|(k, v)| edit::render_entry(k, v)).collect()
}

/// Write a command file (`cancel`, `retry`, …) for `task`.
pub fn command(
    layout: &Layout,
    command: &str,
    task: &str,
    extra: &[(&str, String)],
) -> Result<PathBuf, String> {
    if !task::valid_id(task) {
        return Err(format!("`{task}` is not a valid task id"));
    }
    let mut doc = Map::new();
    doc.insert("command".into(), Value::String(command.into()));
    doc.insert("task".into(), Value::String(task.into()));
    for (k, v) in extra {
        doc.insert((*k).into(), Value::String(v.clone()));
    }
    if let Ok(user) = std::env::var("USER") {
        doc.entry("requested_by").or_insert(Value::String(user));
    }
    doc.insert("requested_at".into(), Value::String(clock::now_seconds()));
    let name = format!("cmd-{command}-{task}-{}.yaml", unique_suffix());
    drop_into_inbox(layout, &name, render(&doc).as_bytes())
}

/// Copy a task file into the inbox after checking it parses; returns the written path.
pub fn submit_file(layout: &Layout, file: &Path) -> Result<(PathBuf, Option<String>), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let doc = match yaml::parse_document(&text, &yaml::Budget::default()) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) => {
            return Err(format!(
                "{}: the task must be a mapping of keys to values",
                file.display()
            ));
        }
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let t = task::Task::from_doc(doc)
        .map_err(|i| format!("{}: {}; {}", file.display(), i.reason, i.what_to_do))?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "task".into());
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("{stem}-{}.yaml", unique_suffix());
    let path = drop_into_inbox(layout, &name, text.as_bytes())?;
    Ok((path, t.id))
}

/// Is there a task file named `<id>.yaml` in the inbox or any lifecycle folder?
fn id_in_use(layout: &Layout, id: &str) -> bool {
    let name = format!("{id}.yaml");
    let collab = layout.collab();
    if collab.join("inbox").join(&name).exists() || collab.join("fridge").join(&name).exists() {
        return true;
    }
    ["assigned", "done", "error", "archive"].iter().any(|top| {
        std::fs::read_dir(collab.join(top))
            .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.path().join(&name).exists()))
            .unwrap_or(false)
    })
}

/// Build and write a new task from flags; the id is chosen here so it can be printed.
pub fn submit_new(
    layout: &Layout,
    title: &str,
    agent: &str,
    priority: Option<&str>,
    depends_on: &[String],
) -> Result<String, String> {
    if !task::valid_agent(agent) {
        return Err(format!(
            "agent `{agent}` is not allowed (a-z 0-9 . _ -, starting with a letter or digit)"
        ));
    }
    if let Some(p) = priority
        && task::Priority::parse(p).is_none()
    {
        return Err(format!(
            "unknown priority `{p}`; use critical, high, medium, normal or low"
        ));
    }
    let mut base = format!(
        "{}-{agent}-{}",
        clock::id_prefix(SystemTime::now()),
        task::slug(title)
    );
    base.truncate(120);
    let id = std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|id| !id_in_use(layout, id))
        .expect("a free suffix exists");
    let mut doc = Map::new();
    doc.insert("id".into(), Value::String(id.clone()));
    doc.insert("agent".into(), Value::String(agent.into()));
    doc.insert("title".into(), Value::String(title.into()));
    doc.insert("status".into(), Value::String("new".into()));
    if let Some(p) = priority {
        doc.insert("priority".into(), Value::String(p.to_ascii_lowercase()));
    }
    if !depends_on.is_empty() {
        doc.insert(
            "depends_on".into(),
            Value::Array(depends_on.iter().cloned().map(Value::String).collect()),
        );
    }
    doc.insert("created_at".into(), Value::String(clock::now_seconds()));
    if let Ok(user) = std::env::var("USER") {
        doc.insert("created_by".into(), Value::String(user));
    }
    drop_into_inbox(layout, &format!("{id}.yaml"), render(&doc).as_bytes())?;
    Ok(id)
}
