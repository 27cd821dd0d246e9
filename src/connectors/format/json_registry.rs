//! JSON records in the Confluent wire format (`00`, a 4-byte schema id, the
//! JSON document), as Confluent's JSON Schema serializer writes them: the
//! header is checked and taken off, the id must name a JSON Schema the
//! registry has (fetched and cached as for Avro, see [`super::registry`]),
//! and the document is read as the declared columns exactly as
//! `format = 'json'` reads it.
//!
//! The declared columns stay the contract: documents are not validated
//! against the JSON Schema (Confluent's deserializer validates only when
//! asked to), and a schema change needs no resolution — fields a document
//! lacks are NULL, fields it adds are ignored, as for plain JSON.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use super::registry::{confluent_id, Lookup, Registry};
use super::{Decoded, JsonDecoder, Record, RecordDecoder};

/// Bytes of the wire format's header.
const HEADER: usize = 5;

/// Decodes Confluent-framed JSON documents whose schemas are in a registry.
pub struct RegistryJsonDecoder {
    registry: Arc<Registry>,
    json: JsonDecoder,
}

impl RegistryJsonDecoder {
    /// A decoder of documents into rows of `declared`.
    pub fn new(declared: SchemaRef, registry: Arc<Registry>) -> Result<Self, String> {
        Ok(RegistryJsonDecoder {
            registry,
            json: JsonDecoder::new(declared)?,
        })
    }
}

/// Why `r` cannot be read (its header, its schema id), if it cannot.
fn check(registry: &Registry, r: &Record) -> Result<(), String> {
    let id = confluent_id(&r.payload)?;
    match registry.lookup(id) {
        Lookup::Schema(_) => Ok(()),
        Lookup::Rejected(why) => Err(why.to_string()),
    }
}

impl RecordDecoder for RegistryJsonDecoder {
    fn decode(&mut self, records: &[Record]) -> Decoded {
        let registry = &self.registry;
        let document = |r: &Record| {
            check(registry, r)?;
            Ok(r.payload[HEADER..].to_vec())
        };
        super::decode_documents(records, &mut self.json, document)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;
    use crate::connectors::format::registry::{cache_answer, test_registry, SchemaKind};

    fn registry() -> Arc<Registry> {
        let r = test_registry(SchemaKind::Json);
        let json = r#"{"schema": "{\"type\": \"object\"}", "schemaType": "JSON"}"#;
        cache_answer(&r, 1, 200, json);
        cache_answer(&r, 2, 200, r#"{"schema": "\"long\""}"#);
        r
    }

    fn framed(id: u32, doc: &str) -> Record {
        let mut payload = vec![0];
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(doc.as_bytes());
        Record {
            payload,
            offset: 7,
            ..Record::default()
        }
    }

    /// Framed documents decode as plain JSON would; a bad header, an Avro
    /// schema id, a document that does not fit: each rejected with its
    /// reason, in record order, the others kept.
    #[test]
    fn framed_documents_decode_and_bad_ones_are_rejected_in_order() {
        let declared = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("item", DataType::Utf8, true),
        ]));
        let mut d = RegistryJsonDecoder::new(declared, registry()).unwrap();
        let records = vec![
            framed(1, r#"{"id": 1, "item": "apple"}"#),
            Record {
                payload: br#"{"id": 2}"#.to_vec(),
                ..Record::default()
            },
            framed(2, r#"{"id": 3}"#),
            framed(1, r#"{"id": "four"}"#),
            framed(1, r#"{"id": 5, "extra": true}"#),
        ];
        let out = d.decode(&records);
        assert_eq!(out.rows_from, vec![0, 4]);
        let errors: Vec<(usize, &str)> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.error.as_str()))
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].0 == 1 && errors[0].1.contains("starts with byte 0x7b"));
        assert!(errors[1].0 == 2 && errors[1].1.contains("is of type AVRO"));
        assert!(
            errors[2].0 == 3 && errors[2].1.contains("`id`"),
            "{errors:?}"
        );
        let text = pretty_format_batches(&[out.batch.unwrap()])
            .unwrap()
            .to_string();
        assert!(
            text.contains("| 1  | apple |") && text.contains("| 5  |       |"),
            "{text}"
        );
    }
}
