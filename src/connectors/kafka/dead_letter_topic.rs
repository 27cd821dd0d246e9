//! `'dead_letter.topic'`: rejected records also produced to a Kafka topic, in
//! the Kafka Connect style — the record's own key and bytes, with the reason
//! and origin in headers (`eddy.source`, `eddy.error`, `eddy.partition`,
//! `eddy.offset`) — so they can be inspected or replayed with any client.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::connectors::dead_letter::DeadLetter;

/// How long a full local queue is drained before a dead letter is given up on (and logged).
const ENQUEUE_WAIT: Duration = Duration::from_secs(5);

/// A producer of dead letters. Used from a connector's reader thread.
pub struct DeadLetterTopic {
    producer: BaseProducer,
    topic: String,
}

impl DeadLetterTopic {
    /// A producer writing to `topic` on `bootstrap`.
    pub fn new(bootstrap: &str, topic: String) -> Result<Self, String> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create()
            .map_err(|e| format!("cannot create the dead-letter producer: {e}"))?;
        Ok(DeadLetterTopic { producer, topic })
    }

    /// Enqueue `letter` (blocking briefly while the local queue is full).
    pub fn send(&self, letter: &DeadLetter) {
        let partition = letter.partition.map(|p| p.to_string());
        let offset = letter.offset.map(|o| o.to_string());
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "eddy.source",
                value: Some(letter.source.as_bytes()),
            })
            .insert(Header {
                key: "eddy.error",
                value: Some(letter.error.as_bytes()),
            });
        if let Some(p) = &partition {
            headers = headers.insert(Header {
                key: "eddy.partition",
                value: Some(p.as_bytes()),
            });
        }
        if let Some(o) = &offset {
            headers = headers.insert(Header {
                key: "eddy.offset",
                value: Some(o.as_bytes()),
            });
        }
        let mut rec = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .payload(letter.payload.as_slice())
            .headers(headers);
        if let Some(k) = &letter.key {
            rec = rec.key(k.as_slice());
        }
        let deadline = std::time::Instant::now() + ENQUEUE_WAIT;
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    if std::time::Instant::now() >= deadline {
                        tracing::warn!(topic = %self.topic, error = %e, "dead letter not produced");
                        break;
                    }
                    rec = r;
                    self.producer.poll(Duration::from_millis(50));
                }
            }
        }
        self.producer.poll(Duration::ZERO);
    }
}

impl Drop for DeadLetterTopic {
    fn drop(&mut self) {
        if let Err(e) = self.producer.flush(Duration::from_secs(5)) {
            tracing::warn!(topic = %self.topic, error = %e, "dead letters not all delivered");
        }
    }
}
