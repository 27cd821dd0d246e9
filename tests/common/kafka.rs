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
