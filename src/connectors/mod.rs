//! Where streams come from: tables fed by `INSERT`, and connectors
//! (`datagen`, `nexmark`, `file`, `kafka`). File and Kafka records go through one ingest
//! path: [`format`] decoding, the [`contract`], and [`dead_letter`]s.

pub mod backfill;
pub mod contract;
pub mod datagen;
pub mod dead_letter;
pub mod file;
pub mod format;
pub mod ingest;
pub mod kafka;
pub mod nexmark;
pub mod pipeline;
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
    /// Threads decoding chunks of records at once (see [`pipeline`]).
    pub decode_threads: usize,
}

impl Default for BatchBounds {
    fn default() -> Self {
        BatchBounds {
            max_rows: 4096,
            max_wait: Duration::from_millis(50),
            decode_threads: 1,
        }
    }
}

impl BatchBounds {
    /// Largest `batch.max_rows` accepted.
    pub const MAX_ROWS_LIMIT: usize = 1 << 20;

    /// Most `decode.threads`.
    pub const DECODE_THREADS_LIMIT: usize = 64;

    /// Read `batch.max_rows`, `batch.max_wait_ms` and `decode.threads`
    /// (default `threads`), removing them from `options`.
    pub fn from_options(
        options: &mut BTreeMap<String, String>,
        threads: usize,
    ) -> Result<Self, String> {
        let mut b = BatchBounds {
            decode_threads: threads.clamp(1, Self::DECODE_THREADS_LIMIT),
            ..BatchBounds::default()
        };
        if let Some(n) = take_count(options, "decode.threads", Self::DECODE_THREADS_LIMIT)? {
            b.decode_threads = n;
        }
        if let Some(n) = take_count(options, "batch.max_rows", Self::MAX_ROWS_LIMIT)? {
            b.max_rows = n;
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

/// Remove option `key`, a whole number in `1..=max`.
fn take_count(
    options: &mut BTreeMap<String, String>,
    key: &str,
    max: usize,
) -> Result<Option<usize>, String> {
    let Some(v) = options.remove(key) else {
        return Ok(None);
    };
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .map(Some)
        .ok_or(format!("{key} must be an integer in 1..={max}, got '{v}'"))
}
