use std::collections::BTreeMap;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};

use super::super::avro::tests::long;
use super::super::changes::{ChangeDecoder, OP_COLUMN};
use super::super::registry::cache_answer;
use super::*;

/// Avro `string`.
fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    [&[0], &id.to_be_bytes()[..], datum].concat()
}

/// Rows v1: `{id: long, item: string, qty: int, legacy: string}`.
const ROW_V1: &str = r#"{"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "int"}, {"name": "legacy", "type": "string"}]}"#;
/// Rows v2: `legacy` removed, `qty` widened to long, `channel` added with a default.
const ROW_V2: &str = r#"{"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "long"}, {"name": "channel", "type": "string", "default": "web"}]}"#;

/// A Debezium envelope around `row` (a record named `Value`).
fn envelope(row: &str) -> String {
    format!(
        r#"{{"type": "record", "name": "Envelope", "namespace": "pg.public.orders", "fields": [
        {{"name": "before", "type": ["null", {row}], "default": null}},
        {{"name": "after", "type": ["null", "Value"], "default": null}},
        {{"name": "source", "type": {{"type": "record", "name": "Source", "fields": [
            {{"name": "db", "type": "string"}}]}}}},
        {{"name": "op", "type": "string"}},
        {{"name": "ts_ms", "type": ["null", "long"], "default": null}}]}}"#
    )
}

fn row_v1(id: i64, item: &str, qty: i64, legacy: &str) -> Vec<u8> {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    string(legacy, &mut d);
    d
}

fn row_v2(id: i64, item: &str, qty: i64, channel: &str) -> Vec<u8> {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    string(channel, &mut d);
    d
}

/// An event of envelope schema `id`: `op` with optional before and after rows.
fn event(id: u32, op: &str, before: Option<Vec<u8>>, after: Option<Vec<u8>>) -> Vec<u8> {
    let mut d = Vec::new();
    for side in [before, after] {
        match side {
            None => long(0, &mut d),
            Some(row) => {
                long(1, &mut d);
                d.extend(row);
            }
        }
    }
    string("inventory", &mut d);
    string(op, &mut d);
    long(1, &mut d);
    long(1_700_000_000_000, &mut d);
    framed(id, &d)
}

fn registry() -> Arc<Registry> {
    let mut o = BTreeMap::from([(
        "schema.registry.url".to_string(),
        "http://127.0.0.1:1".to_string(),
    )]);
    let r = Registry::from_options(&mut o).unwrap().unwrap();
    let answer = |s: &str| serde_json::json!({ "schema": s }).to_string();
    cache_answer(&r, 1, 200, &answer(ROW_V1));
    cache_answer(&r, 2, 200, &answer(ROW_V2));
    cache_answer(&r, 3, 200, &answer(&envelope(ROW_V1)));
    cache_answer(&r, 4, 200, &answer(&envelope(ROW_V2)));
    let key = r#"{"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]}"#;
    cache_answer(&r, 10, 200, &answer(key));
    cache_answer(&r, 11, 200, &answer("\"long\""));
    cache_answer(&r, 12, 200, &answer("\"double\""));
    r
}

fn declared() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("item", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("legacy", DataType::Utf8, true),
    ]))
}

fn decoder(format: ChangeFormat) -> ChangeDecoder {
    ChangeDecoder::new(format, declared(), vec!["id".into()], Some(registry())).unwrap()
}

fn rec(key: Option<Vec<u8>>, payload: Vec<u8>) -> Record {
    Record {
        payload,
        key,
        ..Default::default()
    }
}

/// `(id, item, qty, channel, legacy, upsert)` per decoded row.
type Row = (
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    bool,
);

fn rows(d: &Decoded) -> Vec<Row> {
    let Some(b) = &d.batch else {
        return Vec::new();
    };
    assert_eq!(b.schema().field(5).name(), OP_COLUMN);
    assert!(!b.schema().field(5).is_nullable());
    let text = |c: usize, i: usize| {
        let a = b.column(c).as_string::<i32>();
        a.is_valid(i).then(|| a.value(i).to_string())
    };
    let qty = b.column(2).as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| {
            (
                b.column(0).as_primitive::<Int64Type>().value(i),
                text(1, i),
                qty.is_valid(i).then(|| qty.value(i)),
                text(3, i),
                text(4, i),
                b.column(5).as_boolean().value(i),
            )
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn upsert_avro_values_upsert_and_tombstones_delete_by_avro_or_json_keys() {
    let mut d = decoder(ChangeFormat::UpsertAvro);
    let out = d.decode(&[
        rec(None, framed(1, &row_v1(1, "pen", 2, "old"))),
        rec(Some(framed(10, &[4])), Vec::new()),
        // v2: a field added with a default, one removed, an int widened.
        rec(None, framed(2, &row_v2(3, "ink", 5_000_000_000, "app"))),
        rec(Some(framed(11, &[8])), Vec::new()),
        rec(Some(b"5".to_vec()), Vec::new()),
        rec(Some(br#"{"id": 6}"#.to_vec()), Vec::new()),
        rec(None, Vec::new()),
        rec(Some(framed(12, &[0; 8])), Vec::new()),
        rec(Some(framed(10, &[4, 4])), Vec::new()),
        rec(None, framed(1, &[2])),
    ]);
    assert_eq!(
        rows(&out),
        vec![
            (1, s("pen"), Some(2), None, s("old"), true),
            (2, None, None, None, None, false),
            (3, s("ink"), Some(5_000_000_000), s("app"), None, true),
            (4, None, None, None, None, false),
            (5, None, None, None, None, false),
            (6, None, None, None, None, false),
        ]
    );
    assert_eq!(out.rows_from, vec![0, 1, 2, 3, 4, 5]);
    let errors: Vec<(usize, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.error.as_str()))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].1.contains("needs a key"), "{errors:?}");
    assert!(errors[1].1.contains("type \"double\""), "{errors:?}");
    assert!(errors[2].1.contains("schema id 10"), "{errors:?}");
    assert!(errors[3].1.contains("invalid Avro record"), "{errors:?}");
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![6, 7, 8, 9]
    );
    // Only values: the fast path.
    let out = d.decode(&[rec(None, framed(2, &row_v2(7, "cap", 1, "web")))]);
    assert_eq!(
        rows(&out),
        vec![(7, s("cap"), Some(1), s("web"), None, true)]
    );
}

#[test]
fn debezium_avro_events_upsert_after_and_delete_before() {
    let mut d = decoder(ChangeFormat::DebeziumAvro);
    let out = d.decode(&[
        rec(None, event(3, "r", None, Some(row_v1(1, "pen", 2, "old")))),
        rec(None, event(3, "c", None, Some(row_v1(2, "ink", 5, "old")))),
        // The envelope of row v2: read with the same rules as format 'avro'.
        rec(
            None,
            event(
                4,
                "u",
                Some(row_v2(1, "pen", 2, "web")),
                Some(row_v2(1, "pen", 7, "app")),
            ),
        ),
        rec(None, event(4, "d", Some(row_v2(2, "ink", 5, "web")), None)),
        // Debezium's tombstone after a delete, and a truncate: nothing to apply.
        rec(Some(b"2".to_vec()), Vec::new()),
        rec(None, event(4, "t", None, None)),
        rec(None, event(4, "x", None, None)),
        rec(None, event(4, "d", None, None)),
        rec(None, framed(1, &row_v1(9, "not", 1, "an event"))),
    ]);
    assert_eq!(
        rows(&out),
        vec![
            (1, s("pen"), Some(2), None, s("old"), true),
            (2, s("ink"), Some(5), None, s("old"), true),
            (1, s("pen"), Some(7), s("app"), None, true),
            (2, s("ink"), Some(5), s("web"), None, false),
        ]
    );
    assert_eq!(out.rows_from, vec![0, 1, 2, 3]);
    let errors: Vec<(usize, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.error.as_str()))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].1.contains("unknown op \"x\""), "{errors:?}");
    assert!(
        errors[1].1.contains("without a \"before\" row"),
        "{errors:?}"
    );
    assert!(
        errors[2].1.contains("not a Debezium envelope"),
        "{errors:?}"
    );
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
}

#[test]
fn primitive_keys() {
    assert_eq!(primitive("long", &[3]), Ok(Value::from(-2)));
    let mut d = Vec::new();
    string("abc", &mut d);
    assert_eq!(primitive("string", &d), Ok(Value::from("abc")));
    assert_eq!(primitive("boolean", &[1]), Ok(Value::Bool(true)));
    assert!(primitive("string", &[8, b'a']).is_err());
    assert!(primitive("int", &[0x80]).is_err());
    assert!(primitive("int", &[2, 2])
        .unwrap_err()
        .contains("1 of 2 bytes"));
}
