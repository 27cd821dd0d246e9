//! The exactly-once Kafka sink: two-phase commit with the checkpoint as
//! coordinator.
//!
//! 1. Between barriers the sink produces into an open Kafka transaction
//!    (one transactional producer per sink) and keeps every message it has
//!    not committed yet (at most [`UNCOMMITTED_MAX_BYTES`]).
//! 2. **Pre-commit** at `Barrier(e)`: wait until the broker has acknowledged
//!    every message of the transaction, then hand the checkpoint the
//!    uncommitted messages and where the first of them landed. Until
//!    checkpoint `e` is decided the sink reads on but produces nothing.
//! 3. **Commit** once checkpoint `e`'s manifest is durable. When `e` fails
//!    the transaction stays open and commits with a later checkpoint.
//!
//! Any failure (broker outage, a commit whose outcome is unknown, a crash)
//! is handled the same way: a new producer session, whose
//! `init_transactions` aborts what the previous one left open, then a
//! `read_committed` look at the topic decides whether the pre-committed
//! transaction had committed (its first message is visible at the recorded
//! offset); what is not committed is produced again in a new transaction.
//! After a restart the sink starts from the checkpoint's uncommitted
//! messages the same way. `read_committed` consumers see every message once.
//!
//! Barriers are answered in every state (also while the broker is down), so
//! a struggling sink never holds up checkpoints of the rest of the server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, BinaryArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};

use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::avro_sink::ensure_registered;
use super::context::with_client_error;
use super::encoding::{OutMessage, SinkEncoder};
use super::sink::FutureProducer;
use super::sink::{KafkaSinkOptions, SinkObject, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};
use crate::error::{EddyError, Result};
use crate::state::{Decided, Epoch, SinkSnapshot};
use crate::types::Message;

/// Output a sink may hold uncommitted; beyond it the sink fails, saying why.
const UNCOMMITTED_MAX_BYTES: usize = 256 << 20;
/// Messages awaiting acknowledgement before the sink waits for some.
const IN_FLIGHT_MAX: usize = 10_000;
/// Longest a pre-commit waits for acknowledgements. After it the checkpoint
/// records the transaction as undelivered; it commits with a later one.
const PRECOMMIT_WAIT: Duration = Duration::from_secs(10);
/// Timeout of `init_transactions` and `commit_transaction`.
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the commit check looks for a transaction's first message.
const COMMIT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Rows per batch of uncommitted messages in a checkpoint.
const SNAPSHOT_BATCH_ROWS: usize = 65_536;

/// A transaction whose outcome is not known yet: its first message's
/// (partition, offset) and how many of the oldest uncommitted messages it holds.
type InDoubt = ((i32, i64), usize);

/// Write the view's changes to Kafka exactly once until the sink is dropped.
/// `snapshot` (the view's rows, for a new sink) or `restored` (the
/// checkpointed uncommitted output, after a restart) comes first.
pub async fn run_exactly_once_sink(
    sink: Arc<SinkObject>,
    opts: KafkaSinkOptions,
    mut encoder: SinkEncoder,
    snapshot: Vec<Message>,
    restored: Option<SinkSnapshot>,
    hub: Arc<crate::state::CheckpointHub>,
    rx: mpsc::Receiver<Message>,
) {
    *sink.metrics.status.lock() = "starting".into();
    let transactional_id = opts.transactional_id(&format!("eddy-{}", sink.name));
    let mut t = TxnSink {
        sink: sink.clone(),
        opts,
        transactional_id,
        producer: None,
        uncommitted: VecDeque::new(),
        bytes: 0,
        sent: 0,
        inflight: VecDeque::new(),
        first: None,
        open: false,
        in_doubt: None,
        committed_end: BTreeMap::new(),
        txn_end: BTreeMap::new(),
        backoff: RETRY_BACKOFF_MIN,
        retry_at: Instant::now(),
    };
    let result = async {
        if let Some(schemas) = encoder.avro_schemas() {
            ensure_registered(&sink, &schemas).await?;
            *sink.metrics.status.lock() = "starting".into();
            *sink.metrics.last_error.lock() = None;
        }
        if let Some(r) = restored {
            for m in messages_from(&r.pending)? {
                t.push(m)?;
            }
            t.in_doubt = r.delivered_at.map(|at| (at, r.in_transaction as usize));
            t.committed_end = r.end_offsets.into_iter().collect();
        } else {
            for msg in snapshot {
                if let Message::Data(changes) = msg {
                    for m in encoder.encode(&changes)? {
                        t.push(m)?;
                    }
                }
            }
        }
        t.run(rx, hub.decisions(), &hub, &mut encoder).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(sink = %sink.name, error = %e, "sink failed");
        *sink.metrics.status.lock() = "failed".into();
        *sink.metrics.last_error.lock() = Some(e.to_string());
    }
}

struct TxnSink {
    sink: Arc<SinkObject>,
    opts: KafkaSinkOptions,
    transactional_id: String,
    /// The producer session; `None` until (re)established.
    producer: Option<FutureProducer>,
    /// Output not yet committed, oldest first.
    uncommitted: VecDeque<OutMessage>,
    /// Bytes of `uncommitted`.
    bytes: usize,
    /// How many of `uncommitted` went out in the open transaction.
    sent: usize,
    /// Acknowledgements not yet seen, of the newest sent messages, in order.
    inflight: VecDeque<DeliveryFuture>,
    /// Where the open transaction's first message landed.
    first: Option<(i32, i64)>,
    /// A transaction is open.
    open: bool,
    /// A transaction that may or may not have committed; settled by the
    /// commit check when the next session starts.
    in_doubt: Option<InDoubt>,
    /// Per partition, the offset after the last committed message.
    committed_end: BTreeMap<i32, i64>,
    /// Per partition, the offset after the open transaction's last acknowledged message.
    txn_end: BTreeMap<i32, i64>,
    backoff: Duration,
    /// When to try the next producer session.
    retry_at: Instant,
}

impl TxnSink {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Message>,
        mut decisions: watch::Receiver<Decided>,
        hub: &crate::state::CheckpointHub,
        encoder: &mut SinkEncoder,
    ) -> Result<()> {
        // The epoch pre-committed at the last barrier, and how many messages it holds.
        let mut awaiting: Option<(Epoch, usize)> = None;
        loop {
            if awaiting.is_none() && self.producer.is_some() {
                self.send_unsent().await;
            }
            tokio::select! {
                biased;
                changed = decisions.changed(), if awaiting.is_some() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let d = *decisions.borrow_and_update();
                    if let Some((epoch, n)) = awaiting.filter(|(e, _)| d.last_decided >= *e) {
                        awaiting = None;
                        if d.last_completed >= epoch {
                            self.commit(epoch, n).await;
                        }
                    }
                }
                () = tokio::time::sleep_until(self.retry_at), if self.producer.is_none() => {
                    self.start_session().await?;
                }
                msg = rx.recv() => match msg {
                    None => return Ok(()),
                    Some(Message::Data(changes)) => {
                        for m in encoder.encode(&changes)? {
                            self.push(m)?;
                        }
                    }
                    Some(Message::Barrier(epoch)) => {
                        if let Some((e, n)) = awaiting.take() {
                            // A checkpoint is decided before the next one starts, so
                            // this is only a late look at the decision.
                            let d = *decisions.borrow_and_update();
                            if d.last_completed >= e {
                                self.commit(e, n).await;
                            } else if d.last_decided < e {
                                // Never committed: abort it and produce it again.
                                self.fail_session(format!("checkpoint {e} undecided at barrier {epoch}"));
                            }
                        }
                        awaiting = self.precommit(epoch, hub).await;
                    }
                    Some(_) => {}
                },
            }
        }
    }

    /// Keep `m` until it is committed.
    fn push(&mut self, m: OutMessage) -> Result<()> {
        self.bytes += message_bytes(&m);
        self.uncommitted.push_back(m);
        if self.bytes > UNCOMMITTED_MAX_BYTES {
            return Err(EddyError::Connector(format!(
                "the sink holds more than {} MiB of output not yet committed; \
                 checkpoints are not completing often enough (see eddy.checkpoints)",
                UNCOMMITTED_MAX_BYTES >> 20
            )));
        }
        Ok(())
    }

    /// Mark the sink as retrying because of `error`; the next session
    /// starts after a backoff and aborts the open transaction.
    fn fail_session(&mut self, error: String) {
        let error = with_client_error(error, &self.opts.reports);
        tracing::warn!(sink = %self.sink.name, error = %error, "sink retrying");
        *self.sink.metrics.status.lock() = "retrying".into();
        *self.sink.metrics.last_error.lock() = Some(error);
        self.producer = None;
        self.inflight.clear();
        self.sent = 0;
        self.first = None;
        self.txn_end.clear();
        self.open = false;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_BACKOFF_MAX);
    }

    /// Create a producer and fence the previous session (aborting its open
    /// transaction), then settle a transaction in doubt. Errors only for
    /// what retrying cannot fix.
    async fn start_session(&mut self) -> Result<()> {
        let producer = self.opts.transactional_producer(&self.transactional_id)?;
        let p = producer.clone();
        let init = tokio::task::spawn_blocking(move || p.init_transactions(TXN_CALL_TIMEOUT))
            .await
            .map_err(|e| EddyError::Internal(format!("sink session: {e}")))?;
        if let Err(e) = init {
            let hint = if unsupported(&e) {
                " (exactly-once sinks need a broker with Kafka transactions; \
                 use delivery = 'at_least_once' otherwise)"
            } else {
                ""
            };
            self.fail_session(format!(
                "cannot start a transactional session as '{}': {e}{hint}",
                self.transactional_id
            ));
            return Ok(());
        }
        if let Some((at, n)) = self.in_doubt {
            match is_committed(&self.opts, at).await {
                Ok(true) => self.drop_committed(n),
                Ok(false) => {}
                Err(e) => {
                    self.fail_session(format!(
                        "cannot tell whether the transaction at partition {} offset {} committed: {e}",
                        at.0, at.1
                    ));
                    return Ok(());
                }
            }
            self.in_doubt = None;
        }
        self.producer = Some(producer);
        self.backoff = RETRY_BACKOFF_MIN;
        *self.sink.metrics.status.lock() = "running".into();
        *self.sink.metrics.last_error.lock() = self.sink.metrics.recovery_note.lock().clone();
        Ok(())
    }

    /// The oldest `n` uncommitted messages are committed: forget them.
    fn drop_committed(&mut self, n: usize) {
        for m in self.uncommitted.drain(..n.min(self.uncommitted.len())) {
            self.bytes -= message_bytes(&m);
        }
    }

    /// Produce what has not gone out yet into the open transaction.
    async fn send_unsent(&mut self) {
        while self.sent < self.uncommitted.len() {
            let Some(producer) = self.producer.clone() else {
                return;
            };
            if !self.open {
                if let Err(e) = producer.begin_transaction() {
                    self.fail_session(format!("cannot begin a transaction: {e}"));
                    return;
                }
                self.open = true;
            }
            let m = &self.uncommitted[self.sent];
            let mut rec = FutureRecord::<[u8], [u8]>::to(&self.opts.topic);
            if let Some(v) = &m.value {
                rec = rec.payload(v.as_slice());
            }
            if let Some(k) = &m.key {
                rec = rec.key(k.as_slice());
            }
            match producer.send_result(rec) {
                Ok(f) => {
                    self.inflight.push_back(f);
                    self.sent += 1;
                }
                Err((e, _)) => {
                    let topic = &self.opts.topic;
                    self.fail_session(format!("cannot produce to '{topic}': {e}"));
                    return;
                }
            }
            if self.inflight.len() >= IN_FLIGHT_MAX {
                if let Err(e) = self.await_acks(IN_FLIGHT_MAX / 2).await {
                    self.fail_session(e);
                    return;
                }
            }
        }
    }

    /// Wait until at most `keep` acknowledgements are outstanding. A future
    /// stays queued until it resolves, so a caller may time this out.
    async fn await_acks(&mut self, keep: usize) -> std::result::Result<(), String> {
        while self.inflight.len() > keep {
            let Some(fut) = self.inflight.front_mut() else {
                break;
            };
            let result = fut.await;
            self.inflight.pop_front();
            let topic = &self.opts.topic;
            match result {
                Ok(Ok(d)) => {
                    self.first.get_or_insert((d.partition, d.offset));
                    let end = self.txn_end.entry(d.partition).or_default();
                    *end = (*end).max(d.offset + 1);
                    self.sink
                        .metrics
                        .messages_written
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err((e, _))) => return Err(format!("delivery to '{topic}' failed: {e}")),
                Err(_) => return Err(format!("delivery to '{topic}' was cancelled")),
            }
        }
        Ok(())
    }

    /// Hand the checkpoint this sink's state for `epoch`. Returns the epoch
    /// and message count to commit once the checkpoint is decided, when the
    /// open transaction was fully delivered.
    async fn precommit(
        &mut self,
        epoch: Epoch,
        hub: &crate::state::CheckpointHub,
    ) -> Option<(Epoch, usize)> {
        let mut delivered = false;
        if self.producer.is_some() && self.in_doubt.is_none() {
            match tokio::time::timeout(PRECOMMIT_WAIT, self.await_acks(0)).await {
                Ok(Ok(())) => delivered = self.sent == self.uncommitted.len(),
                Ok(Err(e)) => self.fail_session(e),
                Err(_) => tracing::info!(sink = %self.sink.name, epoch,
                    "transaction not acknowledged in time; it commits with a later checkpoint"),
            }
        }
        let committable = match (delivered, self.first) {
            (true, Some(at)) if self.sent > 0 => Some((at, self.sent)),
            _ => None,
        };
        // What a restart would have to settle: the committable transaction,
        // else one still in doubt from an earlier failure.
        let (delivered_at, in_transaction) = committable
            .or(self.in_doubt)
            .map_or((None, 0), |(at, n)| (Some(at), n as u64));
        let mut end_offsets = self.committed_end.clone();
        if committable.is_some() {
            for (p, o) in &self.txn_end {
                let end = end_offsets.entry(*p).or_default();
                *end = (*end).max(*o);
            }
        }
        let pending = match batches_of(&self.uncommitted) {
            Ok(b) => b,
            Err(e) => {
                // Leave the checkpoint without this sink's state: it fails and is retried.
                tracing::warn!(sink = %self.sink.name, error = %e, "cannot capture sink state");
                return None;
            }
        };
        hub.deposit_sink(
            epoch,
            &self.sink.name,
            SinkSnapshot {
                delivered_at,
                in_transaction,
                end_offsets: end_offsets.into_iter().collect(),
                pending,
            },
        );
        if committable.is_none() && self.uncommitted.is_empty() {
            self.sink
                .metrics
                .committed_epoch
                .store(epoch, Ordering::Relaxed);
        }
        committable.map(|(_, n)| (epoch, n))
    }

    /// Checkpoint `epoch` is durable: commit its `n` messages.
    async fn commit(&mut self, epoch: Epoch, n: usize) {
        let Some(producer) = self.producer.clone() else {
            return;
        };
        let done =
            tokio::task::spawn_blocking(move || producer.commit_transaction(TXN_CALL_TIMEOUT))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        match done {
            Ok(()) => {
                self.drop_committed(n);
                self.sent = 0;
                self.first = None;
                for (p, o) in std::mem::take(&mut self.txn_end) {
                    let end = self.committed_end.entry(p).or_default();
                    *end = (*end).max(o);
                }
                self.open = false;
                self.sink
                    .metrics
                    .committed_epoch
                    .store(epoch, Ordering::Relaxed);
            }
            Err(e) => {
                // The outcome is unknown: the next session settles it.
                self.in_doubt = self.first.map(|at| (at, n));
                self.fail_session(format!("commit of checkpoint {epoch} failed: {e}"));
            }
        }
    }
}

fn message_bytes(m: &OutMessage) -> usize {
    m.len()
}

/// Whether `e` says the broker cannot do transactions at all.
fn unsupported(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::UnsupportedFeature | C::UnsupportedVersion | C::InvalidTransactionTimeout)
    )
}

/// Whether the transaction whose first message landed at `at` committed:
/// a `read_committed` read finds that very message at that offset.
async fn is_committed(opts: &KafkaSinkOptions, at: (i32, i64)) -> Result<bool> {
    let opts = opts.clone();
    tokio::task::spawn_blocking(move || check_committed(&opts, at))
        .await
        .map_err(|e| EddyError::Internal(format!("commit check: {e}")))?
}

fn check_committed(opts: &KafkaSinkOptions, (partition, offset): (i32, i64)) -> Result<bool> {
    let kafka = |e: KafkaError| EddyError::Connector(e.to_string());
    let mut cfg = ClientConfig::new();
    for (k, v) in &opts.properties {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", &opts.bootstrap)
        .set("group.id", "eddy-commit-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .remove("transactional.id")
        .remove("transaction.timeout.ms");
    let consumer: BaseConsumer = cfg.create().map_err(kafka)?;
    let deadline = std::time::Instant::now() + COMMIT_CHECK_TIMEOUT;
    // With read_committed the high watermark is the last stable offset:
    // wait until the transaction is decided (another producer's open
    // transaction can hold it back).
    loop {
        let (low, stable) = consumer
            .fetch_watermarks(&opts.topic, partition, Duration::from_secs(10))
            .map_err(kafka)?;
        if low > offset {
            tracing::warn!(
                partition,
                offset,
                "the pre-committed output is gone from the topic \
                (retention); assuming it was committed"
            );
            return Ok(true);
        }
        if stable > offset {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(EddyError::Connector(format!(
                "partition {partition} stays unstable below offset {offset}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&opts.topic, partition, Offset::Offset(offset))
        .map_err(kafka)?;
    consumer.assign(&tpl).map_err(kafka)?;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => return Ok(m.offset() == offset),
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(false),
            Some(Err(e)) => return Err(kafka(e)),
            None => {}
        }
    }
    Err(EddyError::Connector(format!(
        "nothing read from partition {partition} at offset {offset}"
    )))
}

fn message_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, true),
        Field::new("value", DataType::Binary, true),
    ]))
}

/// Messages as Arrow batches (columns `key`, `value`) for a checkpoint.
fn batches_of(msgs: &VecDeque<OutMessage>) -> Result<Vec<RecordBatch>> {
    let (a, b) = msgs.as_slices();
    let all = a.iter().chain(b.iter()).collect::<Vec<_>>();
    all.chunks(SNAPSHOT_BATCH_ROWS)
        .map(|chunk| {
            let keys = BinaryArray::from_iter(chunk.iter().map(|m| m.key.as_deref()));
            let values = BinaryArray::from_iter(chunk.iter().map(|m| m.value.as_deref()));
            Ok(RecordBatch::try_new(
                message_schema(),
                vec![Arc::new(keys), Arc::new(values)],
            )?)
        })
        .collect()
}

/// Messages back from checkpointed batches (binary columns; text ones in
/// checkpoints written before messages could be Avro).
fn messages_from(batches: &[RecordBatch]) -> Result<Vec<OutMessage>> {
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| -> Result<BinaryArray> {
            let c = b
                .column_by_name(name)
                .ok_or_else(|| EddyError::Internal(format!("sink state has no {name} column")))?;
            let c = datafusion::arrow::compute::cast(c, &DataType::Binary)?;
            c.as_any()
                .downcast_ref::<BinaryArray>()
                .cloned()
                .ok_or_else(|| EddyError::Internal(format!("sink state's {name} is not binary")))
        };
        let (keys, values) = (col("key")?, col("value")?);
        for i in 0..b.num_rows() {
            out.push(OutMessage {
                key: keys.is_valid(i).then(|| keys.value(i).to_vec()),
                value: values.is_valid(i).then(|| values.value(i).to_vec()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_batches() {
        let msgs: VecDeque<OutMessage> = (0..5)
            .map(|i| OutMessage {
                key: (i % 2 == 0).then(|| format!("k{i}").into_bytes()),
                value: Some(format!("v{i}").into_bytes()),
            })
            .collect();
        let batches = batches_of(&msgs).unwrap();
        assert_eq!(messages_from(&batches).unwrap(), Vec::from(msgs));
    }

    /// The commit check reads the recorded offset with `read_committed`: a
    /// message there means committed. (The mock cluster shows aborted
    /// records too, so only the positive case can be checked here.)
    #[tokio::test]
    async fn commit_check_finds_the_recorded_message() {
        let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
        cluster.create_topic("checked", 2, 1).unwrap();
        let mut options = std::collections::BTreeMap::from([
            ("topic".to_string(), "checked".to_string()),
            ("bootstrap.servers".to_string(), cluster.bootstrap_servers()),
        ]);
        let opts = KafkaSinkOptions::from_options(&mut options).unwrap();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create_with_context(Default::default())
            .unwrap();
        for i in 0..3 {
            let rec = FutureRecord::<(), str>::to("checked")
                .partition(1)
                .payload("m");
            let d = producer.send(rec, Duration::from_secs(5)).await.unwrap();
            assert_eq!((d.partition, d.offset), (1, i));
        }
        assert!(is_committed(&opts, (1, 2)).await.unwrap());
    }
}
