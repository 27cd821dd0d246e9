//! eddy: a streaming SQL database.
//!
//! Users connect with any Postgres client, declare streams (tables fed by
//! `INSERT`, generator sources) with event-time watermarks, register
//! continuous queries as materialized views, and query those views at any
//! moment with ordinary `SELECT`.
//!
//! Layers (ARCHITECTURE.md is the map; `tests/architecture.rs` checks the
//! imports): `server` (pgwire) → `engine` (statements) → `catalog` → `plan`
//! (DataFusion plan → operator graph) → `runtime` (tasks, barriers,
//! exchange) → `operators` (one `StreamOperator` trait) → `types`
//! (messages); `state` / `storage` keep checkpoints, `views` the views'
//! rows, `connectors` the sources and sinks; `sql` is the front end.

#![warn(missing_docs)]

pub mod catalog;
pub mod connectors;
pub mod engine;
pub mod error;
pub mod functions;
pub mod http;
pub mod operators;
pub mod pgtext;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod state;
pub mod storage;
pub mod types;
pub mod views;

pub use error::{EddyError, Result};
