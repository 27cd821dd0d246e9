//! `SUBSCRIBE` over the wire. As rows: each batch of changes is sent and flushed as it
//! comes, so drivers that read rows one at a time (psycopg's `stream()`, node-postgres'
//! row events) see changes at once; psql waits for a statement's end before it prints
//! rows, so there `COPY (SUBSCRIBE …) TO STDOUT` is the way, sent as COPY data. Either runs
//! until the client cancels it (Ctrl-C, a cancel request) or goes away, or the
//! subscription ends with an error (fell behind, view dropped or failed). A `statement_timeout`
//! does not apply: a subscription is meant to last.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::RecordBatchStream;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{DataRow, RowDescription};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use crate::engine::interrupt::{interruptible, BatchStream, Interrupt};
use crate::engine::Engine;
use crate::error::EddyError;
use crate::sql::copy::CopyOptions;
use crate::sql::subscribe::Subscribe;

fn pg(e: EddyError) -> PgWireError {
    e.into_pg()
}

/// Start subscription `s`: its columns, and its rows until the connection's cancel request.
async fn start<C: ClientInfo>(
    client: &C,
    engine: &Engine,
    s: &Subscribe,
    via: &'static str,
) -> PgWireResult<(SchemaRef, BatchStream)> {
    let mut interrupt = Interrupt::new(super::handler::cancel_requests(client), None);
    let sub = interrupt.run(engine.subscribe(s, via)).await.map_err(pg)?;
    Ok((sub.schema(), interruptible(Box::pin(sub), interrupt)))
}

/// `SUBSCRIBE …`: rows as they come. `describe`: send the RowDescription first (the simple
/// protocol; in the extended one, Describe sent it).
pub(super) async fn rows<C>(
    client: &mut C,
    engine: &Engine,
    s: &Subscribe,
    format: &Format,
    opts: Arc<FormatOptions>,
    describe: bool,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let (schema, mut batches) = start(client, engine, s, "rows").await?;
    let fields = Arc::new(super::handler::result_fields(&schema, format, Some(opts))?);
    if describe {
        let row_description = RowDescription::new(fields.iter().map(Into::into).collect());
        client
            .send(PgWireBackendMessage::RowDescription(row_description))
            .await?;
    }
    let mut sent = 0usize;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| pg(EddyError::from(e)))?;
        for row in super::encode::encode_batch(fields.clone(), batch) {
            let row: DataRow = row?;
            client.feed(PgWireBackendMessage::DataRow(row)).await?;
            sent += 1;
        }
        client.flush().await?;
    }
    Ok(Response::Execution(Tag::new("SUBSCRIBE").with_rows(sent)))
}

/// `COPY (SUBSCRIBE …) TO STDOUT`: rows as COPY data as they come.
pub(super) async fn copy<C>(
    client: &mut C,
    engine: &Engine,
    s: &Subscribe,
    opts: &CopyOptions,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let (schema, batches) = start(client, engine, s, "copy").await?;
    super::copy::send_rows(client, &schema, batches, opts).await
}
