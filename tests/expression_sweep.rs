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

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{rows, sweep, PgClient, Server};

/// The rows of `sql`, or its error.
async fn try_rows(c: &PgClient, sql: &str) -> Result<Vec<Vec<String>>, String> {
    rows(c, sql).await
}

/// Creates view `view` over `query` (whose SELECT failed with a value error) and waits for it to
/// fail; an error says what it did instead.
async fn view_fails_too(c: &PgClient, view: &str, query: &str) -> Result<(), String> {
    if let Err(e) = c
        .batch_execute(&format!("CREATE MATERIALIZED VIEW {view} AS {query}"))
        .await
    {
        // Refused at CREATE with a value error, a limit or "not supported" is as good as failing.
        let text = common::error_text(&e);
        return if ["22", "54", "0A"].iter().any(|c| text.starts_with(c)) {
            Ok(())
        } else {
            Err(format!("CREATE refused: {text}"))
        };
    }
    let start = Instant::now();
    let outcome = loop {
        let status = try_rows(
            c,
            &format!("SELECT status FROM eddy.views WHERE name = '{view}'"),
        )
        .await
        .unwrap_or_default();
        if status.first().is_some_and(|s| s[0] == "failed") {
            break Ok(());
        }
        if start.elapsed() > Duration::from_secs(5) {
            let held = try_rows(c, &format!("SELECT * FROM {view}")).await;
            break Err(format!("the view runs and holds {held:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = c
        .batch_execute(&format!("DROP MATERIALIZED VIEW {view}"))
        .await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scalar_function_agrees_in_a_view_and_a_query() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.batch_execute(&sweep::table_sql(false))
        .await
        .unwrap_or_else(|e| panic!("{}", common::error_text(&e)));
    let (functions, mut calls) = sweep::calls(&c).await;
    calls.extend(sweep::operator_and_cast_calls());
    let (mut planned, mut agreed, mut failing) = (0, 0, 0);
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
            // A value error on some row: the view must fail too, not compute something.
            Err(e) if e.starts_with("22") || e.starts_with("54") => {
                failing += 1;
                if let Err(d) = view_fails_too(&c, &format!("sweep_{n}"), &query).await {
                    differences.push(format!("{call}: the SELECT fails ({e}), {d}"));
                } else {
                    per_function.insert(call.split('(').next().unwrap_or("").to_string());
                }
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
                Ok(g) if g.len() == sweep::ROWS || start.elapsed() > Duration::from_secs(10) => {
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
         in a view, {failing} fail on a value in both ({} functions), {} differ",
        functions.len(),
        calls.len(),
        per_function.len(),
        differences.len()
    );
    for d in &differences {
        eprintln!("  {d}");
    }
    if std::env::var("SWEEP_DEBUG").is_ok() {
        let unreached: Vec<&String> = functions
            .iter()
            .filter(|f| !per_function.contains(*f))
            .collect();
        eprintln!("functions no call reached: {unreached:?}");
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
