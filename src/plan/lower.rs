//! Lowering a DataFusion logical plan into a [`ViewPlan`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::{DFSchema, ScalarValue, TableReference};
use datafusion::datasource::empty::EmptyTable;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::{OutputTime, ViewPlan};
use crate::error::{EddyError, Result};
use crate::operators::aggregate::{AggCall, AggregateSpec, PaneSpec, SessionSpec, WindowKey};
use crate::operators::steps::Step;
use crate::operators::top_n::TopNSpec;
use crate::operators::window::{WindowKind, WindowSpec};
use crate::sql::window::{extract_windows, WindowFnArgs, WindowTvf};
use crate::sql::{CreateView, EmitMode};

mod join;

/// What the planner needs to know about an input object.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    /// Row schema.
    pub schema: SchemaRef,
    /// The event-time column its watermark refers to, if any.
    pub time_column: Option<String>,
    /// True if its rows can be retracted.
    pub updating: bool,
    /// `table`, `source` or `materialized view` (for EXPLAIN).
    pub kind: String,
    /// An upsert table (a `PRIMARY KEY`): joined as a lookup table.
    pub upsert: bool,
}

/// Plan a view: rewrite window TVFs, plan with DataFusion, lower.
///
/// `functions` are the engine's scalar functions (pg_catalog's included),
/// so a view may call whatever a query may.
pub async fn plan_view(
    view: &CreateView,
    inputs: &HashMap<String, PlanInputs>,
    config: SessionConfig,
    functions: &[Arc<datafusion::logical_expr::ScalarUDF>],
    partitions: usize,
    max_groups: usize,
) -> Result<ViewPlan> {
    let mut query = view.query.clone();
    crate::sql::names::name_compound_columns(&mut query);
    crate::sql::unnest::rewrite_lateral_unnest(&mut query)?;
    let windows = extract_windows(&mut query)?;
    let catalog = config.options().catalog.default_catalog.clone();
    let schema_name = config.options().catalog.default_schema.clone();
    let ctx = SessionContext::new_with_config(config);
    crate::functions::register(&ctx);
    for f in functions {
        ctx.register_udf(f.as_ref().clone());
    }
    if ctx.catalog(&catalog).is_none() {
        let cat = Arc::new(MemoryCatalogProvider::new());
        cat.register_schema(&schema_name, Arc::new(MemorySchemaProvider::new()))?;
        ctx.register_catalog(&catalog, cat);
    }
    for (name, input) in inputs {
        // Names are already normalized (a quoted "Events" keeps its case).
        ctx.register_table(
            TableReference::bare(name.as_str()),
            Arc::new(EmptyTable::new(input.schema.clone())),
        )?;
    }
    let mut specs = HashMap::new();
    for w in &windows {
        let input = inputs.get(&w.input).ok_or_else(|| {
            EddyError::UndefinedObject(format!("relation \"{}\" does not exist", w.input))
        })?;
        let spec = window_spec(&ctx.state(), w, input)?;
        let time_type = input.schema.field(spec.time_index).data_type().clone();
        let schema = WindowSpec::output_schema(&input.schema, &time_type);
        ctx.register_table(
            TableReference::bare(w.placeholder.as_str()),
            Arc::new(EmptyTable::new(schema.clone())),
        )?;
        specs.insert(w.placeholder.clone(), (w.input.clone(), spec, schema));
    }
    let state = ctx.state();
    let stmt = DfStatement::Statement(Box::new(ast::Statement::Query(query)));
    let plan = state.statement_to_plan(stmt).await?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let lowerer = Lowerer {
        state: &state,
        specs: &specs,
        inputs,
        emit: view.emit,
        max_groups,
        partitions,
        state_ttl: state_ttl(view)?,
    };
    let chain = lowerer.lower(&plan)?;
    finish(view, chain, inputs, (partitions, max_groups), &plan)
}

fn window_spec(state: &SessionState, w: &WindowTvf, input: &PlanInputs) -> Result<WindowSpec> {
    let time_index = input.schema.index_of(&w.time_column).map_err(|_| {
        EddyError::UndefinedColumn(format!(
            "column \"{}\" does not exist in \"{}\"",
            w.time_column, w.input
        ))
    })?;
    if !matches!(
        input.schema.field(time_index).data_type(),
        DataType::Timestamp(_, _)
    ) {
        return Err(EddyError::DatatypeMismatch(format!(
            "window time column \"{}\" must be a TIMESTAMP, not {}",
            w.time_column,
            input.schema.field(time_index).data_type()
        )));
    }
    if let Some(tc) = &input.time_column {
        if tc != &w.time_column {
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "\"{}\" has its watermark on \"{tc}\", so windows over it must use \"{tc}\", not \"{}\"",
                    w.input, w.time_column
                ),
                hint: None,
            });
        }
    }
    let (kind, size, slide) = match &w.args {
        WindowFnArgs::Tumble { size } => {
            let s = interval_ns(state, size)?;
            (WindowKind::Tumble, s, s)
        }
        WindowFnArgs::Hop { slide, size } => (
            WindowKind::Hop,
            interval_ns(state, size)?,
            interval_ns(state, slide)?,
        ),
        WindowFnArgs::Rows { count } => {
            let n = row_count(state, count)?;
            (WindowKind::Rows, n, n)
        }
        WindowFnArgs::Session { gap } => {
            let g = interval_ns(state, gap)?;
            (WindowKind::Session, g, g)
        }
        WindowFnArgs::Cumulate { step, size } => (
            WindowKind::Cumulate,
            interval_ns(state, size)?,
            interval_ns(state, step)?,
        ),
    };
    WindowSpec::new(kind, size, slide, time_index, w.time_column.clone())
}

/// Evaluate a constant expression (`None` if it is not one).
fn constant(state: &SessionState, e: &ast::Expr) -> Result<Option<ScalarValue>> {
    let empty = DFSchema::empty();
    let expr = state.create_logical_expr(&e.to_string(), &empty)?;
    let phys = super::physical_expr(state, expr, &empty)?;
    let batch = datafusion::arrow::record_batch::RecordBatch::new_empty(Arc::new(
        datafusion::arrow::datatypes::Schema::empty(),
    ));
    Ok(match phys.evaluate(&batch)? {
        datafusion::logical_expr::ColumnarValue::Scalar(s) => Some(s),
        _ => None,
    })
}

/// Evaluate a constant row count (TUMBLE_ROWS) to a positive integer.
fn row_count(state: &SessionState, e: &ast::Expr) -> Result<i64> {
    let n = match constant(state, e)?
        .map(|s| s.cast_to(&datafusion::arrow::datatypes::DataType::Int64))
    {
        Some(Ok(ScalarValue::Int64(Some(n)))) => n,
        _ => 0,
    };
    if !(1..=1_000_000).contains(&n) {
        return Err(EddyError::InvalidParameter {
            message: format!("TUMBLE_ROWS needs a row count from 1 to 1000000, got {e}"),
            hint: None,
        });
    }
    Ok(n)
}

/// The `state_ttl` view option in nanoseconds (how long an unbounded join keeps a row).
fn state_ttl(view: &CreateView) -> Result<Option<i64>> {
    view.options
        .get("state_ttl")
        .map(|text| parse_state_ttl(text))
        .transpose()
}

/// A `state_ttl` value (`'1 hour'`, `'30 minutes'`, `'90 s'`) in nanoseconds.
pub fn parse_state_ttl(text: &str) -> Result<i64> {
    let bad = || EddyError::InvalidParameter {
        message: format!("invalid state_ttl '{text}'"),
        hint: Some("Give a duration such as '1 hour', '30 minutes' or '90 s'.".into()),
    };
    let v = datafusion::arrow::compute::cast(
        &datafusion::arrow::array::StringArray::from(vec![text]),
        &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
    )
    .map_err(|_| bad())?;
    let v = ScalarValue::try_from_array(&v, 0)?;
    match interval_value_ns(&v) {
        Some(ns) if ns > 0 => Ok(ns),
        _ => Err(bad()),
    }
}

/// A fixed-length interval constant in nanoseconds.
fn interval_value_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v * 1_000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v * 1_000_000),
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1_000_000_000),
        _ => None,
    }
}

/// Evaluate a constant interval expression to nanoseconds.
fn interval_ns(state: &SessionState, e: &ast::Expr) -> Result<i64> {
    let bad = |why: &str| EddyError::InvalidParameter {
        message: format!("invalid window interval {e}: {why}"),
        hint: Some("Use a fixed interval such as INTERVAL '10' SECOND.".into()),
    };
    let Some(s) = constant(state, e)? else {
        return Err(bad("not a constant"));
    };
    match s {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return Err(bad("months have no fixed length"));
            }
            Ok(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Ok(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(_) => Err(bad("months have no fixed length")),
        ScalarValue::DurationNanosecond(Some(v)) => Ok(v),
        _ => Err(bad("not an interval")),
    }
}

/// The chain of operators built bottom-up.
struct Chain {
    input: String,
    window: Option<(WindowSpec, SchemaRef)>,
    pre: Vec<Step>,
    agg: Option<Arc<AggregateSpec>>,
    post: Vec<Step>,
    /// Positions of (window_start, window_end) in the current schema, while known.
    window_cols: (Option<usize>, Option<usize>),
    /// A ROW_NUMBER() seen, waiting for the `rn <= N` filter that makes it a Top-N.
    rank: Option<PendingRank>,
    /// Position of the input's event-time column in the current schema, while known.
    time_col: Option<usize>,
    /// A join of two inputs (the chain's steps run on its output).
    join: Option<(crate::plan::JoinPlan, join::JoinFacts)>,
}

/// A `ROW_NUMBER() OVER (…)` on the way to becoming a Top-N step.
struct PendingRank {
    /// ROW_NUMBER, RANK or DENSE_RANK.
    kind: crate::operators::top_n::RankKind,
    /// It ranks the aggregate's output (runs in the view's sink, after `post[..at]`).
    after_agg: bool,
    /// Runs after this many `pre` (or, after an aggregate, `post`) steps.
    at: usize,
    /// A window bound among the partition keys: (index, is window_end, window size).
    window: Option<(usize, bool, i64)>,
    /// Column names of the partition keys (to find the input's event-time column).
    partition_names: Vec<Option<String>>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<PhysicalSortExpr>,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    /// Position of the rank column in the current schema, while known.
    col: Option<usize>,
    /// Rows kept, once the filter is found.
    n: Option<usize>,
}

/// A HOP aggregate can share work per slide ([`PaneSpec`]) when nothing between the window
/// assignment and the aggregate, and nothing in the aggregate but plain group keys, reads the
/// window bounds (they hold the pane's bounds there, not the window's).
fn pane_spec(
    chain: &Chain,
    group_exprs: &[Arc<dyn PhysicalExpr>],
    aggs: &[AggCall],
) -> Option<PaneSpec> {
    use datafusion::physical_expr::expressions::Column as PhysColumn;
    use datafusion::physical_expr::utils::collect_columns;
    let (spec, schema) = chain.window.as_ref()?;
    if spec.kind != WindowKind::Hop
        || spec.slide_ns <= 0
        || spec.size_ns <= spec.slide_ns
        || spec.size_ns % spec.slide_ns != 0
        || chain.rank.is_some()
        || chain.join.is_some()
    {
        return None;
    }
    // Where window_start (false) and window_end (true) are, step by step.
    let n = schema.fields().len();
    let mut bounds: HashMap<usize, bool> = HashMap::from([(n - 2, false), (n - 1, true)]);
    let reads = |e: &Arc<dyn PhysicalExpr>, bounds: &HashMap<usize, bool>| {
        collect_columns(e)
            .iter()
            .any(|c| bounds.contains_key(&c.index()))
    };
    let plain = |e: &Arc<dyn PhysicalExpr>| e.downcast_ref::<PhysColumn>().map(|c| c.index());
    for step in &chain.pre {
        match step {
            Step::Filter(e) if !reads(e, &bounds) => {}
            Step::Project { exprs, .. } => {
                let mut next = HashMap::new();
                for (j, e) in exprs.iter().enumerate() {
                    match plain(e).and_then(|i| bounds.get(&i)) {
                        Some(is_end) => {
                            next.insert(j, *is_end);
                        }
                        None if reads(e, &bounds) => return None,
                        None => {}
                    }
                }
                bounds = next;
            }
            _ => return None,
        }
    }
    let (mut start_group, mut end_group) = (None, None);
    for (g, e) in group_exprs.iter().enumerate() {
        match plain(e).and_then(|i| bounds.get(&i)) {
            Some(true) if end_group.is_none() => end_group = Some(g),
            Some(false) if start_group.is_none() => start_group = Some(g),
            Some(_) => return None,
            None if reads(e, &bounds) => return None,
            None => {}
        }
    }
    let agg_reads = aggs.iter().any(|a| {
        a.args.iter().any(|e| reads(e, &bounds))
            || a.filter.as_ref().is_some_and(|f| reads(f, &bounds))
    });
    if agg_reads || (start_group.is_none() && end_group.is_none()) {
        return None;
    }
    Some(PaneSpec {
        slide_ns: spec.slide_ns,
        size_ns: spec.size_ns,
        start_group,
        end_group,
    })
}

impl Chain {
    fn push(&mut self, step: Step) {
        if self.agg.is_some() {
            self.post.push(step);
        } else {
            self.pre.push(step);
        }
    }
}

struct Lowerer<'a> {
    state: &'a SessionState,
    specs: &'a HashMap<String, (String, WindowSpec, SchemaRef)>,
    inputs: &'a HashMap<String, PlanInputs>,
    emit: EmitMode,
    max_groups: usize,
    partitions: usize,
    /// How long an unbounded join keeps a row (ns), from `WITH (state_ttl = …)`.
    state_ttl: Option<i64>,
}

fn unsupported(what: &str) -> EddyError {
    EddyError::NotSupported {
        message: format!("{what} is not supported in a materialized view yet"),
        hint: None,
    }
}

impl Lowerer<'_> {
    fn phys(&self, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        super::physical_expr(self.state, e.clone(), schema)
    }

    /// `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)`: the start of a Top-N.
    fn row_number(&self, chain: &mut Chain, w: &datafusion::logical_expr::Window) -> Result<()> {
        let topn_hint = || {
            Some(
                "Rank with ROW_NUMBER() OVER (PARTITION BY … ORDER BY …) and keep rn <= N \
                 (Top-N) or rn = 1 (dedup)."
                    .to_string(),
            )
        };
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
            "row_number" => crate::operators::top_n::RankKind::RowNumber,
            "rank" => crate::operators::top_n::RankKind::Rank,
            "dense_rank" => crate::operators::top_n::RankKind::DenseRank,
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
        if chain.rank.is_some() {
            return Err(EddyError::NotSupported {
                message: "more than one ranking in a materialized view is not supported".into(),
                hint: Some("Rank in a view on this view.".into()),
            });
        }
        let in_schema = w.input.schema();
        let partition_by = fun
            .params
            .partition_by
            .iter()
            .map(|e| self.phys(e, in_schema))
            .collect::<Result<Vec<_>>>()?;
        let order_by = fun
            .params
            .order_by
            .iter()
            .map(|s| {
                Ok(PhysicalSortExpr {
                    expr: self.phys(&s.expr, in_schema)?,
                    options: datafusion::arrow::compute::SortOptions {
                        descending: !s.asc,
                        nulls_first: s.nulls_first,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if order_by.is_empty() {
            return Err(EddyError::InvalidParameter {
                message: "ROW_NUMBER() in a materialized view needs an ORDER BY".into(),
                hint: topn_hint(),
            });
        }
        // PARTITION BY window_start / window_end: the watermark frees closed windows.
        let window = chain.window.as_ref().and_then(|(spec, _)| {
            let sized = !matches!(
                spec.kind,
                WindowKind::Session | WindowKind::Rows | WindowKind::Cumulate
            );
            fun.params
                .partition_by
                .iter()
                .enumerate()
                .find_map(|(i, e)| {
                    let c = column_index(e, in_schema)?;
                    if Some(c) == chain.window_cols.1 {
                        Some((i, true, 0))
                    } else if Some(c) == chain.window_cols.0 && sized {
                        Some((i, false, spec.size_ns))
                    } else {
                        None
                    }
                })
        });
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
        Ok(())
    }

    fn lower(&self, plan: &LogicalPlan) -> Result<Chain> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table().to_string();
                let mut chain = match self.specs.get(&name) {
                    Some((input, spec, schema)) => {
                        let n = schema.fields().len();
                        Chain {
                            input: input.clone(),
                            window: Some((spec.clone(), schema.clone())),
                            pre: vec![],
                            agg: None,
                            post: vec![],
                            window_cols: (Some(n - 2), Some(n - 1)),
                            rank: None,
                            time_col: Some(spec.time_index),
                            join: None,
                        }
                    }
                    None => Chain {
                        time_col: self
                            .inputs
                            .get(&name)
                            .and_then(|i| i.schema.index_of(i.time_column.as_deref()?).ok()),
                        input: name,
                        window: None,
                        pre: vec![],
                        agg: None,
                        post: vec![],
                        window_cols: (None, None),
                        rank: None,
                        join: None,
                    },
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
                    let remap =
                        |c: Option<usize>| c.and_then(|c| proj.iter().position(|&i| i == c));
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
            LogicalPlan::Projection(p) => {
                let mut chain = self.lower(&p.input)?;
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
            LogicalPlan::Filter(f) => {
                // WHERE over an inner join is part of its condition (time bounds, keys).
                if let LogicalPlan::Join(j) = f.input.as_ref() {
                    if j.join_type == datafusion::logical_expr::JoinType::Inner {
                        return self.join(j, Some(&f.predicate));
                    }
                }
                let mut chain = self.lower(&f.input)?;
                if let Some(r) = chain.rank.as_mut().filter(|r| r.n.is_none()) {
                    r.n = rank_limit(&f.predicate, f.input.schema(), r.col);
                }
                chain.push(Step::Filter(self.phys(&f.predicate, f.input.schema())?));
                Ok(chain)
            }
            LogicalPlan::Window(w) => {
                let mut chain = self.lower(&w.input)?;
                self.row_number(&mut chain, w)?;
                Ok(chain)
            }
            LogicalPlan::SubqueryAlias(s) => self.lower(&s.input),
            LogicalPlan::Unnest(u) => {
                let mut chain = self.lower(&u.input)?;
                let [(column, list)] = u.list_type_columns.as_slice() else {
                    return Err(unsupported("unnesting more than one list at once"));
                };
                if list.depth != 1 || !u.struct_type_columns.is_empty() {
                    return Err(unsupported("unnest of nested lists or of a struct"));
                }
                // The unnested column replaces the list in place: positions are unchanged.
                chain.push(Step::Unnest {
                    column: *column,
                    preserve_nulls: u.options.preserve_nulls(),
                    schema: u.schema.inner().clone(),
                });
                Ok(chain)
            }
            LogicalPlan::Aggregate(a) => {
                let chain = self.lower(&a.input)?;
                self.aggregate(
                    chain,
                    &a.input,
                    &a.group_expr,
                    &a.aggr_expr,
                    a.schema.inner().clone(),
                )
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let chain = self.lower(input)?;
                let group: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                self.aggregate(chain, input, &group, &[], input.schema().inner().clone())
            }
            LogicalPlan::Sort(_) => Err(EddyError::NotSupported {
                message: "ORDER BY is not supported in a materialized view".into(),
                hint: Some("A view holds a set of rows; ORDER BY when you SELECT from it.".into()),
            }),
            LogicalPlan::Limit(_) => Err(EddyError::NotSupported {
                message: "LIMIT is not supported in a materialized view".into(),
                hint: Some("Apply LIMIT when you SELECT from the view.".into()),
            }),
            LogicalPlan::Join(j) => self.join(j, None),
            LogicalPlan::Union(_) => Err(unsupported("UNION")),

            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                Err(unsupported("a query without FROM"))
            }
            other => Err(unsupported(&format!("the {} operator", other.display()))),
        }
    }

    fn aggregate(
        &self,
        chain: Chain,
        input: &LogicalPlan,
        group_expr: &[Expr],
        aggr_expr: &[Expr],
        output_schema: SchemaRef,
    ) -> Result<Chain> {
        let mut chain = chain;
        if chain.agg.is_some() {
            return Err(unsupported("an aggregate over an aggregate in one view"));
        }
        let in_schema = input.schema();
        let mut group_exprs = Vec::new();
        let mut window = None;
        let mut session_groups = [None, None];
        for (gi, g) in group_expr.iter().enumerate() {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err(unsupported("GROUPING SETS / ROLLUP / CUBE"));
            }
            group_exprs.push(self.phys(g, in_schema)?);
            if let (Some(idx), Some((spec, _))) = (column_index(g, in_schema), &chain.window) {
                let is_end = Some(idx) == chain.window_cols.1;
                if matches!(spec.kind, WindowKind::Session | WindowKind::Rows)
                    && (is_end || Some(idx) == chain.window_cols.0)
                {
                    session_groups[usize::from(is_end)] = Some(gi);
                }
                // window_start gives the end only when every window has the same size.
                let usable = is_end
                    || (Some(idx) == chain.window_cols.0 && spec.kind != WindowKind::Cumulate);
                if usable && window.is_none_or(|w: WindowKey| !w.is_end && is_end) {
                    window = Some(WindowKey {
                        group_index: gi,
                        is_end,
                        size_ns: spec.size_ns,
                    });
                }
            }
        }
        let mut session = None;
        // SESSION and TUMBLE_ROWS rows wait in a buffer and reach the aggregate
        // with both bounds set, in windows that are already complete.
        let buffered = |window: &mut Option<WindowKey>, gap_ns: i64, rows: Option<usize>| {
            if let Some(w) = window.as_mut() {
                w.size_ns = 0;
                w.is_end = session_groups[1].is_some();
                w.group_index = session_groups[1]
                    .or(session_groups[0])
                    .unwrap_or(w.group_index);
            }
            SessionSpec {
                gap_ns,
                rows,
                start_col: chain.window_cols.0,
                end_col: chain.window_cols.1,
                window_groups: session_groups,
            }
        };
        if let Some((spec, _)) = &chain.window {
            if spec.kind == WindowKind::Rows {
                if window.is_none() {
                    return Err(EddyError::InvalidParameter {
                        message: "an aggregate over TUMBLE_ROWS windows must GROUP BY \
                                  window_start or window_end"
                            .into(),
                        hint: Some("GROUP BY key, window_start, window_end ….".into()),
                    });
                }
                session = Some(buffered(&mut window, 0, usize::try_from(spec.size_ns).ok()));
            }
            if spec.kind == WindowKind::Session {
                if window.is_none() || self.emit != EmitMode::OnWindowClose {
                    return Err(EddyError::InvalidParameter {
                        message: "an aggregate over SESSION windows must GROUP BY window_start \
                                  or window_end and EMIT ON WINDOW CLOSE (a session's result is \
                                  known once it closes)"
                            .into(),
                        hint: Some(
                            "GROUP BY key, window_start, window_end … EMIT ON WINDOW CLOSE.".into(),
                        ),
                    });
                }
                session = Some(buffered(&mut window, spec.size_ns, None));
            }
            if spec.kind == WindowKind::Cumulate && window.is_none() {
                return Err(EddyError::InvalidParameter {
                    message: "an aggregate over CUMULATE windows must GROUP BY window_end \
                              (the windows of a period share their window_start)"
                        .into(),
                    hint: Some("GROUP BY window_start, window_end, ….".into()),
                });
            }
        }
        let props = self.state.execution_props();
        let mut aggs = Vec::new();
        for e in aggr_expr {
            let e = &super::simplify(self.state, e.clone(), in_schema)?;
            let planning = PhysicalPlanningContext::default();
            let lowered =
                LoweredAggregateBuilder::new(e, in_schema, in_schema.as_arrow(), props, &planning)
                    .build()?;
            let (func, filter) = (lowered.aggregate, lowered.filter);
            if !lowered.order_bys.is_empty() {
                return Err(unsupported("an aggregate with ORDER BY"));
            }
            // Bad constant arguments (approx_top_k's k, say) fail here, not in the running view.
            func.create_accumulator().map_err(|e| match e {
                datafusion::error::DataFusionError::Plan(m) => EddyError::invalid(m),
                // stddev(DISTINCT …), approx_median(DISTINCT …): a query runs them through a
                // rewrite to a nested GROUP BY; a view keeps one accumulator per group.
                datafusion::error::DataFusionError::NotImplemented(m) if m.contains("DISTINCT") => {
                    EddyError::NotSupported {
                        message: format!("{m} in a materialized view"),
                        hint: Some(
                            "Compute the aggregate over a view of the distinct values: \
                             CREATE MATERIALIZED VIEW d AS SELECT DISTINCT k, x FROM …; then \
                             aggregate x over d."
                                .into(),
                        ),
                    }
                }
                other => other.into(),
            })?;
            let args = func.expressions();
            aggs.push(AggCall { func, args, filter });
        }
        if self.emit == EmitMode::OnWindowClose && window.is_none() {
            return Err(EddyError::InvalidParameter {
                message: "EMIT ON WINDOW CLOSE needs an aggregate grouped by window_start or window_end of a TUMBLE, HOP or CUMULATE window".into(),
                hint: Some("Drop EMIT ON WINDOW CLOSE for an always-updating result.".into()),
            });
        }
        let panes = pane_spec(&chain, &group_exprs, &aggs);
        chain.agg = Some(Arc::new(AggregateSpec {
            group_exprs,
            aggs,
            output_schema,
            window,
            session,
            emit: self.emit,
            max_groups: self.max_groups,
            retract: false,
            panes,
        }));
        // The window bound among the group keys, by its position in the aggregate's output.
        chain.window_cols = match window {
            Some(w) if w.is_end => (None, Some(w.group_index)),
            Some(w) => (Some(w.group_index), None),
            None => (None, None),
        };
        chain.time_col = None;
        Ok(chain)
    }
}

/// `rn <= N`, `rn < N` or `rn = 1` on the rank column `col`: the N it keeps.
fn rank_limit(predicate: &Expr, schema: &DFSchema, col: Option<usize>) -> Option<usize> {
    // Type coercion may have wrapped either side in a cast.
    fn uncast(e: &Expr) -> &Expr {
        match e {
            Expr::Cast(c) => uncast(&c.expr),
            Expr::TryCast(c) => uncast(&c.expr),
            other => other,
        }
    }
    let Expr::BinaryExpr(b) = predicate else {
        return None;
    };
    if column_index(uncast(&b.left), schema)? != col? {
        return None;
    }
    let Expr::Literal(v, _) = uncast(&b.right) else {
        return None;
    };
    let v = match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(v)) => v,
        _ => return None,
    };
    let n = match b.op {
        datafusion::logical_expr::Operator::LtEq => v,
        datafusion::logical_expr::Operator::Lt => v - 1,
        datafusion::logical_expr::Operator::Eq if v == 1 => 1,
        _ => return None,
    };
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=100_000).contains(n))
}

/// Index in `schema` of `e` if it is a plain column reference.
fn column_index(e: &Expr, schema: &DFSchema) -> Option<usize> {
    match e {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => column_index(&a.expr, schema),
        _ => None,
    }
}

fn finish(
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
