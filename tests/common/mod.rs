//! Shared harness of the integration tests: a temp root, the real `agentplane` binary,
//! fake agents as small shell scripts, and helpers to wait for and inspect the folders.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_agentplane");

pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    /// A fresh root made by `agentplane init`, with `config` as agentplane.yaml.
    pub fn new(config: &str) -> Root {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(BIN)
            .arg("init")
            .arg(dir.path())
            .output()
            .expect("run init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.path().join("agentplane.yaml"), config).unwrap();
        Root { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn collab(&self, rel: &str) -> PathBuf {
        self.p(&format!("work/collaboration/{rel}"))
    }

    /// Write a fake agent script under `agents/NAME.sh` and return its path.
    pub fn agent_script(&self, name: &str, body: &str) -> String {
        let path = self.p(&format!("agents/{name}.sh"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Drop a task as a finished writer does: written elsewhere, renamed in. Its modification
    /// time is set a minute back, so a daemon started after the drop finds it settled (there
    /// was no rename for it to see): files dropped together are all taken in its first round,
    /// however long writing them took, and never split by `settle_ms` on a loaded machine.
    pub fn drop_task(&self, name: &str, content: &str) {
        let tmp = self.collab(&format!("inbox/.{name}.partial"));
        std::fs::write(&tmp, content).unwrap();
        date_back(&tmp);
        std::fs::rename(&tmp, self.collab(&format!("inbox/{name}"))).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.path())
            .args(args)
            .output()
            .expect("run agentplane")
    }

    /// `daemon --once`, which must finish within a minute; `stderr` holds what it logged.
    pub fn run_once(&self) -> Output {
        let log = self.p("daemon.log");
        let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut child = self.spawn_daemon(&["--once"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon --once did not finish: {}", self.log_since(offset));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            status,
            stdout: Vec::new(),
            stderr: self.log_since(offset).into_bytes(),
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let text = std::fs::read(self.p("daemon.log")).unwrap_or_default();
        String::from_utf8_lossy(&text[offset as usize..]).into_owned()
    }

    pub fn run_once_ok(&self) -> String {
        let out = self.run_once();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "daemon --once failed ({:?}): {stderr}",
            out.status
        );
        stderr
    }

    /// A daemon in the background, logging (at debug level) to `daemon.log` in the root: a
    /// file, not a pipe, so a chatty daemon can never block on a full pipe.
    pub fn spawn_daemon(&self, extra: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.p("daemon.log"))
            .unwrap();
        Command::new(BIN)
            .arg("--root")
            .arg(self.path())
            .arg("daemon")
            .args(extra)
            .env("AGENTPLANE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon")
    }

    /// Every event in the log, parsed.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.p("work/.agentplane/events.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("event line is JSON"))
            .collect()
    }

    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events().into_iter().filter(|e| e["event"] == name).collect()
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.collab(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.collab(rel).exists()
    }

    /// All files under work/collaboration, relative to it, dot-files excluded.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.collab(""), &self.collab(""), &mut out);
        out.sort();
        out
    }

    /// A parsed task file (as JSON, via the binary's own parser semantics being YAML ⊇ JSON
    /// is not needed: tests read the few keys they check with `yaml_value`).
    pub fn field(&self, rel: &str, key: &str) -> Option<String> {
        yaml_field(&self.read(rel), key)
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// The scalar value of a top-level `key:` line (quotes stripped). Enough for lifecycle keys.
pub fn yaml_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        Some(rest.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// Poll until `cond` holds; panic with `what` after `secs`.
/// Edit a file by hand the way a person would: read it, change one piece, write it back.
pub fn replace_in_file(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(from),
        "{} does not contain {from:?}",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Set a file's modification time a minute back: a daemon started now finds it settled.
pub fn date_back(path: &Path) {
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
}

pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sigterm(child: &Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Is any process of this process group still alive?
pub fn group_alive(pgid: i32) -> bool {
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// SIGTERM a daemon and wait for it to exit.
pub fn stop_daemon(mut child: Child) -> std::process::ExitStatus {
    sigterm(&child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
