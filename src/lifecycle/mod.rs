//! Everything that touches task files on disk: safe reads, atomic and durable writes and moves
//! (`fsops`), surgical edits of lifecycle keys (`edit`), and removal off the ack path
//! (`trash`). No events, no scheduling.

pub mod edit;
pub mod fsops;
pub mod trash;
