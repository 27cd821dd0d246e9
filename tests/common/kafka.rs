//! Producing test records to a Kafka-protocol broker.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// An idempotent producer for `bootstrap`.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("create producer")
}

/// Produce `(partition, key, payload, timestamp_ms)` records and wait until all are acknowledged.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    records: impl IntoIterator<Item = (i32, Option<String>, String, Option<i64>)>,
) {
    let futures: Vec<_> = records
        .into_iter()
        .map(|(partition, key, payload, ts)| {
            let mut r = FutureRecord::to(topic)
                .partition(partition)
                .payload(payload.as_bytes());
            if let Some(k) = &key {
                r = r.key(k.as_bytes());
            }
            if let Some(ts) = ts {
                r = r.timestamp(ts);
            }
            p.send_result(r)
                .map_err(|(e, _)| e)
                .expect("enqueue record")
        })
        .collect();
    for f in futures {
        f.await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("record delivered");
    }
    p.flush(Timeout::After(Duration::from_secs(10)))
        .expect("flush producer");
}

/// One record read back: partition, offset, key, payload.
pub type ReadRecord = (i32, i64, Option<String>, String);

/// Every record of partitions `0..partitions` of `topic`, up to each
/// partition's high watermark, in offset order per partition. The mock
/// cluster keeps aborted transactions visible, so this is what a
/// `read_uncommitted` reader would see.
#[allow(dead_code)]
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<ReadRecord> {
    let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    read_all_bytes(bootstrap, topic, partitions)
        .into_iter()
        // A tombstone (null value) reads as "".
        .map(|(p, o, k, v)| (p, o, text(k), text(v).unwrap_or_default()))
        .collect()
}

/// One record read back as bytes: partition, offset, key, value (`None`: a tombstone).
pub type ReadBytes = (i32, i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// [`read_all`], keys and values as bytes.
#[allow(dead_code)]
pub fn read_all_bytes(bootstrap: &str, topic: &str, partitions: i32) -> Vec<ReadBytes> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "eddy-test-read-all")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create consumer");
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0;
    for p in 0..partitions {
        let (_, high) = watermarks(&consumer, topic, p);
        remaining += high;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remaining > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} records of '{topic}', {remaining} missing",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                ));
                remaining -= 1;
            }
            Some(Err(e)) => panic!("reading '{topic}': {e}"),
            None => {}
        }
    }
    out.sort_by_key(|r| (r.0, r.1));
    out
}

/// `(low, high)` watermarks of one partition.
#[allow(dead_code)]
pub fn watermarks(
    consumer: &impl rdkafka::consumer::Consumer,
    topic: &str,
    partition: i32,
) -> (i64, i64) {
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
}

/// Payment record `n` of a topic with `partitions` partitions: partition
/// `n % partitions`, event time 10 ms apart with up to 300 ms of disorder
/// (less than a one-second watermark delay: no row is late however records
/// are batched, so a view's result does not depend on batching).
#[allow(dead_code)]
pub fn payment(n: usize, partitions: i32) -> (i32, String) {
    let ts = 1_767_225_600_000_i64 + n as i64 * 10 - ((n * 7) % 4) as i64 * 100;
    let payload = format!(
        r#"{{"account": "u{}", "amount": {}, "ts": {ts}}}"#,
        (n * 13) % 17,
        (n * 31) % 101
    );
    ((n % partitions as usize) as i32, payload)
}

/// Produce payment records `range` (see [`payment`]).
#[allow(dead_code)]
pub async fn produce_payments(
    p: &FutureProducer,
    topic: &str,
    range: std::ops::Range<usize>,
    partitions: i32,
) {
    let records = range.map(|n| {
        let (partition, payload) = payment(n, partitions);
        (partition, None, payload, None)
    });
    produce(p, topic, records).await;
}

/// Avro's zig-zag varint encoding of an int or long, appended to `out`.
#[allow(dead_code)]
pub fn avro_long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
