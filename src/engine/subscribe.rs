//! `SUBSCRIBE`: a client's stream of one materialized view's changes, either the view's
//! columns or a query over them. The query is read as the view's rows pass through it, so it
//! may only project and filter (what keeps a row a function of itself); anything that needs
//! state (aggregates, joins, ORDER BY, LIMIT) belongs in a materialized view, to which the
//! client then subscribes.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::Engine;
use crate::catalog::ObjectRef;
use crate::error::{EddyError, Result};
use crate::operators::steps::{apply_steps, Step};
use crate::sql::subscribe::{Subscribe, SubscribeSource};
use crate::views::changes::Start;
use crate::views::subscription::{MapChanges, Subscription};
use crate::views::MaterializedView;

fn stateful(what: &str) -> EddyError {
    EddyError::NotSupported {
        message: format!("SUBSCRIBE cannot read a query with {what}"),
        hint: Some(
            "SUBSCRIBE reads one materialized view through projections and filters; \
             create a materialized view for the rest and subscribe to it."
                .into(),
        ),
    }
}

impl Engine {
    /// Start the subscription `s` asks for; `via` says how the client reads it (for
    /// `eddy.subscriptions`: `rows`, `copy`, `cursor`, `sse`, `websocket`).
    pub async fn subscribe(&self, s: &Subscribe, via: &'static str) -> Result<Subscription> {
        let (view, map, columns) = self.subscription_source(s).await?;
        let start = match (s.as_of, s.snapshot) {
            (Some(p), _) => Start::After(p),
            (None, true) => Start::Snapshot,
            (None, false) => Start::Now,
        };
        let receiver = view.subscribe_changes(start, via)?;
        Ok(Subscription::new(
            &view.name, receiver, &columns, map, s.progress,
        ))
    }

    /// The columns subscription `s` sends (for the extended protocol's Describe).
    pub async fn subscribe_schema(&self, s: &Subscribe) -> Result<SchemaRef> {
        let (_, _, columns) = self.subscription_source(s).await?;
        Ok(Subscription::schema_for(&columns, s.progress))
    }

    /// The view `s` reads, the steps its rows go through, and the columns they come out with.
    async fn subscription_source(
        &self,
        s: &Subscribe,
    ) -> Result<(Arc<MaterializedView>, Option<MapChanges>, SchemaRef)> {
        match &s.source {
            SubscribeSource::View(name) => {
                let view = self.subscribable(name)?;
                let columns = view.schema.clone();
                Ok((view, None, columns))
            }
            SubscribeSource::Query(q) => self.subscribe_query(q).await,
        }
    }

    /// The view `name`, or why it cannot be subscribed to.
    fn subscribable(&self, name: &str) -> Result<Arc<MaterializedView>> {
        self.catalog.with(|e| match e.get(name).map(|e| &e.object) {
            Some(ObjectRef::View(v)) => Ok(v.clone()),
            Some(_) => Err(EddyError::NotSupported {
                message: format!("\"{name}\" is not a materialized view: SUBSCRIBE reads views"),
                hint: Some(format!(
                    "CREATE MATERIALIZED VIEW {name}_changes AS SELECT * FROM {name}, and \
                     subscribe to it."
                )),
            }),
            None => Err(EddyError::UndefinedObject(format!(
                "materialized view \"{name}\" does not exist"
            ))),
        })
    }

    /// `SUBSCRIBE (query)`: the view it reads and the steps its rows go through.
    async fn subscribe_query(
        &self,
        query: &str,
    ) -> Result<(Arc<MaterializedView>, Option<MapChanges>, SchemaRef)> {
        let plan = self.plan_query(query).await?;
        let state = self.ctx.state();
        let plan = state.optimize(&plan)?;
        let columns = crate::sql::column_names::pg_schema_of_sql(query, plan.schema().inner());
        let mut steps = Vec::new();
        let mut node = &plan;
        let view = loop {
            match node {
                LogicalPlan::Projection(p) => {
                    let exprs = p
                        .expr
                        .iter()
                        .map(|e| crate::plan::physical_expr(&state, e.clone(), p.input.schema()))
                        .collect::<Result<Vec<_>>>()?;
                    steps.push(Step::Project {
                        exprs,
                        schema: p.schema.inner().clone(),
                    });
                    node = &p.input;
                }
                LogicalPlan::Filter(f) => {
                    steps.push(Step::Filter(crate::plan::physical_expr(
                        &state,
                        f.predicate.clone(),
                        f.input.schema(),
                    )?));
                    node = &f.input;
                }
                LogicalPlan::SubqueryAlias(a) => node = &a.input,
                LogicalPlan::TableScan(scan) => {
                    if scan.fetch.is_some() {
                        return Err(stateful("LIMIT"));
                    }
                    let view = self.subscribable(scan.table_name.table())?;
                    if !scan.filters.is_empty() {
                        let pred = scan
                            .filters
                            .iter()
                            .cloned()
                            .reduce(Expr::and)
                            .map(|p| {
                                let full = datafusion::common::DFSchema::try_from_qualified_schema(
                                    scan.table_name.clone(),
                                    &view.schema,
                                )?;
                                crate::plan::physical_expr(&state, p, &full)
                            })
                            .transpose()?;
                        steps.extend(pred.map(Step::Filter));
                    }
                    if let Some(cols) = &scan.projection {
                        let exprs = cols
                            .iter()
                            .map(|&i| {
                                Arc::new(datafusion::physical_expr::expressions::Column::new(
                                    view.schema.field(i).name(),
                                    i,
                                )) as _
                            })
                            .collect();
                        steps.push(Step::Project {
                            exprs,
                            schema: Arc::new(view.schema.project(cols)?),
                        });
                    }
                    break view;
                }
                LogicalPlan::Aggregate(_) => return Err(stateful("an aggregate")),
                LogicalPlan::Join(_) => return Err(stateful("a join")),
                LogicalPlan::Sort(_) => return Err(stateful("ORDER BY")),
                LogicalPlan::Limit(_) => return Err(stateful("LIMIT")),
                LogicalPlan::Distinct(_) => return Err(stateful("DISTINCT")),
                LogicalPlan::Window(_) => return Err(stateful("a window function")),
                other => {
                    return Err(stateful(&format!(
                        "{} (it reads one view)",
                        other.display().to_string().to_lowercase()
                    )))
                }
            }
        };
        steps.reverse();
        let map: MapChanges = Box::new(move |c| apply_steps(&steps, c.clone()));
        Ok((view, Some(map), columns))
    }
}
