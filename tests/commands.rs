//! Command files: the CLI writes them atomically into the inbox; the daemon logs, applies and
//! removes them, or rejects an inapplicable one with a reason.

mod common;
use common::*;

fn root() -> Root {
    Root::new("agents:\n  alice: {}\n  bob: {}\n")
}

fn inbox_is_empty(root: &Root) -> bool {
    root.files().iter().all(|f| !f.starts_with("inbox/"))
}

#[test]
fn reassign_priority_cancel_retry_work_on_waiting_tasks() {
    let root = root();
    root.drop_task("t.yaml", "# keep me\nid: t1\nagent: alice\ntitle: Something\n");
    root.run_once_ok();
    assert!(root.cmd(&["reassign", "t1", "bob"]).status.success());
    assert!(root.cmd(&["priority", "t1", "critical"]).status.success());
    root.run_once_ok();
    assert!(root.exists("assigned/bob/t1.yaml"), "{:?}", root.files());
    let text = root.read("assigned/bob/t1.yaml");
    assert!(
        text.starts_with("# keep me\n") && text.contains("agent: bob") && text.contains("priority: critical"),
        "{text}"
    );
    assert!(inbox_is_empty(&root), "{:?}", root.files());
    assert!(
        root.cmd(&["cancel", "t1", "--reason", "not needed"])
            .status
            .success()
    );
    root.run_once_ok();
    assert!(root.read("error/bob/t1.yaml").contains("not needed"));
    assert!(root.cmd(&["retry", "t1"]).status.success());
    root.run_once_ok();
    let text = root.read("assigned/bob/t1.yaml");
    assert!(
        text.contains("status: assigned") && !text.contains("error:"),
        "{text}"
    );
    for name in [
        "task_reassigned",
        "task_priority_changed",
        "task_cancelled",
        "task_retried",
    ] {
        let evs = root.events_named(name);
        assert_eq!(evs.len(), 1, "{name}");
        assert!(
            evs[0]["command"]["command"].is_string(),
            "{name} records its command"
        );
    }
}

#[test]
fn inapplicable_commands_are_rejected_with_a_reason() {
    let root = root();
    root.drop_task("t.yaml", "id: t1\nagent: alice\ntitle: Something\n");
    root.run_once_ok();
    assert!(
        root.cmd(&["retry", "t1"]).status.success(),
        "the CLI only writes the file"
    );
    assert!(root.cmd(&["cancel", "nope"]).status.success());
    assert!(root.cmd(&["reassign", "t1", "mallory"]).status.success());
    assert!(root.cmd(&["approve", "t1"]).status.success());
    std::fs::write(root.collab("inbox/weird.yaml"), "command: explode\ntask: t1\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    root.run_once_ok();
    let reasons: Vec<String> = root
        .files()
        .iter()
        .filter(|f| f.ends_with(".reason.yaml"))
        .map(|f| root.read(f))
        .collect();
    assert_eq!(reasons.len(), 5, "{:?}", root.files());
    let all = reasons.join("\n");
    for needle in [
        "only error or blocked",
        "unknown task",
        "unknown agent",
        "does not require approval",
        "unknown command",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in {all}");
    }
    assert_eq!(root.events_named("command_rejected").len(), 5);
    assert!(root.exists("assigned/alice/t1.yaml"));
}

#[test]
fn freeze_thaw_and_archive_move_the_file() {
    let root = root();
    root.drop_task("t.yaml", "id: t1\nagent: alice\ntitle: Something\n");
    root.run_once_ok();
    assert!(root.cmd(&["freeze", "t1"]).status.success());
    root.run_once_ok();
    assert!(root.exists("fridge/t1.yaml"));
    assert!(root.cmd(&["thaw", "t1"]).status.success());
    root.run_once_ok();
    assert!(root.exists("assigned/alice/t1.yaml"), "{:#?}", root.events());
    assert!(root.cmd(&["cancel", "t1"]).status.success());
    root.run_once_ok();
    assert!(root.cmd(&["archive", "t1"]).status.success());
    root.run_once_ok();
    let archived: Vec<String> = root
        .files()
        .into_iter()
        .filter(|f| f.starts_with("archive/"))
        .collect();
    assert_eq!(archived.len(), 1, "{:?}", root.files());
    assert!(archived[0].ends_with("/t1.yaml"));
}

#[test]
fn submit_writes_a_task_and_prints_its_id() {
    let root = root();
    let out = root.cmd(&[
        "submit",
        "--title",
        "From the CLI",
        "--agent",
        "alice",
        "--priority",
        "high",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(id.contains("-alice-from-the-cli"), "{id}");
    root.run_once_ok();
    assert!(
        root.exists(&format!("assigned/alice/{id}.yaml")),
        "{:?}",
        root.files()
    );
    let file = root.p("mytask.yaml");
    std::fs::write(&file, "id: from-file\nagent: bob\ntitle: From a file\n").unwrap();
    let out = root.cmd(&["submit", file.to_str().unwrap()]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "from-file");
    root.run_once_ok();
    assert!(root.exists("assigned/bob/from-file.yaml"));
    let bad = root.p("bad.yaml");
    std::fs::write(&bad, "title: no agent\n").unwrap();
    let out = root.cmd(&["submit", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent"));
}
