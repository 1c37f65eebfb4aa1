//! `agentplane demo`: a scratch root with an example agent script and a few tasks — one that
//! succeeds and hands off to a human reviewer, one that fails once and succeeds on retry, one
//! that fails for good, and one broken file — then the daemon run until all settle, then a
//! tour of where everything went.

use std::path::{Path, PathBuf};

use crate::{daemon, init};

const AGENT_SCRIPT: &str = r#"#!/bin/sh
# Example agent: a real one would be `claude -p "{prompt}"`, `codex exec`, … (see agentplane.yaml).
task_id="$1"; log_dir="$2"
echo "working on $task_id (attempt $AGENTPLANE_ATTEMPT)"
head -n 1 "$log_dir/prompt.md"
sleep 0.3
case "$task_id" in
  *impossible*) echo "cannot do this: the requirements contradict each other" >&2; exit 3 ;;
  *flaky*) if [ "$AGENTPLANE_ATTEMPT" = 1 ]; then echo "network hiccup" >&2; exit 1; fi ;;
  *changelog*) cat > "$log_dir/result.yaml" <<EOF
summary: Wrote CHANGELOG.md for release 1.2
artefacts: [CHANGELOG.md]
next_agent: reviewer
next_task_title: Review the 1.2 changelog
EOF
  ;;
esac
echo "finished $task_id"
"#;

const CONFIG: &str = r#"# Demo configuration: `coder` is run by the daemon, `reviewer` is worked by hand.
max_concurrent: 2
agents:
  coder:
    command: ["sh", "{root}/agents/coder.sh", "{task_id}", "{log_dir}"]
    max_attempts: 2
    timeout_s: 60
  reviewer: {}
"#;

const TASKS: [(&str, &str); 4] = [
    (
        "changelog.yaml",
        "# A task as a person writes it: comments survive every transition.\nid: demo-changelog\nagent: coder\ntitle: Write the changelog for release 1.2\npriority: high\nartefacts:\n  - CHANGELOG.md\n",
    ),
    (
        "flaky.yaml",
        "id: demo-flaky-tests\nagent: coder\ntitle: Fix the flaky integration tests\ndescription: |\n  The suite fails one run in ten.\n",
    ),
    (
        "impossible.yaml",
        "id: demo-impossible\nagent: coder\ntitle: Make the build both faster and slower\nartefacts: []\n",
    ),
    ("broken.yaml", "agent: coder\ntitle: [unclosed\n"),
];

pub fn run(dir: Option<PathBuf>) -> Result<(), String> {
    let root =
        dir.unwrap_or_else(|| std::env::temp_dir().join(format!("agentplane-demo-{}", std::process::id())));
    if root.join("work/collaboration").exists() {
        return Err(format!(
            "{} already holds a root; pick an empty directory",
            root.display()
        ));
    }
    init::init(&root)?;
    let write = |rel: &str, text: &str| -> Result<(), String> {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("agentplane.yaml", CONFIG)?;
    write("agents/coder.sh", AGENT_SCRIPT)?;
    for (name, text) in TASKS {
        write(&format!("work/collaboration/inbox/{name}"), text)?;
    }
    println!(
        "demo root: {}\nrunning `agentplane daemon --once` on it …\n",
        root.display()
    );
    match daemon::run(root.clone(), true) {
        daemon::Exit::Ok => {}
        daemon::Exit::Environment(e) | daemon::Exit::Failed(e) => return Err(e),
    }
    println!("\nwhere everything went:");
    let collab = root.join("work/collaboration");
    let mut files = Vec::new();
    walk(&collab, &mut files);
    files.sort();
    for f in files {
        println!("  {}", f.strip_prefix(&root).unwrap_or(&f).display());
    }
    println!(
        "\nlook at:\n  {r}/work/collaboration/done/coder/demo-changelog.yaml   (comment kept, status/result added)\n  \
         {r}/work/collaboration/assigned/reviewer/                  (the hand-off, waiting for a human)\n  \
         {r}/work/collaboration/rejected/broken.yaml.reason.yaml    (what is wrong, and what to do)\n  \
         {r}/work/logs/demo-flaky-tests/                             (attempt 1 failed, attempt 2 passed)\n  \
         {r}/work/.agentplane/events.jsonl                          (every event, checksummed)\n  \
         {r}/work/status/BOARD.md                                    (read models, regenerated)\n\n\
         and ask it:\n  \
         agentplane --root {r} status\n  \
         agentplane --root {r} show demo-flaky-tests\n  \
         agentplane --root {r} check",
        r = root.display()
    );
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            out.push(p);
        }
    }
}
