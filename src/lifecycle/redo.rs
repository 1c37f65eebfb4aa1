//! The redo record of a batch's in-place rewrites: intake rewrites a taken inbox file in its
//! own inode before renaming it into place, so between the rewrite and the rename a power loss
//! can leave an inbox file that is neither its old nor its new version. The record holds each
//! rewrite's new content and is durable before the first file is touched; recovery finishes
//! the last batch's rewrites from it. One file, overwritten per batch; never read except at
//! start. Plain file I/O only: what a rewrite means is decided by the caller.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fsops::{FsError, ctx, fsync_dir};

/// One file rewritten in place: which inode at `src` (root-relative), bound for `dest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    pub src: String,
    pub ino: u64,
    pub dest: String,
    pub task_id: Option<String>,
    pub content: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    batch: u64,
}

/// Replace the record with the rewrites of `batch` and make it durable. A crash while writing
/// leaves a short record; no file has been rewritten then, and a short record only names
/// rewrites whose source is still intact. The first record also makes its name durable: a
/// record whose directory entry a power loss took would leave the rewrites it covers lost.
pub fn write(path: &Path, batch: u64, rewrites: &[Rewrite]) -> Result<(), FsError> {
    let mut text = Vec::new();
    serde_json::to_writer(&mut text, &Header { batch }).expect("a header serializes");
    text.push(b'\n');
    for r in rewrites {
        serde_json::to_writer(&mut text, r).expect("a rewrite serializes");
        text.push(b'\n');
    }
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(ctx("open", path))?;
    file.write_all(&text).map_err(ctx("write", path))?;
    file.sync_data().map_err(ctx("fsync", path))?;
    if created {
        fsync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// The batch the record belongs to and its complete lines; `None` when there is no record.
/// Reading stops at the first line that is not a whole rewrite (the end of a short record).
pub fn read(path: &Path) -> Option<(u64, Vec<Rewrite>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Header = serde_json::from_str(lines.next()?).ok()?;
    let rewrites = lines.map_while(|l| serde_json::from_str(l).ok()).collect();
    Some((header.batch, rewrites))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(n: u64) -> Rewrite {
        Rewrite {
            src: format!("work/collaboration/inbox/t{n}.yaml"),
            ino: n,
            dest: format!("work/collaboration/assigned/bot/t{n}.yaml"),
            task_id: Some(format!("t{n}")),
            content: format!("id: t{n}\nstatus: assigned\n# \"quoted\" and\ttabbed\n"),
        }
    }

    #[test]
    fn a_record_reads_back_and_a_short_one_keeps_its_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redo.jsonl");
        assert!(read(&path).is_none());
        write(&path, 7, &[rewrite(1), rewrite(2)]).unwrap();
        assert_eq!(read(&path), Some((7, vec![rewrite(1), rewrite(2)])));
        write(&path, 8, &[rewrite(3)]).unwrap();
        assert_eq!(
            read(&path),
            Some((8, vec![rewrite(3)])),
            "a record replaces the last"
        );
        let full = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 10]).unwrap();
        assert_eq!(read(&path), Some((8, vec![])), "a torn line is not a rewrite");
    }
}
