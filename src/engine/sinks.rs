//! `CREATE SINK name FROM view WITH (connector = 'kafka', …)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ddl::{subscribe_input, InputRef};
use super::{Engine, Outcome};
use crate::catalog::{Entry, ObjectRef};
use crate::connectors::kafka::{
    run_exactly_once_sink, run_kafka_sink, AvroSchemas, Delivery, KafkaSinkOptions, Resubscribe,
    SinkEncoder, SinkMetrics, SinkMode, SinkObject, SinkRun,
};
use crate::error::{EddyError, Result};
use crate::sql::CreateSink;

impl Engine {
    /// Kafka properties that name files (certificates, keys) must name
    /// readable ones (see [`Engine::readable_path`]); a relative one is made
    /// to start at the file root, so librdkafka opens the file that was
    /// checked. (`ssl.ca.location = 'probe'` asks for the system's CAs.)
    pub(super) fn check_kafka_files(
        &self,
        properties: &mut BTreeMap<String, String>,
    ) -> Result<()> {
        for (k, v) in properties.iter_mut() {
            if crate::connectors::kafka::is_file_property(k) && v.as_str() != "probe" {
                let path = self.readable_path(&format!("'properties.{k}'"), v)?;
                *v = path.to_string_lossy().into_owned();
            }
        }
        Ok(())
    }

    pub(super) async fn create_sink(&self, s: CreateSink) -> Result<Outcome> {
        let done = Outcome::Command {
            tag: "CREATE SINK".into(),
            rows: None,
        };
        if self.catalog.with(|e| e.contains_key(&s.name)) {
            return if s.if_not_exists {
                Ok(done.with_notice(super::ddl::exists_skipping(&s.name)))
            } else {
                Err(EddyError::DuplicateObject(format!(
                    "relation \"{}\" already exists",
                    s.name
                )))
            };
        }
        let mut opts: BTreeMap<String, String> = self.with_secrets(&s.options, &s.secrets)?;
        let connector = opts.remove("connector").unwrap_or_default();
        if connector != "kafka" {
            return Err(EddyError::InvalidParameter {
                message: format!("unknown sink connector '{connector}'"),
                hint: Some("Available sink connectors: kafka.".into()),
            });
        }
        let mut kafka = KafkaSinkOptions::from_options(&mut opts).map_err(EddyError::invalid)?;
        self.check_kafka_files(&mut kafka.properties)?;
        if let Some(k) = opts.keys().next() {
            return Err(EddyError::invalid(format!(
                "unknown option '{k}' for sink connector 'kafka'"
            )));
        }
        let checkpoints = self.data_dir.is_some() && self.limits.checkpoint_interval_secs > 0;
        let delivery = match kafka.delivery {
            Some(Delivery::ExactlyOnce) if !checkpoints => {
                return Err(EddyError::InvalidParameter {
                    message: "delivery = 'exactly_once' commits with checkpoints, and this \
                              server takes none"
                        .into(),
                    hint: Some(
                        "Start eddy with --data-dir and a --checkpoint-interval above 0, or use \
                         delivery = 'at_least_once'."
                            .into(),
                    ),
                })
            }
            Some(d) => d,
            None if checkpoints => Delivery::ExactlyOnce,
            None => Delivery::AtLeastOnce,
        };
        if delivery == Delivery::AtLeastOnce && kafka.properties.contains_key("transactional.id") {
            return Err(EddyError::invalid(
                "'properties.transactional.id' needs delivery = 'exactly_once'",
            ));
        }
        let (schema, mode, group_keys) = match self.input_ref(&s.from) {
            Some(InputRef::View(v)) => {
                let keys = v.output.key.clone().unwrap_or_default();
                let mode = match (v.output.updating, kafka.upsert) {
                    (true, true) => SinkMode::Upsert,
                    (true, false) => SinkMode::Changelog,
                    (false, _) => SinkMode::AppendOnly,
                };
                (v.schema.clone(), mode, keys)
            }
            Some(InputRef::Stream(st)) => (st.schema.clone(), SinkMode::AppendOnly, Vec::new()),
            None => {
                return Err(EddyError::UndefinedObject(format!(
                    "relation \"{}\" does not exist",
                    s.from
                )))
            }
        };
        let key_cols: Vec<usize> = match &kafka.key {
            Some(names) => names
                .iter()
                .map(|n| {
                    schema.index_of(n).map_err(|_| {
                        EddyError::UndefinedColumn(format!(
                            "sink key column \"{n}\" is not a column of \"{}\"",
                            s.from
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            // The view's group-by columns, when its output still has them all by name.
            None => {
                let found: Vec<usize> = group_keys
                    .iter()
                    .filter_map(|n| schema.index_of(n).ok())
                    .collect();
                if found.len() == group_keys.len() {
                    found
                } else {
                    Vec::new()
                }
            }
        };
        if mode == SinkMode::Upsert && key_cols.is_empty() {
            return Err(EddyError::InvalidParameter {
                message: format!(
                    "sink \"{}\": format 'upsert' needs a key, and \"{}\" has none eddy can use",
                    s.name, s.from
                ),
                hint: Some(
                    "Name the key columns: WITH (…, key = 'col1,col2'), or sink a view with \
                     GROUP BY."
                        .into(),
                ),
            });
        }
        let encoder = match &kafka.avro {
            None => SinkEncoder::json(mode, key_cols),
            Some(registry) => {
                let schemas = Arc::new(AvroSchemas::new(
                    registry.clone(),
                    &kafka.topic,
                    &s.from,
                    &schema,
                    &key_cols,
                    mode == SinkMode::Changelog,
                )?);
                // A new sink registers its schemas now and fails if it cannot; one
                // recreated at a restart registers them in its task, retrying.
                if !self.restoring() {
                    let r = schemas.clone();
                    tokio::task::spawn_blocking(move || r.register())
                        .await
                        .map_err(|e| EddyError::Internal(format!("schema registration: {e}")))?
                        .map_err(|e| {
                            EddyError::Connector(format!(
                                "sink \"{}\": cannot register its Avro schemas ({}): {e}",
                                s.name,
                                schemas.subjects().join(", ")
                            ))
                        })?;
                }
                SinkEncoder::avro(mode, key_cols, schemas)
            }
        };
        let sink = Arc::new(SinkObject {
            name: s.name.clone(),
            from: s.from.clone(),
            connector,
            topic: kafka.topic.clone(),
            mode,
            delivery,
            metrics: SinkMetrics::default(),
        });
        let restored = match delivery {
            Delivery::ExactlyOnce if self.restoring() => self.recovered_sink(&s.name),
            _ => None,
        };
        if restored.is_some() {
            let note = self.recovery_note.lock().clone();
            *sink.metrics.last_error.lock() = note.clone();
            *sink.metrics.recovery_note.lock() = note;
        }
        let input = self.input_ref(&s.from).ok_or_else(|| {
            EddyError::UndefinedObject(format!("relation \"{}\" does not exist", s.from))
        })?;
        let (tx, rx) = mpsc::channel(self.limits.channel_capacity);
        let snapshot = subscribe_input(&input, &s.name, tx).await?;
        let mut tasks = JoinSet::new();
        match delivery {
            // With `restored`, the view's rows up to the checkpoint are committed
            // or among the restored messages: the snapshot is not written.
            Delivery::ExactlyOnce => tasks.spawn(run_exactly_once_sink(
                sink.clone(),
                kafka,
                encoder,
                snapshot,
                restored,
                self.hub.clone(),
                rx,
            )),
            Delivery::AtLeastOnce => {
                let name = s.name.clone();
                let resubscribe: Resubscribe = Arc::new(move |tx| {
                    let (input, name) = (input.clone(), name.clone());
                    Box::pin(async move { subscribe_input(&input, &name, tx).await })
                });
                tasks.spawn(run_kafka_sink(SinkRun {
                    sink: sink.clone(),
                    opts: kafka,
                    encoder,
                    snapshot,
                    rx,
                    resubscribe,
                    buffer_max_bytes: self.limits.sink_buffer_bytes,
                    channel_capacity: self.limits.channel_capacity,
                }))
            }
        };
        self.catalog.with(|e| {
            e.insert(
                s.name.clone(),
                Entry {
                    object: ObjectRef::Sink(sink),
                    sql: s.sql.clone(),
                    depends_on: vec![s.from.clone()],
                    tasks,
                },
            )
        });
        Ok(done)
    }
}
