use super::read::{Reader, TaskFilter};
use super::*;
use crate::command::State;
use crate::store::journal::Journal;
use serde_json::json;

fn meta(agent: &str, title: &str) -> Value {
    json!({"title": title, "agent": agent, "priority": "high", "depends_on": ["x"],
           "approval_required": false, "timeout_s": null, "max_attempts": null})
}

use serde_json::Value;

/// A little history touching every table: intake, a run that fails and is retried, a run
/// that completes with costs, an adopted inconsistent file, a reported file, a reassign, a
/// deletion, and events of a run container.
fn history() -> Vec<Event> {
    let mut evs = Vec::new();
    let mut e = Event::task("task_received", "a");
    e.path = Some("work/collaboration/inbox/a.yaml".into());
    evs.push(e);
    let mut e = Event::task("task_assigned", "a");
    e.to = Some("assigned".into());
    e.op = Some("move".into());
    e.src = Some("work/collaboration/inbox/a.yaml".into());
    e.path = Some("work/collaboration/assigned/bot/a.yaml".into());
    e.run_id = Some("run-1".into());
    evs.push(e.with_data("task", meta("bot", "Task A")));
    for attempt in 1..=2 {
        let mut e = Event::task("task_started", "a");
        e.attempt = Some(attempt);
        e.to = Some("in_progress".into());
        e.op = Some("move".into());
        e.path = Some("work/collaboration/assigned/bot/a.yaml".into());
        evs.push(e);
        let mut e = Event::task("execution_start", "a");
        e.attempt = Some(attempt);
        e.pid = Some(100 + attempt);
        evs.push(e);
        let mut e = Event::task("execution_complete", "a");
        e.attempt = Some(attempt);
        e.exit_code = Some(if attempt == 1 { 3 } else { 0 });
        e.duration_ms = Some(12);
        e.log_paths = Some(vec![format!("work/logs/a/{attempt}/stdout.log")]);
        evs.push(e);
        if attempt == 1 {
            let mut e = Event::task("task_retry_scheduled", "a");
            e.attempt = Some(1);
            e.error = Some("the agent exited with code 3".into());
            e.to = Some("assigned".into());
            e.op = Some("move".into());
            e.path = Some("work/collaboration/assigned/bot/a.yaml".into());
            evs.push(e);
        }
    }
    let mut e = Event::task("task_completed", "a");
    e.attempt = Some(2);
    e.summary = Some("did it".into());
    e.to = Some("done".into());
    e.op = Some("move".into());
    e.run_id = Some("run-1".into());
    e.path = Some("work/collaboration/done/bot/a.yaml".into());
    evs.push(e);
    let mut e = Event::task("cost_update", "a");
    e.agent = Some("bot".into());
    e.attempt = Some(2);
    e.data = Some(
        json!({"cost_usd": 0.1234567, "input_tokens": 10, "output_tokens": 5, "model": "m1"})
            .as_object()
            .unwrap()
            .clone(),
    );
    evs.push(e);
    let mut e = Event::task("task_discovered", "b");
    e.to = Some("done".into());
    e.path = Some("work/collaboration/assigned/human/b.yaml".into());
    e.error = Some("status `done` belongs in done/".into());
    evs.push(
        e.with_data("task", meta("human", "Task B"))
            .with_data("problem", json!("status_folder_mismatch")),
    );
    let mut e = Event::new("problem_detected");
    e.path = Some("work/collaboration/assigned/bot/broken.yaml".into());
    e.error = Some("not valid YAML".into());
    evs.push(e.with_data("kind", json!("invalid_file")));
    let mut e = Event::task("task_assigned", "c");
    e.to = Some("assigned".into());
    e.op = Some("move".into());
    e.path = Some("work/collaboration/assigned/bot/c.yaml".into());
    evs.push(e.with_data("task", meta("bot", "Task C")));
    let mut e = Event::task("task_reassigned", "c");
    e.agent = Some("human".into());
    e.op = Some("move".into());
    e.path = Some("work/collaboration/assigned/human/c.yaml".into());
    evs.push(e);
    let mut e = Event::task("task_assigned", "d");
    e.to = Some("assigned".into());
    e.op = Some("move".into());
    e.path = Some("work/collaboration/assigned/bot/d.yaml".into());
    evs.push(e.with_data("task", meta("bot", "Task D")));
    let mut e = Event::task("task_deleted", "d");
    e.path = Some("work/collaboration/assigned/bot/d.yaml".into());
    evs.push(e);
    evs.push(Event::new("daemon_stopped"));
    evs
}

fn write_log(dir: &Path, evs: &mut [Event]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("events.jsonl");
    let mut j = Journal::open(&log, |_| {}).unwrap().journal;
    j.append(evs).unwrap();
    log
}

fn same(a: &Path, b: &Path) -> Option<String> {
    Reader::open(a, &a.with_file_name("events.jsonl"), false)
        .unwrap()
        .compare(&Reader::open(b, &b.with_file_name("events.jsonl"), false).unwrap())
        .unwrap()
}

#[test]
fn incremental_in_any_batches_equals_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let mut evs = history();
    let log = write_log(dir.path(), &mut evs);
    let rebuilt = dir.path().join("rebuilt.sqlite");
    let report = rebuild(&rebuilt, &log).unwrap();
    assert_eq!(report.events, evs.len() as u64);
    assert_eq!(report.tasks, 3);
    for split in [1, 2, 3, 5, 100] {
        // As in the daemon: each batch is appended to the log, then handed to the index.
        let sub = dir.path().join(format!("split{split}"));
        std::fs::create_dir_all(&sub).unwrap();
        let log = sub.join("events.jsonl");
        let mut journal = Journal::open(&log, |_| {}).unwrap().journal;
        let db = sub.join("index.sqlite");
        let (mut index, opened) = Index::open(&db, &log).unwrap();
        assert!(opened.rebuilt.is_some());
        let mut fresh = history();
        for batch in fresh.chunks_mut(split) {
            let places = journal.append(batch).unwrap();
            index.apply(batch, &places).unwrap();
            // Replays are skipped.
            assert_eq!(index.apply(batch, &places).unwrap(), 0);
        }
        index.close().unwrap();
        let reference = sub.join("rebuilt.sqlite");
        rebuild(&reference, &log).unwrap();
        assert_eq!(same(&db, &reference), None, "batches of {split}");
    }
}

#[test]
fn the_wal_grows_with_each_batch_and_a_checkpoint_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let mut journal = Journal::open(&log, |_| {}).unwrap().journal;
    let db = dir.path().join("index.sqlite");
    let (mut index, _) = Index::open(&db, &log).unwrap();
    assert!(index.checkpoint().unwrap());
    assert_eq!(index.wal_bytes(), 0);
    let mut evs = history();
    let mut before = 0;
    for batch in evs.chunks_mut(4) {
        let places = journal.append(batch).unwrap();
        index.apply(batch, &places).unwrap();
        // What the daemon's pause-time checkpoint goes by: the pages still to copy.
        assert!(index.wal_bytes() > before, "{} after {before}", index.wal_bytes());
        before = index.wal_bytes();
    }
    assert!(index.checkpoint().unwrap());
    assert_eq!(index.wal_bytes(), 0);
}

#[test]
fn a_batch_that_is_not_in_the_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), &mut history()[..4]);
    let db = dir.path().join("index.sqlite");
    let (mut index, _) = Index::open(&db, &log).unwrap();
    let mut stray = Event::new("rescan");
    stray.seq = 5;
    stray.ts = "2026-01-01T00:00:00.000Z".into();
    let end = std::fs::metadata(&log).unwrap().len();
    let line = crate::event::encode(&stray);
    // Where the next line would start, but the log does not hold it there.
    let after_the_log = Located::of(&line, end);
    assert!(matches!(
        index.apply(std::slice::from_ref(&stray), &[after_the_log]),
        Err(IndexError::Foreign { .. })
    ));
    // Not told where its line is.
    assert!(matches!(
        index.apply(std::slice::from_ref(&stray), &[]),
        Err(IndexError::Foreign { .. })
    ));
    // Not where the next line starts.
    let elsewhere = Located::of(&line, end + 10);
    assert!(matches!(
        index.apply(&[stray], &[elsewhere]),
        Err(IndexError::Foreign { .. })
    ));
    assert_eq!(index.last_seq(), 4);
}

#[test]
fn projection_agrees_with_the_daemon_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut evs = history();
    let log = write_log(dir.path(), &mut evs);
    let db = dir.path().join("index.sqlite");
    rebuild(&db, &log).unwrap();
    let mut state = State::default();
    for e in &evs {
        state.apply(e);
    }
    let reader = Reader::open(&db, &log, false).unwrap();
    let rows = reader.tasks(&TaskFilter::default()).unwrap();
    assert_eq!(rows.len(), state.tasks.len());
    for row in rows {
        let e = &state.tasks[row.id.as_str()];
        assert_eq!(row.status, e.status.as_str());
        assert_eq!(row.path, e.path());
        assert_eq!(row.agent, *e.agent);
        assert_eq!(row.title, *e.title);
        assert_eq!(row.priority, e.priority.as_str());
        assert_eq!(row.attempt, e.attempt);
        assert_eq!(row.depends_on, e.depends_on());
        assert_eq!(row.problem.as_deref(), e.problem());
        assert_eq!(crate::clock::parse_utc(&row.updated_at), e.updated_at);
    }
    let attempts = reader.attempts("a").unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>(),
        ["failed", "done"]
    );
    assert_eq!(attempts[0].exit_code, Some(3));
    assert_eq!(attempts[1].pid, Some(102));
    assert_eq!(reader.problems().unwrap().len(), 2);
    let costs = reader.costs(read::CostKey::Model).unwrap();
    assert_eq!(costs[0].key, "m1");
    assert_eq!(costs[0].cost_usd, 0.1234567);
    let runs = reader.runs(None).unwrap();
    assert_eq!((runs.len(), runs[0].tasks, runs[0].run.events), (1, 1, 2));
}

#[test]
fn open_rebuilds_a_foreign_or_broken_index_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut evs = history();
    let log = write_log(dir.path(), &mut evs[..5]);
    let db = dir.path().join("index.sqlite");
    let (index, opened) = Index::open(&db, &log).unwrap();
    assert_eq!((index.last_seq(), opened.caught_up), (5, 0));
    index.close().unwrap();
    // More events in the log: caught up at the next open.
    let mut j = Journal::open(&log, |_| {}).unwrap().journal;
    j.append(&mut evs[5..]).unwrap();
    let (index, opened) = Index::open(&db, &log).unwrap();
    assert_eq!(opened.rebuilt, None);
    assert_eq!(opened.caught_up, evs.len() as u64 - 5);
    index.close().unwrap();
    // Garbage in place of the index: rebuilt.
    std::fs::write(&db, b"not a database").unwrap();
    let (index, opened) = Index::open(&db, &log).unwrap();
    assert!(opened.rebuilt.is_some());
    assert_eq!(index.last_seq(), evs.len() as u64);
    index.close().unwrap();
    // Another log under the same index: rebuilt.
    std::fs::remove_file(&log).unwrap();
    let mut other = vec![Event::new("rescan"), Event::new("rescan")];
    write_log(dir.path(), &mut other);
    let (index, opened) = Index::open(&db, &log).unwrap();
    assert!(opened.rebuilt.is_some(), "{opened:?}");
    assert_eq!(index.last_seq(), 2);
    index.close().unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("-wal") || n.ends_with("-shm") || n.contains("rebuild")),
        "{names:?}"
    );
}

#[test]
fn reading_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut evs = history();
    let log = write_log(dir.path(), &mut evs);
    let db = dir.path().join("index.sqlite");
    let (index, _) = Index::open(&db, &log).unwrap();
    index.close().unwrap();
    let before = std::fs::read(&db).unwrap();
    let reader = Reader::open(&db, &log, false).unwrap();
    reader.tasks(&TaskFilter::default()).unwrap();
    drop(reader);
    let reader = Reader::open(&db, &log, true).unwrap();
    reader.tasks(&TaskFilter::default()).unwrap();
    drop(reader);
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no side files");
    // The in-memory projection has the same rows (meta included); a different one does not.
    let (from_log, _) = Reader::from_log(&log).unwrap();
    assert_eq!(
        from_log
            .compare(&Reader::open(&db, &log, false).unwrap())
            .unwrap(),
        None
    );
    let (shorter, _) = Reader::from_log(&write_log(&dir.path().join("x"), &mut history()[..3])).unwrap();
    assert!(shorter.compare(&from_log).unwrap().is_some());
}

#[test]
fn every_event_row_locates_its_own_line() {
    // More events than one grouped insert takes, and a remainder: every row must land on
    // its own line, in a rebuild and in batches of the daemon's sizes.
    let dir = tempfile::tempdir().unwrap();
    let make = || -> Vec<Event> {
        (0..150)
            .map(|i| {
                let mut e = Event::task("task_received", &format!("t{i}"));
                e.path = Some(format!("work/collaboration/inbox/t{i}.yaml"));
                e
            })
            .collect()
    };
    let mut evs = make();
    let log = write_log(dir.path(), &mut evs);
    let rebuilt = dir.path().join("rebuilt.sqlite");
    rebuild(&rebuilt, &log).unwrap();
    let sub = dir.path().join("batches");
    std::fs::create_dir_all(&sub).unwrap();
    let batched_log = sub.join("events.jsonl");
    let mut journal = Journal::open(&batched_log, |_| {}).unwrap().journal;
    let db = sub.join("index.sqlite");
    let (mut index, _) = Index::open(&db, &batched_log).unwrap();
    let mut fresh = make();
    for batch in fresh.chunks_mut(70) {
        let places = journal.append(batch).unwrap();
        index.apply(batch, &places).unwrap();
    }
    index.close().unwrap();
    for (db, log) in [(&rebuilt, &log), (&db, &batched_log)] {
        let reader = Reader::open(db, log, false).unwrap();
        for want in &evs {
            let line = reader
                .event_line(want.seq)
                .unwrap()
                .expect("a row for every event");
            let got = crate::event::decode(&line).unwrap();
            assert_eq!(
                (got.seq, &got.task_id),
                (want.seq, &want.task_id),
                "{}",
                db.display()
            );
        }
        let mut seqs = Vec::new();
        reader.task_events("t149", 0, |seq, _| seqs.push(seq)).unwrap();
        assert_eq!(seqs, [150], "{}", db.display());
    }
}

/// `history()` in a log of a temp dir, and the index a rebuild makes of it.
fn history_rebuilt() -> (tempfile::TempDir, Vec<Event>, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut evs = history();
    let log = write_log(dir.path(), &mut evs);
    let reference = dir.path().join("rebuilt.sqlite");
    rebuild(&reference, &log).unwrap();
    (dir, evs, log, reference)
}

/// A new index file with its tables and no rows.
fn empty_index(db: &Path) -> Connection {
    let conn = connect(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .unwrap();
    create_tables(&conn, db).unwrap();
    conn
}

#[test]
fn a_projection_that_keeps_its_rows_writes_the_same_rows_whenever_it_flushes() {
    // A rebuild's projector keeps every row and hands over only those changed since its last
    // flush; flushing after any number of events must leave the rows a single flush leaves.
    let (dir, evs, log, reference) = history_rebuilt();
    for every in [1, 2, 3, 5] {
        let db = dir.path().join(format!("every{every}.sqlite"));
        let mut conn = empty_index(&db);
        let tx = conn.transaction().unwrap();
        let mut st = Stmts::new(&tx).unwrap();
        let mut projector = Projector::keeping();
        let mut out = Outbox::default();
        let mut applied = 0;
        let end = logread::stream_as::<Views, rusqlite::Error>(&log, 0, |ev, line, at| {
            projector.apply(&mut NothingElse, &mut out, &ev, &Located::of(line, at))?;
            applied += 1;
            if applied % every == 0 {
                projector.flush(&mut out);
                out.write(&mut st)?;
                out.clear();
            }
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(end.events, evs.len() as u64);
        projector.flush(&mut out);
        out.write(&mut st).unwrap();
        drop(st);
        tx.commit().unwrap();
        drop(conn);
        assert_eq!(same(&db, &reference), None, "a flush every {every} events");
    }
}

#[test]
fn a_projection_on_two_threads_writes_the_same_rows_however_it_cuts_and_commits() {
    // A rebuild hands rows over in outboxes and commits every so many events; outboxes of a
    // few events and a commit after each must leave the rows of one of each.
    let (dir, evs, log, reference) = history_rebuilt();
    for (chunk, commit_at) in [(1, 1), (2, 3), (3, 1), (5, 7)] {
        let db = dir.path().join(format!("pace{chunk}-{commit_at}.sqlite"));
        let conn = empty_index(&db);
        let file = File::open(&db).unwrap();
        let end = project_beside(&conn, &db, &log, Pace { chunk, commit_at }, Some(&file)).unwrap();
        assert_eq!(end.events, evs.len() as u64);
        drop(conn);
        assert_eq!(
            same(&db, &reference),
            None,
            "outboxes of {chunk}, a commit every {commit_at}"
        );
    }
}

#[test]
fn rows_written_in_groups_equal_rows_written_one_at_a_time() {
    // A rebuild writes tasks and attempts rows in groups (and a remainder one at a time);
    // the daemon's small batches write each alone. Both must leave the same rows.
    let make = || -> Vec<Event> {
        let mut evs = Vec::new();
        for i in 0..2 * tables::ROWS_PER_UPSERT + 5 {
            let id = format!("t{i:03}");
            let mut e = Event::task("task_assigned", &id);
            e.to = Some("assigned".into());
            e.op = Some("move".into());
            e.path = Some(format!("work/collaboration/assigned/bot/{id}.yaml"));
            evs.push(e.with_data("task", meta("bot", &format!("Task {i}"))));
            let mut e = Event::task("task_started", &id);
            e.attempt = Some(1);
            e.to = Some("in_progress".into());
            evs.push(e);
            let mut e = Event::task("execution_complete", &id);
            e.attempt = Some(1);
            e.exit_code = Some(i as i32 % 3);
            e.log_paths = Some(vec![format!("work/logs/{id}/1/stdout.log")]);
            evs.push(e);
        }
        evs
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let mut journal = Journal::open(&log, |_| {}).unwrap().journal;
    let db = dir.path().join("index.sqlite");
    let (mut index, _) = Index::open(&db, &log).unwrap();
    for batch in make().chunks_mut(2) {
        let places = journal.append(batch).unwrap();
        index.apply(batch, &places).unwrap();
    }
    index.close().unwrap();
    let rebuilt = dir.path().join("rebuilt.sqlite");
    let report = rebuild(&rebuilt, &log).unwrap();
    assert_eq!(report.tasks, 2 * tables::ROWS_PER_UPSERT as u64 + 5);
    assert_eq!(same(&db, &rebuilt), None);
    let reader = Reader::open(&rebuilt, &log, false).unwrap();
    let last = reader.attempts("t068").unwrap();
    assert_eq!((last.len(), last[0].exit_code), (1, Some(2)));
}
