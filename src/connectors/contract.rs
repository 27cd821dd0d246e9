//! A source's data contract: `NOT NULL` columns and `CHECK` constraints,
//! enforced on every decoded row before it reaches any view. Rows that break
//! the contract are rejected with a message naming the column and value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::PhysicalExpr;

/// A compiled `CHECK (…)`.
#[derive(Debug, Clone)]
pub struct Check {
    /// The constraint as written, for messages.
    pub sql: String,
    /// The predicate over a row of the source.
    pub expr: Arc<dyn PhysicalExpr>,
}

/// The rules every row must satisfy.
#[derive(Debug, Clone, Default)]
pub struct Contract {
    /// Indexes and names of `NOT NULL` columns.
    pub not_null: Vec<(usize, String)>,
    /// `CHECK` constraints.
    pub checks: Vec<Check>,
}

impl Contract {
    /// True when there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.not_null.is_empty() && self.checks.is_empty()
    }

    /// The first violation of each violating row of `batch`, by row index, ascending.
    pub fn violations(&self, batch: &RecordBatch) -> Vec<(usize, String)> {
        let mut out: Vec<Option<String>> = vec![None; batch.num_rows()];
        for (i, name) in &self.not_null {
            let col = batch.column(*i);
            if col.null_count() == 0 {
                continue;
            }
            for (row, slot) in out.iter_mut().enumerate() {
                if slot.is_none() && col.is_null(row) {
                    *slot = Some(format!(
                        "field `{name}`: missing or null, but the column is NOT NULL"
                    ));
                }
            }
        }
        for check in &self.checks {
            let result = check
                .expr
                .evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()));
            let arr = match result {
                Ok(a) if a.data_type() == &DataType::Boolean => a,
                Ok(a) => {
                    let e = format!("{} gives {}, not a boolean", check.sql, a.data_type());
                    fill(&mut out, &e);
                    continue;
                }
                Err(e) => {
                    fill(
                        &mut out,
                        &format!("{} could not be evaluated: {e}", check.sql),
                    );
                    continue;
                }
            };
            let verdict = arr.as_boolean();
            // Usually every row passes: one count over the array says so.
            if verdict.false_count() == 0 {
                continue;
            }
            for (row, slot) in out.iter_mut().enumerate() {
                // SQL semantics: a CHECK that is NULL (unknown) passes.
                if slot.is_none() && verdict.is_valid(row) && !verdict.value(row) {
                    *slot = Some(format!(
                        "violates {}: {}",
                        check.sql,
                        describe_row(batch, &check.expr, row)
                    ));
                }
            }
        }
        out.into_iter()
            .enumerate()
            .filter_map(|(row, e)| e.map(|e| (row, e)))
            .collect()
    }
}

fn fill(out: &mut [Option<String>], e: &str) {
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        *slot = Some(e.to_string());
    }
}

/// `guests = -1, response = 'maybe'`: the columns a check reads, at `row`.
fn describe_row(batch: &RecordBatch, expr: &Arc<dyn PhysicalExpr>, row: usize) -> String {
    let mut cols: Vec<_> = collect_columns(expr).into_iter().collect();
    cols.sort_by_key(|c| c.index());
    let opts = FormatOptions::default().with_null("NULL");
    cols.iter()
        .map(|c| {
            let arr = batch.column(c.index());
            let v = ArrayFormatter::try_new(arr.as_ref(), &opts)
                .map(|f| f.value(row).to_string())
                .unwrap_or_else(|_| "?".into());
            let quoted = matches!(arr.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                && arr.is_valid(row);
            if quoted {
                format!("{} = '{}'", c.name(), v)
            } else {
                format!("{} = {}", c.name(), v)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
