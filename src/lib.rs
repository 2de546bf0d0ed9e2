//! rwsplit: a MySQL wire-protocol proxy that splits statements between a primary and its replicas.
//!
//! The crate is a library so that integration tests and benches can run the real proxy in-process;
//! `main.rs` is a thin CLI over [`app::run`]. Modules depend only on modules below them in this list:
//! `app` → `frontend` → `backend` → `classify` → `protocol` → `config`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

#[macro_use]
mod bitset;

pub mod admin;
pub mod app;
pub mod backend;
pub mod classify;
pub mod config;
pub mod frontend;
pub mod monitor;
pub mod protocol;
pub mod router;
pub mod shared;
pub mod stats;
