//! A table, source or view read by the view, or a window TVF over one (the
//! placeholder relation the SQL front end put in its place).

use std::sync::Arc;

use datafusion::logical_expr::TableScan;
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::PhysicalExpr;

use super::{unsupported, Chain, Lowerer};
use crate::error::Result;
use crate::operators::steps::Step;

impl Lowerer<'_> {
    /// The chain that reads `scan`'s relation, with the scan's projection
    /// and pushed-down filters as steps.
    pub(super) fn scan(&self, scan: &TableScan) -> Result<Chain> {
        let name = scan.table_name.table().to_string();
        let mut chain = match self.specs.get(&name) {
            Some((input, spec, schema)) => {
                let n = schema.fields().len();
                let mut origin = self.read(input)?;
                if spec.processing_time {
                    // What follows is ordered by arrival time, whatever the input's event time.
                    origin.facts.time_column = Some(spec.time_column.clone());
                }
                Chain {
                    window: Some((spec.clone(), schema.clone())),
                    assign: true,
                    window_cols: (Some(n - 2), Some(n - 1)),
                    time_col: Some(spec.time_index),
                    ..Chain::over(origin)
                }
            }
            None => Chain::over(self.read(&name)?),
        };
        if let Some(proj) = &scan.projection {
            let source_schema = scan.source.schema();
            let exprs = proj
                .iter()
                .map(|&i| {
                    Arc::new(PhysColumn::new(source_schema.field(i).name(), i))
                        as Arc<dyn PhysicalExpr>
                })
                .collect();
            let remap = |c: Option<usize>| c.and_then(|c| proj.iter().position(|&i| i == c));
            chain.window_cols = (remap(chain.window_cols.0), remap(chain.window_cols.1));
            chain.time_col = remap(chain.time_col);
            chain.push(Step::Project {
                exprs,
                schema: scan.projected_schema.inner().clone(),
            });
        }
        for f in &scan.filters {
            chain.push(Step::Filter(self.phys(f, &scan.projected_schema)?));
        }
        if scan.fetch.is_some() {
            return Err(unsupported("LIMIT"));
        }
        Ok(chain)
    }
}
