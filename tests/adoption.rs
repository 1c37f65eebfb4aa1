//! Adoption of an existing tree: nothing inconsistent is moved, nothing runs by surprise,
//! every task found is recorded and every inconsistency reported.

mod common;
use common::*;

fn write(root: &Root, rel: &str, text: &str) {
    let p = root.collab(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn an_existing_tree_is_adopted_without_surprises() {
    let root = Root::new("");
    // Shapes found in real trees: mismatched folder, legacy statuses, case, non-mapping context.
    write(
        &root,
        "done/backend-dev/mismatch.yaml",
        "id: mismatch\nagent: backend-dev\nstatus: assigned\ntitle: In done/ but assigned\n",
    );
    write(
        &root,
        "assigned/python-pedro/pending.yaml",
        "---\nid: pending\ntitle: \"Legacy\"\nagent: python-pedro\npriority: LOW\nstatus: pending\ncontext: |\n  free text\n",
    );
    write(
        &root,
        "assigned/python-pedro/ok.yaml",
        "id: ok\nagent: python-pedro\nstatus: assigned\ntitle: Fine\ncontext:\n  human_approval_required: true\n",
    );
    write(
        &root,
        "done/curator/fine.yaml",
        "id: fine\nagent: curator\nstatus: done\ntitle: Done\nresult:\n  summary: x\n  artifacts: [a]\n",
    );
    write(
        &root,
        "assigned/python-pedro/othername.yaml",
        "id: not-the-file-name\nagent: python-pedro\nstatus: assigned\ntitle: Renamed\n",
    );
    write(
        &root,
        "archive/2025-11/old.yaml",
        "id: old\nagent: diagrammer\nstatus: assigned\ntitle: Archived while assigned\n",
    );
    write(
        &root,
        "assigned/python-pedro/broken.yaml",
        "id: broken\ntitle: [oops\n",
    );
    let before = root.files();
    let bytes_before: Vec<Vec<u8>> = before
        .iter()
        .map(|f| std::fs::read(root.collab(f)).unwrap())
        .collect();
    let stderr = root.run_once_ok();
    assert_eq!(root.files(), before, "nothing moved");
    let bytes_after: Vec<Vec<u8>> = before
        .iter()
        .map(|f| std::fs::read(root.collab(f)).unwrap())
        .collect();
    assert_eq!(bytes_after, bytes_before, "nothing edited");
    let discovered: Vec<String> = root
        .events_named("task_discovered")
        .iter()
        .map(|e| e["task_id"].as_str().unwrap().to_string())
        .collect();
    for id in ["mismatch", "ok", "fine", "old"] {
        assert!(
            discovered.contains(&id.to_string()),
            "{id} discovered: {discovered:?}"
        );
    }
    let problems: Vec<String> = root
        .events()
        .iter()
        .filter(|e| e["event"] == "problem_detected" || e["data"]["problem"].is_string())
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    for f in [
        "mismatch.yaml",
        "pending.yaml",
        "othername.yaml",
        "broken.yaml",
        "old.yaml",
    ] {
        assert!(
            problems.iter().any(|p| p.ends_with(f)),
            "{f} reported: {problems:?}\n{stderr}"
        );
    }
    assert!(root.events_named("task_started").is_empty());
    // A second start reports nothing new and still moves nothing.
    let n = root.events().len();
    root.run_once_ok();
    assert_eq!(root.files(), before);
    let new_events: Vec<String> = root.events()[n..]
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert!(
        new_events
            .iter()
            .all(|e| e.starts_with("daemon_") || e == "problem_detected"),
        "{new_events:?}"
    );
}

#[test]
fn editing_an_inconsistent_file_lets_the_daemon_place_it() {
    let root = Root::new("");
    write(
        &root,
        "done/dev/mismatch.yaml",
        "id: mismatch\nagent: dev\nstatus: assigned\ntitle: In done/ but assigned\n",
    );
    root.run_once_ok();
    assert!(root.exists("done/dev/mismatch.yaml"));
    let p = root.collab("done/dev/mismatch.yaml");
    // A restart alone is not an edit.
    root.run_once_ok();
    assert!(root.exists("done/dev/mismatch.yaml"));
    // Someone edits it (not even the status): now it goes where its status says.
    replace_in_file(&p, "title: In done/ but assigned", "title: edited");
    std::thread::sleep(std::time::Duration::from_millis(100));
    root.run_once_ok();
    assert!(!root.exists("done/dev/mismatch.yaml"), "{:?}", root.files());
    let text = root.read("assigned/dev/mismatch.yaml");
    assert!(
        text.contains("title: edited") && text.contains("status: assigned"),
        "{text}"
    );
    assert_eq!(root.events_named("task_moved").len(), 1);
}
