//! Intake: valid tasks become assigned/<agent>/<id>.yaml with the events durable first;
//! every kind of bad input goes to rejected/ byte for byte with a reason that says what to do.

mod common;
use common::*;

const CFG: &str = "settle_ms: 50\n";

#[test]
fn valid_task_is_assigned_with_generated_id_and_events_logged() {
    let root = Root::new(CFG);
    root.drop_task(
        "fix.yaml",
        "agent: bot\ntitle: Fix the login bug\npriority: HIGH\n",
    );
    root.drop_task(
        "given.yml",
        "id: given-id-1\nagent: bot\ntitle: Given id\nstatus: new\n",
    );
    root.run_once_ok();
    let files = root.files();
    let generated: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with("assigned/bot/") && f.contains("-bot-fix-the-login-bug"))
        .collect();
    assert_eq!(generated.len(), 1, "{files:?}");
    let rel = generated[0].clone();
    assert_eq!(root.field(&rel, "status").as_deref(), Some("assigned"));
    assert_eq!(
        root.field(&rel, "priority").as_deref(),
        Some("high"),
        "priority written back lower case"
    );
    let id = root.field(&rel, "id").unwrap();
    assert!(rel.ends_with(&format!("{id}.yaml")));
    assert!(root.field(&rel, "assigned_at").unwrap().ends_with('Z'));
    assert!(root.exists("assigned/bot/given-id-1.yaml"), "{files:?}");
    assert!(!root.exists("inbox/fix.yaml") && !root.exists("inbox/given.yml"));
    let assigned = root.events_named("task_assigned");
    assert_eq!(assigned.len(), 2);
    assert!(
        assigned
            .iter()
            .all(|e| e["crc"].is_string() && e["seq"].as_u64().unwrap() > 0)
    );
    assert_eq!(root.events_named("task_received").len(), 2);
}

#[test]
fn dot_files_and_editor_temp_files_are_never_read() {
    let root = Root::new(CFG);
    for name in [
        ".hidden.yaml",
        "x.yaml~",
        "x.yaml.tmp",
        "x.yaml.partial",
        ".x.yaml.swp",
        "notes.txt",
    ] {
        std::fs::write(root.collab(&format!("inbox/{name}")), "agent: bot\ntitle: t\n").unwrap();
    }
    root.run_once_ok();
    for name in [
        ".hidden.yaml",
        "x.yaml~",
        "x.yaml.tmp",
        "x.yaml.partial",
        ".x.yaml.swp",
        "notes.txt",
    ] {
        assert!(root.exists(&format!("inbox/{name}")), "{name} must be left alone");
    }
    assert!(root.events_named("task_received").is_empty());
    assert!(root.events_named("task_rejected").is_empty());
}

#[test]
fn a_plain_write_in_chunks_is_read_only_once_complete() {
    use std::io::Write;
    // The writer keeps the file open longer than settle_ms; every pause is shorter. After
    // the second chunk the file is already a valid task, so reading it before the close
    // would take a task without its id.
    let root = Root::new("settle_ms: 250\n");
    let daemon = root.spawn_daemon(&[]);
    wait_for(30, "daemon ready", || {
        root.events_named("daemon_started").len() == 1
    });
    let path = root.collab("inbox/chunked.yaml");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [
        "agent: bot\n",
        "title: Written in four chunks\n",
        "priority: high\n",
        "id: chunky\n",
    ] {
        f.write_all(chunk.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(f);
    wait_for(30, "chunked task assigned", || {
        root.exists("assigned/bot/chunky.yaml")
    });
    assert!(stop_daemon(daemon).success());
    assert_eq!(
        root.events_named("task_received").len(),
        1,
        "one task, taken once the writer was done: {:?}",
        root.files()
    );
    assert!(
        root.events_named("task_rejected").is_empty(),
        "the half-written file must not be rejected"
    );
}

fn assert_rejected(root: &Root, name: &str, original: &[u8], reason_contains: &str) {
    let rejected = std::fs::read(root.collab(&format!("rejected/{name}")))
        .unwrap_or_else(|e| panic!("{name} not in rejected/: {e}; files: {:?}", root.files()));
    assert_eq!(rejected, original, "{name} must be kept byte for byte");
    let reason = root.read(&format!("rejected/{name}.reason.yaml"));
    assert!(
        reason.contains(reason_contains),
        "{name}: reason {reason:?} lacks {reason_contains:?}"
    );
    assert!(
        reason.contains("what_to_do"),
        "{name}: reason says what to do: {reason}"
    );
    assert!(!root.exists(&format!("inbox/{name}")));
}

#[test]
fn every_kind_of_bad_task_is_rejected_with_a_reason() {
    let root = Root::new("max_task_bytes: 2000\nagents:\n  bot: {}\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("notyaml.yaml", b"agent: bot\ntitle: [unclosed\n".to_vec(), "line"),
        (
            "twodocs.yaml",
            b"agent: bot\ntitle: a\n---\nagent: bot\ntitle: b\n".to_vec(),
            "document",
        ),
        ("list.yaml", b"- agent: bot\n- title: x\n".to_vec(), "mapping"),
        ("latin1.yaml", b"agent: bot\ntitle: caf\xe9\n".to_vec(), "UTF-8"),
        ("noagent.yaml", b"title: Nobody does this\n".to_vec(), "agent"),
        ("notitle.yaml", b"agent: bot\n".to_vec(), "title"),
        (
            "badid.yaml",
            b"id: ../../etc/passwd\nagent: bot\ntitle: t\n".to_vec(),
            "not allowed",
        ),
        (
            "badagent.yaml",
            b"agent: ../../etc\ntitle: t\n".to_vec(),
            "not allowed",
        ),
        (
            "done.yaml",
            b"agent: bot\ntitle: t\nstatus: done\n".to_vec(),
            "status",
        ),
        (
            "stranger.yaml",
            b"agent: stranger\ntitle: t\n".to_vec(),
            "unknown agent",
        ),
        (
            "big.yaml",
            format!("agent: bot\ntitle: t\ndescription: {}\n", "x".repeat(3000)).into_bytes(),
            "max_task_bytes",
        ),
    ];
    for (name, bytes, _) in &cases {
        std::fs::write(root.collab(&format!("inbox/{name}")), bytes).unwrap();
    }
    // Old enough that the settle/grace waits do not apply.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    root.run_once_ok();
    for (name, bytes, why) in &cases {
        assert_rejected(&root, name, bytes, why);
    }
    let rejected = root.events_named("task_rejected");
    assert_eq!(rejected.len(), cases.len());
    let yaml_err = root.read("rejected/notyaml.yaml.reason.yaml");
    assert!(
        yaml_err.contains("line: ") && yaml_err.contains("column: "),
        "{yaml_err}"
    );
}

#[test]
fn duplicate_ids_are_rejected() {
    let root = Root::new(CFG);
    root.drop_task("a.yaml", "id: same\nagent: bot\ntitle: first\n");
    root.run_once_ok();
    root.drop_task("b.yaml", "id: same\nagent: bot\ntitle: second\n");
    root.run_once_ok();
    assert!(root.exists("assigned/bot/same.yaml"));
    assert_rejected(
        &root,
        "b.yaml",
        b"id: same\nagent: bot\ntitle: second\n",
        "duplicate",
    );
}

#[test]
fn symlinks_fifos_and_directories_are_rejected_unfollowed() {
    let root = Root::new(CFG);
    let secret = root.p("secret.yaml");
    std::fs::write(&secret, "agent: bot\ntitle: secret\n").unwrap();
    std::os::unix::fs::symlink(&secret, root.collab("inbox/link.yaml")).unwrap();
    std::fs::create_dir(root.collab("inbox/dir.yaml")).unwrap();
    let fifo = std::ffi::CString::new(root.collab("inbox/pipe.yaml").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    root.run_once_ok();
    let link = root.collab("rejected/link.yaml");
    assert!(
        std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
        "the link itself is kept"
    );
    assert!(root.collab("rejected/dir.yaml").is_dir());
    assert!(root.exists("rejected/pipe.yaml.reason.yaml"));
    assert!(
        root.read("rejected/link.yaml.reason.yaml")
            .contains("symbolic link")
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "agent: bot\ntitle: secret\n"
    );
    assert!(root.events_named("task_assigned").is_empty());
}

/// A burst of every kind of entry at once: the decisions come in name order, one file at a
/// time, and every entry gets the outcome it gets alone.
#[test]
fn a_burst_is_decided_in_name_order_with_every_outcome_intact() {
    let root = Root::new(CFG);
    for i in 0..30 {
        root.drop_task(
            &format!("t{i:02}.yaml"),
            &format!("id: t{i:02}\nagent: bot\ntitle: task {i}\n"),
        );
    }
    // The same id twice: the first by name is assigned, the second refused.
    root.drop_task("dup-a.yaml", "id: same\nagent: bot\ntitle: first\n");
    root.drop_task("dup-b.yaml", "id: same\nagent: bot\ntitle: second\n");
    let broken: &[(&str, &[u8], &str)] = &[
        ("broken.yaml", b"agent: bot\ntitle: [unclosed\n", "line"),
        ("latin1.yaml", b"agent: bot\ntitle: caf\xe9\n", "UTF-8"),
    ];
    for (name, bytes, _) in broken {
        std::fs::write(root.collab(&format!("inbox/{name}")), bytes).unwrap();
    }
    std::fs::create_dir(root.collab("inbox/dir.yaml")).unwrap();
    std::os::unix::fs::symlink(root.p("nowhere.yaml"), root.collab("inbox/link.yaml")).unwrap();
    std::fs::write(root.collab("inbox/notes.txt"), "not a task").unwrap();
    // Old enough that the settle/grace waits do not apply.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    root.run_once_ok();

    for i in 0..30 {
        let rel = format!("assigned/bot/t{i:02}.yaml");
        assert_eq!(root.field(&rel, "status").as_deref(), Some("assigned"), "{rel}");
    }
    assert_eq!(
        root.field("assigned/bot/same.yaml", "title").as_deref(),
        Some("first")
    );
    assert_rejected(
        &root,
        "dup-b.yaml",
        b"id: same\nagent: bot\ntitle: second\n",
        "duplicate",
    );
    for (name, bytes, why) in broken {
        assert_rejected(&root, name, bytes, why);
    }
    assert!(root.collab("rejected/dir.yaml").is_dir());
    assert!(
        root.read("rejected/link.yaml.reason.yaml")
            .contains("symbolic link")
    );
    assert!(
        root.exists("inbox/notes.txt"),
        "a file that is not YAML is left alone"
    );
    let assigned: Vec<String> = root
        .events_named("task_assigned")
        .iter()
        .map(|e| e["task_id"].as_str().unwrap().to_string())
        .collect();
    let mut in_name_order = assigned.clone();
    in_name_order.sort_by_key(|id| {
        if id == "same" {
            "dup-a".to_string()
        } else {
            id.clone()
        }
    });
    assert_eq!(assigned, in_name_order, "decided out of name order");
    assert_eq!(assigned.len(), 31);
    assert_eq!(root.events_named("task_rejected").len(), 5);
}

/// A file the daemon may not read is refused with a reason, and the daemon goes on: exiting
/// on it would meet the same file at every restart. Run as root, the daemon is started as
/// `nobody` (root reads every file).
#[test]
fn an_unreadable_file_is_rejected_and_the_daemon_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new(CFG);
    root.drop_task("fine.yaml", "id: fine\nagent: bot\ntitle: fine\n");
    root.drop_task("secret.yaml", "id: secret\nagent: bot\ntitle: hidden\n");
    let secret = root.collab("inbox/secret.yaml");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Old enough that the settle wait does not apply.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let status = if unsafe { libc::geteuid() } == 0 {
        // `nobody` needs the root and a binary it may run.
        let bin = root.p("agentplane");
        std::fs::copy(BIN, &bin).unwrap();
        let chown = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(root.path())
            .status()
            .unwrap();
        assert!(chown.success());
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("--root")
            .arg(root.path())
            .args(["daemon", "--once"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("setpriv (util-linux)")
    } else {
        root.run_once().status
    };
    assert!(
        status.success(),
        "the daemon failed on an unreadable file: {status:?}"
    );
    assert_eq!(
        root.field("assigned/bot/fine.yaml", "status").as_deref(),
        Some("assigned")
    );
    assert!(!root.exists("inbox/secret.yaml"));
    std::fs::set_permissions(
        root.collab("rejected/secret.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert_rejected(
        &root,
        "secret.yaml",
        b"id: secret\nagent: bot\ntitle: hidden\n",
        "may not read",
    );
    assert!(root.read("rejected/secret.yaml.reason.yaml").contains("chmod"));
}

#[test]
fn alias_bomb_is_rejected() {
    let root = Root::new(CFG);
    let mut bomb = String::from("agent: bot\ntitle: bomb\na0: &a0 [");
    bomb.push_str(&vec!["x"; 1000].join(","));
    bomb.push_str("]\n");
    for level in 1..=6 {
        let prev = format!("*a{}", level - 1);
        bomb.push_str(&format!(
            "a{level}: &a{level} [{}]\n",
            [prev.as_str(); 10].join(",")
        ));
    }
    assert!(bomb.len() > 2000 && bomb.len() < 20_000, "{}", bomb.len());
    std::fs::write(root.collab("inbox/bomb.yaml"), &bomb).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    root.run_once_ok();
    assert_rejected(&root, "bomb.yaml", bomb.as_bytes(), "alias");
}

#[test]
fn byte_order_marks_crlf_and_numeric_scalars_are_read_as_users_expect() {
    let root = Root::new(CFG);
    root.drop_task(
        "bom.yaml",
        "\u{feff}id: bom\nagent: bot\ntitle: Saved by a Windows editor\n",
    );
    root.drop_task(
        "crlf.yaml",
        "id: crlf\r\nagent: bot\r\ntitle: CRLF\r\n# comment\r\n",
    );
    root.drop_task("num.yaml", "id: 12345\nagent: bot\ntitle: 42\n");
    root.run_once_ok();
    let bom = root.read("assigned/bot/bom.yaml");
    assert!(
        bom.starts_with("\u{feff}id: bom\n") && bom.contains("status: assigned"),
        "{bom:?}"
    );
    let crlf = root.read("assigned/bot/crlf.yaml");
    assert!(
        crlf.contains("# comment\r\n") && crlf.contains("status: assigned\r\n"),
        "{crlf:?}"
    );
    assert!(root.exists("assigned/bot/12345.yaml"), "{:?}", root.files());
    assert!(root.events_named("task_rejected").is_empty());
}

#[test]
fn a_file_dated_in_the_future_is_taken_at_once() {
    // Copied with its times kept from a machine whose clock runs ahead: its mtime says
    // nothing about a writer still at work.
    let root = Root::new(CFG);
    root.drop_task("ahead.yaml", "id: ahead\nagent: bot\ntitle: From a fast clock\n");
    let tomorrow = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(root.collab("inbox/ahead.yaml"))
        .unwrap()
        .set_modified(tomorrow)
        .unwrap();
    let daemon = root.spawn_daemon(&[]);
    wait_for(10, "the task assigned", || root.exists("assigned/bot/ahead.yaml"));
    assert!(stop_daemon(daemon).success());
}

#[test]
fn a_taken_inbox_file_is_rewritten_in_place_unless_another_name_links_it() {
    let root = Root::new("agents:\n  human: {}\n");
    let text = |id: &str| format!("id: {id}\nagent: human\ntitle: Task {id}\n");
    root.drop_task("own.yaml", &text("own"));
    let own_ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(root.collab("inbox/own.yaml")).unwrap());
    // A file kept elsewhere and linked into the inbox: its other name must not change.
    let elsewhere = root.p("elsewhere.yaml");
    std::fs::write(&elsewhere, text("linked")).unwrap();
    std::fs::hard_link(&elsewhere, root.collab("inbox/linked.yaml")).unwrap();
    root.run_once_ok();
    for id in ["own", "linked"] {
        let rel = format!("assigned/human/{id}.yaml");
        assert_eq!(root.field(&rel, "status").as_deref(), Some("assigned"), "{id}");
    }
    let assigned_ino = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(root.collab("assigned/human/own.yaml")).unwrap(),
    );
    assert_eq!(assigned_ino, own_ino, "the inbox file was not rewritten in place");
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), text("linked"));
}

/// Large files are read ahead of their decisions only up to a bound: a drop of 20 files of
/// nearly 1 MB each is taken in more than one batch, every file intact.
#[test]
fn a_drop_of_large_files_is_taken_in_bounded_batches() {
    let root = Root::new(CFG);
    let body: String = (0..20_000)
        .map(|i| format!("  line {i:05} of the task's long notes\n"))
        .collect();
    assert!(body.len() > 600_000 && body.len() < 1_000_000);
    for i in 0..30 {
        root.drop_task(
            &format!("big{i:02}.yaml"),
            &format!("id: big{i:02}\nagent: bot\ntitle: big {i}\ndescription: |\n{body}"),
        );
    }
    root.run_once_ok();
    for i in 0..30 {
        let text = root.read(&format!("assigned/bot/big{i:02}.yaml"));
        assert!(text.contains(&body), "big{i:02}: the notes changed");
        assert_eq!(yaml_field(&text, "status").as_deref(), Some("assigned"));
    }
    let batches: std::collections::BTreeSet<u64> = root
        .events_named("task_assigned")
        .iter()
        .map(|e| e["batch"].as_u64().unwrap())
        .collect();
    assert!(
        batches.len() >= 2,
        "30 files of ~{} bytes in one batch",
        body.len()
    );
}

/// A rejection never takes a name another rejection (of the same batch, or earlier) holds or
/// will write its reason to: here a file named like another's reason sidecar, rejected with
/// it, and an earlier rejected file named like the sidecar a later rejection would write.
#[test]
fn rejections_never_overwrite_each_other_or_their_reasons() {
    let root = Root::new("agents:\n  bot: {}\n");
    let broken = "agent: bot\ntitle: [unclosed\n";
    let no_agent = "title: no agent\n";
    // Already in rejected/: a file that happens to be named `late.yaml.reason.yaml`.
    std::fs::write(
        root.collab("rejected/late.yaml.reason.yaml"),
        "an earlier rejected file\n",
    )
    .unwrap();
    root.drop_task("early.yaml", broken);
    root.drop_task("early.yaml.reason.yaml", no_agent);
    root.drop_task("late.yaml", broken);
    root.run_once_ok();
    let rejected = root.events_named("task_rejected");
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    let mut names: Vec<&str> = rejected.iter().map(|e| e["path"].as_str().unwrap()).collect();
    names.sort();
    // Every rejected file kept byte for byte under its own name, each with its own reason.
    for (ev, original) in rejected.iter().zip([broken, no_agent, broken]) {
        let path = ev["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("work/collaboration/");
        assert_eq!(
            root.read(path),
            original,
            "{path} kept as dropped; files: {:?}",
            root.files()
        );
        let reason = root.read(&format!("{path}.reason.yaml"));
        assert!(reason.contains("what_to_do"), "{path}'s own reason: {reason}");
        assert!(
            reason.contains(&format!("event_seq: {}", ev["seq"])),
            "{path}: {reason}"
        );
    }
    assert_eq!(
        root.read("rejected/late.yaml.reason.yaml"),
        "an earlier rejected file\n",
        "a file already in rejected/ is never overwritten; names: {names:?}"
    );
}
