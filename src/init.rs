//! `agentplane init`: create a root's folders, a commented `agentplane.yaml`, and the
//! `.gitignore` entries for daemon state. Idempotent: existing files are left as they are.

use std::path::Path;

use crate::config;
use crate::daemon::ensure_folders;
use crate::layout::Layout;
use crate::lifecycle::fsops;

const GITIGNORE_LINES: [&str; 2] = ["work/.agentplane/", "work/logs/"];

pub fn init(root: &Path) -> Result<Vec<String>, String> {
    let layout = Layout::new(root);
    ensure_folders(&layout).map_err(|e| e.to_string())?;
    let mut done = vec![format!("folders under {}", layout.collab().display())];
    // Empty folders vanish from git; a marker keeps the skeleton in a clone.
    let collab = layout.collab();
    for dir in [
        layout.inbox(),
        collab.join("assigned"),
        collab.join("done"),
        collab.join("error"),
        layout.rejected(),
        layout.fridge(),
        layout.archive(),
        layout.status_dir(),
    ] {
        let keep = dir.join(".gitkeep");
        if !keep.exists() {
            fsops::write_atomic(&keep, b"").map_err(|e| e.to_string())?;
        }
    }
    let cfg = layout.config();
    if !cfg.exists() {
        fsops::write_atomic(&cfg, config::TEMPLATE.as_bytes()).map_err(|e| e.to_string())?;
        done.push(format!("{} (commented defaults)", cfg.display()));
    }
    let gitignore = root.join(".gitignore");
    let existing = std::fs::read_to_string(&gitignore).unwrap_or_default();
    let missing: Vec<&str> = GITIGNORE_LINES
        .iter()
        .copied()
        .filter(|l| !existing.lines().any(|x| x.trim() == *l))
        .collect();
    if !missing.is_empty() {
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for l in &missing {
            text.push_str(l);
            text.push('\n');
        }
        fsops::write_atomic(&gitignore, text.as_bytes()).map_err(|e| e.to_string())?;
        done.push(format!("{} ({})", gitignore.display(), missing.join(", ")));
    }
    Ok(done)
}
