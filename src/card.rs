//! `Card`: the part of a task that is shown — id, title, agent, status, priority, where its
//! file is, when it last changed, attempt, dependencies, inconsistency. The engine's state
//! owns one per task and changes it copy-on-write (`Arc::make_mut`); the read models keep the
//! same `Arc`, so a task's text exists once in the daemon, whichever thread shows it. A large
//! root has 100,000 of them, which is why a card is small: its rare parts live out of line
//! and its agent and folder are shared (`Names`).
//!
//! Plain data: no I/O, no events, no knowledge of either side that holds it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::task::{Priority, Status};

#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub id: Arc<str>,
    pub title: Box<str>,
    pub agent: Arc<str>,
    /// Root-relative folder of the task file with its trailing `/` (empty at the root);
    /// shared: a root has a few folders × agents.
    dir: Arc<str>,
    pub status: Status,
    pub priority: Priority,
    /// The last attempt started (1-based); 0 before the first run.
    pub attempt: u32,
    /// Time of the task's last event (`None` only if the log's timestamp was unreadable).
    pub updated_at: Option<SystemTime>,
    /// What few tasks have; `None` when all of it is empty.
    rare: Option<Box<Rare>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Rare {
    /// The file name when it is not `<id>.yaml`.
    file_name: Option<Box<str>>,
    depends_on: Vec<String>,
    /// Kind of inconsistency of the file (left alone until edited).
    problem: Option<String>,
}

/// Change what a value keeps out of line, allocating it only while it differs from the
/// default (so that the many values without it pay one pointer).
pub fn change_out_of_line<T: Default + PartialEq>(slot: &mut Option<Box<T>>, change: impl FnOnce(&mut T)) {
    match slot {
        Some(value) => {
            change(value);
            if **value == T::default() {
                *slot = None;
            }
        }
        None => {
            let mut value = T::default();
            change(&mut value);
            if value != T::default() {
                *slot = Some(Box::new(value));
            }
        }
    }
}

/// The shared copies of agent names and folders.
#[derive(Default)]
pub struct Names(HashSet<Arc<str>>);

impl Names {
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return Arc::clone(n);
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(Arc::clone(&n));
        n
    }
}

/// `("a/b/", "c.yaml")` for `a/b/c.yaml`; the folder keeps its `/`.
fn split_path(path: &str) -> (&str, &str) {
    path.split_at(path.rfind('/').map_or(0, |i| i + 1))
}

impl Card {
    pub fn new(id: &str, agent: Arc<str>, status: Status, path: &str, names: &mut Names) -> Card {
        let mut card = Card {
            id: Arc::from(id),
            title: Box::from(""),
            agent,
            dir: Arc::from(""),
            status,
            priority: Priority::Normal,
            attempt: 0,
            updated_at: None,
            rare: None,
        };
        card.set_path(path, names);
        card
    }

    /// Root-relative path of the task file.
    pub fn path(&self) -> String {
        let mut out = String::with_capacity(self.dir.len() + self.id.len() + 5);
        self.write_path(&mut out);
        out
    }

    /// `path()` appended to `out` (a rendering of many rows reuses one buffer).
    pub fn write_path(&self, out: &mut String) {
        out.push_str(&self.dir);
        match self.rare.as_ref().and_then(|r| r.file_name.as_deref()) {
            Some(name) => out.push_str(name),
            None => {
                out.push_str(&self.id);
                out.push_str(".yaml");
            }
        }
    }

    /// Is the task file inside this root-relative folder (at any depth)? Allocates nothing:
    /// dispatch asks it of every waiting task on every round.
    pub fn is_within(&self, folder: &str) -> bool {
        self.dir
            .strip_prefix(folder)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// Is the task file at this root-relative path?
    pub fn is_at(&self, path: &str) -> bool {
        let (dir, name) = split_path(path);
        let own_name = self.rare.as_ref().and_then(|r| r.file_name.as_deref());
        *self.dir == *dir
            && match own_name {
                Some(own) => own == name,
                None => name.strip_suffix(".yaml") == Some(&*self.id),
            }
    }

    pub fn set_path(&mut self, path: &str, names: &mut Names) {
        let (dir, name) = split_path(path);
        if *self.dir != *dir {
            self.dir = names.get(dir);
        }
        let named_after_id = name.strip_suffix(".yaml") == Some(&*self.id);
        self.change_rare(|r| r.file_name = (!named_after_id).then(|| name.into()));
    }

    pub fn depends_on(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |r| &r.depends_on)
    }

    pub fn set_depends_on(&mut self, depends_on: Vec<String>) {
        self.change_rare(|r| r.depends_on = depends_on);
    }

    pub fn problem(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.problem.as_deref())
    }

    pub fn set_problem(&mut self, problem: Option<String>) {
        self.change_rare(|r| r.problem = problem);
    }

    fn change_rare(&mut self, change: impl FnOnce(&mut Rare)) {
        change_out_of_line(&mut self.rare, change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_kept_as_a_shared_folder_and_the_name_only_when_it_is_not_the_id() {
        let mut names = Names::default();
        let a = names.get("a");
        let mut card = Card::new(
            "t1",
            a,
            Status::Assigned,
            "work/collaboration/assigned/a/t1.yaml",
            &mut names,
        );
        assert_eq!(card.path(), "work/collaboration/assigned/a/t1.yaml");
        assert!(card.rare.is_none());
        assert!(card.is_at("work/collaboration/assigned/a/t1.yaml"));
        assert!(!card.is_at("work/collaboration/done/a/t1.yaml"));
        assert!(!card.is_at("work/collaboration/assigned/a/t1.yml"));
        assert!(card.is_within("work/collaboration/assigned"));
        assert!(card.is_within("work/collaboration/assigned/a"));
        assert!(!card.is_within("work/collaboration/assign"));
        assert!(!card.is_within("work/collaboration/fridge"));

        card.set_path("work/collaboration/assigned/a/other.yml", &mut names);
        assert_eq!(card.path(), "work/collaboration/assigned/a/other.yml");
        assert!(card.is_at("work/collaboration/assigned/a/other.yml"));
        assert!(!card.is_at("work/collaboration/assigned/a/t1.yaml"));

        card.set_path("t1.yaml", &mut names);
        assert_eq!(card.path(), "t1.yaml");
        assert!(card.is_at("t1.yaml"));
        assert!(
            card.rare.is_none(),
            "nothing rare is left, so nothing is kept out of line"
        );

        let other = Card::new(
            "t2",
            names.get("a"),
            Status::Done,
            "work/collaboration/assigned/a/t2.yaml",
            &mut names,
        );
        card.set_path("work/collaboration/assigned/a/t1.yaml", &mut names);
        assert!(Arc::ptr_eq(&card.dir, &other.dir), "folders are shared");
    }

    #[test]
    fn rare_parts_are_dropped_when_they_empty() {
        let mut names = Names::default();
        let mut card = Card::new("t", names.get("a"), Status::Assigned, "d/t.yaml", &mut names);
        card.set_depends_on(vec!["x".into()]);
        card.set_problem(Some("id_mismatch".into()));
        assert_eq!(card.depends_on(), ["x".to_string()]);
        assert_eq!(card.problem(), Some("id_mismatch"));
        card.set_depends_on(Vec::new());
        assert!(card.rare.is_some());
        card.set_problem(None);
        assert!(card.rare.is_none());
    }
}
