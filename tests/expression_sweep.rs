//! Every scalar function the engine offers, in a view and in a query (issue
//! 15): the function list comes from the live registry
//! (`information_schema.routines`, deterministic scalar functions), the
//! argument types from `information_schema.parameters` where a function
//! declares them, else from a fixed set of shapes (arrays and intervals
//! included). Each call that plans as an
//! ad-hoc `SELECT` over a table of ordinary and edge values (NULLs, empty and
//! non-ASCII strings, negative and extreme numbers, NaN, far dates) must give
//! the same rows as a materialized view of the same expression, and the view
//! must not fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{rows, PgClient, Server};

/// Columns of the sample table, by the argument type they stand for.
const COLUMNS: &[(&str, &str)] = &[
    ("Int32", "i"),
    ("Int64", "b"),
    ("Float64", "d"),
    ("Utf8", "s"),
    ("Timestamp", "t"),
    ("Boolean", "bo"),
    ("Date32", "dt"),
    ("List", "a"),
    ("Interval", "iv"),
];

/// Argument shapes tried for functions that declare no parameter types.
const SHAPES: &[&[&str]] = &[
    &[],
    &["i"],
    &["b"],
    &["d"],
    &["s"],
    &["t"],
    &["bo"],
    &["dt"],
    &["s", "s"],
    &["b", "b"],
    &["d", "d"],
    &["s", "b"],
    &["s", "i"],
    &["d", "i"],
    &["i", "i"],
    &["t", "s"],
    &["s", "t"],
    &["t", "t"],
    &["s", "s", "s"],
    &["s", "b", "b"],
    &["s", "i", "s"],
    &["s", "s", "b"],
    &["b", "b", "b"],
    &["a"],
    &["a", "b"],
    &["a", "a"],
    &["a", "s"],
    &["a", "b", "b"],
    &["iv"],
    &["s", "iv"],
    &["iv", "t"],
    &["iv", "t", "t"],
];

const ROWS: usize = 6;

fn column_for(data_type: &str) -> Option<&'static str> {
    let t = data_type;
    let family = if t.starts_with("Int8") || t.starts_with("Int16") || t.starts_with("Int32") {
        "Int32"
    } else if t.starts_with("Int64") || t.starts_with("UInt") {
        "Int64"
    } else if t.starts_with("Float") || t.starts_with("Decimal") {
        "Float64"
    } else if t.starts_with("Utf8") || t.starts_with("LargeUtf8") {
        "Utf8"
    } else if t.starts_with("Timestamp") {
        "Timestamp"
    } else if t.starts_with("Boolean") {
        "Boolean"
    } else if t.starts_with("Date") {
        "Date32"
    } else if t.starts_with("List") || t.starts_with("LargeList") || t.starts_with("FixedSizeList")
    {
        "List"
    } else if t.starts_with("Interval") {
        "Interval"
    } else {
        return None;
    };
    COLUMNS.iter().find(|(f, _)| *f == family).map(|(_, c)| *c)
}

/// The rows of `sql`, or its error.
async fn try_rows(c: &PgClient, sql: &str) -> Result<Vec<Vec<String>>, String> {
    rows(c, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scalar_function_agrees_in_a_view_and_a_query() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.batch_execute(
        "CREATE TABLE vals (k INT, i INT, b BIGINT, d DOUBLE, s VARCHAR, t TIMESTAMP, bo BOOLEAN,
                            dt DATE, a BIGINT[], iv INTERVAL);
         INSERT INTO vals VALUES
           (1, 1, 10, 1.5, 'abc', TIMESTAMP '2026-01-01 00:00:01', true, DATE '2026-01-01',
               [3, 1, 2], INTERVAL '1 day'),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (3, -7, -9000000000, -0.25, '', TIMESTAMP '1970-01-01 00:00:00', false,
               DATE '1900-02-28', [], INTERVAL '-2 hours'),
           (4, 0, 0, CAST('NaN' AS DOUBLE), 'héllo wörld ß', TIMESTAMP '2038-01-19 03:14:07',
               NULL, DATE '2200-12-31', [NULL, 5], INTERVAL '1 month 3 seconds'),
           (5, 2147483647, 9223372036854775807, 1e300, 'Ω≈ç√ 12,3', TIMESTAMP '1900-01-01 12:30:00',
               true, DATE '0001-01-01', [9223372036854775807, -1], INTERVAL '0 seconds'),
           (6, 3, 3, 3.0, '3', TIMESTAMP '2024-02-29 23:59:59.999', false, DATE '2024-02-29',
               [3, 3], INTERVAL '10 years');",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", common::error_text(&e)));
    let functions: Vec<String> = rows(
        &c,
        "SELECT DISTINCT routine_name FROM information_schema.routines
         WHERE function_type = 'SCALAR' AND is_deterministic ORDER BY 1",
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    // Declared signatures: (function, routine id) → types by position.
    let mut declared: BTreeMap<String, BTreeMap<String, Vec<(i64, String)>>> = BTreeMap::new();
    for r in rows(
        &c,
        "SELECT specific_name, rid, ordinal_position, data_type FROM information_schema.parameters
         WHERE parameter_mode = 'IN'",
    )
    .await
    .unwrap()
    {
        declared
            .entry(r[0].clone())
            .or_default()
            .entry(r[1].clone())
            .or_default()
            .push((r[2].parse().unwrap_or(0), r[3].clone()));
    }
    let mut calls: Vec<String> = Vec::new();
    for f in &functions {
        let mut shapes: BTreeSet<Vec<&str>> = BTreeSet::new();
        match declared.get(f) {
            Some(sigs) => {
                for params in sigs.values() {
                    let mut params = params.clone();
                    params.sort();
                    let cols: Option<Vec<&str>> =
                        params.iter().map(|(_, t)| column_for(t)).collect();
                    if let Some(cols) = cols {
                        shapes.insert(cols);
                    }
                }
            }
            None => shapes.extend(SHAPES.iter().map(|s| s.to_vec())),
        }
        for s in shapes {
            calls.push(format!("{f}({})", s.join(", ")));
        }
    }
    let (mut planned, mut agreed) = (0, 0);
    let mut differences: Vec<String> = Vec::new();
    let mut per_function: BTreeSet<String> = BTreeSet::new();
    for (n, call) in calls.iter().enumerate() {
        let query = format!("SELECT k, {call} AS v FROM vals");
        let mut want = match try_rows(&c, &format!("{query} ORDER BY k")).await {
            Ok(w) => w,
            Err(e) if c.is_closed() => {
                differences.push(format!("{call}: the SELECT lost its connection: {e}"));
                c = server.client().await;
                continue;
            }
            Err(e) => {
                if std::env::var("SWEEP_DEBUG").is_ok() {
                    eprintln!("SKIP {call}: {e}");
                }
                continue; // not a valid call
            }
        };
        planned += 1;
        want.iter_mut().for_each(|r| r.truncate(2));
        let view = format!("sweep_{n}");
        if let Err(e) = c
            .batch_execute(&format!("CREATE MATERIALIZED VIEW {view} AS {query}"))
            .await
        {
            differences.push(format!(
                "{call}: SELECT works, CREATE refused: {}",
                common::error_text(&e)
            ));
            continue;
        }
        let start = Instant::now();
        let got = loop {
            let got = try_rows(&c, &format!("SELECT k, v FROM {view} ORDER BY k")).await;
            let status = try_rows(
                &c,
                &format!("SELECT status, last_error FROM eddy.views WHERE name = '{view}'"),
            )
            .await
            .unwrap_or_default();
            if status.first().is_some_and(|s| s[0] == "failed") {
                break Err(format!("the view failed: {:?}", status[0]));
            }
            match got {
                Ok(g) if g.len() == ROWS || start.elapsed() > Duration::from_secs(10) => {
                    break Ok(g)
                }
                Err(e) if start.elapsed() > Duration::from_secs(10) => break Err(e),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        match got {
            Ok(g) if g == want => {
                agreed += 1;
                per_function.insert(call.split('(').next().unwrap_or("").to_string());
            }
            Ok(g) => differences.push(format!("{call}: view {g:?}, SELECT {want:?}")),
            Err(e) => differences.push(format!("{call}: {e}")),
        }
        let _ = c
            .batch_execute(&format!("DROP MATERIALIZED VIEW {view}"))
            .await;
    }
    eprintln!(
        "expression sweep: {} functions, {} calls tried, {planned} plan as SELECT, {agreed} agree \
         in a view ({} functions), {} differ",
        functions.len(),
        calls.len(),
        per_function.len(),
        differences.len()
    );
    for d in &differences {
        eprintln!("  {d}");
    }
    assert!(
        planned > 400 && per_function.len() > 150,
        "too few calls planned to prove much: {planned} calls, {} functions",
        per_function.len()
    );
    assert!(
        differences.is_empty(),
        "{} calls differ between a view and a SELECT",
        differences.len()
    );
}
