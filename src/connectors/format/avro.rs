//! Avro records with the writer schema given inline (`'avro.schema'`; with a
//! schema registry see [`super::avro_registry`]),
//! decoded with `arrow-avro`. Framing (`'avro.framing'`):
//! - `none` (default): each record is a bare Avro datum;
//! - `single_object`: Avro single-object encoding (`C3 01` + 8-byte schema fingerprint);
//! - `confluent`: Confluent wire format (`00` + 4-byte schema id, `'avro.schema_id'`).
//!
//! Decoded fields are matched to the declared columns by name and cast to
//! the declared types; a declared column the schema lacks is NULL.

use std::sync::Arc;

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore, SINGLE_OBJECT_MAGIC,
};
use datafusion::arrow::array::{new_null_array, ArrayRef};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::{decode_by_run, Decoded, Record, RecordDecoder};

/// How Avro records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvroFraming {
    /// Bare datums.
    None,
    /// Single-object encoding.
    SingleObject,
    /// Confluent wire format with this schema id.
    Confluent(u32),
}

/// Decodes Avro records into rows of a declared schema.
pub struct AvroDecoder {
    declared: SchemaRef,
    store: SchemaStore,
    fingerprint: Fingerprint,
    framing: AvroFraming,
    /// Prefix added to bare datums so the stream decoder accepts them.
    prefix: Vec<u8>,
}

impl AvroDecoder {
    /// A decoder for `declared` columns reading records written with `schema_json`.
    pub fn new(
        declared: SchemaRef,
        schema_json: &str,
        framing: AvroFraming,
    ) -> Result<Self, String> {
        let schema = AvroSchema::new(schema_json.to_string());
        let (store, fingerprint) = match framing {
            AvroFraming::Confluent(id) => {
                let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
                let fp = Fingerprint::Id(id);
                store
                    .set(fp, schema)
                    .map_err(|e| format!("invalid avro.schema: {e}"))?;
                (store, fp)
            }
            _ => {
                let mut store = SchemaStore::new();
                let fp = store
                    .register(schema)
                    .map_err(|e| format!("invalid avro.schema: {e}"))?;
                (store, fp)
            }
        };
        let prefix = match fingerprint {
            Fingerprint::Rabin(v) => [SINGLE_OBJECT_MAGIC.as_slice(), &v.to_le_bytes()].concat(),
            _ => Vec::new(),
        };
        let d = AvroDecoder {
            declared,
            store,
            fingerprint,
            framing,
            prefix,
        };
        // Fail at CREATE time on a schema arrow-avro cannot read.
        d.decoder(1)?;
        Ok(d)
    }

    fn decoder(&self, rows: usize) -> Result<Decoder, String> {
        ReaderBuilder::new()
            .with_batch_size(rows.max(1))
            .with_writer_schema_store(self.store.clone())
            .with_active_fingerprint(self.fingerprint)
            .build_decoder()
            .map_err(|e| format!("invalid avro.schema: {e}"))
    }

    fn run(&self, records: &[Record]) -> Result<Option<RecordBatch>, String> {
        let mut d = self.decoder(records.len())?;
        for r in records {
            let framed;
            let bytes: &[u8] = if self.framing == AvroFraming::None {
                framed = [self.prefix.as_slice(), &r.payload].concat();
                &framed
            } else {
                &r.payload
            };
            let used = d
                .decode(bytes)
                .map_err(|e| format!("invalid Avro record: {e}"))?;
            if used != bytes.len() {
                return Err(format!(
                    "invalid Avro record: {} of {} bytes form a record",
                    used,
                    bytes.len()
                ));
            }
        }
        let batch = d.flush().map_err(|e| format!("invalid Avro record: {e}"))?;
        batch.map(|b| align(&self.declared, b)).transpose()
    }
}

/// Columns of `batch` in `declared` order, by name; missing ones NULL.
pub(super) fn align(declared: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch, String> {
    let n = batch.num_rows();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for f in declared.fields() {
        let col = match batch.schema().index_of(f.name()) {
            Ok(i) => batch.column(i).clone(),
            Err(_) => new_null_array(f.data_type(), n),
        };
        fields.push(Field::new(f.name(), col.data_type().clone(), true));
        cols.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}

impl RecordDecoder for AvroDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        let declared = self.declared.clone();
        decode_by_run(records, &declared, |r| self.run(r))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampNanosecondType};

    use super::*;

    /// Avro's zig-zag varint encoding of a long.
    pub(crate) fn long(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// A datum of `{"id": long, "name": string, "ts": timestamp-millis}`.
    pub(crate) fn datum(id: i64, name: &str, ts_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        long(id, &mut out);
        long(name.len() as i64, &mut out);
        out.extend_from_slice(name.as_bytes());
        long(ts_ms, &mut out);
        out
    }

    pub(crate) const SCHEMA: &str = r#"{"type": "record", "name": "E", "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}"#;

    #[test]
    fn bare_and_confluent_datums_decode_and_bad_ones_are_rejected() {
        let declared = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("missing", DataType::Int64, true),
        ]));
        let rec = |payload: Vec<u8>| Record {
            payload,
            ..Default::default()
        };
        let mut d = AvroDecoder::new(declared.clone(), SCHEMA, AvroFraming::None).unwrap();
        let out = d.decode(&[
            rec(datum(1, "a", 1000)),
            rec(vec![0x02, 0x7f]),
            rec(datum(3, "ccc", 3000)),
        ]);
        assert_eq!(out.rows_from, vec![0, 2]);
        assert_eq!(out.rejected.len(), 1);
        assert!(
            out.rejected[0].error.starts_with("invalid Avro record"),
            "{:?}",
            out.rejected
        );
        let b = out.batch.unwrap();
        assert_eq!(b.column(0).as_string::<i32>().value(1), "ccc");
        assert_eq!(b.column(1).as_primitive::<Int64Type>().values(), &[1, 3]);
        let ts = b.column(2).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.values(), &[1_000_000_000, 3_000_000_000]);
        assert_eq!(b.column(3).null_count(), 2);

        let mut d = AvroDecoder::new(declared, SCHEMA, AvroFraming::Confluent(7)).unwrap();
        let framed = [vec![0u8, 0, 0, 0, 7], datum(5, "e", 5000)].concat();
        let out = d.decode(&[rec(framed)]);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(out.batch.unwrap().num_rows(), 1);
    }
}
