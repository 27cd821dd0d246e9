//! `COPY table FROM STDIN`: rows read from COPY data go into a table as an INSERT's do —
//! cast to the table's types, NOT NULL and event time checked, then logged and published in
//! chunks of at most [`INSERT_CHUNK_BYTES`](super::insert::INSERT_CHUNK_BYTES). A COPY that fits
//! in one chunk is all or nothing; a larger one that fails midway says how many rows went in.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::insert::{fit, partial_insert, target_columns, Chunk};
use super::Engine;
use crate::connectors::StreamObject;
use crate::error::{EddyError, Result};
use crate::pgtext::copy::CopyReader;
use crate::sql::copy::{CopyFormat, CopyOptions};

/// Rows read before they are cast and checked as one batch.
const BATCH_ROWS: usize = 8192;

/// A `COPY … FROM STDIN` under way on one connection.
pub struct CopyIn {
    table: String,
    stream: Arc<StreamObject>,
    /// Table column of each column the rows give.
    targets: Vec<usize>,
    /// The text columns as read (all Utf8).
    text_schema: SchemaRef,
    reader: CopyReader,
    chunk: Chunk,
    inserted: usize,
}

impl Engine {
    /// Start `COPY table [(columns)] FROM STDIN`.
    pub fn copy_in(&self, table: &str, columns: &[String], opts: CopyOptions) -> Result<CopyIn> {
        let stream = self.insert_target(table, "COPY to")?;
        let schema = stream.schema.clone();
        let targets = target_columns(table, &schema, columns)?;
        let names: Vec<String> = targets
            .iter()
            .map(|&i| schema.field(i).name().clone())
            .collect();
        let text_schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let reader = if opts.format == CopyFormat::Binary {
            let types = targets
                .iter()
                .map(|&i| schema.field(i).data_type().clone())
                .collect();
            CopyReader::binary(opts, names.clone(), types)?
        } else {
            CopyReader::new(opts, names.clone())
        };
        Ok(CopyIn {
            table: table.to_string(),
            stream,
            targets,
            text_schema,
            reader,
            chunk: Chunk::new(&self.ctx),
            inserted: 0,
        })
    }
}

impl CopyIn {
    /// How many columns each row gives.
    pub fn columns(&self) -> usize {
        self.targets.len()
    }

    /// The client gave up (`CopyFail`): the rows held are dropped; `why`, with how many rows
    /// went in before, when some did.
    pub fn abandon(self, why: EddyError) -> EddyError {
        match self.failed(Err(why)) {
            Err(e) => e,
            Ok(()) => EddyError::Internal("an abandoned COPY reported no error".into()),
        }
    }

    /// A piece of COPY data.
    pub async fn data(&mut self, bytes: &[u8]) -> Result<()> {
        let result = self.read(bytes).await;
        self.failed(result)
    }

    /// The end of the data: the rows still held go in; how many went in all told.
    pub async fn done(mut self) -> Result<usize> {
        let result = async {
            self.reader.finish()?;
            self.batch().await?;
            self.inserted += self.chunk.flush(&self.stream).await?;
            Ok(())
        }
        .await;
        self.failed(result)?;
        Ok(self.inserted)
    }

    async fn read(&mut self, bytes: &[u8]) -> Result<()> {
        // Rows are cast in batches of about BATCH_ROWS, whatever the pieces' sizes.
        for piece in bytes.chunks(1 << 20) {
            self.reader.feed(piece)?;
            if self.reader.rows() >= BATCH_ROWS {
                self.batch().await?;
            }
        }
        Ok(())
    }

    /// An error, with how many rows went in before it when some did.
    fn failed(&self, result: Result<()>) -> Result<()> {
        match result {
            Err(e) if self.inserted > 0 => Err(partial_insert(e, self.inserted)),
            other => other,
        }
    }

    /// Cast and check the rows read, and add them to the chunk (flushed when full).
    async fn batch(&mut self) -> Result<()> {
        if self.reader.rows() == 0 {
            return Ok(());
        }
        let (columns, lines) = self.reader.take();
        let text = RecordBatch::try_new(self.text_schema.clone(), columns)?;
        let schema = self.stream.schema.clone();
        let batch = match fit(&self.table, &schema, &self.targets, &text) {
            Ok(b) => b,
            Err(e) => return Err(self.locate(e, &text, &lines)),
        };
        if let Some((row, why)) = self.stream.event_time_violations(&batch).into_iter().next() {
            return Err(EddyError::DatetimeOverflow(format!(
                "{why} (COPY {}, line {})",
                self.table, lines[row]
            )));
        }
        let batch = if self.stream.is_upsert() {
            crate::connectors::upsert::with_op(&batch, true)?
        } else {
            batch
        };
        if !self.chunk.add(batch) {
            self.inserted += self.chunk.flush(&self.stream).await?;
        }
        Ok(())
    }

    /// A cast or NOT NULL error of a batch, said as PostgreSQL says it: the value, its line
    /// and column.
    fn locate(&self, e: EddyError, text: &RecordBatch, lines: &[usize]) -> EddyError {
        let schema = &self.stream.schema;
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        for (col, &target) in self.targets.iter().enumerate() {
            let field = schema.field(target);
            let input: &ArrayRef = text.column(col);
            let prepared = match field.data_type() {
                DataType::Timestamp(..) => crate::pgtext::datetime::complete_seconds_in(input),
                _ => None,
            };
            let source = prepared.as_ref().unwrap_or(input);
            let Ok(cast) = cast_with_options(source, field.data_type(), &safe) else {
                continue;
            };
            let bad = (0..input.len()).find(|&r| input.is_valid(r) && cast.is_null(r));
            if let Some(row) = bad {
                let value = input
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::StringArray>()
                    .map(|s| s.value(row).to_string())
                    .unwrap_or_default();
                return EddyError::Data {
                    code: "22P02",
                    message: format!(
                        "invalid input syntax for type {}: \"{value}\" (COPY {}, line {}, column \
                         {})",
                        super::show::sql_type_name(field.data_type()),
                        self.table,
                        lines[row],
                        field.name()
                    ),
                };
            }
            if !field.is_nullable() {
                if let Some(row) = (0..input.len()).find(|&r| input.is_null(r)) {
                    return EddyError::NotNullViolation(format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null \
                         constraint (COPY {}, line {})",
                        field.name(),
                        self.table,
                        self.table,
                        lines[row]
                    ));
                }
            }
        }
        e
    }
}
