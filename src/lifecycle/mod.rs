//! Everything that touches task files on disk: safe reads, atomic and durable writes and moves
//! (`fsops`), surgical edits of lifecycle keys (`edit`), removal off the ack path (`trash`),
//! and the redo record of in-place rewrites (`redo`). No events, no scheduling.

pub mod edit;
pub mod fsops;
pub mod redo;
pub mod trash;
