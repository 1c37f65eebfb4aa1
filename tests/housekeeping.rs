//! The slow-timer duties and the git audit trail: old terminal tasks are archived, stalled
//! in-progress tasks reported, and the daemon's changes committed to git without hooks and
//! without the user's other changes.

mod common;
use common::*;
use std::process::Command;

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn transitions_are_committed_without_hooks_or_the_users_changes() {
    let root =
        Root::new("git: { commit: auto, author: \"Robot <robot@example.org>\" }\nagents:\n  human: {}\n");
    let dir = root.path();
    git(dir, &["init", "-q"]);
    git(dir, &["config", "user.email", "me@example.org"]);
    git(dir, &["config", "user.name", "Me"]);
    std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "start"]);
    std::fs::write(dir.join("staged.txt"), "staged by the user\n").unwrap();
    git(dir, &["add", "staged.txt"]);
    std::fs::write(dir.join("notes.txt"), "mine, edited\n").unwrap();
    let hook = dir.join(".git/hooks/pre-commit");
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {}/hook-ran\n", dir.display())).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    root.drop_task("t.yaml", "id: audited\nagent: human\ntitle: Audited task\n");
    root.run_once_ok();
    let log = git(dir, &["log", "--format=%an|%s%n%b", "-n", "1"]);
    assert!(log.starts_with("Robot|agentplane:"), "{log}");
    assert!(log.contains("Task: audited"), "{log}");
    let files = git(dir, &["show", "--name-status", "--format=", "HEAD"]);
    assert!(
        files.contains("work/collaboration/assigned/human/audited.yaml"),
        "{files}"
    );
    assert!(
        !files.contains("staged.txt") && !files.contains("notes.txt"),
        "{files}"
    );
    let status = git(dir, &["status", "--porcelain"]);
    assert!(
        status.contains("A  staged.txt"),
        "the user's staged change stays staged: {status}"
    );
    assert!(
        status.contains(" M notes.txt"),
        "the user's unstaged change stays: {status}"
    );
    assert!(
        !status.contains("audited"),
        "the daemon's change is committed: {status}"
    );
    assert!(!dir.join("hook-ran").exists(), "no hook runs");
}

#[test]
fn old_terminal_tasks_are_archived_and_stalls_reported() {
    use agentplane::event::{Event, encode};
    let root = Root::new("archive_after_days: 30\nstall_after_s: 1\nagents:\n  human: {}\n");
    std::fs::create_dir_all(root.collab("done/human")).unwrap();
    std::fs::write(
        root.collab("done/human/old.yaml"),
        "id: old\nagent: human\nstatus: done\ntitle: Old\n",
    )
    .unwrap();
    // A log that recorded the task 40 days ago.
    let mut ev = Event::task("task_discovered", "old");
    ev.seq = 1;
    ev.ts = "2020-01-15T10:00:00.000Z".into();
    ev.to = Some("done".into());
    ev.path = Some("work/collaboration/done/human/old.yaml".into());
    let ev = ev.with_data(
        "task",
        serde_json::json!({"title": "Old", "agent": "human", "priority": "normal",
        "depends_on": [], "approval_required": false, "timeout_s": null, "max_attempts": null}),
    );
    std::fs::write(root.p("work/.agentplane/events.jsonl"), encode(&ev) + "\n").unwrap();
    root.drop_task(
        "w.yaml",
        "id: working\nagent: human\ntitle: In progress by hand\n",
    );
    root.run_once_ok();
    assert!(root.exists("archive/2020-01/old.yaml"), "{:?}", root.files());
    assert_eq!(root.events_named("task_archived").len(), 1);
    // The start-up scan must not mistake a decided-but-not-yet-made move for a deletion.
    assert!(
        root.events_named("task_deleted").is_empty(),
        "{:#?}",
        root.events()
    );
    assert!(root.events_named("task_discovered").len() <= 1);
    let p = root.collab("assigned/human/working.yaml");
    replace_in_file(&p, "status: assigned", "status: in_progress");
    std::thread::sleep(std::time::Duration::from_millis(100));
    root.run_once_ok();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    root.run_once_ok();
    let stalls: Vec<_> = root
        .events()
        .into_iter()
        .filter(|e| e["data"]["kind"] == "stalled")
        .collect();
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    assert_eq!(stalls[0]["task_id"], "working");
}

#[test]
fn the_slow_timer_runs_every_rescan_s() {
    let root = Root::new("rescan_s: 1\nstall_after_s: 1\nagents:\n  human: {}\n");
    let daemon = root.spawn_daemon(&[]);
    root.drop_task("w.yaml", "id: w\nagent: human\ntitle: Worked on by hand\n");
    let p = root.collab("assigned/human/w.yaml");
    wait_for(30, "the task assigned", || p.exists());
    replace_in_file(&p, "status: assigned", "status: in_progress");
    // Only the timer looks for stalls: no start, no file event after this edit.
    wait_for(30, "the stall reported by the timer", || {
        root.events()
            .iter()
            .any(|e| e["data"]["kind"] == "stalled" && e["task_id"] == "w")
    });
    assert!(stop_daemon(daemon).success());
}

#[test]
fn changes_not_committed_before_a_kill_are_committed_at_the_next_start() {
    let root = Root::new("agents:\n  human: {}\n");
    let dir = root.path();
    git(dir, &["init", "-q"]);
    git(dir, &["config", "user.email", "me@example.org"]);
    git(dir, &["config", "user.name", "Me"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "start"]);
    let start = git(dir, &["rev-parse", "HEAD"]);
    // A git whose commit hangs, as if the daemon died while a batch waited for its second.
    let real_git = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let hanging = dir.join("hanging-git");
    std::fs::create_dir(&hanging).unwrap();
    let stuck = dir.join("stuck.pid");
    std::fs::write(
        hanging.join("git"),
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = commit-tree ] && {{ echo $$ > {}; exec sleep 600; }}; done\nexec {real_git} \"$@\"\n",
            stuck.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        hanging.join("git"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut daemon = Command::new(BIN)
        .arg("--root")
        .arg(dir)
        .arg("daemon")
        .env(
            "PATH",
            format!("{}:{}", hanging.display(), std::env::var("PATH").unwrap()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    root.drop_task(
        "t.yaml",
        "id: unaudited\nagent: human\ntitle: Assigned just before the kill\n",
    );
    wait_for(30, "the commit under way", || {
        stuck.exists() && root.exists("assigned/human/unaudited.yaml")
    });
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let git_pid: i32 = std::fs::read_to_string(&stuck).unwrap().trim().parse().unwrap();
    unsafe { libc::kill(git_pid, libc::SIGKILL) };
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        start,
        "nothing was committed before the kill"
    );

    root.run_once_ok();
    let files = git(dir, &["show", "--name-status", "--format=%s%n%b", "HEAD"]);
    assert!(
        files.contains("work/collaboration/assigned/human/unaudited.yaml"),
        "{files}"
    );
    assert!(
        files.contains("before the last restart"),
        "the message says why it is late: {files}"
    );
    let status = git(dir, &["status", "--porcelain", "work/collaboration"]);
    assert!(
        !status.contains("unaudited"),
        "the task file is committed: {status}"
    );
    let mark: u64 = std::fs::read_to_string(root.p("work/.agentplane/audited-seq"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let received = root.events_named("task_received");
    assert!(
        mark >= received[0]["seq"].as_u64().unwrap(),
        "the mark moved past the task's events"
    );

    // Committed once: another start finds nothing left to commit.
    let head = git(dir, &["rev-parse", "HEAD"]);
    root.run_once_ok();
    assert_eq!(
        git(dir, &["rev-parse", "HEAD"]),
        head,
        "no second commit of the same changes"
    );
}
