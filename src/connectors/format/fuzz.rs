//! Fuzzing the record decoders (issue 14): random bytes and mutated valid
//! records, in batches, through JSON, CSV and Avro. Whatever comes in, a
//! decoder must not panic, and must account for every record exactly once:
//! a row (in record order) or a rejection with a reason.
//!
//! `cargo test fuzz_` runs a short round (CI); `EDDY_FUZZ_CASES=1000000
//! cargo test --release fuzz_` runs a long one.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::avro::AvroFraming;
use super::{Format, Record};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("ok", DataType::Boolean, true),
    ]))
}

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "R", "fields": [
    {"name": "id", "type": ["null", "long"]}, {"name": "name", "type": ["null", "string"]},
    {"name": "price", "type": ["null", "double"]}, {"name": "ts", "type": ["null", "long"]},
    {"name": "ok", "type": ["null", "boolean"]}]}"#;

/// Valid-looking records of each format, to mutate.
fn seeds(format: &str) -> Vec<Vec<u8>> {
    let lines: &[&str] = match format {
        "json" => &[
            r#"{"id": 1, "name": "a", "price": 1.5, "ts": 1700000000000, "ok": true}"#,
            r#"{"id": -9223372036854775808, "name": "é\u0000", "ts": "2026-01-01T00:00:00Z"}"#,
            r#"{"name": {"nested": [1, 2, {"x": null}]}, "price": 1e308}"#,
        ],
        "csv" => &[
            "1,a,1.5,1700000000000,true",
            "-1,\"q,\"\"x\",NaN,,false",
            ",,,,",
        ],
        _ => &[],
    };
    let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
    if format == "avro" {
        // id=1, name="ab", price=1.5, ts=7, ok=true, as bare datums (union branch 1 each).
        let mut datum = vec![2, 2, 2, 4, b'a', b'b', 2];
        datum.extend_from_slice(&1.5f64.to_le_bytes());
        datum.extend_from_slice(&[2, 14, 2, 1]);
        out.push(datum);
        out.push(vec![0, 0, 0, 0, 0]);
    }
    out
}

fn format(name: &str) -> Format {
    match name {
        "json" => Format::Json,
        "csv" => Format::Csv {
            delimiter: b',',
            header: false,
        },
        _ => Format::Avro {
            schema: AVRO_SCHEMA.into(),
            framing: AvroFraming::None,
        },
    }
}

/// A payload: random bytes, or a seed with bytes flipped, cut or repeated.
fn payload(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..200);
    let mutated = (
        0..seeds.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<usize>(),
        0..3usize,
    )
        .prop_map(move |(i, flips, cut, repeat)| {
            let mut p = seeds[i].clone();
            for (at, b) in flips {
                if !p.is_empty() {
                    let n = p.len();
                    p[at % n] = b;
                }
            }
            if cut % 4 == 0 && !p.is_empty() {
                p.truncate(cut % p.len());
            }
            p.repeat(repeat + 1)
        });
    prop_oneof![random, mutated]
}

fn cases() -> u32 {
    std::env::var("EDDY_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

fn fuzz(name: &str) {
    // One decoder for every case, as a source keeps one: state must not leak between batches.
    let decoder = std::cell::RefCell::new(format(name).decoder(schema()).expect("decoder"));
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let batch = proptest::collection::vec(payload(seeds(name)), 1..20);
    runner
        .run(&batch, |payloads| {
            let records: Vec<Record> = payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| Record {
                    payload,
                    key: None,
                    partition: Some(0),
                    offset: i as i64,
                    timestamp_ms: None,
                    file: None,
                })
                .collect();
            let d = decoder.borrow_mut().decode(&records);
            let rows = d.batch.as_ref().map_or(0, |b| b.num_rows());
            prop_assert_eq!(rows, d.rows_from.len());
            prop_assert!(d.rows_from.windows(2).all(|w| w[0] < w[1]));
            let mut seen: Vec<usize> = d.rows_from.clone();
            seen.extend(d.rejected.iter().map(|r| r.index));
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..records.len()).collect::<Vec<_>>());
            prop_assert!(d.rejected.iter().all(|r| !r.error.is_empty()));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name} decoder: {e}"));
}

#[test]
fn fuzz_json_decoder() {
    fuzz("json");
}

#[test]
fn fuzz_csv_decoder() {
    fuzz("csv");
}

#[test]
fn fuzz_avro_decoder() {
    fuzz("avro");
}
