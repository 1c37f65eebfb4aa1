//! Durable state: the append-only event journal (the only truth, written by the daemon alone),
//! read-only access to it for everyone else (`logread`), and the SQLite index derived from it
//! (`index`: written by the daemon's index thread, read by the query side through
//! `index::read`). Everything but the journal can be rebuilt from the journal.

pub mod index;
pub mod journal;
pub mod logread;
