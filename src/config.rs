//! `agentplane.yaml` → resolved configuration with defaults. Unknown keys and wrong types are
//! errors that name the file and the key, so a typo never silently changes behaviour.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::task::{self, yaml};

#[derive(Debug, Clone, PartialEq)]
pub enum GitCommit {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub command: Option<Vec<String>>,
    pub timeout_s: Option<u64>,
    pub max_concurrent: Option<usize>,
    pub max_attempts: u32,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub max_concurrent: usize,
    pub settle: Duration,
    pub max_task_bytes: u64,
    pub archive_after_days: u64,
    pub stall_after_s: u64,
    /// The slow timer: a full rescan of the folders, archiving and stall checks.
    pub rescan: Duration,
    pub interrupt: Duration,
    pub terminate: Duration,
    pub git_commit: GitCommit,
    pub git_author: String,
    /// `None`: any valid agent name is accepted. `Some`: only these.
    pub agents: Option<BTreeMap<String, AgentConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_concurrent: 4,
            settle: Duration::from_millis(50),
            max_task_bytes: 1_048_576,
            archive_after_days: 30,
            stall_after_s: 7200,
            rescan: Duration::from_secs(300),
            interrupt: Duration::from_secs(10),
            terminate: Duration::from_secs(5),
            git_commit: GitCommit::Auto,
            git_author: "agentplane <agentplane@localhost>".into(),
            agents: None,
        }
    }
}

impl Config {
    pub fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.as_ref()?.get(name)
    }

    /// Read the config of a root; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = match std::fs::read(path) {
            Ok(bytes) => {
                String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let doc = match yaml::parse_document(&text, &yaml::Budget::default()) {
            Ok(Value::Object(map)) => map,
            Err(yaml::YamlError::Empty) => return Ok(Config::default()),
            Ok(_) => return Err(format!("{}: the configuration must be a mapping", path.display())),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Self::from_doc(&doc).map_err(|e| format!("{}: {e}; see docs/configuration.md", path.display()))
    }

    pub fn from_doc(doc: &Map<String, Value>) -> Result<Config, String> {
        let mut c = Config::default();
        for (key, value) in doc {
            match key.as_str() {
                "max_concurrent" => c.max_concurrent = uint(key, value)?.max(1) as usize,
                "settle_ms" => c.settle = Duration::from_millis(uint(key, value)?),
                "max_task_bytes" => c.max_task_bytes = uint(key, value)?.max(1),
                "archive_after_days" => c.archive_after_days = uint(key, value)?,
                "stall_after_s" => c.stall_after_s = uint(key, value)?,
                "rescan_s" => c.rescan = Duration::from_secs(uint(key, value)?.max(1)),
                "cancel" => {
                    for (k, v) in mapping(key, value)? {
                        match k.as_str() {
                            "interrupt_s" => c.interrupt = secs(k, v)?,
                            "terminate_s" => c.terminate = secs(k, v)?,
                            _ => return Err(unknown(&format!("cancel.{k}"))),
                        }
                    }
                }
                "git" => {
                    for (k, v) in mapping(key, value)? {
                        match (k.as_str(), v) {
                            ("commit", Value::Bool(true)) => c.git_commit = GitCommit::Always,
                            ("commit", Value::Bool(false)) => c.git_commit = GitCommit::Never,
                            ("commit", Value::String(s)) if s == "auto" => c.git_commit = GitCommit::Auto,
                            ("commit", _) => return Err("`git.commit` must be auto, true or false".into()),
                            ("author", Value::String(s)) => c.git_author = s.clone(),
                            ("author", _) => {
                                return Err("`git.author` must be text like `Name <mail>`".into());
                            }
                            _ => return Err(unknown(&format!("git.{k}"))),
                        }
                    }
                }
                "agents" => {
                    let mut agents = BTreeMap::new();
                    if !value.is_null() {
                        for (name, entry) in mapping(key, value)? {
                            if !task::valid_agent(name) {
                                return Err(format!("agent name `{name}` is not allowed (a-z 0-9 . _ -)"));
                            }
                            agents.insert(name.clone(), agent_config(name, entry)?);
                        }
                    }
                    c.agents = Some(agents);
                }
                _ => return Err(unknown(key)),
            }
        }
        Ok(c)
    }
}

fn unknown(key: &str) -> String {
    format!("unknown key `{key}`")
}

fn uint(key: &str, v: &Value) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("`{key}` must be a whole number ≥ 0, found {v}"))
}

fn secs(key: &str, v: &Value) -> Result<Duration, String> {
    match v.as_f64() {
        Some(s) if s >= 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("`{key}` must be a number of seconds, found {v}")),
    }
}

fn mapping<'a>(key: &str, v: &'a Value) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("`{key}` must be a mapping"))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn agent_config(name: &str, v: &Value) -> Result<AgentConfig, String> {
    let mut a = AgentConfig {
        command: None,
        timeout_s: None,
        max_concurrent: None,
        max_attempts: 1,
        env: Vec::new(),
        cwd: None,
    };
    if v.is_null() {
        return Ok(a);
    }
    for (k, val) in mapping(&format!("agents.{name}"), v)? {
        let key = format!("agents.{name}.{k}");
        match k.as_str() {
            "command" => {
                let argv: Option<Vec<String>> = val
                    .as_array()
                    .map(|items| items.iter().map(scalar_text).collect())
                    .unwrap_or(None);
                match argv {
                    Some(argv) if !argv.is_empty() => a.command = Some(argv),
                    _ => {
                        return Err(format!(
                            "`{key}` must be a non-empty list of arguments, e.g. [\"claude\", \"-p\", \"{{prompt}}\"]"
                        ));
                    }
                }
            }
            "timeout_s" => a.timeout_s = Some(uint(&key, val)?).filter(|&t| t > 0),
            "max_concurrent" => a.max_concurrent = Some(uint(&key, val)?.max(1) as usize),
            "max_attempts" => a.max_attempts = uint(&key, val)?.clamp(1, 1000) as u32,
            "cwd" => {
                a.cwd = Some(PathBuf::from(
                    val.as_str().ok_or_else(|| format!("`{key}` must be a path"))?,
                ))
            }
            "env" => {
                for (ek, ev) in mapping(&key, val)? {
                    let text = scalar_text(ev).ok_or_else(|| format!("`{key}.{ek}` must be text"))?;
                    a.env.push((ek.clone(), text));
                }
            }
            _ => return Err(unknown(&key)),
        }
    }
    Ok(a)
}

/// The commented configuration `init` writes.
pub const TEMPLATE: &str = r#"# agentplane configuration. Every key is optional; the values shown are the defaults.
# Reference: docs/configuration.md

# max_concurrent: 4          # children running at once, all agents together
# settle_ms: 50              # a plain (non-atomic) write counts as finished after this much quiet
# max_task_bytes: 1048576    # larger inbox files are rejected unread
# archive_after_days: 30     # done/error tasks older than this move to archive/YYYY-MM/
# stall_after_s: 7200        # an in_progress task without activity this long is reported
# rescan_s: 300              # full rescan of the folders (a safety net under file watching)
# cancel: { interrupt_s: 10, terminate_s: 5 }   # SIGINT, wait, SIGTERM, wait, SIGKILL
# git: { commit: auto, author: "agentplane <agentplane@localhost>" }

# When `agents` is present, only these agents are accepted. An agent with a `command` has its
# tasks run by the daemon; one without waits for a human or an agent session to edit the file.
# agents:
#   python-pedro:
#     command: ["claude", "-p", "{prompt}", "--output-format", "json"]
#     timeout_s: 1800
#     max_concurrent: 1
#     max_attempts: 2
#     env: { CLAUDE_MODEL: sonnet }
#   reviewer: {}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_example() {
        let doc = json!({"max_concurrent": 2, "settle_ms": 10, "cancel": {"interrupt_s": 1, "terminate_s": 0.5},
            "git": {"commit": false}, "agents": {"bot": {"command": ["echo", "{task_id}"], "max_attempts": 3,
            "env": {"X": 1}}, "reviewer": {}}});
        let c = Config::from_doc(doc.as_object().unwrap()).unwrap();
        assert_eq!(c.max_concurrent, 2);
        assert_eq!(c.terminate, Duration::from_millis(500));
        assert_eq!(c.git_commit, GitCommit::Never);
        let bot = c.agent("bot").unwrap();
        assert_eq!(bot.max_attempts, 3);
        assert_eq!(bot.env, vec![("X".to_string(), "1".to_string())]);
        assert!(c.agent("reviewer").unwrap().command.is_none());
    }

    #[test]
    fn typos_are_errors() {
        let doc = json!({"max_concurent": 2});
        assert!(
            Config::from_doc(doc.as_object().unwrap())
                .unwrap_err()
                .contains("max_concurent")
        );
        let doc = json!({"agents": {"bot": {"comand": ["x"]}}});
        assert!(
            Config::from_doc(doc.as_object().unwrap())
                .unwrap_err()
                .contains("agents.bot.comand")
        );
    }
}
