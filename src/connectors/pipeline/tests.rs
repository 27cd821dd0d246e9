//! The pipeline against one thread: same rows, same rejections, same order.

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;

use super::*;
use crate::connectors::contract::Contract;
use crate::connectors::dead_letter::DeadLetterStore;
use crate::connectors::format::Format;
use crate::connectors::ingest::{IngestSpec, OnError};
use crate::connectors::stream::StreamObject;

fn ingest(on_error: OnError, letters: &Arc<DeadLetterStore>) -> Ingest {
    let stream = Arc::new(StreamObject::test_source());
    let spec = IngestSpec {
        format: Format::Json,
        includes: Vec::new(),
        contract: Contract::default(),
        on_error,
    };
    Ingest::new(stream, spec, letters.clone()).unwrap()
}

/// Chunk `c` holds records `c*10 .. c*10+10`; every seventh record is bad.
fn chunk(c: i64) -> Vec<Record> {
    (c * 10..c * 10 + 10)
        .map(|i| Record {
            payload: if i % 7 == 3 {
                format!("{{\"v\": \"bad {i}\"}}").into_bytes()
            } else {
                format!("{{\"v\": {i}}}").into_bytes()
            },
            offset: i,
            ..Default::default()
        })
        .collect()
}

/// Submit 40 chunks through `threads` threads, taking results as a reader
/// does; the values of the rows and the offsets of the dead letters.
fn run(threads: usize) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let letters = Arc::new(DeadLetterStore::new(1000, 1 << 20));
    let mut p: Pipeline<i64> =
        Pipeline::new(ingest(OnError::DeadLetter, &letters), threads, "s").unwrap();
    let (mut tags, mut values) = (Vec::new(), Vec::new());
    let mut take = |d: Done<i64>| {
        assert!(d.processed.failure.is_none());
        tags.push(d.tag);
        if let Some((b, _)) = d.processed.rows {
            values.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
        }
    };
    for c in 0..40 {
        while !p.has_room() {
            take(p.next(true).unwrap());
        }
        p.submit(chunk(c), c);
        while let Some(d) = p.next(false) {
            take(d);
        }
    }
    while let Some(d) = p.next(true) {
        take(d);
    }
    let batch = &letters.snapshot().unwrap()[0];
    let offsets = batch
        .column_by_name("offset")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    (tags, values, offsets)
}

#[test]
fn chunks_come_back_in_order_with_rejections_routed_in_order() {
    let one = run(1);
    assert_eq!(one.0, (0..40).collect::<Vec<_>>());
    assert_eq!(one.1.len(), 400 - one.2.len());
    assert_eq!(one.2, (0..400).filter(|i| i % 7 == 3).collect::<Vec<_>>());
    for threads in [2, 3] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}

#[test]
fn fail_stops_at_the_first_bad_record_of_the_first_bad_chunk() {
    let letters = Arc::new(DeadLetterStore::new(10, 1 << 20));
    let mut p: Pipeline<i64> = Pipeline::new(ingest(OnError::Fail, &letters), 2, "s").unwrap();
    // Chunk 0's record 3 is the first bad one; chunk 1 has a bad one too.
    p.submit(chunk(0), 0);
    p.submit(chunk(1), 1);
    let d = p.next(true).unwrap();
    assert_eq!(d.tag, 0);
    let (rows, _) = d.processed.rows.unwrap();
    assert_eq!(rows.num_rows(), 3);
    let e = d.processed.failure.unwrap().to_string();
    assert!(e.contains("offset 3 rejected"), "{e}");
    // Dropping the pipeline with a chunk in flight joins its workers.
    drop(p);
    assert!(letters.is_empty());
}
