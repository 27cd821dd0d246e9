//! `ORDER BY … LIMIT n [OFFSET m]` in a view: a Top-N over the whole input
//! (the rank it computes is dropped again).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{FetchType, Limit, LogicalPlan, Operator, SkipType, Sort};
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::PhysicalExpr;

use super::finish::close_as_origin;
use super::rank::{PendingRank, MAX_TOP_N};
use super::{Chain, Lowerer};
use crate::error::{EddyError, Result};
use crate::operators::steps::Step;
use crate::operators::top_n::RankKind;

fn refused(message: &str, hint: &str) -> EddyError {
    EddyError::NotSupported {
        message: message.into(),
        hint: Some(hint.into()),
    }
}

impl Lowerer<'_> {
    /// `… ORDER BY … LIMIT n OFFSET m`, also with a projection between the
    /// limit and the sort (`SELECT a FROM t ORDER BY b LIMIT 3`).
    pub(super) fn limit(&self, l: &Limit) -> Result<Chain> {
        let skip = match l.get_skip_type()? {
            SkipType::Literal(n) => n,
            SkipType::UnsupportedExpr => {
                return Err(refused("OFFSET must be a constant", "OFFSET 10"));
            }
        };
        let fetch = match l.get_fetch_type()? {
            FetchType::Literal(Some(n)) => n,
            _ => {
                return Err(refused(
                    "a materialized view needs a constant LIMIT with its OFFSET",
                    "ORDER BY … LIMIT 10 OFFSET 5",
                ))
            }
        };
        let keep = skip.saturating_add(fetch);
        if !(1..=MAX_TOP_N).contains(&keep) {
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "LIMIT plus OFFSET in a materialized view must be between 1 and {MAX_TOP_N}, \
                     not {keep}"
                ),
                hint: None,
            });
        }
        match l.input.as_ref() {
            LogicalPlan::Sort(s) => self.top(s, skip, keep),
            LogicalPlan::Projection(p) => match p.input.as_ref() {
                LogicalPlan::Sort(s) => {
                    let chain = self.top(s, skip, keep)?;
                    self.project(chain, p)
                }
                _ => Err(no_order()),
            },
            _ => Err(no_order()),
        }
    }

    /// The first `keep` rows of `s`'s order, less the first `skip`.
    fn top(&self, s: &Sort, skip: usize, keep: usize) -> Result<Chain> {
        let mut chain = self.lower(&s.input)?;
        let in_schema = s.input.schema();
        if chain.rank.is_some() {
            chain = Chain::over(close_as_origin(
                self,
                chain,
                in_schema.inner().clone(),
                None,
            )?);
        }
        let n_in = in_schema.fields().len();
        let mut fields: Vec<Field> = in_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("__rank", DataType::UInt64, false));
        let after_agg = chain.agg.is_some();
        let at = if after_agg {
            chain.post.len()
        } else {
            chain.pre.len()
        };
        chain.rank = Some(PendingRank {
            kind: RankKind::RowNumber,
            after_agg,
            at,
            window: None,
            partition_names: Vec::new(),
            partition_by: Vec::new(),
            order_by: self.sort_exprs(&s.expr, in_schema)?,
            input_schema: in_schema.inner().clone(),
            output_schema: Arc::new(Schema::new(fields)),
            col: Some(n_in),
            n: Some(keep),
        });
        let rank: Arc<dyn PhysicalExpr> = Arc::new(Column::new("__rank", n_in));
        if skip > 0 {
            let skip = u64::try_from(skip).unwrap_or(u64::MAX);
            chain.push(Step::Filter(Arc::new(BinaryExpr::new(
                rank,
                Operator::Gt,
                Arc::new(Literal::new(ScalarValue::UInt64(Some(skip)))),
            ))));
        }
        // The rank goes again: the view has the input's columns.
        let exprs = (0..n_in)
            .map(|i| Arc::new(Column::new(in_schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        chain.push(Step::Project {
            exprs,
            schema: in_schema.inner().clone(),
        });
        // Which rows are first changes as rows come: the view updates.
        Ok(chain)
    }
}

fn no_order() -> EddyError {
    refused(
        "LIMIT without ORDER BY is not supported in a materialized view (which rows it keeps \
         would be arbitrary)",
        "Say which rows: ORDER BY … LIMIT n, or apply LIMIT when you SELECT from the view.",
    )
}
