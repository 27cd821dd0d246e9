//! Exactly-once from Kafka across SIGKILL: the source resumes at the
//! checkpointed offsets of every partition, so records produced before and
//! during the crash are each counted once.
//!
//! The broker is librdkafka's mock cluster, running in this test process, so
//! it outlives the killed server. Event times are out of order by less than
//! the watermark delay: no row is late however the reader happens to batch
//! records, so the result does not depend on batching and run A (no crash)
//! and run B (crash) must agree row for row.

mod common;

use std::time::{Duration, Instant};

use common::kafka::producer;
use common::{rows, PgClient, Server};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;

const RECORDS: usize = 3000;
const PARTITIONS: i32 = 3;
const WAIT_MAX: Duration = Duration::from_secs(60);

async fn produce(p: &FutureProducer, topic: &str, range: std::ops::Range<usize>) {
    common::kafka::produce_payments(p, topic, range, PARTITIONS).await;
}

fn ddl(bootstrap: &str, topic: &str) -> String {
    format!(
        "CREATE SOURCE pay (account VARCHAR, amount BIGINT, ts TIMESTAMP NOT NULL,
                            WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
           WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{bootstrap}',
                 format = 'json');
         CREATE MATERIALIZED VIEW per_user AS
           SELECT account, count(*) AS n, sum(amount) AS total FROM pay GROUP BY account;
         CREATE MATERIALIZED VIEW per_second AS
           SELECT window_start, count(*) AS n, max(amount) AS mx
           FROM TUMBLE(pay, ts, INTERVAL '1' SECOND) GROUP BY window_start
           EMIT ON WINDOW CLOSE;"
    )
}

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// Wait until the views have counted `n` records, then checkpoint (so every
/// view has processed what the source published) and read them.
async fn settled(c: &PgClient, n: usize) -> Vec<Vec<Vec<String>>> {
    let start = Instant::now();
    loop {
        let got = rows(c, "SELECT sum(n) FROM per_user").await;
        if got.as_ref().is_ok_and(|r| r[0][0] == n.to_string()) {
            break;
        }
        assert!(
            start.elapsed() < WAIT_MAX,
            "views never counted {n} records: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exec(c, "CHECKPOINT").await;
    let mut out = Vec::new();
    for q in [
        "SELECT * FROM per_user ORDER BY account",
        "SELECT * FROM per_second ORDER BY window_start",
    ] {
        out.push(rows(c, q).await.expect(q));
    }
    out
}

fn data_dir() -> std::path::PathBuf {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_counts_each_record_once_across_sigkill() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);

    cluster.create_topic("pay-a", PARTITIONS, 1).expect("topic");
    produce(&p, "pay-a", 0..RECORDS).await;
    let a = Server::start_in(&data_dir()).await;
    let c = a.client().await;
    exec(&c, &ddl(&bootstrap, "pay-a")).await;
    let want = settled(&c, RECORDS).await;
    assert!(want.iter().all(|v| !v.is_empty()), "{want:?}");
    drop(c);
    drop(a);

    for seed in [1u64, 2, 3] {
        let topic = format!("pay-b{seed}");
        cluster.create_topic(&topic, PARTITIONS, 1).expect("topic");
        let first = 500 + (seed as usize * 347) % 1000;
        produce(&p, &topic, 0..first).await;
        let dir = data_dir();
        let mut b = Server::start_in_with(&dir, &["--checkpoint-interval", "1"]).await;
        let c = b.client().await;
        exec(&c, &ddl(&bootstrap, &topic)).await;
        settled(&c, first).await;
        // More records while the server runs, then a kill at a seed-chosen moment.
        let second = first + 800;
        produce(&p, &topic, first..second).await;
        tokio::time::sleep(Duration::from_millis((seed * 97) % 300)).await;
        b.kill();
        // Records produced while the server is down, then the rest after it is back.
        produce(&p, &topic, second..second + 400).await;
        let b2 = Server::start_in(&dir).await;
        assert!(
            b2.log_contains("recovering from checkpoint"),
            "{}",
            b2.log_tail()
        );
        let c = b2.client().await;
        produce(&p, &topic, second + 400..RECORDS).await;
        let got = settled(&c, RECORDS).await;
        assert_eq!(got, want, "views differ after a SIGKILL (seed {seed})");
    }
}

const SINK_PARTITIONS: i32 = 2;

/// Per partition of a sink's topic, where its committed output ends
/// according to the newest complete checkpoint (0 when it holds none).
fn checkpointed_ends(data_dir: &std::path::Path, sink: &str) -> Vec<i64> {
    let mut ends = vec![0; SINK_PARTITIONS as usize];
    let mut dirs: Vec<_> = std::fs::read_dir(data_dir.join("checkpoints"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    let Some(newest) = dirs.iter().rev().find(|d| d.join("manifest.json").exists()) else {
        return ends;
    };
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(newest.join("manifest.json")).unwrap()).unwrap();
    let entry = m["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == sink);
    if let Some(offsets) = entry.and_then(|s| s["end_offsets"].as_object()) {
        for (p, o) in offsets {
            ends[p.parse::<usize>().unwrap()] = o.as_i64().unwrap();
        }
    }
    ends
}

/// What a `read_committed` consumer of a real broker would read from a
/// sink topic written before and after a SIGKILL. The mock cluster keeps
/// every record visible, aborted ones included, so the test drops those
/// itself: records past the checkpointed end of the killed run's output
/// (`ends`, its open transaction, which the restarted sink's session
/// aborts) and before the records of the restarted run (`restart_at`).
fn committed_view(
    records: Vec<common::kafka::ReadRecord>,
    ends: &[i64],
    restart_at: &[i64],
) -> Vec<common::kafka::ReadRecord> {
    records
        .into_iter()
        .filter(|(p, o, _, _)| *o < ends[*p as usize] || *o >= restart_at[*p as usize])
        .collect()
}

/// A JSON row of the sink as the text fields `rows` returns for `columns`.
fn json_row(row: &serde_json::Value, columns: &[&str]) -> Vec<String> {
    columns
        .iter()
        .map(|c| match &row[*c] {
            // Timestamps: "2026-01-01T00:00:01" in JSON, "2026-01-01 00:00:01" over pgwire.
            serde_json::Value::String(s) if s.len() == 19 && s.as_bytes()[10] == b'T' => {
                s.replacen('T', " ", 1)
            }
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Replay a Debezium-style changelog, checking that every event continues
/// the key's history (a duplicate or a lost event breaks the chain), and
/// return the final rows.
fn replay_changelog(records: &[common::kafka::ReadRecord]) -> Vec<serde_json::Value> {
    let mut state = std::collections::BTreeMap::<String, serde_json::Value>::new();
    for (p, o, key, value) in records {
        let key = key.clone().expect("changelog records have keys");
        let ev: serde_json::Value = serde_json::from_str(value).unwrap();
        let current = state.get(&key).cloned().unwrap_or(serde_json::Value::Null);
        assert_eq!(
            ev["before"], current,
            "event at partition {p} offset {o} does not follow key {key}'s history: {value}"
        );
        if ev["after"].is_null() {
            state.remove(&key);
        } else {
            state.insert(key, ev["after"].clone());
        }
    }
    state.into_values().collect()
}

async fn sink_epoch(c: &PgClient, sink: &str) -> i64 {
    let r = rows(
        c,
        &format!("SELECT committed_epoch FROM eddy.sinks WHERE name = '{sink}'"),
    )
    .await
    .expect("eddy.sinks");
    r[0][0].parse().unwrap_or(0)
}

/// Wait until both sinks have committed the output of the newest completed checkpoint.
async fn sinks_caught_up(c: &PgClient) {
    let r = rows(
        c,
        "SELECT max(epoch) FROM eddy.checkpoints WHERE status = 'completed'",
    )
    .await
    .expect("eddy.checkpoints");
    let epoch: i64 = r[0][0].parse().expect("a completed checkpoint");
    let start = Instant::now();
    for sink in ["user_out", "second_out"] {
        while sink_epoch(c, sink).await < epoch {
            assert!(
                start.elapsed() < WAIT_MAX,
                "{sink} never committed checkpoint {epoch}: {:?}",
                rows(c, "SELECT * FROM eddy.sinks").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Exactly-once sinks across SIGKILL: what a `read_committed` consumer
/// reads from each sink topic is the view's output once. The changelog of
/// `per_user` replays without a gap or a repeat to the view's rows; the
/// `EMIT ON WINDOW CLOSE` rows of `per_second` are there once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_sinks_across_sigkill() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let p = producer(&bootstrap);
    for seed in [1u64, 2, 3, 4] {
        let (input, users, seconds) = (
            format!("sink-in{seed}"),
            format!("user-out{seed}"),
            format!("second-out{seed}"),
        );
        cluster.create_topic(&input, PARTITIONS, 1).expect("topic");
        for t in [&users, &seconds] {
            cluster.create_topic(t, SINK_PARTITIONS, 1).expect("topic");
        }
        let first = 400 + (seed as usize * 347) % 800;
        produce(&p, &input, 0..first).await;
        let dir = data_dir();
        let mut b = Server::start_in_with(&dir, &["--checkpoint-interval", "1"]).await;
        let c = b.client().await;
        exec(
            &c,
            &format!(
                "{}
                 CREATE SINK user_out FROM per_user
                   WITH (connector = 'kafka', topic = '{users}', 'bootstrap.servers' = '{bootstrap}');
                 CREATE SINK second_out FROM per_second
                   WITH (connector = 'kafka', topic = '{seconds}', 'bootstrap.servers' = '{bootstrap}');",
                ddl(&bootstrap, &input)
            ),
        )
        .await;
        assert_eq!(
            rows(&c, "SELECT DISTINCT delivery FROM eddy.sinks")
                .await
                .unwrap(),
            vec![vec!["exactly_once".to_string()]]
        );
        settled(&c, first).await;
        sinks_caught_up(&c).await;
        // More records, a few at a time for 2 s so the sinks are always in the
        // middle of a transaction, and a kill at a seed-chosen moment.
        let second = first + 1000;
        let trickle = {
            let (p, input) = (p.clone(), input.clone());
            tokio::spawn(async move {
                for start in (first..second).step_by(10) {
                    produce(&p, &input, start..start + 10).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300 + (seed * 541) % 1500)).await;
        b.kill();
        trickle.await.expect("producer task");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("consumer");
        let restart_at = |topic: &str| -> Vec<i64> {
            (0..SINK_PARTITIONS)
                .map(|part| common::kafka::watermarks(&consumer, topic, part).1)
                .collect()
        };
        let (users_restart, seconds_restart) = (restart_at(&users), restart_at(&seconds));
        let (users_end, seconds_end) = (
            checkpointed_ends(&dir, "user_out"),
            checkpointed_ends(&dir, "second_out"),
        );
        // Records produced while the server is down, then the rest after it is back.
        produce(&p, &input, second..second + 300).await;
        let b2 = Server::start_in(&dir).await;
        let c = b2.client().await;
        produce(&p, &input, second + 300..RECORDS).await;
        let got = settled(&c, RECORDS).await;
        sinks_caught_up(&c).await;

        let changelog = committed_view(
            common::kafka::read_all(&bootstrap, &users, SINK_PARTITIONS),
            &users_end,
            &users_restart,
        );
        let mut replayed: Vec<Vec<String>> = replay_changelog(&changelog)
            .iter()
            .map(|r| json_row(r, &["account", "n", "total"]))
            .collect();
        replayed.sort();
        assert_eq!(replayed, got[0], "per_user's changelog (seed {seed})");

        let windows = committed_view(
            common::kafka::read_all(&bootstrap, &seconds, SINK_PARTITIONS),
            &seconds_end,
            &seconds_restart,
        );
        let mut written: Vec<Vec<String>> = windows
            .iter()
            .map(|(_, _, _, v)| {
                json_row(
                    &serde_json::from_str(v).unwrap(),
                    &["window_start", "n", "mx"],
                )
            })
            .collect();
        written.sort();
        assert_eq!(written, got[1], "per_second's rows (seed {seed})");
    }
}
