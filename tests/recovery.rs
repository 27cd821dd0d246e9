//! Exactly-once recovery, proven by killing the server.
//!
//! Golden test: run A feeds all input without interruption; run B feeds the
//! same input, takes checkpoints (on command and every second), is killed
//! with SIGKILL at a moment chosen by a seed while INSERTs are in flight,
//! restarts, and feeds the rest. Every view of B must equal A's, row for row:
//! nothing lost, nothing counted twice. The views cover non-windowed and
//! windowed aggregates (emit on update and on window close, TUMBLE and HOP,
//! count DISTINCT / avg / min / max state), a stateless filter, and views on
//! an updating view. Input has out-of-order and late rows, so the restored
//! watermarks matter too.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{rows, PgClient, Server};

const BATCHES: usize = 60;
const ROWS_PER_BATCH: usize = 40;

const DDL: &str = "
CREATE TABLE t (k VARCHAR, v BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '2' SECOND);
CREATE MATERIALIZED VIEW totals AS
  SELECT k, count(*) AS n, sum(v) AS s, count(DISTINCT v) AS dv, avg(v) AS a,
         min(v) AS mn, max(v) AS mx
  FROM t GROUP BY k;
CREATE MATERIALIZED VIEW per_10s AS
  SELECT k, window_start, count(*) AS n, max(v) AS mx
  FROM TUMBLE(t, ts, INTERVAL '10' SECOND) GROUP BY k, window_start;
CREATE MATERIALIZED VIEW closed AS
  SELECT window_start, window_end, count(*) AS n, min(v) AS mn
  FROM HOP(t, ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND)
  GROUP BY window_start, window_end
  EMIT ON WINDOW CLOSE;
CREATE MATERIALIZED VIEW sessions AS
  SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
  FROM SESSION(t, ts, INTERVAL '1' SECOND)
  GROUP BY k, window_start, window_end EMIT ON WINDOW CLOSE;
CREATE MATERIALIZED VIEW every7 AS
  SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
  FROM TUMBLE_ROWS(t, ts, 7) GROUP BY k, window_start, window_end;
CREATE MATERIALIZED VIEW top3 AS
  SELECT k, v, rn FROM (
    SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM t)
  WHERE rn <= 3;
CREATE MATERIALIZED VIEW busiest AS
  SELECT k, n, rn FROM (
    SELECT k, count(*) AS n, ROW_NUMBER() OVER (ORDER BY count(*) DESC, k) AS rn
    FROM t GROUP BY k)
  WHERE rn <= 3;
CREATE MATERIALIZED VIEW pairs AS
  SELECT a.k, count(*) AS n, sum(b.v) AS s FROM t a JOIN t b
    ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '2' SECOND AND a.ts + INTERVAL '1' SECOND
  GROUP BY a.k;
CREATE MATERIALIZED VIEW sevens AS SELECT k, v, ts FROM t WHERE v % 7 = 0;
CREATE MATERIALIZED VIEW busy AS SELECT k, n FROM totals WHERE n > 150;
CREATE MATERIALIZED VIEW overall AS SELECT count(*) AS groups, sum(n) AS total FROM totals;
";

/// (view, query that lists it in a stable order).
const VIEWS: &[(&str, &str)] = &[
    ("totals", "SELECT * FROM totals ORDER BY k"),
    ("per_10s", "SELECT * FROM per_10s ORDER BY k, window_start"),
    ("closed", "SELECT * FROM closed ORDER BY window_start"),
    (
        "sessions",
        "SELECT * FROM sessions ORDER BY k, window_start",
    ),
    (
        "every7",
        "SELECT * FROM every7 ORDER BY k, window_start, window_end, s",
    ),
    ("top3", "SELECT * FROM top3 ORDER BY k, rn"),
    ("pairs", "SELECT * FROM pairs ORDER BY k"),
    ("busiest", "SELECT * FROM busiest ORDER BY rn"),
    ("sevens", "SELECT * FROM sevens ORDER BY ts, k, v"),
    ("busy", "SELECT * FROM busy ORDER BY k"),
    ("overall", "SELECT * FROM overall"),
];

/// `INSERT` for batch `b`: keys cycle, values repeat (so DISTINCT matters),
/// event time runs forward 100 ms per row with rows up to 6 s out of order
/// (those below the 2 s watermark delay are late and dropped by windows).
fn batch_sql(b: usize) -> String {
    let values: Vec<String> = (0..ROWS_PER_BATCH)
        .map(|i| {
            let n = b * ROWS_PER_BATCH + i;
            let k = format!("k{}", (b * 7 + i * 3) % 13);
            let v = (n * 31) % 97;
            let ms = 1_767_225_600_000_i64 + n as i64 * 100 - ((n * 37) % 5) as i64 * 1500;
            let secs = ms.div_euclid(1000);
            let ts =
                chrono::DateTime::from_timestamp(secs, (ms.rem_euclid(1000) * 1_000_000) as u32)
                    .expect("valid time")
                    .naive_utc()
                    .format("%Y-%m-%d %H:%M:%S%.3f");
            format!("('{k}', {v}, '{ts}')")
        })
        .collect();
    format!("INSERT INTO t VALUES {}", values.join(", "))
}

async fn exec(c: &PgClient, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {}", common::error_text(&e)));
}

/// Every view's rows. A completed `CHECKPOINT` means every view has processed
/// everything published before it, so the result is settled.
async fn settled_views(c: &PgClient) -> Vec<(String, Vec<Vec<String>>)> {
    exec(c, "CHECKPOINT").await;
    let mut out = Vec::new();
    for (name, q) in VIEWS {
        let r = rows(c, q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        out.push((name.to_string(), r));
    }
    out
}

fn data_dir() -> std::path::PathBuf {
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run_uninterrupted() -> Vec<(String, Vec<Vec<String>>)> {
    let dir = data_dir();
    let a = Server::start_in(&dir).await;
    let c = a.client().await;
    exec(&c, DDL).await;
    for b in 0..BATCHES {
        exec(&c, &batch_sql(b)).await;
    }
    settled_views(&c).await
}

/// Rows of `t` the restarted server holds (its write-ahead log is the truth
/// about which in-flight INSERT was acknowledged).
async fn rows_in_t(c: &PgClient) -> usize {
    let r = rows(c, "SELECT count(*) FROM t").await.expect("count t");
    r[0][0].parse().expect("a count")
}

/// Run B for `seed`: checkpoint after a seed-chosen batch, keep inserting,
/// SIGKILL after a seed-chosen delay, restart, feed the rest. The restarted
/// server runs views on a seed-chosen number of partitions, mostly not the
/// first one's: checkpointed state is re-split by key.
async fn run_killed(seed: u64, dir: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    let checkpoint_after = 5 + (seed as usize * 11) % 30;
    let kill_after = Duration::from_millis(20 + (seed * 53) % 400);
    let before = (1 + seed % 4).to_string();
    let after = (1 + (seed * 3) % 5).to_string();
    let mut b = Server::start_in_with(
        dir,
        &["--checkpoint-interval", "1", "--parallelism", &before],
    )
    .await;
    let c = b.client().await;
    exec(&c, DDL).await;
    for i in 0..=checkpoint_after {
        exec(&c, &batch_sql(i)).await;
    }
    exec(&c, "CHECKPOINT").await;
    // Insert the rest from another task; kill the server under it.
    let feeder = tokio::spawn(async move {
        for i in checkpoint_after + 1..BATCHES {
            if c.batch_execute(&batch_sql(i)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(kill_after).await;
    b.kill();
    let _ = feeder.await;

    let b2 = Server::start_in_with(dir, &["--parallelism", &after]).await;
    assert!(
        b2.log_contains("recovering from checkpoint"),
        "{}",
        b2.log_tail()
    );
    let c = b2.client().await;
    let have = rows_in_t(&c).await;
    assert_eq!(have % ROWS_PER_BATCH, 0, "an INSERT is all or nothing");
    for i in have / ROWS_PER_BATCH..BATCHES {
        exec(&c, &batch_sql(i)).await;
    }
    settled_views(&c).await
}

fn assert_same(a: &[(String, Vec<Vec<String>>)], b: &[(String, Vec<Vec<String>>)], what: &str) {
    for ((name, ra), (_, rb)) in a.iter().zip(b) {
        assert!(
            !ra.is_empty(),
            "view {name} is empty in the uninterrupted run"
        );
        assert_eq!(ra, rb, "view {name} differs after {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_after_sigkill_equal_an_uninterrupted_run() {
    let a = run_uninterrupted().await;
    for seed in [1, 2, 3, 4] {
        let dir = data_dir();
        let b = run_killed(seed, &dir).await;
        assert_same(&a, &b, &format!("a SIGKILL (seed {seed})"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_latest_checkpoint_falls_back_to_the_previous_one() {
    let a = run_uninterrupted().await;
    let dir = data_dir();
    let mut b = Server::start_in_with(&dir, &["--checkpoint-interval", "0"]).await;
    let c = b.client().await;
    exec(&c, DDL).await;
    for i in 0..20 {
        exec(&c, &batch_sql(i)).await;
    }
    exec(&c, "CHECKPOINT").await;
    for i in 20..40 {
        exec(&c, &batch_sql(i)).await;
    }
    exec(&c, "CHECKPOINT").await;
    let done = rows(
        &c,
        "SELECT epoch, status, views FROM eddy.checkpoints ORDER BY epoch",
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(
        done.iter().all(|r| r[1] == "completed" && r[2] == "11"),
        "{done:?}"
    );
    b.kill();
    // Damage every data file of the newest checkpoint.
    let root = dir.join("checkpoints");
    let newest = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .max()
        .expect("a checkpoint");
    for f in std::fs::read_dir(&newest).unwrap().filter_map(|e| e.ok()) {
        let p = f.path();
        if p.extension().is_some_and(|e| e == "arrow") {
            let mut bytes = std::fs::read(&p).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(&p, bytes).unwrap();
        }
    }
    let b2 = Server::start_in(&dir).await;
    let c = b2.client().await;
    assert_eq!(rows_in_t(&c).await, 40 * ROWS_PER_BATCH);
    for i in 40..BATCHES {
        exec(&c, &batch_sql(i)).await;
    }
    let b = settled_views(&c).await;
    assert_same(&a, &b, "falling back to an older checkpoint");
    assert!(
        b2.log_contains("falling back to an older checkpoint"),
        "the fallback is logged:\n{}",
        b2.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_before_any_checkpoint_and_after_drop() {
    let dir = data_dir();
    let mut s = Server::start_in_with(&dir, &["--checkpoint-interval", "0"]).await;
    let c = s.client().await;
    exec(
        &c,
        "CREATE TABLE t (k VARCHAR, v BIGINT);
         CREATE MATERIALIZED VIEW m AS SELECT k, sum(v) AS s FROM t GROUP BY k;
         INSERT INTO t VALUES ('a', 1), ('b', 2);",
    )
    .await;
    // No checkpoint yet: the view is rebuilt from the table's log.
    s.kill();
    let mut s = Server::start_in_with(&dir, &["--checkpoint-interval", "0"]).await;
    let c = s.client().await;
    common::eventually(
        &c,
        "SELECT k, s FROM m ORDER BY k",
        &[&["a", "1"], &["b", "2"]],
    )
    .await;
    exec(&c, "INSERT INTO t VALUES ('a', 10); CHECKPOINT;").await;
    // Replace the view after the checkpoint: the new one must not pick up the
    // old one's checkpointed state.
    exec(
        &c,
        "DROP MATERIALIZED VIEW m;
         CREATE MATERIALIZED VIEW m AS SELECT k, count(*) AS s FROM t GROUP BY k;
         INSERT INTO t VALUES ('b', 5);",
    )
    .await;
    s.kill();
    let s = Server::start_in(&dir).await;
    let c = s.client().await;
    common::eventually(
        &c,
        "SELECT k, s FROM m ORDER BY k",
        &[&["a", "2"], &["b", "2"]],
    )
    .await;
    exec(&c, "INSERT INTO t VALUES ('a', 1)").await;
    common::eventually(
        &c,
        "SELECT k, s FROM m ORDER BY k",
        &[&["a", "3"], &["b", "2"]],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_file_resumes_after_the_checkpointed_line() {
    let dir = data_dir();
    let input = dir.parent().unwrap().join("events.jsonl");
    let lines = |range: std::ops::Range<usize>| -> String {
        range
            .map(|i| format!("{{\"k\": \"k{}\", \"v\": {i}}}\n", i % 3))
            .collect()
    };
    std::fs::write(&input, lines(0..30)).unwrap();
    let mut s = Server::start_in_with(&dir, &["--checkpoint-interval", "0"]).await;
    let c = s.client().await;
    exec(
        &c,
        &format!(
            "CREATE SOURCE ev (k VARCHAR, v BIGINT)
               WITH (connector = 'file', path = '{}', format = 'json', 'file.follow' = 'true',
                     'file.poll_interval_ms' = '20');
             CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n, sum(v) AS s FROM ev GROUP BY k;",
            input.display()
        ),
    )
    .await;
    let sql = "SELECT k, n, s FROM per_k ORDER BY k";
    common::eventually(
        &c,
        sql,
        &[
            &["k0", "10", "135"],
            &["k1", "10", "145"],
            &["k2", "10", "155"],
        ],
    )
    .await;
    exec(&c, "CHECKPOINT").await;
    s.kill();
    // Lines written while the server is down are read once it is back; the
    // first 30 are not read again.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    std::io::Write::write_all(&mut f, lines(30..45).as_bytes()).unwrap();
    let s = Server::start_in(&dir).await;
    let c = s.client().await;
    common::eventually(
        &c,
        sql,
        &[
            &["k0", "15", "315"],
            &["k1", "15", "330"],
            &["k2", "15", "345"],
        ],
    )
    .await;
}
