//! Everything that touches task files on disk: safe reads, atomic and durable writes and moves
//! (`fsops`), and surgical edits of lifecycle keys (`edit`). No events, no scheduling.

pub mod edit;
pub mod fsops;
