//! The engine: executes classified statements against the catalog and
//! DataFusion.

mod catalog;
mod checkpointing;
mod ddl;
mod delete;
pub mod durable;
mod insert;
mod pg_compat;
mod show;
mod sinks;
mod sources;
mod system;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::ParamValues;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

pub use catalog::{Catalog, Entry, ObjectRef};
use system::{SystemTable, SystemTableKind};

use crate::checkpoint::CheckpointHub;
use crate::connectors::dead_letter::{DeadLetterStore, DeadLetterTable};
use crate::error::{EddyError, Result};
use crate::sql::{ObjectKind, Statement};
use durable::{DurableCatalog, Persisted};

/// Name of the catalog (the Postgres database name clients connect to).
pub const CATALOG: &str = "eddy";
/// Schema of user objects.
pub const SCHEMA: &str = "public";

/// Bounds on every queue and store.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Messages buffered per operator channel.
    pub channel_capacity: usize,
    /// Rows a materialized view may hold.
    pub view_max_rows: u64,
    /// Recent rows a table keeps for `SELECT`.
    pub table_retain_rows: usize,
    /// Groups one aggregate partition may hold.
    pub max_groups_per_partition: usize,
    /// Partitions per aggregate (normally the number of cores).
    pub partitions: usize,
    /// Rejected records kept in `eddy.dead_letters` (oldest evicted first).
    pub dead_letter_max_rows: usize,
    /// Bytes of rejected records kept in `eddy.dead_letters`.
    pub dead_letter_max_bytes: usize,
    /// Seconds between periodic checkpoints (0: none). Exactly-once sinks
    /// commit with checkpoints, so they are the default only when this is set.
    pub checkpoint_interval_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            channel_capacity: 16,
            view_max_rows: 10_000_000,
            table_retain_rows: 1_000_000,
            max_groups_per_partition: 5_000_000,
            partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            dead_letter_max_rows: 100_000,
            dead_letter_max_bytes: 256 << 20,
            checkpoint_interval_secs: 10,
        }
    }
}

/// What a statement produced.
pub enum Outcome {
    /// A command tag (`CREATE TABLE`, `INSERT 0 3`, …).
    Command {
        /// The tag's command word(s).
        tag: String,
        /// Affected rows, when the tag carries a count.
        rows: Option<usize>,
    },
    /// Rows to send.
    Rows(DataFrame),
}

/// The engine. Shared by every connection.
pub struct Engine {
    ctx: SessionContext,
    catalog: Arc<Catalog>,
    limits: Limits,
    compat: PostgresCompatibilityParser,
    ddl_lock: tokio::sync::Mutex<()>,
    dead_letters: Arc<DeadLetterStore>,
    /// The catalog file, when the engine has a data dir.
    durable: Option<DurableCatalog>,
    /// Connectors start reading once this is true (after a restart's objects are all back).
    start_gate: tokio::sync::watch::Sender<bool>,
    /// Where durable state lives, if anywhere.
    data_dir: Option<std::path::PathBuf>,
    /// Holds on connector starts: a restore in progress and multi-statement batches.
    start_holds: parking_lot::Mutex<usize>,
    /// Set from [`Engine::open`] until [`Engine::restore`] is done.
    restoring: std::sync::atomic::AtomicBool,
    /// Collects view state during a checkpoint; remembers recent checkpoints.
    hub: Arc<CheckpointHub>,
    /// One checkpoint at a time.
    checkpoint_lock: tokio::sync::Mutex<()>,
    /// The next checkpoint's epoch.
    next_epoch: std::sync::atomic::AtomicU64,
    /// The checkpoint being restored from, until [`Engine::restore`] is done.
    recovered: parking_lot::Mutex<Option<crate::checkpoint::files::Recovered>>,
}

/// Split a table's logged batches at the rows it had published when the
/// checkpoint was taken: the head is kept for `SELECT` only, the tail returned.
fn split_log(s: &crate::connectors::StreamObject, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    let mut skip = s.rows_published() as usize;
    let mut tail = Vec::new();
    for b in batches {
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            s.retain_only(b);
        } else if skip > 0 {
            s.retain_only(b.slice(0, skip));
            tail.push(b.slice(skip, b.num_rows() - skip));
            skip = 0;
        } else {
            tail.push(b);
        }
    }
    tail
}

/// Keeps connectors from starting while it lives (see [`Engine::hold_connector_starts`]).
pub struct StartHold<'a>(&'a Engine);

impl Drop for StartHold<'_> {
    fn drop(&mut self) {
        self.0.release_start_hold();
    }
}

impl Engine {
    /// Build an engine with `limits`.
    pub fn new(limits: Limits) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        config = config.set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        let ctx = SessionContext::new_with_config(config);
        crate::functions::register(&ctx);
        setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider).map_err(|e| *e)?;
        let catalog = Arc::new(Catalog::default());
        let cat = ctx
            .catalog(CATALOG)
            .ok_or_else(|| EddyError::Internal("default catalog missing".into()))?;
        cat.register_schema("eddy", Arc::new(MemorySchemaProvider::new()))?;
        if let Some(pg) = cat.schema("pg_catalog") {
            cat.register_schema(
                "pg_catalog",
                Arc::new(pg_compat::PgCatalogOverlay::new(pg, catalog.clone())),
            )?;
        }
        for (name, kind) in [
            ("eddy.sources", SystemTableKind::Sources),
            ("eddy.views", SystemTableKind::Views),
            ("eddy.source_partitions", SystemTableKind::Partitions),
            ("eddy.sinks", SystemTableKind::Sinks),
        ] {
            ctx.register_table(name, Arc::new(SystemTable::new(kind, catalog.clone())))?;
        }
        let dead_letters = Arc::new(DeadLetterStore::new(
            limits.dead_letter_max_rows,
            limits.dead_letter_max_bytes,
        ));
        ctx.register_table(
            "eddy.dead_letters",
            Arc::new(DeadLetterTable(dead_letters.clone())),
        )?;
        let hub = Arc::new(CheckpointHub::default());
        ctx.register_table(
            "eddy.checkpoints",
            Arc::new(checkpointing::CheckpointsTable(hub.clone())),
        )?;
        Ok(Engine {
            ctx,
            catalog,
            dead_letters,
            limits,
            compat: PostgresCompatibilityParser::new(),
            ddl_lock: tokio::sync::Mutex::new(()),
            durable: None,
            start_gate: tokio::sync::watch::Sender::new(true),
            data_dir: None,
            start_holds: parking_lot::Mutex::new(0),
            restoring: std::sync::atomic::AtomicBool::new(false),
            hub,
            checkpoint_lock: tokio::sync::Mutex::new(()),
            next_epoch: std::sync::atomic::AtomicU64::new(1),
            recovered: parking_lot::Mutex::new(None),
        })
    }

    /// An engine whose catalog is kept in `data_dir` (see [`durable`]). Call
    /// [`Engine::restore`] before serving: connectors wait until it is done.
    pub fn open(limits: Limits, data_dir: &std::path::Path) -> Result<Self> {
        let mut engine = Engine::new(limits)?;
        engine.durable = Some(DurableCatalog::open(data_dir)?);
        engine.data_dir = Some(data_dir.to_path_buf());
        engine.open_checkpoints(data_dir);
        // Released by `restore`.
        *engine.start_holds.lock() += 1;
        engine.start_gate.send_replace(false);
        engine
            .restoring
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(engine)
    }

    /// Recreate the objects recorded in the data dir, in creation order, then
    /// let connectors start. An object that cannot be recreated is logged and
    /// skipped (its dependants then fail too); returns (restored, failed).
    pub async fn restore(&self) -> (usize, usize) {
        let objects = self
            .durable
            .as_ref()
            .map(|d| d.objects())
            .unwrap_or_default();
        let (mut ok, mut failed) = (0, 0);
        let mut tails = Vec::new();
        for o in objects {
            let result = match crate::sql::parse(&o.sql) {
                Ok(mut stmts) if stmts.len() == 1 => self.create(stmts.remove(0)).await,
                Ok(_) => Err(EddyError::Internal("not one statement".into())),
                Err(e) => Err(e),
            };
            match result {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    tracing::error!(object = %o.name, kind = %o.kind, error = %e, "cannot recreate object from the catalog");
                    continue;
                }
            }
            // A table's logged rows: those its checkpointed views already hold are
            // only kept for SELECT (and for views created later); the rest are
            // published once every object is back.
            if let Some(s) = self
                .catalog
                .streams()
                .into_iter()
                .find(|s| s.name == o.name)
            {
                match s.logged_batches() {
                    Ok(batches) if !batches.is_empty() => {
                        let tail = split_log(&s, batches);
                        tails.push((s, tail));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(table = %s.name, error = %e, "cannot restore the table's rows")
                    }
                }
            }
        }
        for (s, tail) in tails {
            let rows: usize = tail.iter().map(|b| b.num_rows()).sum();
            for b in tail {
                if let Err(e) = s.push(b).await {
                    tracing::error!(table = %s.name, error = %e, "cannot replay the table's rows");
                    break;
                }
            }
            if rows > 0 {
                tracing::info!(table = %s.name, rows, "table rows replayed from its log");
            }
        }
        *self.recovered.lock() = None;
        if self
            .restoring
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.release_start_hold();
        }
        if ok + failed > 0 {
            tracing::info!(restored = ok, failed, "catalog restored from the data dir");
        }
        (ok, failed)
    }

    /// True while a restart is recreating objects.
    fn restoring(&self) -> bool {
        self.restoring.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keep connectors that have not started yet from starting until the guard
    /// is dropped (a multi-statement query string runs under one).
    pub fn hold_connector_starts(&self) -> StartHold<'_> {
        *self.start_holds.lock() += 1;
        self.start_gate.send_replace(false);
        StartHold(self)
    }

    fn release_start_hold(&self) {
        let mut holds = self.start_holds.lock();
        *holds = holds.saturating_sub(1);
        if *holds == 0 {
            self.start_gate.send_replace(true);
        }
    }

    /// A receiver that connectors wait on before reading.
    pub fn start_gate(&self) -> tokio::sync::watch::Receiver<bool> {
        self.start_gate.subscribe()
    }

    /// Run a CREATE statement without recording it.
    async fn create(&self, stmt: Statement) -> Result<Outcome> {
        let _g = self.ddl_lock.lock().await;
        match stmt {
            Statement::CreateStream(c) => self.create_stream(*c).await,
            Statement::CreateView(v) => self.create_view(v).await,
            Statement::CreateSink(s) => self.create_sink(s).await,
            other => Err(EddyError::Internal(format!(
                "catalog entry is not a CREATE statement: {other:?}"
            ))),
        }
    }

    /// Record a newly created object durably; if that fails, drop it again.
    async fn record_created(
        &self,
        existed: bool,
        name: &str,
        kind: ObjectKind,
        sql: &str,
    ) -> Result<()> {
        let Some(d) = &self.durable else {
            return Ok(());
        };
        if existed {
            return Ok(());
        }
        let rec = Persisted {
            name: name.to_string(),
            kind: kind.noun().to_string(),
            sql: sql.to_string(),
            id: 0,
        };
        if let Err(e) = d.created(rec) {
            let _ = self.drop_names(&[name.to_string()]).await;
            return Err(EddyError::Internal(format!(
                "{} \"{name}\" was not created: {e}",
                kind.noun()
            )));
        }
        Ok(())
    }

    /// The DataFusion context that answers queries.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Execute one statement. `Session` statements are the server's business
    /// and are refused here.
    pub async fn execute(&self, stmt: Statement) -> Result<Outcome> {
        self.execute_with_params(stmt, None).await
    }

    /// Execute one statement with bound parameters (extended protocol).
    pub async fn execute_with_params(
        &self,
        stmt: Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome> {
        match stmt {
            Statement::CreateStream(c) => {
                let _g = self.ddl_lock.lock().await;
                let (name, kind, sql) = (c.name.clone(), c.kind, c.sql.clone());
                let existed = self.catalog.with(|e| e.contains_key(&name));
                let out = self.create_stream(*c).await?;
                self.record_created(existed, &name, kind, &sql).await?;
                Ok(out)
            }
            Statement::CreateView(v) => {
                let _g = self.ddl_lock.lock().await;
                let existed = self.catalog.with(|e| e.contains_key(&v.name));
                if existed {
                    // IF NOT EXISTS, or the duplicate error (before creating any hoisted view).
                    return self.create_view(v).await;
                }
                // Join inputs that are queries of their own become views first.
                let (v, subs) = crate::sql::hoist::hoist_join_inputs(v)?;
                let mut created: Vec<String> = Vec::new();
                let mut result = Ok(());
                for sub in subs {
                    let (name, sql) = (sub.name.clone(), sub.sql.clone());
                    result = self.create_view(sub).await.map(|_| ());
                    if result.is_ok() {
                        result = self
                            .record_created(false, &name, ObjectKind::MaterializedView, &sql)
                            .await;
                    }
                    match &result {
                        Ok(()) => created.push(name),
                        Err(_) => break,
                    }
                }
                let (name, sql) = (v.name.clone(), v.sql.clone());
                let out = match result {
                    Ok(()) => self.create_view(v).await,
                    Err(e) => Err(e),
                };
                let out = match out {
                    Ok(out) => self
                        .record_created(existed, &name, ObjectKind::MaterializedView, &sql)
                        .await
                        .map(|_| out),
                    Err(e) => Err(e),
                };
                if out.is_err() && !created.is_empty() {
                    created.reverse();
                    let _ = self.drop_names(&created).await;
                }
                out
            }
            Statement::CreateSink(s) => {
                let _g = self.ddl_lock.lock().await;
                let (name, sql) = (s.name.clone(), s.sql.clone());
                let existed = self.catalog.with(|e| e.contains_key(&name));
                let out = self.create_sink(s).await?;
                self.record_created(existed, &name, ObjectKind::Sink, &sql)
                    .await?;
                Ok(out)
            }
            Statement::ExplainView(v) => self.explain_view(v).await,
            Statement::Drop {
                kind,
                names,
                if_exists,
                cascade,
            } => {
                let _g = self.ddl_lock.lock().await;
                self.drop_objects(kind, names, if_exists, cascade).await
            }
            Statement::Insert(ins) => self.insert(*ins, params).await,
            Statement::Delete(d) => self.delete(*d, params).await,
            Statement::Query(_, text) => Ok(Outcome::Rows(self.query(&text).await?)),
            Statement::ShowObjects(kind) => self.show_objects(kind),
            Statement::ShowCreate(kind, name) => self.show_create(kind, &name),
            Statement::Describe(name) => self.describe(&name).await,
            Statement::Checkpoint => {
                self.checkpoint("manual").await?;
                Ok(Outcome::Command {
                    tag: "CHECKPOINT".into(),
                    rows: None,
                })
            }
            Statement::Session(s) => Err(EddyError::Internal(format!(
                "session statement reached the engine: {s}"
            ))),
        }
    }

    /// Plan and start a query; Postgres-isms psql sends are rewritten first.
    pub async fn query(&self, sql: &str) -> Result<DataFrame> {
        let plan = self.plan_query(sql).await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Plan a query (for the extended protocol's Parse/Describe).
    pub async fn plan_query(&self, sql: &str) -> Result<datafusion::logical_expr::LogicalPlan> {
        let mut stmts = self
            .compat
            .parse(sql)
            .map_err(|e| crate::sql::tokens::parser_error(sql, e))?;
        if stmts.len() != 1 {
            return Err(EddyError::syntax("expected exactly one query"));
        }
        let stmt = stmts.remove(0);
        Ok(self
            .ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await?)
    }

    /// A one-batch result.
    fn rows(&self, batch: RecordBatch) -> Result<Outcome> {
        Ok(Outcome::Rows(self.ctx.read_batch(batch)?))
    }
}
