//! Avro Kafka sources whose writer schemas come from a schema registry
//! (`'schema.registry.url'`), end to end: librdkafka's mock cluster (a real
//! broker on a loopback port, in this process), a real `eddy serve` process
//! queried over pgwire, and a registry.
//!
//! No Confluent-compatible registry can be installed on these machines
//! (Confluent's is not in the package registries we reach; karapace needs a
//! real Kafka), so the registry is a small HTTP server in this test speaking
//! the one call eddy makes: `GET /schemas/ids/{id}`, answering
//! `{"schema": "…"}` or 404 with error code 40403, as Confluent's does.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use common::kafka::avro_long as long;
use common::kafka::producer;
use common::{eventually, rows, PgClient, Server};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

const EVENTUALLY: Duration = Duration::from_secs(30);

type Schemas = Arc<HashMap<u32, String>>;

/// A registry holding `schemas` by id, on a loopback port, until stopped.
struct FakeRegistry {
    addr: SocketAddr,
    schemas: Schemas,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// `Authorization` for user `u`, password `p`.
const BASIC_AUTH: &str = "Basic dTpw";

async fn schema_by_id(
    State(schemas): State<Schemas>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    // No keep-alive: a stopped registry must refuse connections, not answer
    // on a connection kept from before.
    let close = [(header::CONNECTION, "close")];
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(BASIC_AUTH)
    {
        return (StatusCode::UNAUTHORIZED, close, "who are you?").into_response();
    }
    match schemas.get(&id) {
        Some(s) => (close, Json(serde_json::json!({ "schema": s }))).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            close,
            Json(serde_json::json!({ "error_code": 40403, "message": "Schema not found" })),
        )
            .into_response(),
    }
}

impl FakeRegistry {
    async fn start(addr: SocketAddr, schemas: Schemas) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the registry");
        let addr = listener.local_addr().expect("registry address");
        let app = Router::new()
            .route("/schemas/ids/{id}", get(schema_by_id))
            .with_state(schemas.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRegistry {
            addr,
            schemas,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop listening: connections are refused from now on.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listen again on the same address.
    async fn restart(&mut self) {
        self.stop().await;
        *self = FakeRegistry::start(self.addr, self.schemas.clone()).await;
    }
}

async fn exec(client: &PgClient, sql: &str) {
    if let Err(e) = client.batch_execute(sql).await {
        panic!("`{sql}` failed: {}", common::error_text(&e));
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Confluent wire format: 0, the schema id (big-endian), the datum.
fn framed(id: u32, datum: Vec<u8>) -> Vec<u8> {
    [vec![0], id.to_be_bytes().to_vec(), datum].concat()
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
    let schemas: Schemas = Arc::new(HashMap::from([
        (1, V1.to_string()),
        (2, V2.to_string()),
        (3, V3.to_string()),
    ]));
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
    // The registry is for Avro only.
    let err = c
        .batch_execute(&format!(
            "CREATE SOURCE wrong (id BIGINT) WITH (connector = 'kafka', topic = 'orders',
                 'bootstrap.servers' = '{bootstrap}', 'schema.registry.url' = '{url}')"
        ))
        .await
        .map(|_| ())
        .map_err(|e| common::error_text(&e));
    assert!(
        err.as_ref()
            .is_err_and(|e| e.contains("'schema.registry.url' is for format 'avro'")),
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
    let start = Instant::now();
    loop {
        let r = rows(&c, "SELECT status, last_error FROM eddy.sources")
            .await
            .unwrap();
        if r[0][0] == "retrying" {
            assert!(
                r[0][1].contains("cannot reach the schema registry")
                    && r[0][1].contains("schema id 3"),
                "{r:?}"
            );
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "outage never reported: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// `ALTER SOURCE … ADD COLUMN` of a field a new writer schema (v3) added: a
/// view from before goes on unchanged, a view created after reads the field,
/// NULL in the records written with v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_source_gains_the_field_a_writer_added() {
    let schemas: Schemas = Arc::new(HashMap::from([(2, V2.to_string()), (3, V3.to_string())]));
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
