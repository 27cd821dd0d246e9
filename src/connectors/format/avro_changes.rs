//! Keyed Avro formats, with writer schemas from a schema registry (records
//! in the Confluent wire format, resolved against the declared columns as
//! `format = 'avro'` does, see [`super::avro_registry`]):
//!
//! - `upsert_avro`, as `upsert_json`: the value is the row (key columns
//!   included); a record with a null value (a tombstone) deletes the row
//!   whose key is the Kafka key, which may be Avro in the Confluent wire
//!   format — a record of the key columns, or for a one-column key an
//!   `int`, `long`, `string` or `boolean` — or a key `upsert_json` reads (a
//!   JSON object of the key columns, or the one key column's value as JSON
//!   or plain text).
//! - `debezium_avro`: Debezium change events written by its Avro converter
//!   ([`super::avro_envelope`]); the tombstone after a delete is skipped.
//!
//! The reader thread fetches the writer schemas of values and of tombstones'
//! keys before decoding ([`super::registry::Registry::fetch_missing`]), so a
//! registry outage holds the source back (`retrying`) and never rejects.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::compute::{filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::avro::align;
use super::avro_registry::{RegistryAvroDecoder, Shape};
use super::changes::{key_row, key_value_row, with_op, ChangeFormat};
use super::registry::{confluent_id, Lookup, Registry};
use super::{to_declared, Decoded, JsonDecoder, Record, RecordDecoder, Rejected};

/// Decoders of a keyed Avro format.
pub(super) struct AvroChanges {
    /// `upsert_avro` (else `debezium_avro`).
    upsert: bool,
    declared: SchemaRef,
    keys: Vec<String>,
    registry: Arc<Registry>,
    /// Values: rows, or Debezium envelopes.
    values: RegistryAvroDecoder,
    /// Avro record keys of tombstones, as the key columns.
    key_records: RegistryAvroDecoder,
}

/// How a tombstone's key is decoded.
enum Key {
    /// An Avro record in the Confluent wire format.
    Record(Vec<u8>),
    /// A JSON object of the key columns.
    Json(Vec<u8>),
}

/// Records given to one decoder, and where each came from.
#[derive(Default)]
struct Part {
    from: Vec<usize>,
    records: Vec<Record>,
}

impl Part {
    fn push(&mut self, from: usize, payload: Vec<u8>) {
        self.from.push(from);
        self.records.push(Record {
            payload,
            ..Record::default()
        });
    }
}

/// Which decoder a part goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Values,
    KeyRecords,
    KeyJson,
}

impl AvroChanges {
    /// Decoders of `format` for the `declared` columns keyed by `keys`.
    pub(super) fn new(
        format: ChangeFormat,
        declared: SchemaRef,
        keys: &[String],
        registry: Arc<Registry>,
    ) -> Result<Self, String> {
        let key_fields = keys
            .iter()
            .map(|k| declared.field_with_name(k).cloned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let upsert = format == ChangeFormat::UpsertAvro;
        let shape = if upsert { Shape::Row } else { Shape::Envelope };
        Ok(AvroChanges {
            upsert,
            values: RegistryAvroDecoder::with_shape(declared.clone(), registry.clone(), shape),
            key_records: RegistryAvroDecoder::new(
                Arc::new(Schema::new(key_fields)),
                registry.clone(),
            ),
            declared,
            keys: keys.to_vec(),
            registry,
        })
    }

    /// Decode `records` into the declared columns and the upsert/delete
    /// flag; `json` decodes keys given as JSON.
    pub(super) fn decode(&mut self, records: &[Record], json: &mut JsonDecoder) -> Decoded {
        if records.iter().all(|r| !r.payload.is_empty()) {
            // Only values (the common case): decode the records as they are, no copies.
            let values = self.values.decode(records);
            return self.merge(vec![(Kind::Values, None, values)], Vec::new());
        }
        let mut values = Part::default();
        let mut key_records = Part::default();
        let mut key_json = Part::default();
        let mut rejected = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if !r.payload.is_empty() {
                values.push(i, r.payload.clone());
            } else if self.upsert {
                match self.key(r) {
                    Ok(Key::Record(k)) => key_records.push(i, k),
                    Ok(Key::Json(row)) => key_json.push(i, row),
                    Err(error) => rejected.push(Rejected { index: i, error }),
                }
            }
            // else: Debezium's tombstone after a delete, skipped.
        }
        let parts = vec![
            (
                Kind::Values,
                Some(values.from),
                self.values.decode(&values.records),
            ),
            (
                Kind::KeyRecords,
                Some(key_records.from),
                self.key_records.decode(&key_records.records),
            ),
            (
                Kind::KeyJson,
                Some(key_json.from),
                json.decode(&key_json.records),
            ),
        ];
        self.merge(parts, rejected)
    }

    /// How the key of tombstone `r` is decoded.
    fn key(&self, r: &Record) -> Result<Key, String> {
        let key = r
            .key
            .as_deref()
            .ok_or("a record with a null value (a delete) needs a key")?;
        let Ok(id) = confluent_id(key) else {
            return key_row(&self.keys, key).map(Key::Json);
        };
        let schema = match self.registry.lookup(id) {
            Lookup::Schema(s) => s,
            Lookup::Rejected(why) => return Err(format!("the key of a delete: {why}")),
        };
        let writer: Value = serde_json::from_str(&schema)
            .map_err(|e| format!("the key's schema id {id} is not valid JSON: {e}"))?;
        let t = match &writer {
            Value::String(t) => t.as_str(),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("record") => return Ok(Key::Record(key.to_vec())),
                Some(t) if o.get("logicalType").is_none_or(|l| l == "uuid") => t,
                _ => "",
            },
            _ => "",
        };
        let value = primitive(t, &key[5..])
            .map_err(|e| format!("the key of a delete (schema id {id}): {e}"))?;
        key_value_row(&self.keys, value).map(Key::Json)
    }

    /// The parts' rows in record order with their flags; `from` maps a
    /// part's record to the record it came from (`None`: the same).
    fn merge(
        &self,
        parts: Vec<(Kind, Option<Vec<usize>>, Decoded)>,
        mut rejected: Vec<Rejected>,
    ) -> Decoded {
        let mut batches = Vec::new();
        // (record, batch, row)
        let mut picks: Vec<(usize, usize, usize)> = Vec::new();
        for (kind, from, d) in parts {
            let origin = |i: usize| from.as_ref().map_or(i, |f| f[i]);
            rejected.extend(d.rejected.into_iter().map(|r| Rejected {
                index: origin(r.index),
                ..r
            }));
            let Some(batch) = d.batch else { continue };
            match self.flagged(kind, batch) {
                Ok(b) => {
                    let at = batches.len();
                    batches.push(b);
                    picks.extend(
                        d.rows_from
                            .iter()
                            .enumerate()
                            .map(|(row, &j)| (origin(j), at, row)),
                    );
                }
                Err(error) => rejected.extend(d.rows_from.iter().map(|&j| Rejected {
                    index: origin(j),
                    error: error.clone(),
                })),
            }
        }
        rejected.sort_by_key(|r| r.index);
        picks.sort_by_key(|p| p.0);
        let batch = match batches.len() {
            0 => return decoded(None, Vec::new(), rejected),
            1 => Ok(batches.swap_remove(0)),
            _ => {
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                let at: Vec<(usize, usize)> = picks.iter().map(|&(_, b, r)| (b, r)).collect();
                interleave_record_batch(&refs, &at).map_err(|e| e.to_string())
            }
        };
        let rows_from: Vec<usize> = picks.iter().map(|p| p.0).collect();
        match batch.and_then(|b| applicable(b, rows_from.clone())) {
            Ok((b, rows_from)) => decoded(Some(b), rows_from, rejected),
            Err(error) => {
                // Cannot happen (batches of one schema); reject rather than lose.
                rejected.extend(rows_from.into_iter().map(|index| Rejected {
                    index,
                    error: format!("internal decoding error: {error}"),
                }));
                rejected.sort_by_key(|r| r.index);
                decoded(None, Vec::new(), rejected)
            }
        }
    }

    /// A part's decoded rows as the declared columns and the flag.
    fn flagged(&self, kind: Kind, batch: RecordBatch) -> Result<RecordBatch, String> {
        let n = batch.num_rows();
        match kind {
            // Envelopes come with their flags.
            Kind::Values if !self.upsert => Ok(batch),
            Kind::Values => with_op(batch, BooleanArray::from(vec![true; n])),
            Kind::KeyRecords => with_op(
                to_declared(align(&self.declared, batch)?, &self.declared)?,
                BooleanArray::from(vec![false; n]),
            ),
            Kind::KeyJson => with_op(batch, BooleanArray::from(vec![false; n])),
        }
    }
}

fn decoded(batch: Option<RecordBatch>, rows_from: Vec<usize>, rejected: Vec<Rejected>) -> Decoded {
    Decoded {
        batch: batch.filter(|b| b.num_rows() > 0),
        rows_from,
        rejected,
    }
}

/// The rows of `batch` whose flag is not NULL (events that change no row
/// are dropped), with a flag column that is not nullable.
fn applicable(
    batch: RecordBatch,
    rows_from: Vec<usize>,
) -> Result<(RecordBatch, Vec<usize>), String> {
    let last = batch.num_columns().saturating_sub(1);
    let flags = batch.column(last).as_boolean().clone();
    let (batch, rows_from) = if flags.null_count() == 0 {
        (batch, rows_from)
    } else {
        let keep = BooleanArray::from_iter((0..flags.len()).map(|i| Some(flags.is_valid(i))));
        let rows_from = rows_from
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| flags.is_valid(i).then_some(r))
            .collect();
        let batch = filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?;
        (batch, rows_from)
    };
    let mut cols = batch.columns().to_vec();
    let flags = cols.pop().ok_or("no flag column")?;
    let rows = batch.project(&(0..last).collect::<Vec<_>>());
    let rows = rows.map_err(|e| e.to_string())?;
    let flags = flags.as_boolean().clone();
    Ok((with_op(rows, flags)?, rows_from))
}

/// A bare Avro datum of primitive type `t` as a JSON value.
fn primitive(t: &str, datum: &[u8]) -> Result<Value, String> {
    let (value, used) = match t {
        "int" | "long" => {
            let (v, n) = varint(datum)?;
            (Value::from(v), n)
        }
        "string" => {
            let (len, n) = varint(datum)?;
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| n.checked_add(l))
                .filter(|&end| end <= datum.len())
                .ok_or("a string longer than the datum")?;
            let text = std::str::from_utf8(&datum[n..end]).map_err(|e| e.to_string())?;
            (Value::String(text.to_string()), end)
        }
        "boolean" => match datum.first() {
            Some(b @ (0 | 1)) => (Value::Bool(*b == 1), 1),
            _ => return Err("not an Avro boolean".into()),
        },
        other => {
            return Err(format!(
                "an Avro key of type {other:?} cannot be read: use a record of the key \
                 columns, or an int, long, string or boolean"
            ))
        }
    };
    if used != datum.len() {
        return Err(format!("{used} of {} bytes form a {t}", datum.len()));
    }
    Ok(value)
}

/// Avro's zig-zag varint at the start of `b`, and its length in bytes.
fn varint(b: &[u8]) -> Result<(i64, usize), String> {
    let mut z: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        z |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64 ^ -((z & 1) as i64), i + 1));
        }
    }
    Err("not an Avro int or long".into())
}

#[cfg(test)]
#[path = "avro_changes_tests.rs"]
mod tests;
