//! COPY over the wire: `COPY … TO STDOUT` sends a query's rows as COPY data (one message
//! a row, as PostgreSQL does), `COPY table FROM STDIN` reads them into a table.
//!
//! COPY TO writes its messages itself rather than through pgwire's `Response::CopyOut`, so
//! that an error midway ends it as PostgreSQL does (an `ErrorResponse` after the rows sent)
//! and the `COPY n` tag counts rows, not a CSV header.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::{stream, Sink, SinkExt, StreamExt};
use parking_lot::Mutex;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyResponse, FieldInfo, Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyOutResponse};
use pgwire::messages::response::CommandComplete;
use pgwire::messages::PgWireBackendMessage;

use super::handler::EddyHandler;
use crate::engine::copy_in::CopyIn;
use crate::engine::interrupt::{interruptible, Interrupt};
use crate::engine::Engine;
use crate::error::EddyError;
use crate::pgtext::{self, copy::write_header, copy::write_row, Style};
use crate::sql::copy::{CopyFormat, CopyOptions, ForceQuote};

fn pg(e: EddyError) -> PgWireError {
    e.into_pg()
}

fn format_code(format: CopyFormat) -> i8 {
    i8::from(format == CopyFormat::Binary)
}

/// `COPY … TO STDOUT`: run `query` and send its rows.
pub(super) async fn copy_out<C>(
    client: &mut C,
    engine: &Engine,
    query: &str,
    opts: &CopyOptions,
    mut interrupt: Interrupt,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let df = interrupt.run(engine.query(query)).await.map_err(pg)?;
    // The header and FORCE_QUOTE name columns as PostgreSQL does.
    let schema = crate::sql::column_names::pg_schema_of_sql(query, df.schema().inner());
    let batches = interrupt
        .run(async { Ok(df.execute_stream().await?) })
        .await
        .map_err(pg)?;
    let batches = interruptible(Box::pin(batches), interrupt);
    send_rows(client, &schema, batches, opts).await
}

/// Send `batches` (with columns `schema`) as COPY data, each batch flushed as it comes.
pub(super) async fn send_rows<C, S>(
    client: &mut C,
    schema: &SchemaRef,
    mut batches: S,
    opts: &CopyOptions,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    S: futures::Stream<Item = datafusion::error::Result<RecordBatch>> + Unpin,
{
    let binary_fields = match opts.format {
        CopyFormat::Binary => Some(Arc::new(super::handler::result_fields(
            schema,
            &Format::UnifiedBinary,
            None,
        )?)),
        _ => None,
    };
    let columns = schema.fields().len();
    let formats = vec![i16::from(format_code(opts.format)); columns];
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            format_code(opts.format),
            columns as i16,
            formats,
        )))
        .await?;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let force: Vec<bool> = names
        .iter()
        .map(|n| match &opts.force_quote {
            ForceQuote::None => false,
            ForceQuote::All => true,
            ForceQuote::Columns(c) => c.iter().any(|c| c == n),
        })
        .collect();
    if opts.header && opts.format != CopyFormat::Binary {
        let mut line = Vec::new();
        write_header(&names, opts, &mut line);
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(line.into())))
            .await?;
    }
    let mut rows = 0usize;
    let mut binary = binary_fields.map(|f| (CopyEncoder::new_binary(f.clone()), f));
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| pg(EddyError::from(e)))?;
        match &mut binary {
            Some((encoder, fields)) => {
                for data in binary_rows(encoder, fields, &batch)? {
                    client.feed(PgWireBackendMessage::CopyData(data)).await?;
                }
            }
            None => {
                for data in text_rows(&batch, &force, opts) {
                    client.feed(PgWireBackendMessage::CopyData(data)).await?;
                }
            }
        }
        rows += batch.num_rows();
        client.flush().await?;
    }
    if opts.format == CopyFormat::Binary {
        // The encoder writes the header with the first row; with none, the header goes with
        // the trailer in one message, as PostgreSQL sends it.
        let trailer = CopyEncoder::finish_copy_binary();
        let last = if rows == 0 {
            let mut b = BytesMut::with_capacity(21);
            b.put_slice(b"PGCOPY\n\xff\r\n\0");
            b.put_i32(0);
            b.put_i32(0);
            b.put_slice(&trailer.data);
            CopyData::new(b.freeze())
        } else {
            trailer
        };
        client.feed(PgWireBackendMessage::CopyData(last)).await?;
    }
    client
        .send(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Response::Execution(Tag::new("COPY").with_rows(rows)))
}

/// The rows of `batch` in text or CSV format, one message a row.
fn text_rows(batch: &RecordBatch, force: &[bool], opts: &CopyOptions) -> Vec<CopyData> {
    let mut out = Vec::with_capacity(batch.num_rows());
    let mut texts: Vec<String> = vec![String::new(); batch.num_columns()];
    let mut line = Vec::new();
    for row in 0..batch.num_rows() {
        let mut nulls = vec![false; batch.num_columns()];
        for (col, array) in batch.columns().iter().enumerate() {
            texts[col].clear();
            if array.is_null(row) {
                nulls[col] = true;
            } else {
                pgtext::write_text(array.as_ref(), row, Style::OUTPUT, &mut texts[col]);
            }
        }
        let cells: Vec<Option<&str>> = texts
            .iter()
            .zip(&nulls)
            .map(|(t, &null)| (!null).then_some(t.as_str()))
            .collect();
        line.clear();
        write_row(&cells, force, opts, &mut line);
        out.push(CopyData::new(Bytes::copy_from_slice(&line)));
    }
    out
}

/// The rows of `batch` in PGCOPY binary format, one message a row.
fn binary_rows(
    encoder: &mut CopyEncoder,
    fields: &[FieldInfo],
    batch: &RecordBatch,
) -> PgWireResult<Vec<CopyData>> {
    let schema = batch.schema();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (col, array) in batch.columns().iter().enumerate() {
            arrow_pg::encoder::encode_value(encoder, array, row, schema.field(col), &fields[col])?;
        }
        out.push(encoder.take_copy());
    }
    Ok(out)
}

/// The COPY FROM under way on a connection, kept in its session between messages.
#[derive(Default)]
pub(super) struct CopyInSlot(Mutex<Option<CopyIn>>);

/// `COPY table FROM STDIN`: check the table and columns, then ask for the data.
pub(super) fn copy_in<C: ClientInfo>(
    client: &mut C,
    engine: &Engine,
    table: &str,
    columns: &[String],
    opts: &CopyOptions,
) -> PgWireResult<Response> {
    let copy = engine.copy_in(table, columns, opts.clone()).map_err(pg)?;
    let n = copy.columns();
    let slot = client
        .session_extensions()
        .get_or_insert_with(CopyInSlot::default);
    *slot.0.lock() = Some(copy);
    Ok(Response::CopyIn(CopyResponse::new(
        format_code(opts.format),
        n,
        stream::empty(),
    )))
}

fn take_copy<C: ClientInfo>(client: &C) -> PgWireResult<CopyIn> {
    client
        .session_extensions()
        .get::<CopyInSlot>()
        .and_then(|slot| slot.0.lock().take())
        .ok_or_else(|| {
            pg(EddyError::Data {
                code: "08P01",
                message: "COPY data arrived with no COPY FROM STDIN under way".into(),
            })
        })
}

fn put_copy<C: ClientInfo>(client: &C, copy: CopyIn) {
    if let Some(slot) = client.session_extensions().get::<CopyInSlot>() {
        *slot.0.lock() = Some(copy);
    }
}

#[async_trait]
impl CopyHandler for EddyHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Taken out while the rows go in; an error leaves it out, ending the COPY.
        let mut copy = take_copy(client)?;
        copy.data(&copy_data.data).await.map_err(pg)?;
        put_copy(client, copy);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let copy = take_copy(client)?;
        let rows = copy.done().await.map_err(pg)?;
        let tag = Tag::new("COPY").with_rows(rows);
        client
            .send(PgWireBackendMessage::CommandComplete(
                CommandComplete::from(tag),
            ))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Rows of chunks already flushed stay: say so.
        let failed = EddyError::Data {
            code: "57014",
            message: format!("COPY from stdin failed: {}", fail.message),
        };
        match take_copy(client) {
            Ok(copy) => pg(copy.abandon(failed)),
            Err(_) => pg(failed),
        }
    }
}
