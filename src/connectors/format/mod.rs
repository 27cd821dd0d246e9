//! Record formats: raw records (Kafka messages, lines of a file) decoded in
//! batches into Arrow record batches of a source's declared columns.
//!
//! Decoding is batched: a whole poll's worth of records goes through one
//! `arrow-json` / `arrow-csv` decoder. A record that cannot be decoded does not
//! fail its neighbours: the batch falls back to decoding record by record, and
//! each bad record comes back as a [`Rejected`] with a precise reason (see
//! [`diagnose`]). Bad records are rare, so the fast path stays one decode per
//! batch.
//!
//! Event-time columns (`TIMESTAMP`) accept epoch milliseconds (a number) or an
//! RFC 3339 / ISO 8601 string; JSON strings are read at millisecond precision.

mod avro;
mod avro_changes;
mod avro_envelope;
mod avro_registry;
pub mod changes;
mod csv;
pub mod diagnose;
mod json;
mod json_registry;
mod protobuf_registry;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, TimestampNanosecondArray, TimestampNanosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit,
};
use datafusion::arrow::record_batch::RecordBatch;

use self::registry::Registry;

pub use self::avro::{AvroDecoder, AvroFraming};
pub use self::avro_registry::RegistryAvroDecoder;
pub use self::csv::CsvDecoder;
pub use self::json::JsonDecoder;
pub use self::json_registry::RegistryJsonDecoder;
pub use self::protobuf_registry::RegistryProtobufDecoder;

/// One raw record and where it came from.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The bytes to decode.
    pub payload: Vec<u8>,
    /// Message key (Kafka), if any.
    pub key: Option<Vec<u8>>,
    /// Kafka partition; `None` for files.
    pub partition: Option<i32>,
    /// Kafka offset, or 1-based line number in a file.
    pub offset: i64,
    /// Message timestamp in epoch milliseconds (Kafka), if any.
    pub timestamp_ms: Option<i64>,
    /// File the record was read from (file connector).
    pub file: Option<Arc<str>>,
}

/// A record that did not decode or did not satisfy the source's contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index of the record in the slice given to the decoder.
    pub index: usize,
    /// Why, e.g. ``field `guests`: expected an integer, got "two"``.
    pub error: String,
}

/// What decoding a slice of records gives.
#[derive(Debug)]
pub struct Decoded {
    /// Rows of the good records, in record order, in the declared schema.
    pub batch: Option<RecordBatch>,
    /// Indexes of the records the rows of `batch` came from, ascending.
    pub rows_from: Vec<usize>,
    /// Records that were rejected.
    pub rejected: Vec<Rejected>,
}

/// A batch decoder for one format.
pub trait RecordDecoder: Send {
    /// Decode `records`; never fails as a whole — bad records are rejected one by one.
    fn decode(&mut self, records: &[Record]) -> Decoded;
}

/// The record formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per record.
    Json,
    /// One CSV row per record.
    Csv {
        /// Field delimiter.
        delimiter: u8,
        /// Files start with a header line to skip.
        header: bool,
    },
    /// Avro datums written with an inline schema.
    Avro {
        /// The writer schema (JSON).
        schema: String,
        /// How records are framed.
        framing: AvroFraming,
    },
    /// Avro datums in the Confluent wire format, writer schemas from a schema
    /// registry (`'schema.registry.url'`), read as the declared columns.
    AvroRegistry(Arc<Registry>),
    /// JSON documents in the Confluent wire format, their JSON Schemas in a
    /// schema registry (`format = 'json'` with `'schema.registry.url'`).
    JsonRegistry(Arc<Registry>),
    /// Protobuf messages in the Confluent wire format, their `.proto`
    /// schemas in a schema registry (`format = 'protobuf'`).
    ProtobufRegistry(Arc<Registry>),
    /// Keyed records that upsert and delete rows (`upsert_json`, `debezium_json`,
    /// `upsert_avro`, `debezium_avro`; see [`changes`]); decoded rows end with
    /// [`changes::OP_COLUMN`].
    Changes {
        /// Which keyed format.
        format: changes::ChangeFormat,
        /// The source's key columns (set once its `PRIMARY KEY` is known).
        keys: Vec<String>,
        /// The schema registry of the Avro formats.
        registry: Option<Arc<Registry>>,
    },
}

impl Format {
    /// Read `format` (default `json`) and its options (`csv.*`, `avro.*`,
    /// `schema.registry.*`) from `options`, removing them. Contacts nobody.
    pub fn from_options(options: &mut BTreeMap<String, String>) -> Result<Format, String> {
        let name = options
            .remove("format")
            .unwrap_or_else(|| "json".into())
            .to_lowercase();
        let kind = match name.as_str() {
            "json" => registry::SchemaKind::Json,
            "protobuf" => registry::SchemaKind::Protobuf,
            _ => registry::SchemaKind::Avro,
        };
        let registry = Registry::from_options_for(options, kind)?;
        let keyed = changes::ChangeFormat::named(&name);
        let avro_keyed = keyed.is_some_and(changes::ChangeFormat::is_avro);
        let plain = ["avro", "json", "protobuf"].contains(&name.as_str());
        if registry.is_some() && !plain && !avro_keyed {
            return Err(format!(
                "'schema.registry.url' is for formats 'avro', 'json', 'protobuf', 'upsert_avro' \
                 and 'debezium_avro' (Confluent wire format), not '{name}'"
            ));
        }
        match (&registry, name.as_str()) {
            (Some(registry), "json") => return Ok(Format::JsonRegistry(registry.clone())),
            (Some(registry), "protobuf") => return Ok(Format::ProtobufRegistry(registry.clone())),
            (None, "protobuf") => {
                return Err("format 'protobuf' needs a schema registry: \
                            'schema.registry.url' = 'http://…' (its schemas are read from there)"
                    .into())
            }
            _ => {}
        }
        if registry.is_none() && avro_keyed {
            return Err(format!(
                "format '{name}' needs a schema registry: 'schema.registry.url' = 'http://…'"
            ));
        }
        let delimiter = options.remove("csv.delimiter");
        let header = options.remove("csv.header");
        let avro_schema = options.remove("avro.schema");
        let avro_framing = options.remove("avro.framing");
        let avro_schema_id = options.remove("avro.schema_id");
        if let Some(registry) = registry {
            // The format is 'avro', 'upsert_avro' or 'debezium_avro' (checked above).
            if let Some(o) = [
                ("avro.schema", avro_schema.is_some()),
                ("avro.schema_id", avro_schema_id.is_some()),
            ]
            .iter()
            .find_map(|(o, given)| given.then_some(o))
            {
                return Err(format!(
                    "'{o}' and 'schema.registry.url' exclude each other: with a registry, \
                     writer schemas come from the registry by the id in each record"
                ));
            }
            return match avro_framing.as_deref() {
                None | Some("confluent") => Ok(match keyed {
                    Some(format) => Format::Changes {
                        format,
                        keys: Vec::new(),
                        registry: Some(registry),
                    },
                    None => Format::AvroRegistry(registry),
                }),
                Some(other) => Err(format!(
                    "with 'schema.registry.url', 'avro.framing' can only be 'confluent', got \
                     '{other}'"
                )),
            };
        }
        if let Some(format) = keyed {
            return Ok(Format::Changes {
                format,
                keys: Vec::new(),
                registry: None,
            });
        }
        match name.as_str() {
            "json" => Ok(Format::Json),
            "csv" => {
                let delimiter = match delimiter.as_deref() {
                    None => b',',
                    Some("\\t") | Some("tab") => b'\t',
                    Some(d) if d.len() == 1 => d.as_bytes()[0],
                    Some(d) => {
                        return Err(format!(
                            "csv.delimiter must be one ASCII character, got '{d}'"
                        ))
                    }
                };
                let header = match header.as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(v) => return Err(format!("csv.header must be true or false, got '{v}'")),
                };
                Ok(Format::Csv { delimiter, header })
            }
            "avro" => {
                let schema = avro_schema.ok_or(
                    "format 'avro' needs the writer schema: 'avro.schema' = '{…}', \
                     or a schema registry: 'schema.registry.url' = 'http://…'",
                )?;
                let framing = match avro_framing.as_deref() {
                    None | Some("none") => AvroFraming::None,
                    Some("single_object") => AvroFraming::SingleObject,
                    Some("confluent") => {
                        let id = avro_schema_id
                            .as_deref()
                            .and_then(|v| v.parse::<u32>().ok())
                            .ok_or("'avro.framing' = 'confluent' needs 'avro.schema_id' (an integer)")?;
                        AvroFraming::Confluent(id)
                    }
                    Some(other) => {
                        return Err(format!(
                            "avro.framing must be 'none', 'single_object' or 'confluent', got '{other}'"
                        ))
                    }
                };
                Ok(Format::Avro { schema, framing })
            }
            other => Err(format!(
                "unknown format '{other}'; available formats: json, csv, avro, protobuf, \
                 upsert_json, debezium_json, upsert_avro, debezium_avro"
            )),
        }
    }

    /// A decoder producing rows of `schema` (the declared payload columns).
    pub fn decoder(&self, schema: SchemaRef) -> Result<Box<dyn RecordDecoder>, String> {
        Ok(match self {
            Format::Json => Box::new(JsonDecoder::new(schema)?),
            Format::Csv { delimiter, .. } => Box::new(CsvDecoder::new(schema, *delimiter)),
            Format::Avro {
                schema: json,
                framing,
            } => Box::new(AvroDecoder::new(schema, json, *framing)?),
            Format::AvroRegistry(registry) => {
                Box::new(RegistryAvroDecoder::new(schema, registry.clone()))
            }
            Format::JsonRegistry(registry) => {
                Box::new(RegistryJsonDecoder::new(schema, registry.clone())?)
            }
            Format::ProtobufRegistry(registry) => {
                Box::new(RegistryProtobufDecoder::new(schema, registry.clone())?)
            }
            Format::Changes {
                format,
                keys,
                registry,
            } => Box::new(changes::ChangeDecoder::new(
                *format,
                schema,
                keys.clone(),
                registry.clone(),
            )?),
        })
    }

    /// True for keyed formats: decoded rows end with an upsert/delete flag.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Format::Changes { .. })
    }

    /// The schema registry records name their writer schemas in, if any.
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        match self {
            Format::AvroRegistry(r) | Format::JsonRegistry(r) | Format::ProtobufRegistry(r) => {
                Some(r)
            }
            Format::Changes {
                registry: Some(r), ..
            } => Some(r),
            _ => None,
        }
    }

    /// True when the keys of records with a null value (tombstones) may name
    /// writer schemas in the registry too (`upsert_avro`).
    pub fn registry_keys(&self) -> bool {
        matches!(
            self,
            Format::Changes {
                format: changes::ChangeFormat::UpsertAvro,
                ..
            }
        )
    }
}

/// The type a format decodes a declared type as: timestamps as milliseconds
/// (so epoch-millisecond numbers are read as such), recursively, and every
/// field nullable (NOT NULL is checked by the contract, with a better message).
/// Text is read as `Utf8` and cast to the declared `Utf8View` after: arrow-json's
/// view decoder reserves a view per byte of text (a 4,096-row chunk of 200-byte
/// records held megabytes per column, for as long as a view kept its rows).
fn json_wire_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Millisecond, tz.clone()),
        DataType::Utf8View => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(json_wire_fields(fields)),
        DataType::List(f) => DataType::List(json_wire_field(f)),
        DataType::LargeList(f) => DataType::LargeList(json_wire_field(f)),
        other => other.clone(),
    }
}

fn json_wire_field(f: &FieldRef) -> FieldRef {
    Arc::new(Field::new(f.name(), json_wire_type(f.data_type()), true))
}

fn json_wire_fields(fields: &Fields) -> Fields {
    fields.iter().map(json_wire_field).collect()
}

/// The schema a JSON decoder reads for declared `schema`.
fn json_wire_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(json_wire_fields(schema.fields())))
}

/// Cast decoded columns to the declared types (for example milliseconds to
/// nanoseconds) and attach the declared schema.
fn to_declared(batch: RecordBatch, declared: &SchemaRef) -> Result<RecordBatch, String> {
    let cols: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(declared.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<Result<_, _>>()?;
    // Declared NOT NULL columns are checked after decoding; build with nullable
    // fields here and let the contract enforce nullability.
    let nullable = Arc::new(Schema::new(
        declared
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(nullable, cols).map_err(|e| e.to_string())
}

/// Parse a text timestamp: epoch milliseconds (optionally negative) or an
/// RFC 3339 / ISO 8601 string; returns nanoseconds.
pub fn parse_timestamp_ns(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if !t.is_empty()
        && t.trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        let ms: i64 = t
            .parse()
            .map_err(|_| format!("\"{t}\" is out of range for epoch milliseconds"))?;
        return ms
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("\"{t}\" is out of range for epoch milliseconds"));
    }
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(t)
        .map_err(|_| format!("expected a timestamp (epoch milliseconds or RFC 3339), got \"{t}\""))
}

/// Convert a text column to nanosecond timestamps; bad values are reported by row.
fn text_to_timestamps(col: &ArrayRef, tz: Option<Arc<str>>) -> (ArrayRef, Vec<(usize, String)>) {
    let text = col.as_string::<i32>();
    let mut b = TimestampNanosecondBuilder::with_capacity(text.len());
    let mut bad = Vec::new();
    for (row, v) in text.iter().enumerate() {
        match v.map(parse_timestamp_ns) {
            None => b.append_null(),
            Some(Ok(ns)) => b.append_value(ns),
            Some(Err(e)) => {
                bad.push((row, e));
                b.append_null();
            }
        }
    }
    (Arc::new(b.finish().with_timezone_opt(tz)), bad)
}

/// Milliseconds to a nanosecond timestamp column (Kafka message timestamps);
/// values out of range become NULL.
pub fn millis_to_nanos(ms: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let arr: TimestampNanosecondArray = ms
        .map(|v| v.and_then(|m| m.checked_mul(1_000_000)))
        .collect();
    Arc::new(arr)
}

/// Run `decode_all` over every record at once; if that fails, decode record by
/// record with `decode_one` so only the bad ones are rejected.
fn decode_with_fallback(
    records: &[Record],
    declared: &SchemaRef,
    mut decode_all: impl FnMut(&[Record]) -> Result<Option<RecordBatch>, String>,
    mut decode_one: impl FnMut(&Record) -> Result<Option<RecordBatch>, String>,
    diagnose: impl Fn(&Record, String) -> String,
) -> Decoded {
    if let Ok(batch) = decode_all(records) {
        let rows = batch.as_ref().map_or(0, |b| b.num_rows());
        if rows == records.len() {
            return finish(batch, (0..records.len()).collect(), Vec::new(), declared);
        }
    }
    let mut batches = Vec::new();
    let mut rows_from = Vec::new();
    let mut rejected = Vec::new();
    for (index, r) in records.iter().enumerate() {
        match decode_one(r) {
            Ok(Some(b)) if b.num_rows() == 1 => {
                batches.push(b);
                rows_from.push(index);
            }
            Ok(Some(b)) => rejected.push(Rejected {
                index,
                error: format!("expected one value per record, found {}", b.num_rows()),
            }),
            Ok(None) => rejected.push(Rejected {
                index,
                error: "empty record".into(),
            }),
            Err(e) => rejected.push(Rejected {
                index,
                error: diagnose(r, e),
            }),
        }
    }
    let batch = match batches.first() {
        None => None,
        Some(first) => {
            match datafusion::arrow::compute::concat_batches(&first.schema(), &batches) {
                Ok(b) => Some(b),
                Err(e) => {
                    // Cannot happen for batches of one schema; reject rather than lose.
                    for &index in &rows_from {
                        rejected.push(Rejected {
                            index,
                            error: format!("internal decoding error: {e}"),
                        });
                    }
                    rows_from.clear();
                    rejected.sort_by_key(|r| r.index);
                    None
                }
            }
        }
    };
    finish(batch, rows_from, rejected, declared)
}

/// Decode `records` by turning each into a JSON `document` (or the reason
/// it cannot be one) read by `json`: rows and rejections point at the
/// records, in order.
fn decode_documents(
    records: &[Record],
    json: &mut JsonDecoder,
    mut document: impl FnMut(&Record) -> Result<Vec<u8>, String>,
) -> Decoded {
    let mut documents = Vec::with_capacity(records.len());
    // For each document, the record it came from.
    let mut from = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match document(r) {
            Ok(payload) => {
                documents.push(Record {
                    payload,
                    key: None,
                    partition: r.partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                    file: r.file.clone(),
                });
                from.push(i);
            }
            Err(error) => rejected.push(Rejected { index: i, error }),
        }
    }
    let decoded = json.decode(&documents);
    rejected.extend(decoded.rejected.into_iter().map(|r| Rejected {
        index: from[r.index],
        error: r.error,
    }));
    rejected.sort_by_key(|r| r.index);
    Decoded {
        batch: decoded.batch,
        rows_from: decoded.rows_from.into_iter().map(|j| from[j]).collect(),
        rejected,
    }
}

/// [`decode_with_fallback`] for formats that decode a batch and a single
/// record the same way and whose own error message is the reason.
fn decode_by_run(
    records: &[Record],
    declared: &SchemaRef,
    run: impl Fn(&[Record]) -> Result<Option<RecordBatch>, String>,
) -> Decoded {
    decode_with_fallback(
        records,
        declared,
        &run,
        |one| run(std::slice::from_ref(one)),
        |_, e| e,
    )
}

/// Fix text timestamps, cast to declared types; rows that fail are rejected.
fn finish(
    batch: Option<RecordBatch>,
    mut rows_from: Vec<usize>,
    mut rejected: Vec<Rejected>,
    declared: &SchemaRef,
) -> Decoded {
    let Some(mut batch) = batch else {
        return Decoded {
            batch: None,
            rows_from: Vec::new(),
            rejected,
        };
    };
    // Text-decoded timestamps (CSV) are converted here, value by value.
    let mut bad_rows: Vec<(usize, String)> = Vec::new();
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    for (i, f) in declared.fields().iter().enumerate() {
        if let (DataType::Timestamp(_, tz), DataType::Utf8) = (f.data_type(), cols[i].data_type()) {
            let (arr, bad) = text_to_timestamps(&cols[i], tz.clone());
            cols[i] = arr;
            bad_rows.extend(
                bad.into_iter()
                    .map(|(row, e)| (row, format!("field `{}`: {e}", f.name()))),
            );
        }
    }
    if !bad_rows.is_empty()
        || cols
            .iter()
            .zip(batch.columns())
            .any(|(a, b)| !Arc::ptr_eq(a, b))
    {
        let fields: Vec<Field> = cols
            .iter()
            .zip(batch.schema().fields())
            .map(|(c, f)| Field::new(f.name(), c.data_type().clone(), true))
            .collect();
        match RecordBatch::try_new(Arc::new(Schema::new(fields)), cols) {
            Ok(b) => batch = b,
            Err(e) => {
                return reject_all(rows_from, rejected, format!("internal decoding error: {e}"))
            }
        }
    }
    if !bad_rows.is_empty() {
        bad_rows.sort_by_key(|(r, _)| *r);
        bad_rows.dedup_by_key(|(r, _)| *r);
        let mut keep = vec![true; batch.num_rows()];
        for (row, e) in bad_rows {
            keep[row] = false;
            rejected.push(Rejected {
                index: rows_from[row],
                error: e,
            });
        }
        let mask = datafusion::arrow::array::BooleanArray::from(keep.clone());
        match datafusion::arrow::compute::filter_record_batch(&batch, &mask) {
            Ok(b) => batch = b,
            Err(e) => {
                return reject_all(rows_from, rejected, format!("internal decoding error: {e}"))
            }
        }
        rows_from = rows_from
            .into_iter()
            .zip(keep)
            .filter_map(|(i, k)| k.then_some(i))
            .collect();
        rejected.sort_by_key(|r| r.index);
    }
    match to_declared(batch, declared) {
        Ok(b) => Decoded {
            batch: (b.num_rows() > 0).then_some(b),
            rows_from,
            rejected,
        },
        Err(e) => reject_all(
            rows_from,
            rejected,
            format!("cannot convert to declared types: {e}"),
        ),
    }
}

fn reject_all(rows_from: Vec<usize>, mut rejected: Vec<Rejected>, error: String) -> Decoded {
    rejected.extend(rows_from.into_iter().map(|index| Rejected {
        index,
        error: error.clone(),
    }));
    rejected.sort_by_key(|r| r.index);
    Decoded {
        batch: None,
        rows_from: Vec::new(),
        rejected,
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_timestamps_accept_epoch_millis_and_rfc3339() {
        assert_eq!(parse_timestamp_ns("1000"), Ok(1_000_000_000));
        assert_eq!(
            parse_timestamp_ns("1970-01-01T00:00:01.5Z"),
            Ok(1_500_000_000)
        );
        assert!(parse_timestamp_ns("yesterday")
            .unwrap_err()
            .contains("expected a timestamp"));
    }

    #[test]
    fn format_options() {
        let mut o = BTreeMap::from([("format".to_string(), "csv".to_string())]);
        assert_eq!(
            Format::from_options(&mut o),
            Ok(Format::Csv {
                delimiter: b',',
                header: false
            })
        );
        let mut o = BTreeMap::from([("format".to_string(), "xml".to_string())]);
        assert!(Format::from_options(&mut o)
            .unwrap_err()
            .contains("unknown format"));
    }

    #[test]
    fn schema_registry_options() {
        let opts = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let url = ("schema.registry.url", "http://localhost:8081");
        let mut o = opts(&[("format", "avro"), url, ("avro.framing", "confluent")]);
        let f = Format::from_options(&mut o).unwrap();
        assert!(f
            .registry()
            .is_some_and(|r| r.url() == "http://localhost:8081"));
        assert!(o.is_empty(), "{o:?}");
        let err = |kv: &[(&str, &str)]| Format::from_options(&mut opts(kv)).unwrap_err();
        assert!(err(&[("format", "csv"), url]).contains("is for formats 'avro', 'json'"));
        assert!(err(&[("format", "protobuf")]).contains("needs a schema registry"));
        let f = Format::from_options(&mut opts(&[("format", "protobuf"), url])).unwrap();
        assert!(matches!(f, Format::ProtobufRegistry(_)));
        assert!(err(&[("format", "upsert_json"), url]).contains("not 'upsert_json'"));
        for json in [opts(&[("format", "json"), url]), opts(&[url])] {
            let f = Format::from_options(&mut json.clone()).unwrap();
            assert!(
                matches!(f, Format::JsonRegistry(_)) && !f.is_keyed(),
                "{json:?}"
            );
        }
        assert!(err(&[("format", "upsert_avro")]).contains("needs a schema registry"));
        assert!(err(&[("format", "debezium_avro")]).contains("needs a schema registry"));
        let f = Format::from_options(&mut opts(&[("format", "upsert_avro"), url])).unwrap();
        assert!(f.registry().is_some() && f.is_keyed() && f.registry_keys());
        let f = Format::from_options(&mut opts(&[("format", "debezium_avro"), url])).unwrap();
        assert!(f.registry().is_some() && f.is_keyed() && !f.registry_keys());
        assert!(err(&[("format", "upsert_avro"), url, ("avro.schema", "{}")]).contains("exclude"));
        assert!(err(&[("format", "avro"), url, ("avro.schema", "{}")]).contains("exclude"));
        assert!(err(&[("format", "avro"), url, ("avro.framing", "none")]).contains("only"));
        assert!(err(&[("format", "avro")]).contains("schema.registry.url"));
    }
}
