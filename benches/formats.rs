//! Micro-benchmarks of the two ends of the pipe: JSON records → Arrow (a Kafka or file source's
//! decode, with the data contract), and Arrow → Postgres wire rows (what `SELECT` on a large view
//! sends).
//!
//! Run: `cargo bench --bench formats` (criterion reports time per batch and records/s as
//! "elements").

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use datafusion::arrow::array::{Int64Array, StringViewArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use eddy::connectors::format::{Format, Record};
use pgwire::api::portal::Format as WireFormat;

/// A Nexmark bid as the Kafka loader writes it (event time in epoch milliseconds).
fn bid_json(i: u64) -> String {
    format!(
        r#"{{"auction":{},"bidder":{},"price":{},"channel":"channel-{}","url":"https://www.nexmark.com/item.htm?query=1&channel_id={}","date_time":{},"extra":"{}"}}"#,
        1000 + i % 1000,
        2000 + i % 5000,
        1 + (i * 7919) % 100_000,
        i % 4,
        i % 10_000,
        1_704_067_200_000 + i,
        "x".repeat((i % 40) as usize)
    )
}

fn bid_schema(time: TimeUnit) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8View, false),
        Field::new("url", DataType::Utf8View, false),
        Field::new("date_time", DataType::Timestamp(time, None), false),
        Field::new("extra", DataType::Utf8View, false),
    ]))
}

fn json_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_decode");
    for batch in [512usize, 4096] {
        let records: Vec<Record> = (0..batch as u64)
            .map(|i| Record {
                payload: bid_json(i).into_bytes(),
                ..Default::default()
            })
            .collect();
        let mut decoder = Format::Json
            .decoder(bid_schema(TimeUnit::Millisecond))
            .expect("decoder");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("bid", batch), &records, |b, records| {
            b.iter(|| decoder.decode(records).batch.map_or(0, |b| b.num_rows()))
        });
    }
    // One record in a hundred is bad (a text price): the slow path of a chunk that fails.
    let records: Vec<Record> = (0..4096u64)
        .map(|i| Record {
            payload: if i % 100 == 50 {
                bid_json(i).replace(r#""price":"#, r#""price":"n/a","p":"#)
            } else {
                bid_json(i)
            }
            .into_bytes(),
            ..Default::default()
        })
        .collect();
    let mut decoder = Format::Json
        .decoder(bid_schema(TimeUnit::Millisecond))
        .expect("decoder");
    assert_eq!(decoder.decode(&records).rejected.len(), 41);
    group.throughput(Throughput::Elements(4096));
    group.bench_with_input(
        BenchmarkId::new("bid_1pct_bad", 4096),
        &records,
        |b, records| b.iter(|| decoder.decode(records).batch.map_or(0, |b| b.num_rows())),
    );
    group.finish();
}

fn bid_batch(rows: u64) -> RecordBatch {
    let strings =
        |f: &dyn Fn(u64) -> String| Arc::new(StringViewArray::from_iter_values((0..rows).map(f)));
    RecordBatch::try_new(
        bid_schema(TimeUnit::Millisecond),
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| 1000 + (i % 1000) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| 2000 + (i % 5000) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i * 7919 % 100_000) as i64),
            )),
            strings(&|i| format!("channel-{}", i % 4)),
            strings(&|i| format!("https://www.nexmark.com/item.htm?channel_id={}", i % 10_000)),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..rows).map(|i| 1_704_067_200_000 + i as i64),
            )),
            strings(&|i| "x".repeat((i % 40) as usize)),
        ],
    )
    .expect("batch")
}

/// Encoding a 100,000-row result (bid rows) into DataRow messages, as `SELECT * FROM view` does.
fn pgwire_encode(c: &mut Criterion) {
    const ROWS: u64 = 100_000;
    let batches: Vec<RecordBatch> = (0..ROWS / 8192 + 1).map(|_| bid_batch(8192)).collect();
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut group = c.benchmark_group("pgwire_encode");
    group.throughput(Throughput::Elements(rows));
    group.sample_size(20);
    for (name, format) in [
        ("text", WireFormat::UnifiedText),
        ("binary", WireFormat::UnifiedBinary),
    ] {
        let fields = Arc::new(
            arrow_schema_to_pg_fields(&bid_schema(TimeUnit::Millisecond), &format, None)
                .expect("fields"),
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                for batch in &batches {
                    for row in encode_recordbatch(fields.clone(), batch.clone()) {
                        bytes += row.expect("row").data.len();
                    }
                }
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, json_decode, pgwire_encode);
criterion_main!(benches);
