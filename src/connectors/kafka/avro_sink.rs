//! Avro output for Kafka sinks (`encode = 'avro'`): Avro schemas derived
//! from the view's columns, registered in a schema registry under
//! `<topic>-value` and `<topic>-key`, and messages in the Confluent wire
//! format (`00`, the 4-byte big-endian schema id, the datum), encoded by
//! `arrow-avro`.
//!
//! Schemas (records in namespace `eddy`, named after the view):
//! - the value of an append-only or upsert sink is a record of the view's
//!   columns; of a changelog sink, a Debezium-style envelope record
//!   `{before: [null, row], after: [null, row], op: string}` (`c`, `u`, `d`),
//!   which `format = 'debezium_avro'` sources read;
//! - the key is a record of the key columns.
//!
//! Types: a nullable column is a union `["null", T]` with default null;
//! `BOOLEAN` `boolean`; `SMALLINT` / `INT` `int`; `BIGINT` `long`; `REAL`
//! `float`; `DOUBLE` `double`; text `string`; `BYTEA` `bytes`; `DECIMAL(p, s)`
//! `bytes` with logical type `decimal`; `DATE` `int` / `date`; `TIME` `long` /
//! `time-micros`; `TIMESTAMP` (with or without time zone) `long` /
//! `timestamp-micros`; structs are nested records; lists arrays. Intervals
//! and maps have no Avro form here: `CREATE SINK` refuses them (0A000).

use std::sync::{Arc, OnceLock};

use arrow_avro::schema::{FingerprintStrategy, SCHEMA_METADATA_KEY};
use arrow_avro::writer::format::AvroSoeFormat;
use arrow_avro::writer::{Encoder, WriterBuilder};
use datafusion::arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, StructArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit,
};
use serde_json::{json, Value};

use super::sink::{SinkObject, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};
use crate::connectors::format::registry::Registry;
use crate::error::{EddyError, Result};

/// Avro's namespace for the records eddy writes.
const NAMESPACE: &str = "eddy";

/// One registered schema: its JSON, the Arrow schema batches are cast to
/// before encoding, and its subject.
#[derive(Debug)]
struct Part {
    avro: String,
    wire: SchemaRef,
    subject: String,
}

/// The Avro schemas of a sink and the ids the registry gave them.
#[derive(Debug)]
pub struct AvroSchemas {
    registry: Arc<Registry>,
    key: Option<Part>,
    value: Part,
    /// The row record's Arrow form (the value's, or inside the envelope).
    row: SchemaRef,
    envelope: bool,
    /// (key id, value id), once registered.
    ids: OnceLock<(Option<u32>, u32)>,
}

impl AvroSchemas {
    /// The schemas of a sink to `topic` of view `name` with columns `schema`,
    /// keyed by `key_cols`; `envelope` for a changelog sink. Contacts nobody.
    /// Columns with no Avro form are refused (0A000).
    pub fn new(
        registry: Arc<Registry>,
        topic: &str,
        name: &str,
        schema: &Schema,
        key_cols: &[usize],
        envelope: bool,
    ) -> Result<Self> {
        let record = avro_name(name);
        let (row_avro, row) = record_schema(&record, schema.fields()).map_err(unsupported)?;
        let value = if envelope {
            let avro = json!({
                "type": "record", "name": format!("{record}_envelope"), "namespace": NAMESPACE,
                "fields": [
                    {"name": "before", "type": ["null", row_avro], "default": null},
                    {"name": "after", "type": ["null", format!("{NAMESPACE}.{record}")],
                     "default": null},
                    {"name": "op", "type": "string"},
                ]
            });
            let side = |n: &str| Field::new(n, DataType::Struct(row.fields().clone()), true);
            let wire = Schema::new(vec![
                side("before"),
                side("after"),
                Field::new("op", DataType::Utf8, false),
            ]);
            (avro, Arc::new(wire))
        } else {
            (row_avro, row.clone())
        };
        let key = if key_cols.is_empty() {
            None
        } else {
            let projected = schema.project(key_cols)?;
            let (avro, wire) =
                record_schema(&format!("{record}_key"), projected.fields()).map_err(unsupported)?;
            Some(Part {
                avro: avro.to_string(),
                wire,
                subject: format!("{topic}-key"),
            })
        };
        Ok(AvroSchemas {
            registry,
            key,
            value: Part {
                avro: value.0.to_string(),
                wire: value.1,
                subject: format!("{topic}-value"),
            },
            row,
            envelope,
            ids: OnceLock::new(),
        })
    }

    /// Register the schemas (once; later calls return at once). Blocks on
    /// the registry for at most a few of its timeouts. `Err`: the registry
    /// cannot be reached or refused a schema.
    pub fn register(&self) -> std::result::Result<(), String> {
        if self.ids.get().is_some() {
            return Ok(());
        }
        let key = match &self.key {
            Some(k) => Some(self.registry.register(&k.subject, &k.avro)?),
            None => None,
        };
        let value = self
            .registry
            .register(&self.value.subject, &self.value.avro)?;
        let _ = self.ids.set((key, value));
        Ok(())
    }

    /// The value schema (JSON), for tests and messages.
    pub fn value_schema(&self) -> &str {
        &self.value.avro
    }

    /// The subjects the schemas are registered under, key's first.
    pub fn subjects(&self) -> Vec<&str> {
        self.key
            .iter()
            .chain(std::iter::once(&self.value))
            .map(|p| p.subject.as_str())
            .collect()
    }
}

/// Register `schemas` unless they are, retrying with backoff while the
/// registry cannot be reached or refuses (the sink's status is `retrying`,
/// with the reason, meanwhile). Returns once they are registered.
pub async fn ensure_registered(sink: &SinkObject, schemas: &Arc<AvroSchemas>) -> Result<()> {
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        let s = schemas.clone();
        let outcome = tokio::task::spawn_blocking(move || s.register())
            .await
            .map_err(|e| EddyError::Internal(format!("schema registration: {e}")))?;
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(sink = %sink.name, error = %e, "cannot register the sink's Avro schemas");
                *sink.metrics.status.lock() = "retrying".into();
                *sink.metrics.last_error.lock() = Some(e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
    }
}

fn unsupported(e: String) -> EddyError {
    EddyError::NotSupported {
        message: format!("encode = 'avro': {e}"),
        hint: Some(
            "In the view, name the column with letters, digits and _ (AS name) and cast it to a \
             type Avro has (CAST(… AS TEXT), for example)."
                .into(),
        ),
    }
}

/// Encoders of a sink's messages, built once its schemas are registered.
pub struct AvroEncoders {
    schemas: Arc<AvroSchemas>,
    key: Option<Encoder>,
    value: Encoder,
}

impl AvroEncoders {
    /// The schemas it encodes with.
    pub fn schemas(&self) -> &Arc<AvroSchemas> {
        &self.schemas
    }

    /// Encoders for registered `schemas`.
    pub fn new(schemas: Arc<AvroSchemas>) -> Result<Self> {
        let (key_id, value_id) = *schemas.ids.get().ok_or_else(|| {
            EddyError::Internal("the sink's Avro schemas are not registered yet".into())
        })?;
        let key = match (&schemas.key, key_id) {
            (Some(k), Some(id)) => Some(encoder(k, id)?),
            _ => None,
        };
        let value = encoder(&schemas.value, value_id)?;
        Ok(AvroEncoders {
            schemas,
            key,
            value,
        })
    }

    /// Each row of `batch` (the view's columns) as a message value.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let wire = to_wire(batch, &self.schemas.row)?;
        encode(&mut self.value, &wire)
    }

    /// Each row of `keys` (the key columns) as a message key.
    pub fn keys(&mut self, keys: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        match (&mut self.key, &self.schemas.key) {
            (Some(e), Some(k)) => encode(e, &to_wire(keys, &k.wire)?),
            _ => Err(EddyError::Internal(
                "the sink has no Avro key schema".into(),
            )),
        }
    }

    /// Change events `(op, before row, after row)` of rows of `batch` as
    /// envelope values.
    pub fn envelopes(
        &mut self,
        batch: &RecordBatch,
        events: &[(&str, Option<usize>, Option<usize>)],
    ) -> Result<Vec<Vec<u8>>> {
        if !self.schemas.envelope {
            return Err(EddyError::Internal(
                "the sink's value is not an envelope".into(),
            ));
        }
        let rows: ArrayRef = Arc::new(StructArray::from(to_wire(batch, &self.schemas.row)?));
        let side = |before: bool| {
            let idx: UInt32Array = events
                .iter()
                .map(|e| if before { e.1 } else { e.2 })
                .map(|i| i.and_then(|i| u32::try_from(i).ok()))
                .collect();
            take(&rows, &idx, None)
        };
        let before = side(true)?;
        let after = side(false)?;
        let ops: ArrayRef = Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.0)));
        let wire = RecordBatch::try_new(self.schemas.value.wire.clone(), vec![before, after, ops])?;
        encode(&mut self.value, &wire)
    }
}

fn encoder(part: &Part, id: u32) -> Result<Encoder> {
    let mut schema = part.wire.as_ref().clone();
    schema
        .metadata
        .insert(SCHEMA_METADATA_KEY.to_string(), part.avro.clone());
    WriterBuilder::new(schema)
        .with_fingerprint_strategy(FingerprintStrategy::Id(id))
        .build_encoder::<AvroSoeFormat>()
        .map_err(|e| EddyError::Internal(format!("Avro encoder for {}: {e}", part.subject)))
}

fn encode(e: &mut Encoder, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    e.encode(batch)
        .map_err(|e| EddyError::Connector(format!("cannot encode rows as Avro: {e}")))?;
    Ok(e.flush().iter().map(|b| b.to_vec()).collect())
}

/// `batch` cast to the `wire` types the Avro schema was derived for.
fn to_wire(batch: &RecordBatch, wire: &SchemaRef) -> Result<RecordBatch> {
    let cols = batch
        .columns()
        .iter()
        .zip(wire.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(wire.clone(), cols)?)
}

/// An Avro name from `name`: letters, digits and `_`, not starting with a digit.
fn avro_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The Avro record `name` of `fields`, and the Arrow form it encodes.
fn record_schema(name: &str, fields: &Fields) -> std::result::Result<(Value, SchemaRef), String> {
    let (avro, wire) = record(name, fields)?;
    let mut avro = avro;
    avro["namespace"] = json!(NAMESPACE);
    Ok((avro, Arc::new(Schema::new(wire))))
}

fn record(name: &str, fields: &Fields) -> std::result::Result<(Value, Fields), String> {
    let mut avro = Vec::with_capacity(fields.len());
    let mut wire = Vec::with_capacity(fields.len());
    for f in fields {
        let field_name = avro_name(f.name());
        if field_name != *f.name() {
            return Err(format!(
                "column \"{}\" is not a valid Avro field name (letters, digits and _)",
                f.name()
            ));
        }
        let (t, w) = field_type(&format!("{name}_{field_name}"), f)?;
        let mut entry = json!({"name": field_name, "type": t});
        if f.is_nullable() {
            entry["default"] = Value::Null;
        }
        avro.push(entry);
        wire.push(Arc::new(Field::new(f.name(), w, f.is_nullable())) as FieldRef);
    }
    Ok((
        json!({"type": "record", "name": name, "fields": avro}),
        Fields::from(wire),
    ))
}

/// The Avro type of field `f` (a union with null when nullable) and the
/// Arrow type its values are cast to; `path` names nested records.
fn field_type(path: &str, f: &Field) -> std::result::Result<(Value, DataType), String> {
    let (t, w) = avro_type(path, f.name(), f.data_type())?;
    Ok(if f.is_nullable() {
        (json!(["null", t]), w)
    } else {
        (t, w)
    })
}

fn avro_type(
    path: &str,
    column: &str,
    t: &DataType,
) -> std::result::Result<(Value, DataType), String> {
    use DataType::*;
    let logical = |base: &str, logical: &str| json!({"type": base, "logicalType": logical});
    Ok(match t {
        Null => (json!("null"), Null),
        Boolean => (json!("boolean"), Boolean),
        Int8 | Int16 | Int32 | UInt8 | UInt16 => (json!("int"), Int32),
        Int64 | UInt32 => (json!("long"), Int64),
        Float16 | Float32 => (json!("float"), Float32),
        Float64 => (json!("double"), Float64),
        Utf8 | LargeUtf8 | Utf8View => (json!("string"), Utf8),
        Binary | LargeBinary | BinaryView => (json!("bytes"), Binary),
        Decimal128(p, s) if *s >= 0 => (
            json!({"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}),
            Decimal128(*p, *s),
        ),
        Date32 | Date64 => (logical("int", "date"), Date32),
        Time32(_) | Time64(_) => (
            logical("long", "time-micros"),
            Time64(TimeUnit::Microsecond),
        ),
        Timestamp(_, tz) => (
            logical("long", "timestamp-micros"),
            Timestamp(TimeUnit::Microsecond, tz.clone()),
        ),
        Struct(fields) => {
            let (avro, wire) = record(path, fields)?;
            (avro, Struct(wire))
        }
        List(item) | LargeList(item) => {
            let (t, w) = field_type(&format!("{path}_item"), item)?;
            let item = Field::new(item.name(), w, item.is_nullable());
            (json!({"type": "array", "items": t}), List(Arc::new(item)))
        }
        other => {
            return Err(format!(
                "column \"{column}\" of type {other} has no Avro form eddy writes"
            ))
        }
    })
}

#[cfg(test)]
#[path = "avro_sink_tests.rs"]
mod tests;
