//! The file connector over the real server: the Meetup fixture read once, and
//! a directory followed as files grow and appear.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, rows, Server};

/// The fixture's 2,000 lines: 1,960 rows and 40 dead letters, each at its line number.
/// Decoded in 32 chunks of 64 lines on three threads: rows, positions and dead
/// letters still come out in line order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetup_fixture_from_a_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/data/meetup/rsvps.jsonl");
    let text = std::fs::read_to_string(&path).expect("Meetup fixture");
    let server = Server::start().await;
    let c = server.client().await;
    let e = c
        .batch_execute(&format!(
            "CREATE SOURCE bad (v BIGINT) WITH (connector = 'file', path = '{}', \
             'decode.threads' = '0')",
            path.display()
        ))
        .await
        .expect_err("decode.threads = 0");
    assert_eq!(
        common::error_text(&e),
        "22023 ERROR: decode.threads must be an integer in 1..=64, got '0'"
    );
    c.batch_execute(&format!(
        r#"CREATE SOURCE rsvps (
             rsvp_id BIGINT NOT NULL, response VARCHAR CHECK (response IN ('yes', 'no')),
             guests INT CHECK (guests >= 0), mtime TIMESTAMP NOT NULL,
             WATERMARK FOR mtime AS mtime - INTERVAL '5' SECOND)
           INCLUDE offset AS line
           WITH (connector = 'file', path = '{}', format = 'json',
                 'batch.max_rows' = '64', 'decode.threads' = '3');
           CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n, count(DISTINCT rsvp_id) AS ids,
             max(line) AS last_line FROM rsvps;"#,
        path.display()
    ))
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", common::error_text(&e)));
    eventually(
        &c,
        "SELECT n, ids, last_line FROM n",
        &[&["1960", "1960", "1999"]],
    )
    .await;
    eventually(
        &c,
        "SELECT status, rows_read, rows_rejected FROM eddy.sources",
        &[&["finished", "1960", "40"]],
    )
    .await;
    // Exactly the 40 bad lines (every 50th) are dead letters, with their own bytes.
    let letters = rows(
        &c,
        r#"SELECT "offset", payload FROM eddy.dead_letters ORDER BY "offset""#,
    )
    .await
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let want: Vec<Vec<String>> = (1..=2000)
        .filter(|n| n % 50 == 0)
        .map(|n: usize| vec![n.to_string(), lines[n - 1].to_string()])
        .collect();
    assert_eq!(letters, want);
    // Kept in the order they were rejected, which is line order.
    let unordered = rows(&c, r#"SELECT "offset" FROM eddy.dead_letters"#)
        .await
        .unwrap();
    assert_eq!(
        unordered.iter().map(|r| &r[0]).collect::<Vec<_>>(),
        want.iter().map(|r| &r[0]).collect::<Vec<_>>()
    );
}

/// The Meetup pipeline's running top 10 RSVP topics (`UNNEST` of the nested
/// `group.group_topics`) by `approx_top_k`, against an exact count: with room
/// for every topic it is exact; with 12 counters for the fixture's 20 topics
/// every estimate brackets the true count and the heavy topics are all there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetup_top_topics_against_an_exact_count() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/data/meetup/rsvps.jsonl");
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        r#"CREATE SOURCE rsvps (
             rsvp_id BIGINT NOT NULL, mtime TIMESTAMP NOT NULL,
             "group" STRUCT<group_city VARCHAR,
                            group_topics STRUCT<urlkey VARCHAR, topic_name VARCHAR>[]>,
             WATERMARK FOR mtime AS mtime - INTERVAL '5' SECOND)
           WITH (connector = 'file', path = '{}', format = 'json');
           CREATE MATERIALIZED VIEW exact AS SELECT t.topic_name AS topic, count(*) AS n
             FROM rsvps, UNNEST("group".group_topics) AS t GROUP BY 1;
           CREATE MATERIALIZED VIEW top10 AS SELECT approx_top_k(t.topic_name, 10) AS top
             FROM rsvps, UNNEST("group".group_topics) AS t;
           CREATE MATERIALIZED VIEW top10_small AS SELECT approx_top_k(t.topic_name, 10, 12) AS top
             FROM rsvps, UNNEST("group".group_topics) AS t;"#,
        path.display()
    ))
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", common::error_text(&e)));
    eventually(&c, "SELECT status FROM eddy.sources", &[&["finished"]]).await;
    let entries = |view: &str| {
        format!(
            "SELECT e['item'], e['count'], e['error'] FROM (SELECT unnest(top) AS e FROM {view}) \
             ORDER BY 2 DESC, 1"
        )
    };
    let exact: std::collections::HashMap<String, i64> = loop {
        // The source has finished; wait until the counts stop moving.
        let got = rows(&c, "SELECT topic, n FROM exact").await.unwrap();
        let total: i64 = got.iter().map(|r| r[1].parse::<i64>().unwrap()).sum();
        if total > 0 && got.len() == 20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let again = rows(&c, "SELECT topic, n FROM exact").await.unwrap();
            if again == got {
                break got
                    .into_iter()
                    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
                    .collect();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut by_count: Vec<(&String, &i64)> = exact.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let want: Vec<Vec<String>> = by_count[..10]
        .iter()
        .map(|(t, n)| vec![t.to_string(), n.to_string(), "0".into()])
        .collect();
    let want: Vec<Vec<&str>> = want
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let want: Vec<&[&str]> = want.iter().map(Vec::as_slice).collect();
    eventually(&c, &entries("top10"), &want).await;
    let total: i64 = exact.values().sum();
    let small = rows(&c, &entries("top10_small")).await.unwrap();
    assert_eq!(small.len(), 10, "{small:?}");
    for r in &small {
        let (count, error): (i64, i64) = (r[1].parse().unwrap(), r[2].parse().unwrap());
        let truth = exact[&r[0]];
        assert!(
            count - error <= truth && truth <= count,
            "{r:?}: the true count {truth} is outside [count - error, count]"
        );
    }
    for (topic, n) in &exact {
        if *n > total / 12 {
            assert!(
                small.iter().any(|r| &r[0] == topic),
                "{topic} ({n} of {total}) is missing from {small:?}"
            );
        }
    }
}

/// A followed directory: appended lines and new files are read; a line is
/// read only once its newline arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_directory_picks_up_growth_and_new_files() {
    let dir = common::unique_temp_dir().join("in");
    std::fs::create_dir_all(&dir).unwrap();
    let append = |name: &str, text: &str| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.sync_all().unwrap();
    };
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE SOURCE f (v INT) INCLUDE file AS path
           WITH (connector = 'file', path = '{}', format = 'json', 'file.follow' = 'true',
                 'file.poll_interval_ms' = '50');
         CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, sum(v) AS s FROM f;
         CREATE MATERIALIZED VIEW files AS SELECT path, count(*) AS n FROM f GROUP BY path;",
        dir.display()
    ))
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", common::error_text(&e)));
    // The directory starts empty (the source reads from its first view on; views created
    // later see rows from then on, so both views exist before any line is written).
    append("a.jsonl", "{\"v\": 1}\n{\"v\": 2}\n");
    eventually(&c, "SELECT n, s FROM total", &[&["2", "3"]]).await;
    // Half a line: not a record yet.
    append("a.jsonl", "{\"v\": 3");
    tokio::time::sleep(Duration::from_millis(400)).await;
    eventually(&c, "SELECT n, s FROM total", &[&["2", "3"]]).await;
    append("a.jsonl", "0}\n");
    append("b.jsonl", "{\"v\": 100}\n");
    eventually(&c, "SELECT n, s FROM total", &[&["4", "133"]]).await;
    let a = dir.join("a.jsonl").display().to_string();
    let b = dir.join("b.jsonl").display().to_string();
    eventually(
        &c,
        "SELECT path, n FROM files ORDER BY path",
        &[&[&a, "3"], &[&b, "1"]],
    )
    .await;
    eventually(
        &c,
        "SELECT status, rows_rejected FROM eddy.sources",
        &[&["running", "0"]],
    )
    .await;
}

/// `on_error = 'fail'` with a bad line in the middle of a file read in small chunks on
/// several threads: the rows before it arrive, the source fails, and its error names the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_mid_file_names_the_bad_line() {
    let dir = common::unique_temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("v.jsonl");
    let text: String = (1..=50)
        .map(|i| {
            if i == 20 {
                "{\"v\": \"twenty\"}\n".to_string()
            } else {
                format!("{{\"v\": {i}}}\n")
            }
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "CREATE SOURCE s (v BIGINT) WITH (connector = 'file', path = '{}', format = 'json', \
         on_error = 'fail', 'batch.max_rows' = '4', 'decode.threads' = '2');
         CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n, max(v) AS last FROM s;",
        path.display()
    ))
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", common::error_text(&e)));
    eventually(&c, "SELECT status FROM eddy.sources", &[&["failed"]]).await;
    eventually(&c, "SELECT n, last FROM n", &[&["19", "19"]]).await;
    let error = rows(&c, "SELECT last_error FROM eddy.sources")
        .await
        .unwrap();
    assert!(
        error[0][0].contains("v.jsonl line 20 rejected"),
        "{error:?}"
    );
}
