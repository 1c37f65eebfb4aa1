//! Durable state of the write side: the append-only event journal. The journal is the only
//! truth; everything else (task file positions on recovery, the index, read models) is derived.

pub mod journal;
