use std::collections::BTreeMap;

use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::arrow::array::{
    AsArray, Decimal128Array, Int64Array, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{Int64Type, IntervalUnit, TimestampMicrosecondType};

use super::*;

fn registry() -> Arc<Registry> {
    let mut o = BTreeMap::from([(
        "schema.registry.url".to_string(),
        "http://127.0.0.1:1".to_string(),
    )]);
    Registry::from_options(&mut o).unwrap().unwrap()
}

fn view() -> Schema {
    Schema::new(vec![
        Field::new("k", DataType::Utf8View, false),
        Field::new("total", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("amount", DataType::Decimal128(10, 2), true),
    ])
}

fn batch() -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(view()),
        vec![
            Arc::new(datafusion::arrow::array::StringViewArray::from(vec![
                "a", "b",
            ])),
            Arc::new(Int64Array::from(vec![Some(5), None])),
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_500_000_000),
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(1234), None])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap()
}

/// Decode Confluent-framed `messages` written with `schema` as id `id`.
fn decode(schema: &str, id: u32, messages: &[Vec<u8>]) -> RecordBatch {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(Fingerprint::Id(id), AvroSchema::new(schema.to_string()))
        .unwrap();
    let mut d = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_active_fingerprint(Fingerprint::Id(id))
        .build_decoder()
        .unwrap();
    for m in messages {
        assert_eq!(&m[..5], &[0, 0, 0, 0, id as u8]);
        assert_eq!(d.decode(m).unwrap(), m.len());
    }
    d.flush().unwrap().unwrap()
}

#[test]
fn schemas_follow_the_view_columns() {
    let s = AvroSchemas::new(registry(), "t.out", "per k", &view(), &[0], false).unwrap();
    let v: Value = serde_json::from_str(s.value_schema()).unwrap();
    assert_eq!(v["name"], "per_k");
    assert_eq!(v["namespace"], "eddy");
    assert_eq!(v["fields"][0], json!({"name": "k", "type": "string"}));
    assert_eq!(
        v["fields"][1],
        json!({"name": "total", "type": ["null", "long"], "default": null})
    );
    assert_eq!(
        v["fields"][2]["type"][1],
        json!({"type": "long", "logicalType": "timestamp-micros"})
    );
    assert_eq!(
        v["fields"][3]["type"][1],
        json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2})
    );
    assert_eq!(s.subjects(), vec!["t.out-key", "t.out-value"]);
    let key: Value = serde_json::from_str(&s.key.as_ref().unwrap().avro).unwrap();
    assert_eq!(key["name"], "per_k_key");

    let bad = Schema::new(vec![Field::new(
        "gap",
        DataType::Interval(IntervalUnit::MonthDayNano),
        true,
    )]);
    let e = AvroSchemas::new(registry(), "t", "v", &bad, &[], false).unwrap_err();
    assert_eq!(e.sqlstate(), "0A000");
    assert!(e.to_string().contains("no Avro form"), "{e}");
    let bad = Schema::new(vec![Field::new("count(*)", DataType::Int64, false)]);
    let e = AvroSchemas::new(registry(), "t", "v", &bad, &[], false).unwrap_err();
    assert!(e.to_string().contains("not a valid Avro field name"), "{e}");
}

#[test]
fn rows_and_keys_encode_in_the_confluent_wire_format() {
    let s = Arc::new(AvroSchemas::new(registry(), "t", "v", &view(), &[0], false).unwrap());
    // No registry here: the ids it would give.
    s.ids.set((Some(3), 4)).unwrap();
    let mut e = AvroEncoders::new(s.clone()).unwrap();
    let b = batch();
    let rows = e.rows(&b).unwrap();
    let back = decode(s.value_schema(), 4, &rows);
    assert_eq!(back.column(0).as_string::<i32>().value(1), "b");
    let total = back.column(1).as_primitive::<Int64Type>();
    assert_eq!((total.value(0), total.is_null(1)), (5, true));
    let ts = back.column(2).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_500_000);
    assert_eq!(
        back.column(3)
            .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
            .value(0),
        1234
    );
    let keys = e.keys(&b.project(&[0]).unwrap()).unwrap();
    let back = decode(&s.key.as_ref().unwrap().avro, 3, &keys);
    assert_eq!(back.column(0).as_string::<i32>().value(0), "a");
}

#[test]
fn changes_encode_as_envelopes() {
    let s = Arc::new(AvroSchemas::new(registry(), "t", "v", &view(), &[0], true).unwrap());
    s.ids.set((Some(3), 5)).unwrap();
    let mut e = AvroEncoders::new(s.clone()).unwrap();
    let values = e
        .envelopes(&batch(), &[("u", Some(1), Some(0)), ("d", Some(1), None)])
        .unwrap();
    let back = decode(s.value_schema(), 5, &values);
    let ops: &StringArray = back.column(2).as_string::<i32>();
    assert_eq!((ops.value(0), ops.value(1)), ("u", "d"));
    let after = back.column(1).as_struct();
    assert!(after.is_valid(0) && after.is_null(1));
    assert_eq!(after.column(0).as_string::<i32>().value(0), "a");
    let before = back.column(0).as_struct();
    assert_eq!(before.column(0).as_string::<i32>().value(1), "b");
}
