//! Tasks that drive connectors: pull batches from a generator at the
//! configured rate and push them into the stream.

use std::sync::Arc;
use std::time::Duration;

use super::datagen::DatagenGenerator;
use super::stream::StreamObject;

/// How often a rate-limited generator emits a batch.
const TICK: Duration = Duration::from_millis(100);
/// Largest batch an unthrottled generator emits.
const MAX_BATCH_ROWS: usize = 8192;

/// How often an idle source checks whether a view has subscribed.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// Run a datagen source until it is exhausted (or the task is aborted).
///
/// A source starts producing when the first view reads it, so
/// `CREATE SOURCE` followed by `CREATE MATERIALIZED VIEW` sees the stream
/// from its first row; views created later join the live stream.
pub async fn run_datagen(
    stream: Arc<StreamObject>,
    mut gen: DatagenGenerator,
    rows_per_second: u64,
) {
    *stream.metrics.status.lock() = "idle".into();
    while stream.publisher.subscriber_count().await == 0 {
        tokio::time::sleep(IDLE_POLL).await;
    }
    *stream.metrics.status.lock() = "running".into();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Carry fractional rows between ticks so low rates are exact over time.
    let per_tick_milli = rows_per_second.saturating_mul(TICK.as_millis() as u64);
    let mut owed_milli: u64 = 0;
    loop {
        let rows = if rows_per_second == 0 {
            tokio::task::yield_now().await;
            MAX_BATCH_ROWS
        } else {
            ticker.tick().await;
            owed_milli += per_tick_milli;
            let rows = (owed_milli / 1000) as usize;
            owed_milli %= 1000;
            rows.min(MAX_BATCH_ROWS * 16)
        };
        if rows == 0 {
            continue;
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let Some(batch) = gen.next_batch(rows, now) else {
            *stream.metrics.status.lock() = "finished".into();
            return;
        };
        if let Err(e) = stream.push(batch).await {
            tracing::warn!(source = %stream.name, error = %e, "datagen source failed");
            stream.fail(&e);
            return;
        }
    }
}
