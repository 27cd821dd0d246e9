//! Avro records in the Confluent wire format whose writer schemas come from a
//! schema registry ([`super::registry`]), read as the declared columns.
//!
//! The declared columns are the reader schema. For each writer schema, a
//! reader schema is derived and handed to `arrow-avro`, which does Avro
//! schema resolution while decoding:
//! - writer fields that are not declared are skipped;
//! - a declared column the writer lacks is NULL (columns have no defaults);
//! - a writer `int` read as `BIGINT` / `REAL` / `DOUBLE`, `long` as `REAL` /
//!   `DOUBLE`, `float` as `DOUBLE`, `string` as `BYTEA` and `bytes` as
//!   `VARCHAR` are promoted as Avro's resolution rules say.
//!
//! Decoded columns are then cast to the declared types as for inline schemas
//! (timestamps to nanoseconds, text to the declared string type). A writer
//! schema that cannot be read as the declared columns — a narrowing (`long` as
//! `INT`), text as a number, a union that is not `[null, T]` — rejects its
//! records with the reason; so do ids the registry does not have.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::avro::align;
use super::registry::{confluent_id, Lookup, Registry};
use super::{decode_by_run, to_declared, Decoded, Record, RecordDecoder};

/// Decoders kept per decoding thread, one per writer schema.
const MAX_DECODERS: usize = 64;
/// Rows per `arrow-avro` batch.
const BATCH_ROWS: usize = 1024;

/// What each record's Avro datum holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A record of the row's fields.
    Row,
    /// A Debezium change event: a record with `before` and `after` (each null
    /// or a record of the row's fields) and `op` (see [`super::avro_envelope`]).
    Envelope,
}

/// Decodes Confluent-framed Avro records with writer schemas from a registry.
pub struct RegistryAvroDecoder {
    declared: SchemaRef,
    /// What decoded batches hold: the declared columns, for an envelope
    /// followed by [`super::changes::OP_COLUMN`] (NULL: nothing to apply).
    output: SchemaRef,
    shape: Shape,
    registry: Arc<Registry>,
    /// Per writer schema id: a decoder resolving it to the declared columns,
    /// or why its records are rejected.
    resolved: RefCell<HashMap<u32, Result<Decoder, String>>>,
}

impl RegistryAvroDecoder {
    /// A decoder for `declared` columns reading schemas cached by `registry`.
    pub fn new(declared: SchemaRef, registry: Arc<Registry>) -> Self {
        Self::with_shape(declared, registry, Shape::Row)
    }

    /// A decoder of records shaped `shape` whose rows have the `declared`
    /// columns, reading schemas cached by `registry`.
    pub fn with_shape(declared: SchemaRef, registry: Arc<Registry>, shape: Shape) -> Self {
        let output = match shape {
            Shape::Row => declared.clone(),
            Shape::Envelope => super::avro_envelope::output_schema(&declared),
        };
        RegistryAvroDecoder {
            declared,
            output,
            shape,
            registry,
            resolved: RefCell::new(HashMap::new()),
        }
    }

    fn run(&self, records: &[Record]) -> Result<Option<RecordBatch>, String> {
        let mut batches = Vec::new();
        let mut start = 0;
        while start < records.len() {
            let id = confluent_id(&records[start].payload)?;
            let end = start
                + records[start..]
                    .iter()
                    .position(|r| confluent_id(&r.payload) != Ok(id))
                    .unwrap_or(records.len() - start);
            self.run_schema(id, &records[start..end], &mut batches)?;
            start = end;
        }
        match batches.len() {
            0 => Ok(None),
            1 => Ok(batches.pop()),
            _ => datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    /// Decode `records`, all written with schema `id`, into `out`.
    fn run_schema(
        &self,
        id: u32,
        records: &[Record],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), String> {
        let mut resolved = self.resolved.borrow_mut();
        if !resolved.contains_key(&id) {
            let r = match self.registry.lookup(id) {
                Lookup::Schema(json) => resolve(&self.declared, self.shape, id, &json),
                // Not cached: the registry may have it later.
                Lookup::Rejected(why) => return Err(why.to_string()),
            };
            if resolved.len() >= MAX_DECODERS {
                resolved.clear();
            }
            resolved.insert(id, r);
        }
        let decoder = match resolved.get_mut(&id) {
            Some(Ok(d)) => d,
            Some(Err(why)) => return Err(why.clone()),
            None => return Err(format!("schema id {id}: no decoder")),
        };
        let first = out.len();
        let mut decode = || -> Result<(), String> {
            for r in records {
                if decoder.batch_is_full() {
                    out.extend(decoder.flush().map_err(|e| invalid(id, e))?);
                }
                let used = decoder.decode(&r.payload).map_err(|e| invalid(id, e))?;
                if used != r.payload.len() {
                    return Err(format!(
                        "invalid Avro record (schema id {id}): {used} of {} bytes form a record",
                        r.payload.len()
                    ));
                }
            }
            out.extend(decoder.flush().map_err(|e| invalid(id, e))?);
            Ok(())
        };
        if let Err(e) = decode() {
            // The decoder may be mid-record: build a new one next time.
            resolved.remove(&id);
            return Err(e);
        }
        for b in &mut out[first..] {
            *b = match self.shape {
                Shape::Row => to_declared(align(&self.declared, b.clone())?, &self.declared)?,
                Shape::Envelope => super::avro_envelope::rows(&self.declared, b)?,
            };
        }
        Ok(())
    }
}

fn invalid(id: u32, e: impl std::fmt::Display) -> String {
    format!("invalid Avro record (schema id {id}): {e}")
}

impl RecordDecoder for RegistryAvroDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        let output = self.output.clone();
        decode_by_run(records, &output, |r| self.run(r))
    }
}

/// A decoder reading writer schema `json` (id `id`) of records shaped
/// `shape` as the `declared` columns, or why records written with it cannot
/// be read.
fn resolve(declared: &SchemaRef, shape: Shape, id: u32, json: &str) -> Result<Decoder, String> {
    let cannot = |e: String| format!("schema id {id} cannot be read as the declared columns: {e}");
    let writer: Value =
        serde_json::from_str(json).map_err(|e| cannot(format!("invalid schema JSON: {e}")))?;
    let build = |keep_all: bool| -> Result<Decoder, String> {
        let reader = match shape {
            Shape::Row => reader_schema(&writer, declared, keep_all)?,
            Shape::Envelope => super::avro_envelope::reader_schema(&writer, declared, keep_all)?,
        };
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store
            .set(Fingerprint::Id(id), AvroSchema::new(json.to_string()))
            .map_err(|e| e.to_string())?;
        ReaderBuilder::new()
            .with_batch_size(BATCH_ROWS)
            .with_writer_schema_store(store)
            .with_active_fingerprint(Fingerprint::Id(id))
            .with_reader_schema(AvroSchema::new(reader.to_string()))
            .build_decoder()
            .map_err(|e| e.to_string())
    };
    // Undeclared fields are left out of the reader schema (skipped); if one of
    // them defines a named type a declared field uses, keep them all.
    let decoder = build(false).or_else(|_| build(true)).map_err(cannot)?;
    let decoded = decoder.schema();
    let row_fields = match shape {
        Shape::Row => decoded.fields().clone(),
        Shape::Envelope => super::avro_envelope::row_fields(&decoded).map_err(cannot)?,
    };
    for f in declared.fields() {
        if let Some((_, d)) = row_fields.find(f.name()) {
            readable(d.data_type(), f.data_type())
                .map_err(|e| cannot(format!("field `{}`: {e}", f.name())))?;
        }
    }
    Ok(decoder)
}

/// The fields of `schema` if it is an Avro record.
pub(super) fn record_fields(schema: &Value) -> Option<&Vec<Value>> {
    schema
        .as_object()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some("record"))
        .and_then(|o| o.get("fields"))
        .and_then(Value::as_array)
}

/// The reader schema for `writer` and the `declared` columns: the writer's
/// record with the declared fields (all fields with `keep_all`), their types
/// promoted where a declared type asks for it.
pub(super) fn reader_schema(
    writer: &Value,
    declared: &SchemaRef,
    keep_all: bool,
) -> Result<Value, String> {
    let Some(fields) = record_fields(writer) else {
        return Err("the writer schema is not an Avro record".into());
    };
    let mut kept = Vec::new();
    for f in fields {
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        match declared.field_with_name(name) {
            Ok(d) => {
                let mut f = f.clone();
                if let Some(t) = f.get("type").map(|t| promote(t, d.data_type())) {
                    f["type"] = t;
                }
                kept.push(f);
            }
            Err(_) if keep_all => kept.push(f.clone()),
            Err(_) => {}
        }
    }
    let mut reader = writer.clone();
    reader["fields"] = Value::Array(kept);
    Ok(reader)
}

/// Writer type `t` promoted to what `declared` asks for, where Avro allows it
/// (also inside `[null, T]`); otherwise `t`.
fn promote(t: &Value, declared: &DataType) -> Value {
    let want = match declared {
        DataType::Int64 => "long",
        DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytes",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        _ => return t.clone(),
    };
    let allowed = |from: &str| {
        matches!(
            (from, want),
            ("int", "long" | "float" | "double")
                | ("long", "float" | "double")
                | ("float", "double")
                | ("string", "bytes")
                | ("bytes", "string")
        )
    };
    match t {
        Value::String(p) if allowed(p) => Value::String(want.into()),
        Value::Object(o)
            if o.get("logicalType").is_none()
                && o.get("type").and_then(Value::as_str).is_some_and(allowed) =>
        {
            Value::String(want.into())
        }
        Value::Array(branches) if branches.len() == 2 && branches.contains(&"null".into()) => {
            Value::Array(branches.iter().map(|b| promote(b, declared)).collect())
        }
        other => other.clone(),
    }
}

/// Whether a decoded column of type `from` may be cast to the declared `to`
/// without changing values: what Avro resolution cannot do itself (time
/// units, string types, enums as text) but never a narrowing or a parse.
fn readable(from: &DataType, to: &DataType) -> Result<(), String> {
    use DataType::*;
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    let ok = match (from, to) {
        _ if from == to => true,
        (Timestamp(..), Timestamp(..)) | (Date32, Date32 | Date64) => true,
        (a, b) if text(a) && text(b) => true,
        (a, b) if binary(a) && binary(b) => true,
        (Dictionary(_, v), b) if text(v) && text(b) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p1 <= p2,
        (Struct(a), Struct(b)) if can_cast_types(from, to) => {
            for f in b {
                if let Some((_, w)) = a.find(f.name()) {
                    readable(w.data_type(), f.data_type())
                        .map_err(|e| format!("{}: {e}", f.name()))?;
                }
            }
            true
        }
        (List(a), List(b)) | (LargeList(a), LargeList(b)) | (List(a), LargeList(b)) => {
            readable(a.data_type(), b.data_type())?;
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the writer's values ({from}) cannot be read as the declared {to}"
        ))
    }
}

#[cfg(test)]
#[path = "avro_registry_tests.rs"]
mod tests;
