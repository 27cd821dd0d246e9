//! Property test: windowed views equal DataFusion's batch answer.
//!
//! Random rows arrive out of order, but never by more than the watermark
//! delay (so none is late). Once a final row pushes the watermark past every
//! window, each streaming view — TUMBLE emitting on update, HOP emitting on
//! window close, CUMULATE emitting on update, SESSION, a Top-N, joins, UNION ALL, an aggregate
//! over an aggregate, window functions (OVER, LAG) — must hold exactly what a batch `GROUP BY` on computed
//! window bounds gives over the same rows (the table's rows, queried through
//! the same server with plain DataFusion SQL).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use proptest::prelude::*;
use tokio_postgres::SimpleQueryMessage;

/// Watermark delay of the generated table, in milliseconds.
const DELAY_MS: i64 = 3_000;
/// 2026-01-01 00:00:00 UTC in milliseconds.
const BASE_MS: i64 = 1_767_225_600_000;
/// How long a view may take to catch up.
const CONVERGE: Duration = Duration::from_secs(20);

static CASE: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone)]
struct Row {
    auction: i64,
    price: i64,
    ts_ms: i64,
}

/// Rows with event times spread over ~60 s, in an arrival order that is out
/// of order by less than the watermark delay.
fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((0i64..4, 0i64..1000, 0i64..60_000, 0i64..DELAY_MS), 1..120).prop_map(
        |v| {
            let mut rows: Vec<(i64, Row)> = v
                .into_iter()
                .map(|(auction, price, t, skew)| {
                    (
                        t + skew,
                        Row {
                            auction,
                            price,
                            ts_ms: BASE_MS + t,
                        },
                    )
                })
                .collect();
            rows.sort_by_key(|(arrival, _)| *arrival);
            let mut rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
            // The filtered cases (`price > 100`) must have a row to check: with none,
            // the view and the oracle agree vacuously and `converge` says so.
            if rows.iter().all(|r| r.price <= 100) {
                if let Some(last) = rows.last_mut() {
                    last.price += 101;
                }
            }
            rows
        },
    )
}

async fn text_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", common::error_text(&e)));
    let mut out: Vec<String> = msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

async fn converge(client: &tokio_postgres::Client, view_sql: &str, oracle_sql: &str) {
    let expected = text_rows(client, oracle_sql).await;
    assert!(
        !expected.is_empty(),
        "oracle returned nothing: {oracle_sql}"
    );
    converge_or_empty(client, view_sql, oracle_sql).await;
}

/// [`converge`] for an answer that may be empty.
async fn converge_or_empty(client: &tokio_postgres::Client, view_sql: &str, oracle_sql: &str) {
    let expected = text_rows(client, oracle_sql).await;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = text_rows(client, view_sql).await;
        if got == expected {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "view never matched the batch answer\nview:   {view_sql}\n{got:#?}\noracle: {oracle_sql}\n{expected:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn check_case(server: &Server, rows: Vec<Row>) {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let client = server.client().await;
    let (t, vt, vh, vc, vs) = (
        format!("bids{n}"),
        format!("tumble{n}"),
        format!("hop{n}"),
        format!("cumulate{n}"),
        format!("session{n}"),
    );
    let vn = format!("top{n}");
    let (vr, vcnt, vbusy) = (format!("dense{n}"), format!("cnt{n}"), format!("busy{n}"));
    let (vrj, vfj) = (format!("rjoin{n}"), format!("fjoin{n}"));
    let vhu = format!("hopu{n}");
    let (vu, vaa, v3) = (
        format!("uall{n}"),
        format!("aggagg{n}"),
        format!("join3_{n}"),
    );
    let (vsemi, vanti) = (format!("semi{n}"), format!("anti{n}"));
    let vover = format!("over{n}");
    // Window functions over event time; ORDER BY ts, price so ties (equal rows) do not matter.
    let over_cols = "auction, price, ts, \
        sum(price) OVER (PARTITION BY auction ORDER BY ts \
          RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW) AS s2, \
        count(*) OVER (PARTITION BY auction ORDER BY ts, price \
          ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS c3, \
        lag(price) OVER (PARTITION BY auction ORDER BY ts, price) AS prev";
    // A bid with a bid over 100 for its auction within the next second (itself included, so
    // the row over 100 every case has keeps the semi join's answer from being empty).
    let outbid = |t: &str| {
        format!(
            "EXISTS (SELECT 1 FROM {t} b WHERE b.auction = a.auction AND b.price > 100 \
             AND b.ts >= a.ts AND b.ts <= a.ts + INTERVAL '1' SECOND)"
        )
    };
    let (vi, vw, vl) = (
        format!("interval{n}"),
        format!("wjoin{n}"),
        format!("ljoin{n}"),
    );
    client
        .batch_execute(&format!(
            "CREATE TABLE {t} (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP NOT NULL, \
             WATERMARK FOR ts AS ts - INTERVAL '{}' MILLISECOND);
             CREATE MATERIALIZED VIEW {vt} AS
               SELECT window_start, window_end, auction, count(*) AS n, sum(price) AS s, max(price) AS m
               FROM TUMBLE({t}, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, auction;
             CREATE MATERIALIZED VIEW {vh} AS
               SELECT window_start, auction, count(*) AS n, min(price) AS lo, avg(price) AS mean
               FROM TABLE(HOP(TABLE {t}, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND))
               GROUP BY window_start, auction EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW {vhu} AS
               SELECT window_end, auction, count(*) AS n, sum(price) AS s
               FROM HOP({t}, ts, INTERVAL '2' SECOND, INTERVAL '6' SECOND)
               WHERE price > 100 GROUP BY window_end, auction;
             CREATE MATERIALIZED VIEW {vc} AS
               SELECT window_start, window_end, auction, count(*) AS n, sum(price) AS s
               FROM CUMULATE({t}, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
               GROUP BY window_start, window_end, auction;
             CREATE MATERIALIZED VIEW {vs} AS
               SELECT auction, window_start, window_end, count(*) AS n, sum(price) AS s
               FROM SESSION({t}, ts, INTERVAL '3' SECOND)
               GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW {vn} AS
               SELECT auction, price, rn FROM (SELECT auction, price,
                 ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM {t})
               WHERE rn <= 3;
             CREATE MATERIALIZED VIEW {vr} AS
               SELECT auction, price, r FROM (SELECT auction, price,
                 DENSE_RANK() OVER (PARTITION BY auction ORDER BY price DESC) AS r FROM {t})
               WHERE r <= 2;
             CREATE MATERIALIZED VIEW {vcnt} AS
               SELECT auction, count(*) AS c FROM {t} WHERE auction <> 999 GROUP BY auction;
             CREATE MATERIALIZED VIEW {vbusy} AS
               SELECT auction, c, rn FROM (SELECT auction, c,
                 ROW_NUMBER() OVER (ORDER BY c DESC, auction) AS rn FROM {vcnt})
               WHERE rn <= 2;
             CREATE MATERIALIZED VIEW {vi} AS
               SELECT a.auction, a.price AS p1, b.price AS p2, a.ts AS t1, b.ts AS t2
               FROM {t} a JOIN {t} b ON a.auction = b.auction
                 AND b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts + INTERVAL '2' SECOND;
             CREATE MATERIALIZED VIEW {vw} AS
               SELECT a.window_start, a.auction, a.price AS p1, b.price AS p2
               FROM TUMBLE({t}, ts, INTERVAL '10' SECOND) a
               JOIN TUMBLE({t}, ts, INTERVAL '10' SECOND) b
                 ON a.auction = b.auction AND a.window_start = b.window_start
                 AND a.window_end = b.window_end AND a.price <= b.price;
             CREATE MATERIALIZED VIEW {vl} AS
               SELECT a.auction, a.price AS p1, a.ts AS t1, b.price AS p2
               FROM {t} a LEFT JOIN {t} b ON a.auction = b.auction
                 AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '1' SECOND;
             CREATE MATERIALIZED VIEW {vrj} AS
               SELECT a.price AS p1, b.auction, b.price AS p2, b.ts AS t2
               FROM {t} a RIGHT JOIN {t} b ON a.auction = b.auction
                 AND a.ts > b.ts AND a.ts <= b.ts + INTERVAL '1' SECOND;
             CREATE MATERIALIZED VIEW {vfj} AS
               SELECT a.auction AS a1, a.price AS p1, b.auction AS a2, b.price AS p2
               FROM {t} a FULL JOIN {t} b ON a.auction = b.auction AND a.price = b.price + 1
                 AND b.ts BETWEEN a.ts - INTERVAL '2' SECOND AND a.ts + INTERVAL '2' SECOND;
             CREATE MATERIALIZED VIEW {vu} AS
               SELECT auction, price, ts FROM {t} WHERE price > 100
               UNION ALL SELECT auction, price * 2, ts FROM {t} WHERE auction = 1;
             CREATE MATERIALIZED VIEW {vaa} AS
               SELECT window_start, max(n) AS top, sum(s) AS total, count(*) AS auctions
               FROM (SELECT window_start, auction, count(*) AS n, sum(price) AS s
                     FROM TUMBLE({t}, ts, INTERVAL '10' SECOND)
                     GROUP BY window_start, window_end, auction)
               WHERE auction <> 999 GROUP BY window_start EMIT ON WINDOW CLOSE;
             CREATE MATERIALIZED VIEW {v3} AS
               SELECT a.auction, a.price AS p1, b.price AS p2, c.price AS p3
               FROM {t} a JOIN {t} b ON a.auction = b.auction
                 AND b.ts >= a.ts AND b.ts <= a.ts + INTERVAL '2' SECOND
               JOIN {t} c ON c.auction = b.auction
                 AND c.ts >= a.ts AND c.ts <= a.ts + INTERVAL '3' SECOND;
             CREATE MATERIALIZED VIEW {vsemi} AS
               SELECT auction, price, ts FROM {t} a WHERE {o};
             CREATE MATERIALIZED VIEW {vanti} AS
               SELECT auction, price, ts FROM {t} a WHERE NOT {o};
             CREATE MATERIALIZED VIEW {vover} AS SELECT {over_cols} FROM {t};",
            DELAY_MS,
            o = outbid(&t)
        ))
        .await
        .unwrap_or_else(|e| panic!("ddl: {}", common::error_text(&e)));
    // Insert in small batches, in arrival order.
    for chunk in rows.chunks(7) {
        let values: Vec<String> = chunk
            .iter()
            .map(|r| {
                format!(
                    "({}, {}, {})",
                    r.auction,
                    r.price,
                    common::timestamp_literal(r.ts_ms)
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO {t} VALUES {}", values.join(", ")))
            .await
            .unwrap_or_else(|e| panic!("insert: {}", common::error_text(&e)));
    }
    // Push the watermark past every generated window (the flush row is auction 999, excluded).
    let flush_ms = BASE_MS + 200_000;
    client
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES (999, 0, {})",
            common::timestamp_literal(flush_ms)
        ))
        .await
        .unwrap_or_else(|e| panic!("flush: {}", common::error_text(&e)));

    let origin = "TIMESTAMP '1970-01-01 00:00:00'";
    converge(
        &client,
        &format!(
            "SELECT window_start, window_end, auction, n, s, m FROM {vt} WHERE auction <> 999"
        ),
        &format!(
            "SELECT ws, ws + INTERVAL '10' SECOND, auction, count(*), sum(price), max(price) FROM \
             (SELECT date_bin(INTERVAL '10' SECOND, ts, {origin}) AS ws, auction, price FROM {t}) \
             WHERE auction <> 999 GROUP BY ws, auction"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT window_start, auction, n, lo, mean FROM {vh}"),
        &format!(
            "SELECT ws, auction, count(*), min(price), avg(price) FROM (\
               SELECT date_bin(INTERVAL '5' SECOND, ts, {origin}) AS ws, auction, price FROM {t} \
               UNION ALL \
               SELECT date_bin(INTERVAL '5' SECOND, ts, {origin}) - INTERVAL '5' SECOND AS ws, auction, price FROM {t}) \
             WHERE auction <> 999 GROUP BY ws, auction"
        ),
    )
    .await;
    // Emitting on update, by window_end: each row is in the windows ending 2, 4 and 6 s after
    // the start of its 2 s slide.
    let hop_ends: Vec<String> = (1..=3)
        .map(|k| {
            format!(
                "SELECT date_bin(INTERVAL '2' SECOND, ts, {origin}) + INTERVAL '{}' SECOND AS we, \
                 auction, price FROM {t} WHERE price > 100",
                2 * k
            )
        })
        .collect();
    converge(
        &client,
        &format!("SELECT window_end, auction, n, s FROM {vhu} WHERE auction <> 999"),
        &format!(
            "SELECT we, auction, count(*), sum(price) FROM ({}) WHERE auction <> 999 \
             GROUP BY we, auction",
            hop_ends.join(" UNION ALL ")
        ),
    )
    .await;
    // Each row is in the windows of its 10 s period that end 2, 4, … 10 s after
    // the period starts and after the row.
    let cumulative: Vec<String> = (1..=5)
        .map(|k| {
            format!(
                "SELECT ws, ws + INTERVAL '{s}' SECOND AS we, auction, price FROM \
                 (SELECT date_bin(INTERVAL '10' SECOND, ts, {origin}) AS ws, ts, auction, price FROM {t}) \
                 WHERE ts < ws + INTERVAL '{s}' SECOND",
                s = 2 * k
            )
        })
        .collect();
    converge(
        &client,
        &format!("SELECT window_start, window_end, auction, n, s FROM {vc} WHERE auction <> 999"),
        &format!(
            "SELECT ws, we, auction, count(*), sum(price) FROM ({}) \
             WHERE auction <> 999 GROUP BY ws, we, auction",
            cumulative.join(" UNION ALL ")
        ),
    )
    .await;
    // Sessions by window functions: a row more than 3 s after the previous
    // one of its auction starts a new session.
    converge(
        &client,
        &format!("SELECT auction, window_start, window_end, n, s FROM {vs} WHERE auction <> 999"),
        &format!(
            "SELECT auction, min(ts), max(ts) + INTERVAL '3' SECOND, count(*), sum(price) FROM (\
               SELECT auction, ts, price, sum(CASE WHEN prev IS NULL \
                 OR arrow_cast(ts, 'Int64') - arrow_cast(prev, 'Int64') > 3000000000 THEN 1 ELSE 0 END) \
                 OVER (PARTITION BY auction ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM (\
                 SELECT auction, ts, price, lag(ts) OVER (PARTITION BY auction ORDER BY ts) AS prev \
                 FROM {t})) \
             WHERE auction <> 999 GROUP BY auction, sid"
        ),
    )
    .await;
    // Top 3 prices per auction (ties give the same (price, rank) pairs whichever row wins).
    converge(
        &client,
        &format!("SELECT auction, price, rn FROM {vn} WHERE auction <> 999"),
        &format!(
            "SELECT auction, price, rn FROM (SELECT auction, price, \
               ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM {t}) \
             WHERE rn <= 3 AND auction <> 999"
        ),
    )
    .await;
    // DENSE_RANK() ties, and a Top-N over an updating view (live counts).
    converge(
        &client,
        &format!("SELECT auction, price, r FROM {vr} WHERE auction <> 999"),
        &format!(
            "SELECT auction, price, r FROM (SELECT auction, price, \
               DENSE_RANK() OVER (PARTITION BY auction ORDER BY price DESC) AS r FROM {t}) \
             WHERE r <= 2 AND auction <> 999"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT auction, c, rn FROM {vbusy}"),
        &format!(
            "SELECT auction, c, rn FROM (SELECT auction, c, \
               ROW_NUMBER() OVER (ORDER BY c DESC, auction) AS rn FROM \
               (SELECT auction, count(*) AS c FROM {t} WHERE auction <> 999 GROUP BY auction)) \
             WHERE rn <= 2"
        ),
    )
    .await;
    // Joins: the same SQL in batch over the table's rows.
    converge(
        &client,
        &format!("SELECT auction, p1, p2, t1, t2 FROM {vi} WHERE auction <> 999"),
        &format!(
            "SELECT a.auction, a.price, b.price, a.ts, b.ts FROM {t} a JOIN {t} b \
             ON a.auction = b.auction \
             AND b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts + INTERVAL '2' SECOND \
             WHERE a.auction <> 999"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT window_start, auction, p1, p2 FROM {vw} WHERE auction <> 999"),
        &format!(
            "SELECT a.ws, a.auction, a.price, b.price FROM \
             (SELECT date_bin(INTERVAL '10' SECOND, ts, {origin}) AS ws, auction, price FROM {t}) a \
             JOIN (SELECT date_bin(INTERVAL '10' SECOND, ts, {origin}) AS ws, auction, price FROM {t}) b \
             ON a.auction = b.auction AND a.ws = b.ws AND a.price <= b.price WHERE a.auction <> 999"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT auction, p1, t1, p2 FROM {vl} WHERE auction <> 999"),
        &format!(
            "SELECT a.auction, a.price, a.ts, b.price FROM {t} a LEFT JOIN {t} b \
             ON a.auction = b.auction AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '1' SECOND \
             WHERE a.auction <> 999"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT p1, auction, p2, t2 FROM {vrj} WHERE auction <> 999"),
        &format!(
            "SELECT a.price, b.auction, b.price, b.ts FROM {t} a RIGHT JOIN {t} b \
             ON a.auction = b.auction AND a.ts > b.ts AND a.ts <= b.ts + INTERVAL '1' SECOND \
             WHERE b.auction <> 999"
        ),
    )
    .await;
    converge(
        &client,
        &format!(
            "SELECT a1, p1, a2, p2 FROM {vfj} \
             WHERE coalesce(a1, 0) <> 999 AND coalesce(a2, 0) <> 999"
        ),
        &format!(
            "SELECT a.auction, a.price, b.auction, b.price FROM {t} a FULL JOIN {t} b \
             ON a.auction = b.auction AND a.price = b.price + 1 \
             AND b.ts BETWEEN a.ts - INTERVAL '2' SECOND AND a.ts + INTERVAL '2' SECOND \
             WHERE coalesce(a.auction, 0) <> 999 AND coalesce(b.auction, 0) <> 999"
        ),
    )
    .await;
    // UNION ALL, an aggregate over an aggregate and a three-way join, each in one view.
    converge(
        &client,
        &format!("SELECT auction, price, ts FROM {vu} WHERE auction <> 999"),
        &format!(
            "SELECT auction, price, ts FROM {t} WHERE price > 100 AND auction <> 999 \
             UNION ALL SELECT auction, price * 2, ts FROM {t} WHERE auction = 1"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT window_start, top, total, auctions FROM {vaa}"),
        &format!(
            "SELECT ws, max(n), sum(s), count(*) FROM \
             (SELECT date_bin(INTERVAL '10' SECOND, ts, {origin}) AS ws, auction, count(*) AS n, \
                sum(price) AS s FROM {t} WHERE auction <> 999 GROUP BY 1, auction) GROUP BY ws"
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT auction, p1, p2, p3 FROM {v3} WHERE auction <> 999"),
        &format!(
            "SELECT a.auction, a.price, b.price, c.price FROM {t} a JOIN {t} b \
             ON a.auction = b.auction AND b.ts >= a.ts AND b.ts <= a.ts + INTERVAL '2' SECOND \
             JOIN {t} c ON c.auction = b.auction \
             AND c.ts >= a.ts AND c.ts <= a.ts + INTERVAL '3' SECOND WHERE a.auction <> 999"
        ),
    )
    .await;
    // EXISTS and NOT EXISTS: semi and anti joins bounded in event time.
    converge(
        &client,
        &format!("SELECT auction, price, ts FROM {vsemi} WHERE auction <> 999"),
        &format!(
            "SELECT auction, price, ts FROM {t} a WHERE {} AND auction <> 999",
            outbid(&t)
        ),
    )
    .await;
    // The anti join's answer can be empty (every bid over 100).
    converge_or_empty(
        &client,
        &format!("SELECT auction, price, ts FROM {vanti} WHERE auction <> 999"),
        &format!(
            "SELECT auction, price, ts FROM {t} a WHERE NOT {} AND auction <> 999",
            outbid(&t)
        ),
    )
    .await;
    converge(
        &client,
        &format!("SELECT auction, price, ts, s2, c3, prev FROM {vover} WHERE auction <> 999"),
        &format!(
            "SELECT auction, price, ts, s2, c3, prev FROM (SELECT {over_cols} FROM {t}) \
             WHERE auction <> 999"
        ),
    )
    .await;
    let late = text_rows(
        &client,
        &format!(
            "SELECT rows_late FROM eddy.views WHERE name IN ('{vt}', '{vh}', '{vc}', '{vs}', \
             '{vi}', '{vw}', '{vl}', '{vover}')"
        ),
    )
    .await;
    assert_eq!(late, vec!["0"; 8], "no generated row is late");
}

#[test]
fn windowed_views_equal_batch_answer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(Server::start());
    let config = ProptestConfig {
        cases: 12,
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    };
    proptest!(config, |(rows in rows())| {
        rt.block_on(check_case(&server, rows));
    });
}
