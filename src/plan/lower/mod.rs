//! Lowering a DataFusion logical plan into a [`ViewPlan`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::{DFSchema, TableReference};
use datafusion::datasource::empty::EmptyTable;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use super::ViewPlan;
use crate::error::{EddyError, Result};
use crate::operators::aggregate::AggregateSpec;
use crate::operators::steps::Step;
use crate::operators::window::WindowSpec;
use crate::sql::window::extract_windows;
use crate::sql::{CreateView, EmitMode};

use super::graph::{At, Builder};

mod aggregate;
mod finish;
mod join;
mod limit;
mod over;
mod rank;
mod scan;
mod stateless;
mod temporal;
mod time;
mod union;

#[cfg(test)]
mod tests;

use finish::finish;
use rank::PendingRank;
pub use time::parse_state_ttl;
use time::{state_ttl, window_spec};

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
    for t in &view.as_of {
        if !inputs.get(t).is_some_and(|i| i.upsert) {
            return Err(EddyError::NotSupported {
                message: format!(
                    "FOR SYSTEM_TIME AS OF needs a table with a PRIMARY KEY: \"{t}\" is not one"
                ),
                hint: Some(
                    "eddy joins FOR SYSTEM_TIME AS OF as a lookup at processing time, against \
                     an upsert table (CREATE TABLE … (k … PRIMARY KEY, …)); versioned joins at \
                     the stream's event time are not supported."
                        .into(),
                ),
            });
        }
    }
    let mut query = view.query.clone();
    crate::sql::names::name_columns(&mut query);
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
        let schema = window_schema(&spec, &input.schema);
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
    let plan = decorrelate(&state, plan)?;
    let lowerer = Lowerer {
        state: &state,
        specs: &specs,
        inputs,
        emit: view.emit,
        max_groups,
        partitions,
        state_ttl: state_ttl(view)?,
        build: RefCell::new(Builder::default()),
        aggregated: std::cell::Cell::new(false),
        top_n: over::top_n_windows(&plan),
    };
    let chain = lowerer.lower(&plan)?;
    finish(&lowerer, view, chain, &plan)
}

/// The schema a window TVF gives `input`'s rows: their columns (and, over
/// `PROCTIME()`, the arrival time as `proctime`), then the window bounds.
fn window_schema(spec: &WindowSpec, input: &SchemaRef) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    if spec.processing_time {
        let time_type = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(&spec.time_column, time_type.clone(), false));
        return WindowSpec::output_schema(&Schema::new(fields), &time_type);
    }
    let time_type = input.field(spec.time_index).data_type().clone();
    WindowSpec::output_schema(input, &time_type)
}

/// Subqueries in `WHERE` as joins: `IN` / `EXISTS` become semi joins, `NOT
/// IN` / `NOT EXISTS` anti joins, a scalar subquery a join with its
/// aggregate (DataFusion's own rewrites; its other optimizations are left
/// out: the streaming planner has its own rules).
fn decorrelate(state: &SessionState, plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::optimizer::decorrelate_predicate_subquery::DecorrelatePredicateSubquery;
    use datafusion::optimizer::scalar_subquery_to_join::ScalarSubqueryToJoin;
    use datafusion::optimizer::{Optimizer, OptimizerContext};
    let mut options = state.config_options().as_ref().clone();
    // Uncorrelated scalar subqueries too (a query runs those once; a view joins them).
    options
        .optimizer
        .enable_physical_uncorrelated_scalar_subquery = false;
    // A view that fails to plan says why; nothing is skipped silently.
    let context =
        OptimizerContext::new_with_config_options(Arc::new(options)).with_skip_failing_rules(false);
    let optimizer = Optimizer::with_rules(vec![
        Arc::new(DecorrelatePredicateSubquery::new()),
        Arc::new(ScalarSubqueryToJoin::new()),
    ]);
    Ok(optimizer.optimize(plan, &context, |_, _| {})?)
}

/// A window and the schema its assignment gives.
type Window = (WindowSpec, SchemaRef);
/// Positions of (window_start, window_end) in a schema, while known.
type WindowCols = (Option<usize>, Option<usize>);

/// Where a chain's rows come from: a view input, or operators already built
/// (a join, an aggregate a later aggregate reads).
#[derive(Clone)]
struct Origin {
    /// The input's name, or what was built (for messages).
    name: String,
    /// Its schema, event time and whether its rows can be retracted.
    facts: PlanInputs,
    /// Where it stands in the graph.
    at: At,
    /// The window its rows are in, kept from an aggregate closed before
    /// it, with the positions of (window_start, window_end).
    window: Option<(Window, WindowCols)>,
    /// How far its watermark was held back behind that window's bounds.
    shift_ns: i64,
}

impl Origin {
    /// An origin without window facts.
    fn plain(name: &str, facts: PlanInputs, at: At) -> Self {
        Origin {
            name: name.to_string(),
            facts,
            at,
            window: None,
            shift_ns: 0,
        }
    }
}

/// The operators of one stretch of the plan, built bottom-up and closed
/// into graph nodes (see [`finish::close`]) where something reads them as a
/// whole: a join, a later aggregate, the view.
struct Chain {
    /// What it reads.
    origin: Origin,
    /// The window its rows are in (the facts [`Chain::window_cols`] refer to).
    window: Option<(WindowSpec, SchemaRef)>,
    /// The window still has to be assigned, right after the origin.
    assign: bool,
    pre: Vec<Step>,
    agg: Option<Arc<AggregateSpec>>,
    post: Vec<Step>,
    /// Positions of (window_start, window_end) in the current schema, while known.
    window_cols: (Option<usize>, Option<usize>),
    /// A ROW_NUMBER() seen, waiting for the `rn <= N` filter that makes it a Top-N.
    rank: Option<PendingRank>,
    /// Position of the input's event-time column in the current schema, while known.
    time_col: Option<usize>,
    /// The origin is a join: how late its rows come out.
    joined: Option<join::JoinFacts>,
}

impl Chain {
    /// A chain that reads `origin` as it is.
    fn over(origin: Origin) -> Self {
        let facts = &origin.facts;
        let time_col = facts
            .time_column
            .as_deref()
            .and_then(|t| facts.schema.index_of(t).ok());
        let (window, window_cols) = match origin.window.clone() {
            Some((w, cols)) => (Some(w), cols),
            None => (None, (None, None)),
        };
        Chain {
            origin,
            window,
            assign: false,
            pre: vec![],
            agg: None,
            post: vec![],
            window_cols,
            rank: None,
            time_col,
            joined: None,
        }
    }

    /// True if its origin's rows can be retracted.
    fn updating_in(&self) -> bool {
        self.origin.facts.updating
    }

    /// True if its origin has an event-time watermark.
    fn watermarked(&self) -> bool {
        self.origin.facts.time_column.is_some()
    }

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
    /// The graph built so far.
    build: RefCell<Builder>,
    /// An aggregate was planned (for EMIT ON WINDOW CLOSE over a join of aggregates).
    aggregated: std::cell::Cell<bool>,
    /// The window nodes a rank filter bounds (by address): Top-N, not OVER.
    top_n: std::collections::HashSet<usize>,
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

    /// The view input `name`, read once more.
    fn read(&self, name: &str) -> Result<Origin> {
        let facts = self.inputs.get(name).cloned().ok_or_else(|| {
            EddyError::UndefinedObject(format!("relation \"{name}\" does not exist"))
        })?;
        let edge = self.build.borrow_mut().input(name);
        Ok(Origin::plain(name, facts, At::input(edge)))
    }

    fn lower(&self, plan: &LogicalPlan) -> Result<Chain> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(p) => {
                let chain = self.lower(&p.input)?;
                self.project(chain, p)
            }
            LogicalPlan::Filter(f) => self.filter(f),
            LogicalPlan::Window(w) => {
                let chain = self.lower(&w.input)?;
                if self.top_n.contains(&over::address(w)) {
                    self.row_number(chain, w)
                } else {
                    self.over(chain, w)
                }
            }
            LogicalPlan::SubqueryAlias(s) => self.lower(&s.input),
            LogicalPlan::Unnest(u) => {
                let chain = self.lower(&u.input)?;
                self.unnest(chain, u)
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
            LogicalPlan::Limit(l) => self.limit(l),
            LogicalPlan::Join(j) => self.join(j, None),
            LogicalPlan::Union(u) => self.union(u),

            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                Err(unsupported("a query without FROM"))
            }
            other => Err(unsupported(&format!("the {} operator", other.display()))),
        }
    }
}

/// `e` without the casts type coercion wrapped it in (and without an alias).
fn uncast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => uncast(&c.expr),
        Expr::TryCast(c) => uncast(&c.expr),
        Expr::Alias(a) => uncast(&a.expr),
        other => other,
    }
}

/// Index in `schema` of `e` if it is a plain column reference.
fn column_index(e: &Expr, schema: &DFSchema) -> Option<usize> {
    match e {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        Expr::Alias(a) => column_index(&a.expr, schema),
        _ => None,
    }
}
