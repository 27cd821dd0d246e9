//! Kafka sources against a real Kafka-protocol broker: librdkafka's mock
//! cluster (in this test process, on a real loopback port), with a real
//! `eddy serve` process reading from it and queried over pgwire.
//!
//! Covers: the Meetup fixture (exactly 1,960 rows + 40 dead letters with the
//! right reasons), nested JSON, every `on_error` mode, CSV with `INCLUDE`d
//! metadata, per-partition watermarks with an idle partition, a topic that
//! appears late, and a broker outage mid-stream.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::kafka::{avro_long, produce, producer};
use common::{eventually, rows, PgClient, Server};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureRecord;

/// How long a result may take to become what a test expects.
const EVENTUALLY: Duration = Duration::from_secs(30);

async fn exec(client: &PgClient, sql: &str) {
    if let Err(e) = client.batch_execute(sql).await {
        panic!("`{sql}` failed: {}", common::error_text(&e));
    }
}

fn meetup_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/data/meetup/rsvps.jsonl")
}

/// The Meetup source of the issue, reading `topic` on `bootstrap`.
fn rsvps_source(bootstrap: &str, topic: &str) -> String {
    format!(
        r#"CREATE SOURCE rsvps (
            rsvp_id   BIGINT NOT NULL,
            response  VARCHAR CHECK (response IN ('yes', 'no')),
            guests    INT CHECK (guests >= 0),
            mtime     TIMESTAMP NOT NULL,
            member    STRUCT<member_id BIGINT, member_name VARCHAR>,
            "group"   STRUCT<group_city VARCHAR, group_country VARCHAR,
                             group_topics STRUCT<urlkey VARCHAR, topic_name VARCHAR>[]>,
            WATERMARK FOR mtime AS mtime - INTERVAL '5' SECOND
        ) INCLUDE partition AS kafka_partition, offset AS kafka_offset, timestamp AS kafka_ts, key AS kafka_key
        WITH (
            connector = 'kafka',
            topic = '{topic}',
            'properties.bootstrap.server' = '{bootstrap}',
            'scan.startup.mode' = 'earliest',
            format = 'json',
            on_error = 'dead_letter'
        )"#
    )
}

/// What the fixture's bad lines must be rejected for, judged independently of eddy.
fn expected_error(line: &str) -> Option<&'static str> {
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => return Some("invalid JSON"),
    };
    if v.get("mtime").is_none_or(|m| m.is_null()) {
        return Some("field `mtime`: missing or null, but the column is NOT NULL");
    }
    if v.get("guests").is_some_and(|g| g.is_string()) {
        return Some("field `guests`: expected an integer");
    }
    match v.get("response").and_then(|r| r.as_str()) {
        Some("yes") | Some("no") | None => None,
        Some(_) => Some("violates CHECK (response IN ('yes', 'no'))"),
    }
}

/// The fixture, produced round-robin over 3 partitions, yields exactly 1,960
/// rows and 40 dead letters, each with the right reason and origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetup_fixture_gives_1960_rows_and_40_dead_letters() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster
        .create_topic("meetup-raw-rsvps", 3, 1)
        .expect("topic");
    let text = std::fs::read_to_string(meetup_fixture()).expect("read the Meetup fixture");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2000);
    // Line i goes to partition i % 3 at offset i / 3.
    let p = producer(&bootstrap);
    produce(
        &p,
        "meetup-raw-rsvps",
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| ((i % 3) as i32, Some(format!("k{i}")), l.to_string(), None)),
    )
    .await;

    let server = Server::start().await;
    let c = server.client().await;
    exec(&c, &rsvps_source(&bootstrap, "meetup-raw-rsvps")).await;
    exec(
        &c,
        r#"CREATE MATERIALIZED VIEW per_city AS
             SELECT "group".group_city AS city, count(*) AS rsvps, sum(guests) AS guests
             FROM rsvps GROUP BY 1"#,
    )
    .await;
    exec(
        &c,
        "CREATE MATERIALIZED VIEW per_partition AS
           SELECT kafka_partition, count(*) AS n, min(kafka_offset) AS first_offset
           FROM rsvps GROUP BY 1",
    )
    .await;
    // The issue's example: nested fields, HOP windows and a lateral UNNEST.
    exec(
        &c,
        r#"CREATE MATERIALIZED VIEW topics_per_city AS
             SELECT window_start, "group".group_city AS city, t.topic_name, count(*) AS rsvps
             FROM HOP(rsvps, mtime, INTERVAL '1' MINUTE, INTERVAL '10' MINUTE),
                  UNNEST("group".group_topics) AS t
             GROUP BY 1, 2, 3"#,
    )
    .await;
    eventually(&c, "SELECT sum(rsvps) FROM per_city", &[&["1960"]]).await;
    eventually(&c, "SELECT count(*) FROM eddy.dead_letters", &[&["40"]]).await;
    eventually(
        &c,
        "SELECT rows_read, rows_rejected, status FROM eddy.sources WHERE name = 'rsvps'",
        &[&["1960", "40", "running"]],
    )
    .await;

    // Guests summed by eddy equal the sum over the good lines, computed here.
    let good: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| expected_error(l).is_none())
        .map(|l| serde_json::from_str(l).expect("good line parses"))
        .collect();
    assert_eq!(good.len(), 1960);
    let guests: i64 = good.iter().filter_map(|v| v["guests"].as_i64()).sum();
    let got = rows(&c, "SELECT sum(guests) FROM per_city").await.unwrap();
    assert_eq!(got, vec![vec![guests.to_string()]]);

    // Every dead letter is exactly a bad line, at its partition and offset, with its reason.
    let letters = rows(
        &c,
        r#"SELECT source, "partition", "offset", key, payload, error FROM eddy.dead_letters ORDER BY key"#,
    )
    .await
    .unwrap();
    assert_eq!(letters.len(), 40);
    for l in &letters {
        let i: usize = l[3].trim_start_matches('k').parse().expect("key kN");
        assert_eq!(l[0], "rsvps");
        assert_eq!(l[1], (i % 3).to_string(), "partition of line {i}");
        assert_eq!(l[2], (i / 3).to_string(), "offset of line {i}");
        assert_eq!(l[4], lines[i], "payload of line {i}");
        let want = expected_error(lines[i]).unwrap_or_else(|| panic!("line {i} is good: {l:?}"));
        assert!(
            l[5].starts_with(want),
            "line {i}: error {:?}, want {want:?}",
            l[5]
        );
    }
    // Every topic of every good RSVP is counted once in each of the 10 hopping windows that
    // contain it (records are at most 3 s out of order, within the 5 s watermark delay: none late).
    let topics: usize = good
        .iter()
        .map(|v| v["group"]["group_topics"].as_array().map_or(0, Vec::len))
        .sum();
    eventually(
        &c,
        "SELECT sum(rsvps), count(DISTINCT topic_name) > 1 FROM topics_per_city",
        &[&[&(topics * 10).to_string(), "t"]],
    )
    .await;
    eventually(&c, "SELECT rows_late FROM eddy.sources", &[&["0"]]).await;
    // Rows per partition and the INCLUDEd offsets match how the test produced them.
    let per_partition = rows(
        &c,
        "SELECT kafka_partition, n, first_offset FROM per_partition ORDER BY 1",
    )
    .await
    .unwrap();
    let bad_in = |p: usize| {
        (0..2000)
            .filter(|i| i % 3 == p && expected_error(lines[*i]).is_some())
            .count()
    };
    for (p, row) in per_partition.iter().enumerate() {
        let total = (0..2000).filter(|i| i % 3 == p).count();
        assert_eq!(row[1], (total - bad_in(p)).to_string(), "partition {p}");
        assert_eq!(row[2], "0");
    }
    // Partitions are reported with their offsets, and nothing is left to read.
    eventually(
        &c,
        "SELECT \"partition\", next_offset, lag FROM eddy.source_partitions WHERE source = 'rsvps' ORDER BY 1",
        &[&["0", "667", "0"], &["1", "667", "0"], &["2", "666", "0"]],
    )
    .await;
    // Offsets are committed to the source's consumer group, for lag tools.
    let start = Instant::now();
    loop {
        let b = bootstrap.clone();
        let committed = tokio::task::spawn_blocking(move || {
            committed_offsets(&b, "eddy-rsvps", "meetup-raw-rsvps", 3)
        })
        .await
        .expect("committed offsets");
        if committed == vec![Some(667), Some(667), Some(666)] {
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "committed: {committed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Offsets `group` has committed for the partitions of `topic` (blocking).
fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(got) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
        return vec![];
    };
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// `skip` counts bad records only; `fail` stops that source (others keep running);
/// `dead_letter` keeps them with precise reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_modes() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("mixed", 1, 1).expect("topic");
    let records = [
        r#"{"id": 1, "v": 10}"#,
        r#"{"id": 2, "v": "two"}"#,
        r#"{"id": 3, "v": 30"#,
        r#"{"id": 4, "v": 40}"#,
        r#"{"v": 50}"#,
        r#"{"id": 6, "v": -1}"#,
        r#"{"id": 7, "v": 70, "unknown": {"x": 1}}"#,
    ];
    let p = producer(&bootstrap);
    produce(
        &p,
        "mixed",
        records.iter().map(|r| (0, None, r.to_string(), None)),
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    for mode in ["skip", "fail", "dead_letter"] {
        // Dead letters also go to a topic, with the reason in a header.
        let dlq = if mode == "dead_letter" {
            ", 'dead_letter.topic' = 'mixed-dlq'"
        } else {
            ""
        };
        exec(
            &c,
            &format!(
                "CREATE SOURCE s_{mode} (id BIGINT NOT NULL, v INT CHECK (v >= 0))
                 WITH (connector = 'kafka', topic = 'mixed', 'bootstrap.servers' = '{bootstrap}',
                       format = 'json', on_error = '{mode}'{dlq});
                 CREATE MATERIALIZED VIEW v_{mode} AS SELECT count(*) AS n, sum(v) AS total FROM s_{mode};"
            ),
        )
        .await;
    }
    eventually(&c, "SELECT n, total FROM v_skip", &[&["3", "120"]]).await;
    eventually(&c, "SELECT n, total FROM v_dead_letter", &[&["3", "120"]]).await;
    // `fail` stops at the first bad record, after the good one before it.
    eventually(
        &c,
        "SELECT status, rows_rejected FROM eddy.sources WHERE name = 's_fail'",
        &[&["failed", "1"]],
    )
    .await;
    let err = rows(
        &c,
        "SELECT last_error FROM eddy.sources WHERE name = 's_fail'",
    )
    .await
    .unwrap();
    assert!(
        err[0][0].contains("on_error = 'fail'") && err[0][0].contains("partition 0 offset 1"),
        "{err:?}"
    );
    eventually(
        &c,
        "SELECT name, status, rows_read, rows_rejected FROM eddy.sources ORDER BY name",
        &[
            &["s_dead_letter", "running", "3", "4"],
            &["s_fail", "failed", "1", "1"],
            &["s_skip", "running", "3", "4"],
        ],
    )
    .await;
    let letters = rows(
        &c,
        r#"SELECT "offset", error FROM eddy.dead_letters ORDER BY "offset""#,
    )
    .await
    .unwrap();
    let got: Vec<(&str, &str)> = letters
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], ("1", "field `v`: expected an integer, got \"two\""));
    assert_eq!(got[1].0, "2");
    assert!(
        got[1].1.starts_with("invalid JSON: EOF while parsing"),
        "{got:?}"
    );
    assert_eq!(
        got[2],
        (
            "4",
            "field `id`: missing or null, but the column is NOT NULL"
        )
    );
    assert_eq!(got[3], ("5", "violates CHECK (v >= 0): v = -1"));
    let produced = read_topic(&bootstrap, "mixed-dlq", 4).await;
    // The auto-created topic has several partitions: compare as sets.
    let mut payloads: Vec<&str> = produced.iter().map(|(_, v)| v.as_str()).collect();
    payloads.sort();
    let mut want = vec![records[1], records[2], records[4], records[5]];
    want.sort();
    assert_eq!(payloads, want);
}

/// Two partitions, data only in partition 0: with a short idle timeout the
/// empty partition stops holding the watermark back and windows close; with a
/// long one the watermark waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partition_stops_holding_the_watermark() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).expect("topic");
    // Event times 0s..=25s, all in partition 0.
    let p = producer(&bootstrap);
    produce(
        &p,
        "events",
        (0..=25).map(|s| (0, None, format!(r#"{{"v": 1, "ts": {}}}"#, s * 1000), None)),
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    for (name, idle) in [("quick", "500ms"), ("patient", "1h")] {
        exec(
            &c,
            &format!(
                "CREATE SOURCE {name} (v INT, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                 WITH (connector = 'kafka', topic = 'events', 'bootstrap.servers' = '{bootstrap}',
                       'watermark.idle_timeout' = '{idle}');
                 CREATE MATERIALIZED VIEW {name}_10s AS
                   SELECT window_start, count(*) AS n FROM TUMBLE({name}, ts, INTERVAL '10' SECOND)
                   GROUP BY window_start EMIT ON WINDOW CLOSE;"
            ),
        )
        .await;
    }
    // Watermark 24s closes [0s, 10s) and [10s, 20s).
    eventually(
        &c,
        "SELECT window_start, n FROM quick_10s ORDER BY 1",
        &[
            &["1970-01-01 00:00:00", "10"],
            &["1970-01-01 00:00:10", "10"],
        ],
    )
    .await;
    eventually(
        &c,
        "SELECT \"partition\", idle, watermark FROM eddy.source_partitions WHERE source = 'quick' ORDER BY 1",
        &[
            &["0", "t", "1970-01-01 00:00:24"],
            &["1", "t", "NULL"],
        ],
    )
    .await;
    // The patient source has read everything but its watermark waits for partition 1.
    eventually(
        &c,
        "SELECT rows_read, watermark FROM eddy.sources WHERE name = 'patient'",
        &[&["26", "NULL"]],
    )
    .await;
    let closed = rows(&c, "SELECT count(*) FROM patient_10s").await.unwrap();
    assert_eq!(closed, vec![vec!["0".to_string()]]);
}

/// CSV records with keys and Kafka metadata columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_records_with_metadata_columns() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("trades", 2, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "trades",
        [
            (
                0,
                Some("a"),
                "ACME,10,2026-01-01T00:00:01Z",
                1_700_000_000_000,
            ),
            (1, Some("b"), "INIT,20,1767225602000", 1_700_000_000_001),
            (
                0,
                Some("a"),
                "ACME,oops,2026-01-01T00:00:03Z",
                1_700_000_000_002,
            ),
            (
                0,
                Some("c"),
                "ACME,30,2026-01-01T00:00:04Z",
                1_700_000_000_003,
            ),
        ]
        .map(|(part, k, v, ts)| (part, k.map(str::to_string), v.to_string(), Some(ts))),
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE trades (symbol VARCHAR, qty INT, ts TIMESTAMP)
               INCLUDE key, partition AS part, offset, timestamp AS kts
               WITH (connector = 'kafka', topic = 'trades', 'bootstrap.servers' = '{bootstrap}',
                     format = 'csv');
             CREATE MATERIALIZED VIEW by_key AS
               SELECT key, part, max(\"offset\") AS last_offset, sum(qty) AS qty, max(ts) AS ts, max(kts) AS kts
               FROM trades GROUP BY key, part;"
        ),
    )
    .await;
    eventually(
        &c,
        "SELECT key, part, last_offset, qty, ts, kts FROM by_key ORDER BY key",
        &[
            &[
                "a",
                "0",
                "0",
                "10",
                "2026-01-01 00:00:01",
                "2023-11-14 22:13:20",
            ],
            &[
                "b",
                "1",
                "0",
                "20",
                "2026-01-01 00:00:02",
                "2023-11-14 22:13:20.001",
            ],
            &[
                "c",
                "0",
                "2",
                "30",
                "2026-01-01 00:00:04",
                "2023-11-14 22:13:20.003",
            ],
        ],
    )
    .await;
    let letters = rows(&c, "SELECT key, error FROM eddy.dead_letters")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0][0], "a");
    assert!(letters[0][1].contains("oops"), "{letters:?}");
}

/// A source on a topic that does not exist yet retries (visible in
/// `eddy.sources`) and reads it once it appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_retried_until_it_appears() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE later (v INT) WITH (connector = 'kafka', topic = 'later',
                 'bootstrap.servers' = '{bootstrap}');
             CREATE MATERIALIZED VIEW later_total AS SELECT count(*) AS n, sum(v) AS s FROM later;"
        ),
    )
    .await;
    let start = Instant::now();
    loop {
        let r = rows(&c, "SELECT status, last_error FROM eddy.sources")
            .await
            .unwrap();
        if r[0][0] == "retrying" {
            assert!(r[0][1].contains("topic 'later' does not exist"), "{r:?}");
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "never retrying: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.create_topic("later", 1, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "later",
        (1..=5).map(|v| (0, None, format!(r#"{{"v": {v}}}"#), None)),
    )
    .await;
    eventually(&c, "SELECT n, s FROM later_total", &[&["5", "15"]]).await;
    eventually(
        &c,
        "SELECT status, last_error FROM eddy.sources",
        &[&["running", "NULL"]],
    )
    .await;
}

/// The broker goes down mid-stream: the source reports it and, when the
/// broker is back, resumes where it stopped — nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_then_resume() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("ticks", 2, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "ticks",
        (0..100).map(|i| (i % 2, None, format!(r#"{{"i": {i}}}"#), None)),
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE ticks (i BIGINT) WITH (connector = 'kafka', topic = 'ticks',
                 'bootstrap.servers' = '{bootstrap}');
             CREATE MATERIALIZED VIEW tick_stats AS
               SELECT count(*) AS n, count(DISTINCT i) AS distinct_i, sum(i) AS s FROM ticks;"
        ),
    )
    .await;
    eventually(
        &c,
        "SELECT n, distinct_i FROM tick_stats",
        &[&["100", "100"]],
    )
    .await;
    cluster.broker_down(1).expect("broker down");
    let start = Instant::now();
    loop {
        let r = rows(&c, "SELECT status, last_error FROM eddy.sources")
            .await
            .unwrap();
        if r[0][0] == "retrying" {
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "outage never reported: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Views keep serving their last results during the outage.
    let during = rows(&c, "SELECT n FROM tick_stats").await.unwrap();
    assert_eq!(during, vec![vec!["100".to_string()]]);
    cluster.broker_up(1).expect("broker up");
    // A fresh producer: the first one spent the outage with its connection down.
    let p = producer(&bootstrap);
    produce(
        &p,
        "ticks",
        (100..200).map(|i| (i % 2, None, format!(r#"{{"i": {i}}}"#), None)),
    )
    .await;
    let s: i64 = (0..200).sum();
    eventually(
        &c,
        "SELECT n, distinct_i, s FROM tick_stats",
        &[&["200", "200", &s.to_string()]],
    )
    .await;
    eventually(&c, "SELECT status FROM eddy.sources", &[&["running"]]).await;
}

/// Read every message of `topic` (one partition) until `n` have arrived.
async fn read_topic(bootstrap: &str, topic: &str, n: usize) -> Vec<(Option<String>, String)> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message as _;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        assert!(
            start.elapsed() < EVENTUALLY,
            "only {} of {n} messages arrived in '{topic}': {out:?}",
            out.len()
        );
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
            out.push((
                text(m.key()),
                text(m.payload()).expect("message has a payload"),
            ));
        }
    }
    out
}

/// Sinks: an `EMIT ON WINDOW CLOSE` view is written as rows; an updating view
/// as Debezium-style changes that, replayed, give exactly the view's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_write_rows_and_changes_read_back_from_the_topic() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    for t in ["clicks", "per-window", "per-user"] {
        cluster.create_topic(t, 1, 1).expect("topic");
    }
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE clicks (uid VARCHAR, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)
               WITH (connector = 'kafka', topic = 'clicks', 'bootstrap.servers' = '{bootstrap}');
             CREATE MATERIALIZED VIEW per_window AS
               SELECT window_start, count(*) AS n FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND)
               GROUP BY window_start EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW per_user AS SELECT uid, count(*) AS n FROM clicks GROUP BY uid;
             CREATE SINK per_window_out FROM per_window
               WITH (connector = 'kafka', topic = 'per-window', 'properties.bootstrap.server' = '{bootstrap}',
                     format = 'json');
             CREATE SINK per_user_out FROM per_user
               WITH (connector = 'kafka', topic = 'per-user', 'bootstrap.servers' = '{bootstrap}');"
        ),
    )
    .await;
    // u1 at 1s, 2s, 12s; u2 at 3s, 25s: windows [0,10) = 3, [10,20) = 1 close at watermark 25s.
    // Produced in two rounds, so the second round updates per_user's rows.
    let click = |(u, s): (&str, i64)| {
        (
            0,
            None,
            format!(
                r#"{{"uid": "{u}", "ts": {}}}"#,
                1_767_225_600_000i64 + s * 1000
            ),
            None,
        )
    };
    let p = producer(&bootstrap);
    produce(&p, "clicks", [("u1", 1), ("u1", 2), ("u2", 3)].map(click)).await;
    eventually(
        &c,
        "SELECT uid, n FROM per_user ORDER BY uid",
        &[&["u1", "2"], &["u2", "1"]],
    )
    .await;
    produce(&p, "clicks", [("u1", 12), ("u2", 25)].map(click)).await;
    // Rows keyed by the view's group-by columns; windows closed together may
    // come from different aggregate partitions, in either order.
    let mut windows = read_topic(&bootstrap, "per-window", 2).await;
    windows.sort();
    let w = |start: &str, n: i64| {
        (
            Some(format!(r#"{{"window_start":"{start}"}}"#)),
            format!(r#"{{"window_start":"{start}","n":{n}}}"#),
        )
    };
    assert_eq!(
        windows,
        vec![w("2026-01-01T00:00:00", 3), w("2026-01-01T00:00:10", 1)]
    );
    eventually(
        &c,
        "SELECT uid, n FROM per_user ORDER BY uid",
        &[&["u1", "3"], &["u2", "2"]],
    )
    .await;
    // Replay the changelog: the last state per key must equal the view.
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let written = rows(
            &c,
            "SELECT messages_written FROM eddy.sinks WHERE name = 'per_user_out'",
        )
        .await
        .unwrap();
        let n: usize = written[0][0].parse().unwrap();
        let changes = read_topic(&bootstrap, "per-user", n).await;
        let mut state = std::collections::BTreeMap::new();
        for (key, value) in &changes {
            let v: serde_json::Value = serde_json::from_str(value).expect("change is JSON");
            let key: serde_json::Value =
                serde_json::from_str(key.as_deref().expect("changes are keyed")).unwrap();
            let uid = key["uid"].as_str().expect("key has uid").to_string();
            match v["op"].as_str() {
                Some("c") | Some("u") => {
                    state.insert(uid, v["after"]["n"].as_i64().unwrap());
                }
                Some("d") => {
                    state.remove(&uid);
                }
                other => panic!("unexpected op {other:?} in {value}"),
            }
        }
        let want = std::collections::BTreeMap::from([("u1".to_string(), 3), ("u2".to_string(), 2)]);
        if state == want {
            assert!(
                changes.iter().any(|(_, v)| v.contains(r#""op":"u""#)),
                "{changes:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replayed {state:?} from {changes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(
        &c,
        "SELECT name, mode, status FROM eddy.sinks ORDER BY name",
        &[
            &["per_user_out", "changelog", "running"],
            &["per_window_out", "append_only", "running"],
        ],
    )
    .await;
}

/// `eddy serve --embedded-kafka` prints a bootstrap address that a Kafka client
/// can produce to, and sources read from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kafka_broker_is_usable() {
    let server = Server::start_with_args(&["--embedded-kafka"]).await;
    let log = std::fs::read_to_string(&server.log_path).expect("server log");
    let bootstrap = log
        .lines()
        .find_map(|l| l.split("bootstrap.servers = ").nth(1))
        .unwrap_or_else(|| panic!("no bootstrap address printed:\n{log}"))
        .trim()
        .to_string();
    assert!(log.contains("in memory"), "{log}");
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE s (v INT) WITH (connector = 'kafka', topic = 'try-me', 'bootstrap.servers' = '{bootstrap}');
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, sum(v) AS s FROM s;"
        ),
    )
    .await;
    // Producing creates the topic, as with kcat.
    let p = producer(&bootstrap);
    produce(
        &p,
        "try-me",
        (1..=10).map(|v| (0, None, format!(r#"{{"v": {v}}}"#), None)),
    )
    .await;
    eventually(&c, "SELECT n, s FROM total", &[&["10", "55"]]).await;
    // The whole topic has been read: no lag left.
    eventually(&c, "SELECT lag FROM eddy.sources", &[&["0"]]).await;
}

/// Avro records with an inline schema, bare datums; a truncated one is a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_with_inline_schema() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("orders", 1, 1).expect("topic");
    // {"item": string, "qty": long, "at": timestamp-millis}
    let datum = |item: &str, qty: i64, at: i64| {
        let mut out = Vec::new();
        avro_long(item.len() as i64, &mut out);
        out.extend_from_slice(item.as_bytes());
        avro_long(qty, &mut out);
        avro_long(at, &mut out);
        out
    };
    let mut payloads = vec![
        datum("apple", 3, 1_767_225_601_000),
        datum("pear", 5, 1_767_225_602_000),
        datum("apple", 4, 1_767_225_603_000),
    ];
    payloads.insert(1, vec![0x0a, b'a']); // a string of 5 bytes with 1 present
    let p = producer(&bootstrap);
    let futures: Vec<_> = payloads
        .iter()
        .map(|b| {
            p.send_result(
                FutureRecord::<(), _>::to("orders")
                    .partition(0)
                    .payload(b.as_slice()),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue")
        })
        .collect();
    for f in futures {
        f.await
            .expect("future")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            r#"CREATE SOURCE orders (item VARCHAR NOT NULL, qty BIGINT CHECK (qty > 0), at TIMESTAMP)
               WITH (connector = 'kafka', topic = 'orders', 'bootstrap.servers' = '{bootstrap}',
                     format = 'avro',
                     'avro.schema' = '{{"type": "record", "name": "Order", "fields": [
                         {{"name": "item", "type": "string"}}, {{"name": "qty", "type": "long"}},
                         {{"name": "at", "type": {{"type": "long", "logicalType": "timestamp-millis"}}}}]}}');
             CREATE MATERIALIZED VIEW per_item AS
               SELECT item, sum(qty) AS qty, max(at) AS last FROM orders GROUP BY item;"#
        ),
    )
    .await;
    eventually(
        &c,
        "SELECT item, qty, last FROM per_item ORDER BY item",
        &[
            &["apple", "7", "2026-01-01 00:00:03"],
            &["pear", "5", "2026-01-01 00:00:02"],
        ],
    )
    .await;
    eventually(
        &c,
        r#"SELECT "offset", starts_with(error, 'invalid Avro record') FROM eddy.dead_letters"#,
        &[&["1", "t"]],
    )
    .await;
}

/// `'scan.startup.mode' = 'latest'` reads only what is produced after the
/// source starts. (`timestamp` mode asks the broker for offsets by time;
/// librdkafka's mock cluster answers every such lookup with the log end, so
/// it is not tested here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_mode_latest_skips_history() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("history", 1, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "history",
        (1..=3).map(|v| (0, None, format!(r#"{{"v": {v}}}"#), None)),
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE from_latest (v INT) WITH (connector = 'kafka', topic = 'history',
                 'bootstrap.servers' = '{bootstrap}', 'scan.startup.mode' = 'latest');
             CREATE MATERIALIZED VIEW from_latest_v AS SELECT count(*) AS n, sum(v) AS s FROM from_latest;
             CREATE SOURCE from_earliest (v INT) WITH (connector = 'kafka', topic = 'history',
                 'bootstrap.servers' = '{bootstrap}');
             CREATE MATERIALIZED VIEW from_earliest_v AS SELECT count(*) AS n, sum(v) AS s FROM from_earliest;"
        ),
    )
    .await;
    eventually(&c, "SELECT n, s FROM from_earliest_v", &[&["3", "6"]]).await;
    // The latest-mode source has its partition and has read nothing.
    eventually(
        &c,
        "SELECT rows_read FROM eddy.sources WHERE name = 'from_latest'",
        &[&["0"]],
    )
    .await;
    eventually(
        &c,
        "SELECT count(*) FROM eddy.source_partitions WHERE source = 'from_latest'",
        &[&["1"]],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(&p, "history", [(0, None, r#"{"v": 10}"#.to_string(), None)]).await;
    eventually(&c, "SELECT n, s FROM from_latest_v", &[&["1", "10"]]).await;
    eventually(&c, "SELECT n, s FROM from_earliest_v", &[&["4", "16"]]).await;
}

/// Views created in one multi-statement query string all see the source from
/// its start: connectors wait until the whole batch has run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_created_in_one_batch_all_see_everything() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("many", 2, 1).expect("topic");
    let p = producer(&bootstrap);
    produce(
        &p,
        "many",
        (0..5000).map(|i| (i % 2, None, format!(r#"{{"i": {i}}}"#), None)),
    )
    .await;
    let server = Server::start().await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE many (i BIGINT) WITH (connector = 'kafka', topic = 'many',
                 'bootstrap.servers' = '{bootstrap}', 'batch.max_rows' = '100');
             CREATE MATERIALIZED VIEW a AS SELECT count(*) AS n FROM many;
             CREATE MATERIALIZED VIEW b AS SELECT count(*) AS n FROM many WHERE i >= 0;
             CREATE MATERIALIZED VIEW c AS SELECT i % 10 AS d, count(*) AS n FROM many GROUP BY 1;"
        ),
    )
    .await;
    eventually(&c, "SELECT n FROM a", &[&["5000"]]).await;
    eventually(&c, "SELECT n FROM b", &[&["5000"]]).await;
    eventually(&c, "SELECT sum(n) FROM c", &[&["5000"]]).await;
}

/// A sink whose broker goes away retries (status `retrying` with the reason)
/// and delivers everything once the broker is back, with either delivery
/// guarantee (exactly-once: a new transactional session produces again what
/// was not committed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_retries_through_a_broker_outage() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    for delivery in ["at_least_once", "exactly_once"] {
        let topic = format!("totals-{delivery}");
        cluster.create_topic(&topic, 1, 1).expect("topic");
        let server = Server::start_with_args(&["--checkpoint-interval", "1"]).await;
        let c = server.client().await;
        exec(
            &c,
            &format!(
                "CREATE TABLE t (k VARCHAR, v BIGINT);
                 CREATE MATERIALIZED VIEW per_k AS SELECT k, sum(v) AS v FROM t GROUP BY k;
                 CREATE SINK totals FROM per_k WITH (connector = 'kafka', topic = '{topic}',
                     'bootstrap.servers' = '{bootstrap}', delivery = '{delivery}',
                     'properties.message.timeout.ms' = '2000');
                 INSERT INTO t VALUES ('a', 1);"
            ),
        )
        .await;
        eventually(
            &c,
            "SELECT messages_written, status, delivery FROM eddy.sinks",
            &[&["1", "running", delivery]],
        )
        .await;
        cluster.broker_down(1).expect("broker down");
        exec(&c, "INSERT INTO t VALUES ('a', 2)").await;
        let start = Instant::now();
        loop {
            let r = rows(&c, "SELECT status, last_error FROM eddy.sinks")
                .await
                .unwrap();
            if r[0][0] == "retrying" {
                // The first thing to fail may be a write to the topic, the session, or (exactly
                // once) the commit of a checkpoint's transaction: each names what failed.
                assert!(
                    r[0][1].contains(&topic)
                        || r[0][1].contains("session")
                        || r[0][1].contains("commit of checkpoint"),
                    "{r:?}"
                );
                break;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "{delivery} sink never reported the outage: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.broker_up(1).expect("broker up");
        eventually(&c, "SELECT status FROM eddy.sinks", &[&["running"]]).await;
        // Replayed by key, the topic ends at the view's state.
        let start = Instant::now();
        loop {
            let changes = read_topic(&bootstrap, &topic, 2).await;
            let last = changes.last().expect("messages");
            let v: serde_json::Value = serde_json::from_str(&last.1).expect("JSON");
            if v["after"]["v"] == 3 {
                break;
            }
            assert!(
                start.elapsed() < EVENTUALLY,
                "{delivery}: the topic never reached the view's state: {changes:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `delivery`: exactly-once is the default only when the server takes
/// periodic checkpoints (it commits with them); asking for it without them,
/// or for an unknown guarantee, is an error that says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_delivery_follows_checkpointing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("out", 1, 1).expect("topic");
    let server = Server::start_with_args(&["--checkpoint-interval", "0"]).await;
    let c = server.client().await;
    exec(&c, "CREATE TABLE t (k VARCHAR)").await;
    let sink = |name: &str, extra: &str| {
        format!(
            "CREATE SINK {name} FROM t WITH (connector = 'kafka', topic = 'out',
                 'bootstrap.servers' = '{bootstrap}'{extra})"
        )
    };
    let err = c
        .batch_execute(&sink("s1", ", delivery = 'exactly_once'"))
        .await
        .expect_err("exactly_once without checkpoints");
    let text = common::error_text(&err);
    assert!(
        text.starts_with("22023") && text.contains("--checkpoint-interval"),
        "{text}"
    );
    let err = c
        .batch_execute(&sink("s2", ", delivery = 'twice'"))
        .await
        .expect_err("unknown delivery");
    let text = common::error_text(&err);
    assert!(
        text.starts_with("22023") && text.contains("'exactly_once' or 'at_least_once'"),
        "{text}"
    );
    exec(&c, &sink("s3", "")).await;
    assert_eq!(
        rows(&c, "SELECT name, delivery, committed_epoch FROM eddy.sinks")
            .await
            .unwrap(),
        vec![vec!["s3", "at_least_once", "NULL"]]
    );
}

/// A stuck at-least-once sink affects only itself (issue 14, hole 5): while
/// its broker is down it keeps reading its view into a bounded buffer, and
/// once that is full it lets go of the view (`stalled`, with the reason)
/// instead of holding the view, the table, INSERT, checkpoints and DDL up.
/// When the broker is back it delivers what it held and resumes from the
/// view's rows: every row reaches the topic. A second sink whose broker never
/// answers is dropped while stalled, promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_sink_affects_only_itself() {
    const STEP: Duration = Duration::from_secs(10);
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("all-rows", 1, 1).expect("topic");
    let dead = format!("127.0.0.1:{}", common::free_port());
    let server =
        Server::start_with_args(&["--checkpoint-interval", "0", "--sink-buffer-kb", "16"]).await;
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CREATE TABLE t (v BIGINT);
             CREATE MATERIALIZED VIEW all_rows AS SELECT v FROM t;
             CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n FROM t;
             CREATE SINK out FROM all_rows WITH (connector = 'kafka', topic = 'all-rows',
                 'bootstrap.servers' = '{bootstrap}', delivery = 'at_least_once',
                 'properties.message.timeout.ms' = '1000');
             CREATE SINK nowhere FROM all_rows WITH (connector = 'kafka', topic = 'x',
                 'bootstrap.servers' = '{dead}', delivery = 'at_least_once',
                 'properties.message.timeout.ms' = '1000');
             INSERT INTO t VALUES (1), (2), (3);"
        ),
    )
    .await;
    eventually(
        &c,
        "SELECT messages_written FROM eddy.sinks WHERE name = 'out'",
        &[&["3"]],
    )
    .await;
    cluster.broker_down(1).expect("broker down");
    // 3,000 rows of about 75 buffered bytes each: far beyond 16 KiB.
    for chunk in 0..30 {
        let from = 4 + chunk * 100;
        let sql = format!(
            "INSERT INTO t SELECT value FROM generate_series({from}, {})",
            from + 99
        );
        let started = Instant::now();
        tokio::time::timeout(STEP, c.simple_query(&sql))
            .await
            .unwrap_or_else(|_| panic!("INSERT hung behind the stuck sinks: {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {}", common::error_text(&e)));
        assert!(started.elapsed() < STEP);
    }
    eventually(
        &c,
        "SELECT name, status FROM eddy.sinks ORDER BY name",
        &[&["nowhere", "stalled"], &["out", "stalled"]],
    )
    .await;
    let why = rows(&c, "SELECT last_error FROM eddy.sinks WHERE name = 'out'")
        .await
        .unwrap();
    assert!(why[0][0].contains("buffer full"), "{why:?}");
    // Everything else goes on: views, DDL, the view store.
    eventually(&c, "SELECT n FROM total", &[&["3003"]]).await;
    eventually(&c, "SELECT count(*) FROM all_rows", &[&["3003"]]).await;
    let ddl = "CREATE MATERIALIZED VIEW later AS SELECT max(v) AS m FROM t";
    tokio::time::timeout(STEP, c.batch_execute(ddl))
        .await
        .expect("CREATE while sinks are stalled hung")
        .expect("CREATE while sinks are stalled");
    eventually(&c, "SELECT m FROM later", &[&["3003"]]).await;
    tokio::time::timeout(STEP, c.batch_execute("CHECKPOINT"))
        .await
        .expect("CHECKPOINT while sinks are stalled hung")
        .expect("CHECKPOINT while sinks are stalled");
    tokio::time::timeout(STEP, c.batch_execute("DROP SINK nowhere"))
        .await
        .expect("DROP SINK of a stalled sink hung")
        .expect("DROP SINK of a stalled sink");
    // The broker comes back: the held messages go out, then the view's rows.
    cluster.broker_up(1).expect("broker up");
    eventually(&c, "SELECT status FROM eddy.sinks", &[&["running"]]).await;
    exec(&c, "INSERT INTO t VALUES (3004)").await;
    let start = Instant::now();
    loop {
        let got: std::collections::BTreeSet<i64> =
            common::kafka::read_all(&bootstrap, "all-rows", 1)
                .into_iter()
                .map(|r| {
                    let v: serde_json::Value = serde_json::from_str(&r.3).expect("JSON");
                    v["v"].as_i64().expect("v")
                })
                .collect();
        if got.len() == 3004 {
            assert_eq!(got.first(), Some(&1));
            assert_eq!(got.last(), Some(&3004));
            break;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "the topic holds {} of the 3004 rows",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
