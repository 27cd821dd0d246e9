//! Every aggregate of the registry (issue 15), over the edge values of the expression sweep
//! (`common::sweep`): NULLs, empty and non-ASCII strings, extreme numbers, NaN, far dates.
//!
//! The rows of `vals` get a group `g = k % 2` and an event time in one minute. Each aggregate
//! call is computed per group
//! - by an ad-hoc `SELECT` in eddy (the batch answer);
//! - by three materialized views: non-windowed (updated as rows arrive), over `TUMBLE` windows
//!   updated in place, and over `TUMBLE` windows `EMIT ON WINDOW CLOSE` (a row in a later minute
//!   closes the window) — each must equal the batch answer, or fail with the batch's error, or be
//!   refused at `CREATE` with a SQLSTATE (listed in the output, not an error);
//! - by PostgreSQL, where it has the aggregate for those argument types: equal to the batch
//!   answer unless `sql/postgres_aggregate_differences.tsv` lists the difference and why.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::differential::{self, Differential};
use common::postgres::Postgres;
use common::sweep::{self, COLUMNS, ROWS};
use common::{rows, PgClient, Server};

/// The checked-in table of known differences.
const KNOWN: &str = include_str!("../sql/postgres_aggregate_differences.tsv");

/// The README, whose "Differences from PostgreSQL" section must list every call of the table.
const README: &str = include_str!("../README.md");

/// Aggregates left out: their answer is random by design.
const RANDOM: &[&str] = &["reservoir_sample"];

/// Aggregates whose answer depends on the order rows arrive in: with `DISTINCT` (a hash table
/// decides the order, anew in each run) a view, a query and PostgreSQL may each give another of
/// the valid answers, so those calls are planned but not compared.
const ORDER_SENSITIVE: &[&str] = &[
    "any_value",
    "array_agg",
    "first_value",
    "last_value",
    "nth_value",
    "string_agg",
];

/// Argument shapes tried for every aggregate (a call that does not plan is skipped).
const SHAPES: &[&str] = &[
    "i",
    "b",
    "d",
    "s",
    "t",
    "bo",
    "dt",
    "iv",
    "a",
    "d, d",
    "b, b",
    "i, i",
    "s, ','",
    "b, 2",
    "s, 2",
    "d, 0.5",
    "b, 0.5",
    "d, d, 0.5",
    "DISTINCT b",
    "DISTINCT s",
    "*",
];

/// How long a view may take to reach its answer.
const SETTLE: Duration = Duration::from_secs(5);

/// `CREATE TABLE avals …; INSERT …`: the sweep's rows with `g` and `ts`; for eddy, with a
/// watermark and a seventh row, all NULL, four minutes later (it closes the first minute).
fn table_sql(pg: bool) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, if pg { c.pg_type } else { c.eddy_type }))
        .collect();
    let mut rows: Vec<String> = (0..ROWS)
        .map(|r| {
            let vals: Vec<&str> = COLUMNS
                .iter()
                .map(|c| if pg { c.pg_value(r) } else { c.eddy[r] })
                .collect();
            let k = r + 1;
            format!(
                "({k}, {}, TIMESTAMP '2026-01-01 00:00:0{k}', {})",
                k % 2,
                vals.join(", ")
            )
        })
        .collect();
    let watermark = if pg {
        ""
    } else {
        let nulls = vec!["NULL"; COLUMNS.len()].join(", ");
        rows.push(format!("(7, 1, TIMESTAMP '2026-01-01 00:05:00', {nulls})"));
        ", WATERMARK FOR ts AS ts"
    };
    format!(
        "CREATE TABLE avals (k INT, g INT, ts TIMESTAMP, {}{watermark}); \
         INSERT INTO avals VALUES {};",
        cols.join(", "),
        rows.join(", ")
    )
}

/// The aggregate call's answer per group (g = 0, 1): a value, NULL, or `ERROR <class>`;
/// `None` when the system does not offer it.
async fn per_group(c: &PgClient, call: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for g in 0..2 {
        let sql = format!("SELECT {call} FROM avals WHERE k <= 6 AND g = {g}");
        out.push(differential::one_answer(c, &sql).await?);
    }
    Some(out)
}

/// The views of one call: (name suffix, SQL after `AS`).
fn views(call: &str) -> [(&'static str, String); 3] {
    let windowed = format!(
        "SELECT window_start, g, {call} AS v FROM TUMBLE(avals, ts, INTERVAL '1' MINUTE) \
         WHERE k <= 6 GROUP BY window_start, g"
    );
    [
        (
            "u",
            format!("SELECT g, {call} AS v FROM avals WHERE k <= 6 GROUP BY g"),
        ),
        ("w", windowed.clone()),
        ("c", format!("{windowed} EMIT ON WINDOW CLOSE")),
    ]
}

/// Waits for view `name` to hold `want` (rows of g, v), or to fail; returns what it saw.
async fn settle(c: &PgClient, name: &str, want: &[Vec<String>]) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let got = rows(c, &format!("SELECT g, v FROM {name} ORDER BY g")).await;
        if got.as_deref() == Ok(want) {
            return Ok(());
        }
        let status = rows(
            c,
            &format!("SELECT status, last_error FROM eddy.views WHERE name = '{name}'"),
        )
        .await
        .unwrap_or_default();
        if status.first().is_some_and(|s| s[0] == "failed") {
            return Err(format!("failed: {}", status[0][1]));
        }
        if start.elapsed() > SETTLE {
            return Err(format!("holds {got:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aggregate_agrees_in_views_a_query_and_postgresql() {
    let server = Server::start().await;
    let e = server.client().await;
    e.batch_execute(&table_sql(false))
        .await
        .unwrap_or_else(|err| panic!("eddy: {}", common::error_text(&err)));
    let names: Vec<String> = rows(
        &e,
        "SELECT DISTINCT routine_name FROM information_schema.routines
         WHERE function_type = 'AGGREGATE' ORDER BY 1",
    )
    .await
    .expect("list aggregates")
    .into_iter()
    .map(|r| r[0].clone())
    .filter(|n| !RANDOM.contains(&n.as_str()))
    .collect();
    let calls: Vec<String> = names
        .iter()
        .flat_map(|n| SHAPES.iter().map(move |s| format!("{n}({s})")))
        .collect();

    let (mut planned, mut view_checks, mut refused) = (0, 0, Vec::new());
    let mut planned_names = BTreeSet::new();
    let mut differences = Vec::new();
    let mut offered = Vec::new();
    for (n, call) in calls.iter().enumerate() {
        let Some(batch) = per_group(&e, call).await else {
            continue;
        };
        planned += 1;
        planned_names.insert(call.split('(').next().unwrap_or("").to_string());
        let name = call.split('(').next().unwrap_or("");
        if call.contains("(DISTINCT") && ORDER_SENSITIVE.contains(&name) {
            continue;
        }
        offered.push((call.clone(), batch.clone()));
        let failing = batch.iter().find(|v| v.starts_with("ERROR"));
        let want: Vec<Vec<String>> = batch
            .iter()
            .enumerate()
            .map(|(g, v)| vec![g.to_string(), v.clone()])
            .collect();
        for (suffix, sql) in views(call) {
            let view = format!("agg_{n}_{suffix}");
            if let Err(err) = e
                .batch_execute(&format!("CREATE MATERIALIZED VIEW {view} AS {sql}"))
                .await
            {
                let text = common::error_text(&err);
                if e.is_closed() {
                    panic!("{call}: CREATE closed the connection: {text}");
                }
                refused.push(format!("{call} [{suffix}]: {text}"));
                continue;
            }
            view_checks += 1;
            match (settle(&e, &view, &want).await, failing) {
                (Ok(()), None) => {}
                (Err(why), Some(_)) if why.starts_with("failed") => {}
                (Ok(()), Some(f)) => differences.push(format!(
                    "{call} [{suffix}]: the query fails ({f}), the view does not"
                )),
                (Err(why), _) => {
                    differences.push(format!("{call} [{suffix}]: want {batch:?}, the view {why}"))
                }
            }
            let _ = e
                .batch_execute(&format!("DROP MATERIALIZED VIEW {view}"))
                .await;
        }
    }
    eprintln!(
        "aggregate sweep: {} aggregates, {} calls tried, {planned} plan as SELECT ({} \
         aggregates), {view_checks} views checked, {} views refused at CREATE, {} differ",
        names.len(),
        calls.len(),
        planned_names.len(),
        refused.len(),
        differences.len()
    );
    for r in &refused {
        eprintln!("  refused {r}");
    }
    for d in &differences {
        eprintln!("  {d}");
    }
    assert!(
        planned > 100 && planned_names.len() > 35,
        "too few calls planned to prove much: {planned} calls"
    );
    assert!(
        differences.is_empty(),
        "{} views differ from their query",
        differences.len()
    );

    // The batch answers against PostgreSQL.
    let Some(pg) = Postgres::start_or_skip().await else {
        return;
    };
    let p = pg.connect().await.expect("connect to PostgreSQL");
    p.batch_execute(&table_sql(true))
        .await
        .unwrap_or_else(|err| panic!("PostgreSQL: {}", common::error_text(&err)));
    let mut diff = Differential::new("sql/postgres_aggregate_differences.tsv", KNOWN);
    for (call, ours) in offered {
        let theirs = per_group(&p, &call).await;
        diff.compare(&call, Some(ours), theirs, 0, |g| {
            let rows: Vec<String> = (1..=ROWS)
                .filter(|k| k % 2 == g)
                .map(|k| sweep::input_of(&call, k))
                .collect();
            format!("g = {g}: {}", rows.join("; "))
        });
    }
    eprintln!(
        "aggregate differential: {} calls run in both ({} aggregates), {} agree ({} \
         aggregates); {} known differences; eddy only {}",
        diff.compared,
        diff.compared_names.len(),
        diff.agreed,
        diff.agreeing_names.len(),
        diff.known_rows(),
        diff.eddy_only
    );
    assert!(
        diff.compared > 40,
        "only {} aggregate calls ran in both systems",
        diff.compared
    );
    diff.finish(README);
}
