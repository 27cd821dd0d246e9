use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Field, Float64Type, Int64Type, Schema};

use super::super::avro::tests::long;
use super::super::registry::cache_answer;
use super::*;

/// Avro `string`.
fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// A record in the Confluent wire format: schema `id`, then `datum`.
fn framed(id: u32, datum: Vec<u8>) -> Record {
    Record {
        payload: [vec![0], id.to_be_bytes().to_vec(), datum].concat(),
        ..Default::default()
    }
}

/// v1: `{id: int, item: string, qty: int, legacy: string}`.
const V1: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "int"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "int"}, {"name": "legacy", "type": "string"}]}"#;

/// v2: `legacy` removed, `channel` added with a default, `qty` widened to long,
/// `price` a nullable int.
const V2: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "id", "type": "int"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "long"}, {"name": "channel", "type": "string", "default": "web"},
    {"name": "price", "type": ["null", "int"], "default": null}]}"#;

fn v1(id: i64, item: &str, qty: i64, legacy: &str) -> Record {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    string(legacy, &mut d);
    framed(1, d)
}

fn v2(id: i64, item: &str, qty: i64, channel: &str, price: Option<i64>) -> Record {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    string(channel, &mut d);
    match price {
        None => long(0, &mut d),
        Some(p) => {
            long(1, &mut d);
            long(p, &mut d);
        }
    }
    framed(2, d)
}

fn registry() -> Arc<Registry> {
    let mut o = BTreeMap::from([(
        "schema.registry.url".to_string(),
        "http://127.0.0.1:1".to_string(),
    )]);
    let r = Registry::from_options(&mut o).unwrap().unwrap();
    let answer = |s: &str| serde_json::json!({ "schema": s }).to_string();
    cache_answer(&r, 1, 200, &answer(V1));
    cache_answer(&r, 2, 200, &answer(V2));
    cache_answer(&r, 5, 200, &answer("\"long\""));
    cache_answer(
        &r,
        6,
        200,
        r#"{"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}"#,
    );
    cache_answer(
        &r,
        99,
        404,
        r#"{"error_code": 40403, "message": "Schema 99 not found"}"#,
    );
    r
}

fn declared(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

#[test]
fn writer_schemas_resolve_to_the_declared_columns() {
    let schema = declared(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("legacy", DataType::Utf8, true),
    ]);
    let mut d = RegistryAvroDecoder::new(schema, registry());
    // Both versions in one chunk, interleaved.
    let out = d.decode(&[
        v1(1, "apple", 3, "old"),
        v2(2, "pear", 5_000_000_000, "app", Some(7)),
        v2(3, "fig", 1, "web", None),
        v1(4, "kiwi", 2, "x"),
    ]);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    assert_eq!(out.rows_from, vec![0, 1, 2, 3]);
    let b = out.batch.unwrap();
    // int → BIGINT (promotion), long read as is.
    assert_eq!(
        b.column(0).as_primitive::<Int64Type>().values(),
        &[1, 2, 3, 4]
    );
    assert_eq!(
        b.column(2).as_primitive::<Int64Type>().values(),
        &[3, 5_000_000_000, 1, 2]
    );
    // A field v2 added (with a default) is NULL in v1's records.
    let channel = b.column(3).as_string::<i32>();
    assert!(channel.is_null(0) && channel.is_null(3));
    assert_eq!((channel.value(1), channel.value(2)), ("app", "web"));
    // ["null", int] → DOUBLE.
    let price = b.column(4).as_primitive::<Float64Type>();
    assert_eq!(price.value(1), 7.0);
    assert!(price.is_null(0) && price.is_null(2));
    assert_eq!(b.column(1).as_string::<i32>().value(3), "kiwi");
    // A field v2 removed is NULL in v2's records.
    let legacy = b.column(5).as_string::<i32>();
    assert_eq!((legacy.value(0), legacy.value(3)), ("old", "x"));
    assert!(legacy.is_null(1) && legacy.is_null(2));
}

#[test]
fn unknown_ids_unframed_and_broken_records_are_rejected() {
    let schema = declared(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("item", DataType::Utf8, true),
    ]);
    let mut d = RegistryAvroDecoder::new(schema, registry());
    let mut truncated = v1(6, "plum", 1, "y");
    truncated.payload.truncate(8);
    let out = d.decode(&[
        v1(1, "apple", 3, "old"),
        framed(99, vec![2]),
        Record {
            payload: br#"{"id": 1}"#.to_vec(),
            ..Default::default()
        },
        framed(7, vec![2]),
        truncated,
        v2(5, "fig", 1, "web", None),
    ]);
    assert_eq!(out.rows_from, vec![0, 5]);
    let errors: Vec<(usize, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.error.as_str()))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0]
            .1
            .contains("schema id 99 is not in the schema registry"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("Confluent wire format"), "{errors:?}");
    assert!(errors[2].1.contains("schema id 7"), "{errors:?}");
    assert!(
        errors[3].1.starts_with("invalid Avro record (schema id 1)"),
        "{errors:?}"
    );
    // The decoder of schema 1 was rebuilt after the broken record.
    let out = d.decode(&[v1(8, "lime", 1, "z")]);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

#[test]
fn incompatible_writer_schemas_reject_their_records() {
    // v2's qty is a long: not readable as INT (a narrowing); item is text: not a number.
    let schema = declared(vec![
        Field::new("id", DataType::Int32, true),
        Field::new("qty", DataType::Int32, true),
    ]);
    let mut d = RegistryAvroDecoder::new(schema, registry());
    let out = d.decode(&[v1(1, "apple", 3, "old"), v2(2, "pear", 5, "app", None)]);
    assert_eq!(out.rows_from, vec![0]);
    assert_eq!(out.rejected.len(), 1);
    let e = &out.rejected[0].error;
    assert!(
        e.contains("schema id 2 cannot be read as the declared columns")
            && e.contains("field `qty`"),
        "{e}"
    );
    let schema = declared(vec![Field::new("item", DataType::Int64, true)]);
    let mut d = RegistryAvroDecoder::new(schema, registry());
    let out = d.decode(&[
        v1(1, "apple", 3, "old"),
        framed(5, vec![2]),
        framed(6, vec![2]),
    ]);
    let errors: Vec<&str> = out.rejected.iter().map(|r| r.error.as_str()).collect();
    assert!(errors[0].contains("field `item`"), "{errors:?}");
    assert!(errors[1].contains("is not an Avro record"), "{errors:?}");
    assert!(errors[2].contains("is of type PROTOBUF"), "{errors:?}");
}

#[test]
fn promotions_follow_avro_rules() {
    let p = |t: &str, d: DataType| promote(&serde_json::from_str(t).unwrap(), &d).to_string();
    assert_eq!(p(r#""int""#, DataType::Int64), r#""long""#);
    assert_eq!(
        p(r#"["null", "int"]"#, DataType::Float32),
        r#"["null","float"]"#
    );
    assert_eq!(p(r#"{"type": "long"}"#, DataType::Float64), r#""double""#);
    assert_eq!(p(r#""string""#, DataType::Binary), r#""bytes""#);
    // No narrowing, no promotion of logical types.
    assert_eq!(p(r#""long""#, DataType::Int32), r#""long""#);
    assert_eq!(p(r#""double""#, DataType::Int64), r#""double""#);
    let date = r#"{"logicalType":"date","type":"int"}"#;
    assert_eq!(p(date, DataType::Int64), date);
}
