//! `EXPLAIN ANALYZE MATERIALIZED VIEW v`: the running view's operator graph (what `EXPLAIN
//! CREATE MATERIALIZED VIEW` shows), each operator followed by its live counters summed over
//! its partitions (`eddy.operators`), and the view's own figures on its last line.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Engine, Outcome};
use crate::catalog::ObjectRef;
use crate::connectors::stream::NO_WATERMARK;
use crate::error::{EddyError, Result};
use crate::sql::Statement;
use crate::views::OperatorStats;

/// One operator's counters over its partitions.
#[derive(Default)]
struct Summed {
    partitions: usize,
    rows_in: u64,
    rows_out: u64,
    state_bytes: u64,
    blocked_ns: u64,
    watermark: Option<i64>,
}

impl Summed {
    fn add(&mut self, o: &OperatorStats) {
        self.partitions += 1;
        self.rows_in += o.rows_in.load(Ordering::Relaxed);
        self.rows_out += o.rows_out.load(Ordering::Relaxed);
        self.state_bytes += o.state_bytes.load(Ordering::Relaxed);
        self.blocked_ns += o.blocked_ns.load(Ordering::Relaxed);
        let w = o.watermark.load(Ordering::Relaxed);
        if w != NO_WATERMARK {
            // The operator's watermark is its slowest partition's.
            self.watermark = Some(self.watermark.map_or(w, |m| m.min(w)));
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "partitions={} rows_in={} rows_out={} state_bytes={}",
            self.partitions, self.rows_in, self.rows_out, self.state_bytes
        );
        if self.blocked_ns > 0 {
            s.push_str(&format!(" blocked_ms={}", self.blocked_ns / 1_000_000));
        }
        if let Some(w) = self.watermark {
            s.push_str(&format!(" watermark={}", timestamp(w)));
        }
        s
    }
}

fn timestamp(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.f")
        .to_string()
}

impl Engine {
    /// `EXPLAIN ANALYZE MATERIALIZED VIEW name`.
    pub(super) async fn explain_analyze_view(&self, name: &str) -> Result<Outcome> {
        let (view, sql) = self.catalog.with(|e| match e.get(name) {
            Some(entry) => match &entry.object {
                ObjectRef::View(v) => Ok((v.clone(), entry.sql.clone())),
                _ => Err(EddyError::NotSupported {
                    message: format!("\"{name}\" is not a materialized view"),
                    hint: Some(
                        "EXPLAIN ANALYZE MATERIALIZED VIEW shows a running view's operators; \
                             EXPLAIN ANALYZE SELECT … runs a query."
                            .into(),
                    ),
                }),
            },
            None => Err(EddyError::UndefinedObject(format!(
                "materialized view \"{name}\" does not exist"
            ))),
        })?;
        let Some(Statement::CreateView(create)) = crate::sql::parse(&sql)?.pop() else {
            return Err(EddyError::Internal(format!(
                "the stored definition of {name} is not a CREATE MATERIALIZED VIEW"
            )));
        };
        let Outcome::Rows(df) = self.explain_view(create).await? else {
            return Err(EddyError::Internal("EXPLAIN gave no rows".into()));
        };
        let mut by_line: BTreeMap<String, Summed> = BTreeMap::new();
        for o in view.operators() {
            by_line.entry(o.explain.clone()).or_default().add(&o);
        }
        let mut lines = Vec::new();
        for batch in df.collect().await? {
            let text = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| EddyError::Internal("EXPLAIN lines are not text".into()))?;
            for line in text.iter().flatten() {
                lines.push(line.to_string());
                if let Some(s) = by_line.get(line.trim()) {
                    let indent = line.len() - line.trim_start().len();
                    lines.push(format!("{}  ↳ {}", " ".repeat(indent), s.describe()));
                }
            }
        }
        let watermark = view.watermark.load(Ordering::Relaxed);
        // One lock at a time: a format's arguments all live until it is done.
        let rows = view.store.lock().row_count();
        let state_bytes = view.state_bytes();
        let subscribers = view.changes.lock().subscribers();
        lines.push(format!(
            "  ↳ view: rows={rows} state_bytes={state_bytes} rows_late={} rows_per_s={:.1} \
             subscribers={subscribers}{}",
            view.rows_late.load(Ordering::Relaxed),
            view.rate.per_second(),
            if watermark == NO_WATERMARK {
                String::new()
            } else {
                format!(" watermark={}", timestamp(watermark))
            }
        ));
        let schema = Arc::new(Schema::new(vec![Field::new("plan", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(lines))])?;
        self.rows(batch)
    }
}
