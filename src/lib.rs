//! eddy: a streaming SQL database.
//!
//! Users connect with any Postgres client, declare streams (tables fed by
//! `INSERT`, generator sources) with event-time watermarks, register
//! continuous queries as materialized views, and query those views at any
//! moment with ordinary `SELECT`.
//!
//! Layers, each depending only on those after it:
//! `server` (pgwire) → `engine` (catalog, statements) → `plan` (DataFusion
//! plan → streaming operators) → `exec` (operators, messages, tasks) →
//! `views` / `connectors`; `sql` is the front end.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod connectors;
pub mod engine;
pub mod error;
pub mod exec;
pub mod functions;
pub mod operators;
pub mod pgtext;
pub mod plan;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod views;

pub use error::{EddyError, Result};
