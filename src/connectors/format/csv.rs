//! CSV records: one row per record, fields in declared column order, decoded
//! with `arrow-csv`. An empty field is NULL.

use std::sync::Arc;

use datafusion::arrow::csv::reader::{Decoder, ReaderBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

use super::{decode_by_run, Decoded, Record, RecordDecoder};

/// Decodes CSV records into rows of a declared schema.
pub struct CsvDecoder {
    declared: SchemaRef,
    /// What `arrow-csv` reads: timestamps as text (converted afterwards, so
    /// epoch milliseconds and RFC 3339 both work), all columns nullable.
    wire: SchemaRef,
    delimiter: u8,
}

impl CsvDecoder {
    /// A decoder for `declared` columns with field `delimiter`.
    pub fn new(declared: SchemaRef, delimiter: u8) -> Self {
        let wire = Arc::new(Schema::new(
            declared
                .fields()
                .iter()
                .map(|f| {
                    let t = match f.data_type() {
                        DataType::Timestamp(..) => DataType::Utf8,
                        other => other.clone(),
                    };
                    Field::new(f.name(), t, true)
                })
                .collect::<Vec<_>>(),
        ));
        CsvDecoder {
            declared,
            wire,
            delimiter,
        }
    }

    /// A line with fewer fields than columns reads NULL in the missing
    /// trailing ones: records written before `ALTER SOURCE … ADD COLUMN`
    /// lack the column (a NOT NULL column is then refused by the contract).
    fn decoder(&self, rows: usize) -> Decoder {
        ReaderBuilder::new(self.wire.clone())
            .with_delimiter(self.delimiter)
            .with_truncated_rows(true)
            .with_batch_size(rows.max(1))
            .build_decoder()
    }

    fn run(&self, records: &[Record]) -> Result<Option<RecordBatch>, String> {
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 1).sum());
        for r in records {
            buf.extend_from_slice(&r.payload);
            if r.payload.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
        }
        let mut d = self.decoder(records.len());
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let used = d.decode(rest).map_err(clean)?;
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
        d.flush().map_err(clean)
    }
}

fn clean(e: datafusion::arrow::error::ArrowError) -> String {
    let s = e.to_string();
    s.strip_prefix("Csv error: ")
        .or_else(|| s.strip_prefix("Parser error: "))
        .unwrap_or(&s)
        .to_string()
}

impl RecordDecoder for CsvDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        let declared = self.declared.clone();
        decode_by_run(records, &declared, |r| self.run(r))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Int32Type, TimeUnit, TimestampNanosecondType};

    use super::*;

    #[test]
    fn rows_decode_and_bad_rows_are_rejected_alone() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int32, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]));
        let mut d = CsvDecoder::new(schema, b',');
        let rec = |s: &str| Record {
            payload: s.as_bytes().to_vec(),
            ..Default::default()
        };
        let out = d.decode(&[
            rec("1,1000"),
            rec("x,2000"),
            rec("3,1970-01-01T00:00:03Z"),
            rec("4,soon"),
            rec(",5000"),
        ]);
        assert_eq!(out.rows_from, vec![0, 2, 4]);
        let b = out.batch.unwrap();
        let ts = b.column(1).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.values(), &[1_000_000_000, 3_000_000_000, 5_000_000_000]);
        assert!(b.column(0).as_primitive::<Int32Type>().is_null(2));
        assert_eq!(out.rejected.len(), 2);
        assert_eq!(out.rejected[0].index, 1);
        assert!(
            out.rejected[0].error.contains("x"),
            "{}",
            out.rejected[0].error
        );
        assert_eq!(out.rejected[1].index, 3);
        assert!(
            out.rejected[1]
                .error
                .starts_with("field `ts`: expected a timestamp"),
            "{}",
            out.rejected[1].error
        );
    }

    #[test]
    fn short_lines_read_null_in_the_trailing_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int32, true),
            Field::new("extra", DataType::Int32, true),
        ]));
        let mut d = CsvDecoder::new(schema, b',');
        let rec = |s: &str| Record {
            payload: s.as_bytes().to_vec(),
            ..Default::default()
        };
        let out = d.decode(&[rec("1"), rec("2,20"), rec("3,30,x")]);
        assert_eq!(out.rows_from, vec![0, 1]);
        let b = out.batch.unwrap();
        assert!(b.column(1).is_null(0));
        assert_eq!(b.column(1).as_primitive::<Int32Type>().value(1), 20);
        assert_eq!(out.rejected.len(), 1);
    }
}
