//! Bulk loading a table over the wire: `COPY … FROM STDIN` (text and CSV) against multi-row
//! `INSERT … VALUES`, into a real `eddy serve` process through tokio-postgres, beside the
//! JSON decode of the same rows in process (the rate a Kafka or file source reads at).
//!
//! Run: `cargo bench --bench copy` (`EDDY_BENCH_ROWS=N`, default 1,000,000 for COPY; INSERT
//! takes a fifth of that). Prints rows/s for each path.

mod support;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use eddy::connectors::format::{Format, Record};
use futures::SinkExt;

const TABLE: &str = "CREATE TABLE bids (auction BIGINT NOT NULL, bidder BIGINT, price BIGINT, \
    channel VARCHAR, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)";

/// Row `i`'s values: auction, bidder, price, channel, event time (seconds after 2026-01-01).
fn values(i: i64) -> (i64, i64, i64, String, i64) {
    (
        1000 + i % 1000,
        i % 5000,
        1 + (i * 7919) % 10_000,
        format!("channel-{}", i % 4),
        i / 1000,
    )
}

fn timestamp(secs: i64) -> String {
    format!(
        "2026-01-{:02} {:02}:{:02}:{:02}",
        1 + secs / 86_400 % 28,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn report(name: &str, rows: usize, secs: f64) {
    println!(
        "{name:<40} {rows:>10} rows  {secs:>7.2} s  {:>12.0} rows/s",
        rows as f64 / secs
    );
}

/// The JSON decode of the same rows, 4096 a batch, one thread.
fn json_decode(rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
    ]));
    let mut decoder = Format::Json.decoder(schema).expect("decoder");
    let records: Vec<Record> = (0..4096)
        .map(|i| {
            let (a, b, p, c, t) = values(i);
            Record {
                payload: format!(
                    r#"{{"auction": {a}, "bidder": {b}, "price": {p}, "channel": "{c}", "ts": {}}}"#,
                    1_767_225_600_000 + t * 1000
                )
                .into_bytes(),
                ..Default::default()
            }
        })
        .collect();
    let start = Instant::now();
    let mut done = 0usize;
    while done < rows {
        let out = decoder.decode(&records);
        done += out.batch.map_or(0, |b| b.num_rows());
    }
    report(
        "json decode (in process, 1 thread)",
        done,
        start.elapsed().as_secs_f64(),
    );
}

async fn copy_in(client: &tokio_postgres::Client, sql: &str, data: &[u8]) -> u64 {
    let sink = client.copy_in(sql).await.expect("copy in");
    futures::pin_mut!(sink);
    for piece in data.chunks(64 << 10) {
        sink.send(Bytes::copy_from_slice(piece))
            .await
            .expect("send");
    }
    sink.finish().await.expect("finish")
}

async fn count(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM bids", &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rows: usize = std::env::var("EDDY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    json_decode(rows);

    let mut text = Vec::new();
    let mut csv = Vec::new();
    for i in 0..rows as i64 {
        let (a, b, p, c, t) = values(i);
        let ts = timestamp(t);
        text.extend_from_slice(format!("{a}\t{b}\t{p}\t{c}\t{ts}\n").as_bytes());
        csv.extend_from_slice(format!("{a},{b},{p},\"{c}\",{ts}\n").as_bytes());
    }
    for (name, sql, data) in [
        ("COPY FROM STDIN (text)", "COPY bids FROM STDIN", &text),
        (
            "COPY FROM STDIN (csv)",
            "COPY bids FROM STDIN (FORMAT csv)",
            &csv,
        ),
    ] {
        let (_server, client, _) = support::start("copy", &[]).await;
        client.batch_execute(TABLE).await.expect("create");
        let start = Instant::now();
        let n = copy_in(&client, sql, data).await;
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(n as usize, rows);
        assert_eq!(count(&client).await as usize, rows.min(1_000_000));
        report(name, rows, secs);
    }

    // Multi-row INSERT, 1,000 rows a statement, as a loader without COPY sends them.
    let inserts = (rows / 5).max(1000) / 1000 * 1000;
    let statements: Vec<String> = (0..inserts as i64 / 1000)
        .map(|s| {
            let rows: Vec<String> = (s * 1000..(s + 1) * 1000)
                .map(|i| {
                    let (a, b, p, c, t) = values(i);
                    format!("({a}, {b}, {p}, '{c}', '{}')", timestamp(t))
                })
                .collect();
            format!("INSERT INTO bids VALUES {}", rows.join(", "))
        })
        .collect();
    let (_server, client, _) = support::start("copy", &[]).await;
    client.batch_execute(TABLE).await.expect("create");
    let start = Instant::now();
    for s in &statements {
        client.batch_execute(s).await.expect("insert");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(count(&client).await as usize, inserts);
    report("INSERT … VALUES (1,000 rows a statement)", inserts, secs);
}
