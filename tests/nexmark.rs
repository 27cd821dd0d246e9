//! The Nexmark queries in `sql/nexmark/` against an independent batch answer.
//!
//! For each query, a fresh set of nexmark sources (20,000 events of all kinds, 500 events per
//! second of event time: 40 s, so several windows of every kind) feeds the query's view, in the
//! real server over pgwire. The oracle generates the same events with the `nexmark` crate in this
//! process (all kinds from one generator, not the server's per-kind streams), loads them into
//! DataFusion tables and runs a batch query written independently of the streaming one (windows
//! as `date_bin` buckets, sessions from `lag`, q5 as Flink's join with the maximum). Both sides
//! cast every compared column to text with the same Arrow casts; the multisets must match.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{rows, Server};
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use nexmark::config::{NexmarkConfig, RateShape};
use nexmark::event::Event;
use nexmark::EventGenerator;

const EVENTS: usize = 20_000;
const EVENT_RATE: usize = 500;
const BASE_TIME_MS: u64 = 1_704_067_200_000;
/// How long a view may take to reach the batch answer.
const CONVERGE: Duration = Duration::from_secs(60);

/// A query: its file, the columns compared, and the batch answer's SQL (same column names).
struct Case {
    query: &'static str,
    columns: &'static str,
    batch: String,
}

fn hop_q5() -> String {
    // Each bid is in the five 10 s windows starting at its 2 s bucket and the four before it.
    let windows: Vec<String> = (0..5)
        .map(|k| {
            format!(
                "SELECT auction, date_bin(INTERVAL '2 seconds', date_time) - INTERVAL '{}' SECOND AS ws FROM bid",
                2 * k
            )
        })
        .collect();
    format!(
        "WITH w AS ({}), c AS (SELECT auction, ws, count(*) AS num FROM w GROUP BY auction, ws), \
         m AS (SELECT ws, max(num) AS maxn FROM c GROUP BY ws) \
         SELECT c.auction, c.num FROM c JOIN m ON c.ws = m.ws AND c.num >= m.maxn",
        windows.join(" UNION ALL ")
    )
}

fn cases() -> Vec<Case> {
    let tumble = |t: &str| format!("date_bin(INTERVAL '10 seconds', {t})");
    let day_stats = "count(*) AS total_bids, \
        count(*) filter (where price < 10000) AS rank1_bids, \
        count(*) filter (where price >= 10000 and price < 1000000) AS rank2_bids, \
        count(*) filter (where price >= 1000000) AS rank3_bids";
    let distinct_stats = "count(distinct bidder) AS total_bidders, \
        count(distinct bidder) filter (where price < 10000) AS rank1_bidders, \
        count(distinct bidder) filter (where price >= 10000 and price < 1000000) AS rank2_bidders, \
        count(distinct bidder) filter (where price >= 1000000) AS rank3_bidders, \
        count(distinct auction) AS total_auctions, \
        count(distinct auction) filter (where price < 10000) AS rank1_auctions, \
        count(distinct auction) filter (where price >= 10000 and price < 1000000) AS rank2_auctions, \
        count(distinct auction) filter (where price >= 1000000) AS rank3_auctions";
    vec![
        Case {
            query: "q0",
            columns: "auction, bidder, price, date_time, extra",
            batch: "SELECT auction, bidder, price, date_time, extra FROM bid".into(),
        },
        Case {
            query: "q1",
            columns: "auction, bidder, price, date_time",
            batch: "SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid".into(),
        },
        Case {
            query: "q2",
            columns: "auction, price",
            batch: "SELECT auction, price FROM bid WHERE auction % 123 = 0".into(),
        },
        Case {
            query: "q3",
            columns: "name, city, state, id",
            batch: "SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P \
                    ON A.seller = P.id WHERE A.category = 10 AND P.state IN ('or', 'id', 'ca')"
                .into(),
        },
        Case {
            query: "q4",
            // The view's column is named `avg`, as PostgreSQL names an unaliased avg(…).
            columns: "category, avg",
            batch: "SELECT category, avg(final) AS avg FROM ( \
                    SELECT A.category, max(B.price) AS final FROM auction A JOIN bid B \
                    ON A.id = B.auction AND B.date_time >= A.date_time AND B.date_time <= A.expires \
                    GROUP BY A.id, A.category) GROUP BY category"
                .into(),
        },
        Case {
            query: "q5",
            columns: "auction, num",
            batch: hop_q5(),
        },
        Case {
            query: "q5_flink",
            columns: "auction, num",
            batch: hop_q5(),
        },
        Case {
            query: "q6",
            columns: "seller, avg_price",
            batch: "SELECT seller, avg(price) OVER (PARTITION BY seller ORDER BY date_time \
                    ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_price FROM ( \
                    SELECT A.seller, B.price, B.date_time, ROW_NUMBER() OVER \
                    (PARTITION BY A.id ORDER BY B.price DESC) AS rn \
                    FROM auction A JOIN bid B ON A.id = B.auction \
                    AND B.date_time BETWEEN A.date_time AND A.expires) WHERE rn = 1"
                .into(),
        },
        Case {
            query: "q7",
            columns: "auction, price, bidder, date_time, extra",
            batch: format!(
                "WITH m AS (SELECT max(price) AS maxprice, {} + INTERVAL '10' SECOND AS wend \
                 FROM bid GROUP BY 2) \
                 SELECT B.auction, B.price, B.bidder, B.date_time, B.extra FROM bid B JOIN m \
                 ON B.price = m.maxprice \
                 WHERE B.date_time >= m.wend - INTERVAL '10' SECOND AND B.date_time <= m.wend",
                tumble("date_time")
            ),
        },
        Case {
            query: "q8",
            columns: "id, name, starttime",
            batch: format!(
                "SELECT P.id, P.name, P.starttime FROM \
                 (SELECT DISTINCT id, name, {t} AS starttime FROM person) P JOIN \
                 (SELECT DISTINCT seller, {t} AS starttime FROM auction) A \
                 ON P.id = A.seller AND P.starttime = A.starttime",
                t = tumble("date_time")
            ),
        },
        Case {
            query: "q9",
            columns: "id, seller, category, price, bid_date_time",
            batch: "SELECT id, seller, category, price, bid_date_time FROM ( \
                    SELECT A.id, A.seller, A.category, B.price, B.date_time AS bid_date_time, \
                    row_number() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time) AS rn \
                    FROM auction A JOIN bid B ON A.id = B.auction \
                    AND B.date_time >= A.date_time AND B.date_time <= A.expires) WHERE rn = 1"
                .into(),
        },
        Case {
            query: "q10",
            columns: "auction, date_time, dt, hm",
            batch: "SELECT auction, date_time, to_char(date_time, '%Y-%m-%d') AS dt, \
                    to_char(date_time, '%H:%M') AS hm FROM bid"
                .into(),
        },
        Case {
            query: "q11",
            columns: "bidder, bid_count, starttime, endtime",
            batch: "WITH o AS (SELECT bidder, date_time, \
                      CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time) \
                           < INTERVAL '10' SECOND THEN 0 ELSE 1 END AS fresh FROM bid), \
                    s AS (SELECT bidder, date_time, sum(fresh) OVER (PARTITION BY bidder \
                      ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS sid FROM o) \
                    SELECT bidder, count(*) AS bid_count, min(date_time) AS starttime, \
                    max(date_time) + INTERVAL '10' SECOND AS endtime FROM s GROUP BY bidder, sid"
                .into(),
        },
        Case {
            // Processing-time windows cut where the clock says: compared per bidder (below).
            query: "q12",
            columns: "bidder, bid_count",
            batch: "SELECT bidder, count(*) AS bid_count FROM bid GROUP BY bidder".into(),
        },
        Case {
            // Every auction id has its side row (keys 0..9999), loaded before the bids arrive.
            query: "q13",
            columns: "auction, bidder, price, date_time, value",
            batch: "SELECT auction, bidder, price, date_time, \
                    'v' || CAST(auction % 10000 AS VARCHAR) AS value FROM bid"
                .into(),
        },
        Case {
            query: "q14",
            columns: "auction, bidder, price, bidtimetype, date_time, c_counts",
            batch: "SELECT auction, bidder, 0.908 * price AS price, \
                    CASE WHEN date_part('hour', date_time) BETWEEN 8 AND 18 THEN 'dayTime' \
                         WHEN date_part('hour', date_time) <= 6 OR date_part('hour', date_time) >= 20 \
                         THEN 'nightTime' ELSE 'otherTime' END AS bidtimetype, \
                    date_time, length(extra) - length(replace(extra, 'c', '')) AS c_counts \
                    FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000"
                .into(),
        },
        Case {
            query: "q15",
            columns: "day, total_bids, rank1_bids, rank2_bids, rank3_bids, total_bidders, \
                      rank1_bidders, rank2_bidders, rank3_bidders, total_auctions, \
                      rank1_auctions, rank2_auctions, rank3_auctions",
            batch: format!(
                "SELECT to_char(date_time, '%Y-%m-%d') AS day, {day_stats}, {distinct_stats} \
                 FROM bid GROUP BY 1"
            ),
        },
        Case {
            query: "q16",
            columns: "channel, day, minute, total_bids, rank1_bids, rank2_bids, rank3_bids, \
                      total_bidders, rank1_bidders, rank2_bidders, rank3_bidders, \
                      total_auctions, rank1_auctions, rank2_auctions, rank3_auctions",
            batch: format!(
                "SELECT channel, to_char(date_time, '%Y-%m-%d') AS day, \
                 max(to_char(date_time, '%H:%M')) AS minute, {day_stats}, {distinct_stats} \
                 FROM bid GROUP BY 1, 2"
            ),
        },
        Case {
            query: "q17",
            columns: "auction, day, total_bids, rank1_bids, rank2_bids, rank3_bids, \
                      min_price, max_price, avg_price, sum_price",
            batch: format!(
                "SELECT auction, to_char(date_time, '%Y-%m-%d') AS day, {day_stats}, \
                 min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, \
                 sum(price) AS sum_price FROM bid GROUP BY 1, 2"
            ),
        },
        Case {
            query: "q18",
            columns: "auction, bidder, date_time",
            batch: "SELECT auction, bidder, max(date_time) AS date_time FROM bid GROUP BY 1, 2"
                .into(),
        },
        Case {
            query: "q19",
            columns: "auction, price, rank_number",
            batch: "SELECT auction, price, rank_number FROM (SELECT auction, price, \
                    row_number() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number \
                    FROM bid) WHERE rank_number <= 10"
                .into(),
        },
        Case {
            query: "q20",
            columns: "auction, bidder, price, date_time, item_name, auction_date_time, seller",
            batch: "SELECT B.auction, B.bidder, B.price, B.date_time, A.item_name, \
                    A.date_time AS auction_date_time, A.seller FROM bid B JOIN auction A \
                    ON B.auction = A.id WHERE A.category = 10"
                .into(),
        },
        Case {
            query: "q21",
            columns: "auction, channel, channel_id",
            batch: "SELECT auction, channel, CASE lower(channel) WHEN 'apple' THEN '0' \
                    WHEN 'google' THEN '1' WHEN 'facebook' THEN '2' WHEN 'baidu' THEN '3' \
                    ELSE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] END AS channel_id \
                    FROM bid WHERE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] IS NOT NULL \
                    OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')"
                .into(),
        },
        Case {
            query: "q22",
            columns: "auction, dir1, dir2, dir3",
            batch: "SELECT auction, split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2, \
                    split_part(url, '/', 6) AS dir3 FROM bid"
                .into(),
        },
    ]
}

fn ts(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values))
}

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn ints(values: Vec<i64>) -> ArrayRef {
    Arc::new(Int64Array::from(values))
}

fn table(ctx: &SessionContext, name: &str, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), false))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("batch");
    let mem = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
    ctx.register_table(name, Arc::new(mem)).expect("register");
}

/// The first [`EVENTS`] events of one generator, as three DataFusion tables.
/// A plain DataFusion context: its `to_char` takes chrono's codes (`%Y-%m-%d`),
/// an independent check of eddy's PostgreSQL patterns (`YYYY-MM-DD`).
fn oracle() -> SessionContext {
    let config = NexmarkConfig {
        base_time: BASE_TIME_MS,
        first_rate: EVENT_RATE,
        next_rate: EVENT_RATE,
        rate_shape: RateShape::Square,
        ..NexmarkConfig::default()
    };
    let (mut people, mut auctions, mut bids) = (Vec::new(), Vec::new(), Vec::new());
    for event in EventGenerator::new(config).take(EVENTS) {
        match event {
            Event::Person(p) => people.push(p),
            Event::Auction(a) => auctions.push(a),
            Event::Bid(b) => bids.push(b),
        }
    }
    let ctx = SessionContext::new();
    macro_rules! col {
        ($v:ident, $f:ident, int) => {
            ints($v.iter().map(|e| e.$f as i64).collect())
        };
        ($v:ident, $f:ident, str) => {
            strings($v.iter().map(|e| e.$f.clone()).collect())
        };
        ($v:ident, $f:ident, ts) => {
            ts($v.iter().map(|e| e.$f as i64).collect())
        };
    }
    table(
        &ctx,
        "person",
        vec![
            ("id", col!(people, id, int)),
            ("name", col!(people, name, str)),
            ("city", col!(people, city, str)),
            ("state", col!(people, state, str)),
            ("date_time", col!(people, date_time, ts)),
        ],
    );
    table(
        &ctx,
        "auction",
        vec![
            ("id", col!(auctions, id, int)),
            ("item_name", col!(auctions, item_name, str)),
            ("date_time", col!(auctions, date_time, ts)),
            ("expires", col!(auctions, expires, ts)),
            ("seller", col!(auctions, seller, int)),
            ("category", col!(auctions, category, int)),
        ],
    );
    table(
        &ctx,
        "bid",
        vec![
            ("auction", col!(bids, auction, int)),
            ("bidder", col!(bids, bidder, int)),
            ("price", col!(bids, price, int)),
            ("channel", col!(bids, channel, str)),
            ("url", col!(bids, url, str)),
            ("date_time", col!(bids, date_time, ts)),
            ("extra", col!(bids, extra, str)),
        ],
    );
    ctx
}

/// `SELECT CAST(c AS VARCHAR) …` over `from`, for each of `columns`.
fn as_text(columns: &str, from: &str) -> String {
    let cast: Vec<String> = columns
        .split(',')
        .map(|c| format!("CAST({} AS VARCHAR)", c.trim()))
        .collect();
    format!("SELECT {} FROM {from}", cast.join(", "))
}

async fn batch_answer(ctx: &SessionContext, case: &Case) -> Vec<Vec<String>> {
    // The values themselves, written as eddy's casts to text write them (PostgreSQL's text).
    let sql = format!("SELECT {} FROM ({}) AS answer", case.columns, case.batch);
    let batches = ctx
        .sql(&sql)
        .await
        .unwrap_or_else(|e| panic!("{}: batch query: {e}\n{sql}", case.query))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{}: batch query: {e}", case.query));
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        let mut s = String::new();
                        if c.is_null(r) {
                            s.push_str("NULL");
                        } else {
                            eddy::pgtext::write_text(c, r, eddy::pgtext::Style::CAST, &mut s);
                        }
                        s
                    })
                    .collect(),
            );
        }
    }
    out.sort();
    out
}

fn summary(rows: &[Vec<String>]) -> String {
    let head: Vec<String> = rows.iter().take(3).map(|r| r.join("|")).collect();
    format!("{} rows, first {:?}", rows.len(), head)
}

async fn check(server: &Server, ctx: &SessionContext, case: &Case) {
    let client = server.client().await;
    for kind in ["person", "auction", "bid"] {
        let sql = format!(
            "CREATE SOURCE {kind} WITH (connector = 'nexmark', 'nexmark.table.type' = '{kind}', \
             'nexmark.events' = {EVENTS}, 'nexmark.rate' = 0, 'nexmark.event.rate' = {EVENT_RATE}, \
             'nexmark.base.time' = {BASE_TIME_MS}, 'nexmark.batch.rows' = 1000)"
        );
        rows(&client, &sql).await.expect("create source");
    }
    let path = format!(
        "{}/sql/nexmark/{}.sql",
        env!("CARGO_MANIFEST_DIR"),
        case.query
    );
    let query = std::fs::read_to_string(&path).expect("query file");
    rows(&client, &query)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", case.query));
    let want = batch_answer(ctx, case).await;
    assert!(
        !want.is_empty() || ["q14"].contains(&case.query),
        "{}: the batch answer is empty, so the comparison would prove little",
        case.query
    );
    let view = match case.query {
        // Which processing-time window a bid falls in depends on when it arrived; every bid is
        // counted in exactly one, so the sums per bidder are the batch counts.
        "q12" => "(SELECT bidder, sum(bid_count) AS bid_count FROM nexmark_q12 GROUP BY bidder) q"
            .to_string(),
        q => format!("nexmark_{q}"),
    };
    let sql = as_text(case.columns, &view);
    let start = Instant::now();
    loop {
        let mut got = rows(&client, &sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.query));
        got.sort();
        if got == want {
            break;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "{}: the view never matched the batch answer.\n view: {}\nbatch: {}\nfirst difference: {:?}",
            case.query,
            summary(&got),
            summary(&want),
            got.iter().zip(&want).find(|(g, w)| g != w)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rows(&client, "DROP SOURCE person, auction, bid CASCADE")
        .await
        .expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_queries_equal_batch_answers() {
    let server = Server::start().await;
    let ctx = oracle();
    let only = std::env::var("EDDY_NEXMARK_ONLY").ok();
    for case in cases() {
        if only.as_ref().is_some_and(|o| o != case.query) {
            continue;
        }
        check(&server, &ctx, &case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_source_columns_options_and_errors() {
    let server = Server::start().await;
    let client = server.client().await;
    // Declared columns: a subset, reordered, with a cast and a watermark of their own.
    rows(
        &client,
        "CREATE SOURCE b (price INT, auction BIGINT, date_time TIMESTAMP(3), \
         WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) \
         WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.events' = 1000, \
         'nexmark.rate' = 0)",
    )
    .await
    .expect("create");
    rows(
        &client,
        "CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n, min(price) > 0 AS positive FROM b",
    )
    .await
    .expect("view");
    // 1000 events of all kinds hold 920 bids (proportions 1:3:46).
    common::eventually(&client, "SELECT n, positive FROM n", &[&["920", "t"]]).await;
    common::eventually(
        &client,
        "SELECT status FROM eddy.sources WHERE name = 'b'",
        &[&["finished"]],
    )
    .await;
    for (sql, code, text) in [
        (
            "CREATE SOURCE x WITH (connector = 'nexmark')",
            "22023",
            "needs 'nexmark.table.type'",
        ),
        (
            "CREATE SOURCE x WITH (connector = 'nexmark', 'nexmark.table.type' = 'bids')",
            "22023",
            "invalid 'nexmark.table.type' 'bids'",
        ),
        (
            "CREATE SOURCE x WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', 'nexmark.rte' = 1)",
            "22023",
            "unknown option 'nexmark.rte'",
        ),
        (
            "CREATE SOURCE x (bidder BIGINT, seller BIGINT) WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid')",
            "42703",
            "\"seller\" is not a nexmark bid column",
        ),
        (
            "CREATE SOURCE x WITH (connector = 'datagen')",
            "42601",
            "needs at least one column",
        ),
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("a database error");
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert!(db.message().contains(text), "{sql}: {}", db.message());
    }
}

/// `n` of the `totals` view (0 before its first row).
async fn count(c: &common::PgClient) -> i64 {
    let got = rows(c, "SELECT n FROM totals").await.expect("totals");
    got.first()
        .and_then(|r| r.first())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A nexmark source resumes from its checkpointed position after a SIGKILL: the view counts every
/// bid once (and sums the same prices as the generator gives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_source_resumes_after_sigkill() {
    const N: usize = 100_000;
    let dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&dir).expect("data dir");
    let mut a = Server::start_in(&dir).await;
    let c = a.client().await;
    rows(
        &c,
        &format!(
            "CREATE SOURCE bid WITH (connector = 'nexmark', 'nexmark.table.type' = 'bid', \
             'nexmark.events' = {N}, 'nexmark.rate' = 40000)"
        ),
    )
    .await
    .expect("source");
    rows(
        &c,
        "CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(price) AS s FROM bid",
    )
    .await
    .expect("view");
    // Part of the stream, then a checkpoint, then more, then the kill.
    let start = Instant::now();
    loop {
        if count(&c).await > 20_000 {
            break;
        }
        assert!(start.elapsed() < CONVERGE, "the source did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows(&c, "CHECKPOINT").await.expect("checkpoint");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = count(&c).await;
    assert!(before < 92_000, "the run ended before the kill: {before}");
    drop(c);
    a.kill();

    let config = NexmarkConfig {
        base_time: BASE_TIME_MS,
        first_rate: 40_000,
        next_rate: 40_000,
        rate_shape: RateShape::Square,
        ..NexmarkConfig::default()
    };
    let sum: usize = EventGenerator::new(config)
        .take(N)
        .filter_map(|e| match e {
            Event::Bid(b) => Some(b.price),
            _ => None,
        })
        .sum();
    let b = Server::start_in(&dir).await;
    assert!(
        b.log_contains("recovering from checkpoint"),
        "{}",
        b.log_tail()
    );
    let c = b.client().await;
    common::eventually(
        &c,
        "SELECT n, s FROM totals",
        &[&["92000", &sum.to_string()]],
    )
    .await;
}
