//! `CREATE` and `DROP` of tables, sources and materialized views.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DFSchema, TableReference};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Engine, Outcome};
use crate::catalog::{Entry, ObjectRef};
use crate::connectors::stream::WatermarkGen;
use crate::connectors::table_log::TableLog;
use crate::connectors::{StreamObject, StreamTable};
use crate::error::{EddyError, Result};
use crate::plan::{explain, plan_view, PlanInputs, ViewPlan};
use crate::runtime::{spawn_view, ViewInput};
use crate::sql::{CreateStream, CreateView, ObjectKind};
use crate::views::{MaterializedView, ViewTable};

/// Why a view did not start: with checkpointed state (then it is rebuilt
/// without) or without.
enum StartError {
    Restored(EddyError),
    Fresh(EddyError),
}

impl StartError {
    fn into_inner(self) -> EddyError {
        match self {
            StartError::Restored(e) | StartError::Fresh(e) => e,
        }
    }
}

fn command(tag: &str) -> Outcome {
    Outcome::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

/// Whether `expr` is `column`, or `column` plus or minus constants: it then rises with `column`
/// alone.
fn rises_with(expr: &datafusion::logical_expr::Expr, column: &str) -> bool {
    use datafusion::logical_expr::{Expr, Operator};
    match expr {
        Expr::Column(c) => c.name == column,
        Expr::BinaryExpr(b) => {
            matches!(b.op, Operator::Plus | Operator::Minus)
                && matches!(b.right.as_ref(), Expr::Literal(..))
                && rises_with(&b.left, column)
        }
        _ => false,
    }
}

impl Engine {
    fn exists(&self, name: &str) -> Option<ObjectKind> {
        self.catalog.with(|e| e.get(name).map(|e| e.kind()))
    }

    fn duplicate(&self, name: &str) -> EddyError {
        EddyError::DuplicateObject(format!("relation \"{name}\" already exists"))
    }

    fn watermark_gen(&self, c: &CreateStream, schema: &SchemaRef) -> Result<Option<WatermarkGen>> {
        let Some(wm) = &c.watermark else {
            return Ok(None);
        };
        let time_index = schema.index_of(&wm.column).map_err(|_| {
            EddyError::UndefinedColumn(format!(
                "WATERMARK FOR \"{}\": no such column in \"{}\"",
                wm.column, c.name
            ))
        })?;
        if !matches!(
            schema.field(time_index).data_type(),
            DataType::Timestamp(_, _)
        ) {
            return Err(EddyError::DatatypeMismatch(format!(
                "WATERMARK FOR \"{}\": the column must be a TIMESTAMP, not {}",
                wm.column,
                schema.field(time_index).data_type()
            )));
        }
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let state = self.ctx.state();
        let expr = state.create_logical_expr(&wm.expr.to_string(), &df_schema)?;
        let monotone = rises_with(&expr, &wm.column);
        let phys = crate::plan::physical_expr(&state, expr, &df_schema)?;
        let out_type = phys.data_type(schema)?;
        if !matches!(out_type, DataType::Timestamp(_, _)) {
            return Err(EddyError::DatatypeMismatch(format!(
                "WATERMARK expression {} must give a TIMESTAMP, not {out_type}",
                wm.expr
            )));
        }
        Ok(Some(WatermarkGen {
            time_index,
            time_column: wm.column.clone(),
            monotone,
            expr: phys,
        }))
    }

    /// Create a table or source. `id` is its catalog id (reserved for a new
    /// object, recorded for one being restored): a table's log is stored
    /// under it.
    pub(super) async fn create_stream(&self, c: CreateStream, id: Option<u64>) -> Result<Outcome> {
        let tag = match c.kind {
            ObjectKind::Table => "CREATE TABLE",
            _ => "CREATE SOURCE",
        };
        if self.exists(&c.name).is_some() {
            return if c.if_not_exists {
                Ok(command(tag).with_notice(exists_skipping(&c.name)))
            } else {
                Err(self.duplicate(&c.name))
            };
        }
        let (c, columns, stream) = self.build_stream(c, id).await?;
        let mut tasks = JoinSet::new();
        if self.restoring() {
            if let Some(pos) = self.recovered_stream(&c.name) {
                stream.restore_position(&pos).await;
            }
        }
        if c.kind == ObjectKind::Source {
            self.start_connector(&c, &columns, &stream, &mut tasks)?;
        }
        self.ctx.register_table(
            TableReference::bare(c.name.as_str()),
            Arc::new(StreamTable(stream.clone())),
        )?;
        self.catalog.with(|e| {
            e.insert(
                c.name.clone(),
                Entry {
                    object: ObjectRef::Stream(stream),
                    sql: c.sql.clone(),
                    depends_on: vec![],
                    tasks,
                },
            )
        });
        Ok(command(tag))
    }

    /// The stream object `c` defines, with its columns (not yet started, not in the catalog):
    /// `CREATE` and `ALTER SOURCE … ADD COLUMN` build it alike. `id` as for
    /// [`Engine::create_stream`].
    pub(super) async fn build_stream(
        &self,
        c: CreateStream,
        id: Option<u64>,
    ) -> Result<(CreateStream, super::sources::Columns, Arc<StreamObject>)> {
        let c = crate::connectors::nexmark::with_standard_columns(c)?;
        let mut columns = self.stream_columns(&c).await?;
        let key_cols = primary_key_columns(&c, &mut columns.schema)?;
        let mut schema = columns.schema.clone();
        if let (ObjectKind::Source, Some(keys)) = (c.kind, &key_cols) {
            // A delete names only the key: the other columns of a keyed source may be
            // empty in its rows (NOT NULL is checked on upserts by the contract).
            let fields: Vec<datafusion::arrow::datatypes::Field> = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| f.as_ref().clone().with_nullable(!keys.contains(&i)))
                .collect();
            schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        }
        let watermark = self.watermark_gen(&c, &schema)?;
        // Tables and file sources keep their most recent rows: `SELECT` reads them, and a
        // view created later starts from them (a file is read once; its rows would
        // otherwise be gone for later views). Kafka and generators keep none.
        let (connector, retain) = match c.kind {
            ObjectKind::Table => ("table".to_string(), self.limits.table_retain_rows),
            _ => {
                let connector = c.options.get("connector").cloned().unwrap_or_default();
                let retain = match connector.as_str() {
                    "file" => self.limits.table_retain_rows,
                    _ => 0,
                };
                (connector, retain)
            }
        };
        if c.kind == ObjectKind::Table && !columns.checks.is_empty() {
            return Err(EddyError::not_supported(
                "CHECK constraints are supported on sources, not on tables",
            ));
        }
        let mut stream = StreamObject::new(
            c.name.clone(),
            c.kind,
            connector,
            schema.clone(),
            watermark,
            retain,
        )
        .with_start_gate(self.start_gate());
        // Evictions of this source's dead letters, also of those restored from a checkpoint.
        stream.metrics.dead_letters_evicted = self.dead_letters.evicted_counter(&c.name);
        if let (ObjectKind::Table, Some(data_dir)) = (c.kind, &self.data_dir) {
            let id = id.ok_or_else(|| {
                EddyError::Internal(format!("table \"{}\" has no catalog id", c.name))
            })?;
            let dir = TableLog::dir(data_dir, id);
            if self.restoring() {
                adopt_legacy_log(data_dir, &c.name, &dir);
            } else {
                // A new table starts a new log (ids are never reused; this is only tidying).
                let _ = std::fs::remove_dir_all(&dir);
            }
            let log_schema = match key_cols {
                Some(_) => crate::connectors::upsert::log_schema(&schema),
                None => schema.clone(),
            };
            stream = stream.with_table_log(TableLog::open(dir, log_schema)?);
        }
        if let Some(keys) = key_cols {
            stream = stream.with_upsert(crate::connectors::upsert::UpsertState::new(
                schema.clone(),
                keys,
                self.limits.table_retain_rows,
            )?);
        }
        Ok((c, columns, Arc::new(stream)))
    }

    pub(super) fn plan_inputs(&self) -> HashMap<String, PlanInputs> {
        self.catalog.with(|e| {
            e.iter()
                .filter_map(|(name, e)| {
                    let inputs = match &e.object {
                        ObjectRef::Stream(s) => PlanInputs {
                            schema: s.schema.clone(),
                            time_column: s.time_column().map(str::to_string),
                            updating: s.is_upsert(),
                            kind: if s.is_upsert() {
                                format!("upsert {}", s.kind.noun())
                            } else {
                                s.kind.noun().to_string()
                            },
                            upsert: s.is_upsert(),
                        },
                        ObjectRef::View(v) => PlanInputs {
                            schema: v.schema.clone(),
                            time_column: v.output.time.column.clone(),
                            updating: v.output.updating,
                            kind: "materialized view".to_string(),
                            upsert: false,
                        },
                        ObjectRef::Sink(_) => return None,
                    };
                    Some((name.clone(), inputs))
                })
                .collect()
        })
    }

    pub(super) async fn plan(
        &self,
        v: &CreateView,
    ) -> Result<(ViewPlan, HashMap<String, PlanInputs>)> {
        self.plan_with(v, self.plan_inputs()).await
    }

    /// Plan `v` against `inputs` (the catalog's, or with one stream's schema
    /// substituted: `ALTER SOURCE`).
    pub(super) async fn plan_with(
        &self,
        v: &CreateView,
        inputs: HashMap<String, PlanInputs>,
    ) -> Result<(ViewPlan, HashMap<String, PlanInputs>)> {
        // By their own names only: an alias entry (`date_format`) holds a
        // function of another name, which must not replace that name's entry.
        let functions: Vec<_> = self
            .ctx
            .state()
            .scalar_functions()
            .iter()
            .filter(|(key, f)| f.name() == key.as_str())
            .map(|(_, f)| f.clone())
            .collect();
        let plan = plan_view(
            v,
            &inputs,
            self.ctx.copied_config(),
            &functions,
            self.limits.partitions,
            self.limits.max_groups_per_partition,
        )
        .await?;
        Ok((plan, inputs))
    }

    pub(super) async fn explain_view(&self, v: CreateView) -> Result<Outcome> {
        let mut lines = Vec::new();
        let (plan, inputs) = self.plan(&v).await?;
        let kind = |name: &str| inputs.get(name).map_or("?".to_string(), |i| i.kind.clone());
        lines.extend(explain(&plan, &kind)?);
        let existing = self.catalog.with(|e| {
            e.get(&v.name)
                .filter(|e| matches!(e.object, ObjectRef::View(_)))
                .map(|e| e.sql.clone())
        });
        if let (true, Some(old_sql)) = (v.or_replace, existing) {
            let verdict = self.compare(&old_sql, &v).await?.1;
            lines.push(verdict.describe(&plan.inputs()));
        }
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("plan", DataType::Utf8, false),
        ]));
        let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
            schema,
            vec![Arc::new(datafusion::arrow::array::StringArray::from(lines))],
        )?;
        self.rows(batch)
    }

    pub(super) async fn create_view(&self, v: CreateView) -> Result<Outcome> {
        if self.exists(&v.name).is_some() {
            return if v.if_not_exists {
                Ok(command("CREATE MATERIALIZED VIEW").with_notice(exists_skipping(&v.name)))
            } else {
                Err(self.duplicate(&v.name))
            };
        }
        check_view_options(&v)?;
        let restored = if self.restoring() {
            self.recovered_view(&v.name)
        } else {
            None
        };
        let (view, tasks, input_names) = match self.start_view(&v, restored, None).await {
            Ok(started) => started,
            Err(StartError::Restored(e)) => {
                tracing::warn!(view = %v.name, error = %e,
                    "cannot use the view's checkpointed state; rebuilding it from its input");
                let started = self
                    .start_view(&v, None, None)
                    .await
                    .map_err(StartError::into_inner)?;
                // Policy: keep serving, rebuilt from what its inputs still hold (a table's
                // retained rows; nothing a source read before the restart), and say so.
                *started.0.last_error.lock() = Some(format!(
                    "restarted without its checkpointed state ({e}): rebuilt from the rows its \
                     inputs still hold; rows sources delivered before the restart are missing"
                ));
                started
            }
            Err(StartError::Fresh(e)) => return Err(e),
        };
        self.ctx.register_table(
            TableReference::bare(v.name.as_str()),
            Arc::new(ViewTable(view.clone())),
        )?;
        self.catalog.with(|e| {
            e.insert(
                v.name.clone(),
                Entry {
                    object: ObjectRef::View(view),
                    sql: v.sql.clone(),
                    depends_on: input_names,
                    tasks,
                },
            )
        });
        Ok(command("CREATE MATERIALIZED VIEW"))
    }

    /// Start `v`, replacing a view whose unchanged operators' state is
    /// `carried` (see `replace.rs`): the view, its tasks, what it reads.
    pub(super) async fn start_carried(
        &self,
        v: &CreateView,
        carried: super::carry_over::Carried,
    ) -> Result<(Arc<MaterializedView>, JoinSet<()>, Vec<String>)> {
        self.start_view(v, None, Some(carried))
            .await
            .map_err(StartError::into_inner)
    }

    /// Plan the view, load `restored` state into it (or a replaced view's
    /// `carried` state), subscribe it to its input and spawn its tasks.
    async fn start_view(
        &self,
        v: &CreateView,
        restored: Option<crate::state::ViewSnapshot>,
        carried: Option<super::carry_over::Carried>,
    ) -> std::result::Result<(Arc<MaterializedView>, JoinSet<()>, Vec<String>), StartError> {
        let with_state = restored.is_some();
        let err = |e| {
            if with_state {
                StartError::Restored(e)
            } else {
                StartError::Fresh(e)
            }
        };
        let (plan, mut ready, restate, carried_state) = match carried {
            Some(c) => (c.plan, c.inputs, c.restate, Some(c.snapshot)),
            None => {
                let (plan, _) = self.plan(v).await.map_err(StartError::Fresh)?;
                (plan, Vec::new(), Vec::new(), None)
            }
        };
        let choice = super::backfill::Choice::of(v).map_err(StartError::Fresh)?;
        let mut drivers = Vec::new();
        let mut input_names = plan.inputs();
        let view = Arc::new(
            MaterializedView::new(
                plan.output(),
                plan.emit,
                self.limits.view_max_rows,
                self.limits.subscriptions,
                self.checkpoint_hub(),
            )
            .map_err(StartError::Fresh)?,
        );
        if let Some(r) = &restored {
            view.restore_rows(&r.rows, r.position).map_err(err)?;
        }
        let mut inputs = Vec::new();
        let restored = carried_state.or(restored);
        if !ready.is_empty() && ready.len() != input_names.len() {
            return Err(StartError::Fresh(EddyError::Internal(
                "a replacement's inputs do not match its plan".into(),
            )));
        }
        ready.resize_with(input_names.len(), || None);
        let mut backfills = Vec::new();
        for (i, input) in input_names.iter().enumerate() {
            backfills.push(match self.input_ref(input) {
                Some(_) if ready[i].is_some() => None,
                Some(r) => self
                    .backfill_start(
                        &choice,
                        &v.name,
                        i,
                        &r,
                        restored.as_ref().filter(|_| with_state),
                    )
                    .map_err(StartError::Fresh)?,
                None => None,
            });
        }
        for ((i, input), backfill) in input_names.iter().enumerate().zip(backfills) {
            if let Some(carried) = ready[i].take() {
                inputs.push(carried);
                continue;
            }
            let (tx, rx) = mpsc::channel(self.limits.channel_capacity);
            if let Some((stream, start)) = backfill {
                let held = stream.hold().await;
                let resumed = matches!(start, crate::connectors::backfill::Start::Resume(_));
                let snapshot = if resumed || !stream.holds_everything() {
                    drivers.push(self.backfill(&choice, &v.name, i, stream.clone(), start, tx));
                    Vec::new()
                } else {
                    // Nothing delivered yet, or all of it still kept for SELECT: start
                    // from that, at once.
                    stream
                        .publisher
                        .subscribe(&v.name, tx, || stream.snapshot_messages())
                        .await
                };
                drop(held);
                inputs.push(ViewInput { snapshot, rx });
                continue;
            }
            let mut snapshot = match self.subscribe_to(input, &v.name, tx).await {
                Ok(s) => s,
                Err(e) => {
                    for done in &input_names[..i] {
                        self.unsubscribe_from(done, &v.name).await;
                    }
                    return Err(StartError::Fresh(e));
                }
            };
            if with_state {
                // The checkpointed state already holds what the input had published.
                snapshot.clear();
            }
            inputs.push(ViewInput { snapshot, rx });
        }
        input_names.dedup();
        let mut tasks = JoinSet::new();
        if let Err(e) = spawn_view(
            view.clone(),
            &plan.graph,
            inputs,
            &mut tasks,
            self.limits.channel_capacity,
            restored,
            &restate,
        )
        .await
        {
            for input in &input_names {
                self.unsubscribe_from(input, &v.name).await;
            }
            return Err(err(e));
        }
        super::backfill::spawn_backfills(&view, drivers, &mut tasks);
        Ok((view, tasks, input_names))
    }

    pub(super) async fn drop_objects(
        &self,
        kind: ObjectKind,
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Outcome> {
        let tag = format!("DROP {}", kind.sql_name());
        // Validate everything first, so a failing DROP drops nothing.
        let mut order: Vec<String> = Vec::new();
        let mut skipped = Vec::new();
        for name in &names {
            match self.exists(name) {
                None if if_exists => {
                    // PostgreSQL's words.
                    skipped.push(format!(
                        "{} \"{name}\" does not exist, skipping",
                        kind.noun()
                    ));
                    continue;
                }
                None => {
                    return Err(EddyError::UndefinedObject(format!(
                        "{} \"{name}\" does not exist",
                        kind.noun()
                    )))
                }
                Some(k) if k != kind => {
                    return Err(EddyError::InvalidParameter {
                        message: format!("\"{name}\" is not a {}", kind.noun()),
                        hint: Some(format!("Use DROP {}.", k.sql_name())),
                    })
                }
                Some(_) => {}
            }
            let mut closure = Vec::new();
            self.collect_dependants(name, &mut closure);
            let outside: Vec<&String> = closure.iter().filter(|d| !names.contains(d)).collect();
            if !outside.is_empty() && !cascade {
                let list: Vec<String> = outside.iter().map(|s| s.to_string()).collect();
                return Err(EddyError::DependentObjects {
                    message: format!(
                        "cannot drop {} \"{name}\" because other objects depend on it",
                        kind.noun()
                    ),
                    detail: format!("materialized view(s) {} depend on it", list.join(", ")),
                });
            }
            for d in closure.into_iter().rev() {
                if !order.contains(&d) {
                    order.push(d);
                }
            }
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        // Views an earlier version hoisted out of a dropped view's subqueries
        // (`<view>__<alias>`, still in data directories it wrote) go with it,
        // unless something else reads them.
        let mut i = 0;
        while i < order.len() {
            let prefix = format!("{}__", order[i]);
            let subs: Vec<String> = self.catalog.with(|e| {
                e.iter()
                    .filter(|(n, e)| {
                        n.starts_with(&prefix) && matches!(e.object, ObjectRef::View(_))
                    })
                    .map(|(n, _)| n.clone())
                    .collect()
            });
            for sub in subs {
                let users = self.catalog.dependants(&sub);
                if !order.contains(&sub) && users.iter().all(|u| order.contains(u)) {
                    order.push(sub);
                }
            }
            i += 1;
        }
        self.drop_names(&order).await?;
        Ok(skipped
            .into_iter()
            .rev()
            .fold(command(&tag), |done, n| done.with_notice(n)))
    }

    /// Drop `names` (dependants first) and forget them in the data dir.
    pub(super) async fn drop_names(&self, names: &[String]) -> Result<()> {
        for name in names {
            self.drop_one(name).await?;
        }
        if let Some(d) = &self.durable {
            d.dropped(names)?;
        }
        Ok(())
    }

    /// Dependants of `name`, transitively, parents before children.
    fn collect_dependants(&self, name: &str, out: &mut Vec<String>) {
        for d in self.catalog.dependants(name) {
            if !out.contains(&d) {
                out.push(d.clone());
                self.collect_dependants(&d, out);
            }
        }
    }

    /// Undo [`Engine::subscribe_to`].
    async fn unsubscribe_from(&self, input: &str, name: &str) {
        match self.input_ref(input) {
            Some(InputRef::Stream(s)) => s.publisher.unsubscribe(name).await,
            Some(InputRef::View(v)) => v.publisher.unsubscribe(name).await,
            None => {}
        }
    }

    /// Subscribe `name` to the changes of `input`; returns the messages that
    /// bring it up to date (current rows, then the latest watermark).
    pub(super) async fn subscribe_to(
        &self,
        input: &str,
        name: &str,
        tx: mpsc::Sender<crate::types::Message>,
    ) -> Result<Vec<crate::types::Message>> {
        match self.input_ref(input) {
            Some(i) => subscribe_input(&i, name, tx).await,
            None => Err(EddyError::UndefinedObject(format!(
                "relation \"{input}\" does not exist"
            ))),
        }
    }

    /// The object `name` as something that can be read (not a sink).
    pub(super) fn input_ref(&self, name: &str) -> Option<InputRef> {
        self.catalog.with(|e| {
            e.get(name).and_then(|e| match &e.object {
                ObjectRef::Stream(s) => Some(InputRef::Stream(s.clone())),
                ObjectRef::View(v) => Some(InputRef::View(v.clone())),
                ObjectRef::Sink(_) => None,
            })
        })
    }

    async fn drop_one(&self, name: &str) -> Result<()> {
        let Some(mut entry) = self.catalog.with(|e| e.remove(name)) else {
            return Ok(());
        };
        let id = self.durable.as_ref().and_then(|d| d.id_of(name));
        if let (ObjectKind::Table, Some(data_dir), Some(id)) = (entry.kind(), &self.data_dir, id) {
            let dir = TableLog::dir(data_dir, id);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(table = %name, error = %e, "cannot remove the table's log");
                }
            }
        }
        entry.tasks.shutdown().await;
        if let ObjectRef::View(v) = &entry.object {
            v.changes
                .lock()
                .close(crate::views::changes::Ended::Dropped);
        }
        self.ctx.deregister_table(TableReference::bare(name))?;
        for dep in &entry.depends_on {
            self.unsubscribe_from(dep, name).await;
        }
        Ok(())
    }
}

/// PostgreSQL's notice for `CREATE … IF NOT EXISTS` of an existing object.
pub(super) fn exists_skipping(name: &str) -> String {
    format!("relation \"{name}\" already exists, skipping")
}

/// Refuse options a materialized view does not have (22023).
pub(super) fn check_view_options(v: &CreateView) -> Result<()> {
    let unknown: Vec<&String> = v
        .options
        .keys()
        .filter(|k| *k != "state_ttl" && !super::backfill::OPTIONS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        let keys = unknown;
        return Err(EddyError::invalid(format!(
            "unknown materialized view option(s): {keys:?}"
        )));
    }
    Ok(())
}

/// Move a table log written by a version that named log directories after
/// tables (`tables/<name>`) to its catalog-id directory, once.
fn adopt_legacy_log(data_dir: &std::path::Path, name: &str, dir: &std::path::Path) {
    let Some(legacy) = TableLog::legacy_dir(data_dir, name) else {
        return;
    };
    if dir.exists() || !legacy.is_dir() {
        return;
    }
    match std::fs::rename(&legacy, dir) {
        Ok(()) => {
            tracing::info!(table = %name, to = %dir.display(), "table log moved to its catalog-id directory")
        }
        Err(e) => {
            tracing::error!(table = %name, error = %e, "cannot move the table's log to its catalog-id directory")
        }
    }
}

/// Subscribe `tx` (named `name`) to `input`; returns the messages that bring
/// it up to date (a table's retained rows, a view's current rows).
pub(super) async fn subscribe_input(
    input: &InputRef,
    name: &str,
    tx: mpsc::Sender<crate::types::Message>,
) -> Result<Vec<crate::types::Message>> {
    match input {
        InputRef::Stream(s) => Ok(s
            .publisher
            .subscribe(name, tx, || s.snapshot_messages())
            .await),
        InputRef::View(up) => {
            let mut err = None;
            let snap = up
                .publisher
                .subscribe(name, tx, || match up.snapshot_messages() {
                    Ok(m) => m,
                    Err(e) => {
                        err = Some(e);
                        Vec::new()
                    }
                })
                .await;
            if let Some(e) = err {
                up.publisher.unsubscribe(name).await;
                return Err(e);
            }
            Ok(snap)
        }
    }
}

/// Something a view or sink can read.
#[derive(Clone)]
pub(super) enum InputRef {
    Stream(Arc<StreamObject>),
    View(Arc<MaterializedView>),
}

/// The key column positions of an upsert table (`None` without a `PRIMARY
/// KEY`); the key columns become NOT NULL, as in Postgres.
fn primary_key_columns(
    c: &crate::sql::CreateStream,
    schema: &mut SchemaRef,
) -> Result<Option<Vec<usize>>> {
    if c.primary_key.is_empty() {
        return Ok(None);
    }
    let mut keys = Vec::new();
    for k in &c.primary_key {
        let i = schema.index_of(k).map_err(|_| {
            EddyError::UndefinedColumn(format!(
                "column \"{k}\" named in key does not exist in table \"{}\"",
                c.name
            ))
        })?;
        if keys.contains(&i) {
            return Err(EddyError::DuplicateObject(format!(
                "column \"{k}\" appears twice in primary key constraint"
            )));
        }
        keys.push(i);
    }
    let fields: Vec<datafusion::arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref().clone();
            if keys.contains(&i) {
                f.with_nullable(false)
            } else {
                f
            }
        })
        .collect();
    *schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    Ok(Some(keys))
}
