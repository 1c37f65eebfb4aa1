//! The fingerprint cache `work/.agentplane/fingerprints`: for each task file, the inode, size
//! and mtime of the version the daemon last wrote or read. It lets a start skip re-reading
//! files that did not change while the daemon was down. It is only a cache: a stale entry
//! never matches a changed file, and a missing or damaged cache means every file is read.

use std::fmt::Write as _;

use super::Engine;
use crate::lifecycle::fsops::{self, Fingerprint};

const FILE: &str = "fingerprints";
const HEADER: &str = "agentplane fingerprints v1";

impl Engine {
    /// Give known tasks the fingerprints saved by the previous run.
    pub(super) fn load_fingerprints(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.layout.state_dir().join(FILE)) else {
            return;
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return;
        }
        for line in lines {
            let mut parts = line.splitn(4, ' ');
            let (Some(ino), Some(size), Some(mtime), Some(path)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return;
            };
            let (Ok(ino), Ok(size), Ok(mtime_ns)) = (ino.parse(), size.parse(), mtime.parse()) else {
                return;
            };
            let Some(id) = self.state.at_path(path).map(|e| e.id.to_string()) else {
                continue;
            };
            if let Some(entry) = self.state.tasks.get_mut(id.as_str()) {
                entry.fingerprint = Some(Fingerprint { ino, size, mtime_ns });
            }
        }
    }

    /// Save the fingerprints of all known task files (temp + rename; no fsync: a cache).
    pub fn save_fingerprints(&self) {
        let mut text = String::with_capacity(64 * self.state.tasks.len() + 32);
        text.push_str(HEADER);
        text.push('\n');
        for e in self.state.tasks.values() {
            if let Some(fp) = e.fingerprint {
                let _ = writeln!(text, "{} {} {} {}", fp.ino, fp.size, fp.mtime_ns, e.path());
            }
        }
        let dest = self.layout.state_dir().join(FILE);
        let saved =
            fsops::create_temp(&dest, text.as_bytes()).and_then(|(tmp, _)| fsops::rename(&tmp, &dest));
        if let Err(e) = saved {
            tracing::warn!("cannot save the fingerprint cache: {e}");
        }
    }
}
