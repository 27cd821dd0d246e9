//! JSON records: one object per record, decoded with `arrow-json`.
//! Unknown fields are ignored; a missing field is NULL.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::reader::{Decoder, ReaderBuilder};
use datafusion::arrow::record_batch::RecordBatch;

use super::{decode_with_fallback, diagnose, json_wire_schema, Decoded, Record, RecordDecoder};

/// Decodes JSON records into rows of a declared schema.
pub struct JsonDecoder {
    /// The declared payload columns.
    declared: SchemaRef,
    /// What `arrow-json` reads (timestamps as milliseconds, all nullable).
    wire: SchemaRef,
    /// A decoder kept between chunks (its buffers keep their capacity), with
    /// the most rows it takes at once; dropped after an error.
    kept: Option<(usize, Decoder)>,
    /// The same for the record-by-record pass over a chunk that failed.
    kept_one: Option<(usize, Decoder)>,
}

impl JsonDecoder {
    /// A decoder for `declared` columns.
    pub fn new(declared: SchemaRef) -> Result<Self, String> {
        let wire = json_wire_schema(&declared);
        // Fail at CREATE time on types arrow-json cannot read.
        ReaderBuilder::new(wire.clone())
            .build_decoder()
            .map_err(|e| format!("format 'json' cannot read these columns: {e}"))?;
        Ok(JsonDecoder {
            declared,
            wire,
            kept: None,
            kept_one: None,
        })
    }

    fn decoder(wire: &SchemaRef, rows: usize) -> Result<Decoder, String> {
        ReaderBuilder::new(wire.clone())
            .with_batch_size(rows.max(1))
            .build_decoder()
            .map_err(|e| e.to_string())
    }

    /// Decode `records` at once with the decoder in `kept` (built anew when
    /// they are more than it takes, or after an error).
    fn decode_kept(
        kept: &mut Option<(usize, Decoder)>,
        wire: &SchemaRef,
        records: &[Record],
    ) -> Result<Option<RecordBatch>, String> {
        let (most, mut d) = match kept.take() {
            Some((most, d)) if most >= records.len() => (most, d),
            _ => (records.len().max(1), Self::decoder(wire, records.len())?),
        };
        Self::feed(&mut d, records)?;
        let batch = d.flush().map_err(clean)?;
        *kept = Some((most, d));
        Ok(batch)
    }

    /// Feed records one after another, checking each is exactly one whole value.
    fn feed(d: &mut Decoder, records: &[Record]) -> Result<(), String> {
        for (i, r) in records.iter().enumerate() {
            let used = d.decode(&r.payload).map_err(clean)?;
            if used != r.payload.len() || d.has_partial_record() || d.len() != i + 1 {
                return Err("not exactly one JSON value".into());
            }
        }
        Ok(())
    }
}

/// `arrow-json` messages without their error-kind prefix.
fn clean(e: datafusion::arrow::error::ArrowError) -> String {
    let s = e.to_string();
    s.strip_prefix("Json error: ")
        .or_else(|| s.strip_prefix("Parser error: "))
        .unwrap_or(&s)
        .to_string()
}

impl RecordDecoder for JsonDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        let declared = self.declared.clone();
        let wire = self.wire.clone();
        let (mut kept, mut kept_one) = (self.kept.take(), self.kept_one.take());
        let decoded = decode_with_fallback(
            records,
            &declared,
            |all| Self::decode_kept(&mut kept, &wire, all),
            |one| Self::decode_kept(&mut kept_one, &wire, std::slice::from_ref(one)),
            |r, arrow_error| diagnose::json(&r.payload, declared.fields()).unwrap_or(arrow_error),
        );
        (self.kept, self.kept_one) = (kept, kept_one);
        decoded
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        DataType, Field, Int32Type, Schema, TimeUnit, TimestampNanosecondType,
    };

    use super::*;

    fn rec(s: &str) -> Record {
        Record {
            payload: s.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("guests", DataType::Int32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]))
    }

    #[test]
    fn good_records_decode_in_one_batch_with_both_timestamp_forms() {
        let mut d = JsonDecoder::new(schema()).unwrap();
        let out = d.decode(&[
            rec(r#"{"id": 1, "guests": 2, "ts": 1000, "extra": [1]}"#),
            rec(r#"{"id": 2, "ts": "1970-01-01T00:00:02Z"}"#),
        ]);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let b = out.batch.unwrap();
        assert_eq!(out.rows_from, vec![0, 1]);
        let ts = b.column(2).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.values(), &[1_000_000_000, 2_000_000_000]);
        let g = b.column(1).as_primitive::<Int32Type>();
        assert_eq!(g.value(0), 2);
        assert!(g.is_null(1));
    }

    #[test]
    fn bad_records_are_rejected_alone_with_precise_errors() {
        let mut d = JsonDecoder::new(schema()).unwrap();
        let out = d.decode(&[
            rec(r#"{"id": 1, "ts": 1}"#),
            rec(r#"{"id": 2, "guests": "two", "ts": 2}"#),
            rec(r#"{"id": 3, "ts": "#),
            rec(r#"{"id": 4, "ts": 4}"#),
        ]);
        assert_eq!(out.rows_from, vec![0, 3]);
        assert_eq!(out.batch.unwrap().num_rows(), 2);
        assert_eq!(out.rejected.len(), 2);
        assert_eq!(out.rejected[0].index, 1);
        assert_eq!(
            out.rejected[0].error,
            "field `guests`: expected an integer, got \"two\""
        );
        assert_eq!(out.rejected[1].index, 2);
        assert!(
            out.rejected[1].error.starts_with("invalid JSON"),
            "{}",
            out.rejected[1].error
        );
    }

    #[test]
    fn one_decoder_serves_chunks_of_any_size_before_and_after_an_error() {
        let mut d = JsonDecoder::new(schema()).unwrap();
        let ids = |out: &Decoded| -> Vec<i64> {
            out.batch.as_ref().map_or(Vec::new(), |b| {
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
        };
        let chunk = |from: i64, n: i64| -> Vec<Record> {
            (from..from + n)
                .map(|i| rec(&format!(r#"{{"id": {i}, "ts": {i}}}"#)))
                .collect()
        };
        assert_eq!(ids(&d.decode(&chunk(0, 2))), vec![0, 1]);
        // Larger than the kept decoder takes: a new one.
        assert_eq!(ids(&d.decode(&chunk(2, 5))), vec![2, 3, 4, 5, 6]);
        let mut bad = chunk(7, 3);
        bad[1] = rec(r#"{"id": "x", "ts": 1}"#);
        let out = d.decode(&bad);
        assert_eq!((ids(&out), out.rejected.len()), (vec![7, 9], 1));
        assert_eq!(ids(&d.decode(&chunk(10, 1))), vec![10]);
        assert_eq!(ids(&d.decode(&chunk(11, 4))), vec![11, 12, 13, 14]);
    }

    #[test]
    fn bad_records_anywhere_in_a_large_chunk_are_found_exactly() {
        let mut d = JsonDecoder::new(schema()).unwrap();
        let bad = [0usize, 37, 38, 99];
        let records: Vec<Record> = (0..100)
            .map(|i| {
                if bad.contains(&i) {
                    rec(&format!(r#"{{"id": {i}, "guests": "many", "ts": 1}}"#))
                } else {
                    rec(&format!(r#"{{"id": {i}, "ts": 1}}"#))
                }
            })
            .collect();
        let out = d.decode(&records);
        let good: Vec<usize> = (0..100).filter(|i| !bad.contains(i)).collect();
        assert_eq!(out.rows_from, good);
        let ids = out.batch.unwrap();
        let ids = ids
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(
            ids.values().iter().map(|&v| v as usize).collect::<Vec<_>>(),
            good
        );
        let rejected: Vec<(usize, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.error.as_str()))
            .collect();
        let msg = "field `guests`: expected an integer, got \"many\"";
        assert_eq!(rejected, bad.iter().map(|&i| (i, msg)).collect::<Vec<_>>());
    }

    #[test]
    fn two_values_in_one_record_are_rejected() {
        let mut d = JsonDecoder::new(schema()).unwrap();
        let out = d.decode(&[rec(r#"{"id": 1, "ts": 1} {"id": 2, "ts": 2}"#)]);
        assert!(out.batch.is_none());
        assert_eq!(out.rejected.len(), 1);
    }
}
