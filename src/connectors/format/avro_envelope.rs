//! Debezium change events written as Avro (`format = 'debezium_avro'`), as
//! Debezium's Avro converter writes them: a record (`Envelope`) with
//! `before` and `after`, each `null` or a record of the row's fields (the
//! second usually naming the first's type), `op` (a string) and fields eddy
//! does not read (`source`, `ts_ms`, `transaction`), which are skipped.
//!
//! The row record is resolved against the declared columns exactly as a
//! `format = 'avro'` record ([`super::avro_registry`]): undeclared fields
//! skipped, missing ones NULL, Avro's promotions. Decoded events become the
//! declared columns plus [`OP_COLUMN`]: `c` (create), `r` (snapshot read)
//! and `u` (update) upsert `after`, `d` deletes `before`'s key, `t`
//! (truncate) is NULL (nothing to apply).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanBuilder, RecordBatchOptions};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{cast, interleave_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::avro::align;
use super::changes::OP_COLUMN;
use super::to_declared;

/// The two sides of an event.
const SIDES: [&str; 2] = ["before", "after"];

/// What an envelope decoder's batches hold: the declared columns (nullable)
/// and [`OP_COLUMN`], NULL for an event that changes no row.
pub(super) fn output_schema(declared: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = declared
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::Boolean, true));
    Arc::new(Schema::new(fields))
}

/// The reader schema for the envelope `writer`: `before`, `after` and `op`
/// (all fields with `keep_all`), the row record rewritten by
/// [`super::avro_registry::reader_schema`] for the `declared` columns.
pub(super) fn reader_schema(
    writer: &Value,
    declared: &SchemaRef,
    keep_all: bool,
) -> Result<Value, String> {
    let Some(fields) = super::avro_registry::record_fields(writer) else {
        return Err("the writer schema is not an Avro record (a Debezium envelope)".into());
    };
    for wanted in ["before", "after", "op"] {
        if !fields.iter().any(|f| name(f) == wanted) {
            return Err(format!(
                "the writer schema is not a Debezium envelope: it has no `{wanted}` field"
            ));
        }
    }
    let mut defined = false;
    let mut kept = Vec::new();
    for f in fields {
        if SIDES.contains(&name(f)) {
            let mut f = f.clone();
            if let Some(t) = f.get("type") {
                f["type"] = row_type(t, declared, keep_all, &mut defined)?;
            }
            kept.push(f);
        } else if keep_all || name(f) == "op" {
            kept.push(f.clone());
        }
    }
    if !defined {
        return Err("the envelope's `before` and `after` are not [null, record]".into());
    }
    let mut reader = writer.clone();
    reader["fields"] = Value::Array(kept);
    Ok(reader)
}

/// The reader type of a side (`[null, record]`, or a name of the record
/// defined by the other side): the first record definition rewritten.
fn row_type(
    t: &Value,
    declared: &SchemaRef,
    keep_all: bool,
    defined: &mut bool,
) -> Result<Value, String> {
    match t {
        Value::Array(branches) => branches
            .iter()
            .map(|b| row_type(b, declared, keep_all, defined))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(o)
            if !*defined && o.get("type").and_then(Value::as_str) == Some("record") =>
        {
            *defined = true;
            super::avro_registry::reader_schema(t, declared, keep_all)
        }
        other => Ok(other.clone()),
    }
}

/// The name of field `f` of a record schema.
fn name(f: &Value) -> &str {
    f.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// The row fields an envelope decoder decodes (those of `after`).
pub(super) fn row_fields(decoded: &Schema) -> Result<Fields, String> {
    match decoded.field_with_name("after").map(|f| f.data_type()) {
        Ok(DataType::Struct(fields)) => Ok(fields.clone()),
        _ => Err("the envelope's `after` is not a record".into()),
    }
}

/// Decoded events (`before`, `after`, `op`) as the declared columns and
/// [`OP_COLUMN`]; an event that cannot be applied fails the batch with why.
pub(super) fn rows(declared: &SchemaRef, events: &RecordBatch) -> Result<RecordBatch, String> {
    let n = events.num_rows();
    let op = events
        .column_by_name("op")
        .ok_or("invalid Debezium event: no `op` field")?;
    let op = cast(op, &DataType::Utf8).map_err(|e| e.to_string())?;
    let op = op.as_string::<i32>();
    let mut sides = Vec::with_capacity(2);
    let mut valid = Vec::with_capacity(2);
    for name in SIDES {
        let (rows, nulls) = side(declared, events, name)?;
        sides.push(rows);
        valid.push(nulls);
    }
    let mut picks = Vec::with_capacity(n);
    let mut flags = BooleanBuilder::with_capacity(n);
    for row in 0..n {
        let code = if op.is_null(row) { "" } else { op.value(row) };
        let (side, upsert) = match code {
            "c" | "r" | "u" => (1, true),
            "d" => (0, false),
            "t" => {
                picks.push((1, row));
                flags.append_null();
                continue;
            }
            other => return Err(format!("invalid Debezium event: unknown op \"{other}\"")),
        };
        if valid[side].as_ref().is_some_and(|v| v.is_null(row)) {
            return Err(format!(
                "invalid Debezium event: op \"{code}\" without a \"{}\" row (a delete needs the \
                 old row's key: set the table's REPLICA IDENTITY)",
                SIDES[side]
            ));
        }
        picks.push((side, row));
        flags.append_value(upsert);
    }
    let picked =
        interleave_record_batch(&[&sides[0], &sides[1]], &picks).map_err(|e| e.to_string())?;
    let mut cols = picked.columns().to_vec();
    cols.push(Arc::new(flags.finish()));
    RecordBatch::try_new(output_schema(declared), cols).map_err(|e| e.to_string())
}

/// Side `name` of `events` as the declared columns, and which rows are null.
fn side(
    declared: &SchemaRef,
    events: &RecordBatch,
    name: &str,
) -> Result<(RecordBatch, Option<NullBuffer>), String> {
    let col = events
        .column_by_name(name)
        .and_then(|c| c.as_struct_opt())
        .ok_or_else(|| format!("invalid Debezium event: `{name}` is not a record"))?;
    let (fields, arrays, nulls) = col.clone().into_parts();
    let options = RecordBatchOptions::new().with_row_count(Some(events.num_rows()));
    let rows = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| e.to_string())?;
    Ok((to_declared(align(declared, rows)?, declared)?, nulls))
}
