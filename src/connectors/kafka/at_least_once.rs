//! The at-least-once Kafka sink's run loop: a stuck broker affects only the
//! sink.
//!
//! The sink keeps reading its view's changes while the broker is slow or
//! down, holding what is not acknowledged yet in a bounded buffer
//! ([`SinkRun::buffer_max_bytes`]) and producing it again, in order, with
//! backoff (status `retrying`). When the buffer is full and the broker still
//! does not acknowledge, the sink lets go of its view (status `stalled`, with
//! the reason) so the view, its sources, `INSERT`s, checkpoints and DDL go
//! on. It keeps retrying what it holds; once the broker has taken all of it,
//! the sink takes the view again, starting from the view's current rows, as
//! after a restart: at least once, so rows may be written twice, and a
//! changelog consumer sees the rows as they are then (a row deleted while the
//! sink was stalled gets no delete event).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::avro_sink::ensure_registered;
use super::context::with_client_error;
use super::encoding::{OutMessage, SinkEncoder};
use super::sink::FutureProducer;
use super::sink::{KafkaSinkOptions, SinkObject};
use super::sink::{RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};
use crate::error::Result;
use crate::types::Message;

/// Messages produced and not yet acknowledged, at most.
const IN_FLIGHT_MAX: usize = 10_000;

/// Subscribes a channel to the sink's input again and returns the messages
/// that bring it up to date (the view's current rows).
pub type Resubscribe =
    Arc<dyn Fn(mpsc::Sender<Message>) -> BoxFuture<'static, Result<Vec<Message>>> + Send + Sync>;

/// Everything the at-least-once sink runs with.
pub struct SinkRun {
    /// The sink (name, mode, metrics).
    pub sink: Arc<SinkObject>,
    /// Kafka settings.
    pub opts: KafkaSinkOptions,
    /// Encodes the view's changes as messages.
    pub encoder: SinkEncoder,
    /// The view's rows when the sink was created.
    pub snapshot: Vec<Message>,
    /// The view's changes after the snapshot.
    pub rx: mpsc::Receiver<Message>,
    /// How to take the view again after a stall.
    pub resubscribe: Resubscribe,
    /// Bytes of unacknowledged messages the sink may hold.
    pub buffer_max_bytes: usize,
    /// Capacity of the channel from the view.
    pub channel_capacity: usize,
}

/// Messages not yet acknowledged, oldest first; the first `sent` of them are
/// produced, their acknowledgements pending in `inflight`, in order.
#[derive(Default)]
struct Buffer {
    messages: VecDeque<OutMessage>,
    bytes: usize,
    sent: usize,
    inflight: VecDeque<DeliveryFuture>,
}

impl Buffer {
    fn push_all(&mut self, msgs: Vec<OutMessage>) {
        for m in msgs {
            self.bytes += message_bytes(&m);
            self.messages.push_back(m);
        }
    }

    /// The oldest message was acknowledged.
    fn acknowledged(&mut self) {
        if let Some(m) = self.messages.pop_front() {
            self.bytes -= message_bytes(&m);
        }
        self.sent = self.sent.saturating_sub(1);
    }

    /// Forget what is in flight: it is all produced again.
    fn rewind(&mut self) {
        self.inflight.clear();
        self.sent = 0;
    }
}

fn message_bytes(m: &OutMessage) -> usize {
    m.len() + 64
}

/// Write the view's changes to Kafka until the sink is dropped (see the
/// module docs for what happens while the broker is unreachable).
pub async fn run_kafka_sink(run: SinkRun) {
    let sink = run.sink.clone();
    set_status(&sink, "running", None);
    if let Err(e) = run_loop(run).await {
        tracing::warn!(sink = %sink.name, error = %e, "sink failed");
        set_status(&sink, "failed", Some(e.to_string()));
    }
}

async fn run_loop(run: SinkRun) -> Result<()> {
    let SinkRun {
        sink,
        opts,
        mut encoder,
        snapshot,
        rx,
        resubscribe,
        buffer_max_bytes,
        channel_capacity,
    } = run;
    if let Some(schemas) = encoder.avro_schemas() {
        ensure_registered(&sink, &schemas).await?;
        set_status(&sink, "running", None);
    }
    let producer = opts.producer()?;
    let mut rx = Some(rx);
    let mut buf = Buffer::default();
    for m in snapshot {
        if let Message::Data(c) = m {
            buf.push_all(encoder.encode(&c)?);
        }
    }
    let mut retry = Retry::default();
    loop {
        if retry.at.is_some_and(|t| Instant::now() >= t) {
            retry.at = None;
        }
        if retry.at.is_none() {
            if let Err(e) = produce(&producer, &opts.topic, &mut buf) {
                retry.failed(&sink, rx.is_some(), with_client_error(e, &opts.reports));
            }
        }
        let full = buf.bytes >= buffer_max_bytes;
        if let (true, Some(why), Some(_)) = (full, &retry.failing, &rx) {
            // Let go of the view: it must not wait for a broker that is away.
            rx = None;
            let reason = format!(
                "{why}; buffer full ({} messages, {} bytes): no longer reading the view, \
                 which goes on without this sink; it resumes from the view's current rows once \
                 the broker takes what is buffered",
                buf.messages.len(),
                buf.bytes
            );
            tracing::warn!(sink = %sink.name, reason = %reason, "sink stalled");
            set_status(&sink, "stalled", Some(reason));
        }
        if rx.is_none() && buf.messages.is_empty() {
            let (tx, new_rx) = mpsc::channel(channel_capacity);
            for m in resubscribe(tx).await? {
                if let Message::Data(c) = m {
                    buf.push_all(encoder.encode(&c)?);
                }
            }
            rx = Some(new_rx);
            tracing::info!(sink = %sink.name, "sink resumed from the view's current rows");
            set_status(&sink, "running", None);
            continue;
        }
        let reading = !full && rx.is_some();
        tokio::select! {
            msg = recv(&mut rx), if reading => match msg {
                Some(Message::Data(c)) => buf.push_all(encoder.encode(&c)?),
                Some(_) => {}
                // The view is gone (the sink is being dropped with it).
                None => return Ok(()),
            },
            ack = front(&mut buf.inflight, &opts.topic), if !buf.inflight.is_empty() => match ack {
                Ok(()) => {
                    buf.inflight.pop_front();
                    buf.acknowledged();
                    sink.metrics.messages_written.fetch_add(1, Ordering::Relaxed);
                    retry.backoff = RETRY_BACKOFF_MIN;
                    if retry.failing.take().is_some() && rx.is_some() {
                        set_status(&sink, "running", None);
                    }
                }
                Err(e) => {
                    buf.rewind();
                    retry.failed(&sink, rx.is_some(), with_client_error(e, &opts.reports));
                }
            },
            () = sleep_until(retry.at), if retry.at.is_some() => {}
        }
    }
}

/// Backoff after failed deliveries.
struct Retry {
    /// The last failure, until a delivery succeeds.
    failing: Option<String>,
    /// When to produce again (set while backing off).
    at: Option<Instant>,
    /// The next wait.
    backoff: std::time::Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            failing: None,
            at: None,
            backoff: RETRY_BACKOFF_MIN,
        }
    }
}

impl Retry {
    /// A delivery failed: show it (while the sink still reads its view) and back off.
    fn failed(&mut self, sink: &SinkObject, attached: bool, e: String) {
        tracing::warn!(sink = %sink.name, error = %e, "sink retrying");
        if attached {
            set_status(sink, "retrying", Some(e.clone()));
        }
        self.failing = Some(e);
        self.at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

/// Produce the buffered messages not yet sent, up to [`IN_FLIGHT_MAX`] in
/// flight. A full local queue just waits for acknowledgements.
fn produce(
    producer: &FutureProducer,
    topic: &str,
    buf: &mut Buffer,
) -> std::result::Result<(), String> {
    while buf.sent < buf.messages.len() && buf.inflight.len() < IN_FLIGHT_MAX {
        let m = &buf.messages[buf.sent];
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(v) = &m.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(k) = &m.key {
            rec = rec.key(k.as_slice());
        }
        match producer.send_result(rec) {
            Ok(f) => {
                buf.inflight.push_back(f);
                buf.sent += 1;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
            Err((e, _)) => return Err(format!("cannot produce to '{topic}': {e}")),
        }
    }
    Ok(())
}

async fn recv(rx: &mut Option<mpsc::Receiver<Message>>) -> Option<Message> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The outcome of the oldest delivery in flight.
async fn front(
    inflight: &mut VecDeque<DeliveryFuture>,
    topic: &str,
) -> std::result::Result<(), String> {
    let Some(f) = inflight.front_mut() else {
        return std::future::pending().await;
    };
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(format!("delivery to '{topic}' failed: {e}")),
        Err(_) => Err(format!("delivery to '{topic}' was cancelled")),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn set_status(sink: &SinkObject, status: &str, error: Option<String>) {
    *sink.metrics.status.lock() = status.into();
    if error.is_some() || status == "running" {
        *sink.metrics.last_error.lock() = error;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_counts_bytes_and_rewinds() {
        let mut b = Buffer::default();
        b.push_all(vec![
            OutMessage {
                key: None,
                value: Some(b"abcd".to_vec()),
            },
            OutMessage {
                key: Some(b"k".to_vec()),
                value: Some(b"ef".to_vec()),
            },
        ]);
        assert_eq!(b.bytes, 4 + 64 + 2 + 1 + 64);
        b.sent = 2;
        b.acknowledged();
        assert_eq!((b.messages.len(), b.sent, b.bytes), (1, 1, 67));
        b.rewind();
        assert_eq!(b.sent, 0);
        b.acknowledged();
        assert_eq!((b.messages.len(), b.bytes), (0, 0));
    }
}
