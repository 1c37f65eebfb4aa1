//! Execution: argv templating without a shell, logs per attempt, result.yaml or last stdout
//! line as the summary, retries then error, timeouts and cancel down the signal ladder with
//! no process left behind, and the concurrency and ordering limits.

mod common;
use common::*;

fn config(script: &str, extra: &str) -> String {
    format!(
        "settle_ms: 20\nmax_concurrent: 4\ncancel: {{ interrupt_s: 0.3, terminate_s: 0.3 }}\nagents:\n  bot:\n    command: [\"sh\", \"{script}\", \"{{task_id}}\", \"{{title}}\", \"{{log_dir}}\", \"{{attempt}}\"]\n{extra}"
    )
}

fn root_with_agent(body: &str, extra: &str) -> Root {
    let root = Root::new("");
    let script = root.agent_script("bot", body);
    std::fs::write(root.p("agentplane.yaml"), config(&script, extra)).unwrap();
    root
}

#[test]
fn exit_zero_is_done_with_summary_and_logs() {
    let root = root_with_agent(
        "echo \"arg count $#\"; printf '%s\\n' \"$2\" > \"$3/title-arg\"; echo 'all good here'",
        "",
    );
    let title = "Quote \"this\"; rm -rf / $(boom) {task_id}";
    root.drop_task(
        "t.yaml",
        &format!("id: t1\nagent: bot\ntitle: '{}'\n", title.replace('\'', "''")),
    );
    root.run_once_ok();
    assert!(root.exists("done/bot/t1.yaml"), "{:?}", root.files());
    let done = root.read("done/bot/t1.yaml");
    assert!(done.contains("status: done"), "{done}");
    assert!(
        done.contains("all good here"),
        "summary is the last stdout line: {done}"
    );
    let log = root.p("work/logs/t1/1");
    assert_eq!(
        std::fs::read_to_string(log.join("stdout.log")).unwrap(),
        "arg count 4\nall good here\n"
    );
    assert_eq!(
        std::fs::read_to_string(log.join("title-arg")).unwrap(),
        format!("{title}\n"),
        "one argument, unexpanded"
    );
    assert!(
        std::fs::read_to_string(log.join("prompt.md"))
            .unwrap()
            .contains("Quote")
    );
    let completed = root.events_named("task_completed");
    assert_eq!(completed.len(), 1);
    let start = root.events_named("execution_start");
    assert!(start[0]["pid"].as_u64().is_some());
}

#[test]
fn result_yaml_becomes_the_result_and_next_agent_hands_off_once() {
    let root = root_with_agent(
        "cat > \"$3/result.yaml\" <<EOF\nsummary: wrote the docs\nartefacts: [docs/a.md]\nnext_agent: reviewer\nnext_task_title: Review the docs\nEOF",
        "  reviewer: {}\n",
    );
    root.drop_task("t.yaml", "id: docs\nagent: bot\ntitle: Write docs\n");
    root.run_once_ok();
    let done = root.read("done/bot/docs.yaml");
    assert!(
        done.contains("wrote the docs") && done.contains("next_agent: reviewer"),
        "{done}"
    );
    // The follow-up arrives in the inbox; the next pass assigns it.
    root.run_once_ok();
    assert!(
        root.exists("assigned/reviewer/docs-to-reviewer.yaml"),
        "{:?}",
        root.files()
    );
    let follow = root.read("assigned/reviewer/docs-to-reviewer.yaml");
    assert!(
        follow.contains("previous_task: docs") && follow.contains("Review the docs"),
        "{follow}"
    );
    root.run_once_ok();
    assert_eq!(root.events_named("handoff_created").len(), 1);
}

#[test]
fn failures_retry_then_error_with_error_block() {
    let root = root_with_agent("echo \"failing attempt $4\" >&2; exit 3", "    max_attempts: 2\n");
    root.drop_task("t.yaml", "id: bad\nagent: bot\ntitle: Always fails\n");
    root.run_once_ok();
    assert!(root.exists("error/bot/bad.yaml"), "{:?}", root.files());
    let err = root.read("error/bot/bad.yaml");
    assert!(
        err.contains("status: error") && err.contains("exit_code: 3") && err.contains("attempt: 2"),
        "{err}"
    );
    assert_eq!(root.events_named("task_retry_scheduled").len(), 1);
    assert_eq!(root.events_named("task_failed").len(), 1);
    assert!(root.p("work/logs/bad/2/stderr.log").exists());
}

#[test]
fn timeout_takes_down_the_whole_group_even_if_sigint_is_ignored() {
    let root = root_with_agent(
        "trap '' INT; sleep 1000 & echo $! > \"$3/grandchild.pid\"; echo $$ > \"$3/child.pid\"; wait",
        "    timeout_s: 1\n",
    );
    root.drop_task("t.yaml", "id: slow\nagent: bot\ntitle: Takes forever\n");
    root.run_once_ok();
    assert!(root.exists("error/bot/slow.yaml"), "{:?}", root.files());
    assert!(root.read("error/bot/slow.yaml").contains("timed out"));
    let dir = root.p("work/logs/slow/1");
    let grandchild: i32 = std::fs::read_to_string(dir.join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let child: i32 = std::fs::read_to_string(dir.join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(
        10,
        "grandchild gone",
        || unsafe { libc::kill(grandchild, 0) } != 0,
    );
    assert!(!group_alive(child), "no process of the group is left");
    assert_eq!(root.events_named("task_timed_out").len(), 1);
}

#[test]
fn cancel_stops_a_running_child() {
    let root = root_with_agent("echo $$ > \"$3/child.pid\"; sleep 1000", "");
    let daemon = root.spawn_daemon(&[]);
    root.drop_task("t.yaml", "id: long\nagent: bot\ntitle: Long job\n");
    wait_for(30, "child started", || {
        root.p("work/logs/long/1/child.pid").exists()
    });
    let out = root.cmd(&["cancel", "long", "--reason", "superseded"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(30, "task cancelled", || root.exists("error/bot/long.yaml"));
    let text = root.read("error/bot/long.yaml");
    assert!(text.contains("superseded"), "{text}");
    let child: i32 = std::fs::read_to_string(root.p("work/logs/long/1/child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(10, "child gone", || !group_alive(child));
    assert!(stop_daemon(daemon).success());
    assert!(
        root.files().iter().all(|f| !f.starts_with("inbox/cmd-")),
        "command file consumed"
    );
}

#[test]
fn a_task_that_can_start_at_once_leaves_the_inbox_already_started() {
    // The child records the inode and text of the task file it was given.
    let root = root_with_agent(
        "stat -c %i \"$AGENTPLANE_TASK_FILE\" > \"$3/ino\"; cat \"$AGENTPLANE_TASK_FILE\" > \"$3/seen\"",
        "",
    );
    let staged = root.collab("inbox/.t.yaml.partial");
    std::fs::write(&staged, "id: quick\nagent: bot\ntitle: Start at once\n").unwrap();
    let dropped_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&staged).unwrap());
    std::fs::rename(&staged, root.collab("inbox/t.yaml")).unwrap();
    root.run_once_ok();
    assert!(root.exists("done/bot/quick.yaml"), "{:?}", root.files());
    let log = root.p("work/logs/quick/1");
    let seen = std::fs::read_to_string(log.join("seen")).unwrap();
    assert!(
        seen.contains("status: in_progress") && seen.contains("started_at:"),
        "{seen}"
    );
    assert!(seen.contains("assigned_at:"), "{seen}");
    // One new version of the file: the inbox file rewritten in its own inode, not copied again
    // to be started.
    let ino: u64 = std::fs::read_to_string(log.join("ino"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ino, dropped_ino, "the started file is the dropped file's inode");
    // One commit: the start's edits ride on the move out of the inbox, and the start orders
    // no file operation of its own.
    let assigned = &root.events_named("task_assigned")[0];
    let started = &root.events_named("task_started")[0];
    assert_eq!(assigned["batch"], started["batch"], "{assigned}\n{started}");
    assert_eq!(assigned["edits"]["status"], "in_progress", "{assigned}");
    assert!(assigned["edits"]["started_at"].is_string(), "{assigned}");
    assert!(started.get("op").is_none(), "{started}");
    assert_eq!(started["to"], "in_progress");
}

#[test]
fn an_agent_at_its_limit_or_without_a_command_holds_back_no_other_agent() {
    let root = Root::new("");
    let slow = root.agent_script("slow", "sleep 0.3");
    std::fs::write(
        root.p("agentplane.yaml"),
        format!(
            "settle_ms: 20\nmax_concurrent: 3\nagents:\n  human: {{}}\n  slow:\n    command: [\"sh\", \"{slow}\"]\n    max_concurrent: 1\n  fast:\n    command: [\"true\"]\n"
        ),
    )
    .unwrap();
    // Oldest and most urgent first: a human's task, two for the slow agent, one for the fast.
    for (name, agent, prio) in [
        ("h1", "human", "critical"),
        ("s1", "slow", "critical"),
        ("s2", "slow", "high"),
        ("f1", "fast", "low"),
    ] {
        root.drop_task(
            &format!("{name}.yaml"),
            &format!("id: {name}\nagent: {agent}\ntitle: {name}\npriority: {prio}\n"),
        );
    }
    root.run_once_ok();
    let started = root.events_named("task_started");
    let batch_of = |id: &str| {
        started
            .iter()
            .find(|e| e["task_id"] == id)
            .unwrap_or_else(|| panic!("{id} never started: {started:#?}"))["batch"]
            .as_u64()
            .unwrap()
    };
    // The slow agent's second task waits for its first; the fast agent's does not wait for it.
    assert_eq!(batch_of("s1"), batch_of("f1"), "{started:#?}");
    assert!(batch_of("s2") > batch_of("s1"), "{started:#?}");
    assert!(started.iter().all(|e| e["task_id"] != "h1"), "{started:#?}");
    assert!(root.exists("assigned/human/h1.yaml"), "{:?}", root.files());
    for id in ["s1", "s2"] {
        assert!(root.exists(&format!("done/slow/{id}.yaml")), "{:?}", root.files());
    }
    assert!(root.exists("done/fast/f1.yaml"), "{:?}", root.files());
}

#[test]
fn concurrency_limits_and_priority_order_hold() {
    let root = root_with_agent(
        "echo \"start $1 $(date +%s%N)\" >> \"$AGENTPLANE_ROOT/trace\"; sleep 0.2; echo \"end $1 $(date +%s%N)\" >> \"$AGENTPLANE_ROOT/trace\"",
        "    max_concurrent: 2\n",
    );
    for (i, prio) in ["low", "low", "critical", "normal", "high", "low"]
        .iter()
        .enumerate()
    {
        root.drop_task(
            &format!("t{i}.yaml"),
            &format!("id: t{i}-{prio}\nagent: bot\ntitle: T{i}\npriority: {prio}\n"),
        );
    }
    root.run_once_ok();
    let trace = std::fs::read_to_string(root.p("trace")).unwrap();
    let mut running = 0i32;
    let mut peak = 0;
    let mut events: Vec<(u128, i32, String)> = trace
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            (
                parts[2].parse().unwrap(),
                if parts[0] == "start" { 1 } else { -1 },
                parts[1].to_string(),
            )
        })
        .collect();
    events.sort();
    for (_, d, _) in &events {
        running += d;
        peak = peak.max(running);
    }
    assert!(peak <= 2, "at most 2 at once, saw {peak}: {trace}");
    // Start order is what the daemon decided, as logged: priority first, then age.
    let starts: Vec<String> = root
        .events_named("task_started")
        .iter()
        .map(|e| e["task_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        starts,
        [
            "t2-critical",
            "t4-high",
            "t3-normal",
            "t0-low",
            "t1-low",
            "t5-low"
        ]
    );
    assert_eq!(
        root.files().iter().filter(|f| f.starts_with("done/bot/")).count(),
        6
    );
}

#[test]
fn sigterm_interrupts_children_and_requeues_them() {
    let root = root_with_agent("echo $$ > \"$3/child.pid\"; sleep 1000", "");
    let daemon = root.spawn_daemon(&[]);
    root.drop_task("t.yaml", "id: job\nagent: bot\ntitle: Job\n");
    wait_for(30, "child started", || {
        root.p("work/logs/job/1/child.pid").exists()
    });
    assert!(stop_daemon(daemon).success());
    let child: i32 = std::fs::read_to_string(root.p("work/logs/job/1/child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!group_alive(child));
    assert_eq!(
        root.field("assigned/bot/job.yaml", "status").as_deref(),
        Some("assigned")
    );
    assert_eq!(root.events_named("task_interrupted").len(), 1);
    assert_eq!(root.events_named("daemon_stopped").len(), 1);
}

#[test]
fn dependencies_and_approval_gate_dispatch() {
    let root = root_with_agent("echo ok", "");
    root.drop_task(
        "a.yaml",
        "id: second\nagent: bot\ntitle: Second\ndepends_on: [first]\n",
    );
    root.drop_task(
        "b.yaml",
        "id: gated\nagent: bot\ntitle: Gated\nhuman_approval_required: true\n",
    );
    root.run_once_ok();
    assert!(root.exists("assigned/bot/second.yaml") && root.exists("assigned/bot/gated.yaml"));
    root.drop_task("c.yaml", "id: first\nagent: bot\ntitle: First\n");
    root.run_once_ok();
    assert!(
        root.exists("done/bot/first.yaml") && root.exists("done/bot/second.yaml"),
        "{:?}",
        root.files()
    );
    assert!(root.exists("assigned/bot/gated.yaml"));
    assert!(root.cmd(&["approve", "gated"]).status.success());
    root.run_once_ok();
    assert!(root.exists("done/bot/gated.yaml"), "{:?}", root.files());
}

#[test]
fn a_failed_dependency_blocks_its_dependents() {
    let root = root_with_agent("case $1 in base) exit 1;; esac; echo ok", "");
    root.drop_task("a.yaml", "id: base\nagent: bot\ntitle: Base\n");
    root.drop_task("b.yaml", "id: top\nagent: bot\ntitle: Top\ndepends_on: [base]\n");
    root.run_once_ok();
    assert!(root.exists("error/bot/base.yaml"));
    let top = root.read("assigned/bot/top.yaml");
    assert!(top.contains("status: blocked") && top.contains("base"), "{top}");
}
