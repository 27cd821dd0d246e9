//! eddy against PostgreSQL, call by call (issue 15). Every call of the expression sweep
//! (`common::sweep`: each deterministic scalar function of the registry with fitting argument
//! types, plus operators and casts) is run over the same rows of edge values in eddy and in a real
//! PostgreSQL server started by the test. Where PostgreSQL has the same function for the same
//! argument types (it plans the call), the answers must be equal row by row — a value, NULL, or
//! an error's SQLSTATE class — unless `sql/postgres_differences.tsv` lists the difference with
//! both answers and why. An entry of that table that no longer holds fails the test too, so the
//! table stays true.

mod common;

use common::differential::{query, Differential};
use common::postgres::Postgres;
use common::{differential, sweep, PgClient, Server};

/// The checked-in table of known differences.
const KNOWN: &str = include_str!("../sql/postgres_differences.tsv");

/// The README, whose "Differences from PostgreSQL" section must list every call of the table.
const README: &str = include_str!("../README.md");

/// The answer of `call` on each row of `vals`: the value as text ("NULL" for NULL) or
/// `ERROR <class>` for a data error. `None` when the system does not offer the call.
async fn answers(c: &PgClient, call: &str) -> Option<Vec<String>> {
    match query(c, &format!("SELECT {call} FROM vals ORDER BY k")).await {
        Ok(v) if v.len() == sweep::ROWS => return Some(v),
        // A set-returning function (PostgreSQL's generate_series): not the same function.
        Ok(_) => return None,
        Err((state, _)) if differential::not_offered(&state) => return None,
        Err(_) => {}
    }
    // Some row cannot be computed: one row at a time, so each row's answer is known.
    let mut out = Vec::new();
    for k in 1..=sweep::ROWS {
        let sql = format!("SELECT {call} FROM vals WHERE k = {k}");
        out.push(differential::one_answer(c, &sql).await?);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_expression_agrees_with_postgresql_or_is_a_known_difference() {
    let Some(pg) = Postgres::start_or_skip().await else {
        return;
    };
    // The same database name as eddy's, so current_database() can agree.
    pg.connect()
        .await
        .expect("connect to PostgreSQL")
        .batch_execute("CREATE DATABASE eddy")
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL: {}", common::error_text(&e)));
    let p = pg.connect_to("eddy").await.expect("connect to PostgreSQL");
    p.batch_execute(&sweep::table_sql(true))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL: {}", common::error_text(&e)));
    let server = Server::start().await;
    let e = server.client().await;
    e.batch_execute(&sweep::table_sql(false))
        .await
        .unwrap_or_else(|err| panic!("eddy: {}", common::error_text(&err)));

    let (functions, mut calls) = sweep::calls(&e).await;
    calls.extend(sweep::operator_and_cast_calls());
    let mut diff = Differential::new("sql/postgres_differences.tsv", KNOWN);
    for call in &calls {
        let ours = answers(&e, call).await;
        if e.is_closed() {
            panic!("{call}: eddy closed the connection");
        }
        let theirs = answers(&p, call).await;
        diff.compare(call, ours, theirs, 1, |k| sweep::input_of(call, k));
    }
    eprintln!(
        "postgres differential: {} registry functions, {} calls ({} operators and casts); \
         {} calls over {} function names run in both, {} agree on every row ({} names); {} \
         known differences (rows); eddy only {}, PostgreSQL only {}",
        functions.len(),
        calls.len(),
        sweep::operator_and_cast_calls().len(),
        diff.compared,
        diff.compared_names.len(),
        diff.agreed,
        diff.agreeing_names.len(),
        diff.known_rows(),
        diff.eddy_only,
        diff.pg_only
    );
    assert!(
        diff.compared > 300,
        "only {} calls ran in both systems: too few to prove much",
        diff.compared
    );
    diff.finish(README);
}
