//! pgwire handlers: the simple and extended query protocols over the engine.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::{MemPortalStore, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};

use crate::engine::interrupt::{interruptible, Interrupt};
use crate::engine::{Engine, Outcome};
use crate::error::EddyError;
use crate::sql::column_names::{self, ResultNames};
use crate::sql::copy::CopyDirection;
use crate::sql::cursor::{CursorQuery, CursorStatement, FetchCount};
use crate::sql::{self, Statement};

/// A statement prepared by the extended protocol's Parse.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The classified statement.
    pub stmt: Statement,
    /// For queries: the logical plan, with `$n` placeholders.
    pub plan: Option<LogicalPlan>,
    /// Parameter types, `$1` first.
    pub param_types: Vec<Option<DataType>>,
    /// The result schema, when the statement returns rows.
    pub result: Option<SchemaRef>,
    /// The SQL as the client sent it (for `eddy.connections`).
    pub text: Arc<str>,
}

/// Handles both protocols for every connection.
pub struct EddyHandler {
    engine: Arc<Engine>,
    parser: Arc<EddyParser>,
    /// What each connection is doing (for the idle-session timeout).
    activities: Arc<crate::engine::sessions::Activities>,
    /// Who may do what.
    auth: super::auth::AuthMode,
}

impl EddyHandler {
    /// A handler over `engine`; statements are marked in `activities`.
    pub(super) fn new(
        engine: Arc<Engine>,
        activities: Arc<crate::engine::sessions::Activities>,
        auth: super::auth::AuthMode,
    ) -> Self {
        EddyHandler {
            parser: Arc::new(EddyParser {
                engine: engine.clone(),
            }),
            engine,
            activities,
            auth,
        }
    }

    /// Mark a statement running on `client`'s connection until the guard drops.
    fn busy<C: ClientInfo>(&self, client: &C) -> Option<crate::engine::sessions::Busy> {
        self.activities.get(&client.socket_addr()).map(|a| a.busy())
    }

    /// `client` runs `query` now (what `eddy.connections` shows).
    fn running<C: ClientInfo>(&self, client: &C, query: &str) {
        if let Some(a) = self.activities.get(&client.socket_addr()) {
            let m = client.metadata();
            let get = |k: &str| m.get(k).map_or("", String::as_str);
            let app = super::settings::current(m, "application_name").unwrap_or_default();
            a.statement(get(pgwire::api::METADATA_USER), &app, query);
        }
    }
}

fn pg(e: EddyError) -> PgWireError {
    e.into_pg()
}

/// The Postgres columns of a result, or 0A000 for a type that cannot be
/// sent (arrow-pg reports those as XX000, e.g. arrays of arrays).
pub(super) fn result_fields(
    schema: &datafusion::arrow::datatypes::Schema,
    format: &Format,
    opts: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    arrow_schema_to_pg_fields(schema, format, opts).map_err(|e| match e {
        PgWireError::UserError(info)
            if info.code == "XX000" && info.message.contains("Unsupported") =>
        {
            pg(EddyError::NotSupported {
                message: format!("cannot send this result: {}", info.message),
                hint: Some("Cast the column to text, or unnest arrays of arrays.".into()),
            })
        }
        other => other,
    })
}

fn tag_for(outcome_tag: &str, rows: Option<usize>) -> Tag {
    let tag = Tag::new(outcome_tag);
    match (outcome_tag, rows) {
        ("INSERT", Some(n)) => tag.with_oid(0).with_rows(n),
        (_, Some(n)) => tag.with_rows(n),
        _ => tag,
    }
}

/// Encode a DataFrame's rows, mapping planning errors to their SQLSTATE.
/// The rows stop with 57014 when `interrupt` fires (cancel request or
/// `statement_timeout`); the query's execution stops with them. The columns
/// take PostgreSQL's `names`, when the statement is a query.
async fn encode(
    df: DataFrame,
    names: Option<&ResultNames>,
    format: &Format,
    opts: Arc<FormatOptions>,
    mut interrupt: Interrupt,
    busy: Option<crate::engine::sessions::Busy>,
) -> PgWireResult<QueryResponse> {
    let batches = interrupt
        .run(async { Ok(df.execute_stream().await?) })
        .await
        .map_err(pg)?;
    let batches = match names {
        Some(n) => {
            let schema = n.apply(&batches.schema());
            Box::pin(RecordBatchStreamAdapter::new(schema, batches))
        }
        None => batches,
    };
    encode_stream(batches, format, opts, interrupt, busy)
}

/// Encode a stream of batches as [`encode`] does a DataFrame's.
fn encode_stream(
    batches: datafusion::execution::SendableRecordBatchStream,
    format: &Format,
    opts: Arc<FormatOptions>,
    interrupt: Interrupt,
    busy: Option<crate::engine::sessions::Busy>,
) -> PgWireResult<QueryResponse> {
    let schema = batches.schema();
    let fields = Arc::new(result_fields(&schema, format, Some(opts))?);
    let batches = interruptible(batches, interrupt);
    let f = fields.clone();
    // The rows are computed as they are sent: the session is busy until then.
    let rows = batches
        .map(move |b| {
            let _busy = &busy;
            b
        })
        .map(move |b| match b {
            Ok(b) => stream::iter(super::encode::encode_batch(f.clone(), b)).left_stream(),
            Err(e) => stream::iter(std::iter::once(Err(pg(EddyError::from(e))))).right_stream(),
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// How `client`'s session wants values written (its `extra_float_digits`).
fn format_options<C: ClientInfo>(client: &C) -> Arc<FormatOptions> {
    let mut opts = FormatOptions::default();
    opts.extra_float_digits = super::settings::float_digits(client.metadata());
    Arc::new(opts)
}

/// The connection's count of cancel requests, to watch.
pub(super) fn cancel_requests<C: ClientInfo>(
    client: &C,
) -> Option<tokio::sync::watch::Receiver<u64>> {
    client
        .session_extensions()
        .get::<super::cancel::CancelCounter>()
        .map(|c| c.0.clone())
}

/// What may stop the statement about to run on `client`: a cancel request
/// for this connection, and its `statement_timeout` (0 or unset: none).
pub(super) fn statement_interrupt<C: ClientInfo>(client: &C) -> Interrupt {
    let cancel = cancel_requests(client);
    let timeout = Some(super::settings::statement_timeout_ms(client.metadata()))
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis);
    Interrupt::new(cancel, timeout)
}

/// The command word of a session statement (`SET`, `BEGIN`, …).
fn session_tag(s: &datafusion::sql::sqlparser::ast::Statement) -> String {
    let text = s.to_string();
    text.split_whitespace()
        .next()
        .unwrap_or("SET")
        .to_uppercase()
}

impl EddyHandler {
    async fn run<C>(
        &self,
        client: &mut C,
        stmt: Statement,
        params: Option<ParamValues>,
        plan: Option<LogicalPlan>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client.metadata().get(pgwire::api::METADATA_USER).cloned();
        let role = self.auth.role_of(user.as_deref());
        super::auth::check_privilege(role, user.as_deref().unwrap_or(""), &stmt).map_err(pg)?;
        let opts = format_options(client);
        let stmt = super::session::with_session_defaults(stmt, client.metadata());
        let mut interrupt = match &stmt {
            Statement::Query(..) | Statement::Insert(_) => statement_interrupt(client),
            _ => Interrupt::none(),
        };
        match stmt {
            Statement::Session(s) => {
                super::session::refuse_shared_settings(&s).map_err(pg)?;
                use datafusion::sql::sqlparser::ast::Statement as S;
                if let S::Rollback {
                    savepoint: Some(_), ..
                } = s.as_ref()
                {
                    warn(
                        client,
                        "01000",
                        UNDID_NOTHING.replace("{what}", "ROLLBACK TO SAVEPOINT"),
                    )
                    .await?;
                }
                // Savepoints mark nothing to return to (see the warning above); the
                // transaction block, as the client sees it, goes on.
                if matches!(
                    s.as_ref(),
                    S::Savepoint { .. }
                        | S::ReleaseSavepoint { .. }
                        | S::Rollback {
                            savepoint: Some(_),
                            ..
                        }
                ) {
                    return Ok(Response::Execution(Tag::new(&session_tag(&s))));
                }
                if let Some(r) = self.transaction(client, &s).await? {
                    return Ok(r);
                }
                let in_block = client.transaction_status() != TransactionStatus::Idle;
                if let Some(applied) = super::settings::apply(&s, client.metadata_mut(), in_block) {
                    let applied = applied.map_err(pg)?;
                    if let Some(w) = applied.warning {
                        let notice = ErrorInfo::new("WARNING".into(), "25P01".into(), w);
                        client
                            .send(PgWireBackendMessage::NoticeResponse(notice.into()))
                            .await?;
                    }
                    for (name, value) in applied.report {
                        client
                            .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                                name, value,
                            )))
                            .await?;
                    }
                    return Ok(Response::Execution(Tag::new(applied.tag)));
                }
                if let Some(shown) = super::settings::show(&s, client.metadata()) {
                    let rows = show_rows(shown.map_err(pg)?).map_err(pg)?;
                    let schema = rows.schema();
                    let stream = RecordBatchStreamAdapter::new(
                        schema,
                        stream::iter(std::iter::once(Ok(rows))),
                    );
                    return Ok(Response::Query(encode_stream(
                        Box::pin(stream),
                        format,
                        opts,
                        Interrupt::none(),
                        None,
                    )?));
                }
                Ok(Response::Execution(Tag::new(&session_tag(&s))))
            }
            Statement::Query(query, _) if plan.is_some() => {
                let Some(mut plan) = plan else {
                    return Err(pg(EddyError::Internal(
                        "prepared query lost its plan".into(),
                    )));
                };
                if let Some(p) = params {
                    plan = plan.with_param_values(p).map_err(|e| pg(e.into()))?;
                }
                let ctx = self.engine.context();
                let df = interrupt
                    .run(async { Ok(ctx.execute_logical_plan(plan).await?) })
                    .await
                    .map_err(pg)?;
                let busy = self.busy(client);
                Ok(Response::Query(
                    encode(
                        df,
                        ResultNames::of(&query).as_ref(),
                        format,
                        opts,
                        interrupt,
                        busy,
                    )
                    .await?,
                ))
            }
            Statement::Cursor(c) => self.cursor(client, c, params, format, opts).await,
            Statement::Subscribe(s) => {
                super::subscribe::rows(client, &self.engine, &s, format, opts, false).await
            }
            Statement::Copy(c) => match &c.direction {
                CopyDirection::To { query } => {
                    let interrupt = statement_interrupt(client);
                    let _busy = self.busy(client);
                    super::copy::copy_out(client, &self.engine, query, &c.options, interrupt).await
                }
                CopyDirection::Subscribe(s) => {
                    let _busy = self.busy(client);
                    super::subscribe::copy(client, &self.engine, s, &c.options).await
                }
                CopyDirection::From { table, columns } => {
                    super::copy::copy_in(client, &self.engine, table, columns, &c.options)
                }
            },
            other => {
                let names = match &other {
                    Statement::Query(q, _) => ResultNames::of(q),
                    _ => None,
                };
                let (notices, outcome) = self
                    .engine
                    .execute_interruptible(other, params, &mut interrupt)
                    .await
                    .map_err(pg)?
                    .split_notices();
                for n in notices {
                    notice(client, n).await?;
                }
                match outcome {
                    Outcome::Command { tag, rows } => Ok(Response::Execution(tag_for(&tag, rows))),
                    Outcome::Rows(df) => {
                        let busy = self.busy(client);
                        Ok(Response::Query(
                            encode(df, names.as_ref(), format, opts, interrupt, busy).await?,
                        ))
                    }
                    Outcome::Noticed { .. } => Err(pg(EddyError::Internal(
                        "a notice left after split_notices".into(),
                    ))),
                }
            }
        }
    }
}

/// The warning for a rollback: nothing is undone.
const UNDID_NOTHING: &str =
    "{what} undid nothing: eddy applies each statement when it runs and has no transactions";

/// Send `client` a warning (NoticeResponse) with `code`.
async fn warn<C>(client: &mut C, code: &str, message: String) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let notice = ErrorInfo::new("WARNING".into(), code.into(), message);
    client
        .send(PgWireBackendMessage::NoticeResponse(notice.into()))
        .await?;
    Ok(())
}

/// Send `client` a notice (NoticeResponse, severity NOTICE, SQLSTATE 00000).
async fn notice<C>(client: &mut C, message: String) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let notice = ErrorInfo::new("NOTICE".into(), "00000".into(), message);
    client
        .send(PgWireBackendMessage::NoticeResponse(notice.into()))
        .await?;
    Ok(())
}

/// `SHOW`'s answer as one batch of text columns.
fn show_rows(shown: super::settings::Shown) -> crate::error::Result<RecordBatch> {
    use super::settings::Shown;
    let (names, rows): (Vec<String>, Vec<Vec<String>>) = match shown {
        Shown::One(column, value) => (vec![column], vec![vec![value]]),
        Shown::All(rows) => (
            vec!["name".into(), "setting".into(), "description".into()],
            rows.into_iter().map(Vec::from).collect(),
        ),
    };
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, false))
        .collect();
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

impl EddyHandler {
    /// `BEGIN`, `COMMIT`, `ROLLBACK` (and `DISCARD ALL`): the client's transaction block, as
    /// PostgreSQL answers it. eddy has no transactions: each statement applied when it ran.
    async fn transaction<C>(
        &self,
        client: &mut C,
        s: &datafusion::sql::sqlparser::ast::Statement,
    ) -> PgWireResult<Option<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use datafusion::sql::sqlparser::ast::{DiscardObject, Statement as S};
        let status = client.transaction_status();
        let end = match s {
            S::StartTransaction { .. } => {
                if status != TransactionStatus::Idle {
                    let m = "there is already a transaction in progress".to_string();
                    warn(client, "25001", m).await?;
                    return Ok(Some(Response::Execution(Tag::new("BEGIN"))));
                }
                return Ok(Some(Response::TransactionStart(Tag::new("BEGIN"))));
            }
            S::Commit { .. } if status == TransactionStatus::Error => "ROLLBACK",
            S::Commit { .. } => "COMMIT",
            S::Rollback {
                savepoint: None, ..
            } => {
                if status != TransactionStatus::Idle {
                    warn(client, "01000", UNDID_NOTHING.replace("{what}", "ROLLBACK")).await?;
                }
                "ROLLBACK"
            }
            S::Discard {
                object_type: DiscardObject::ALL,
            } => {
                let reset = datafusion::sql::sqlparser::ast::Statement::Reset(
                    datafusion::sql::sqlparser::ast::ResetStatement {
                        reset: datafusion::sql::sqlparser::ast::Reset::ALL,
                    },
                );
                if let Some(Err(e)) = super::settings::apply(&reset, client.metadata_mut(), false) {
                    return Err(pg(e));
                }
                for name in super::cursor::close(client, None).map_err(pg)? {
                    client.portal_store().rm_portal(&name);
                }
                return Ok(Some(Response::Execution(Tag::new("DISCARD ALL"))));
            }
            _ => return Ok(None),
        };
        if status == TransactionStatus::Idle {
            let m = "there is no transaction in progress".to_string();
            warn(client, "25P01", m).await?;
        }
        for name in super::cursor::end_transaction(client) {
            client.portal_store().rm_portal(&name);
        }
        super::settings::end_transaction(client.metadata_mut());
        Ok(Some(Response::TransactionEnd(Tag::new(end))))
    }
}

impl EddyHandler {
    /// `DECLARE`, `FETCH`, `CLOSE` on `client`'s connection.
    async fn cursor<C>(
        &self,
        client: &mut C,
        stmt: CursorStatement,
        params: Option<ParamValues>,
        format: &Format,
        opts: Arc<FormatOptions>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let mut interrupt = statement_interrupt(client);
        match stmt {
            CursorStatement::Declare { name, hold, query } => {
                let schema = super::cursor::declare(
                    client,
                    &self.engine,
                    &name,
                    hold,
                    &query,
                    params,
                    &mut interrupt,
                )
                .await
                .map_err(pg)?;
                // As in PostgreSQL, the cursor is also a portal of its name: psycopg describes
                // it (Describe portal) to learn its columns.
                let store = client.portal_store().as_any();
                if let Some(store) = store.downcast_ref::<MemPortalStore<Prepared>>() {
                    let fetch = Prepared {
                        stmt: Statement::Cursor(CursorStatement::Fetch {
                            name: name.clone(),
                            count: FetchCount::All,
                            timeout: None,
                        }),
                        plan: None,
                        param_types: vec![],
                        result: Some(schema),
                        text: format!("FETCH ALL FROM {name}").into(),
                    };
                    let stored = StoredStatement::new(name.clone(), fetch, vec![]);
                    store.put_portal(Arc::new(Portal::new_cursor(name, Arc::new(stored))));
                }
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            CursorStatement::Fetch {
                name,
                count,
                timeout,
            } => {
                let rows = super::cursor::fetch(client, &name, count, timeout).map_err(pg)?;
                let busy = self.busy(client);
                let mut response = encode_stream(rows, format, opts, interrupt, busy)?;
                response.command_tag = "FETCH".into();
                Ok(Response::Query(response))
            }
            CursorStatement::Close(name) => {
                for name in super::cursor::close(client, name.as_deref()).map_err(pg)? {
                    client.portal_store().rm_portal(&name);
                }
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for EddyHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = session_user(client);
        crate::sql::catalog_queries::SESSION_USER
            .scope(user, self.simple_query(client, query))
            .await
    }
}

/// The connection's user (what `current_user` answers).
fn session_user<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

impl EddyHandler {
    async fn simple_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.busy(client);
        self.running(client, query);
        let stmts = sql::parse(query).map_err(pg)?;
        if stmts.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(stmts.len());
        // Connectors wait until the whole batch has run, so every view created in one
        // query string sees its sources from the start.
        let _hold = (stmts.len() > 1).then(|| self.engine.hold_connector_starts());
        for stmt in stmts {
            let result = match stmt {
                // Rows go out as they come, after a RowDescription (sent here: in the
                // extended protocol, Describe sends it).
                Statement::Subscribe(s) => {
                    let opts = format_options(client);
                    let format = Format::UnifiedText;
                    super::subscribe::rows(client, &self.engine, &s, &format, opts, true).await
                }
                stmt => {
                    self.run(client, stmt, None, None, &Format::UnifiedText)
                        .await
                }
            };
            match result {
                Ok(r) => {
                    // pgwire learns of a block's start and end from the responses once every
                    // statement has run; the statements after BEGIN in the same query string
                    // (`BEGIN; DECLARE c CURSOR …`) must see it already.
                    let status = client.transaction_status();
                    match &r {
                        Response::TransactionStart(_) => {
                            client.set_transaction_status(status.to_in_transaction_state())
                        }
                        Response::TransactionEnd(_) => {
                            client.set_transaction_status(status.to_idle_state())
                        }
                        _ => {}
                    }
                    out.push(r)
                }
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Parses statements for the extended protocol.
pub struct EddyParser {
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for EddyParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        crate::sql::catalog_queries::SESSION_USER
            .scope(session_user(client), self.parse_one(client, sql))
            .await
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        stmt.param_types
            .iter()
            .map(|t| match t {
                Some(t) => into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.result {
            Some(s) => result_fields(s, column_format.unwrap_or(&Format::UnifiedText), None),
            None => Ok(vec![]),
        }
    }
}

impl EddyParser {
    /// Parse (and for queries, plan) one statement of the extended protocol.
    async fn parse_one<C>(&self, client: &C, sql: &str) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = sql::parse(sql).map_err(pg)?;
        if stmts.is_empty() {
            return Ok(None);
        }
        if stmts.len() > 1 {
            return Err(pg(EddyError::syntax(
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let stmt = stmts.remove(0);
        let mut prepared = Prepared {
            stmt: stmt.clone(),
            plan: None,
            param_types: vec![],
            result: None,
            text: sql.into(),
        };
        match &stmt {
            Statement::Query(query, text) => {
                let plan = self.engine.plan_query(text).await.map_err(pg)?;
                prepared.param_types = ordered_params(&plan).map_err(pg)?;
                prepared.result = Some(column_names::pg_schema(query, plan.schema().inner()));
                prepared.plan = Some(plan);
            }
            Statement::Insert(ins) => {
                prepared.param_types = self.engine.insert_param_types(ins).map_err(pg)?;
            }
            Statement::Cursor(CursorStatement::Declare {
                query: CursorQuery::Sql(query),
                ..
            }) => {
                let plan = self.engine.plan_query(query).await.map_err(pg)?;
                prepared.param_types = ordered_params(&plan).map_err(pg)?;
            }
            Statement::Subscribe(s) => {
                prepared.result = Some(self.engine.subscribe_schema(s).await.map_err(pg)?);
            }
            Statement::Cursor(CursorStatement::Fetch { name, .. }) => {
                prepared.result = super::cursor::schema_of(client, name);
            }
            Statement::Delete(d) => {
                let (_, plan) = self.engine.delete_plan(d).await.map_err(pg)?;
                prepared.param_types = ordered_params(&plan).map_err(pg)?;
            }
            Statement::ShowObjects(_)
            | Statement::ShowCreate(_, _)
            | Statement::Describe(_)
            | Statement::ExplainView(_)
            | Statement::ExplainAnalyzeView(_) => {
                // Side-effect free: run once to learn the result's shape.
                if let Outcome::Rows(df) = self.engine.execute(stmt.clone()).await.map_err(pg)? {
                    prepared.result = Some(df.schema().inner().clone());
                }
            }
            Statement::Session(s) => {
                if matches!(
                    s.as_ref(),
                    datafusion::sql::sqlparser::ast::Statement::ShowVariable { .. }
                ) {
                    let fields: Vec<Field> = super::settings::show_columns(s)
                        .iter()
                        .map(|c| Field::new(c, DataType::Utf8, false))
                        .collect();
                    prepared.result = Some(Arc::new(Schema::new(fields)));
                }
            }
            _ => {}
        }
        Ok(Some(prepared))
    }
}

/// Parameter types of a plan, `$1` first.
fn ordered_params(plan: &LogicalPlan) -> crate::error::Result<Vec<Option<DataType>>> {
    let types: HashMap<String, Option<DataType>> = plan.get_parameter_types()?;
    let n = types
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    Ok((1..=n)
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect())
}

#[async_trait]
impl ExtendedQueryHandler for EddyHandler {
    type Statement = Prepared;
    type QueryParser = EddyParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _busy = self.busy(client);
        let prepared = &portal.statement.statement;
        self.running(client, &prepared.text);
        let params = if prepared.param_types.is_empty() && portal.parameter_len() == 0 {
            None
        } else {
            let types: Vec<Option<&DataType>> =
                prepared.param_types.iter().map(|t| t.as_ref()).collect();
            Some(deserialize_parameters(portal, &types)?)
        };
        let user = session_user(client);
        let run = self.run(
            client,
            prepared.stmt.clone(),
            params,
            prepared.plan.clone(),
            &portal.result_column_format,
        );
        crate::sql::catalog_queries::SESSION_USER
            .scope(user, run)
            .await
    }
}
