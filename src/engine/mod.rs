//! The engine: executes classified statements against the catalog and
//! DataFusion.

mod access;
mod alter_source;
mod backfill;
mod carry_over;
mod checkpointing;
pub mod copy_in;
pub mod credentials;
mod ddl;
mod delete;
pub mod durable;
mod explain_analyze;
mod functions;
mod information_schema;
mod insert;
pub mod interrupt;
mod pg_compat;
mod replace;
pub mod sessions;
mod show;
mod sinks;
mod sources;
mod subscribe;
mod system;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::ParamValues;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

pub use crate::catalog::{Catalog, Entry, ObjectRef};
use system::{SystemTable, SystemTableKind};

use crate::connectors::dead_letter::{DeadLetterStore, DeadLetterTable};
use crate::error::{EddyError, Result};
use crate::sql::{ObjectKind, Statement};
use crate::state::CheckpointHub;
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
    /// Bytes of a table's log kept after checkpoints cover them (for backfills).
    pub table_log_keep_bytes: u64,
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
    /// Memory all ad-hoc queries (`SELECT`, `INSERT … SELECT`) share. Sorts,
    /// aggregates and joins that can spill to disk do; an allocation beyond
    /// it fails the query with 53200. Views are bounded by their own limits.
    pub query_memory_bytes: usize,
    /// Bytes of unacknowledged messages an at-least-once sink holds while its
    /// broker is slow or away; beyond it the sink lets go of its view
    /// (`stalled`) instead of holding the view up.
    pub sink_buffer_bytes: usize,
    /// Files the `file` connector and Kafka's file-valued properties may
    /// read must lie under this directory (`None`: anywhere).
    pub file_root: Option<std::path::PathBuf>,
    /// A view's client subscriptions (`SUBSCRIBE`): each one's buffer, and the changes kept
    /// for resumes.
    pub subscriptions: crate::views::changes::ChangeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            channel_capacity: 16,
            view_max_rows: 10_000_000,
            table_retain_rows: 1_000_000,
            table_log_keep_bytes: 256 << 20,
            max_groups_per_partition: 5_000_000,
            partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            dead_letter_max_rows: 100_000,
            dead_letter_max_bytes: 256 << 20,
            checkpoint_interval_secs: 10,
            query_memory_bytes: 2 << 30,
            sink_buffer_bytes: 64 << 20,
            file_root: None,
            subscriptions: Default::default(),
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
    /// What `then` answers, after a notice for the client (PostgreSQL's
    /// NOTICE, e.g. `relation "t" does not exist, skipping`).
    Noticed {
        /// The notice's message.
        notice: String,
        /// The answer itself.
        then: Box<Outcome>,
    },
}

impl Outcome {
    /// This outcome, after `notice`.
    pub fn with_notice(self, notice: impl Into<String>) -> Outcome {
        Outcome::Noticed {
            notice: notice.into(),
            then: Box::new(self),
        }
    }

    /// The notices in order, and the answer they came with (never `Noticed`).
    pub fn split_notices(self) -> (Vec<String>, Outcome) {
        let mut notices = Vec::new();
        let mut at = self;
        while let Outcome::Noticed { notice, then } = at {
            notices.push(notice);
            at = *then;
        }
        (notices, at)
    }
}

/// The engine. Shared by every connection.
pub struct Engine {
    ctx: SessionContext,
    catalog: Arc<Catalog>,
    limits: Limits,
    compat: PostgresCompatibilityParser,
    ddl_lock: tokio::sync::Mutex<()>,
    /// Names of the SQL functions users created (`CREATE FUNCTION`).
    sql_functions: parking_lot::Mutex<std::collections::BTreeSet<String>>,
    dead_letters: Arc<DeadLetterStore>,
    /// The catalog file, when the engine has a data dir.
    durable: Option<DurableCatalog>,
    /// Users and secrets.
    credentials: Arc<credentials::Credentials>,
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
    recovered: parking_lot::Mutex<Option<crate::state::files::Recovered>>,
    /// Rows each table had published at the checkpoints this run completed,
    /// newest last (at most as many as are kept on disk): table logs are
    /// compacted up to the oldest.
    table_checkpoints: parking_lot::Mutex<std::collections::VecDeque<HashMap<String, u64>>>,
    /// Set when the restart recovered from an older checkpoint than the
    /// newest (a corrupt one was skipped): exactly-once sinks restored from it
    /// show this in `eddy.sinks.last_error`.
    recovery_note: parking_lot::Mutex<Option<String>>,
    /// The Postgres connections (`eddy.connections`, idle sessions).
    pub sessions: Arc<sessions::Activities>,
    /// Views reading what their streams delivered before they were created.
    backfills: Arc<crate::connectors::backfill::Backfills>,
}

/// Split a table's logged batches at the rows it had published when the
/// checkpoint was taken: the head is kept for `SELECT` only, the tail returned.
/// `first_row` is the log number of the first batch's first row (earlier rows
/// were compacted away: every kept checkpoint covered them).
fn split_log(
    s: &crate::connectors::StreamObject,
    log: crate::connectors::table_log::Replayed,
) -> (Vec<RecordBatch>, u64) {
    let (first_row, batches) = (log.first_row, log.batches);
    let published = s.rows_published();
    // Rows of corrupt frames are missing from `batches`: those before the
    // split shift it; those after it are skipped when the tail is replayed.
    let (mut lost_before, mut lost_after) = (0, 0);
    for (row, rows, _) in &log.corrupt {
        if *row < published {
            lost_before += rows;
        } else {
            lost_after += rows;
        }
    }
    if published < first_row {
        let missing = first_row - published;
        let why = format!(
            "{missing} rows of the table's log were compacted away but the checkpoint restored \
             does not cover them (an older checkpoint was restored): views over it miss them"
        );
        tracing::error!(table = %s.name, "{why}");
        s.note_rejected(missing, why);
    }
    let mut skip = published
        .saturating_sub(first_row)
        .saturating_sub(lost_before) as usize;
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
    (tail, lost_after)
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
            // eddy's own information_schema, in PostgreSQL's shape (registered below).
            .with_information_schema(false);
        config = config.set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(limits.query_memory_bytes, 1.0)
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider).map_err(|e| *e)?;
        // After the catalog setup, which registers functions of its own.
        crate::functions::register(&ctx);
        let catalog = Arc::new(Catalog::default());
        let cat = ctx
            .catalog(CATALOG)
            .ok_or_else(|| EddyError::Internal("default catalog missing".into()))?;
        cat.register_schema("eddy", Arc::new(MemorySchemaProvider::new()))?;
        cat.register_schema(
            "information_schema",
            Arc::new(information_schema::InformationSchema::new(
                ctx.state().catalog_list().clone(),
            )),
        )?;
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
            ("eddy.subscriptions", SystemTableKind::Subscriptions),
            ("eddy.operators", SystemTableKind::Operators),
        ] {
            ctx.register_table(name, Arc::new(SystemTable::new(kind, catalog.clone())))?;
        }
        let sessions = Arc::new(sessions::Activities::default());
        let live = sessions.clone();
        ctx.register_table(
            "eddy.connections",
            Arc::new(system::LiveTable::new(
                sessions::connections_schema(),
                move || sessions::connections(&live),
            )),
        )?;
        let dead_letters = Arc::new(DeadLetterStore::new(
            limits.dead_letter_max_rows,
            limits.dead_letter_max_bytes,
        ));
        ctx.register_table(
            "eddy.dead_letters",
            Arc::new(DeadLetterTable(dead_letters.clone())),
        )?;
        let credentials = Arc::new(credentials::Credentials::in_memory());
        access::register_tables(&ctx, &credentials, &catalog)?;
        let hub = Arc::new(CheckpointHub::default());
        ctx.register_table(
            "eddy.checkpoints",
            Arc::new(checkpointing::checkpoints_table(hub.clone())),
        )?;
        Ok(Engine {
            ctx,
            catalog,
            dead_letters,
            limits,
            compat: PostgresCompatibilityParser::new(),
            ddl_lock: tokio::sync::Mutex::new(()),
            sql_functions: parking_lot::Mutex::default(),
            durable: None,
            credentials,
            start_gate: tokio::sync::watch::Sender::new(true),
            data_dir: None,
            start_holds: parking_lot::Mutex::new(0),
            restoring: std::sync::atomic::AtomicBool::new(false),
            hub,
            checkpoint_lock: tokio::sync::Mutex::new(()),
            next_epoch: std::sync::atomic::AtomicU64::new(1),
            recovered: parking_lot::Mutex::new(None),
            table_checkpoints: parking_lot::Mutex::new(std::collections::VecDeque::new()),
            recovery_note: parking_lot::Mutex::new(None),
            sessions,
            backfills: Arc::default(),
        })
    }

    /// An engine whose catalog is kept in `data_dir` (see [`durable`]). Call
    /// [`Engine::restore`] before serving: connectors wait until it is done.
    pub fn open(limits: Limits, data_dir: &std::path::Path) -> Result<Self> {
        let credentials = Arc::new(credentials::Credentials::open(data_dir, None)?);
        Self::open_with(limits, data_dir, credentials)
    }

    /// [`Engine::open`] with users and secrets opened by the caller.
    pub fn open_with(
        limits: Limits,
        data_dir: &std::path::Path,
        credentials: Arc<credentials::Credentials>,
    ) -> Result<Self> {
        let mut engine = Engine::new(limits)?;
        engine.set_credentials(credentials)?;
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
                    Ok(log) => {
                        if !log.corrupt.is_empty() {
                            let rows: u64 = log.corrupt.iter().map(|c| c.1).sum();
                            let places: Vec<&str> =
                                log.corrupt.iter().map(|c| c.2.as_str()).collect();
                            let why = format!(
                                "{rows} logged rows in {} corrupt frames of the table's log were \
                                 skipped: {}",
                                log.corrupt.len(),
                                places.join("; ")
                            );
                            tracing::error!(table = %s.name, "{why}");
                            s.note_rejected(rows, why);
                        }
                        let (tail, lost_after) = split_log(&s, log);
                        if !tail.is_empty() || lost_after > 0 {
                            tails.push((s, tail, lost_after));
                        }
                    }
                    Err(e) => {
                        tracing::error!(table = %s.name, error = %e, "cannot restore the table's rows")
                    }
                }
            }
        }
        for (s, tail, lost) in tails {
            self.replay_tail(&s, tail).await;
            // Keep the checkpointed row count in step with the log.
            s.skip_logged_rows(lost).await;
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

    /// Publish a restored table's logged rows that its views do not hold yet.
    /// Replay never stops at a bad row: a row that cannot be replayed (logged
    /// by a version that did not check event times before logging) goes to
    /// `eddy.dead_letters`, is counted as rejected and named in the table's
    /// `last_error`; every other row is replayed.
    async fn replay_tail(&self, s: &crate::connectors::StreamObject, tail: Vec<RecordBatch>) {
        let (mut replayed, mut rejected) = (0usize, 0usize);
        for b in tail {
            let bad = s.event_time_violations(&b);
            let b = if bad.is_empty() {
                b
            } else {
                rejected += bad.len();
                self.reject_logged_rows(s, &b, &bad);
                s.skip_logged_rows(bad.len() as u64).await;
                let mut keep = vec![true; b.num_rows()];
                for (row, _) in &bad {
                    keep[*row] = false;
                }
                match datafusion::arrow::compute::filter_record_batch(
                    &b,
                    &datafusion::arrow::array::BooleanArray::from(keep),
                ) {
                    Ok(good) => good,
                    Err(e) => {
                        tracing::error!(table = %s.name, error = %e, "cannot replay the table's rows");
                        continue;
                    }
                }
            };
            let n = b.num_rows();
            match s.push(b).await {
                Ok(()) => replayed += n,
                Err(e) => {
                    rejected += n;
                    let msg = format!("{n} logged rows could not be replayed: {e}");
                    tracing::error!(table = %s.name, error = %msg, "table log replay");
                    s.note_rejected(n as u64, msg);
                    s.skip_logged_rows(n as u64).await;
                }
            }
        }
        if replayed > 0 || rejected > 0 {
            tracing::info!(table = %s.name, replayed, rejected, "table rows replayed from its log");
        }
    }

    /// Keep logged rows that cannot be replayed in `eddy.dead_letters` (as JSON).
    fn reject_logged_rows(
        &self,
        s: &crate::connectors::StreamObject,
        batch: &RecordBatch,
        bad: &[(usize, String)],
    ) {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let letters: Vec<_> = bad
            .iter()
            .map(|(row, why)| {
                let payload = crate::connectors::kafka::rows_as_json(&batch.slice(*row, 1))
                    .ok()
                    .and_then(|mut v| v.pop())
                    .unwrap_or_default();
                crate::connectors::dead_letter::DeadLetter {
                    source: s.name.as_str().into(),
                    partition: None,
                    offset: None,
                    key: None,
                    payload: payload.into_bytes(),
                    error: format!("logged row could not be replayed: {why}"),
                    received_at_ns: now,
                    evicted: s.metrics.dead_letters_evicted.clone(),
                }
            })
            .collect();
        let first = bad.first().map(|(_, why)| why.clone()).unwrap_or_default();
        s.note_rejected(
            bad.len() as u64,
            format!(
                "{} logged rows could not be replayed and are in eddy.dead_letters: {first}",
                bad.len()
            ),
        );
        self.dead_letters.push(letters);
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
            Statement::CreateStream(c) => {
                let id = self.durable.as_ref().and_then(|d| d.id_of(&c.name));
                self.create_stream(*c, id).await
            }
            Statement::CreateView(v) => self.create_view(v).await,
            Statement::CreateSink(s) => self.create_sink(s).await,
            Statement::CreateFunction(f, sql) => self.create_function(*f, sql, false).await,
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
        id: Option<u64>,
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
            id: id.unwrap_or(0),
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

    /// `path` as a connector may read it: with `--file-root`, resolved under
    /// the root (relative paths from it) and refused (42501) if it leads
    /// outside, also through `..` or links.
    pub fn readable_path(&self, what: &str, path: &str) -> Result<std::path::PathBuf> {
        let Some(root) = &self.limits.file_root else {
            return Ok(path.into());
        };
        let outside = || {
            EddyError::InsufficientPrivilege(format!(
                "{what} '{path}' is outside the directory connectors may read ({})",
                root.display()
            ))
        };
        let root = root
            .canonicalize()
            .map_err(|e| EddyError::Internal(format!("--file-root {}: {e}", root.display())))?;
        let full = root.join(path);
        // A path that does not exist yet (a file source that waits for it) is checked
        // through its nearest existing ancestor.
        let mut probe = full.as_path();
        let resolved = loop {
            match probe.canonicalize() {
                Ok(p) => break p,
                Err(_) => probe = probe.parent().ok_or_else(outside)?,
            }
        };
        if !resolved.starts_with(&root) || full.components().any(|c| c.as_os_str() == "..") {
            return Err(outside());
        }
        Ok(full)
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
        self.execute_interruptible(stmt, params, &mut interrupt::Interrupt::none())
            .await
    }

    /// Execute one statement that a cancel request or `statement_timeout`
    /// may stop where stopping is safe (see [`interrupt`]). For a query only
    /// planning happens here: the caller runs its rows under `interrupt`.
    pub async fn execute_interruptible(
        &self,
        stmt: Statement,
        params: Option<ParamValues>,
        interrupt: &mut interrupt::Interrupt,
    ) -> Result<Outcome> {
        match stmt {
            Statement::CreateStream(c) => {
                let _g = self.ddl_lock.lock().await;
                let (name, kind, sql) = (c.name.clone(), c.kind, c.sql.clone());
                let existed = self.catalog.with(|e| e.contains_key(&name));
                let id = match (&self.durable, existed) {
                    (Some(d), false) => Some(d.reserve_id()),
                    _ => None,
                };
                let out = self.create_stream(*c, id).await?;
                self.record_created(existed, &name, kind, &sql, id).await?;
                Ok(out)
            }
            Statement::CreateView(v) => {
                let _g = self.ddl_lock.lock().await;
                let existed = self.catalog.with(|e| e.contains_key(&v.name));
                if existed && v.or_replace {
                    let name = v.name.clone();
                    let (out, carried) = self.replace_view(v).await?;
                    drop(_g);
                    if carried {
                        // The kept state is durable before the statement returns: a restart
                        // would otherwise rebuild the view from what its inputs still hold.
                        self.settle_replacement(&name).await;
                    }
                    return Ok(out);
                }
                if existed {
                    // IF NOT EXISTS, or the duplicate error.
                    return self.create_view(v).await;
                }
                let (name, sql) = (v.name.clone(), v.sql.clone());
                let out = self.create_view(v).await?;
                self.record_created(existed, &name, ObjectKind::MaterializedView, &sql, None)
                    .await?;
                Ok(out)
            }
            Statement::CreateSink(s) => {
                let _g = self.ddl_lock.lock().await;
                let (name, sql) = (s.name.clone(), s.sql.clone());
                let existed = self.catalog.with(|e| e.contains_key(&name));
                let out = self.create_sink(s).await?;
                self.record_created(existed, &name, ObjectKind::Sink, &sql, None)
                    .await?;
                Ok(out)
            }
            Statement::ExplainView(v) => self.explain_view(v).await,
            Statement::AlterSource(a) => {
                let _g = self.ddl_lock.lock().await;
                self.alter_source(a).await
            }
            Statement::AlterView(a) => {
                let _g = self.ddl_lock.lock().await;
                self.alter_view(a).await
            }
            Statement::ExplainAnalyzeView(name) => self.explain_analyze_view(&name).await,
            Statement::CreateFunction(f, sql) => {
                let _g = self.ddl_lock.lock().await;
                self.create_function(*f, sql, true).await
            }
            Statement::DropFunction { names, if_exists } => {
                let _g = self.ddl_lock.lock().await;
                self.drop_functions(names, if_exists)
            }
            Statement::Drop {
                kind,
                names,
                if_exists,
                cascade,
            } => {
                let _g = self.ddl_lock.lock().await;
                self.drop_objects(kind, names, if_exists, cascade).await
            }
            Statement::Insert(ins) => self.insert(*ins, params, interrupt).await,
            Statement::Delete(d) => self.delete(*d, params).await,
            Statement::Query(_, text) => Ok(Outcome::Rows(interrupt.run(self.query(&text)).await?)),
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
            Statement::Access(a) => {
                let _g = self.ddl_lock.lock().await;
                self.access(a).await
            }
            Statement::Session(s) => Err(EddyError::Internal(format!(
                "session statement reached the engine: {s}"
            ))),
            Statement::Copy(_) | Statement::Cursor(_) | Statement::Subscribe(_) => {
                Err(EddyError::not_supported(
                    "COPY, cursors and SUBSCRIBE belong to a client connection: send them from \
                     a Postgres client",
                ))
            }
        }
    }

    /// Plan and start a query; Postgres-isms psql sends are rewritten first.
    pub async fn query(&self, sql: &str) -> Result<DataFrame> {
        let plan = self.plan_query(sql).await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Plan a query (for the extended protocol's Parse/Describe).
    pub async fn plan_query(&self, sql: &str) -> Result<datafusion::logical_expr::LogicalPlan> {
        // Flink's TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), …)) as in a view; `top` as a column.
        let sql = &crate::sql::tokens::query_text(sql)?;
        let mut stmt = crate::sql::catalog_queries::parse(&self.compat, sql)?;
        if let datafusion::sql::sqlparser::ast::Statement::Query(q) = &mut stmt {
            crate::sql::window::batch_windows(q)?;
            crate::sql::literals::int4_constants(q);
            crate::sql::literals::numeric_literal_scales(q);
        }
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
