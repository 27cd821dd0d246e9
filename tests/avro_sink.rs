//! Kafka sinks writing Avro (`encode = 'avro'`): schemas registered in a
//! schema registry (the stand-in of `common::registry`), messages in the
//! Confluent wire format read back from the topic and decoded here with the
//! registered schema, and read back by `upsert_avro` / `debezium_avro`
//! sources. The broker is librdkafka's mock cluster in this test process.

mod common;

use std::collections::HashMap;

use common::kafka::read_all_bytes;
use common::registry::FakeRegistry;
use common::{eventually, PgClient, Server};
use rdkafka::mocking::MockCluster;

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// Reads Avro datums.
struct Datum<'a>(&'a [u8]);

impl Datum<'_> {
    fn long(&mut self) -> i64 {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = self.0[0];
            self.0 = &self.0[1..];
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        (z >> 1) as i64 ^ -((z & 1) as i64)
    }

    fn string(&mut self) -> String {
        let n = self.long() as usize;
        let s = String::from_utf8(self.0[..n].to_vec()).expect("UTF-8");
        self.0 = &self.0[n..];
        s
    }

    /// A `["null", long]`.
    fn nullable_long(&mut self) -> Option<i64> {
        (self.long() == 1).then(|| self.long())
    }
}

/// A `per_k` row: `k`, `total`.
type Row = (String, Option<i64>);

/// The schema id of a Confluent-framed message, and its datum.
fn unframe(m: &[u8]) -> (u32, Datum<'_>) {
    assert_eq!(m[0], 0, "magic byte");
    let id = u32::from_be_bytes([m[1], m[2], m[3], m[4]]);
    (id, Datum(&m[5..]))
}

/// An upsert sink and a changelog sink writing Avro: the registered schemas,
/// the messages (keys, rows, tombstones, envelopes), and sources of format
/// `upsert_avro` and `debezium_avro` reading them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_sinks_register_schemas_and_write_the_wire_format() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("per_k", 1, 1).expect("topic");
    cluster.create_topic("per_k_changes", 1, 1).expect("topic");
    let mut registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), HashMap::new()).await;
    let url = registry.url();
    let s = Server::start().await;
    let c = s.client().await;
    exec(
        &c,
        "CREATE SECRET registry_pw AS 'p';
         CREATE TABLE t (k VARCHAR, v BIGINT, PRIMARY KEY (k));
         CREATE MATERIALIZED VIEW per_k AS SELECT k, sum(v) AS total FROM t GROUP BY k;",
    )
    .await;
    let registry_options = format!(
        "'schema.registry.url' = '{url}', 'schema.registry.username' = 'u',
         'schema.registry.password' = SECRET registry_pw"
    );
    // A registry that cannot be reached fails CREATE SINK.
    registry.stop().await;
    let e = c
        .batch_execute(&format!(
            "CREATE SINK early FROM per_k WITH (connector = 'kafka', topic = 'per_k',
               'bootstrap.servers' = '{bootstrap}', format = 'upsert', encode = 'avro',
               {registry_options})"
        ))
        .await
        .expect_err("a registry that is down");
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "58000", "{}", db.message());
    assert!(
        db.message().contains("cannot register its Avro schemas"),
        "{}",
        db.message()
    );
    registry.restart().await;
    exec(
        &c,
        &format!(
            "CREATE SINK upserts FROM per_k WITH (connector = 'kafka', topic = 'per_k',
               'bootstrap.servers' = '{bootstrap}', format = 'upsert', encode = 'avro',
               {registry_options});
             CREATE SINK changes FROM per_k WITH (connector = 'kafka', topic = 'per_k_changes',
               'bootstrap.servers' = '{bootstrap}', encode = 'avro', {registry_options});
             CREATE SOURCE upsert_back (k VARCHAR, total BIGINT, PRIMARY KEY (k))
               WITH (connector = 'kafka', topic = 'per_k', 'bootstrap.servers' = '{bootstrap}',
                     format = 'upsert_avro', {registry_options});
             CREATE SOURCE changes_back (k VARCHAR, total BIGINT, PRIMARY KEY (k))
               WITH (connector = 'kafka', topic = 'per_k_changes',
                     'bootstrap.servers' = '{bootstrap}', format = 'debezium_avro',
                     {registry_options});
             CREATE MATERIALIZED VIEW upsert_rows AS SELECT k, total FROM upsert_back;
             CREATE MATERIALIZED VIEW change_rows AS SELECT k, total FROM changes_back;"
        ),
    )
    .await;
    exec(&c, "INSERT INTO t VALUES ('a', 1), ('b', 2)").await;
    for view in ["upsert_rows", "change_rows"] {
        eventually(
            &c,
            &format!("SELECT k, total FROM {view} ORDER BY k"),
            &[&["a", "1"], &["b", "2"]],
        )
        .await;
    }
    exec(&c, "INSERT INTO t VALUES ('a', 5)").await;
    exec(&c, "DELETE FROM t WHERE k = 'b'").await;
    for view in ["upsert_rows", "change_rows"] {
        eventually(
            &c,
            &format!("SELECT k, total FROM {view} ORDER BY k"),
            &[&["a", "5"]],
        )
        .await;
    }

    // The registered schemas.
    let (key_id, key_schema) = registry.latest("per_k-key").expect("key schema");
    let (value_id, value_schema) = registry.latest("per_k-value").expect("value schema");
    let key_schema: serde_json::Value = serde_json::from_str(&key_schema).unwrap();
    assert_eq!(key_schema["fields"][0]["name"], "k");
    let value_schema: serde_json::Value = serde_json::from_str(&value_schema).unwrap();
    assert_eq!(value_schema["name"], "per_k");
    assert_eq!(
        value_schema["fields"][1],
        serde_json::json!({"name": "total", "type": ["null", "long"], "default": null})
    );
    // The same key schema for both topics: one id.
    assert_eq!(
        registry.latest("per_k_changes-key").map(|k| k.0),
        Some(key_id)
    );
    let (envelope_id, envelope) = registry.latest("per_k_changes-value").expect("envelope");
    assert!(
        envelope.contains("\"before\"") && envelope.contains("\"op\""),
        "{envelope}"
    );

    // The upsert topic: keys and rows in the wire format, a tombstone for the delete.
    let topic: Vec<(String, Option<Row>)> = read_all_bytes(&bootstrap, "per_k", 1)
        .into_iter()
        .map(|(_, _, k, v)| {
            let key = k.expect("a key");
            let (id, mut d) = unframe(&key);
            assert_eq!(id, key_id);
            let key = d.string();
            let value = v.map(|v| {
                let (id, mut d) = unframe(&v);
                assert_eq!(id, value_id);
                (d.string(), d.nullable_long())
            });
            (key, value)
        })
        .collect();
    let row = |k: &str, n: i64| Some((k.to_string(), Some(n)));
    assert_eq!(
        topic,
        vec![
            ("a".to_string(), row("a", 1)),
            ("b".to_string(), row("b", 2)),
            ("a".to_string(), row("a", 5)),
            ("b".to_string(), None),
        ]
    );
    // The changelog topic: envelopes.
    let events: Vec<String> = read_all_bytes(&bootstrap, "per_k_changes", 1)
        .into_iter()
        .map(|(_, _, _, v)| {
            let v = v.expect("a value");
            let (id, mut d) = unframe(&v);
            assert_eq!(id, envelope_id);
            let mut side = || (d.long() == 1).then(|| (d.string(), d.nullable_long()));
            let (before, after) = (side(), side());
            format!("{} {before:?} {after:?}", d.string())
        })
        .collect();
    assert_eq!(
        events,
        vec![
            r#"c None Some(("a", Some(1)))"#,
            r#"c None Some(("b", Some(2)))"#,
            r#"u Some(("a", Some(1))) Some(("a", Some(5)))"#,
            r#"d Some(("b", Some(2))) None"#,
        ]
    );
}

#[tokio::test]
async fn avro_sink_options_are_checked() {
    let s = Server::start().await;
    let c = s.client().await;
    exec(
        &c,
        "CREATE TABLE t (k VARCHAR, v BIGINT);
         CREATE MATERIALIZED VIEW n AS SELECT k, count(*) AS \"per-k\" FROM t GROUP BY k;
         CREATE MATERIALIZED VIEW gaps AS SELECT k, INTERVAL '1' DAY AS gap FROM t;",
    )
    .await;
    for (sql, state, text) in [
        (
            "CREATE SINK a FROM n WITH (connector = 'kafka', topic = 'x', \
             'bootstrap.servers' = 'localhost:1', encode = 'avro')",
            "22023",
            "needs a schema registry",
        ),
        (
            "CREATE SINK b FROM n WITH (connector = 'kafka', topic = 'x', \
             'bootstrap.servers' = 'localhost:1', encode = 'avro', \
             'schema.registry.url' = 'http://127.0.0.1:1')",
            "0A000",
            "not a valid Avro field name",
        ),
        (
            "CREATE SINK c FROM gaps WITH (connector = 'kafka', topic = 'x', \
             'bootstrap.servers' = 'localhost:1', encode = 'avro', \
             'schema.registry.url' = 'http://127.0.0.1:1')",
            "0A000",
            "no Avro form",
        ),
        (
            "CREATE SINK d FROM n WITH (connector = 'kafka', topic = 'x', \
             'bootstrap.servers' = 'localhost:1', encode = 'protobuf')",
            "22023",
            "encode must be",
        ),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        let db = e.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), state, "{sql}: {}", db.message());
        assert!(db.message().contains(text), "{sql}: {}", db.message());
    }
}
