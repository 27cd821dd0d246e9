//! COPY over the real wire protocol, through tokio-postgres (libpq's protocol, as psql's
//! `\copy`, psycopg and asyncpg use it): `COPY … TO STDOUT` in text, CSV and binary, and
//! `COPY table FROM STDIN` in text and CSV, with PostgreSQL's errors for bad rows.

mod common;

use bytes::Bytes;
use futures::{SinkExt, TryStreamExt};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;

use common::{error_text, rows, PgClient, Server};

const CREATE: &str = "CREATE TABLE t (id BIGINT NOT NULL, name TEXT, score DOUBLE PRECISION, \
    ok BOOLEAN, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)";

async fn setup() -> (Server, PgClient) {
    let server = Server::start().await;
    let client = server.client().await;
    client.batch_execute(CREATE).await.expect("create");
    (server, client)
}

/// Everything a `COPY … TO STDOUT` sends, as one text.
async fn copy_out(client: &PgClient, sql: &str) -> Result<String, String> {
    let stream = client.copy_out(sql).await.map_err(|e| error_text(&e))?;
    let parts: Vec<Bytes> = stream.try_collect().await.map_err(|e| error_text(&e))?;
    Ok(parts
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect())
}

/// Sends `data` (in pieces of `piece` bytes) to `COPY … FROM STDIN`; the row count or the error.
async fn copy_in(client: &PgClient, sql: &str, data: &[u8], piece: usize) -> Result<u64, String> {
    let sink = client.copy_in(sql).await.map_err(|e| error_text(&e))?;
    futures::pin_mut!(sink);
    for p in data.chunks(piece) {
        sink.send(Bytes::copy_from_slice(p))
            .await
            .map_err(|e| error_text(&e))?;
    }
    sink.finish().await.map_err(|e| error_text(&e))
}

async fn count(client: &PgClient) -> String {
    rows(client, "SELECT count(*) FROM t").await.expect("count")[0][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_writes_text_and_csv_as_postgres_does() {
    let (_server, client) = setup().await;
    client
        .batch_execute(
            "INSERT INTO t VALUES (1, 'tab\there', 1.5, true, '2026-01-01 00:00:01'), \
             (2, NULL, NULL, false, '2026-01-01 00:00:02.25'), \
             (3, 'say \"hi\", then\nleave', 3, NULL, '2026-01-01 00:00:03')",
        )
        .await
        .expect("insert");
    let text = copy_out(&client, "COPY (SELECT * FROM t ORDER BY id) TO STDOUT")
        .await
        .expect("copy text");
    assert_eq!(
        text,
        "1\ttab\\there\t1.5\tt\t2026-01-01 00:00:01\n\
         2\t\\N\t\\N\tf\t2026-01-01 00:00:02.25\n\
         3\tsay \"hi\", then\\nleave\t3\t\\N\t2026-01-01 00:00:03\n"
    );
    let csv = copy_out(
        &client,
        "COPY (SELECT id, name, score FROM t ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await
    .expect("copy csv");
    assert_eq!(
        csv,
        "id,name,score\n1,tab\there,1.5\n2,,\n3,\"say \"\"hi\"\", then\nleave\",3\n"
    );
    // A table by name, with a column list; FORCE_QUOTE; another delimiter and NULL.
    let csv = copy_out(
        &client,
        "COPY t (id, name) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (id, name), DELIMITER ';', \
         NULL 'none')",
    )
    .await
    .expect("copy table");
    let mut lines: Vec<&str> = csv.lines().collect();
    lines.sort();
    assert_eq!(lines[0], "\"1\";\"tab\there\"");
    assert_eq!(lines[1], "\"2\";none");
    // The pre-9.0 form psycopg2 users write.
    let legacy = copy_out(&client, "COPY (SELECT 7 AS n) TO STDOUT WITH CSV HEADER")
        .await
        .expect("legacy");
    assert_eq!(legacy, "n\n7\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_in_binary_reads_back_typed() {
    let (_server, client) = setup().await;
    client
        .batch_execute("INSERT INTO t VALUES (1, 'a', 0.25, true, '2026-01-01 00:00:01')")
        .await
        .expect("insert");
    let stream = client
        .copy_out("COPY (SELECT id, name, score, ok FROM t) TO STDOUT (FORMAT binary)")
        .await
        .expect("copy binary");
    let rows: Vec<_> =
        BinaryCopyOutStream::new(stream, &[Type::INT8, Type::TEXT, Type::FLOAT8, Type::BOOL])
            .try_collect()
            .await
            .expect("binary rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<i64>(0), 1);
    assert_eq!(rows[0].get::<&str>(1), "a");
    assert_eq!(rows[0].get::<f64>(2), 0.25);
    assert!(rows[0].get::<bool>(3));
    // No rows: still a well-formed PGCOPY stream (header and trailer).
    let stream = client
        .copy_out("COPY (SELECT id FROM t WHERE id < 0) TO STDOUT (FORMAT binary)")
        .await
        .expect("empty binary");
    let rows: Vec<_> = BinaryCopyOutStream::new(stream, &[Type::INT8])
        .try_collect()
        .await
        .expect("empty binary rows");
    assert!(rows.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_loads_rows_in_pieces_cut_anywhere() {
    let (_server, client) = setup().await;
    // 20,000 rows: more than one batch of the reader; sent in 7,777-byte pieces.
    let mut data = String::new();
    for i in 0..20_000 {
        let name = if i % 10 == 0 {
            "\\N".to_string()
        } else {
            format!("n\\t{i}")
        };
        data.push_str(&format!(
            "{i}\t{name}\t{i}.5\tt\t2026-01-01 00:00:{:02}\n",
            i % 60
        ));
    }
    let n = copy_in(&client, "COPY t FROM STDIN", data.as_bytes(), 7_777)
        .await
        .expect("copy text");
    assert_eq!(n, 20_000);
    let got = rows(
        &client,
        "SELECT count(*), count(name), sum(id), max(score) FROM t",
    )
    .await
    .expect("sums");
    assert_eq!(got, vec![vec!["20000", "18000", "199990000", "19999.5"]]);
    let got = rows(&client, "SELECT name FROM t WHERE id = 7")
        .await
        .expect("escape");
    assert_eq!(got, vec![vec!["n\t7"]]);
    // CSV with a header, quoted delimiters and line breaks, a column list, minutes only.
    let csv = "name,id,ts\n\"a,b\",100001,2026-01-02 10:05\n\"two\nlines\",100002,2026-01-02 10:06:00\n,100003,2026-01-02 10:07:00\n";
    let n = copy_in(
        &client,
        "COPY t (name, id, ts) FROM STDIN WITH (FORMAT csv, HEADER)",
        csv.as_bytes(),
        5,
    )
    .await
    .expect("copy csv");
    assert_eq!(n, 3);
    let got = rows(
        &client,
        "SELECT id, name, ts FROM t WHERE id > 100000 ORDER BY id",
    )
    .await
    .expect("csv rows");
    assert_eq!(
        got,
        vec![
            vec!["100001", "a,b", "2026-01-02 10:05:00"],
            vec!["100002", "two\nlines", "2026-01-02 10:06:00"],
            vec!["100003", "NULL", "2026-01-02 10:07:00"],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_copy_data_is_refused_whole_with_its_line_and_column() {
    let (server, client) = setup().await;
    let data = "1\ta\t1\tt\t2026-01-01 00:00:01\n2\tb\tnot-a-number\tt\t2026-01-01 00:00:02\n";
    let e = copy_in(&client, "COPY t FROM STDIN", data.as_bytes(), 1 << 16)
        .await
        .expect_err("bad double");
    assert!(
        e.contains("22P02")
            && e.contains("invalid input syntax for type double precision: \"not-a-number\"")
            && e.contains("line 2, column score"),
        "{e}"
    );
    assert_eq!(count(&client).await, "0", "a refused COPY inserts nothing");
    let e = copy_in(&client, "COPY t FROM STDIN", b"1\ta\n", 1 << 16)
        .await
        .expect_err("short row");
    assert!(
        e.contains("22P04") && e.contains("missing data for column \"score\""),
        "{e}"
    );
    let e = copy_in(
        &client,
        "COPY t (id, ts) FROM STDIN",
        b"\\N\t2026-01-01 00:00:01\n",
        64,
    )
    .await
    .expect_err("null id");
    assert!(e.contains("23502") && e.contains("\"id\""), "{e}");
    let e = copy_in(&client, "COPY t FROM STDIN (FORMAT csv)", b"1,\"open\n", 64)
        .await
        .expect_err("open quote");
    assert!(e.contains("unterminated CSV quoted field"), "{e}");
    // The connection goes on after each refused COPY.
    assert_eq!(count(&client).await, "0");
    let e = copy_out(&client, "COPY t TO '/tmp/eddy-copy-out'")
        .await
        .expect_err("server file");
    assert!(e.contains("0A000") && e.contains("\\copy"), "{e}");
    // An error at Execute (not in the data) ends tokio-postgres' connection, with PostgreSQL
    // too: the client's abandoned copy sink sends a second Sync. Each such check gets its own.
    let e = copy_in(&client, "COPY nope FROM STDIN", b"", 64)
        .await
        .expect_err("no table");
    assert!(e.contains("42P01"), "{e}");
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW v AS SELECT id FROM t; \
             CREATE SOURCE s (x BIGINT) WITH (connector = 'datagen', rows_per_second = '1')",
        )
        .await
        .expect("view and source");
    let e = copy_in(&client, "COPY v FROM STDIN", b"", 64)
        .await
        .expect_err("into a view");
    assert!(e.contains("cannot COPY to materialized view \"v\""), "{e}");
    let client = server.client().await;
    let e = copy_in(&client, "COPY s FROM STDIN", b"", 64)
        .await
        .expect_err("into a source");
    assert!(e.contains("cannot COPY to source \"s\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_in_binary_reads_each_column_as_its_type() {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    let (_server, client) = setup().await;
    let sink = client
        .copy_in("COPY t (id, name, score, ok, ts) FROM STDIN (FORMAT binary)")
        .await
        .expect("copy binary");
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::TEXT,
            Type::FLOAT8,
            Type::BOOL,
            Type::TIMESTAMP,
        ],
    );
    futures::pin_mut!(writer);
    let t0 = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.and_hms_micro_opt(0, 0, 1, 250_000))
        .expect("time");
    for i in 0..3000i64 {
        let name = (i % 3 != 0).then(|| format!("n{i}"));
        writer
            .as_mut()
            .write(&[&i, &name, &(i as f64 / 4.0), &(i % 2 == 0), &t0])
            .await
            .expect("row");
    }
    let n = writer.finish().await.expect("finish");
    assert_eq!(n, 3000);
    let got = rows(
        &client,
        "SELECT count(*), count(name), sum(id), max(score), min(ts) FROM t",
    )
    .await
    .expect("sums");
    assert_eq!(
        got,
        vec![vec![
            "3000",
            "2000",
            "4498500",
            "749.75",
            "2026-01-01 00:00:01.25"
        ]]
    );
}
