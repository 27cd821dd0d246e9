//! Taking checkpoints (`CHECKPOINT`, every `--checkpoint-interval`, at
//! shutdown), restoring from the latest one, and `eddy.checkpoints`.
//! The protocol is described in [`crate::state`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use super::Engine;
use crate::connectors::kafka::Delivery;
use crate::error::{EddyError, Result};
use crate::state::files::{self, Contents, SavedSink, SavedStream, SavedView};
use crate::state::{CheckpointHub, CheckpointRecord, SinkSnapshot, StreamPosition, ViewSnapshot};

/// How long a checkpoint waits for every view to hand in its state.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(120);

impl Engine {
    /// Find the latest complete checkpoint under `data_dir` (restored by [`Engine::restore`]).
    pub(super) fn open_checkpoints(&mut self, data_dir: &Path) {
        let root = files::root(data_dir);
        self.next_epoch
            .store(files::next_epoch(&root), Ordering::Relaxed);
        let (mut recovered, corrupt) = files::load_latest(&root);
        for (epoch, error) in &corrupt {
            // Shown in eddy.checkpoints: the restart did not use it.
            self.hub.record(CheckpointRecord {
                epoch: *epoch,
                started_at_ms: chrono::Utc::now().timestamp_millis(),
                duration_ms: 0,
                barrier_ms: 0,
                bytes: 0,
                views: 0,
                status: "corrupt".into(),
                error: Some(format!(
                    "{error}; recovered from checkpoint {} instead",
                    recovered
                        .as_ref()
                        .map_or("none (every view starts empty)".to_string(), |r| r
                            .epoch
                            .to_string())
                )),
                trigger: "recovery".into(),
            });
        }
        if let (Some(r), Some((newest, _))) = (&recovered, corrupt.first()) {
            *self.recovery_note.lock() = Some(format!(
                "recovered from checkpoint {}, older than the newest, {newest}, which is corrupt: \
                 output committed after checkpoint {} may be written again",
                r.epoch, r.epoch
            ));
        }
        if let Some(r) = &mut recovered {
            let letters = std::mem::take(&mut r.contents.dead_letters);
            if let Err(e) = self.dead_letters.restore(&letters) {
                tracing::error!(error = %e, "cannot restore the dead letters of the checkpoint");
            }
            tracing::info!(
                epoch = r.epoch,
                views = r.contents.views.len(),
                streams = r.contents.streams.len(),
                "recovering from checkpoint"
            );
        }
        *self.recovered.lock() = recovered;
    }

    /// The checkpointed position of stream `name`, if the checkpoint holds
    /// this very object (same catalog id).
    pub(super) fn recovered_stream(&self, name: &str) -> Option<StreamPosition> {
        let id = self.durable.as_ref()?.id_of(name)?;
        let mut r = self.recovered.lock();
        let saved = r.as_mut()?.contents.streams.remove(name)?;
        (saved.id == id).then_some(saved.position)
    }

    /// The checkpointed state of view `name`, if the checkpoint holds this very view.
    pub(super) fn recovered_view(&self, name: &str) -> Option<ViewSnapshot> {
        let id = self.durable.as_ref()?.id_of(name)?;
        let mut r = self.recovered.lock();
        let saved = r.as_mut()?.contents.views.remove(name)?;
        (saved.id == id).then_some(saved.snapshot)
    }

    /// The checkpointed state of exactly-once sink `name`, if the checkpoint
    /// holds this very sink.
    pub(super) fn recovered_sink(&self, name: &str) -> Option<SinkSnapshot> {
        let id = self.durable.as_ref()?.id_of(name)?;
        let mut r = self.recovered.lock();
        let saved = r.as_mut()?.contents.sinks.remove(name)?;
        (saved.id == id).then_some(saved.snapshot)
    }

    /// Take a checkpoint now. `trigger` is shown in `eddy.checkpoints`.
    pub async fn checkpoint(&self, trigger: &str) -> Result<CheckpointRecord> {
        let Some(data_dir) = self.data_dir.clone() else {
            return Err(EddyError::not_supported(
                "CHECKPOINT needs a data directory (eddy serve --data-dir)",
            ));
        };
        let _one = self.checkpoint_lock.lock().await;
        // No object comes or goes while barriers travel.
        let _ddl = self.ddl_lock.lock().await;
        let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut rec = CheckpointRecord {
            epoch,
            started_at_ms: chrono::Utc::now().timestamp_millis(),
            duration_ms: 0,
            barrier_ms: 0,
            bytes: 0,
            views: 0,
            status: "failed".into(),
            error: None,
            trigger: trigger.to_string(),
        };
        let result = self
            .take_checkpoint(&data_dir, epoch, started, &mut rec)
            .await;
        let result = match result {
            Ok(tables) => {
                self.compact_table_logs(tables).await;
                Ok(())
            }
            Err(e) => Err(e),
        };
        rec.duration_ms = started.elapsed().as_millis() as u64;
        // Exactly-once sinks commit what they pre-committed for this epoch, or keep it open.
        self.hub.decide(epoch, result.is_ok());
        match &result {
            Ok(()) => {
                rec.status = "completed".into();
                tracing::info!(
                    epoch,
                    duration_ms = rec.duration_ms,
                    barrier_ms = rec.barrier_ms,
                    bytes = rec.bytes,
                    views = rec.views,
                    "checkpoint completed"
                );
            }
            Err(e) => {
                rec.error = Some(e.to_string());
                tracing::warn!(epoch, error = %e, "checkpoint failed");
            }
        }
        self.hub.record(rec.clone());
        result.map(|_| rec)
    }

    /// Take checkpoint `epoch`; returns the rows each table had published at it.
    async fn take_checkpoint(
        &self,
        data_dir: &Path,
        epoch: u64,
        started: Instant,
        rec: &mut CheckpointRecord,
    ) -> Result<HashMap<String, u64>> {
        let durable = self
            .durable
            .as_ref()
            .ok_or_else(|| EddyError::Internal("no durable catalog".into()))?;
        let views: Vec<_> = self
            .catalog
            .views()
            .into_iter()
            .filter(|v| v.status.lock().as_str() != "failed")
            .collect();
        let expected: Vec<String> = views.iter().map(|v| v.name.clone()).collect();
        let sinks: Vec<_> = self
            .catalog
            .sinks()
            .into_iter()
            .filter(|k| {
                k.delivery == Delivery::ExactlyOnce && k.metrics.status.lock().as_str() != "failed"
            })
            .collect();
        let expected_sinks: Vec<String> = sinks.iter().map(|k| k.name.clone()).collect();
        self.hub.begin(epoch);
        let mut contents = Contents::default();
        // Backfilling views get their barrier from their backfill, the others from
        // their streams; no backfill hands over to its stream in between.
        let handoff = self.backfills().handoff.lock().await;
        let mut backfills: HashMap<String, std::collections::BTreeMap<String, serde_json::Value>> =
            HashMap::new();
        for b in self.backfills().active() {
            if let Some(at) = b.barrier(epoch).await {
                backfills
                    .entry(b.view.clone())
                    .or_default()
                    .insert(b.index.to_string(), at);
            }
        }
        for s in self.catalog.streams() {
            let position = s.inject_barrier(epoch).await;
            if let Some(id) = durable.id_of(&s.name) {
                contents
                    .streams
                    .insert(s.name.clone(), SavedStream { id, position });
            }
        }
        drop(handoff);
        // With the sources' positions: a restored source resumes after the records
        // whose rejection this holds.
        contents.dead_letters = self.dead_letters.snapshot()?;
        rec.barrier_ms = started.elapsed().as_millis() as u64;
        let failed = || {
            let view = views
                .iter()
                .find(|v| v.status.lock().as_str() == "failed")
                .map(|v| format!("materialized view \"{}\"", v.name));
            view.or_else(|| {
                sinks
                    .iter()
                    .find(|k| k.metrics.status.lock().as_str() == "failed")
                    .map(|k| format!("sink \"{}\"", k.name))
            })
        };
        let collected = self
            .hub
            .collect(epoch, &expected, &expected_sinks, COLLECT_TIMEOUT, failed)
            .await?;
        for (name, mut snapshot) in collected.views {
            snapshot.backfills = backfills.remove(&name).unwrap_or_default();
            if let Some(id) = durable.id_of(&name) {
                contents.views.insert(name, SavedView { id, snapshot });
            }
        }
        for (name, snapshot) in collected.sinks {
            if let Some(id) = durable.id_of(&name) {
                contents.sinks.insert(name, SavedSink { id, snapshot });
            }
        }
        rec.views = contents.views.len();
        let tables: HashMap<String, u64> = contents
            .streams
            .iter()
            .map(|(name, saved)| (name.clone(), saved.position.rows))
            .collect();
        let root = files::root(data_dir);
        rec.bytes = tokio::task::spawn_blocking(move || {
            let bytes = files::write(&root, epoch, &contents)?;
            files::prune(&root);
            Ok::<_, EddyError>(bytes)
        })
        .await
        .map_err(|e| EddyError::Internal(format!("checkpoint writer: {e}")))??;
        Ok(tables)
    }

    /// After a checkpoint: remember what it covers of each table, and drop
    /// the parts of table logs that every kept checkpoint covers (a restore
    /// from any of them replays only later rows) and that `SELECT` no longer
    /// keeps. Upsert tables keep their whole log (their state is rebuilt
    /// from it).
    async fn compact_table_logs(&self, tables: HashMap<String, u64>) {
        let oldest = {
            let mut kept = self.table_checkpoints.lock();
            kept.push_back(tables);
            while kept.len() > files::KEEP {
                kept.pop_front();
            }
            if kept.len() < files::KEEP {
                return;
            }
            kept.front().cloned().unwrap_or_default()
        };
        let retain = self.limits.table_retain_rows as u64;
        let keep_bytes = self.limits.table_log_keep_bytes;
        let streams: Vec<_> = self
            .catalog
            .streams()
            .into_iter()
            .filter(|s| s.kind == crate::sql::ObjectKind::Table && !s.is_upsert())
            .filter_map(|s| oldest.get(&s.name).map(|&rows| (s, rows)))
            .collect();
        let freed = tokio::task::spawn_blocking(move || {
            streams
                .into_iter()
                .map(|(s, covered)| {
                    let keep_for_select = s.log_next_row().saturating_sub(retain);
                    s.compact_log(covered.min(keep_for_select), keep_bytes)
                })
                .sum::<u64>()
        })
        .await
        .unwrap_or(0);
        if freed > 0 {
            tracing::info!(bytes = freed, "table logs compacted");
        }
    }

    /// Take a checkpoint every `interval`, forever (run it beside the server).
    pub async fn checkpoint_every(&self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            // Failures are logged and shown in eddy.checkpoints; the next tick tries again.
            let _ = self.checkpoint("interval").await;
        }
    }

    /// Wait (at most `timeout`) until every running exactly-once sink has
    /// committed the output of checkpoint `epoch`; false if one has not.
    pub async fn sinks_committed(&self, epoch: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let behind = self.catalog.sinks().into_iter().any(|k| {
                k.delivery == Delivery::ExactlyOnce
                    && k.metrics.status.lock().as_str() == "running"
                    && k.metrics.committed_epoch.load(Ordering::Relaxed) < epoch
            });
            if !behind {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The checkpoint hub (views hand their state to it).
    pub fn checkpoint_hub(&self) -> Option<Arc<CheckpointHub>> {
        self.data_dir.is_some().then(|| self.hub.clone())
    }
}

/// `eddy.checkpoints`: recent checkpoint attempts.
pub fn checkpoints_table(hub: Arc<CheckpointHub>) -> super::system::LiveTable {
    super::system::LiveTable::new(checkpoints_schema(), move || checkpoints_batch(&hub))
}

fn checkpoints_batch(hub: &CheckpointHub) -> Result<RecordBatch> {
    let h = hub.history();
    let i64s = |f: &dyn Fn(&CheckpointRecord) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(h.iter().map(f).collect::<Vec<_>>()))
    };
    let cols: Vec<ArrayRef> = vec![
        i64s(&|r| r.epoch as i64),
        Arc::new(TimestampMillisecondArray::from(
            h.iter().map(|r| r.started_at_ms).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            h.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            h.iter().map(|r| r.trigger.as_str()).collect::<Vec<_>>(),
        )),
        i64s(&|r| r.duration_ms as i64),
        i64s(&|r| r.barrier_ms as i64),
        i64s(&|r| r.bytes as i64),
        i64s(&|r| r.views as i64),
        Arc::new(StringArray::from(
            h.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(checkpoints_schema(), cols)?)
}

fn checkpoints_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("epoch", DataType::Int64, false),
        Field::new(
            "started_at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("status", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("barrier_ms", DataType::Int64, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("views", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
    ]))
}
