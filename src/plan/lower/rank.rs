//! `ROW_NUMBER()`/`RANK()`/`DENSE_RANK() OVER (…)` with a filter on the rank: a Top-N.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use crate::error::{EddyError, Result};

use super::finish::close_as_origin;
use super::{column_index, uncast, unsupported, Chain, Lowerer};
use crate::operators::top_n::RankKind;
use crate::operators::window::WindowKind;

/// The most rows per partition a Top-N (a rank bound, a view's `LIMIT`) may keep.
pub(super) const MAX_TOP_N: usize = 100_000;

/// A `ROW_NUMBER() OVER (…)` on the way to becoming a Top-N step.
pub(super) struct PendingRank {
    /// ROW_NUMBER, RANK or DENSE_RANK.
    pub(super) kind: RankKind,
    /// It ranks the aggregate's output (runs in the view's sink, after `post[..at]`).
    pub(super) after_agg: bool,
    /// Runs after this many `pre` (or, after an aggregate, `post`) steps.
    pub(super) at: usize,
    /// A window bound among the partition keys: (index, is window_end, window size).
    pub(super) window: Option<(usize, bool, i64)>,
    /// Column names of the partition keys (to find the input's event-time column).
    pub(super) partition_names: Vec<Option<String>>,
    pub(super) partition_by: Vec<Arc<dyn PhysicalExpr>>,
    pub(super) order_by: Vec<PhysicalSortExpr>,
    pub(super) input_schema: SchemaRef,
    pub(super) output_schema: SchemaRef,
    /// Position of the rank column in the current schema, while known.
    pub(super) col: Option<usize>,
    /// Rows kept, once the filter is found.
    pub(super) n: Option<usize>,
}

impl Lowerer<'_> {
    /// `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)`: the start of a Top-N.
    pub(super) fn row_number(
        &self,
        mut chain: Chain,
        w: &datafusion::logical_expr::Window,
    ) -> Result<Chain> {
        let (fun, kind) = ranking(w)?;
        if chain.rank.is_some() {
            // A ranking of a ranking: the first one's rows are the second one's input.
            let schema = w.input.schema().inner().clone();
            chain = Chain::over(close_as_origin(self, chain, schema, None)?);
        }
        let in_schema = w.input.schema();
        let partition_by = fun
            .params
            .partition_by
            .iter()
            .map(|e| self.phys(e, in_schema))
            .collect::<Result<Vec<_>>>()?;
        let order_by = self.sort_exprs(&fun.params.order_by, in_schema)?;
        if order_by.is_empty() {
            return Err(EddyError::InvalidParameter {
                message: "ROW_NUMBER() in a materialized view needs an ORDER BY".into(),
                hint: topn_hint(),
            });
        }
        let window = window_partition(&chain, &fun.params.partition_by, in_schema);
        let partition_names = fun
            .params
            .partition_by
            .iter()
            .map(|e| match e {
                Expr::Column(c) => Some(c.name.clone()),
                _ => None,
            })
            .collect();
        let after_agg = chain.agg.is_some();
        chain.rank = Some(PendingRank {
            kind,
            after_agg,
            at: if after_agg {
                chain.post.len()
            } else {
                chain.pre.len()
            },
            window,
            partition_names,
            partition_by,
            order_by,
            input_schema: in_schema.inner().clone(),
            output_schema: w.schema.inner().clone(),
            col: Some(in_schema.fields().len()),
            n: None,
        });
        Ok(chain)
    }

    /// The runnable form of `ORDER BY` expressions over `schema`.
    pub(super) fn sort_exprs(
        &self,
        exprs: &[datafusion::logical_expr::SortExpr],
        schema: &DFSchema,
    ) -> Result<Vec<PhysicalSortExpr>> {
        exprs
            .iter()
            .map(|s| {
                Ok(PhysicalSortExpr {
                    expr: self.phys(&s.expr, schema)?,
                    options: datafusion::arrow::compute::SortOptions {
                        descending: !s.asc,
                        nulls_first: s.nulls_first,
                    },
                })
            })
            .collect()
    }
}

fn topn_hint() -> Option<String> {
    Some(
        "Rank with ROW_NUMBER() OVER (PARTITION BY … ORDER BY …) and keep rn <= N \
         (Top-N) or rn = 1 (dedup)."
            .to_string(),
    )
}

/// The one ranking function of `w` and its kind.
pub(super) fn ranking(
    w: &datafusion::logical_expr::Window,
) -> Result<(&datafusion::logical_expr::expr::WindowFunction, RankKind)> {
    let fun = match w.window_expr.as_slice() {
        [Expr::WindowFunction(f)] => f,
        [Expr::Alias(a)] => match a.expr.as_ref() {
            Expr::WindowFunction(f) => f,
            _ => return Err(unsupported("this window function (OVER)")),
        },
        _ => {
            return Err(EddyError::NotSupported {
                message: "window functions (OVER) other than one ROW_NUMBER() are not \
                          supported in a materialized view"
                    .into(),
                hint: topn_hint(),
            })
        }
    };
    let kind = match fun.fun.name().to_ascii_lowercase().as_str() {
        "row_number" => RankKind::RowNumber,
        "rank" => RankKind::Rank,
        "dense_rank" => RankKind::DenseRank,
        _ => {
            return Err(EddyError::NotSupported {
                message: format!(
                    "window function {}() is not supported in a materialized view",
                    fun.fun.name()
                ),
                hint: topn_hint(),
            })
        }
    };
    Ok((fun, kind))
}

/// A window bound among the partition keys (index, is window_end, window
/// size): the watermark then frees closed windows' partitions.
fn window_partition(
    chain: &Chain,
    partition_by: &[Expr],
    in_schema: &DFSchema,
) -> Option<(usize, bool, i64)> {
    let (spec, _) = chain.window.as_ref()?;
    let sized = !matches!(
        spec.kind,
        WindowKind::Session | WindowKind::Rows | WindowKind::Cumulate
    );
    partition_by.iter().enumerate().find_map(|(i, e)| {
        let c = column_index(e, in_schema)?;
        if Some(c) == chain.window_cols.1 {
            Some((i, true, 0))
        } else if Some(c) == chain.window_cols.0 && sized {
            Some((i, false, spec.size_ns))
        } else {
            None
        }
    })
}

/// The most rows per partition a filter on the rank column `col` can keep:
/// the smallest upper bound among its conjuncts (`rn <= N`, `rn < N`,
/// `rn = k`, `rn BETWEEN a AND b`, also reversed, `N >= rn`). The filter
/// itself still runs after the Top-N, so `rn = 2` or `rn > 1 AND rn <= 3`
/// keep what they say.
pub(super) fn rank_limit(predicate: &Expr, schema: &DFSchema, col: Option<usize>) -> Option<usize> {
    let col = col?;
    datafusion::logical_expr::utils::split_conjunction(predicate)
        .into_iter()
        .filter_map(|c| upper_bound(c, schema, col))
        .min()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_TOP_N).contains(n))
}

/// The largest rank conjunct `c` lets through, if it bounds column `col`.
fn upper_bound(c: &Expr, schema: &DFSchema, col: usize) -> Option<i64> {
    use datafusion::logical_expr::{Between, Operator};
    // Type coercion may have wrapped either side in a cast.
    let is_rank = |e: &Expr| column_index(uncast(e), schema) == Some(col);
    let value = |e: &Expr| match uncast(e) {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(v)) => Some(v),
            _ => None,
        },
        _ => None,
    };
    match c {
        Expr::BinaryExpr(b) => {
            let (op, v) = if is_rank(&b.left) {
                (b.op, value(&b.right)?)
            } else if is_rank(&b.right) {
                (b.op.swap()?, value(&b.left)?)
            } else {
                return None;
            };
            match op {
                Operator::LtEq | Operator::Eq => Some(v),
                Operator::Lt => Some(v - 1),
                _ => None,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            high,
            ..
        }) if is_rank(expr) => value(high),
        _ => None,
    }
}
