//! Result rows to the wire, in PostgreSQL's output formats.
//!
//! arrow-pg encodes every cell; this module takes over the cells whose text it renders unlike
//! PostgreSQL (found by `tests/postgres_differential.rs`) and writes them with
//! [`crate::pgtext`]: in text format every type [`pgtext::differs_from_arrow`] names — floats
//! (`3`, `1e+300`, `Infinity`, `-0`; pgwire wrote `3.0`, `1e300`, `inf`, `0`), timestamps, times
//! and dates (no empty fraction, `+00`, ` BC`), arrays and records (arrow-pg sent a NULL field of a
//! record as `""`, and nested values in its own text), intervals, bytea, booleans — and NULL
//! intervals in binary format (arrow-pg sent them as `00:00:00`).
//!
//! Everything else goes through arrow-pg unchanged.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use crate::pgtext::{self, Style};

/// How one column's cells are written.
#[derive(Clone, Copy)]
enum Cell {
    /// By arrow-pg.
    ArrowPg,
    /// By arrow-pg, except NULL (written here).
    NullHere,
    /// By [`pgtext`], in text format.
    Text,
}

fn cell_kind(data_type: &DataType, format: FieldFormat) -> Cell {
    match data_type {
        t if format == FieldFormat::Text && pgtext::differs_from_arrow(t) => Cell::Text,
        DataType::Interval(_) => Cell::NullHere,
        _ => Cell::ArrowPg,
    }
}

/// The rows of `batch` as `DataRow`s for `fields` (one per column, as
/// `arrow_schema_to_pg_fields` made them).
pub fn encode_batch(
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> impl Iterator<Item = PgWireResult<DataRow>> {
    let kinds: Vec<Cell> = batch
        .columns()
        .iter()
        .zip(fields.iter())
        .map(|(c, f)| cell_kind(c.data_type(), f.format()))
        .collect();
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut text = String::new();
    (0..batch.num_rows()).map(move |row| {
        let schema = batch.schema_ref();
        for (col, kind) in kinds.iter().enumerate() {
            let array = batch.column(col);
            let field = &fields[col];
            let written = match kind {
                Cell::ArrowPg => false,
                Cell::NullHere => array.is_null(row),
                Cell::Text => {
                    array.is_null(row) || {
                        text.clear();
                        let style = Style {
                            extra_float_digits: field.format_options().extra_float_digits,
                            ..Style::OUTPUT
                        };
                        pgtext::write_value(array, row, style, &mut text)
                    }
                }
            };
            if !written {
                // Also values out of chrono's range: arrow-pg says what it can.
                arrow_pg::encoder::encode_value(
                    &mut encoder,
                    array,
                    row,
                    schema.field(col),
                    field,
                )?;
            } else if array.is_null(row) {
                encoder.encode_field(&None::<&str>)?;
            } else {
                // As TEXT: pgwire would quote a string sent for an array type.
                encoder.encode_field_with_type_and_format(
                    &text.as_str(),
                    &Type::TEXT,
                    FieldFormat::Text,
                    field.format_options(),
                )?;
            }
        }
        Ok(encoder.take_row())
    })
}
