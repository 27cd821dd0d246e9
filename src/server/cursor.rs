//! SQL cursors of one connection: `DECLARE` starts the query and keeps its row stream, `FETCH`
//! streams the next rows out of it (computed as they are sent, so a large result is never held
//! whole), `CLOSE` drops it. As in PostgreSQL, a cursor without `WITH HOLD` lives in a
//! transaction block and goes when it ends; at most [`MAX_CURSORS`] are open at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::RecordBatchStream;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use pgwire::api::ClientInfo;
use pgwire::messages::response::TransactionStatus;

use crate::engine::interrupt::Interrupt;
use crate::engine::Engine;
use crate::error::{EddyError, Result};
use crate::sql::cursor::{CursorQuery, FetchCount};

/// Most cursors open on one connection.
pub const MAX_CURSORS: usize = 64;

/// A declared cursor.
struct Cursor {
    schema: SchemaRef,
    rows: SendableRecordBatchStream,
    /// Rows of the last batch not fetched yet.
    pending: Option<RecordBatch>,
    hold: bool,
    /// A subscription: rows keep coming, so a FETCH waits for a first one, then takes only
    /// those already there.
    live: bool,
}

/// The cursors of a connection, kept in its session.
#[derive(Default)]
pub(super) struct Cursors(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cursor>>>>);

fn no_cursor(name: &str) -> EddyError {
    EddyError::Data {
        code: "34000",
        message: format!("cursor \"{name}\" does not exist"),
    }
}

fn cursors<C: ClientInfo>(client: &C) -> Arc<Cursors> {
    client
        .session_extensions()
        .get_or_insert_with(Cursors::default)
}

/// `DECLARE name CURSOR FOR query | SUBSCRIBE …`.
pub(super) async fn declare<C: ClientInfo>(
    client: &C,
    engine: &Engine,
    name: &str,
    hold: bool,
    query: &CursorQuery,
    params: Option<ParamValues>,
    interrupt: &mut Interrupt,
) -> Result<SchemaRef> {
    if !hold && matches!(client.transaction_status(), TransactionStatus::Idle) {
        return Err(EddyError::Data {
            code: "25P01",
            message: "DECLARE CURSOR can only be used in transaction blocks".into(),
        });
    }
    let all = cursors(client);
    {
        let open = all.0.lock();
        if open.contains_key(name) {
            return Err(EddyError::Data {
                code: "42P03",
                message: format!("cursor \"{name}\" already exists"),
            });
        }
        if open.len() >= MAX_CURSORS {
            return Err(EddyError::LimitExceeded(format!(
                "too many open cursors: a connection may have {MAX_CURSORS} (CLOSE some)"
            )));
        }
    }
    let (schema, rows, live): (_, SendableRecordBatchStream, _) = match query {
        CursorQuery::Sql(query) => {
            let mut plan = interrupt.run(engine.plan_query(query)).await?;
            if let Some(p) = params {
                plan = plan.with_param_values(p)?;
            }
            let ctx = engine.context();
            let df = interrupt
                .run(async { Ok(ctx.execute_logical_plan(plan).await?) })
                .await?;
            let schema = crate::sql::column_names::pg_schema_of_sql(query, df.schema().inner());
            let rows = interrupt
                .run(async { Ok(df.execute_stream().await?) })
                .await?;
            (schema, rows, false)
        }
        CursorQuery::Subscribe(s) => {
            let rows = interrupt.run(engine.subscribe(s, "cursor")).await?;
            (rows.schema(), Box::pin(rows), true)
        }
    };
    let cursor = Cursor {
        schema: schema.clone(),
        rows,
        pending: None,
        hold,
        live,
    };
    all.0
        .lock()
        .insert(name.to_string(), Arc::new(tokio::sync::Mutex::new(cursor)));
    Ok(schema)
}

/// `FETCH count FROM name`: the next rows, streamed out of the cursor as they are sent (a
/// `FETCH ALL` holds no more than a batch at a time). From a subscription, it waits for a
/// first row (at most `timeout`, if given), then takes the rows already there, up to `count`.
pub(super) fn fetch<C: ClientInfo>(
    client: &C,
    name: &str,
    count: FetchCount,
    timeout: Option<Duration>,
) -> Result<SendableRecordBatchStream> {
    let cursor = cursors(client)
        .0
        .lock()
        .get(name)
        .cloned()
        .ok_or_else(|| no_cursor(name))?;
    let schema = cursor
        .try_lock()
        .map(|c| c.schema.clone())
        .map_err(|_| EddyError::Internal(format!("cursor \"{name}\" is in use")))?;
    let want = match count {
        FetchCount::Rows(n) => usize::try_from(n).unwrap_or(usize::MAX),
        FetchCount::All => usize::MAX,
    };
    let rows = futures::stream::unfold(
        (cursor, want, true),
        move |(cursor, left, first)| async move {
            if left == 0 {
                return None;
            }
            let mut c = cursor.clone().lock_owned().await;
            let next = match c.pending.take() {
                Some(b) => Some(Ok(b)),
                None if !c.live => c.rows.next().await,
                // A subscription never ends by itself: wait only for the first rows.
                None if first => match timeout {
                    Some(t) => tokio::time::timeout(t, c.rows.next()).await.ok()?,
                    None => c.rows.next().await,
                },
                None => c.rows.next().now_or_never()?,
            };
            let batch = match next {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Some((Err(e), (cursor, 0, false))),
                None => return None,
            };
            let n = batch.num_rows().min(left);
            if n < batch.num_rows() {
                c.pending = Some(batch.slice(n, batch.num_rows() - n));
            }
            drop(c);
            Some((Ok(batch.slice(0, n)), (cursor, left - n, false)))
        },
    );
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
}

/// `CLOSE name` (`None`: all): the names closed.
pub(super) fn close<C: ClientInfo>(client: &C, name: Option<&str>) -> Result<Vec<String>> {
    let all = cursors(client);
    let mut open = all.0.lock();
    match name {
        None => Ok(open.drain().map(|(n, _)| n).collect()),
        Some(n) => {
            open.remove(n).ok_or_else(|| no_cursor(n))?;
            Ok(vec![n.to_string()])
        }
    }
}

/// The transaction block ended: its cursors (those without `WITH HOLD`) go; their names.
pub(super) fn end_transaction<C: ClientInfo>(client: &C) -> Vec<String> {
    let Some(all) = client.session_extensions().get::<Cursors>() else {
        return vec![];
    };
    let mut open = all.0.lock();
    let ended: Vec<String> = open
        .iter()
        .filter(|(_, c)| c.try_lock().map(|c| !c.hold).unwrap_or(false))
        .map(|(n, _)| n.clone())
        .collect();
    for n in &ended {
        open.remove(n);
    }
    ended
}

/// The columns `FETCH … FROM name` returns (for the extended protocol's Describe).
pub(super) fn schema_of<C: ClientInfo>(client: &C, name: &str) -> Option<SchemaRef> {
    let all = client.session_extensions().get::<Cursors>()?;
    let cursor = all.0.lock().get(name).cloned()?;
    let schema = cursor.try_lock().ok()?.schema.clone();
    Some(schema)
}
