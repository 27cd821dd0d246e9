//! Where streams come from: tables fed by `INSERT`, and connectors.

pub mod datagen;
pub mod runner;
pub mod stream;

pub use stream::{SourceMetrics, StreamObject, StreamTable};
