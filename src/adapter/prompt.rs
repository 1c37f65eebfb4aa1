//! The prompt text handed to an agent (written to prompt.md), rendered from a
//! task given as a JSON object.
//!
//! This file only turns values into Markdown. It may not touch the event log
//! or task files; the caller reads the task and writes the prompt.

use serde_json::{Map, Value};

/// Sections after the description, each fed by any of its keys. Several
/// spellings are accepted because task files are written by hand.
const SECTIONS: [(&str, &[&str]); 3] = [
    ("Context", &["context", "notes"]),
    ("Acceptance criteria", &["acceptance_criteria", "acceptance"]),
    ("Artefacts", &["artefacts", "artifacts"]),
];

/// Render a task as Markdown: the title as heading, then the description,
/// context notes (`context`, `notes`), acceptance criteria
/// (`acceptance_criteria`, `acceptance`) and artefacts (`artefacts`,
/// `artifacts`). Any key may be missing or hold any JSON value: strings are
/// kept as written, lists become bullets and maps become `key: value` lines,
/// nested as deep as they go.
pub fn render_prompt(task: &Map<String, Value>) -> String {
    let mut out = format!("# {}\n", heading(task));

    if let Some(description) = task.get("description") {
        let lines = render_lines(description, 0);
        if !lines.is_empty() {
            out.push('\n');
            push_lines(&mut out, &lines);
        }
    }

    for (title, keys) in SECTIONS {
        let lines: Vec<String> = keys
            .iter()
            .filter_map(|key| task.get(*key))
            .flat_map(|value| render_lines(value, 0))
            .collect();
        if !lines.is_empty() {
            out.push_str(&format!("\n## {title}\n\n"));
            push_lines(&mut out, &lines);
        }
    }
    out
}

fn heading(task: &Map<String, Value>) -> String {
    let title = task.get("title").map(inline).unwrap_or_default();
    if !title.is_empty() {
        return title;
    }
    match task.get("id").map(inline).filter(|id| !id.is_empty()) {
        Some(id) => format!("Task {id}"),
        None => "Task".to_string(),
    }
}

/// A value squeezed onto one line, for the heading.
fn inline(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn push_lines(out: &mut String, lines: &[String]) {
    for line in lines {
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Lines for a value, each prefixed by `indent` spaces.
fn render_lines(value: &Value, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    match value {
        Value::Null => Vec::new(),
        Value::Bool(_) | Value::Number(_) => vec![format!("{pad}{value}")],
        Value::String(s) => {
            let s = s.trim_matches('\n').trim_end();
            if s.trim().is_empty() {
                Vec::new()
            } else {
                s.lines().map(|line| format!("{pad}{line}")).collect()
            }
        }
        Value::Array(items) => items
            .iter()
            .flat_map(|item| bullet(render_lines(item, indent + 2), indent))
            .collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| entry(key, value, indent))
            .collect(),
    }
}

/// Turn lines rendered two columns deeper into a list item by putting the
/// dash where the first line's indentation was.
fn bullet(mut lines: Vec<String>, indent: usize) -> Vec<String> {
    if let Some(first) = lines.first_mut() {
        let pad = " ".repeat(indent);
        let body = first[indent + 2..].to_string();
        *first = format!("{pad}- {body}");
    }
    lines
}

fn entry(key: &str, value: &Value, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let nested = render_lines(value, indent + 2);
    let fits_on_one_line = nested.len() == 1 && !matches!(value, Value::Array(_) | Value::Object(_));
    match nested.first() {
        None => Vec::new(),
        Some(only) if fits_on_one_line => vec![format!("{pad}{key}: {}", only.trim_start())],
        Some(_) => std::iter::once(format!("{pad}{key}:")).chain(nested).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn full_task_reads_well() {
        let prompt = render_prompt(&task(json!({
            "id": "T-7",
            "title": "Add retries",
            "description": "Retry failed uploads.\n\nUse exponential backoff.\n",
            "context": ["See src/upload.rs", "Keep the API stable"],
            "acceptance_criteria": ["Tests pass", "Three retries at most"],
            "artefacts": [{"path": "src/upload.rs", "note": "main change"}, "CHANGELOG.md"],
        })));
        assert_eq!(
            prompt,
            "# Add retries\n\
             \n\
             Retry failed uploads.\n\
             \n\
             Use exponential backoff.\n\
             \n\
             ## Context\n\
             \n\
             - See src/upload.rs\n\
             - Keep the API stable\n\
             \n\
             ## Acceptance criteria\n\
             \n\
             - Tests pass\n\
             - Three retries at most\n\
             \n\
             ## Artefacts\n\
             \n\
             - path: src/upload.rs\n  note: main change\n\
             - CHANGELOG.md\n"
        );
    }

    #[test]
    fn empty_task_still_has_a_heading() {
        assert_eq!(render_prompt(&Map::new()), "# Task\n");
        assert_eq!(render_prompt(&task(json!({"id": "T-1"}))), "# Task T-1\n");
        assert_eq!(
            render_prompt(&task(json!({"id": 9, "title": "  "}))),
            "# Task 9\n"
        );
    }

    #[test]
    fn american_spelling_and_notes_are_accepted() {
        let prompt = render_prompt(&task(json!({
            "title": "T",
            "notes": "plain note",
            "acceptance": "it works",
            "artifacts": ["out.txt"],
        })));
        assert_eq!(
            prompt,
            "# T\n\n## Context\n\nplain note\n\n## Acceptance criteria\n\nit works\n\n## Artefacts\n\n- out.txt\n"
        );
    }

    #[test]
    fn odd_types_render_without_panicking() {
        let prompt = render_prompt(&task(json!({
            "title": ["multi", "part\ntitle"],
            "description": {"goal": "ship", "steps": ["a", ["b", "c"], {"d": null}], "n": 3},
            "context": null,
            "acceptance_criteria": [true, 1.5, null, "", {"k": {"deep": "v"}}, "two\nlines"],
            "artefacts": {},
        })));
        assert_eq!(
            prompt,
            "# [\"multi\",\"part\\ntitle\"]\n\
             \n\
             goal: ship\n\
             steps:\n  - a\n  - - b\n    - c\n\
             n: 3\n\
             \n\
             ## Acceptance criteria\n\
             \n\
             - true\n\
             - 1.5\n\
             - k:\n    deep: v\n\
             - two\n  lines\n"
        );
    }

    #[test]
    fn multi_line_title_is_flattened() {
        let prompt = render_prompt(&task(json!({"title": "Fix\n  the   bug"})));
        assert_eq!(prompt, "# Fix the bug\n");
    }
}
