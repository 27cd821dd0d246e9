//! The end of lowering: checks on the whole chain, the view's output time, the plan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;

use crate::error::{EddyError, Result};

use super::{join, Chain, PlanInputs};
use crate::operators::top_n::TopNSpec;
use crate::plan::{OutputTime, ViewPlan};
use crate::sql::{CreateView, EmitMode};

pub(super) fn finish(
    view: &CreateView,
    chain: Chain,
    inputs: &HashMap<String, PlanInputs>,
    (partitions, max_groups): (usize, usize),
    plan: &LogicalPlan,
) -> Result<ViewPlan> {
    let mut chain = chain;
    let join = chain.join.take();
    // A join's output stands in for the input in the checks below.
    let joined;
    let input = match &join {
        Some((j, facts)) => {
            joined = PlanInputs {
                schema: j.spec.output_schema.clone(),
                time_column: facts.watermarked.then(|| "(join)".to_string()),
                updating: facts.updating,
                kind: "join".into(),
                upsert: false,
            };
            &joined
        }
        None => inputs.get(&chain.input).ok_or_else(|| {
            EddyError::UndefinedObject(format!("relation \"{}\" does not exist", chain.input))
        })?,
    };
    let output_schema = plan.schema().inner().clone();
    if view.emit == EmitMode::OnWindowClose && chain.agg.is_none() {
        return Err(EddyError::InvalidParameter {
            message: "EMIT ON WINDOW CLOSE needs a windowed aggregate (GROUP BY window_start …)"
                .into(),
            hint: None,
        });
    }
    if view.emit == EmitMode::OnWindowClose && input.time_column.is_none() {
        return Err(EddyError::InvalidParameter {
            message: format!(
                "EMIT ON WINDOW CLOSE needs a watermark, and \"{}\" has none",
                chain.input
            ),
            hint: Some("Declare WATERMARK FOR <column> AS <expr> on the input.".into()),
        });
    }
    if input.updating {
        if chain.window.is_some() {
            return Err(EddyError::NotSupported {
                message: format!(
                    "windows over the updating view \"{}\" are not supported",
                    chain.input
                ),
                hint: Some("Make the upstream view EMIT ON WINDOW CLOSE (append-only).".into()),
            });
        }
        if let Some(agg) = chain.agg.as_mut() {
            let spec = Arc::get_mut(agg)
                .ok_or_else(|| EddyError::Internal("aggregate spec is shared".into()))?;
            spec.retract = true;
            for a in &spec.aggs {
                if !a
                    .func
                    .create_sliding_accumulator()?
                    .supports_retract_batch()
                {
                    return Err(EddyError::NotSupported {
                        message: format!(
                            "{} cannot retract rows, so it cannot aggregate the updating view \"{}\"",
                            a.func.name(),
                            chain.input
                        ),
                        hint: Some(
                            "Make the upstream view EMIT ON WINDOW CLOSE (append-only), or use count/sum/avg."
                                .into(),
                        ),
                    });
                }
            }
        }
    }
    let has_col = |c: &str| output_schema.index_of(c).ok().map(|_| c.to_string());
    let out_time = match &chain.agg {
        Some(agg) => match agg.window {
            // A session's window_start can be any distance below the watermark:
            // downstream views get no event time from it.
            Some(_) if agg.session.is_some() => OutputTime {
                column: None,
                delay_ns: 0,
                forwards: false,
            },
            // The window bound the view keeps, under whatever name it was given.
            Some(wk) => OutputTime {
                column: chain
                    .window_cols
                    .0
                    .or(chain.window_cols.1)
                    .map(|i| output_schema.field(i).name().clone())
                    .or_else(|| has_col("window_start"))
                    .or_else(|| has_col("window_end")),
                delay_ns: wk.size_ns,
                forwards: true,
            },
            None => OutputTime {
                column: None,
                delay_ns: 0,
                forwards: false,
            },
        },
        None => match &join {
            Some((_, facts)) => join_out_time(&chain, facts, &output_schema),
            None => OutputTime {
                column: input.time_column.as_deref().and_then(has_col),
                delay_ns: 0,
                forwards: true,
            },
        },
    };
    let mut top_n_after_agg = false;
    let top_n = match chain.rank.take() {
        None => None,
        Some(r) => {
            let Some(n) = r.n else {
                return Err(EddyError::InvalidParameter {
                    message: "ROW_NUMBER() in a materialized view needs a filter that keeps the \
                              first rows: rn <= N, rn < N or rn = 1 (Top-N)"
                        .into(),
                    hint: Some(
                        "SELECT * FROM (SELECT …, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v \
                         DESC) AS rn FROM t) WHERE rn <= 3"
                            .into(),
                    ),
                });
            };
            // An aggregate that updates its rows feeds the ranking retractions.
            let updating_in = if r.after_agg {
                chain
                    .agg
                    .as_ref()
                    .is_some_and(|a| a.emit == EmitMode::OnUpdate)
            } else {
                input.updating
            };
            top_n_after_agg = r.after_agg;
            Some((
                r.at,
                Arc::new(TopNSpec {
                    kind: r.kind,
                    keep_all: updating_in,
                    partition_by: r.partition_by,
                    order_by: r.order_by,
                    n,
                    input_schema: r.input_schema,
                    output_schema: r.output_schema,
                    max_keys: max_groups,
                    // Or the input's event-time column (e.g. an EOWC view's window_start):
                    // rows below the watermark never come, so such a partition is done.
                    window: r.window.or_else(|| {
                        let tc = input.time_column.as_deref().filter(|_| !r.after_agg)?;
                        let i = r
                            .partition_names
                            .iter()
                            .position(|n| n.as_deref() == Some(tc))?;
                        Some((i, false, 1))
                    }),
                }),
            ))
        }
    };
    let updating = input.updating
        || top_n.is_some()
        || chain
            .agg
            .as_ref()
            .is_some_and(|a| a.emit == EmitMode::OnUpdate);
    Ok(ViewPlan {
        name: view.name.clone(),
        input: chain.input,
        window: if join.is_some() { None } else { chain.window },
        pre: chain.pre,
        agg: chain.agg,
        post: chain.post,
        output_schema,
        emit: view.emit,
        out_time,
        updating,
        partitions: partitions.max(1),
        top_n,
        top_n_after_agg,
        join: join.map(|(j, _)| Arc::new(j)),
    })
}

/// The event time of a join view without an aggregate: the stream's (or
/// the left input's) time column or window bound, if the view keeps one,
/// delayed by how late a joined row can come out.
fn join_out_time(chain: &Chain, facts: &join::JoinFacts, schema: &SchemaRef) -> OutputTime {
    let name = |c: Option<usize>| c.map(|c| schema.field(c).name().clone());
    let size = chain.window.as_ref().map_or(0, |(w, _)| w.size_ns);
    let column = match facts.time_delay_ns.filter(|_| facts.watermarked) {
        None => None,
        Some(d) => name(chain.time_col)
            .map(|c| (c, d))
            .or_else(|| name(chain.window_cols.0).map(|c| (c, d.saturating_add(size))))
            .or_else(|| name(chain.window_cols.1).map(|c| (c, d))),
    };
    match column {
        Some((c, d)) => OutputTime {
            column: Some(c),
            delay_ns: d,
            forwards: true,
        },
        None => OutputTime {
            column: None,
            delay_ns: 0,
            forwards: facts.watermarked,
        },
    }
}
