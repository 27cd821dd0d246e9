//! Where streams come from: tables fed by `INSERT`, and connectors
//! (`datagen`, `nexmark`, `file`, `kafka`). File and Kafka records go through one ingest
//! path: [`format`] decoding, the [`contract`], and [`dead_letter`]s.

pub mod contract;
pub mod datagen;
pub mod dead_letter;
pub mod file;
pub mod format;
pub mod ingest;
pub mod kafka;
pub mod nexmark;
pub mod runner;
pub mod stream;
pub mod table_log;
pub mod upsert;

use std::collections::BTreeMap;
use std::time::Duration;

pub use stream::{SourceMetrics, StreamObject, StreamTable};

/// How many records are decoded together: a batch closes at `max_rows`
/// records or `max_wait` after its first record, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct BatchBounds {
    /// Most records in one batch.
    pub max_rows: usize,
    /// Longest a record waits for its batch to fill.
    pub max_wait: Duration,
}

impl Default for BatchBounds {
    fn default() -> Self {
        BatchBounds {
            max_rows: 4096,
            max_wait: Duration::from_millis(50),
        }
    }
}

impl BatchBounds {
    /// Largest `batch.max_rows` accepted.
    pub const MAX_ROWS_LIMIT: usize = 1 << 20;

    /// Read `batch.max_rows` and `batch.max_wait_ms`, removing them from `options`.
    pub fn from_options(options: &mut BTreeMap<String, String>) -> Result<Self, String> {
        let mut b = BatchBounds::default();
        if let Some(v) = options.remove("batch.max_rows") {
            b.max_rows = v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=Self::MAX_ROWS_LIMIT).contains(n))
                .ok_or(format!(
                    "batch.max_rows must be an integer in 1..={}, got '{v}'",
                    Self::MAX_ROWS_LIMIT
                ))?;
        }
        if let Some(v) = options.remove("batch.max_wait_ms") {
            let ms = v.parse::<u64>().map_err(|_| {
                format!("batch.max_wait_ms must be a non-negative integer, got '{v}'")
            })?;
            b.max_wait = Duration::from_millis(ms);
        }
        Ok(b)
    }
}
