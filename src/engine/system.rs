//! System tables in schema `eddy`: `eddy.sources`, `eddy.source_partitions`, `eddy.views`,
//! `eddy.sinks` and `eddy.subscriptions`, built
//! from live counters each time they are read.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::Catalog;
use crate::connectors::stream::{PartitionProgress, NO_WATERMARK};

/// Which system table.
#[derive(Debug, Clone, Copy)]
pub enum SystemTableKind {
    /// `eddy.sources`.
    Sources,
    /// `eddy.views`.
    Views,
    /// `eddy.source_partitions`: per-partition offsets, lag and watermarks.
    Partitions,
    /// `eddy.sinks`.
    Sinks,
    /// `eddy.subscriptions`: clients receiving a view's changes.
    Subscriptions,
    /// `eddy.operators`: every operator partition of every view, with its counters.
    Operators,
}

/// Wall-clock time minus an event-time watermark (ns), in ms: how far behind now results are.
fn freshness_ms(watermark: i64) -> Option<i64> {
    (watermark != NO_WATERMARK).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        now.saturating_sub(watermark) / 1_000_000
    })
}

/// A system table provider.
pub struct SystemTable {
    kind: SystemTableKind,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SystemTable({:?})", self.kind)
    }
}

impl SystemTable {
    /// A provider for `kind` reading `catalog`.
    pub fn new(kind: SystemTableKind, catalog: Arc<Catalog>) -> Self {
        SystemTable { kind, catalog }
    }

    fn ts() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, None)
    }

    fn schema_of(kind: SystemTableKind) -> SchemaRef {
        let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
        Arc::new(Schema::new(match kind {
            SystemTableKind::Sources => vec![
                f("name", DataType::Utf8, false),
                f("connector", DataType::Utf8, false),
                f("status", DataType::Utf8, false),
                f("rows_read", DataType::Int64, false),
                f("rows_rejected", DataType::Int64, false),
                f("rows_late", DataType::Int64, false),
                f("watermark", Self::ts(), true),
                f("lag", DataType::Int64, true),
                f("last_error", DataType::Utf8, true),
                f("dead_letters_evicted", DataType::Int64, false),
                f("rows_per_s", DataType::Float64, false),
                f("freshness_ms", DataType::Int64, true),
            ],
            SystemTableKind::Partitions => vec![
                f("source", DataType::Utf8, false),
                f("partition", DataType::Int32, false),
                f("next_offset", DataType::Int64, true),
                f("high_watermark", DataType::Int64, true),
                f("lag", DataType::Int64, true),
                f("watermark", Self::ts(), true),
                f("idle", DataType::Boolean, false),
            ],
            SystemTableKind::Sinks => vec![
                f("name", DataType::Utf8, false),
                f("from", DataType::Utf8, false),
                f("connector", DataType::Utf8, false),
                f("topic", DataType::Utf8, false),
                f("mode", DataType::Utf8, false),
                f("delivery", DataType::Utf8, false),
                f("status", DataType::Utf8, false),
                f("messages_written", DataType::Int64, false),
                f("committed_epoch", DataType::Int64, true),
                f("last_error", DataType::Utf8, true),
            ],
            SystemTableKind::Views => vec![
                f("name", DataType::Utf8, false),
                f("emit_mode", DataType::Utf8, false),
                f("rows", DataType::Int64, false),
                f("state_bytes", DataType::Int64, false),
                f("watermark", Self::ts(), true),
                f("rows_late", DataType::Int64, false),
                f("status", DataType::Utf8, false),
                f("last_error", DataType::Utf8, true),
                f("rows_per_s", DataType::Float64, false),
                f("freshness_ms", DataType::Int64, true),
                f("subscribers", DataType::Int64, false),
                f("backfill_rows", DataType::Int64, true),
                f("backfill_remaining", DataType::Int64, true),
            ],
            SystemTableKind::Operators => vec![
                f("view", DataType::Utf8, false),
                f("operator", DataType::Utf8, false),
                f("partition", DataType::Int32, false),
                f("rows_in", DataType::Int64, false),
                f("rows_out", DataType::Int64, false),
                f("state_bytes", DataType::Int64, false),
                f("watermark", Self::ts(), true),
                f("blocked_ms", DataType::Int64, false),
                f("explain", DataType::Utf8, false),
            ],
            SystemTableKind::Subscriptions => vec![
                f("id", DataType::Int64, false),
                f("view", DataType::Utf8, false),
                f("via", DataType::Utf8, false),
                f("started_at", Self::ts(), false),
                f("position", DataType::Int64, false),
                f("rows_sent", DataType::Int64, false),
                f("buffered", DataType::Int64, false),
            ],
        }))
    }

    fn batch(&self) -> datafusion::error::Result<RecordBatch> {
        let wm = |v: i64| (v != NO_WATERMARK).then_some(v);
        let cols: Vec<ArrayRef> = match self.kind {
            SystemTableKind::Sources => {
                let s = self.catalog.streams();
                let m = |f: &dyn Fn(&crate::connectors::StreamObject) -> i64| {
                    Arc::new(Int64Array::from_iter_values(s.iter().map(|x| f(x)))) as ArrayRef
                };
                vec![
                    Arc::new(StringArray::from_iter_values(
                        s.iter().map(|x| x.name.clone()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        s.iter().map(|x| x.connector.clone()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        s.iter().map(|x| x.metrics.status.lock().clone()),
                    )),
                    m(&|x| x.metrics.rows_read.load(Ordering::Relaxed) as i64),
                    m(&|x| x.metrics.rows_rejected.load(Ordering::Relaxed) as i64),
                    m(&|x| x.metrics.rows_late.load(Ordering::Relaxed) as i64),
                    Arc::new(TimestampNanosecondArray::from_iter(
                        s.iter()
                            .map(|x| wm(x.metrics.watermark.load(Ordering::Relaxed))),
                    )),
                    // Lag: records upstream not yet read (Kafka); 0 for tables and generators.
                    m(&|x| x.metrics.lag.load(Ordering::Relaxed)),
                    Arc::new(StringArray::from_iter(
                        s.iter().map(|x| x.metrics.last_error.lock().clone()),
                    )),
                    m(&|x| x.metrics.dead_letters_evicted.load(Ordering::Relaxed) as i64),
                    Arc::new(Float64Array::from_iter_values(
                        s.iter().map(|x| x.metrics.rate.per_second()),
                    )),
                    Arc::new(Int64Array::from_iter(s.iter().map(|x| {
                        freshness_ms(x.metrics.watermark.load(Ordering::Relaxed))
                    }))),
                ]
            }
            SystemTableKind::Partitions => {
                let rows: Vec<(String, PartitionProgress)> = self
                    .catalog
                    .streams()
                    .iter()
                    .flat_map(|s| {
                        let name = s.name.clone();
                        s.metrics
                            .partitions
                            .lock()
                            .clone()
                            .into_iter()
                            .map(move |p| (name.clone(), p))
                    })
                    .collect();
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.0.clone()),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        rows.iter().map(|r| r.1.partition),
                    )),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1.next_offset))),
                    Arc::new(Int64Array::from_iter(
                        rows.iter().map(|r| r.1.high_watermark),
                    )),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| {
                        match (r.1.high_watermark, r.1.next_offset) {
                            (Some(h), Some(n)) => Some((h - n).max(0)),
                            _ => None,
                        }
                    }))),
                    Arc::new(TimestampNanosecondArray::from_iter(
                        rows.iter().map(|r| r.1.watermark),
                    )),
                    Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.1.idle)))),
                ]
            }
            SystemTableKind::Sinks => {
                let s = self.catalog.sinks();
                let text = |f: &dyn Fn(&crate::connectors::kafka::SinkObject) -> String| {
                    Arc::new(StringArray::from_iter_values(s.iter().map(|x| f(x)))) as ArrayRef
                };
                vec![
                    text(&|x| x.name.clone()),
                    text(&|x| x.from.clone()),
                    text(&|x| x.connector.clone()),
                    text(&|x| x.topic.clone()),
                    text(&|x| match x.mode {
                        crate::connectors::kafka::SinkMode::AppendOnly => "append_only".into(),
                        crate::connectors::kafka::SinkMode::Changelog => "changelog".into(),
                        crate::connectors::kafka::SinkMode::Upsert => "upsert".into(),
                    }),
                    text(&|x| x.delivery.name().into()),
                    text(&|x| x.metrics.status.lock().clone()),
                    Arc::new(Int64Array::from_iter_values(s.iter().map(|x| {
                        x.metrics.messages_written.load(Ordering::Relaxed) as i64
                    }))),
                    Arc::new(Int64Array::from_iter(s.iter().map(|x| {
                        (x.delivery == crate::connectors::kafka::Delivery::ExactlyOnce)
                            .then(|| x.metrics.committed_epoch.load(Ordering::Relaxed) as i64)
                    }))),
                    Arc::new(StringArray::from_iter(
                        s.iter().map(|x| x.metrics.last_error.lock().clone()),
                    )),
                ]
            }
            SystemTableKind::Views => {
                let v = self.catalog.views();
                vec![
                    Arc::new(StringArray::from_iter_values(
                        v.iter().map(|x| x.name.clone()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        v.iter().map(|x| x.emit.name()),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        v.iter().map(|x| x.store.lock().row_count() as i64),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        v.iter().map(|x| x.state_bytes() as i64),
                    )),
                    Arc::new(TimestampNanosecondArray::from_iter(
                        v.iter().map(|x| wm(x.watermark.load(Ordering::Relaxed))),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        v.iter().map(|x| x.rows_late.load(Ordering::Relaxed) as i64),
                    )),
                    Arc::new(StringArray::from_iter_values(v.iter().map(|x| x.status()))),
                    Arc::new(StringArray::from_iter(
                        v.iter().map(|x| x.last_error.lock().clone()),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        v.iter().map(|x| x.rate.per_second()),
                    )),
                    Arc::new(Int64Array::from_iter(
                        v.iter()
                            .map(|x| freshness_ms(x.watermark.load(Ordering::Relaxed))),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        v.iter().map(|x| x.changes.lock().subscribers() as i64),
                    )),
                    Arc::new(Int64Array::from_iter(
                        v.iter().map(|x| x.backfill_progress().0),
                    )),
                    Arc::new(Int64Array::from_iter(
                        v.iter().map(|x| x.backfill_progress().1),
                    )),
                ]
            }
            SystemTableKind::Operators => {
                let ops: Vec<(String, Arc<crate::views::OperatorStats>)> = self
                    .catalog
                    .views()
                    .iter()
                    .flat_map(|v| {
                        let name = v.name.clone();
                        v.operators().into_iter().map(move |o| (name.clone(), o))
                    })
                    .collect();
                let count = |f: &dyn Fn(&crate::views::OperatorStats) -> u64| {
                    Arc::new(Int64Array::from_iter_values(
                        ops.iter().map(|o| f(&o.1) as i64),
                    )) as ArrayRef
                };
                vec![
                    Arc::new(StringArray::from_iter_values(
                        ops.iter().map(|o| o.0.clone()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        ops.iter().map(|o| o.1.id.clone()),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        ops.iter().map(|o| o.1.partition as i32),
                    )),
                    count(&|o| o.rows_in.load(Ordering::Relaxed)),
                    count(&|o| o.rows_out.load(Ordering::Relaxed)),
                    count(&|o| o.state_bytes.load(Ordering::Relaxed)),
                    Arc::new(TimestampNanosecondArray::from_iter(
                        ops.iter()
                            .map(|o| wm(o.1.watermark.load(Ordering::Relaxed))),
                    )),
                    count(&|o| o.blocked_ns.load(Ordering::Relaxed) / 1_000_000),
                    Arc::new(StringArray::from_iter_values(
                        ops.iter().map(|o| o.1.explain.clone()),
                    )),
                ]
            }
            SystemTableKind::Subscriptions => {
                let rows: Vec<(String, crate::views::changes::SubscriberRow)> = self
                    .catalog
                    .views()
                    .iter()
                    .flat_map(|v| {
                        let name = v.name.clone();
                        v.changes
                            .lock()
                            .subscriber_rows()
                            .into_iter()
                            .map(move |r| (name.clone(), r))
                    })
                    .collect();
                let i64s = |f: &dyn Fn(&crate::views::changes::SubscriberRow) -> i64| {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| f(&r.1)))) as ArrayRef
                };
                vec![
                    i64s(&|r| r.info.id as i64),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.0.clone()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.1.info.via),
                    )),
                    Arc::new(TimestampNanosecondArray::from_iter_values(
                        rows.iter()
                            .map(|r| r.1.info.started_ms.saturating_mul(1_000_000)),
                    )),
                    i64s(&|r| r.info.position.load(Ordering::Relaxed)),
                    i64s(&|r| r.info.rows_sent.load(Ordering::Relaxed) as i64),
                    i64s(&|r| r.buffered as i64),
                ]
            }
        };
        Ok(RecordBatch::try_new(Self::schema_of(self.kind), cols)?)
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        Self::schema_of(self.kind)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// A system table whose rows `rows` builds at each scan (`eddy.connections`).
pub struct LiveTable {
    schema: SchemaRef,
    rows: Box<dyn Fn() -> crate::error::Result<RecordBatch> + Send + Sync>,
}

impl LiveTable {
    /// A table of `schema` whose rows are `rows()` when read.
    pub fn new(
        schema: SchemaRef,
        rows: impl Fn() -> crate::error::Result<RecordBatch> + Send + Sync + 'static,
    ) -> Self {
        LiveTable {
            schema,
            rows: Box::new(rows),
        }
    }
}

impl std::fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveTable({})", self.schema)
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let batch =
            (self.rows)().map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
