//! Tasks that drive connectors: pull batches from a generator at the
//! configured rate, or publish what a reader thread (file, Kafka) decoded.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use super::datagen::DatagenGenerator;
use super::stream::StreamObject;
use crate::error::EddyError;

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
    stream.wait_for_first_reader(IDLE_POLL).await;
    if let Some(p) = stream
        .resume_position()
        .and_then(|p| p["position"].as_u64())
    {
        gen.set_position(p);
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
        let position = serde_json::json!({ "position": gen.position() });
        let pushed = match stream.batch_watermark(&batch) {
            Ok(c) => stream.push_at(batch, c, Some(position)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = pushed {
            tracing::warn!(source = %stream.name, error = %e, "datagen source failed");
            stream.fail(&e);
            return;
        }
    }
}

/// What a connector's reader thread hands to the async side.
#[derive(Debug)]
pub enum Produced {
    /// Rows to publish, with the watermark candidate the reader computed (a
    /// partitioned source combines partitions) or `None` to take the batch's,
    /// and the reader's position after them (for checkpoints).
    Rows(RecordBatch, Option<Option<i64>>, Option<serde_json::Value>),
    /// The reader moved on without rows (every record was rejected).
    Position(serde_json::Value),
    /// Advance the watermark without rows.
    Watermark(i64),
    /// The source is healthy again after an error (clears `last_error`).
    Healthy,
    /// A recoverable problem (broker down, file missing): shown in `eddy.sources`
    /// while the reader retries.
    Retrying(String),
    /// Something users must know that does not stop the source (records the
    /// broker deleted before they were read): shown as `last_error`.
    Notice(String),
    /// The input is exhausted (a file read once).
    Finished,
    /// The source stopped with an error.
    Failed(EddyError),
}

/// Messages buffered between a reader thread and its publisher.
pub const READER_CHANNEL_CAPACITY: usize = 4;

/// Publish what a reader produces. Waits for the first subscriber so the first
/// view sees the stream from its start (the reader blocks on the bounded
/// channel meanwhile). Ends when the reader ends; a reader that vanishes
/// without saying why (its thread panicked) leaves the source `failed`.
pub async fn publish_reader(stream: Arc<StreamObject>, mut rx: mpsc::Receiver<Produced>) {
    *stream.metrics.status.lock() = "idle".into();
    stream.wait_for_first_reader(IDLE_POLL).await;
    *stream.metrics.status.lock() = "running".into();
    while let Some(p) = rx.recv().await {
        let result = match p {
            Produced::Rows(batch, candidate, position) => {
                let candidate = match candidate {
                    Some(c) => Ok(c),
                    None => stream.batch_watermark(&batch),
                };
                match candidate {
                    Ok(c) => stream.push_at(batch, c, position).await,
                    Err(e) => Err(e),
                }
            }
            Produced::Position(position) => {
                stream
                    .push_at(
                        RecordBatch::new_empty(stream.schema.clone()),
                        None,
                        Some(position),
                    )
                    .await
            }
            Produced::Watermark(w) => {
                stream.advance_watermark(w).await;
                Ok(())
            }
            Produced::Healthy => {
                *stream.metrics.status.lock() = "running".into();
                *stream.metrics.last_error.lock() = None;
                Ok(())
            }
            Produced::Retrying(e) => {
                *stream.metrics.status.lock() = "retrying".into();
                *stream.metrics.last_error.lock() = Some(e);
                Ok(())
            }
            Produced::Notice(msg) => {
                *stream.metrics.last_error.lock() = Some(msg);
                Ok(())
            }
            Produced::Finished => {
                *stream.metrics.status.lock() = "finished".into();
                return;
            }
            Produced::Failed(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(source = %stream.name, error = %e, "source failed");
            stream.fail(&e);
            return;
        }
    }
    // A reader ends by saying `Finished` or `Failed`; a closed channel without
    // either means its thread died (a panic, logged where it happened).
    let e = EddyError::Connector(format!(
        "the reader of source \"{}\" stopped unexpectedly (see the server log); \
         drop and create the source again to restart it",
        stream.name
    ));
    tracing::error!(source = %stream.name, error = %e, "source reader died");
    stream.fail(&e);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_reader_that_vanishes_fails_its_source() {
        let stream = Arc::new(StreamObject::test_source());
        let (sub_tx, _sub_rx) = mpsc::channel(4);
        stream.publisher.subscribe("v", sub_tx, Vec::new).await;
        let (tx, rx) = mpsc::channel(READER_CHANNEL_CAPACITY);
        let publisher = tokio::spawn(publish_reader(stream.clone(), rx));
        tx.send(Produced::Healthy).await.unwrap();
        // The reader thread panics: its sender is dropped without a word.
        drop(tx);
        publisher.await.unwrap();
        assert_eq!(stream.metrics.status.lock().as_str(), "failed");
        let e = stream.metrics.last_error.lock().clone().unwrap();
        assert!(e.contains("stopped unexpectedly"), "{e}");
    }
}
