//! The Kafka sink: a view's changes as JSON messages, or Avro ones
//! (`encode = 'avro'` with `'schema.registry.url'`, see [`super::avro_sink`]:
//! the same shapes, with the changes of an updating view as an Avro
//! envelope record `{before, after, op}`).
//!
//! - Append-only views (`EMIT ON WINDOW CLOSE`): one message per row, the row
//!   as a JSON object.
//! - Updating views: one message per change, Debezium style:
//!   `{"op": "c" | "u" | "d", "before": {…} | null, "after": {…} | null}`.
//!   A delete and an insert of the same key in one batch become one `u`.
//!
//! The message key is the JSON object of the key columns (option `key`, by
//! default the view's group-by columns), or none when there are no key columns.
//!
//! Delivery (option `delivery`):
//! - `exactly_once` (the default when the server takes periodic checkpoints):
//!   Kafka transactions committed with checkpoints, see [`super::txn_sink`].
//! - `at_least_once`: an idempotent producer (`acks=all`); what the broker
//!   does not acknowledge is produced again (status `retrying` in
//!   `eddy.sinks`), and a sink whose broker stays away lets go of its view
//!   (`stalled`), see [`super::at_least_once`]; after a restart the view's
//!   rows are written again.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use super::context::Reporting;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;

/// A producer whose client errors are kept in [`KafkaSinkOptions::reports`].
pub type FutureProducer = rdkafka::producer::FutureProducer<Reporting>;

use super::options::{take_properties, take_topic_and_brokers};
use crate::connectors::format::registry::Registry;
use crate::error::{EddyError, Result};

/// How long librdkafka keeps retrying one message before eddy produces it again.
const MESSAGE_TIMEOUT_MS: &str = "30000";
/// Backoff between attempts to deliver what the broker did not acknowledge.
pub(super) const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(500);
pub(super) const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a transaction may stay open before the broker aborts it (it
/// normally commits at the next checkpoint; override with
/// `'transaction.timeout.ms'`).
const TRANSACTION_TIMEOUT_MS: &str = "300000";

/// A sink's delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Kafka transactions committed with checkpoints.
    ExactlyOnce,
    /// Idempotent producer; a restart writes the view's rows again.
    AtLeastOnce,
}

impl Delivery {
    /// The option value.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::ExactlyOnce => "exactly_once",
            Delivery::AtLeastOnce => "at_least_once",
        }
    }
}

/// Whether a sink writes rows or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    /// Rows are only ever added: write each row.
    AppendOnly,
    /// Rows change: write Debezium-style change events.
    Changelog,
    /// Rows change: write each key's new row, and a tombstone (a null
    /// value) when its row is deleted (`format = 'upsert'`; compacted topics,
    /// Flink's `upsert-kafka`, `format = 'upsert_json'` sources).
    Upsert,
}

/// Counters of a sink, shown in `eddy.sinks`.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Messages acknowledged by the broker.
    pub messages_written: AtomicU64,
    /// Exactly-once: the newest checkpoint whose output is committed (or
    /// that had none to commit); 0 before the first.
    pub committed_epoch: AtomicU64,
    /// `running` or `failed`.
    pub status: Mutex<String>,
    /// Last error.
    pub last_error: Mutex<Option<String>>,
    /// How the last restart restored the sink, when users should know (it
    /// used an older checkpoint than the newest); shown as `last_error`
    /// while there is no error.
    pub recovery_note: Mutex<Option<String>>,
}

/// A running sink.
#[derive(Debug)]
pub struct SinkObject {
    /// Sink name.
    pub name: String,
    /// The view it reads.
    pub from: String,
    /// Connector name.
    pub connector: String,
    /// Topic written.
    pub topic: String,
    /// Append-only or changelog.
    pub mode: SinkMode,
    /// The delivery guarantee.
    pub delivery: Delivery,
    /// Counters.
    pub metrics: SinkMetrics,
}

/// Kafka sink settings.
#[derive(Debug, Clone)]
pub struct KafkaSinkOptions {
    /// Target topic.
    pub topic: String,
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Other librdkafka properties.
    pub properties: BTreeMap<String, String>,
    /// Key column names (empty: no message key).
    pub key: Option<Vec<String>>,
    /// `delivery`, when given.
    pub delivery: Option<Delivery>,
    /// `format = 'upsert'`: key → latest row, tombstones for deletes.
    pub upsert: bool,
    /// `encode = 'avro'`: the schema registry the schemas are registered in.
    pub avro: Option<Arc<Registry>>,
    /// What the producers made from these options report (shared by clones).
    pub reports: Reporting,
}

impl KafkaSinkOptions {
    /// Read sink options, removing them from `options`.
    pub fn from_options(
        options: &mut BTreeMap<String, String>,
    ) -> std::result::Result<Self, String> {
        let (topic, bootstrap) = take_topic_and_brokers(options)?;
        let upsert = match options.remove("format").as_deref() {
            None | Some("json") => false,
            Some("upsert" | "upsert_json") => true,
            Some(other) => {
                return Err(format!(
                    "sinks write format 'json' (rows, or change events for a view whose rows \
                     change) or 'upsert' (each key's latest row, tombstones for deletes), not \
                     '{other}'"
                ))
            }
        };
        let registry = Registry::from_options(options)?;
        let avro = match (options.remove("encode").as_deref(), registry) {
            (None | Some("json"), None) => None,
            (Some("avro"), Some(r)) => Some(r),
            (Some("avro"), None) => {
                return Err(
                    "encode = 'avro' needs a schema registry to register its schemas in: \
                     'schema.registry.url' = 'http://…'"
                        .into(),
                )
            }
            (None | Some("json"), Some(_)) => {
                return Err("'schema.registry.url' is for encode = 'avro'".into())
            }
            (Some(other), _) => {
                return Err(format!("encode must be 'json' or 'avro', not '{other}'"))
            }
        };
        let key = options.remove("key").map(|k| {
            k.split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        });
        let delivery = match options.remove("delivery").as_deref() {
            None => None,
            Some("exactly_once" | "exactly-once") => Some(Delivery::ExactlyOnce),
            Some("at_least_once" | "at-least-once") => Some(Delivery::AtLeastOnce),
            Some(other) => {
                return Err(format!(
                    "delivery must be 'exactly_once' or 'at_least_once', not '{other}'"
                ))
            }
        };
        let properties = take_properties(options)?;
        Ok(KafkaSinkOptions {
            reports: Reporting::new(&format!("sink to {topic}")),
            topic,
            bootstrap,
            properties,
            key,
            delivery,
            upsert,
            avro,
        })
    }

    /// A transactional producer for these options (`transactional.id` as
    /// given in the properties, else `default_id`).
    pub fn transactional_producer(&self, default_id: &str) -> Result<FutureProducer> {
        self.create_producer(&[
            ("transactional.id", default_id),
            ("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS),
        ])
    }

    /// The `transactional.id` a transactional producer uses.
    pub fn transactional_id(&self, default_id: &str) -> String {
        self.properties
            .get("transactional.id")
            .cloned()
            .unwrap_or_else(|| default_id.to_string())
    }

    /// An idempotent producer for these options.
    pub fn producer(&self) -> Result<FutureProducer> {
        self.create_producer(&[("enable.idempotence", "true"), ("acks", "all")])
    }

    /// A producer with eddy's defaults, `extra`, then the user's properties.
    fn create_producer(&self, extra: &[(&str, &str)]) -> Result<FutureProducer> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap)
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            .set("linger.ms", "5");
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        for (k, v) in &self.properties {
            cfg.set(k, v);
        }
        cfg.create_with_context(self.reports.clone())
            .map_err(|e| EddyError::Connector(format!("cannot create Kafka producer: {e}")))
    }
}

/// Rows of `batch` as JSON objects (NULL fields omitted, as `arrow-json` writes them).
pub fn rows_as_json(batch: &RecordBatch) -> Result<Vec<String>> {
    let mut buf = Vec::new();
    {
        let mut w = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, LineDelimited>(&mut buf);
        w.write(batch)?;
        w.finish()?;
    }
    let text = String::from_utf8(buf).map_err(|e| EddyError::Internal(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}
