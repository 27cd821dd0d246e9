//! From raw records to rows of a source: decode (format), add metadata
//! columns (`INCLUDE partition, offset, …`), enforce the data contract, and
//! route every rejected record by `on_error`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use super::contract::Contract;
use super::dead_letter::{DeadLetter, DeadLetterStore};
use super::format::{millis_to_nanos, Decoded, Format, Record, RecordDecoder, Rejected};
use super::kafka::DeadLetterTopic;
use super::stream::StreamObject;
use crate::error::{EddyError, Result};

/// Metadata a source can add as columns (`INCLUDE … AS name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    /// Kafka partition (`INT`).
    Partition,
    /// Kafka offset, or line number in a file (`BIGINT`).
    Offset,
    /// Kafka message timestamp (`TIMESTAMP`).
    Timestamp,
    /// Kafka message key as text (`VARCHAR`).
    Key,
    /// Path of the file a row was read from (`VARCHAR`).
    File,
}

impl Meta {
    /// Parse an `INCLUDE` item.
    pub fn parse(s: &str) -> Option<Meta> {
        Some(match s.to_lowercase().as_str() {
            "partition" => Meta::Partition,
            "offset" => Meta::Offset,
            "timestamp" => Meta::Timestamp,
            "key" => Meta::Key,
            "file" => Meta::File,
            _ => return None,
        })
    }

    /// The column type.
    pub fn data_type(self) -> DataType {
        match self {
            Meta::Partition => DataType::Int32,
            Meta::Offset => DataType::Int64,
            Meta::Timestamp => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Meta::Key | Meta::File => DataType::Utf8,
        }
    }

    fn column(self, records: &[Record], rows: &[usize]) -> ArrayRef {
        let it = rows.iter().map(|&i| &records[i]);
        match self {
            Meta::Partition => Arc::new(Int32Array::from_iter(it.map(|r| r.partition))),
            Meta::Offset => Arc::new(Int64Array::from_iter_values(it.map(|r| r.offset))),
            Meta::Timestamp => millis_to_nanos(it.map(|r| r.timestamp_ms)),
            Meta::Key => Arc::new(StringArray::from_iter(it.map(|r| {
                r.key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
            }))),
            Meta::File => Arc::new(StringArray::from_iter(
                it.map(|r| r.file.as_deref().map(str::to_string)),
            )),
        }
    }
}

/// What happens to a rejected record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Keep it in `eddy.dead_letters` (default).
    DeadLetter,
    /// Count it and drop it.
    Skip,
    /// Stop the source with an error.
    Fail,
}

impl OnError {
    /// Read `on_error` from `options`, removing it.
    pub fn from_options(
        options: &mut BTreeMap<String, String>,
    ) -> std::result::Result<Self, String> {
        match options
            .remove("on_error")
            .as_deref()
            .map(str::to_lowercase)
            .as_deref()
        {
            None | Some("dead_letter") => Ok(OnError::DeadLetter),
            Some("skip") => Ok(OnError::Skip),
            Some("fail") => Ok(OnError::Fail),
            Some(other) => Err(format!(
                "on_error must be 'dead_letter', 'skip' or 'fail', got '{other}'"
            )),
        }
    }
}

/// How a source turns records into rows. Built at `CREATE SOURCE`.
#[derive(Debug, Clone)]
pub struct IngestSpec {
    /// Record format.
    pub format: Format,
    /// Metadata columns, in order, after the payload columns.
    pub includes: Vec<Meta>,
    /// NOT NULL and CHECK rules.
    pub contract: Contract,
    /// What to do with rejected records.
    pub on_error: OnError,
}

/// What [`Ingest::process`] gives.
#[derive(Debug, Default)]
pub struct Processed {
    /// Good rows, with the index of the record each came from.
    pub rows: Option<(RecordBatch, Vec<usize>)>,
    /// Set when the source must stop (`on_error = 'fail'`, or an internal error),
    /// after `rows` are delivered.
    pub failure: Option<EddyError>,
}

/// Decodes, checks and routes records for one source: a [`Checker`] (pure:
/// records to rows and rejections, one per decoding thread) and a [`Router`]
/// (side effects, in record order: counts, dead letters, `on_error = 'fail'`).
pub struct Ingest {
    check: Checker,
    route: Router,
}

/// Records to rows: decode, add metadata columns, apply the contract. Has no
/// side effects, so several can run at once on chunks of one source.
pub(super) struct Checker {
    stream: Arc<StreamObject>,
    decoder: Box<dyn RecordDecoder>,
    spec: IngestSpec,
}

/// What a [`Checker`] gives for a chunk of records.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// Good rows, with the index of the record each came from.
    rows: Option<(RecordBatch, Vec<usize>)>,
    /// Rejected records, by index, ascending.
    rejected: Vec<Rejected>,
}

/// Handles rejected records in record order: counts them, keeps them as dead
/// letters, or stops the source.
pub(super) struct Router {
    stream: Arc<StreamObject>,
    on_error: OnError,
    dead_letters: Arc<DeadLetterStore>,
    /// Also produce dead letters here (`'dead_letter.topic'`).
    dead_letter_topic: Option<DeadLetterTopic>,
    source: Arc<str>,
    /// Reading again what the source's own reader already routed (a view's
    /// backfill): rejected records are neither counted nor dead-lettered again.
    quiet: bool,
}

impl Ingest {
    /// An ingest path for `stream` (whose schema is payload columns then includes).
    pub fn new(
        stream: Arc<StreamObject>,
        spec: IngestSpec,
        dead_letters: Arc<DeadLetterStore>,
    ) -> std::result::Result<Self, String> {
        let route = Router {
            source: stream.name.as_str().into(),
            stream: stream.clone(),
            on_error: spec.on_error,
            dead_letters,
            dead_letter_topic: None,
            quiet: false,
        };
        Ok(Ingest {
            check: Checker::new(stream, spec)?,
            route,
        })
    }

    /// An ingest path that reads records the source's reader has already
    /// processed (a view's backfill): the same rows, but rejected records are
    /// not counted or dead-lettered a second time. `on_error = 'fail'` still
    /// stops at the first rejected record.
    pub fn replay(
        stream: Arc<StreamObject>,
        spec: IngestSpec,
        dead_letters: Arc<DeadLetterStore>,
    ) -> std::result::Result<Self, String> {
        let mut ingest = Ingest::new(stream, spec, dead_letters)?;
        ingest.route.quiet = true;
        Ok(ingest)
    }

    /// Also produce every dead letter to a Kafka topic.
    pub fn with_dead_letter_topic(mut self, topic: DeadLetterTopic) -> Self {
        self.route.dead_letter_topic = Some(topic);
        self
    }

    /// Turn `records` into rows of the stream, with the index of the record
    /// each row came from. Rejected records are counted and dead-lettered or
    /// skipped. With `on_error = 'fail'`, the rows before the first rejected
    /// record are returned with the error that must stop the source.
    pub fn process(&mut self, records: &[Record]) -> Processed {
        let checked = self.check.check(records);
        self.route.route(records, checked)
    }

    /// Reject one record that never reached the decoder (e.g. over-long).
    pub fn reject_one(&self, record: Record, error: String) -> Result<()> {
        self.route.reject_one(record, error)
    }

    /// The schema registry the format reads writer schemas from, if any.
    pub fn registry(&self) -> Option<Arc<super::format::registry::Registry>> {
        self.check.spec.format.registry().cloned()
    }

    /// True when tombstones' keys name writer schemas in the registry too.
    pub fn registry_keys(&self) -> bool {
        self.check.spec.format.registry_keys()
    }

    /// The two halves, for a [`super::pipeline::Pipeline`].
    pub(super) fn into_parts(self) -> (Checker, Router) {
        (self.check, self.route)
    }
}

impl Checker {
    fn new(stream: Arc<StreamObject>, spec: IngestSpec) -> std::result::Result<Self, String> {
        let payload = payload_schema(&stream.schema, spec.includes.len());
        let decoder = spec.format.decoder(payload)?;
        Ok(Checker {
            stream,
            decoder,
            spec,
        })
    }

    /// Another checker of the same source (a decoder of its own).
    pub(super) fn fresh(&self) -> std::result::Result<Self, String> {
        Checker::new(self.stream.clone(), self.spec.clone())
    }

    /// Decode and check `records`.
    pub(super) fn check(&mut self, records: &[Record]) -> Result<Checked> {
        if records.is_empty() {
            return Ok(Checked::default());
        }
        let Decoded {
            batch,
            rows_from,
            mut rejected,
        } = self.decoder.decode(records);
        let mut out = None;
        if let Some(batch) = batch {
            let mut cols = batch.columns().to_vec();
            // A keyed format's upsert/delete flag, last: kept aside until the end.
            let ops = if self.spec.format.is_keyed() {
                cols.pop()
            } else {
                None
            };
            for m in &self.spec.includes {
                cols.push(m.column(records, &rows_from));
            }
            let full = RecordBatch::try_new(nullable(&self.stream.schema), cols)?;
            let mut violations = self.spec.contract.violations(&full);
            if let Some(ops) = &ops {
                // A delete names a key; the rest of its row is empty by design.
                let ops = ops.as_boolean();
                violations.retain(|(row, _)| ops.value(*row));
            }
            // Event times the watermark cannot carry are bad records too (the first
            // reason per row is kept).
            let time = self.stream.event_time_violations(&full);
            if !time.is_empty() {
                violations.extend(time);
                violations.sort_by_key(|(row, _)| *row);
                violations.dedup_by_key(|(row, _)| *row);
            }
            let mut rows_from = rows_from;
            let full = match ops {
                Some(ops) => {
                    let mut cols = full.columns().to_vec();
                    cols.push(ops);
                    RecordBatch::try_new(
                        super::upsert::log_schema(&nullable(&self.stream.schema)),
                        cols,
                    )?
                }
                None => full,
            };
            let full = if violations.is_empty() {
                full
            } else {
                let mut keep = vec![true; full.num_rows()];
                for (row, error) in violations {
                    keep[row] = false;
                    rejected.push(Rejected {
                        index: rows_from[row],
                        error,
                    });
                }
                rejected.sort_by_key(|r| r.index);
                rows_from = rows_from
                    .iter()
                    .zip(&keep)
                    .filter_map(|(i, k)| k.then_some(*i))
                    .collect();
                filter_record_batch(&full, &BooleanArray::from(keep))?
            };
            let mut full = full;
            if let (OnError::Fail, Some(first)) = (self.spec.on_error, rejected.first()) {
                // Deliver what came before the first bad record, nothing after.
                let keep = rows_from.partition_point(|&i| i < first.index);
                rows_from.truncate(keep);
                full = full.slice(0, keep);
            }
            if full.num_rows() > 0 {
                let schema = if self.spec.format.is_keyed() {
                    super::upsert::log_schema(&self.stream.schema)
                } else {
                    self.stream.schema.clone()
                };
                let batch = RecordBatch::try_new(schema, full.columns().to_vec())?;
                out = Some((batch, rows_from));
            }
        }
        Ok(Checked {
            rows: out,
            rejected,
        })
    }
}

impl Router {
    /// Act on what a checker found in `records`: rejected records are counted
    /// and dead-lettered, skipped, or stop the source.
    pub(super) fn route(&self, records: &[Record], checked: Result<Checked>) -> Processed {
        match checked {
            Ok(Checked { rows, rejected }) => Processed {
                rows,
                failure: self.reject(records, rejected).err(),
            },
            Err(e) => Processed {
                rows: None,
                failure: Some(e),
            },
        }
    }

    /// Reject one record that never reached the decoder (e.g. over-long).
    pub(super) fn reject_one(&self, record: Record, error: String) -> Result<()> {
        self.reject(
            std::slice::from_ref(&record),
            vec![Rejected { index: 0, error }],
        )
    }

    fn reject(&self, records: &[Record], rejected: Vec<Rejected>) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let m = &self.stream.metrics;
        match self.on_error {
            OnError::Fail => {
                let r = &rejected[0];
                if !self.quiet {
                    m.rows_rejected.fetch_add(1, Ordering::Relaxed);
                }
                return Err(EddyError::Connector(format!(
                    "source \"{}\" stopped (on_error = 'fail'): record at {} rejected: {}",
                    self.source,
                    origin(&records[r.index]),
                    r.error
                )));
            }
            _ if self.quiet => return Ok(()),
            OnError::Skip => {}
            OnError::DeadLetter => {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                let letters: Vec<DeadLetter> = rejected
                    .iter()
                    .map(|r| {
                        let rec = &records[r.index];
                        DeadLetter {
                            source: self.source.clone(),
                            partition: rec.partition,
                            offset: Some(rec.offset),
                            key: rec.key.clone(),
                            payload: rec.payload.clone(),
                            error: r.error.clone(),
                            received_at_ns: now,
                            evicted: m.dead_letters_evicted.clone(),
                        }
                    })
                    .collect();
                if let Some(t) = &self.dead_letter_topic {
                    for l in &letters {
                        t.send(l);
                    }
                }
                self.dead_letters.push(letters);
            }
        }
        m.rows_rejected
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Where a record came from, for messages.
fn origin(r: &Record) -> String {
    match (&r.file, r.partition) {
        (Some(f), _) => format!("{f} line {}", r.offset),
        (None, Some(p)) => format!("partition {p} offset {}", r.offset),
        (None, None) => format!("offset {}", r.offset),
    }
}

/// The payload columns of a stream schema with `includes` metadata columns at the end.
pub fn payload_schema(schema: &SchemaRef, includes: usize) -> SchemaRef {
    let n = schema.fields().len().saturating_sub(includes);
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema.fields()[..n].to_vec(),
    ))
}

fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}
