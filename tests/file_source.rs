//! The file connector over the real server: the Meetup fixture read once, and
//! a directory followed as files grow and appear.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, rows, Server};

/// The fixture's 2,000 lines: 1,960 rows and 40 dead letters, each at its line number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetup_fixture_from_a_file() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/meetup/rsvps.jsonl");
    let text = std::fs::read_to_string(&path).expect("Meetup fixture");
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        r#"CREATE SOURCE rsvps (
             rsvp_id BIGINT NOT NULL, response VARCHAR CHECK (response IN ('yes', 'no')),
             guests INT CHECK (guests >= 0), mtime TIMESTAMP NOT NULL,
             WATERMARK FOR mtime AS mtime - INTERVAL '5' SECOND)
           INCLUDE offset AS line
           WITH (connector = 'file', path = '{}', format = 'json');
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
