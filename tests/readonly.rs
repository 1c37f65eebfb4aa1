//! The query side never writes: no file in `src/query/` may import the write side, and the
//! index's read half opens SQLite read-only only. A source check, so it fails at the first
//! import that would give the query side a write handle.

use std::path::{Path, PathBuf};

/// What the query side may not name: the write side and anything that writes files.
const FORBIDDEN: &[&str] = &[
    "crate::command",
    "command::",
    "Journal",
    "crate::request",
    "crate::daemon",
    "crate::publish",
    "crate::readmodel",
    "crate::init",
    "crate::demo",
    "rusqlite",
    "write_atomic",
    "write_temp",
    "fsync",
    "fsops::rename",
    "fsops::remove_file",
    "fsops::create_dir_all",
    "fsops::free_name",
    "fs::write",
    "File::create",
    "OpenOptions",
    "remove_file",
    "remove_dir",
    "create_dir",
    "set_len",
    "rebuild(",
    "rebuild_locked",
    "index::rebuild",
    "Index::",
    "index::Index",
    "try_lock",
];

/// What the query side may take from modules that also hold writers.
const ALLOWED_FROM: &[(&str, &[&str])] = &[
    ("store::index", &["store::index::read"]),
    (
        "fsops",
        &[
            "fsops::{ReadRefusal, read_task_file}",
            "fsops::read_task_file",
            "fsops::ReadRefusal",
        ],
    ),
];

/// Code without comments (`//` to the end of the line), so documentation may name the rules.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every violation in one source text.
fn violations(name: &str, text: &str) -> Vec<String> {
    let code = code_of(text);
    let mut out = Vec::new();
    for f in FORBIDDEN {
        if code.contains(f) {
            out.push(format!("{name} names `{f}`"));
        }
    }
    for (module, allowed) in ALLOWED_FROM {
        for (at, _) in code.match_indices(module) {
            if !allowed.iter().any(|a| code[at..].starts_with(a)) {
                let snippet: String = code[at..].chars().take(60).collect();
                out.push(format!("{name} uses `{snippet}`"));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_query_module_does_not_import_the_write_side() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/query");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(
        files.len() >= 5,
        "the query module is where it should be: {files:?}"
    );
    let mut all = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        all.extend(violations(&f.display().to_string(), &text));
    }
    assert!(
        all.is_empty(),
        "the query side reaches the write side:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_check_catches_what_it_should() {
    for bad in [
        "use crate::command::Engine;",
        "use crate::store::journal::Journal;",
        "use crate::store::index::{Index, read::Reader};",
        "use crate::store::index::rebuild;",
        "use crate::lifecycle::fsops::write_atomic;",
        "use crate::lifecycle::fsops::{self, read_task_file};",
        "use crate::request;",
        "std::fs::write(p, b\"x\")",
        "let c = rusqlite::Connection::open(p);",
    ] {
        assert!(!violations("sample", bad).is_empty(), "not caught: {bad}");
    }
    for fine in [
        "use crate::store::index::read::{Reader, TaskRow};",
        "use crate::lifecycle::fsops::{ReadRefusal, read_task_file};",
        "use crate::store::logread::{self, Follower};",
        "// the write side is `crate::command`",
    ] {
        assert!(violations("sample", fine).is_empty(), "wrongly caught: {fine}");
    }
}

#[test]
fn the_index_read_half_opens_sqlite_read_only() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/index/read.rs");
    let code = code_of(&std::fs::read_to_string(path).unwrap());
    assert!(code.contains("SQLITE_OPEN_READ_ONLY"));
    for f in [
        "SQLITE_OPEN_READ_WRITE",
        "SQLITE_OPEN_CREATE",
        "Connection::open(",
        "Connection::open_with_flags(db,",
    ] {
        assert!(!code.contains(f), "read.rs uses {f}");
    }
    // The only database it may write is its own in-memory projection of the log.
    assert_eq!(code.matches("open_in_memory").count(), 1);
}
