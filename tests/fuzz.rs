//! Hunting for the next hole (issue 14), against a real server:
//!
//! - **Protocol**: random bytes before and after a valid startup, random
//!   frames with real and absurd lengths, cut-off messages. Each goes over
//!   its own TCP connection; afterwards the server still serves a normal
//!   client and its log shows no panic.
//! - **Random SQL**: statements generated from the live catalog (nested
//!   expressions, casts, bad literals, functions, aggregates, windows, joins,
//!   subqueries, huge IN lists, views). Every statement must come back (rows
//!   or an error with a SQLSTATE) on the same connection; no panic, no crash.
//!   The SQLSTATEs are tallied and printed; XX000 ("internal") answers are
//!   listed, as the ones to classify next.
//!
//! `cargo test --test fuzz` runs a short round; `EDDY_FUZZ_CASES=100000`
//! a long one. Seeds are fixed per round (printed), so a failure replays.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn cases(default: usize) -> usize {
    std::env::var("EDDY_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// One random frame: a tag (often a real one), a length (often a lie), bytes.
fn frame(rng: &mut SmallRng) -> Vec<u8> {
    let tags = b"QPBDESCHXFdcfp";
    let tag = if rng.random_bool(0.8) {
        tags[rng.random_range(0..tags.len())]
    } else {
        rng.random()
    };
    let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
    let len: u32 = match rng.random_range(0..4) {
        0 => body.len() as u32 + 4,
        1 => rng.random_range(0..8),
        2 => u32::MAX - rng.random_range(0..16),
        _ => rng.random(),
    };
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend(body);
    out
}

fn send_and_drain(port: u16, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    // Read whatever the server answers until it closes or goes quiet.
    for _ in 0..4 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_fuzz_leaves_the_server_serving() {
    let server = Server::start().await;
    let port = server.port;
    let n = cases(300);
    let seed = 14;
    eprintln!("protocol fuzz: {n} connections, seed {seed}");
    tokio::task::spawn_blocking(move || {
        let mut rng = SmallRng::seed_from_u64(seed);
        for i in 0..n {
            let mut bytes = Vec::new();
            match i % 3 {
                // Garbage instead of a startup message.
                0 => bytes.extend((0..rng.random_range(0..128)).map(|_| rng.random::<u8>())),
                // A valid startup, then random frames.
                1 => {
                    bytes.extend(common::startup_message());
                    for _ in 0..rng.random_range(1..6) {
                        bytes.extend(frame(&mut rng));
                    }
                }
                // A valid startup and query, cut short.
                _ => {
                    bytes.extend(common::startup_message());
                    let mut q = b"Q".to_vec();
                    let sql = b"SELECT 1\0";
                    q.extend_from_slice(&((sql.len() + 4) as u32).to_be_bytes());
                    q.extend_from_slice(sql);
                    let cut = rng.random_range(1..q.len());
                    bytes.extend_from_slice(&q[..cut]);
                }
            }
            send_and_drain(port, &bytes);
        }
    })
    .await
    .unwrap();
    let c = server.client().await;
    common::eventually(&c, "SELECT 40 + 2", &[&["42"]]).await;
    let panics = pgwire_decoder_panics(&server);
    eprintln!(
        "protocol fuzz: {panics} connections ended by pgwire's decoders panicking on truncated bodies"
    );
}

/// How many connections pgwire's decoders ended by panicking; fails on any
/// other panic. (Known defect of pgwire 0.41, not eddy's: its message
/// decoders (Parse, Bind, CopyFail, …) trust lengths inside a frame and panic
/// on a truncated body. Tokio confines that to the offending connection.)
fn pgwire_decoder_panics(server: &Server) -> usize {
    let log = std::fs::read_to_string(&server.log_path).unwrap_or_default();
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked at")).collect();
    let unknown: Vec<&&str> = panics
        .iter()
        .filter(|l| {
            let decoder = l.contains("/bytes-") || l.contains("/pgwire-0.41.1/src/messages/");
            !(decoder && l.contains("tokio-rt-worker"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "panics other than pgwire's decoder: {unknown:?}"
    );
    panics.len()
}

/// A `p` frame (password message family) with `body`.
fn password_frame(body: &[u8]) -> Vec<u8> {
    let mut out = vec![b'p'];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Random text, often near SCRAM's syntax.
fn scram_text(rng: &mut SmallRng, parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 && rng.random_bool(0.9) {
            out.push(b',');
        }
        if rng.random_bool(0.8) {
            out.extend_from_slice(p.as_bytes());
        }
        out.extend((0..rng.random_range(0..12)).map(|_| rng.random::<u8>() % 96 + 32));
    }
    out
}

/// eddy's own SCRAM exchange (password logins) under random and malformed
/// SASL messages: every connection ends in an error or a login, the server
/// serves on, and the real password still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_fuzz_leaves_the_server_serving() {
    let server = Server::start_with_args(&["--password", "fuzz-pw"]).await;
    let port = server.port;
    let n = cases(300);
    let seed = 15;
    eprintln!("SASL fuzz: {n} connections, seed {seed}");
    tokio::task::spawn_blocking(move || {
        let mut rng = SmallRng::seed_from_u64(seed);
        for _ in 0..n {
            let mut bytes = common::startup_message();
            let mut first = Vec::new();
            let mechanism: &[u8] = if rng.random_bool(0.8) {
                b"SCRAM-SHA-256"
            } else {
                b"SCRAM-SHA-256-PLUS"
            };
            first.extend_from_slice(mechanism);
            first.push(0);
            let data = scram_text(&mut rng, &["n,", ",n=eddy", ",r=abc"]);
            let len: i32 = match rng.random_range(0..4) {
                0 => -1,
                1 => rng.random_range(-4..200),
                _ => data.len() as i32,
            };
            first.extend_from_slice(&len.to_be_bytes());
            first.extend_from_slice(&data);
            bytes.extend(password_frame(&first));
            if rng.random_bool(0.7) {
                let last = scram_text(&mut rng, &["c=biws", "r=abc", "p=AAAA"]);
                bytes.extend(password_frame(&last));
            }
            send_and_drain(port, &bytes);
        }
    })
    .await
    .unwrap();
    let c = common::connect_as(port, "eddy", "fuzz-pw")
        .await
        .expect("the real password still logs in");
    common::eventually(&c, "SELECT 40 + 2", &[&["42"]]).await;
    let panics = pgwire_decoder_panics(&server);
    eprintln!("SASL fuzz: {panics} connections ended by pgwire's decoders panicking");
}

/// A tiny generator of SQL over the catalog the test creates.
struct Gen {
    rng: SmallRng,
}

const COLUMNS: &[(&str, &str)] = &[
    ("k", "int"),
    ("v", "bigint"),
    ("x", "double"),
    ("s", "text"),
    ("ts", "timestamp"),
    ("b", "bool"),
];
const FUNCTIONS: &[&str] = &[
    "abs",
    "length",
    "upper",
    "lower",
    "coalesce",
    "nullif",
    "round",
    "sqrt",
    "ln",
    "mod",
    "substr",
    "concat",
    "date_trunc",
    "to_char",
    "greatest",
    "least",
    "md5",
    "btrim",
    "split_part",
    "strpos",
    "power",
    "floor",
    "ceil",
    "trim",
    "left",
    "right",
    "repeat",
    "reverse",
    "nvl",
    "date_part",
    "to_timestamp",
    "array_length",
    "regexp_match",
    "approx_distinct",
    "no_such_function",
];
const LITERALS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2147483647",
    "-9223372036854775808",
    "9223372036854775807",
    "1e308",
    "'NaN'::double",
    "''",
    "'é✓'",
    "NULL",
    "true",
    "'2026-01-01 00:00:00'",
    "TIMESTAMP '1677-09-21 00:12:44'",
    "'not a number'",
    "INTERVAL '1' DAY",
    "'abc'::int",
    "1/0",
    "0.0/0",
    "'9999999999999999999999'::bigint",
    "ARRAY[1, 2, NULL]",
];
const TYPES: &[&str] = &[
    "int",
    "bigint",
    "smallint",
    "double",
    "real",
    "text",
    "varchar",
    "bool",
    "timestamp",
    "date",
    "decimal(10,2)",
    "bytea",
    "interval",
];

impl Gen {
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.rng.random_range(0..v.len())]
    }

    fn expr(&mut self, depth: u32) -> String {
        if depth == 0 || self.rng.random_bool(0.3) {
            return if self.rng.random_bool(0.6) {
                self.pick(&COLUMNS.iter().map(|c| c.0).collect::<Vec<_>>())
                    .to_string()
            } else {
                self.pick(LITERALS).to_string()
            };
        }
        let d = depth - 1;
        match self.rng.random_range(0..9) {
            0 => format!(
                "({} {} {})",
                self.expr(d),
                self.pick(&[
                    "+",
                    "-",
                    "*",
                    "/",
                    "%",
                    "||",
                    "=",
                    "<>",
                    "<",
                    ">=",
                    "AND",
                    "OR",
                    "LIKE",
                    "IS DISTINCT FROM"
                ]),
                self.expr(d)
            ),
            1 => format!("CAST({} AS {})", self.expr(d), self.pick(TYPES)),
            2 => {
                let f = self.pick(FUNCTIONS);
                let args: Vec<String> = (0..self.rng.random_range(0..4))
                    .map(|_| self.expr(d))
                    .collect();
                format!("{f}({})", args.join(", "))
            }
            3 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.expr(d),
                self.expr(d),
                self.expr(d)
            ),
            4 => format!("({} IS NULL)", self.expr(d)),
            5 => format!("NOT ({})", self.expr(d)),
            6 => {
                let n = if self.rng.random_bool(0.1) { 5_000 } else { 4 };
                let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                format!("({} IN ({}))", self.expr(d), items.join(", "))
            }
            7 => format!("(SELECT max({}) FROM t)", self.expr(d)),
            _ => format!("-({})", self.expr(d)),
        }
    }

    fn statement(&mut self, i: usize) -> String {
        let e = self.expr(4);
        let e2 = self.expr(3);
        match self.rng.random_range(0..10) {
            0 | 1 => format!("SELECT {e}, {e2} FROM t"),
            2 => format!(
                "SELECT k, count(*), sum(v), {} FROM t GROUP BY k",
                self.agg()
            ),
            3 => format!("SELECT {e} FROM t WHERE {e2} ORDER BY 1 LIMIT 5"),
            4 => format!("SELECT a.k, {e} FROM t a JOIN t b ON a.k = b.k AND {e2}"),
            5 => format!(
                "CREATE MATERIALIZED VIEW fv{i} AS SELECT k, {} AS agg FROM t GROUP BY k",
                self.agg()
            ),
            6 => format!(
                "CREATE MATERIALIZED VIEW fw{i} AS SELECT window_start, {} AS agg \
                 FROM {}(t, ts, INTERVAL '{}' SECOND{}) GROUP BY window_start",
                self.agg(),
                self.pick(&["TUMBLE", "HOP", "CUMULATE", "SESSION"]),
                self.rng.random_range(0..4),
                if self.rng.random_bool(0.5) {
                    ", INTERVAL '10' SECOND"
                } else {
                    ""
                }
            ),
            7 => format!("CREATE MATERIALIZED VIEW fx{i} AS SELECT {e} AS c, {e2} AS d FROM t"),
            8 => format!(
                "INSERT INTO t VALUES ({}, {}, {}, {}, {}, {})",
                self.expr(2),
                self.expr(2),
                self.expr(2),
                self.expr(2),
                self.pick(&[
                    "'2026-01-01 00:00:05'",
                    "NULL",
                    "'1677-09-21 00:12:44'",
                    "now()"
                ]),
                self.expr(1)
            ),
            _ => format!("SELECT * FROM (SELECT {e} AS c FROM t) s WHERE c IS NOT NULL"),
        }
    }

    fn agg(&mut self) -> String {
        let f = self.pick(&[
            "count",
            "sum",
            "avg",
            "min",
            "max",
            "approx_distinct",
            "stddev",
            "string_agg",
            "array_agg",
            "bool_and",
        ]);
        format!("{f}({})", self.expr(2))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sql_never_crashes_the_server() {
    let server = Server::start_with_args(&["--query-memory-mb", "256"]).await;
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE t (k INT, v BIGINT, x DOUBLE, s TEXT, ts TIMESTAMP NOT NULL, b BOOLEAN,
                         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
         INSERT INTO t VALUES (1, 10, 1.5, 'a', '2026-01-01 00:00:01', true),
                              (2, NULL, -0.0, 'é', '2026-01-01 00:00:02', NULL),
                              (NULL, -5, NULL, NULL, '2026-01-01 00:00:03', false);
         SET statement_timeout = '5s';",
    )
    .await
    .unwrap();
    let n = cases(400);
    let seed = 1414;
    eprintln!("random SQL: {n} statements, seed {seed}");
    let mut g = Gen {
        rng: SmallRng::seed_from_u64(seed),
    };
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut internal: Vec<(String, String)> = Vec::new();
    let mut generic: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        let sql = g.statement(i);
        let result = tokio::time::timeout(Duration::from_secs(30), c.simple_query(&sql))
            .await
            .unwrap_or_else(|_| panic!("statement {i} never came back: {sql}"));
        let code = match result {
            Ok(_) => {
                // Keep the catalog small over long runs: a view that was created goes again.
                if let Some(name) = sql
                    .strip_prefix("CREATE MATERIALIZED VIEW ")
                    .and_then(|r| r.split_whitespace().next())
                {
                    c.batch_execute(&format!("DROP MATERIALIZED VIEW {name}"))
                        .await
                        .unwrap_or_else(|e| panic!("DROP {name}: {}", common::error_text(&e)));
                }
                "ok".to_string()
            }
            Err(e) => match e.as_db_error() {
                Some(db) => {
                    let code = db.code().code().to_string();
                    if code == "XX000" && internal.len() < 40 {
                        internal.push((sql.chars().take(160).collect(), db.message().into()));
                    }
                    if code == "42000" {
                        // The catch-all for plan errors: which messages land there most.
                        let head: String = db.message().chars().take(60).collect();
                        *generic.entry(head).or_default() += 1;
                    }
                    code
                }
                None => panic!(
                    "statement {i} broke the connection: {}\n{sql}\n{}",
                    common::error_text(&e),
                    server.log_tail()
                ),
            },
        };
        *tally.entry(code).or_default() += 1;
    }
    eprintln!("random SQL outcomes by SQLSTATE: {tally:?}");
    for (sql, msg) in &internal {
        eprintln!("XX000: {msg}\n    {sql}");
    }
    let mut generic: Vec<(usize, String)> = generic.into_iter().map(|(m, n)| (n, m)).collect();
    generic.sort_unstable_by(|a, b| b.cmp(a));
    for (n, m) in generic.iter().take(12) {
        eprintln!("42000 x{n}: {m}");
    }
    common::eventually(&c, "SELECT count(*) > 0 FROM t", &[&["t"]]).await;
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
    assert!(tally.get("ok").copied().unwrap_or(0) > n / 10, "{tally:?}");
}
