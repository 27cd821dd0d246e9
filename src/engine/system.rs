//! System tables in schema `eddy`: `eddy.sources` and `eddy.views`, built
//! from live counters each time they are read.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::catalog::Catalog;
use crate::connectors::stream::NO_WATERMARK;

/// Which system table.
#[derive(Debug, Clone, Copy)]
pub enum SystemTableKind {
    /// `eddy.sources`.
    Sources,
    /// `eddy.views`.
    Views,
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
                    // Lag: rows produced upstream but not yet read. Tables and
                    // generators have none; Kafka fills this in.
                    Arc::new(Int64Array::from_iter(s.iter().map(|_| Some(0)))),
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
                    Arc::new(StringArray::from_iter_values(
                        v.iter().map(|x| x.status.lock().clone()),
                    )),
                    Arc::new(StringArray::from_iter(
                        v.iter().map(|x| x.last_error.lock().clone()),
                    )),
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
