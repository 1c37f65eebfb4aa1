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
    assert!(stop_daemon(first).success());
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

/// A task's events and the daemon's own (starts, recoveries), one a line, for a failure's
/// message.
fn history_of(root: &Root, id: &str) -> String {
    let lines: Vec<String> = root
        .events()
        .iter()
        .filter(|e| e["task_id"] == id || e["task_id"].is_null())
        .map(|e| e.to_string())
        .collect();
    lines.join("\n")
}

/// After recovery: every task file exists exactly once, in the folder its status names; its
/// place and status are what the log says last; nothing submitted was lost.
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
            "{id} exists twice: {:?}\n{}",
            root.files(),
            history_of(root, &id)
        );
        let status = root.field(&f, "status").unwrap();
        let folder = f.split('/').next().unwrap();
        let want = match status.as_str() {
            "assigned" | "in_progress" | "blocked" => "assigned",
            other => other,
        };
        assert_eq!(folder, want, "{f} has status {status}");
    }
    // Replay the log: last recorded place and status of each task.
    let mut place: HashMap<String, (String, String)> = HashMap::new();
    for e in root.events() {
        let Some(id) = e["task_id"].as_str() else { continue };
        if e["event"] == "handoff_created" || e["event"] == "task_rejected" {
            continue;
        }
        let entry = place.entry(id.to_string()).or_default();
        if let (Some(path), true) = (
            e["path"].as_str(),
            e["op"] == "move" || e["event"] == "task_discovered",
        ) {
            entry.0 = path.trim_start_matches("work/collaboration/").to_string();
        }
        if let Some(to) = e["to"].as_str() {
            entry.1 = to.to_string();
        }
    }
    for (id, f) in &seen {
        let (path, status) = place.get(id).unwrap_or_else(|| panic!("{id} has no event"));
        assert_eq!(path, f, "{id}: the log places it elsewhere");
        assert_eq!(
            Some(status.clone()),
            root.field(f, "status"),
            "{id}: the log says another status"
        );
    }
    for id in submitted {
        let in_inbox = root
            .files()
            .iter()
            .any(|f| f.starts_with("inbox/") && f.contains(id.as_str()));
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
        "sleep 0.0$(( $$ % 5 )); case $1 in *7) exit 1;; *3) printf 'summary: via result\\n' > \"$2/result.yaml\";; esac; echo ok",
    );
    std::fs::write(
        root.p("agentplane.yaml"),
        format!("settle_ms: 10\nmax_concurrent: 3\nagents:\n  bot:\n    command: [\"sh\", \"{script}\", \"{{task_id}}\", \"{{log_dir}}\"]\n    max_attempts: 2\n  human: {{}}\n  other: {{}}\n"),
    )
    .unwrap();
    let mut submitted = HashSet::new();
    let mut seed: u64 = std::env::var("AGENTPLANE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    println!("seed {seed}");
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut next: u64 = 0;
    let mut drop_some = |root: &Root, rand: &mut dyn FnMut(u64) -> u64, submitted: &mut HashSet<String>| {
        for _ in 0..(1 + rand(4)) {
            let id = format!("task-{next}");
            let agent = if next.is_multiple_of(4) { "human" } else { "bot" };
            root.drop_task(
                &format!("{id}.yaml"),
                &format!("id: {id}\nagent: {agent}\ntitle: Task {next}\n"),
            );
            submitted.insert(id);
            next += 1;
        }
        // Commands on earlier tasks: some apply, some are rejected; none may be lost or doubled.
        if next > 8 {
            let target = format!("task-{}", rand(next));
            let args: &[&str] = match rand(3) {
                0 => &["priority", &target, "high"],
                1 => &["reassign", &target, "other"],
                _ => &["cancel", &target],
            };
            let _ = root.cmd(args);
        }
    };
    for round in 0..kills {
        drop_some(&root, &mut rand, &mut submitted);
        let mut daemon = root.spawn_daemon(&[]);
        // Keep work arriving while the daemon runs, then kill it at a random moment.
        for _ in 0..rand(3) {
            std::thread::sleep(Duration::from_millis(rand(40)));
            drop_some(&root, &mut rand, &mut submitted);
        }
        std::thread::sleep(Duration::from_millis(rand(80)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        if round % 10 == 9 {
            root.run_once_ok();
            check_invariants(&root, &submitted);
        }
    }
    // A last clean run finishes whatever was pending.
    root.run_once_ok();
    check_invariants(&root, &submitted);
    let reassigned: HashSet<String> = root
        .events_named("task_reassigned")
        .iter()
        .map(|e| e["task_id"].as_str().unwrap().to_string())
        .collect();
    for id in &submitted {
        let n: u64 = id.trim_start_matches("task-").parse().unwrap();
        if !n.is_multiple_of(4) && !reassigned.contains(id) {
            let ended = root.files().iter().any(|f| {
                (f.starts_with("done/") || f.starts_with("error/")) && f.ends_with(&format!("/{id}.yaml"))
            });
            assert!(
                ended,
                "{id} never finished: {:?}\n{}",
                root.files(),
                history_of(&root, id)
            );
        }
    }
    // No task recorded as completed ran again afterwards; no command applied twice.
    let events = root.events();
    let mut completed: HashSet<String> = HashSet::new();
    let mut commands: HashSet<String> = HashSet::new();
    for e in &events {
        let id = e["task_id"].as_str().unwrap_or_default().to_string();
        match e["event"].as_str().unwrap_or_default() {
            "task_completed" => assert!(completed.insert(id.clone()), "{id} completed twice"),
            "task_started" => assert!(!completed.contains(&id), "{id} started after completion"),
            _ => {}
        }
        if let Some(file) = e["data"]["command_file"].as_str() {
            assert!(commands.insert(file.to_string()), "command {file} applied twice");
        }
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq strictly increasing");
    assert!(
        root.files().iter().all(|f| !f.starts_with("inbox/")),
        "inbox drained: {:?}",
        root.files()
    );
    let trash: Vec<_> = std::fs::read_dir(root.p("work/.agentplane/trash"))
        .unwrap()
        .collect();
    assert!(
        trash.is_empty(),
        "a clean stop left {} files in the trash",
        trash.len()
    );
}

#[test]
fn a_child_running_at_a_crash_is_interrupted_requeued_and_failed_at_the_third_time() {
    let root = Root::new("");
    let script = root.agent_script("bot", "echo $$ > \"$2/child.pid\"; sleep 1000");
    std::fs::write(
        root.p("agentplane.yaml"),
        format!("agents:\n  bot:\n    command: [\"sh\", \"{script}\", \"{{task_id}}\", \"{{log_dir}}\"]\n"),
    )
    .unwrap();
    root.drop_task("t.yaml", "id: victim\nagent: bot\ntitle: Runs during crashes\n");
    for attempt in 1..=3 {
        let mut daemon = root.spawn_daemon(&[]);
        let pid_file = root.p(&format!("work/logs/victim/{attempt}/child.pid"));
        // Running, and known to be: its pid is in the log (a kill between the spawn and that
        // commit leaves an orphan no start can find; noted in docs/operations.md).
        wait_for(30, "child running", || {
            pid_file.exists()
                && !std::fs::read_to_string(&pid_file).unwrap().is_empty()
                && root.events_named("execution_start").len() == attempt
        });
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(group_alive(child), "a SIGKILLed daemon leaves its child running");
        // The next start kills the orphan and records the interruption.
        if attempt < 3 {
            let next = root.spawn_daemon(&[]);
            wait_for(30, "interruption recorded", || {
                root.events_named("task_interrupted").len() == attempt
            });
            wait_for(10, "orphan killed", || !group_alive(child));
            let mut next = next;
            next.kill().unwrap();
            next.wait().unwrap();
        }
    }
    root.run_once_ok();
    assert!(root.exists("error/bot/victim.yaml"), "{:?}", root.files());
    assert!(root.read("error/bot/victim.yaml").contains("interrupted 3 times"));
    assert_eq!(root.events_named("task_interrupted").len(), 3);
}

#[test]
fn readiness_is_reported_to_systemd() {
    use std::os::unix::net::UnixDatagram;
    let root = Root::new("");
    let sock_path = root.p("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut daemon = std::process::Command::new(BIN)
        .arg("--root")
        .arg(root.path())
        .arg("daemon")
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("READY=1"));
    sigterm(&daemon);
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn temp_files_left_by_a_crash_are_removed_at_start_but_not_those_being_written() {
    let root = Root::new("agents:\n  human: {}\n");
    // No process can have this pid (Linux's pid_max is at most 4,194,304).
    let leftovers = [
        "work/collaboration/inbox/.agentplane-999999999-1.tmp",
        "work/collaboration/assigned/human/.agentplane-999999999-2.tmp",
        "work/.agentplane/.agentplane-999999999-3.tmp",
        "work/status/.agentplane-999999999-4.tmp",
    ];
    // A `submit` still writing: this test process is its live writer.
    let in_progress = format!(
        "work/collaboration/inbox/.agentplane-{}-1.tmp",
        std::process::id()
    );
    for rel in leftovers.iter().copied().chain([in_progress.as_str()]) {
        let p = root.p(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "half a file").unwrap();
    }
    root.run_once_ok();
    for rel in leftovers {
        assert!(!root.p(rel).exists(), "{rel} is still there");
    }
    assert!(
        root.p(&in_progress).exists(),
        "a live writer's temp file was removed"
    );
    assert!(
        root.events_named("task_rejected").is_empty(),
        "{:#?}",
        root.events()
    );
}

#[test]
fn removed_and_replaced_files_go_through_the_trash_which_a_clean_stop_leaves_empty() {
    let root = Root::new("agents:\n  human: {}\n");
    let trash = root.p("work/.agentplane/trash");
    std::fs::create_dir_all(&trash).unwrap();
    std::fs::write(trash.join("0-7"), "left by a crash").unwrap();
    for i in 0..20 {
        root.drop_task(
            &format!("t{i}.yaml"),
            &format!("id: t{i}\nagent: human\ntitle: Task {i}\n"),
        );
    }
    root.run_once_ok();
    // A command file is removed, and the task file it edits is replaced in place.
    assert!(root.cmd(&["priority", "t3", "high"]).status.success());
    root.run_once_ok();
    let files = root.files();
    assert!(files.iter().all(|f| !f.starts_with("inbox/")), "{files:?}");
    assert_eq!(
        files.iter().filter(|f| f.starts_with("assigned/human/")).count(),
        20,
        "{files:?}"
    );
    let t3 = std::fs::read_to_string(root.collab("assigned/human/t3.yaml")).unwrap();
    assert_eq!(yaml_field(&t3, "priority").as_deref(), Some("high"), "{t3}");
    let left: Vec<_> = std::fs::read_dir(&trash)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the trash still holds {left:?}");
}

#[test]
fn an_inbox_file_rewritten_but_not_renamed_at_a_crash_is_finished_from_the_redo_record() {
    let root = Root::new("agents:\n  human: {}\n");
    let mut daemon = root.spawn_daemon(&[]);
    // The state a power loss between the rewrite and its rename leaves holds no snapshot
    // taken after that batch (a snapshot is saved only once a round's renames are durable):
    // the task goes in after the start-up snapshot, not in the start-up round before it.
    wait_for(30, "the start-up snapshot", || {
        root.p("work/.agentplane/snapshot").exists()
    });
    root.drop_task(
        "r.yaml",
        "# kept comment\nid: r\nagent: human\ntitle: Survive a crash\n",
    );
    let assigned = root.collab("assigned/human/r.yaml");
    wait_for(30, "task assigned", || assigned.exists());
    let written = std::fs::read_to_string(&assigned).unwrap();
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // What a power loss between the in-place rewrite and its rename can leave: the inode back
    // under its inbox name, its new text only half there.
    let inbox = root.collab("inbox/r.yaml");
    std::fs::rename(&assigned, &inbox).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&inbox)
        .unwrap()
        .set_len(written.len() as u64 / 2)
        .unwrap();
    root.run_once_ok();
    assert_eq!(std::fs::read_to_string(&assigned).unwrap(), written);
    assert!(!inbox.exists(), "the half-written inbox file is still there");
    assert!(
        root.events_named("task_rejected").is_empty(),
        "{:#?}",
        root.events()
    );
    assert_eq!(root.events_named("task_assigned").len(), 1);
    assert_eq!(root.events_named("task_received").len(), 1);
}

/// What the daemon logged, without terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(at) = rest.find('\x1b') {
        out.push_str(&rest[..at]);
        rest = rest[at..].split_once('m').map_or("", |(_, after)| after);
    }
    out + rest
}

/// The `after_seq` of the start's "replayed the log" line: 0 when the whole log was replayed.
fn replayed_after(log: &str) -> u64 {
    let log = plain(log);
    let line = log
        .lines()
        .find(|l| l.contains("replayed the log"))
        .unwrap_or_else(|| panic!("{log}"));
    line.split("after_seq=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

fn status_tasks(root: &Root) -> serde_json::Value {
    let text = std::fs::read_to_string(root.p("work/status/status.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["tasks"].clone()
}

/// A start takes the state from the snapshot the last stop saved and replays only the log
/// after it; without a snapshot, or with one that is damaged or of another log, it replays the
/// whole log. Either way the daemon knows the same tasks, down to their approvals and
/// dependencies.
#[test]
fn a_start_resumes_from_the_snapshot_or_else_replays_the_whole_log() {
    let root = Root::new("agents:\n  runner:\n    command: [\"true\"]\n");
    root.drop_task("a.yaml", "id: a\nagent: runner\ntitle: A\n");
    root.drop_task(
        "d.yaml",
        "id: d\nagent: runner\ntitle: D\nhuman_approval_required: true\n",
    );
    root.drop_task("e.yaml", "id: e\nagent: runner\ntitle: E\ndepends_on: [d]\n");
    root.run_once_ok();
    assert!(root.exists("done/runner/a.yaml") && root.exists("assigned/runner/d.yaml"));
    let known = status_tasks(&root);
    let snapshot = root.p("work/.agentplane/snapshot");
    assert!(snapshot.exists());

    let log = root.run_once_ok();
    assert!(replayed_after(&log) > 0, "{log}");
    assert_eq!(status_tasks(&root), known);

    std::fs::remove_file(&snapshot).unwrap();
    let log = root.run_once_ok();
    assert_eq!(replayed_after(&log), 0, "no snapshot: {log}");
    assert_eq!(status_tasks(&root), known);

    let mut damaged = std::fs::read(&snapshot).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x20;
    std::fs::write(&snapshot, damaged).unwrap();
    let log = root.run_once_ok();
    assert!(
        plain(&log).contains("the state snapshot is not usable (it is incomplete or damaged"),
        "{log}"
    );
    assert_eq!(replayed_after(&log), 0);
    assert_eq!(status_tasks(&root), known);

    let other = Root::new("");
    other.drop_task("x.yaml", "id: x\nagent: bot\ntitle: X\n");
    other.run_once_ok();
    std::fs::copy(&snapshot, other.p("work/.agentplane/snapshot")).unwrap();
    let log = other.run_once_ok();
    assert!(
        plain(&log).contains("the state snapshot is of another log"),
        "{log}"
    );
    assert_eq!(status_tasks(&other).as_array().unwrap().len(), 1);

    // The approval gate and the dependency came through the snapshot: approved, d runs, and
    // then e.
    let log = root.run_once_ok();
    assert!(replayed_after(&log) > 0, "{log}");
    assert!(root.cmd(&["approve", "d"]).status.success());
    root.run_once_ok();
    assert!(
        root.exists("done/runner/d.yaml") && root.exists("done/runner/e.yaml"),
        "{:?}",
        root.files()
    );
}

#[test]
fn a_crash_inside_two_commands_on_one_task_leaves_one_file() {
    // Two commands on one task decided in one batch: the second's source is the file the
    // first wrote, not the file both were decided on. A crash after the second renamed its
    // destination into place, before it removed its source, must still end with one file.
    let root = Root::new("agents:\n  human: {}\n  other: {}\n");
    root.drop_task("t.yaml", "id: t\nagent: human\ntitle: T\n");
    root.run_once_ok();
    for args in [["priority", "t", "high"], ["reassign", "t", "other"]] {
        let out = root.cmd(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for f in std::fs::read_dir(root.collab("inbox")).unwrap() {
        date_back(&f.unwrap().path());
    }
    root.run_once_ok();
    let moved = root.read("assigned/other/t.yaml");
    let events = root.events();
    let batch_of = |name: &str| events.iter().find(|e| e["event"] == name).unwrap()["batch"].clone();
    let batch = batch_of("task_reassigned");
    assert_eq!(
        batch_of("task_priority_changed"),
        batch,
        "both commands in one batch"
    );
    // The crash: the log ends with that batch (the caches ahead of it go), and the source the
    // reassignment read, the priority's version of the file, is still in place.
    let log = root.p("work/.agentplane/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .take_while(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["batch"].as_u64() <= batch.as_u64()
        })
        .collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    for cache in ["snapshot", "index.sqlite"] {
        let _ = std::fs::remove_file(root.p(&format!("work/.agentplane/{cache}")));
    }
    std::fs::write(
        root.collab("assigned/human/t.yaml"),
        moved.replace("agent: other", "agent: human"),
    )
    .unwrap();
    root.run_once_ok();
    let files: Vec<String> = root
        .files()
        .into_iter()
        .filter(|f| f.ends_with("/t.yaml"))
        .collect();
    assert_eq!(files, ["assigned/other/t.yaml"]);
    assert_eq!(root.read("assigned/other/t.yaml"), moved);
}
