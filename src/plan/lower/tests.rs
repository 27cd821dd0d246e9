//! The planner's rules, each checked on the EXPLAIN text of the graph it
//! builds (the same text `EXPLAIN CREATE MATERIALIZED VIEW` prints).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::prelude::SessionConfig;

use super::{plan_view, PlanInputs};
use crate::error::Result;
use crate::sql::{parse, Statement};

/// `bids` and `asks` (streams with a watermark on `ts`), `users` (a table
/// without one).
fn inputs() -> HashMap<String, PlanInputs> {
    let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let stream = |kind: &str| PlanInputs {
        schema: Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("price", DataType::Int64, true),
            Field::new("ts", ts.clone(), false),
        ])),
        time_column: Some("ts".into()),
        updating: false,
        kind: kind.into(),
        upsert: false,
    };
    let users = PlanInputs {
        schema: Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ])),
        time_column: None,
        updating: false,
        kind: "table".into(),
        upsert: false,
    };
    HashMap::from([
        ("bids".to_string(), stream("table")),
        ("asks".to_string(), stream("source")),
        ("users".to_string(), users),
    ])
}

/// The EXPLAIN lines of `sql` (a `CREATE MATERIALIZED VIEW`), planned on
/// two partitions.
async fn explain(sql: &str) -> Result<Vec<String>> {
    let Some(Statement::CreateView(v)) = parse(sql)?.pop() else {
        panic!("not a view: {sql}");
    };
    let inputs = inputs();
    let plan = plan_view(&v, &inputs, SessionConfig::new(), &[], 2, 1000).await?;
    crate::plan::explain(&plan, &|name| inputs[name].kind.clone())
}

/// Assert `sql` explains as `want` (lines joined by newlines).
async fn assert_explains(sql: &str, want: &str) {
    let got = explain(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .join("\n");
    assert_eq!(got, want.trim(), "\n--- got ---\n{got}\n");
}

#[tokio::test]
async fn aggregate_over_aggregate_closes_the_first_and_delays_its_watermark() {
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT window_start, max(n) AS top FROM \
         (SELECT window_start, auction, count(*) AS n FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) \
          GROUP BY window_start, window_end, auction) per_auction GROUP BY window_start EMIT ON WINDOW CLOSE",
        r#"
Input: bids [table]
WindowAssign: TUMBLE(ts, size 10 s); drops rows below the watermark (counted as late)
Exchange: hash(window_start@3, window_end@4, auction@0) into 2 partitions
Aggregate: group=[window_start@3, window_end@4, auction@0], aggregates=[count(Int64(1))], emit on window close (windowed; state freed when the watermark passes window_end; columnar)
Project: window_start, auction, count(Int64(1))@3 AS n
Delay: the watermark by 10 s
Exchange: hash(window_start@0) into 2 partitions
Aggregate: group=[window_start@0], aggregates=[max(per_auction.n)], emit on window close (windowed; state freed when the watermark passes window_end; columnar)
Project: window_start, max(per_auction.n)@1 AS top
Materialize: v (window_start Timestamp(ns), top Int64), append-only
"#,
    )
    .await;
}

#[tokio::test]
async fn scan_filter_project_is_one_steps_operator() {
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT auction, price * 2 AS p FROM bids WHERE price > 10",
        r#"
Input: bids [table]
Filter: price@1 > 10
Project: auction, checked_mul(price@1, 2) AS p
Materialize: v (auction Int64, p Int64), append-only
"#,
    )
    .await;
}

#[tokio::test]
async fn union_all_merges_closed_inputs_on_one_partition() {
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT auction, ts FROM bids WHERE price > 10 \
         UNION ALL SELECT auction, ts FROM asks",
        r#"
Input (left): bids [table]
  Filter: price@1 > 10
  Project: auction, ts
Input (right): asks [source]
  Project: auction, ts
Union: 2 inputs, rows as they come; watermark the least of theirs
Materialize: v (auction Int64, ts Timestamp(ns)), append-only
"#,
    )
    .await;
}

#[tokio::test]
async fn three_inputs_join_as_two_joins() {
    assert_explains(
        "CREATE MATERIALIZED VIEW v WITH (state_ttl = '1 hour') AS \
         SELECT b.auction, a.price, u.name FROM bids b \
         JOIN asks a ON a.auction = b.auction AND a.ts BETWEEN b.ts AND b.ts + INTERVAL '1' SECOND \
         JOIN users u ON u.id = b.auction",
        r#"
Input 1: bids [table]
    DropLate: rows below this input's watermark (counted as late)
Input 2: asks [source]
    DropLate: rows below this input's watermark (counted as late)
  Exchange: left by hash(auction@0), right by hash(auction@0), into 2 partitions
  Join: INNER, keys [auction@0 = auction@0], condition ts@5 >= ts@2 AND ts@5 <= ts@2 + IntervalMonthDayNano { months: 0, days: 0, nanoseconds: 1000000000 }; left keeps until the right watermark passes ts + 1 s; right keeps until the left watermark passes ts + 0 s
Input 3: users [table]
Exchange: left by hash(auction@0), right by hash(id@0), into 2 partitions
Join: INNER, keys [auction@0 = id@0]; left keeps for state_ttl 3600 s; right keeps for state_ttl 3600 s
Project: auction, price, name
Materialize: v (auction Int64, price Int64, name Utf8), append-only
"#,
    )
    .await;
}

#[tokio::test]
async fn ranking_with_a_filter_is_a_top_n() {
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT * FROM (SELECT auction, price, \
         ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids) WHERE rn <= 2",
        r#"
Input: bids [table]
Exchange: hash(auction@0) into 2 partitions
TopN: 2 rows per [auction@0] by [price@1 DESC], with their rank; state the top rows per key
Project: auction, price, @3 AS rn
Filter: rn@2 <= 2
Project: auction, price, rn
Materialize: v (auction Int64, price Int64, rn UInt64), updating
"#,
    )
    .await;
}

#[tokio::test]
async fn what_cannot_stream_is_refused_with_a_hint() {
    let err = explain("CREATE MATERIALIZED VIEW v AS SELECT auction FROM bids ORDER BY price")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), "0A000", "{err}");
    assert!(err.to_string().contains("ORDER BY"), "{err}");
}

#[tokio::test]
async fn exists_is_a_semi_join_and_not_exists_an_anti_join() {
    let sql = |not: &str| {
        format!(
            "CREATE MATERIALIZED VIEW v AS SELECT auction FROM bids b WHERE {not} EXISTS \
             (SELECT 1 FROM asks a WHERE a.auction = b.auction \
              AND a.ts BETWEEN b.ts AND b.ts + INTERVAL '1' SECOND)"
        )
    };
    let semi = explain(&sql("")).await.unwrap().join("\n");
    assert!(
        semi.contains("Join: SEMI, keys [auction@0 = auction@1]"),
        "{semi}"
    );
    assert!(
        semi.ends_with("Materialize: v (auction Int64), append-only"),
        "{semi}"
    );
    let anti = explain(&sql("NOT")).await.unwrap().join("\n");
    assert!(
        anti.contains("Join: ANTI, keys [auction@0 = auction@1]"),
        "{anti}"
    );
    // A row goes when its first match comes: the view updates.
    assert!(
        anti.ends_with("Materialize: v (auction Int64), updating"),
        "{anti}"
    );
}

#[tokio::test]
async fn a_bound_by_now_is_a_temporal_filter_and_the_view_updates() {
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT auction FROM bids \
         WHERE ts >= now() - INTERVAL '1' MINUTE AND price > 5",
        r#"
Input: bids [table]
TemporalFilter: ts >= now() - 60 s (rows are retracted as processing time passes them); state the rows inside
Filter: price@1 > 5
Project: auction
Materialize: v (auction Int64), updating
"#,
    )
    .await;
}

#[tokio::test]
async fn window_function_is_an_over_node_keyed_by_its_partition() {
    // Bounded frame over event time on an append-only input: state is freed by the watermark.
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT auction, \
         max(price) OVER (PARTITION BY auction ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS m, \
         lead(price, 2) OVER (PARTITION BY auction ORDER BY ts) AS nxt FROM bids",
        r#"
Input: bids [table]
DropLate: rows below this input's watermark (counted as late)
Exchange: hash(auction@0) into 2 partitions
Over: [max(bids.price) ROWS BETWEEN 3 PRECEDING AND CURRENT ROW, lead(bids.price, Int64(2))] per [auction@0] by [ts@2 ASC NULLS LAST]; reach 3 rows, 2 rows before, 0 rows, 2 rows after; state rows the watermark has not passed, and those their frames read
Project: auction, @3 AS m, @4 AS nxt
Materialize: v (auction Int64, m Int64, nxt Int64), updating
"#,
    )
    .await;
    // Ordered by something else than event time: every row is kept.
    assert_explains(
        "CREATE MATERIALIZED VIEW v AS SELECT auction, \
         sum(price) OVER (ORDER BY price ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS s FROM bids",
        r#"
Input: bids [table]
Over: [sum(bids.price) ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING] per [] by [price@1 ASC NULLS LAST]; reach 1 rows before, 1 rows after; state every row
Project: auction, @3 AS s
Materialize: v (auction Int64, s Int64), updating
"#,
    )
    .await;
}

/// `sql` planned on two partitions.
async fn planned(sql: &str) -> crate::plan::ViewPlan {
    let Some(Statement::CreateView(v)) = parse(sql).expect("parse").pop() else {
        panic!("not a view: {sql}");
    };
    plan_view(&v, &inputs(), SessionConfig::new(), &[], 2, 1000)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What a replaced view keeps (`plan/carry.rs`): an unchanged aggregate
/// without windows and what feeds it when only what follows changes; no
/// windowed aggregate; and an old operator at most once, so that a kept
/// aggregate never sits on an upstream operator that starts empty.
#[tokio::test]
async fn a_replacement_keeps_unchanged_unwindowed_aggregates() {
    let inputs = inputs();
    let kind = |name: &str| inputs[name].kind.clone();
    let carry = |old: &str, new: &str| {
        let (old, new) = (old.to_string(), new.to_string());
        async move {
            let (old, new) = (planned(&old).await, planned(&new).await);
            let c = crate::plan::carry::carry(&old, &new, &kind).expect("carry");
            (c, new.inputs)
        }
    };
    let per_auction = "CREATE MATERIALIZED VIEW v AS SELECT auction, count(*) AS n FROM bids \
                       GROUP BY auction";
    let (c, _) = carry(per_auction, &format!("{per_auction} HAVING count(*) > 1")).await;
    assert_eq!(c.restate, ["aggregate"], "{c:?}");
    assert!(
        c.kept.contains(&("aggregate".into(), "aggregate".into())),
        "{c:?}"
    );
    assert_eq!(c.live, [true]);
    let windowed = "CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) AS n \
                    FROM TUMBLE(bids, ts, INTERVAL '1' MINUTE) GROUP BY window_start";
    let (c, _) = carry(windowed, &format!("{windowed} HAVING count(*) > 1")).await;
    assert!(c.is_empty(), "{c:?}");
    // Old: counts of counts. New: the inner count joined with the counts of counts (each
    // reads bids): one old aggregate cannot serve both new ones.
    let inner = "SELECT auction, count(*) AS n FROM bids GROUP BY auction";
    let old =
        format!("CREATE MATERIALIZED VIEW v AS SELECT n, count(*) AS c FROM ({inner}) GROUP BY n");
    let new = format!(
        "CREATE MATERIALIZED VIEW v WITH (state_ttl = '1 hour') AS SELECT a.auction, a.n, b.c \
         FROM ({inner}) a JOIN (SELECT n, count(*) AS c FROM ({inner}) GROUP BY n) b ON a.n = b.n"
    );
    let (c, new_inputs) = carry(&old, &new).await;
    let mut olds: Vec<&String> = c.kept.iter().map(|(_, o)| o).collect();
    olds.sort();
    olds.dedup();
    assert_eq!(
        olds.len(),
        c.kept.len(),
        "an old operator kept twice: {c:?}"
    );
    assert_eq!(c.restate.len(), 1, "{c:?}");
    assert_eq!(c.shared(&new_inputs), Some("bids"), "{c:?}");
}
