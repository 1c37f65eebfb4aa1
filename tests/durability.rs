//! Durability: one daemon per root, a checksummed log whose torn last line is repaired and
//! whose earlier corruption stops the daemon, and kill -9 at random moments losing nothing.

mod common;
use common::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[test]
fn a_second_daemon_exits_2_naming_the_first() {
    let root = Root::new("");
    let first = root.spawn_daemon(&[]);
    wait_for(30, "first daemon ready", || {
        root.events_named("daemon_started").len() == 1
    });
    let out = root.cmd(&["daemon", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already running") && stderr.contains(&first.id().to_string()),
        "{stderr}"
    );
    assert!(stop_daemon(first).status.success());
}

#[test]
fn torn_last_line_is_repaired_and_earlier_corruption_stops_the_daemon() {
    let root = Root::new("");
    root.drop_task("a.yaml", "id: a\nagent: bot\ntitle: A\n");
    root.run_once_ok();
    let log = root.p("work/.agentplane/events.jsonl");
    let good = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, format!("{good}{{\"v\":1,\"seq\":999,\"ev")).unwrap();
    let stderr = root.run_once_ok();
    assert!(stderr.contains("torn"), "{stderr}");
    let repaired = std::fs::read_to_string(&log).unwrap();
    assert!(repaired.starts_with(&good) && !repaired.contains("\"seq\":999"));
    assert!(
        root.events()
            .iter()
            .any(|e| e["data"]["truncated_torn_bytes"].as_u64().is_some())
    );
    // Flip a byte in the second line: the daemon refuses to start and names the line.
    let mut lines: Vec<String> = repaired.lines().map(str::to_string).collect();
    lines[1] = lines[1].replacen("\"v\":1", "\"v\":2", 1);
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = root.run_once();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("events.jsonl:2"), "{stderr}");
}

/// After any crash and restart: every task file exists exactly once, in the folder its
/// status names, and every task has events.
fn check_invariants(root: &Root, submitted: &HashSet<String>) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for f in root.files() {
        if !(f.starts_with("assigned/") || f.starts_with("done/") || f.starts_with("error/")) {
            continue;
        }
        let id = f
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".yaml")
            .to_string();
        assert!(
            seen.insert(id.clone(), f.clone()).is_none(),
            "{id} exists twice: {:?}",
            root.files()
        );
        let status = root.field(&f, "status").unwrap();
        let folder = f.split('/').next().unwrap();
        let want = match status.as_str() {
            "assigned" | "in_progress" | "blocked" => "assigned",
            other => other,
        };
        assert_eq!(folder, want, "{f} has status {status}");
    }
    let events = root.events();
    let logged: HashSet<String> = events
        .iter()
        .filter_map(|e| e["task_id"].as_str().map(str::to_string))
        .collect();
    for id in seen.keys() {
        assert!(logged.contains(id), "{id} has no event");
    }
    for id in submitted {
        let in_inbox = root.files().iter().any(|f| f == &format!("inbox/{id}.yaml"));
        assert!(
            seen.contains_key(id) || in_inbox,
            "{id} was lost: {:?}",
            root.files()
        );
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let kills: usize = std::env::var("AGENTPLANE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let root = Root::new("");
    let script = root.agent_script(
        "bot",
        "sleep 0.0$(( $$ % 5 )); case $1 in *7) exit 1;; esac; echo ok",
    );
    std::fs::write(
        root.p("agentplane.yaml"),
        format!("settle_ms: 10\nmax_concurrent: 3\nagents:\n  bot:\n    command: [\"sh\", \"{script}\", \"{{task_id}}\"]\n    max_attempts: 2\n  human: {{}}\n"),
    )
    .unwrap();
    let mut submitted = HashSet::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut next: u64 = 0;
    for _ in 0..kills {
        for _ in 0..(1 + rand(6)) {
            let id = format!("task-{next}");
            let agent = if next.is_multiple_of(4) { "human" } else { "bot" };
            root.drop_task(
                &format!("{id}.yaml"),
                &format!("id: {id}\nagent: {agent}\ntitle: Task {next}\n"),
            );
            submitted.insert(id);
            next += 1;
        }
        let mut daemon = root.spawn_daemon(&[]);
        std::thread::sleep(Duration::from_millis(5 + rand(120)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
    }
    // A last clean run finishes whatever was pending.
    root.run_once_ok();
    check_invariants(&root, &submitted);
    for id in &submitted {
        let n: u64 = id.trim_start_matches("task-").parse().unwrap();
        if !n.is_multiple_of(4) {
            let done_or_error =
                root.exists(&format!("done/bot/{id}.yaml")) || root.exists(&format!("error/bot/{id}.yaml"));
            assert!(done_or_error, "{id} finished: {:?}", root.files());
        }
    }
    // No task recorded as completed ran again afterwards.
    let events = root.events();
    let mut completed: HashSet<String> = HashSet::new();
    for e in &events {
        let id = e["task_id"].as_str().unwrap_or_default().to_string();
        match e["event"].as_str().unwrap_or_default() {
            "task_completed" => assert!(completed.insert(id.clone()), "{id} completed twice"),
            "task_started" => assert!(!completed.contains(&id), "{id} started after completion"),
            _ => {}
        }
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq strictly increasing");
}
