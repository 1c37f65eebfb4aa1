//! agentplane: a filesystem-native control plane for AI coding agents (ADR-047). The write
//! side is `command` (over `store`, `lifecycle`, `adapter`), composed by `daemon`, which feeds
//! the derived views through `publish` (the SQLite index in `store::index`, the read models in
//! `readmodel`). The read side is `query`: read-only, it never writes. `task`, `event`,
//! `layout`, `config` and `clock` are shared vocabulary. See ARCHITECTURE.md.

pub mod adapter;
pub mod audit;
pub mod card;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod event;
pub mod init;
pub mod layout;
pub mod lifecycle;
pub mod memory;
pub mod publish;
pub mod query;
pub mod readmodel;
pub mod request;
pub mod service;
pub mod store;
pub mod task;
pub mod watch;
