//! The query path against the real binary: after a workload of valid, invalid, failing and
//! handed-off tasks, every query answer is compared with the task files on disk and the event
//! log, and the whole tree is hashed before and after each query to prove nothing changed;
//! the read models agree with the files; a rebuilt index equals the incrementally maintained
//! one row for row after kill -9 crashes; `check` finds each kind of problem; `wait` and
//! `--follow` return what they should.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const AGENT: &str = r#"
case "$1" in
  *fail*) echo "failing on purpose" >&2; exit 3 ;;
  *handoff*) printf 'summary: handed over\nnext_agent: human\nnext_task_title: Review it\n' > "$2/result.yaml" ;;
esac
echo "working on $1"
echo "{\"result\":\"did $1\",\"total_cost_usd\":0.25,\"usage\":{\"input_tokens\":100,\"output_tokens\":10},\"model\":\"m-$3\"}"
"#;

fn root_with_agent() -> Root {
    let root = Root::new("");
    let script = root.agent_script("bot", AGENT);
    std::fs::write(
        root.p("agentplane.yaml"),
        format!(
            "settle_ms: 10\nagents:\n  bot:\n    command: [\"sh\", \"{script}\", \"{{task_id}}\", \"{{log_dir}}\", \"{{attempt}}\"]\n    max_attempts: 2\n  human: {{}}\n"
        ),
    )
    .unwrap();
    root
}

/// Valid, invalid, failing, blocked, handed-off and hand-worked tasks, plus one inconsistent
/// file adopted where it lies; run until everything settled.
fn mixed_workload() -> Root {
    let root = root_with_agent();
    for i in 1..=4 {
        root.drop_task(
            &format!("ok-{i}.yaml"),
            &format!("id: ok-{i}\nagent: bot\ntitle: Task {i}\n"),
        );
    }
    root.drop_task(
        "fail-1.yaml",
        "id: fail-1\nagent: bot\ntitle: Fails\npriority: high\n",
    );
    root.drop_task(
        "dep-1.yaml",
        "id: dep-1\nagent: bot\ntitle: Waits\ndepends_on: [fail-1]\n",
    );
    root.drop_task("handoff-1.yaml", "id: handoff-1\nagent: bot\ntitle: Hands over\n");
    root.drop_task("h-1.yaml", "id: h-1\nagent: human\ntitle: By hand\n");
    root.drop_task("broken.yaml", "agent: bot\ntitle: [unclosed\n");
    root.drop_task(
        "bad-status.yaml",
        "id: bad-1\nagent: bot\ntitle: X\nstatus: done\n",
    );
    root.drop_task("stranger.yaml", "id: s-1\nagent: nobody\ntitle: Unknown agent\n");
    std::fs::create_dir_all(root.collab("done/bot")).unwrap();
    std::fs::write(
        root.collab("done/bot/odd-1.yaml"),
        "id: odd-1\nagent: bot\ntitle: In the wrong folder\nstatus: assigned\n",
    )
    .unwrap();
    root.run_once_ok();
    // The follow-up task arrives in the inbox; the next run takes it in.
    root.run_once_ok();
    root
}

/// Every file under the root (dot-files and daemon state included): path → content digest.
fn tree(root: &Path) -> BTreeMap<String, (u64, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, u64)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(base, &p, out);
            } else {
                let mut h = DefaultHasher::new();
                std::fs::read(&p).unwrap_or_default().hash(&mut h);
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, (h.finish(), meta.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Run a query, asserting that the tree is byte for byte the same afterwards.
fn query(root: &Root, args: &[&str]) -> std::process::Output {
    let before = tree(root.path());
    let out = root.cmd(args);
    let after = tree(root.path());
    assert_eq!(before, after, "`agentplane {}` changed the tree", args.join(" "));
    out
}

fn query_json(root: &Root, args: &[&str]) -> Value {
    let out = query(root, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?} prints JSON: {e}"))
}

/// Task files on disk: id → (root-relative path, status in the file).
fn task_files(root: &Root) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for f in root.files() {
        let top = f.split('/').next().unwrap();
        if !["assigned", "done", "error", "fridge", "archive"].contains(&top) || !f.ends_with(".yaml") {
            continue;
        }
        let text = root.read(&f);
        let id = yaml_field(&text, "id").unwrap();
        let status = yaml_field(&text, "status").unwrap();
        out.insert(id, (format!("work/collaboration/{f}"), status));
    }
    out
}

/// id → (path, status) of a JSON task list (`list --json`, `status.json`), shaped like
/// `task_files`.
fn paths_and_statuses(tasks: &Value) -> BTreeMap<String, (String, String)> {
    let text = |t: &Value, key: &str| t[key].as_str().unwrap().to_string();
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (text(t, "id"), (text(t, "path"), text(t, "status"))))
        .collect()
}

fn counts_of(files: &BTreeMap<String, (String, String)>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (_, status) in files.values() {
        *out.entry(status.clone()).or_default() += 1;
    }
    out
}

fn nonzero(counts: &Value) -> BTreeMap<String, u64> {
    counts
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(s, n)| (s.clone(), n.as_u64().unwrap()))
        .collect()
}

#[test]
fn every_answer_agrees_with_the_files_and_the_log_and_changes_nothing() {
    let root = mixed_workload();
    let files = task_files(&root);
    assert!(files.contains_key("handoff-1-to-human"), "{files:?}");
    assert_eq!(files["fail-1"].1, "error");
    assert_eq!(files["dep-1"].1, "blocked");
    let log_lines: Vec<String> = std::fs::read_to_string(root.p("work/.agentplane/events.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();

    // list: exactly the task files, with their status and path.
    let list = query_json(&root, &["list", "--json"]);
    assert_eq!(paths_and_statuses(&list["tasks"]), files);
    assert_eq!(list["last_seq"].as_u64().unwrap(), log_lines.len() as u64);
    // Filters.
    for status in ["done", "error", "blocked", "assigned"] {
        let l = query_json(&root, &["list", "--json", "--status", status]);
        let ids: BTreeSet<&str> = l["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        let want: BTreeSet<&str> = files
            .iter()
            .filter(|(_, f)| f.1 == status)
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(ids, want, "--status {status}");
    }
    let l = query_json(&root, &["list", "--json", "--agent", "human"]);
    assert!(
        l["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["agent"] == "human")
    );
    assert_eq!(l["tasks"].as_array().unwrap().len(), 2);
    let l = query_json(&root, &["list", "--json", "--priority", "HIGH"]);
    assert_eq!(l["tasks"][0]["id"], "fail-1");
    assert_eq!(
        query(&root, &["list", "--status", "nonsense"]).status.code(),
        Some(2)
    );
    let human = String::from_utf8(query(&root, &["list"]).stdout).unwrap();
    assert!(
        human.starts_with("ID ") && human.lines().count() == files.len() + 1,
        "{human}"
    );

    // status and status.json: counts agree with the files.
    let status = query_json(&root, &["status", "--json"]);
    assert_eq!(nonzero(&status["counts"]), counts_of(&files));
    assert_eq!(status["last_seq"], status["log_last_seq"]);
    assert_eq!(status["daemon"]["running"], false);
    assert_eq!(status["agents"]["bot"]["error"], 1);
    assert!(
        status["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["path"] == "work/collaboration/done/bot/odd-1.yaml"
                && p["kind"] == "status_folder_mismatch"),
        "{status}"
    );
    let status_json: Value =
        serde_json::from_str(&std::fs::read_to_string(root.p("work/status/status.json")).unwrap()).unwrap();
    assert_eq!(nonzero(&status_json["counts"]), counts_of(&files));
    assert_eq!(status_json["last_seq"].as_u64().unwrap(), log_lines.len() as u64);
    assert_eq!(status_json["agents"], status["agents"]);
    assert_eq!(paths_and_statuses(&status_json["tasks"]), files);

    // events: the log, line for line; --task and --since filter it.
    let out = query(&root, &["events", "--json"]);
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(printed, log_lines);
    let out = query(&root, &["events", "--json", "--task", "ok-1", "--since", "3"]);
    let want: Vec<&String> = log_lines
        .iter()
        .filter(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            e["task_id"] == "ok-1" && e["seq"].as_u64().unwrap() > 3
        })
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), want.len());
    assert!(!want.is_empty());

    // show: the file's fields, the task's events and its attempts with their logs.
    let show = query_json(&root, &["show", "fail-1", "--json"]);
    assert_eq!(show["file"]["path"], files["fail-1"].0.as_str());
    assert_eq!(show["file"]["fields"]["status"], "error");
    assert_eq!(show["file"]["fields"]["error"]["exit_code"], 3);
    let attempts = show["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1]["outcome"], "failed");
    assert_eq!(attempts[1]["exit_code"], 3);
    assert!(
        attempts[1]["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "work/logs/fail-1/2/stderr.log")
    );
    let task_events: Vec<&String> = log_lines
        .iter()
        .filter(|l| l.contains("\"task_id\":\"fail-1\""))
        .collect();
    assert_eq!(show["events"].as_array().unwrap().len(), task_events.len());
    assert_eq!(query(&root, &["show", "no-such-task"]).status.code(), Some(1));
    let rejected = query_json(&root, &["show", "bad-status", "--json"]);
    assert_eq!(
        rejected["file"]["path"],
        "work/collaboration/rejected/bad-status.yaml"
    );
    assert!(
        rejected["rejection"]["reason"]
            .as_str()
            .unwrap()
            .contains("status"),
        "{rejected}"
    );
    let human = String::from_utf8(query(&root, &["show", "ok-1"]).stdout).unwrap();
    assert!(
        human.contains("status    done") || human.contains("status      done"),
        "{human}"
    );

    // logs: the attempt's files.
    let out = query(&root, &["logs", "ok-2"]);
    assert_eq!(
        out.stdout,
        std::fs::read(root.p("work/logs/ok-2/1/stdout.log")).unwrap()
    );
    let out = query(&root, &["logs", "fail-1", "--attempt", "1", "--stderr"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "failing on purpose\n");
    let logs = query_json(&root, &["logs", "fail-1", "--stderr", "--json"]);
    assert_eq!(
        (logs["attempt"].as_u64(), logs["stream"].as_str()),
        (Some(2), Some("stderr"))
    );
    assert_eq!(query(&root, &["logs", "h-1"]).status.code(), Some(1));

    // costs: the cost_update events, summed.
    let costs: Vec<Value> = log_lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "cost_update")
        .collect();
    assert_eq!(costs.len(), 5, "ok-1..4 and handoff-1");
    let by_agent = query_json(&root, &["costs", "--json"]);
    assert_eq!(by_agent["total"]["events"], 5);
    assert!((by_agent["total"]["cost_usd"].as_f64().unwrap() - 1.25).abs() < 1e-9);
    assert_eq!(by_agent["rows"][0]["key"], "bot");
    assert_eq!(by_agent["total"]["input_tokens"], 500);
    let by_model = query_json(&root, &["costs", "--by", "model", "--json"]);
    assert_eq!(by_model["rows"][0]["key"], "m-1");
    let by_day = query_json(&root, &["costs", "--by", "day", "--json"]);
    assert_eq!(by_day["rows"][0]["key"].as_str().unwrap().len(), 10);

    // runs: no event carries a run_id yet.
    assert_eq!(
        query_json(&root, &["runs", "--json"])["runs"],
        Value::Array(vec![])
    );
    assert_eq!(query(&root, &["runs", "r-1"]).status.code(), Some(1));

    // wait: terminal tasks answer at once.
    assert_eq!(query(&root, &["wait", "ok-1"]).status.code(), Some(0));
    assert_eq!(query(&root, &["wait", "fail-1"]).status.code(), Some(1));
    let w = query(&root, &["wait", "h-1", "--timeout", "0.2", "--json"]);
    assert_eq!(w.status.code(), Some(1));
    assert_eq!(
        serde_json::from_slice::<Value>(&w.stdout).unwrap()["outcome"],
        "timeout"
    );

    // check: the adopted inconsistent file is the one problem.
    let out = query(&root, &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<(&str, &str)> = check["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("work/collaboration/done/bot/odd-1.yaml", "status_folder_mismatch")]
    );

    // Without an index the answers come from the log, and say so; nothing is created.
    std::fs::remove_file(root.p("work/.agentplane/index.sqlite")).unwrap();
    let out = query(&root, &["list", "--json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no index"));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["tasks"], list["tasks"]);
    assert!(!root.p("work/.agentplane/index.sqlite").exists());
}

#[test]
fn read_models_follow_the_state_and_are_rewritten_only_on_change() {
    let root = mixed_workload();
    let status = |name: &str| std::fs::read_to_string(root.p(&format!("work/status/{name}"))).unwrap();
    let board = status("BOARD.md");
    assert!(
        board.contains("## Done (5)") && board.contains("| ok-1 |"),
        "{board}"
    );
    assert!(
        board.contains("## Blocked (1)") && board.contains("| dep-1 |"),
        "{board}"
    );
    let handoffs = status("HANDOFFS.md");
    assert!(
        handoffs.contains("| handoff-1 | bot | handoff-1-to-human | human | assigned |"),
        "{handoffs}"
    );
    let agents = status("AGENT_STATUS.md");
    assert!(
        agents.contains("| human | queued | 2 | 0 | 0 | 0 | 0 |"),
        "{agents}"
    );
    let log = status("WORKFLOW_LOG.md");
    let last_seq = root.events().len();
    assert!(
        log.contains(&format!("- `{last_seq}` ")) && log.contains("**daemon_stopped**"),
        "{log}"
    );
    // An idle restart changes the log (started/stopped) but no task: the task views stay put.
    use std::os::unix::fs::MetadataExt;
    let ino = |name: &str| {
        std::fs::metadata(root.p(&format!("work/status/{name}")))
            .unwrap()
            .ino()
    };
    let before: Vec<u64> = ["BOARD.md", "AGENT_STATUS.md", "HANDOFFS.md"]
        .iter()
        .map(|n| ino(n))
        .collect();
    let log_before = status("WORKFLOW_LOG.md");
    root.run_once_ok();
    let after: Vec<u64> = ["BOARD.md", "AGENT_STATUS.md", "HANDOFFS.md"]
        .iter()
        .map(|n| ino(n))
        .collect();
    assert_eq!(before, after, "unchanged read models are not rewritten");
    assert_ne!(
        status("WORKFLOW_LOG.md"),
        log_before,
        "the log view shows the new events"
    );
    let json: Value = serde_json::from_str(&status("status.json")).unwrap();
    assert_eq!(json["last_seq"].as_u64().unwrap(), root.events().len() as u64);
    assert!(json["generated_at"].as_str().unwrap().ends_with('Z'));
}

/// Every table of an index, each row as text, each table in key order.
fn dump(db: &Path) -> Vec<(String, Vec<String>)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables.sort();
    tables
        .into_iter()
        .map(|t| {
            let mut stmt = conn.prepare(&format!("SELECT * FROM {t}")).unwrap();
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            rows.sort();
            (t, rows)
        })
        .collect()
}

#[test]
fn a_rebuilt_index_equals_the_incremental_one_after_crashes() {
    let root = root_with_agent();
    let mut next = 0;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..12 {
        for _ in 0..(1 + rand(4)) {
            let id = match next % 5 {
                0 => format!("fail-{next}"),
                1 => format!("handoff-{next}"),
                2 => format!("h-{next}"),
                _ => format!("ok-{next}"),
            };
            let agent = if id.starts_with("h-") { "human" } else { "bot" };
            root.drop_task(
                &format!("{id}.yaml"),
                &format!("id: {id}\nagent: {agent}\ntitle: T {next}\n"),
            );
            next += 1;
        }
        if round % 4 == 0 {
            root.drop_task(&format!("broken-{round}.yaml"), "agent: bot\ntitle: [x\n");
        }
        let mut daemon = root.spawn_daemon(&[]);
        std::thread::sleep(Duration::from_millis(20 + rand(150)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
    }
    root.run_once_ok();
    root.run_once_ok();
    let db = root.p("work/.agentplane/index.sqlite");
    let incremental = dump(&db);
    assert!(
        incremental
            .iter()
            .any(|(t, rows)| t == "events" && rows.len() == root.events().len())
    );
    // `check` compares the index with a fresh projection of the log, too.
    let check = root.cmd(&["check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let out = root.cmd(&["index", "rebuild", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"].as_u64().unwrap(), root.events().len() as u64);
    assert_eq!(dump(&db), incremental, "rebuilt index = incremental index");
    // Deleting it loses nothing: the daemon rebuilds it at start.
    std::fs::remove_file(&db).unwrap();
    root.run_once_ok();
    let again = dump(&db);
    assert!(again.iter().any(|(t, rows)| t == "tasks" && !rows.is_empty()));
    // (That run logged its own start and stop: compare with a rebuild of the same log.)
    assert!(root.cmd(&["index", "rebuild"]).status.success());
    assert_eq!(dump(&db), again);
}

#[test]
fn index_rebuild_is_refused_while_a_daemon_runs() {
    let root = Root::new("");
    let daemon = root.spawn_daemon(&[]);
    wait_for(30, "daemon ready", || {
        !root.events_named("daemon_started").is_empty()
    });
    let out = root.cmd(&["index", "rebuild"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("daemon.lock") && stderr.contains(&daemon.id().to_string()),
        "{stderr}"
    );
    // Queries work meanwhile, and change nothing once the daemon is idle (its index's WAL
    // checkpointed and empty).
    root.drop_task("t.yaml", "id: t1\nagent: human\ntitle: T\n");
    let wal = root.p("work/.agentplane/index.sqlite-wal");
    wait_for(30, "daemon idle with an empty WAL", || {
        let status: Value = serde_json::from_slice(&root.cmd(&["status", "--json"]).stdout).unwrap();
        let model: Value = std::fs::read_to_string(root.p("work/status/status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        status["counts"]["assigned"] == 1
            && status["last_seq"] == status["log_last_seq"]
            && model["last_seq"] == status["log_last_seq"]
            && std::fs::metadata(&wal).is_ok_and(|m| m.len() == 0)
    });
    let status = query_json(&root, &["status", "--json"]);
    assert_eq!(status["daemon"]["pid"], daemon.id());
    query_json(&root, &["list", "--json"]);
    query_json(&root, &["show", "t1", "--json"]);
    assert_eq!(query(&root, &["events", "--task", "t1"]).status.code(), Some(0));
    assert!(stop_daemon(daemon).success());
    assert!(root.cmd(&["index", "rebuild"]).status.success());
}

fn check_kinds(root: &Root) -> Vec<(String, String)> {
    let out = root.cmd(&["check", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(i32::from(v["ok"] != true)));
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert!(p.get("task_id").is_some());
            (
                p["path"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn has(kinds: &[(String, String)], path: &str, kind: &str) -> bool {
    kinds.iter().any(|(p, k)| p.ends_with(path) && k == kind)
}

#[test]
fn check_finds_each_kind_of_problem() {
    let root = Root::new("settle_ms: 10\nagents:\n  bot: {}\n  zed: {}\n");
    root.drop_task("a.yaml", "id: a\nagent: bot\ntitle: A\n");
    root.drop_task("b.yaml", "id: b\nagent: bot\ntitle: B\n");
    root.run_once_ok();
    let out = root.cmd(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("consistent"));
    let old_index = std::fs::read(root.p("work/.agentplane/index.sqlite")).unwrap();

    let put = |rel: &str, text: &str| {
        let p = root.collab(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(
        "done/bot/x1.yaml",
        "id: x1\nagent: bot\ntitle: X1\nstatus: assigned\n",
    );
    put(
        "assigned/bot/x2.yaml",
        "id: other\nagent: bot\ntitle: X2\nstatus: assigned\n",
    );
    put("error/bot/x3.yaml", "id: x3\nagent: bot\ntitle: [broken\n");
    put(
        "assigned/bot/x4.yaml",
        "id: x4\nagent: bot\ntitle: X4\nstatus: pending\n",
    );
    put(
        "assigned/zed/a.yaml",
        "id: a\nagent: zed\ntitle: A again\nstatus: assigned\n",
    );
    put(
        "assigned/bot/x5.yaml",
        "id: x5\nagent: bot\ntitle: Never logged\nstatus: assigned\n",
    );
    std::fs::remove_file(root.collab("assigned/bot/b.yaml")).unwrap();
    let kinds = check_kinds(&root);
    assert!(
        has(&kinds, "done/bot/x1.yaml", "status_folder_mismatch"),
        "{kinds:?}"
    );
    assert!(has(&kinds, "assigned/bot/x2.yaml", "id_mismatch"), "{kinds:?}");
    assert!(has(&kinds, "error/bot/x3.yaml", "invalid_file"), "{kinds:?}");
    assert!(has(&kinds, "assigned/bot/x4.yaml", "invalid_file"), "{kinds:?}");
    assert!(has(&kinds, "assigned/zed/a.yaml", "duplicate_id"), "{kinds:?}");
    assert!(has(&kinds, "assigned/bot/x5.yaml", "unlogged_task"), "{kinds:?}");
    assert!(has(&kinds, "assigned/bot/b.yaml", "missing_file"), "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|(_, k)| k.starts_with("index") || k.ends_with("_log")),
        "{kinds:?}"
    );

    // The daemon records what it can; the index moves on. An older index is behind.
    for f in [
        "done/bot/x1.yaml",
        "assigned/bot/x2.yaml",
        "error/bot/x3.yaml",
        "assigned/bot/x4.yaml",
        "assigned/zed/a.yaml",
    ] {
        std::fs::remove_file(root.collab(f)).unwrap();
    }
    root.run_once_ok();
    assert_eq!(check_kinds(&root), Vec::<(String, String)>::new());
    let db = root.p("work/.agentplane/index.sqlite");
    let current = std::fs::read(&db).unwrap();
    std::fs::write(&db, &old_index).unwrap();
    assert!(has(&check_kinds(&root), "index.sqlite", "index_behind"));
    // A changed row: diverged.
    std::fs::write(&db, &current).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("UPDATE tasks SET title = 'tampered' WHERE id = 'a'", [])
            .unwrap();
    }
    assert!(has(&check_kinds(&root), "index.sqlite", "index_diverged"));
    std::fs::write(&db, b"garbage").unwrap();
    assert!(has(&check_kinds(&root), "index.sqlite", "index_unreadable"));
    std::fs::remove_file(&db).unwrap();
    assert!(has(&check_kinds(&root), "index.sqlite", "index_missing"));
    assert!(root.cmd(&["index", "rebuild"]).status.success());
    assert_eq!(check_kinds(&root), Vec::<(String, String)>::new());

    // A torn last line; then a damaged earlier line.
    let log = root.p("work/.agentplane/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, format!("{text}{{\"v\":1,\"seq\":9999,\"ts\"")).unwrap();
    assert!(has(&check_kinds(&root), "events.jsonl", "torn_log"));
    std::fs::write(&log, text.replacen("\"agent\":\"bot\"", "\"agent\":\"bat\"", 1)).unwrap();
    let kinds = check_kinds(&root);
    assert!(has(&kinds, "events.jsonl", "corrupt_log"), "{kinds:?}");
}

#[test]
fn wait_and_follow_see_the_daemon_at_work() {
    let root = root_with_agent();
    let daemon = root.spawn_daemon(&[]);
    wait_for(30, "daemon ready", || {
        !root.events_named("daemon_started").is_empty()
    });
    // Followers started before the work exists.
    let spawn = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--root")
            .arg(root.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut follow = spawn(&["events", "--follow", "--json", "--task", "ok-1"]);
    let wait_ok = spawn(&["wait", "ok-1", "--json"]);
    let wait_fail = spawn(&["wait", "fail-1"]);
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    root.drop_task("ok-1.yaml", "id: ok-1\nagent: bot\ntitle: Fine\n");
    root.drop_task("fail-1.yaml", "id: fail-1\nagent: bot\ntitle: Fails\n");
    let ok = wait_ok.wait_with_output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let answer: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(
        (answer["outcome"].as_str(), answer["status"].as_str()),
        (Some("done"), Some("done"))
    );
    assert_eq!(wait_fail.wait_with_output().unwrap().status.code(), Some(1));
    let mut seen: HashMap<String, u64> = HashMap::new();
    while !seen.contains_key("task_completed") {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("follow prints the task's events");
        let e: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(e["task_id"], "ok-1");
        seen.insert(
            e["event"].as_str().unwrap().to_string(),
            e["seq"].as_u64().unwrap(),
        );
    }
    assert!(seen["task_assigned"] < seen["task_completed"]);
    follow.kill().unwrap();
    follow.wait().unwrap();
    // logs --follow ends with the attempt.
    let out = root.cmd(&["logs", "ok-1", "--follow"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("working on ok-1"));
    // With the daemon running, the index is maintained as the work goes.
    wait_for(30, "index caught up", || {
        let s: Value = serde_json::from_slice(&root.cmd(&["status", "--json"]).stdout).unwrap();
        s["last_seq"] == s["log_last_seq"] && s["counts"]["done"] == 1
    });
    assert!(stop_daemon(daemon).success());
}
