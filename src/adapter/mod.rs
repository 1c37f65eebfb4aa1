//! Agent adapter: turns a task's argv template into a supervised child process
//! and reads back what the agent left on stdout.
//!
//! This module only runs one process and reports how it ended. It never
//! touches the event log or task files: the caller decides what an outcome
//! means and records it.
//!
//! - `mod.rs`: argv placeholder rendering.
//! - `process.rs`: spawning in a fresh process group and the signal ladder.
//! - `report.rs`: reading the stdout file back into a summary and metrics.
//! - `prompt.rs`: the prompt text handed to the agent.

mod process;
mod prompt;
mod report;

pub use process::{Ending, Ladder, Outcome, RunSpec, Running, StopReason, kill_orphan_group, spawn};
pub use prompt::render_prompt;
pub use report::{StdoutReport, metrics_from_json, read_stdout_report, summary_from_json};

/// Placeholder values substituted into the argv template.
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    pub task_id: String,
    pub task_file: String,
    pub agent: String,
    pub title: String,
    pub prompt: String,
    pub prompt_file: String,
    pub log_dir: String,
    pub attempt: String,
    pub root: String,
}

impl Placeholders {
    fn lookup(&self, name: &str) -> Option<&str> {
        let value = match name {
            "task_id" => &self.task_id,
            "task_file" => &self.task_file,
            "agent" => &self.agent,
            "title" => &self.title,
            "prompt" => &self.prompt,
            "prompt_file" => &self.prompt_file,
            "log_dir" => &self.log_dir,
            "attempt" => &self.attempt,
            "root" => &self.root,
            _ => return None,
        };
        Some(value)
    }
}

/// Substitute `{task_id}` `{task_file}` `{agent}` `{title}` `{prompt}`
/// `{prompt_file}` `{log_dir}` `{attempt}` `{root}` inside each element.
///
/// One template element gives exactly one argv element whatever the values
/// contain, because no shell ever sees the result. Substitution is a single
/// left-to-right pass over the template, so a value that itself looks like a
/// placeholder is copied verbatim rather than expanded again. Unknown `{xyz}`
/// stays literal.
pub fn render_argv(template: &[String], vars: &Placeholders) -> Vec<String> {
    template.iter().map(|t| render_one(t, vars)).collect()
}

fn render_one(template: &str, vars: &Placeholders) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let known = after
            .find('}')
            .and_then(|close| vars.lookup(&after[..close]).map(|v| (close, v)));
        match known {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                // Only the brace is consumed, so `{{task_id}` still expands
                // the inner placeholder.
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Placeholders {
        Placeholders {
            task_id: "T-1".into(),
            task_file: "/r/tasks/T-1.yaml".into(),
            agent: "claude".into(),
            title: "Fix \"it\"; rm -rf / $(whoami)\nnext line".into(),
            prompt: "say {task_id} and {prompt}".into(),
            prompt_file: "/r/logs/T-1/prompt.md".into(),
            log_dir: "/r/logs/with space".into(),
            attempt: "2".into(),
            root: "/r".into(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_element_per_template_element() {
        let template = strings(&["agent-cli", "-p", "{title}", "--log={log_dir}/out", "{root}"]);
        let argv = render_argv(&template, &vars());
        assert_eq!(
            argv,
            vec![
                "agent-cli".to_string(),
                "-p".to_string(),
                "Fix \"it\"; rm -rf / $(whoami)\nnext line".to_string(),
                "--log=/r/logs/with space/out".to_string(),
                "/r".to_string(),
            ]
        );
    }

    #[test]
    fn substituted_text_is_not_rescanned() {
        let argv = render_argv(&strings(&["{prompt}|{task_id}"]), &vars());
        assert_eq!(argv, vec!["say {task_id} and {prompt}|T-1".to_string()]);
    }

    #[test]
    fn every_placeholder_expands() {
        let template = strings(&["{task_id}{task_file}{agent}{prompt_file}{log_dir}{attempt}{root}"]);
        let argv = render_argv(&template, &vars());
        assert_eq!(
            argv,
            vec!["T-1/r/tasks/T-1.yamlclaude/r/logs/T-1/prompt.md/r/logs/with space2/r".to_string()]
        );
    }

    #[test]
    fn unknown_and_malformed_braces_stay_literal() {
        let template = strings(&["{xyz}", "{", "}{", "{{task_id}}", "{task_id", "a{}b", "é{agent}ü"]);
        let argv = render_argv(&template, &vars());
        assert_eq!(
            argv,
            strings(&["{xyz}", "{", "}{", "{T-1}", "{task_id", "a{}b", "éclaudeü"])
        );
    }

    #[test]
    fn empty_template_gives_empty_argv() {
        assert!(render_argv(&[], &vars()).is_empty());
    }
}
