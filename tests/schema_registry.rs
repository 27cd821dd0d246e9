//! Avro, JSON and Protobuf Kafka sources whose writer schemas come from a schema registry
//! (`'schema.registry.url'`), end to end: librdkafka's mock cluster (a real
//! broker on a loopback port, in this process), a real `eddy serve` process
//! queried over pgwire, and a registry.
//!
//! The registry is a stand-in in this test process (`common::registry`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::kafka::avro_long as long;
use common::kafka::producer;
use common::registry::{avro_string as string, framed, FakeRegistry};
use common::{eventually, rows, until, PgClient, Server};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The source's status and error.
const SOURCE_STATUS: &str = "SELECT status, last_error FROM eddy.sources";

async fn exec(client: &PgClient, sql: &str) {
    if let Err(e) = client.batch_execute(sql).await {
        panic!("`{sql}` failed: {}", common::error_text(&e));
    }
}

/// v1: `{id: int, item: string, qty: int, legacy: string}`.
const V1: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "int"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "int"}, {"name": "legacy", "type": "string"}]}"#;
/// v2: `legacy` removed, `channel` added with a default, `qty` widened to long.
const V2: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "int"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "long"}, {"name": "channel", "type": "string", "default": "web"}]}"#;
/// v3: v2 plus a field the source does not declare.
const V3: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "int"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "long"}, {"name": "channel", "type": "string", "default": "web"},
    {"name": "extra", "type": "double", "default": 0.0}]}"#;

fn v1(id: i64, item: &str, qty: i64, legacy: &str) -> Vec<u8> {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    string(legacy, &mut d);
    framed(1, d)
}

fn v2(schema: u32, id: i64, item: &str, qty: i64, channel: &str) -> Vec<u8> {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    string(channel, &mut d);
    if schema == 3 {
        d.extend_from_slice(&1.5f64.to_le_bytes());
    }
    framed(schema, d)
}

async fn produce(p: &FutureProducer, topic: &str, payloads: &[Vec<u8>]) {
    for b in payloads {
        p.send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(b.as_slice()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    }
}

/// Writer schemas v1 then v2 (a field added with a default, one removed, an
/// int widened to long) read as the declared columns, from a registry asking
/// for Basic authentication; an unknown id and an
/// unframed record are dead letters; a registry outage with an id not yet
/// cached shows as `retrying`, and when the registry is back every record
/// arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_schemas_from_a_registry_evolve_and_survive_an_outage() {
    let schemas = HashMap::from([
        (1, V1.to_string()),
        (2, V2.to_string()),
        (3, V3.to_string()),
    ]);
    let mut registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), schemas).await;
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("orders", 1, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "orders",
        &[
            v1(1, "apple", 3, "old"),
            v1(2, "pear", 5, "old"),
            framed(99, vec![2]),
            v2(2, 3, "fig", 5_000_000_000, "app"),
            br#"{"id": 9}"#.to_vec(),
            v2(2, 4, "kiwi", 1, "web"),
        ],
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    let url = registry.url();
    // The registry is for Avro and JSON.
    let err = c
        .batch_execute(&format!(
            "CREATE SOURCE wrong (id BIGINT) WITH (connector = 'kafka', topic = 'orders',
                 'bootstrap.servers' = '{bootstrap}', format = 'csv',
                 'schema.registry.url' = '{url}')"
        ))
        .await
        .map(|_| ())
        .map_err(|e| common::error_text(&e));
    assert!(
        err.as_ref()
            .is_err_and(|e| e.contains("'schema.registry.url' is for formats 'avro', 'json'")),
        "{err:?}"
    );
    exec(
        &c,
        &format!(
            "CREATE SECRET registry_pw AS 'p';
             CREATE SOURCE orders (id BIGINT NOT NULL, item VARCHAR, qty BIGINT, channel VARCHAR)
               WITH (connector = 'kafka', topic = 'orders', 'bootstrap.servers' = '{bootstrap}',
                     format = 'avro', 'schema.registry.url' = '{url}',
                     'schema.registry.username' = 'u', 'schema.registry.password' = SECRET registry_pw);
             CREATE MATERIALIZED VIEW order_rows AS SELECT id, item, qty, channel FROM orders;"
        ),
    )
    .await;
    let first: &[&[&str]] = &[
        &["1", "apple", "3", "NULL"],
        &["2", "pear", "5", "NULL"],
        &["3", "fig", "5000000000", "app"],
        &["4", "kiwi", "1", "web"],
    ];
    let query = "SELECT id, item, qty, channel FROM order_rows ORDER BY id";
    eventually(&c, query, first).await;
    let letters = rows(
        &c,
        r#"SELECT "offset", error FROM eddy.dead_letters ORDER BY "offset""#,
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0][0], "2");
    assert!(
        letters[0][1].contains("schema id 99 is not in the schema registry"),
        "{letters:?}"
    );
    assert_eq!(letters[1][0], "4");
    assert!(
        letters[1][1].contains("not in the Confluent wire format"),
        "{letters:?}"
    );

    // The registry goes away; a record with a schema id not cached yet arrives.
    registry.stop().await;
    produce(
        &p,
        "orders",
        &[v2(3, 5, "plum", 2, "store"), v1(6, "lime", 4, "old")],
    )
    .await;
    let r = until(&c, SOURCE_STATUS, "showed retrying", |r| {
        r[0][0] == "retrying"
    })
    .await;
    assert!(
        r[0][1].contains("cannot reach the schema registry") && r[0][1].contains("schema id 3"),
        "{r:?}"
    );
    // Nothing skipped past, nothing dead-lettered while it is away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rows(&c, query).await.unwrap();
    assert_eq!(during.len(), 4, "{during:?}");
    registry.restart().await;
    let mut all = first.to_vec();
    all.push(&["5", "plum", "2", "store"]);
    all.push(&["6", "lime", "4", "NULL"]);
    eventually(&c, query, &all).await;
    eventually(&c, "SELECT count(*) FROM eddy.dead_letters", &[&["2"]]).await;
    eventually(
        &c,
        "SELECT status, last_error FROM eddy.sources",
        &[&["running", "NULL"]],
    )
    .await;
}

/// Produce `(key, value)` records to partition 0 (a `None` value is a tombstone).
async fn produce_keyed(p: &FutureProducer, topic: &str, records: Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    for (key, value) in &records {
        let mut r = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(0)
            .key(key.as_slice());
        if let Some(v) = value {
            r = r.payload(v.as_slice());
        }
        p.send(r, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Account rows v1: `{id: long, owner: string, balance: int, legacy: string}`.
const ACCOUNT_V1: &str = r#"{"type": "record", "name": "Account", "fields": [
    {"name": "id", "type": "long"}, {"name": "owner", "type": "string"},
    {"name": "balance", "type": "int"}, {"name": "legacy", "type": "string"}]}"#;
/// v2: `legacy` removed, `balance` widened to long, `region` added with a default.
const ACCOUNT_V2: &str = r#"{"type": "record", "name": "Account", "fields": [
    {"name": "id", "type": "long"}, {"name": "owner", "type": "string"},
    {"name": "balance", "type": "long"}, {"name": "region", "type": "string", "default": "eu"}]}"#;
/// The key as a record of the key column.
const ACCOUNT_KEY: &str = r#"{"type": "record", "name": "AccountKey", "fields": [
    {"name": "id", "type": "long"}]}"#;

fn account(schema: u32, id: i64, owner: &str, balance: i64, last: &str) -> Option<Vec<u8>> {
    let mut d = Vec::new();
    long(id, &mut d);
    string(owner, &mut d);
    long(balance, &mut d);
    string(last, &mut d);
    Some(framed(schema, d))
}

/// A key of schema `schema`: a record `{id}` or a bare long, both one varint.
fn avro_key(schema: u32, id: i64) -> Vec<u8> {
    let mut d = Vec::new();
    long(id, &mut d);
    framed(schema, d)
}

/// `upsert_avro` through a real broker (tansu): rows written with two
/// writer schemas upsert, tombstones delete by an Avro record key, a bare
/// Avro long key or a plain key, and an aggregate follows with retractions.
/// A tombstone whose key schema is not cached yet waits out a registry
/// outage (`retrying`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_avro_updates_and_deletes_reach_an_aggregate() {
    let Some(bin) =
        common::tansu::tansu_or_skip("upsert_avro_updates_and_deletes_reach_an_aggregate")
    else {
        return;
    };
    let tansu = common::tansu::start_tansu(&bin, &[], None);
    common::tansu::create_topics(&tansu.bootstrap, &[("accounts", 1)]).await;
    let schemas = HashMap::from([
        (1, ACCOUNT_V1.to_string()),
        (2, ACCOUNT_V2.to_string()),
        (10, ACCOUNT_KEY.to_string()),
        (11, "\"long\"".to_string()),
    ]);
    let mut registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), schemas).await;
    let server = Server::start().await;
    let c = server.client().await;
    let bootstrap = &tansu.bootstrap;
    let url = registry.url();
    // Without a registry: 22023, with a hint.
    let e = c
        .batch_execute(&format!(
            "CREATE SOURCE nope (id BIGINT, PRIMARY KEY (id)) WITH (connector = 'kafka',
               topic = 'accounts', 'bootstrap.servers' = '{bootstrap}', format = 'upsert_avro')"
        ))
        .await
        .expect_err("upsert_avro without a registry");
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "22023", "{}", db.message());
    assert!(
        db.message().contains("needs a schema registry"),
        "{}",
        db.message()
    );
    assert!(
        db.hint()
            .is_some_and(|h| h.contains("'schema.registry.url'")),
        "{db:?}"
    );
    exec(
        &c,
        &format!(
            "CREATE SECRET registry_pw AS 'p';
             CREATE SOURCE accounts (id BIGINT, owner VARCHAR, balance BIGINT NOT NULL,
                                     region VARCHAR, PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = 'accounts', 'bootstrap.servers' = '{bootstrap}',
                     format = 'upsert_avro', 'schema.registry.url' = '{url}',
                     'schema.registry.username' = 'u',
                     'schema.registry.password' = SECRET registry_pw);
             CREATE MATERIALIZED VIEW by_owner AS
               SELECT owner, count(*) AS n, sum(balance) AS total FROM accounts GROUP BY owner;
             CREATE MATERIALIZED VIEW account_rows AS
               SELECT id, owner, balance, region FROM accounts;"
        ),
    )
    .await;
    let p = producer(bootstrap);
    produce_keyed(
        &p,
        "accounts",
        vec![
            (avro_key(10, 1), account(1, 1, "ann", 10, "x")),
            (avro_key(10, 2), account(1, 2, "bob", 20, "x")),
            (avro_key(10, 3), account(1, 3, "ann", 30, "x")),
            (avro_key(10, 4), account(1, 4, "cy", 40, "x")),
            // Mid-topic the writer schema changes: 1 moves to bob.
            (avro_key(10, 1), account(2, 1, "bob", 15, "us")),
            // Deletes: an Avro record key, a plain (JSON) key.
            (avro_key(10, 2), None),
            (b"4".to_vec(), None),
        ],
    )
    .await;
    eventually(
        &c,
        "SELECT owner, n, total FROM by_owner ORDER BY owner",
        &[&["ann", "1", "30"], &["bob", "1", "15"]],
    )
    .await;
    eventually(
        &c,
        "SELECT id, owner, balance, region FROM account_rows ORDER BY id",
        &[&["1", "bob", "15", "us"], &["3", "ann", "30", "NULL"]],
    )
    .await;

    // The registry goes away; a delete whose key names a schema not cached yet arrives.
    registry.stop().await;
    produce_keyed(
        &p,
        "accounts",
        vec![
            (avro_key(11, 3), None),
            (avro_key(10, 5), account(2, 5, "ann", 50, "eu")),
        ],
    )
    .await;
    let r = until(&c, SOURCE_STATUS, "showed retrying", |r| {
        r[0][0] == "retrying"
    })
    .await;
    assert!(r[0][1].contains("schema id 11"), "{r:?}");
    registry.restart().await;
    eventually(
        &c,
        "SELECT owner, n, total FROM by_owner ORDER BY owner",
        &[&["ann", "1", "50"], &["bob", "1", "15"]],
    )
    .await;
    eventually(&c, "SELECT count(*) FROM eddy.dead_letters", &[&["0"]]).await;
}

/// Order rows v1 inside a Debezium envelope: `{id: long, item: string, qty: int}`.
const ORDER_V1: &str = r#"{"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "int"}]}"#;
/// v2: `qty` widened to long, `note` added with a default.
const ORDER_V2: &str = r#"{"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"}, {"name": "item", "type": "string"},
    {"name": "qty", "type": "long"}, {"name": "note", "type": "string", "default": ""}]}"#;

/// Debezium's Avro envelope around `row`.
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

/// An order row of envelope schema `schema` (1: v1, 2: v2).
fn order(schema: u32, id: i64, item: &str, qty: i64) -> Vec<u8> {
    let mut d = Vec::new();
    long(id, &mut d);
    string(item, &mut d);
    long(qty, &mut d);
    if schema == 2 {
        string("gift", &mut d);
    }
    d
}

/// A change event of envelope schema `schema`.
fn change(schema: u32, op: &str, before: Option<Vec<u8>>, after: Option<Vec<u8>>) -> Vec<u8> {
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
    string("shop", &mut d);
    string(op, &mut d);
    long(0, &mut d);
    framed(schema, d)
}

/// `debezium_avro` through a real broker (tansu): snapshot reads, creates,
/// an update and deletes, across a writer schema change, reach an aggregate
/// with retractions; the tombstone after a delete is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_avro_changes_reach_an_aggregate() {
    let Some(bin) = common::tansu::tansu_or_skip("debezium_avro_changes_reach_an_aggregate") else {
        return;
    };
    let tansu = common::tansu::start_tansu(&bin, &[], None);
    common::tansu::create_topics(&tansu.bootstrap, &[("pg.public.orders", 1)]).await;
    let schemas = HashMap::from([(1, envelope(ORDER_V1)), (2, envelope(ORDER_V2))]);
    let registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), schemas).await;
    let server = Server::start().await;
    let c = server.client().await;
    let bootstrap = &tansu.bootstrap;
    exec(
        &c,
        &format!(
            "CREATE SECRET registry_pw AS 'p';
             CREATE SOURCE orders (id BIGINT, item VARCHAR, qty BIGINT, note VARCHAR,
                                   PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = 'pg.public.orders',
                     'bootstrap.servers' = '{bootstrap}', format = 'debezium_avro',
                     'schema.registry.url' = '{}', 'schema.registry.username' = 'u',
                     'schema.registry.password' = SECRET registry_pw);
             CREATE MATERIALIZED VIEW per_item AS
               SELECT item, count(*) AS n, sum(qty) AS qty FROM orders GROUP BY item;
             CREATE MATERIALIZED VIEW order_rows AS SELECT id, item, qty, note FROM orders;",
            registry.url()
        ),
    )
    .await;
    let p = producer(bootstrap);
    let key = |id: i64| id.to_string().into_bytes();
    produce_keyed(
        &p,
        "pg.public.orders",
        vec![
            (
                key(1),
                Some(change(1, "r", None, Some(order(1, 1, "pen", 2)))),
            ),
            (
                key(2),
                Some(change(1, "c", None, Some(order(1, 2, "ink", 5)))),
            ),
            (
                key(3),
                Some(change(1, "c", None, Some(order(1, 3, "pen", 1)))),
            ),
            (
                key(1),
                Some(change(
                    2,
                    "u",
                    Some(order(2, 1, "pen", 2)),
                    Some(order(2, 1, "pen", 7)),
                )),
            ),
            (
                key(2),
                Some(change(2, "d", Some(order(2, 2, "ink", 5)), None)),
            ),
            (key(2), None),
        ],
    )
    .await;
    eventually(
        &c,
        "SELECT item, n, qty FROM per_item ORDER BY item",
        &[&["pen", "2", "8"]],
    )
    .await;
    eventually(
        &c,
        "SELECT id, item, qty, note FROM order_rows ORDER BY id",
        &[&["1", "pen", "7", "gift"], &["3", "pen", "1", "NULL"]],
    )
    .await;
    produce_keyed(
        &p,
        "pg.public.orders",
        vec![(
            key(3),
            Some(change(2, "d", Some(order(2, 3, "pen", 1)), None)),
        )],
    )
    .await;
    eventually(
        &c,
        "SELECT item, n, qty FROM per_item ORDER BY item",
        &[&["pen", "1", "7"]],
    )
    .await;
    eventually(&c, "SELECT count(*) FROM eddy.dead_letters", &[&["0"]]).await;
}

/// `ALTER SOURCE … ADD COLUMN` of a field a new writer schema (v3) added: a
/// view from before goes on unchanged, a view created after reads the field,
/// NULL in the records written with v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_source_gains_the_field_a_writer_added() {
    let schemas = HashMap::from([(2, V2.to_string()), (3, V3.to_string())]);
    let registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), schemas).await;
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("orders", 1, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "orders",
        &[v2(2, 1, "apple", 3, "web"), v2(3, 2, "pear", 5, "app")],
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    let url = registry.url();
    exec(
        &c,
        &format!(
            "CREATE SECRET registry_pw AS 'p';
             CREATE SOURCE orders (id BIGINT NOT NULL, item VARCHAR, qty BIGINT)
               WITH (connector = 'kafka', topic = 'orders', 'bootstrap.servers' = '{bootstrap}',
                     format = 'avro', 'schema.registry.url' = '{url}',
                     'schema.registry.username' = 'u', 'schema.registry.password' = SECRET registry_pw);
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(qty) AS qty FROM orders;"
        ),
    )
    .await;
    eventually(&c, "SELECT n, qty FROM totals", &[&["2", "8"]]).await;
    exec(&c, "ALTER SOURCE orders ADD COLUMN extra DOUBLE").await;
    produce(&p, "orders", &[v2(3, 3, "fig", 7, "web")]).await;
    eventually(&c, "SELECT n, qty FROM totals", &[&["3", "15"]]).await;
    exec(
        &c,
        "CREATE MATERIALIZED VIEW extras AS SELECT id, extra FROM orders",
    )
    .await;
    eventually(
        &c,
        "SELECT id, extra FROM extras ORDER BY id",
        &[&["1", "NULL"], &["2", "1.5"], &["3", "1.5"]],
    )
    .await;
}

/// A JSON Schema, as Confluent's JSON Schema serializer registers it.
const EVENT_SCHEMA: &str = r#"{"$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Event", "type": "object", "properties": {"id": {"type": "integer"},
    "item": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["id"]}"#;

/// JSON documents framed with the id of a JSON Schema (`format = 'json'` with
/// a registry) read as the declared columns; a document without the frame,
/// an id of an Avro schema and an unknown id are dead letters with the
/// reason; an id not cached yet waits out a registry outage (`retrying`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_documents_with_registered_json_schemas() {
    let schemas = HashMap::from([
        (11, EVENT_SCHEMA.to_string()),
        (12, V1.to_string()),
        (13, EVENT_SCHEMA.replace("Event", "Event2")),
    ]);
    let mut registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), schemas).await;
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("events", 1, 1).expect("topic");
    let p = producer(&bootstrap);
    let doc = |id: u32, json: &str| framed(id, json.as_bytes().to_vec());
    produce(
        &p,
        "events",
        &[
            doc(11, r#"{"id": 1, "item": "apple", "qty": 3}"#),
            br#"{"id": 2}"#.to_vec(),
            doc(12, r#"{"id": 3}"#),
            doc(99, r#"{"id": 4}"#),
            doc(11, r#"{"id": 5, "item": "pear", "colour": "green"}"#),
        ],
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    let url = registry.url();
    exec(
        &c,
        &format!(
            "CREATE SECRET registry_pw AS 'p';
             CREATE SOURCE events (id BIGINT NOT NULL, item VARCHAR, qty BIGINT)
               WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{bootstrap}',
                     format = 'json', 'schema.registry.url' = '{url}',
                     'schema.registry.username' = 'u',
                     'schema.registry.password' = SECRET registry_pw);
             CREATE MATERIALIZED VIEW event_rows AS SELECT id, item, qty FROM events;"
        ),
    )
    .await;
    let query = "SELECT id, item, qty FROM event_rows ORDER BY id";
    eventually(&c, query, &[&["1", "apple", "3"], &["5", "pear", "NULL"]]).await;
    let letters = until(
        &c,
        r#"SELECT "offset", error FROM eddy.dead_letters ORDER BY "offset""#,
        "held three dead letters",
        |r| r.len() == 3,
    )
    .await;
    let reasons: Vec<(&str, &str)> = letters
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert!(
        reasons[0].0 == "1" && reasons[0].1.contains("not in the Confluent wire format"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == "2" && reasons[1].1.contains("schema id 12 is of type AVRO"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].0 == "3"
            && reasons[2]
                .1
                .contains("schema id 99 is not in the schema registry"),
        "{reasons:?}"
    );

    // An id not cached yet while the registry is away: nothing is skipped or rejected.
    registry.stop().await;
    produce(&p, "events", &[doc(13, r#"{"id": 6, "qty": 1}"#)]).await;
    let r = until(&c, SOURCE_STATUS, "showed retrying", |r| {
        r[0][0] == "retrying"
    })
    .await;
    assert!(r[0][1].contains("schema id 13"), "{r:?}");
    registry.restart().await;
    eventually(
        &c,
        query,
        &[
            &["1", "apple", "3"],
            &["5", "pear", "NULL"],
            &["6", "NULL", "1"],
        ],
    )
    .await;
    eventually(&c, "SELECT count(*) FROM eddy.dead_letters", &[&["3"]]).await;
}

/// A `.proto` schema as a registry holds it.
const ORDER_PROTO: &str = r#"syntax = "proto3";
package shop;
message Order { int64 id = 1; string item = 2; int64 qty = 3; }
message Refund { int64 id = 1; string reason = 2; }"#;

/// A protobuf varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Fields as protobuf encodes them: (number, integer) or (number, text).
fn proto(ints: &[(u32, u64)], texts: &[(u32, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in ints {
        varint(u64::from(n << 3), &mut out);
        varint(*v, &mut out);
    }
    for (n, t) in texts {
        varint(u64::from(n << 3 | 2), &mut out);
        varint(t.len() as u64, &mut out);
        out.extend_from_slice(t.as_bytes());
    }
    out
}

/// Protobuf messages framed with a schema id and message indexes (`format =
/// 'protobuf'`): the first message type and a second one by its index read
/// as the declared columns (defaults included); an Avro schema's id and
/// bytes that are not the message are dead letters with the reason; without
/// a registry the source is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_messages_with_registered_schemas() {
    let schemas = HashMap::from([(21, ORDER_PROTO.to_string()), (22, V1.to_string())]);
    let registry = FakeRegistry::start(([127, 0, 0, 1], 0).into(), schemas).await;
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("shop", 1, 1).expect("topic");
    let p = producer(&bootstrap);
    // Message indexes: one 0 byte for the first type; [1] is count 1, index 1 (zigzag: 2, 2).
    let first = |m: Vec<u8>| framed(21, [vec![0], m].concat());
    let second = |m: Vec<u8>| framed(21, [vec![2, 2], m].concat());
    produce(
        &p,
        "shop",
        &[
            first(proto(&[(1, 1), (3, 3)], &[(2, "apple")])),
            framed(22, vec![0, 2]),
            first(vec![0x0a, 0x05, b'x']),
            first(proto(&[(1, 2)], &[(2, "pear")])),
            second(proto(&[(1, 3)], &[(2, "broken")])),
        ],
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    let url = registry.url();
    let refused = c
        .batch_execute(&format!(
            "CREATE SOURCE nope (id BIGINT) WITH (connector = 'kafka', topic = 'shop',
                 'bootstrap.servers' = '{bootstrap}', format = 'protobuf')"
        ))
        .await
        .expect_err("a protobuf source without a registry");
    assert_eq!(
        refused.code().map(|c| c.code()),
        Some("22023"),
        "{}",
        common::error_text(&refused)
    );
    exec(
        &c,
        &format!(
            "CREATE SECRET registry_pw AS 'p';
             CREATE SOURCE shop (id BIGINT NOT NULL, item VARCHAR, qty BIGINT, reason VARCHAR)
               WITH (connector = 'kafka', topic = 'shop', 'bootstrap.servers' = '{bootstrap}',
                     format = 'protobuf', 'schema.registry.url' = '{url}',
                     'schema.registry.username' = 'u',
                     'schema.registry.password' = SECRET registry_pw);
             CREATE MATERIALIZED VIEW shop_rows AS SELECT id, item, qty, reason FROM shop;"
        ),
    )
    .await;
    eventually(
        &c,
        "SELECT id, item, qty, reason FROM shop_rows ORDER BY id",
        &[
            &["1", "apple", "3", "NULL"],
            &["2", "pear", "0", "NULL"],
            &["3", "NULL", "NULL", "broken"],
        ],
    )
    .await;
    let letters = rows(
        &c,
        r#"SELECT "offset", error FROM eddy.dead_letters ORDER BY "offset""#,
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters[0][0] == "1" && letters[0][1].contains("schema id 22 is of type AVRO"),
        "{letters:?}"
    );
    assert!(
        letters[1][0] == "2" && letters[1][1].contains("invalid protobuf message (shop.Order"),
        "{letters:?}"
    );
}
