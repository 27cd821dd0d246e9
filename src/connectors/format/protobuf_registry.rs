//! Protobuf records in the Confluent wire format (`00`, a 4-byte schema id,
//! the message indexes, the message), their schemas (`.proto` text,
//! `schemaType` `PROTOBUF`) in a schema registry.
//!
//! Each writer schema is compiled once, when a record first names it
//! (`protox`, a protobuf compiler in Rust; the well-known
//! `google/protobuf/*.proto` imports are built in), and kept per id. The
//! message indexes pick the message type in the file (`[0]`, written as one
//! 0 byte, is the first). The message is decoded with `prost-reflect` and
//! written as JSON by protobuf's JSON mapping — field names as in the
//! `.proto`, 64-bit integers as numbers, enums by name, `Timestamp` as RFC
//! 3339, fields at their default value included — and that document is read
//! as the declared columns exactly as `format = 'json'` reads one: fields
//! are matched by name, a declared column the message type lacks is NULL, a
//! field not declared is ignored. A schema that does not compile, indexes
//! that name no message and bytes that do not decode reject the record with
//! the reason.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use prost_reflect::{DynamicMessage, FileDescriptor, MessageDescriptor, SerializeOptions};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::registry::{confluent_id, Lookup, Registry};
use super::{Decoded, JsonDecoder, Record, RecordDecoder};

/// Schemas kept compiled per decoder (the registry caches their text).
const MAX_COMPILED: usize = 64;
/// Most message indexes a record may give (nesting depth).
const MAX_INDEXES: usize = 32;
/// Bytes of the wire format's header before the message indexes.
const HEADER: usize = 5;
/// The name a registered schema is compiled under.
const FILE: &str = "registered.proto";

/// Decodes Confluent-framed protobuf messages whose schemas are in a registry.
pub struct RegistryProtobufDecoder {
    registry: Arc<Registry>,
    json: JsonDecoder,
    /// Per schema id: its compiled file, or why it cannot be read.
    compiled: HashMap<u32, Result<FileDescriptor, String>>,
}

impl RegistryProtobufDecoder {
    /// A decoder of messages into rows of `declared`.
    pub fn new(declared: SchemaRef, registry: Arc<Registry>) -> Result<Self, String> {
        Ok(RegistryProtobufDecoder {
            registry,
            json: JsonDecoder::new(declared)?,
            compiled: HashMap::new(),
        })
    }
}

impl RecordDecoder for RegistryProtobufDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        let (registry, compiled) = (&self.registry, &mut self.compiled);
        super::decode_documents(records, &mut self.json, |r| document(registry, compiled, r))
    }
}

/// `r`'s message as a JSON document, or why it cannot be read (`compiled`
/// keeps the schemas compiled so far).
fn document(
    registry: &Registry,
    compiled: &mut HashMap<u32, Result<FileDescriptor, String>>,
    r: &Record,
) -> Result<Vec<u8>, String> {
    let id = confluent_id(&r.payload)?;
    let file = match compiled.get(&id) {
        Some(f) => f.clone()?,
        None => {
            let source = match registry.lookup(id) {
                Lookup::Schema(s) => s,
                Lookup::Rejected(why) => return Err(why.to_string()),
            };
            let file = compile(&source)
                .map_err(|e| format!("schema id {id} cannot be compiled as protobuf: {e}"));
            if compiled.len() >= MAX_COMPILED {
                compiled.clear();
            }
            compiled.insert(id, file.clone());
            file?
        }
    };
    let (indexes, used) = message_indexes(&r.payload[HEADER..])?;
    let message = message_type(&file, &indexes)
        .ok_or_else(|| format!("schema id {id} has no message at indexes {indexes:?}"))?;
    let name = message.full_name().to_string();
    let decoded = DynamicMessage::decode(message, &r.payload[HEADER + used..])
        .map_err(|e| format!("invalid protobuf message ({name}, schema id {id}): {e}"))?;
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(false)
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let mut out = Vec::new();
    decoded
        .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &options)
        .map_err(|e| format!("protobuf message {name} has no JSON form: {e}"))?;
    Ok(out)
}

/// The registered schema, as the one file it is.
struct Registered(String);

impl FileResolver for Registered {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == FILE {
            File::from_source(name, &self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Compile `.proto` text (imports: the well-known types only).
fn compile(source: &str) -> Result<FileDescriptor, String> {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Registered(source.to_string()));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(FILE).map_err(|e| e.to_string())?;
    compiler
        .descriptor_pool()
        .get_file_by_name(FILE)
        .ok_or_else(|| "the compiled schema has no file".to_string())
}

/// The message indexes at the start of `b` (Confluent: zigzag varints, a
/// count then that many indexes; a count of 0 means `[0]`) and the bytes
/// they take.
fn message_indexes(b: &[u8]) -> Result<(Vec<i64>, usize), String> {
    let mut at = 0;
    let count = zigzag(b, &mut at)?;
    if count == 0 {
        return Ok((vec![0], at));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_INDEXES)
        .ok_or_else(|| format!("invalid message indexes: a count of {count}"))?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        indexes.push(zigzag(b, &mut at)?);
    }
    Ok((indexes, at))
}

/// A zigzag-encoded varint at `b[*at..]`; advances `at`.
fn zigzag(b: &[u8], at: &mut usize) -> Result<i64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = b.get(*at) else {
            return Err("invalid message indexes: the record ends inside them".into());
        };
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
        }
    }
    Err("invalid message indexes: a varint longer than 10 bytes".into())
}

/// The message type `indexes` name in `file`: the top-level message at the
/// first index, then nested ones.
fn message_type(file: &FileDescriptor, indexes: &[i64]) -> Option<MessageDescriptor> {
    let (first, rest) = indexes.split_first()?;
    let mut m = file.messages().nth(usize::try_from(*first).ok()?)?;
    for i in rest {
        let child = m.child_messages().nth(usize::try_from(*i).ok()?)?;
        m = child;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use prost::Message;
    use prost_reflect::Value;

    use super::*;
    use crate::connectors::format::registry::{cache_answer, test_registry, SchemaKind};

    const PROTO: &str = r#"
        syntax = "proto3";
        import "google/protobuf/timestamp.proto";
        message Order {
          int64 id = 1;
          string item = 2;
          int32 qty = 3;
          Status status = 4;
          google.protobuf.Timestamp at = 5;
          message Line { string sku = 1; }
        }
        enum Status { NEW = 0; PAID = 1; }
    "#;

    fn registry() -> Arc<Registry> {
        let r = test_registry(SchemaKind::Protobuf);
        let answer = serde_json::json!({"schema": PROTO, "schemaType": "PROTOBUF"});
        cache_answer(&r, 1, 200, &answer.to_string());
        let broken = serde_json::json!({"schema": "message {", "schemaType": "PROTOBUF"});
        cache_answer(&r, 2, 200, &broken.to_string());
        r
    }

    /// `message` encoded in the wire format with schema id `id` and `indexes` (raw bytes).
    fn framed(id: u32, indexes: &[u8], message: &DynamicMessage) -> Record {
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(indexes);
        payload.extend_from_slice(&message.encode_to_vec());
        Record {
            payload,
            ..Record::default()
        }
    }

    #[test]
    fn indexes_are_zigzag_varints() {
        assert_eq!(message_indexes(&[0, 9]), Ok((vec![0], 1)));
        // Count 2, then 1 and 3 (zigzag: 2n).
        assert_eq!(message_indexes(&[4, 2, 6]), Ok((vec![1, 3], 3)));
        assert!(message_indexes(&[4, 2])
            .unwrap_err()
            .contains("ends inside"));
        assert!(message_indexes(&[]).is_err());
        assert!(message_indexes(&[0xfe, 0x01])
            .unwrap_err()
            .contains("count"));
    }

    /// Messages decode into the declared columns (enums by name, timestamps,
    /// defaults present, a nested type by its indexes); a schema that does not
    /// compile, indexes that name nothing and bytes that are not the message
    /// are rejected with the reason.
    #[test]
    fn messages_decode_and_bad_ones_are_rejected() {
        let file = compile(PROTO).unwrap();
        let order = file.messages().next().unwrap();
        let mut m = DynamicMessage::new(order.clone());
        m.set_field_by_name("id", Value::I64(7_000_000_000));
        m.set_field_by_name("item", Value::String("fig".into()));
        m.set_field_by_name("status", Value::EnumNumber(1));
        let at = order.get_field_by_name("at").unwrap();
        let mut ts = DynamicMessage::new(at.kind().as_message().unwrap().clone());
        ts.set_field_by_name("seconds", Value::I64(1_767_225_600));
        m.set_field(&at, Value::Message(ts));
        let line = order.child_messages().next().unwrap();
        let mut l = DynamicMessage::new(line);
        l.set_field_by_name("sku", Value::String("x-1".into()));
        let declared = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("item", DataType::Utf8, true),
            Field::new("qty", DataType::Int32, true),
            Field::new("status", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("sku", DataType::Utf8, true),
        ]));
        let mut d = RegistryProtobufDecoder::new(declared, registry()).unwrap();
        let records = vec![
            framed(1, &[0], &m),
            framed(2, &[0], &m),
            framed(1, &[2, 8], &m),
            framed(1, &[4, 0, 0], &l),
            Record {
                payload: [&[0, 0, 0, 0, 1, 0][..], &[0xff, 0xff]].concat(),
                ..Record::default()
            },
        ];
        let out = d.decode(&records);
        assert_eq!(out.rows_from, vec![0, 3]);
        let errors: Vec<(usize, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.error.as_str()))
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].0 == 1 && errors[0].1.contains("cannot be compiled"),
            "{errors:?}"
        );
        assert!(errors[1].0 == 2 && errors[1].1.contains("no message at indexes [4]"));
        assert!(errors[2].0 == 4 && errors[2].1.contains("invalid protobuf message (Order"));
        let text = pretty_format_batches(&[out.batch.unwrap()])
            .unwrap()
            .to_string();
        assert!(
            text.contains("| 7000000000 | fig  | 0   | PAID   | 2026-01-01T00:00:00 |     |"),
            "{text}"
        );
        assert!(text.contains("| x-1 |"), "{text}");
    }
}
