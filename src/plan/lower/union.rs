//! `UNION ALL`: every input closed, their rows merged on one partition.

use datafusion::logical_expr::Union;

use super::finish::close_as_origin;
use super::{Chain, Lowerer, Origin, PlanInputs};
use crate::error::Result;
use crate::plan::graph;

impl Lowerer<'_> {
    /// `a UNION ALL b …` (`UNION` is a `DISTINCT` over it).
    pub(super) fn union(&self, u: &Union) -> Result<Chain> {
        let mut origins = Vec::with_capacity(u.inputs.len());
        for input in &u.inputs {
            let chain = self.lower(input)?;
            origins.push(close_as_origin(
                self,
                chain,
                input.schema().inner().clone(),
                None,
            )?);
        }
        let ats: Vec<_> = origins.iter().map(|o| o.at).collect();
        let at = graph::union(&mut self.build.borrow_mut(), &ats);
        Ok(Chain::over(Origin::plain(
            "union",
            PlanInputs {
                schema: u.schema.inner().clone(),
                time_column: time_column(&origins, u),
                updating: origins.iter().any(|o| o.facts.updating),
                kind: "union".into(),
                upsert: false,
            },
            at,
        )))
    }
}

/// The union's event-time column: the column every input has its event
/// time in (by position), else none; with a watermark on every input, the
/// union still has one.
fn time_column(origins: &[Origin], u: &Union) -> Option<String> {
    let mut position = None;
    for o in origins {
        let t = o.facts.time_column.as_deref()?;
        let i = o.facts.schema.index_of(t).ok();
        if position.is_some_and(|p| p != i) {
            return Some("(watermark)".into());
        }
        position = Some(i);
    }
    match position.flatten() {
        Some(i) => Some(u.schema.field(i).name().clone()),
        None => Some("(watermark)".into()),
    }
}
