//! The `kafka` connector: a source reading a topic's partitions with offsets
//! tracked by eddy, per-partition watermarks and lag; and a sink writing a
//! view's changes as JSON or Avro.
//!
//! ```sql
//! CREATE SOURCE rsvps (rsvp_id BIGINT NOT NULL, mtime TIMESTAMP NOT NULL,
//!                      WATERMARK FOR mtime AS mtime - INTERVAL '5' SECOND)
//!   INCLUDE partition AS kafka_partition, offset AS kafka_offset
//!   WITH (connector = 'kafka', topic = 'rsvps',
//!         'properties.bootstrap.server' = '127.0.0.1:9092',
//!         'scan.startup.mode' = 'earliest', format = 'json');
//! ```

mod at_least_once;
mod avro_sink;
mod context;
mod dead_letter_topic;
mod encoding;
mod options;
mod sink;
mod source;
mod txn_sink;

pub use at_least_once::{run_kafka_sink, Resubscribe, SinkRun};
pub use avro_sink::AvroSchemas;
pub use dead_letter_topic::DeadLetterTopic;
pub use encoding::{encode, OutMessage, SinkEncoder};
pub use options::{is_file_property, KafkaOptions, StartupMode};
pub use sink::{rows_as_json, Delivery, KafkaSinkOptions, SinkMetrics, SinkMode, SinkObject};
pub use source::{origin_offsets, range_targets, read_kafka, read_kafka_range, remaining};
pub use txn_sink::run_exactly_once_sink;
