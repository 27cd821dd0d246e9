//! eddy against PostgreSQL, call by call (issue 15). Every call of the expression sweep
//! (`common::sweep`: each deterministic scalar function of the registry with fitting argument
//! types, plus operators and casts) is run over the same rows of edge values in eddy and in a real
//! PostgreSQL server started by the test. Where PostgreSQL has the same function for the same
//! argument types (it plans the call), the answers must be equal row by row — a value, NULL, or
//! an error's SQLSTATE class — unless `sql/postgres_differences.tsv` lists the difference with
//! both answers and why. An entry of that table that no longer holds fails the test too, so the
//! table stays true.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::postgres::Postgres;
use common::{sweep, PgClient, Server};

/// The checked-in table of known differences.
const KNOWN: &str = include_str!("../sql/postgres_differences.tsv");

/// The README, whose "Differences from PostgreSQL" section must list every call of the table.
const README: &str = include_str!("../README.md");

/// One known difference: the answers of both systems for one call on one row, and why.
struct Known {
    postgres: String,
    eddy: String,
    why: String,
}

/// The table, keyed by (call, row).
fn known() -> BTreeMap<(String, usize), Known> {
    let mut out = BTreeMap::new();
    for (n, line) in KNOWN.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            f.len() == 6,
            "sql/postgres_differences.tsv line {}: want 6 tab-separated fields \
             (call, row, input, postgres, eddy, why), got {}",
            n + 1,
            f.len()
        );
        let row: usize = f[1]
            .parse()
            .unwrap_or_else(|_| panic!("line {}: row {:?} is not a number", n + 1, f[1]));
        assert!(!f[5].trim().is_empty(), "line {}: the why is empty", n + 1);
        let prev = out.insert(
            (f[0].to_string(), row),
            Known {
                postgres: f[3].to_string(),
                eddy: f[4].to_string(),
                why: f[5].to_string(),
            },
        );
        assert!(prev.is_none(), "line {}: duplicate entry", n + 1);
    }
    out
}

/// A value as the table holds it: tabs, newlines and backslashes escaped; a value longer than
/// [`SHOWN_CHARS_MAX`] characters as its start and its length.
fn field(v: &str) -> String {
    let n = v.chars().count();
    let v = if n > SHOWN_CHARS_MAX {
        format!(
            "{}… ({n} characters)",
            v.chars().take(40).collect::<String>()
        )
    } else {
        v.to_string()
    };
    v.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

/// Longer values are shown abbreviated in the table.
const SHOWN_CHARS_MAX: usize = 120;

/// The outcome of one query: its first column per row, or the error's SQLSTATE and text.
async fn query(c: &PgClient, sql: &str) -> Result<Vec<String>, (String, String)> {
    match common::rows(c, sql).await {
        Ok(r) => Ok(r.into_iter().map(|mut r| r.swap_remove(0)).collect()),
        Err(e) => Err((e.get(..5).unwrap_or("").to_string(), e)),
    }
}

/// Whether an error says the call does not exist in this system (no such function or operator,
/// no such signature or cast, or a feature it lacks) rather than that a value could not be
/// computed.
fn not_offered(sqlstate: &str) -> bool {
    sqlstate.starts_with("42") || sqlstate == "0A000"
}

/// The answer of `call` on each row of `vals`: the value as text ("NULL" for NULL) or
/// `ERROR <class>` for a data error. `None` when the system does not offer the call.
async fn answers(c: &PgClient, call: &str) -> Option<Vec<String>> {
    match query(c, &format!("SELECT {call} FROM vals ORDER BY k")).await {
        Ok(v) if v.len() == sweep::ROWS => return Some(v),
        // A set-returning function (PostgreSQL's generate_series): not the same function.
        Ok(_) => return None,
        Err((state, _)) if not_offered(&state) => return None,
        Err(_) => {}
    }
    // Some row cannot be computed: one row at a time, so each row's answer is known.
    let mut out = Vec::new();
    for k in 1..=sweep::ROWS {
        out.push(
            match query(c, &format!("SELECT {call} FROM vals WHERE k = {k}")).await {
                Ok(mut v) if v.len() == 1 => v.swap_remove(0),
                Ok(_) => return None,
                Err((state, _)) if not_offered(&state) => return None,
                Err((state, _)) => format!("ERROR {}", state.get(..2).unwrap_or("")),
            },
        );
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
    let known = known();
    let mut used: BTreeSet<(String, usize)> = BTreeSet::new();
    let (mut compared, mut agreed, mut eddy_only, mut pg_only) = (0, 0, 0, 0);
    let mut compared_functions: BTreeSet<String> = BTreeSet::new();
    let mut agreeing_functions: BTreeSet<String> = BTreeSet::new();
    let mut unexplained: Vec<String> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    for call in &calls {
        let ours = answers(&e, call).await;
        if e.is_closed() {
            panic!("{call}: eddy closed the connection");
        }
        let theirs = answers(&p, call).await;
        let (ours, theirs) = match (ours, theirs) {
            (Some(o), Some(t)) => (o, t),
            (Some(_), None) => {
                eddy_only += 1;
                continue;
            }
            (None, Some(_)) => {
                pg_only += 1;
                continue;
            }
            (None, None) => continue,
        };
        compared += 1;
        let name = call.split('(').next().unwrap_or_default().to_string();
        compared_functions.insert(name.clone());
        let mut all_agree = true;
        for (k, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            let k = k + 1;
            let key = (call.clone(), k);
            match known.get(&key) {
                Some(entry) => {
                    used.insert(key);
                    all_agree = false;
                    if entry.postgres != field(t) || entry.eddy != field(o) {
                        stale.push(format!(
                            "{call} row {k}: the table says PostgreSQL {:?} and eddy {:?} \
                             ({}), now PostgreSQL {t:?} and eddy {o:?}",
                            entry.postgres, entry.eddy, entry.why
                        ));
                    }
                }
                None if o == t => {}
                None => {
                    all_agree = false;
                    unexplained.push(format!(
                        "{}\t{k}\t{}\t{}\t{}\t",
                        field(call),
                        field(&sweep::input_of(call, k)),
                        field(t),
                        field(o)
                    ));
                }
            }
        }
        if all_agree {
            agreed += 1;
            agreeing_functions.insert(name);
        }
    }
    let section = README
        .split("### Differences from PostgreSQL")
        .nth(1)
        .and_then(|s| s.split("\n### ").next())
        .expect("README.md has a section \"Differences from PostgreSQL\"");
    for call in known.keys().map(|k| &k.0).collect::<BTreeSet<_>>() {
        if !section.contains(&format!("`{}`", call.replace('|', "\\|"))) {
            stale.push(format!(
                "{call}: in sql/postgres_differences.tsv but not in README.md's \
                 \"Differences from PostgreSQL\""
            ));
        }
    }
    for key in known.keys().filter(|k| !used.contains(*k)) {
        stale.push(format!(
            "{} row {}: listed, but no longer compared (the call is gone or one side lacks it)",
            key.0, key.1
        ));
    }
    eprintln!(
        "postgres differential: {} registry functions, {} calls ({} operators and casts); \
         {compared} calls over {} function names run in both, {agreed} agree on every row \
         ({} names); {} known differences (rows); eddy only {eddy_only}, PostgreSQL only \
         {pg_only}",
        functions.len(),
        calls.len(),
        sweep::operator_and_cast_calls().len(),
        compared_functions.len(),
        agreeing_functions.len(),
        known.len()
    );
    if !unexplained.is_empty() {
        eprintln!(
            "differences not in sql/postgres_differences.tsv \
             (call, row, input, postgres, eddy, why):"
        );
        for u in &unexplained {
            eprintln!("{u}");
        }
    }
    for s in &stale {
        eprintln!("STALE {s}");
    }
    assert!(
        compared > 300,
        "only {compared} calls ran in both systems: too few to prove much"
    );
    assert!(
        unexplained.is_empty() && stale.is_empty(),
        "{} differences from PostgreSQL are not in sql/postgres_differences.tsv and {} entries \
         of it no longer hold (see above)",
        unexplained.len(),
        stale.len()
    );
}
