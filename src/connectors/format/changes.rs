//! Keyed formats: records that upsert and delete rows of a source with a
//! `PRIMARY KEY`, decoded into rows plus an upsert/delete flag
//! ([`OP_COLUMN`], last column: true = upsert, false = delete).
//!
//! - `upsert_json`: the value is the row (JSON, key columns included); a
//!   record with a null value (a tombstone) deletes the row whose key is the
//!   Kafka key: a JSON object of the key columns, or, for a one-column key,
//!   the key value itself (`42`, `"abc"` or plain text).
//! - `debezium_json`: Debezium change events (with or without the
//!   `schema`/`payload` envelope): `op` `c` (create) and `r` (snapshot read)
//!   insert `after`, `u` replaces the row by `after`, `d` deletes `before`'s
//!   key. The tombstone Debezium sends after a delete is skipped.
//!
//! - `upsert_avro` and `debezium_avro`: the same, with values in Avro (the
//!   Confluent wire format, writer schemas from a schema registry), see
//!   [`super::avro_changes`].
//!
//! The rows of the JSON formats are decoded by the JSON decoder, so types,
//! timestamps and bad records behave as with `format = 'json'`; those of the
//! Avro formats as with `format = 'avro'` and a registry.

use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::avro_changes::AvroChanges;
use super::registry::Registry;
use super::{Decoded, JsonDecoder, Record, RecordDecoder, Rejected};
pub use crate::connectors::upsert::OP_COLUMN;

/// Which keyed format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeFormat {
    /// `upsert_json`.
    UpsertJson,
    /// `debezium_json`.
    DebeziumJson,
    /// `upsert_avro`.
    UpsertAvro,
    /// `debezium_avro`.
    DebeziumAvro,
}

impl ChangeFormat {
    /// The format named `name`, if it is a keyed one.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "upsert_json" => Some(ChangeFormat::UpsertJson),
            "debezium_json" => Some(ChangeFormat::DebeziumJson),
            "upsert_avro" => Some(ChangeFormat::UpsertAvro),
            "debezium_avro" => Some(ChangeFormat::DebeziumAvro),
            _ => None,
        }
    }

    /// The option value.
    pub fn name(self) -> &'static str {
        match self {
            ChangeFormat::UpsertJson => "upsert_json",
            ChangeFormat::DebeziumJson => "debezium_json",
            ChangeFormat::UpsertAvro => "upsert_avro",
            ChangeFormat::DebeziumAvro => "debezium_avro",
        }
    }

    /// True for the Avro formats, which need a schema registry.
    pub fn is_avro(self) -> bool {
        matches!(self, ChangeFormat::UpsertAvro | ChangeFormat::DebeziumAvro)
    }
}

/// Decodes keyed records into rows of the declared columns plus [`OP_COLUMN`].
pub struct ChangeDecoder {
    format: ChangeFormat,
    json: JsonDecoder,
    keys: Vec<String>,
    /// The Avro formats' decoders.
    avro: Option<AvroChanges>,
}

/// What one record asks for.
enum Change {
    /// Upsert (true) or delete (false) the row of this JSON object.
    Row(Vec<u8>, bool),
    /// Nothing (Debezium's tombstone after a delete).
    Skip,
}

impl ChangeDecoder {
    /// A decoder of `format` for the `declared` payload columns, keyed by
    /// `keys`; the Avro formats read writer schemas cached by `registry`.
    pub fn new(
        format: ChangeFormat,
        declared: SchemaRef,
        keys: Vec<String>,
        registry: Option<Arc<Registry>>,
    ) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("a keyed format needs the source's PRIMARY KEY".into());
        }
        let avro = match (format.is_avro(), registry) {
            (false, _) => None,
            (true, Some(r)) => Some(AvroChanges::new(format, declared.clone(), &keys, r)?),
            (true, None) => {
                return Err(format!(
                    "format '{}' needs 'schema.registry.url'",
                    format.name()
                ))
            }
        };
        Ok(ChangeDecoder {
            format,
            json: JsonDecoder::new(declared)?,
            keys,
            avro,
        })
    }

    fn change(&self, r: &Record) -> Result<Change, String> {
        match self.format {
            ChangeFormat::UpsertJson | ChangeFormat::UpsertAvro if r.payload.is_empty() => {
                let key = r
                    .key
                    .as_deref()
                    .ok_or("a record with a null value (a delete) needs a key")?;
                Ok(Change::Row(key_row(&self.keys, key)?, false))
            }
            ChangeFormat::UpsertJson | ChangeFormat::UpsertAvro => {
                Ok(Change::Row(r.payload.clone(), true))
            }
            ChangeFormat::DebeziumJson | ChangeFormat::DebeziumAvro => debezium(&r.payload),
        }
    }
}

/// The row (a JSON object) of a Kafka key for key columns `keys`: a JSON
/// object, or the one key column's value (JSON or plain text).
pub(super) fn key_row(keys: &[String], key: &[u8]) -> Result<Vec<u8>, String> {
    let parsed = serde_json::from_slice::<Value>(key).ok();
    if let Some(Value::Object(_)) = &parsed {
        return Ok(key.to_vec());
    }
    let value = match parsed {
        Some(v @ (Value::Number(_) | Value::String(_) | Value::Bool(_))) => v,
        _ => Value::String(String::from_utf8_lossy(key).into_owned()),
    };
    key_value_row(keys, value)
}

/// The row (a JSON object) of the one key column's `value`.
pub(super) fn key_value_row(keys: &[String], value: Value) -> Result<Vec<u8>, String> {
    let [column] = keys else {
        return Err(format!(
            "the key of a delete must be a JSON object of the key columns {keys:?}"
        ));
    };
    serde_json::to_vec(&serde_json::json!({ column: value })).map_err(|e| e.to_string())
}

/// `batch` followed by [`OP_COLUMN`] holding `ops`.
pub(super) fn with_op(batch: RecordBatch, ops: BooleanArray) -> Result<RecordBatch, String> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(OP_COLUMN, DataType::Boolean, false));
    let mut cols = batch.columns().to_vec();
    cols.push(Arc::new(ops));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}

/// A Debezium change event as a row to upsert or delete.
fn debezium(payload: &[u8]) -> Result<Change, String> {
    if payload.is_empty() {
        return Ok(Change::Skip);
    }
    let v: Value =
        serde_json::from_slice(payload).map_err(|e| format!("invalid Debezium event: {e}"))?;
    let event = match v.get("payload") {
        Some(p) if v.get("schema").is_some() => p,
        _ => &v,
    };
    let op = event
        .get("op")
        .and_then(Value::as_str)
        .ok_or("invalid Debezium event: no \"op\" field")?;
    let (side, upsert) = match op {
        "c" | "r" | "u" => ("after", true),
        "d" => ("before", false),
        "t" => return Ok(Change::Skip),
        other => return Err(format!("invalid Debezium event: unknown op \"{other}\"")),
    };
    match event.get(side) {
        Some(row @ Value::Object(_)) => Ok(Change::Row(
            serde_json::to_vec(row).map_err(|e| e.to_string())?,
            upsert,
        )),
        _ => Err(format!(
            "invalid Debezium event: op \"{op}\" without a \"{side}\" row (a delete needs the \
             old row's key: set the table's REPLICA IDENTITY)"
        )),
    }
}

impl RecordDecoder for ChangeDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        if let Some(avro) = self.avro.as_mut() {
            return avro.decode(records, &mut self.json);
        }
        if self.format == ChangeFormat::UpsertJson && records.iter().all(|r| !r.payload.is_empty())
        {
            // Only upserts (the common case): decode the records as they are, no copies.
            let inner = self.json.decode(records);
            let ops = vec![true; inner.rows_from.len()];
            return self.finish(inner, |i| i, ops, Vec::new());
        }
        let mut rows = Vec::with_capacity(records.len());
        let mut from = Vec::with_capacity(records.len());
        let mut ops = Vec::with_capacity(records.len());
        let mut rejected = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match self.change(r) {
                Ok(Change::Row(payload, upsert)) => {
                    rows.push(Record {
                        payload,
                        ..Record::default()
                    });
                    from.push(i);
                    ops.push(upsert);
                }
                Ok(Change::Skip) => {}
                Err(error) => rejected.push(Rejected { index: i, error }),
            }
        }
        let inner = self.json.decode(&rows);
        let row_ops: Vec<bool> = inner.rows_from.iter().map(|&j| ops[j]).collect();
        self.finish(inner, |j| from[j], row_ops, rejected)
    }
}

impl ChangeDecoder {
    /// The JSON decoder's result for the records' rows (`origin` maps a row
    /// record to the record it came from) with each row's upsert/delete flag.
    fn finish(
        &self,
        inner: Decoded,
        origin: impl Fn(usize) -> usize,
        row_ops: Vec<bool>,
        mut rejected: Vec<Rejected>,
    ) -> Decoded {
        rejected.extend(inner.rejected.into_iter().map(|r| Rejected {
            index: origin(r.index),
            ..r
        }));
        rejected.sort_by_key(|r| r.index);
        let rows_from: Vec<usize> = inner.rows_from.iter().map(|&j| origin(j)).collect();
        let batch = match inner.batch.map(|b| with_op(b, BooleanArray::from(row_ops))) {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                // Cannot happen (one more column of the same length); reject rather than panic.
                rejected.extend(rows_from.iter().map(|&index| Rejected {
                    index,
                    error: e.clone(),
                }));
                rejected.sort_by_key(|r| r.index);
                return Decoded {
                    batch: None,
                    rows_from: Vec::new(),
                    rejected,
                };
            }
            None => None,
        };
        Decoded {
            batch,
            rows_from,
            rejected,
        }
    }
}
