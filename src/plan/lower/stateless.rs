//! Projections, filters and UNNEST: stateless steps on the chain.

use datafusion::logical_expr::{Filter, JoinType, LogicalPlan, Projection, Unnest};

use super::rank::rank_limit;
use super::{column_index, unsupported, Chain, Lowerer};
use crate::error::Result;
use crate::operators::steps::Step;

impl Lowerer<'_> {
    /// `p`'s expressions over `chain`'s rows.
    pub(super) fn project(&self, mut chain: Chain, p: &Projection) -> Result<Chain> {
        let in_schema = p.input.schema();
        let exprs = p
            .expr
            .iter()
            .map(|e| self.phys(e, in_schema))
            .collect::<Result<Vec<_>>>()?;
        let pos = |c: Option<usize>| {
            c.and_then(|c| {
                p.expr
                    .iter()
                    .position(|e| column_index(e, in_schema).is_some_and(|i| i == c))
            })
        };
        chain.window_cols = (pos(chain.window_cols.0), pos(chain.window_cols.1));
        chain.time_col = pos(chain.time_col);
        if let Some(r) = chain.rank.as_mut() {
            r.col = pos(r.col);
        }
        chain.push(Step::Project {
            exprs,
            schema: p.schema.inner().clone(),
        });
        Ok(chain)
    }

    /// `WHERE`; over an inner join it is part of the join's condition (time
    /// bounds, keys); over a ranking it may bound the rank (a Top-N).
    pub(super) fn filter(&self, f: &Filter) -> Result<Chain> {
        if let LogicalPlan::Join(j) = f.input.as_ref() {
            if j.join_type == JoinType::Inner {
                return self.join(j, Some(&f.predicate));
            }
        }
        if let Some(chain) = self.temporal(f)? {
            return Ok(chain);
        }
        let mut chain = self.lower(&f.input)?;
        if let Some(r) = chain.rank.as_mut().filter(|r| r.n.is_none()) {
            r.n = rank_limit(&f.predicate, f.input.schema(), r.col);
        }
        chain.push(Step::Filter(self.phys(&f.predicate, f.input.schema())?));
        Ok(chain)
    }

    /// `UNNEST` of one list column: the unnested column replaces the list in
    /// place, so positions are unchanged.
    pub(super) fn unnest(&self, mut chain: Chain, u: &Unnest) -> Result<Chain> {
        let [(column, list)] = u.list_type_columns.as_slice() else {
            return Err(unsupported("unnesting more than one list at once"));
        };
        if list.depth != 1 || !u.struct_type_columns.is_empty() {
            return Err(unsupported("unnest of nested lists or of a struct"));
        }
        chain.push(Step::Unnest {
            column: *column,
            preserve_nulls: u.options.preserve_nulls(),
            schema: u.schema.inner().clone(),
        });
        Ok(chain)
    }
}
