//! Hand work and surgical edits: tasks of agents without a command wait; editing `status`
//! moves the file where its status belongs, an illegal edit is reported and left alone; every
//! daemon edit changes only lifecycle lines, so comments and formatting survive.

mod common;
use common::*;

const COMMENTED: &str = "# Task written by a human, with comments.\nid: hand-1   # stable id\nagent: reviewer\ntitle: \"Review the PR\"   # quoted on purpose\n\n# Context block\ncontext:\n  notes:\n    - look at   the tests\n    - 'single quoted'\npriority: normal\nartefacts: [a.md, b.md]\ndescription: |\n  Keep this\n    indented text.\n";

/// Lines of `after` that are not in `before`, and lines of `before` missing from `after`.
fn diff(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let added = a
        .iter()
        .filter(|l| !b.contains(l))
        .map(|l| l.to_string())
        .collect();
    let removed = b
        .iter()
        .filter(|l| !a.contains(l))
        .map(|l| l.to_string())
        .collect();
    (added, removed)
}

fn lifecycle_line(l: &str) -> bool {
    [
        "status:",
        "assigned_at:",
        "started_at:",
        "completed_at:",
        "created_at:",
        "result:",
        "error:",
        "  ",
    ]
    .iter()
    .any(|p| l.starts_with(p))
}

#[test]
fn intake_of_a_commented_file_changes_only_lifecycle_lines() {
    let root = Root::new("agents:\n  reviewer: {}\n");
    root.drop_task("hand.yaml", COMMENTED);
    root.run_once_ok();
    let after = root.read("assigned/reviewer/hand-1.yaml");
    let (added, removed) = diff(COMMENTED, &after);
    assert!(
        removed.is_empty(),
        "nothing of the author's is lost: {removed:?}\n{after}"
    );
    assert!(
        added.iter().all(|l| lifecycle_line(l)),
        "only lifecycle lines added: {added:?}"
    );
    assert!(
        after.starts_with("# Task written by a human, with comments.\nid: hand-1   # stable id\n"),
        "{after}"
    );
}

#[test]
fn status_edits_move_the_file_and_illegal_ones_are_reported() {
    let root = Root::new("settle_ms: 20\nagents:\n  reviewer: {}\n");
    root.drop_task("hand.yaml", COMMENTED);
    let daemon = root.spawn_daemon(&[]);
    wait_for(30, "assigned", || root.exists("assigned/reviewer/hand-1.yaml"));
    // A human starts the task.
    let path = root.collab("assigned/reviewer/hand-1.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("status: assigned", "status: in_progress");
    std::fs::write(&path, &text).unwrap();
    wait_for(30, "in_progress recorded", || {
        root.events()
            .iter()
            .any(|e| e["event"] == "task_edited" && e["to"] == "in_progress")
    });
    // The event is durable before the file is rewritten, so the rewrite may still be coming.
    wait_for(30, "started_at written", || {
        root.read("assigned/reviewer/hand-1.yaml").contains("started_at:")
    });
    // … and finishes it with a result.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("status: in_progress", "status: done")
        + "result:\n  summary: looks good\n";
    std::fs::write(&path, &text).unwrap();
    wait_for(30, "moved to done", || root.exists("done/reviewer/hand-1.yaml"));
    let done = root.read("done/reviewer/hand-1.yaml");
    assert!(
        done.contains("# Context block") && done.contains("looks good"),
        "{done}"
    );
    // An illegal edit: done → in_progress is reported, the file stays.
    let done_path = root.collab("done/reviewer/hand-1.yaml");
    std::fs::write(&done_path, done.replace("status: done", "status: in_progress")).unwrap();
    wait_for(30, "illegal edit reported", || {
        root.events()
            .iter()
            .any(|e| e["event"] == "problem_detected" && e["data"]["kind"] == "illegal_edit")
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(done_path.exists(), "file left where it is");
    assert!(
        root.read("done/reviewer/hand-1.yaml")
            .contains("status: in_progress"),
        "file left as it is"
    );
    assert!(stop_daemon(daemon).success());
}

#[test]
fn tasks_of_agents_without_a_command_wait() {
    let root = Root::new("agents:\n  reviewer: {}\n");
    root.drop_task("hand.yaml", "id: waits\nagent: reviewer\ntitle: Wait for me\n");
    root.run_once_ok();
    assert_eq!(
        root.field("assigned/reviewer/waits.yaml", "status").as_deref(),
        Some("assigned")
    );
    assert!(root.events_named("task_started").is_empty());
}

#[test]
fn hand_edits_are_seen_with_a_relative_root() {
    let root = Root::new("settle_ms: 20\nagents:\n  reviewer: {}\n");
    root.drop_task("hand.yaml", "id: rel\nagent: reviewer\ntitle: Relative root\n");
    let parent = root.path().parent().unwrap();
    let name = root.path().file_name().unwrap();
    let daemon = std::process::Command::new(BIN)
        .current_dir(parent)
        .arg("--root")
        .arg(name)
        .arg("daemon")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(30, "assigned", || root.exists("assigned/reviewer/rel.yaml"));
    let path = root.collab("assigned/reviewer/rel.yaml");
    // Edited at once, while the daemon may still be finishing its own write.
    replace_in_file(&path, "status: assigned", "status: in_progress");
    wait_for(30, "edit recorded", || {
        root.events()
            .iter()
            .any(|e| e["event"] == "task_edited" && e["to"] == "in_progress")
    });
    assert!(stop_daemon(daemon).success());
}

#[test]
fn edits_made_while_the_daemon_was_down_are_applied_at_start() {
    let root = Root::new("agents:\n  reviewer: {}\n");
    root.drop_task(
        "hand.yaml",
        "id: offline\nagent: reviewer\ntitle: Edited offline\n",
    );
    root.run_once_ok();
    assert!(root.p("work/.agentplane/snapshot").exists());
    let path = root.collab("assigned/reviewer/offline.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("status: assigned", "status: in_progress");
    std::fs::write(&path, text).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    root.run_once_ok();
    assert!(
        root.read("assigned/reviewer/offline.yaml")
            .contains("started_at:")
    );
    assert!(
        root.events()
            .iter()
            .any(|e| e["event"] == "task_edited" && e["to"] == "in_progress")
    );
    // An unchanged tree produces no task events on the next start.
    let n = root.events().len();
    root.run_once_ok();
    let new: Vec<String> = root.events()[n..]
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(new, ["daemon_started", "daemon_stopped"]);
}

/// A root whose one task, `t-1`, waits in `assigned/human/` (a human's: no command).
fn assigned_to_a_human() -> Root {
    let root = Root::new("agents:\n  human: {}\n");
    root.drop_task("t-1.yaml", "id: t-1\nagent: human\ntitle: the task\n");
    root.run_once_ok();
    root
}

/// A second file with a task's id in the folder the task moves to (a teammate's copy, a merge's
/// leftover) is reported and left alone; when the task does move there, that file is set
/// aside into `rejected/` byte for byte with a reason, never overwritten.
#[test]
fn a_move_sets_aside_a_file_in_its_way_rather_than_overwrite_it() {
    let root = assigned_to_a_human();
    assert!(root.exists("assigned/human/t-1.yaml"));
    let stray = "id: t-1\nagent: human\ntitle: a teammate's copy\nstatus: error\n";
    std::fs::create_dir_all(root.collab("error/human")).unwrap();
    std::fs::write(root.collab("error/human/t-1.yaml"), stray).unwrap();
    root.run_once_ok();
    let status = root.cmd(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("duplicate_id"),
        "the copy is reported first: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    assert!(root.cmd(&["cancel", "t-1"]).status.success());
    root.run_once_ok();
    assert!(
        root.read("error/human/t-1.yaml").contains("title: the task"),
        "the task's own file moved into place"
    );
    assert_eq!(root.read("rejected/t-1.yaml"), stray, "the copy, byte for byte");
    let reason = root.read("rejected/t-1.yaml.reason.yaml");
    assert!(
        reason.contains("error/human/t-1.yaml") && reason.contains("what_to_do"),
        "{reason}"
    );
    // The problem recorded for the copy is gone with it, from the index too.
    let status = root.cmd(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("problems: none"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let check = root.cmd(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// A file the same batch moves away is not in a move's way: a freeze and a thaw taken together
/// move the task to the fridge and back without setting its own file aside.
#[test]
fn a_task_frozen_and_thawed_in_one_batch_keeps_its_file() {
    let root = assigned_to_a_human();
    assert!(root.cmd(&["freeze", "t-1"]).status.success());
    assert!(root.cmd(&["thaw", "t-1"]).status.success());
    // Both command files settled before the daemon starts: taken in one round, one batch.
    for entry in std::fs::read_dir(root.collab("inbox")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            date_back(&path);
        }
    }
    root.run_once_ok();
    let batch_of = |name: &str| root.events_named(name)[0]["batch"].clone();
    assert_eq!(batch_of("task_frozen"), batch_of("task_thawed"), "one batch");
    let names: Vec<String> = root
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        names.contains(&"task_frozen".to_string()) && names.contains(&"task_thawed".to_string()),
        "{names:?}"
    );
    assert!(root.events_named("task_rejected").is_empty(), "{names:?}");
    assert!(
        root.read("assigned/human/t-1.yaml").contains("title: the task"),
        "files: {:?}",
        root.files()
    );
    assert!(!root.exists("fridge/t-1.yaml"));
}

/// What stands in a move's way may be no plain file at all: a FIFO there is set aside as it
/// is, without being opened (reading one would wait for a writer forever).
#[test]
fn a_fifo_in_a_moves_way_is_set_aside_unread() {
    let root = assigned_to_a_human();
    std::fs::create_dir_all(root.collab("error/human")).unwrap();
    let fifo = root.collab("error/human/t-1.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert!(root.cmd(&["cancel", "t-1"]).status.success());
    root.run_once_ok();
    assert!(root.read("error/human/t-1.yaml").contains("title: the task"));
    let aside = std::fs::symlink_metadata(root.collab("rejected/t-1.yaml")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&aside.file_type()),
        "the FIFO itself, moved: {:?}",
        root.files()
    );
}

/// A task's own file replaced by a FIFO (or anything else that is no plain file) is never
/// opened as one: a cancel then records the task's end, and the FIFO stays where it is, not
/// waited on.
#[test]
fn a_task_file_replaced_by_a_fifo_is_never_opened() {
    let root = assigned_to_a_human();
    let file = root.collab("assigned/human/t-1.yaml");
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&file).status().unwrap();
    assert!(made.success());
    assert!(root.cmd(&["cancel", "t-1"]).status.success());
    root.run_once_ok();
    assert_eq!(root.events_named("task_cancelled").len(), 1, "{:?}", root.files());
    let left = std::fs::symlink_metadata(&file).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&left.file_type()));
}
