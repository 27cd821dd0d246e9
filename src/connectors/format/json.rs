//! JSON records: one object per record, decoded with `arrow-json`.
//! Unknown fields are ignored; a missing field is NULL.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::reader::{Decoder, ReaderBuilder};

use super::{decode_with_fallback, diagnose, json_wire_schema, Decoded, Record, RecordDecoder};

/// Decodes JSON records into rows of a declared schema.
pub struct JsonDecoder {
    /// The declared payload columns.
    declared: SchemaRef,
    /// What `arrow-json` reads (timestamps as milliseconds, all nullable).
    wire: SchemaRef,
}

impl JsonDecoder {
    /// A decoder for `declared` columns.
    pub fn new(declared: SchemaRef) -> Result<Self, String> {
        let wire = json_wire_schema(&declared);
        // Fail at CREATE time on types arrow-json cannot read.
        ReaderBuilder::new(wire.clone())
            .build_decoder()
            .map_err(|e| format!("format 'json' cannot read these columns: {e}"))?;
        Ok(JsonDecoder { declared, wire })
    }

    fn decoder(&self, rows: usize) -> Result<Decoder, String> {
        ReaderBuilder::new(self.wire.clone())
            .with_batch_size(rows.max(1))
            .build_decoder()
            .map_err(|e| e.to_string())
    }

    /// Feed records one after another, checking each is exactly one whole value.
    fn feed(&self, d: &mut Decoder, records: &[Record]) -> Result<(), String> {
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
        decode_with_fallback(
            records,
            &declared,
            |all| {
                let mut d = self.decoder(all.len())?;
                self.feed(&mut d, all)?;
                d.flush().map_err(clean)
            },
            |one| {
                let mut d = self.decoder(1)?;
                self.feed(&mut d, std::slice::from_ref(one))?;
                d.flush().map_err(clean)
            },
            |r, arrow_error| diagnose::json(&r.payload, declared.fields()).unwrap_or(arrow_error),
        )
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
    fn two_values_in_one_record_are_rejected() {
        let mut d = JsonDecoder::new(schema()).unwrap();
        let out = d.decode(&[rec(r#"{"id": 1, "ts": 1} {"id": 2, "ts": 2}"#)]);
        assert!(out.batch.is_none());
        assert_eq!(out.rejected.len(), 1);
    }
}
