//! The calls of the expression sweep (issue 15), shared by `tests/expression_sweep.rs` (a view
//! against an ad-hoc `SELECT`) and `tests/postgres_differential.rs` (eddy against PostgreSQL).
//!
//! The function list comes from the live registry (`information_schema.routines`, deterministic
//! scalar functions); argument types from `information_schema.parameters` where a function
//! declares them, else from a fixed set of shapes. Arguments are columns of one table, `vals`,
//! whose rows hold ordinary and edge values: NULLs, empty and non-ASCII strings, negative and
//! extreme numbers, NaN, far dates.

use std::collections::{BTreeMap, BTreeSet};

use super::{rows, PgClient};

/// One column of `vals`: the argument type family it stands for, its name, its type in eddy and
/// in PostgreSQL, and its value in each row (`k` = 1..=6) as an eddy and a PostgreSQL literal.
pub struct Column {
    /// Argument type family (the prefix of an Arrow type name).
    pub family: &'static str,
    /// Column name.
    pub name: &'static str,
    /// Type in eddy's DDL.
    pub eddy_type: &'static str,
    /// Type in PostgreSQL's DDL.
    pub pg_type: &'static str,
    /// Value per row, eddy syntax.
    pub eddy: [&'static str; ROWS],
    /// Value per row, PostgreSQL syntax, where it differs from eddy's.
    pub pg: Option<[&'static str; ROWS]>,
}

impl Column {
    /// The value in row `r` (0-based) as a PostgreSQL literal.
    pub fn pg_value(&self, r: usize) -> &'static str {
        self.pg.map_or(self.eddy[r], |pg| pg[r])
    }
}

/// Rows of `vals`.
pub const ROWS: usize = 6;

/// The argument columns of `vals` (besides the key `k`).
pub const COLUMNS: &[Column] = &[
    Column {
        family: "Int32",
        name: "i",
        eddy_type: "INT",
        pg_type: "INT",
        eddy: ["1", "NULL", "-7", "0", "2147483647", "3"],
        pg: None,
    },
    Column {
        family: "Int64",
        name: "b",
        eddy_type: "BIGINT",
        pg_type: "BIGINT",
        eddy: ["10", "NULL", "-9000000000", "0", "9223372036854775807", "3"],
        pg: None,
    },
    Column {
        family: "Float64",
        name: "d",
        eddy_type: "DOUBLE",
        pg_type: "DOUBLE PRECISION",
        eddy: [
            "1.5",
            "NULL",
            "-0.25",
            "CAST('NaN' AS DOUBLE)",
            "1e300",
            "3.0",
        ],
        pg: Some(["1.5", "NULL", "-0.25", "'NaN'", "1e300", "3.0"]),
    },
    Column {
        family: "Utf8",
        name: "s",
        eddy_type: "VARCHAR",
        pg_type: "VARCHAR",
        eddy: [
            "'abc'",
            "NULL",
            "''",
            "'héllo wörld ß'",
            "'Ω≈ç√ 12,3'",
            "'3'",
        ],
        pg: None,
    },
    Column {
        family: "Timestamp",
        name: "t",
        eddy_type: "TIMESTAMP",
        pg_type: "TIMESTAMP",
        eddy: [
            "TIMESTAMP '2026-01-01 00:00:01'",
            "NULL",
            "TIMESTAMP '1970-01-01 00:00:00'",
            "TIMESTAMP '2038-01-19 03:14:07'",
            "TIMESTAMP '1900-01-01 12:30:00'",
            "TIMESTAMP '2024-02-29 23:59:59.999'",
        ],
        pg: None,
    },
    Column {
        family: "Boolean",
        name: "bo",
        eddy_type: "BOOLEAN",
        pg_type: "BOOLEAN",
        eddy: ["true", "NULL", "false", "NULL", "true", "false"],
        pg: None,
    },
    Column {
        family: "Date32",
        name: "dt",
        eddy_type: "DATE",
        pg_type: "DATE",
        eddy: [
            "DATE '2026-01-01'",
            "NULL",
            "DATE '1900-02-28'",
            "DATE '2200-12-31'",
            "DATE '0001-01-01'",
            "DATE '2024-02-29'",
        ],
        pg: None,
    },
    Column {
        family: "List",
        name: "a",
        eddy_type: "BIGINT[]",
        pg_type: "BIGINT[]",
        eddy: [
            "[3, 1, 2]",
            "NULL",
            "[]",
            "[NULL, 5]",
            "[9223372036854775807, -1]",
            "[3, 3]",
        ],
        pg: Some([
            "ARRAY[3, 1, 2]",
            "NULL",
            "'{}'",
            "ARRAY[NULL, 5]",
            "ARRAY[9223372036854775807, -1]",
            "ARRAY[3, 3]",
        ]),
    },
    Column {
        family: "Interval",
        name: "iv",
        eddy_type: "INTERVAL",
        pg_type: "INTERVAL",
        eddy: [
            "INTERVAL '1 day'",
            "NULL",
            "INTERVAL '-2 hours'",
            "INTERVAL '1 month 3 seconds'",
            "INTERVAL '0 seconds'",
            "INTERVAL '10 years'",
        ],
        pg: None,
    },
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

/// `CREATE TABLE vals …; INSERT …` for eddy (`pg = false`) or PostgreSQL (`pg = true`).
pub fn table_sql(pg: bool) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, if pg { c.pg_type } else { c.eddy_type }))
        .collect();
    let rows: Vec<String> = (0..ROWS)
        .map(|r| {
            let vals: Vec<&str> = COLUMNS
                .iter()
                .map(|c| if pg { c.pg_value(r) } else { c.eddy[r] })
                .collect();
            format!("({}, {})", r + 1, vals.join(", "))
        })
        .collect();
    format!(
        "CREATE TABLE vals (k INT, {}); INSERT INTO vals VALUES {};",
        cols.join(", "),
        rows.join(", ")
    )
}

/// The arguments of `call` in row `k` (1-based), as `name = literal` pairs, for messages and the
/// known-differences table.
pub fn input_of(call: &str, k: usize) -> String {
    let mut seen = BTreeSet::new();
    call.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
        .filter(|a| !a.is_empty() && seen.insert(*a))
        .filter_map(|a| COLUMNS.iter().find(|c| c.name == a))
        .map(|c| format!("{} = {}", c.name, c.pg_value(k - 1)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Operators (arithmetic, comparison, logical, string, pattern, bitwise, date/time and array)
/// and casts between the column types, written as PostgreSQL writes them.
pub fn operator_and_cast_calls() -> Vec<String> {
    let mut out = Vec::new();
    let numeric = ["i", "b", "d"];
    for (x, y) in [
        ("i", "i"),
        ("b", "b"),
        ("d", "d"),
        ("i", "b"),
        ("i", "d"),
        ("b", "d"),
    ] {
        for op in ["+", "-", "*", "/", "%"] {
            out.push(format!("({x} {op} {y})"));
            if x != y {
                out.push(format!("({y} {op} {x})"));
            }
        }
    }
    for x in ["i", "b", "d", "s", "t", "bo", "dt", "a", "iv"] {
        for op in ["=", "<>", "<", "<=", ">", ">="] {
            out.push(format!("({x} {op} {x})"));
        }
        out.push(format!("({x} IS NULL)"));
        out.push(format!("({x} IS DISTINCT FROM {x})"));
    }
    for x in numeric {
        out.push(format!("(-{x})"));
        out.push(format!("({x} BETWEEN -1 AND 2)"));
        out.push(format!("({x} IN (0, 3, 10))"));
    }
    for (x, y) in [("i", "i"), ("b", "b"), ("i", "b")] {
        for op in ["&", "|", "#", "<<", ">>"] {
            out.push(format!("({x} {op} {y})"));
        }
    }
    out.push("(~i)".into());
    for op in ["AND", "OR"] {
        out.push(format!("(bo {op} bo)"));
        out.push(format!("(bo {op} NOT bo)"));
    }
    out.push("(NOT bo)".into());
    out.push("(bo IS TRUE)".into());
    out.push("(bo IS NOT FALSE)".into());
    for expr in [
        "(s || s)",
        "(s || i)",
        "(i || s)",
        "(s LIKE 'h%')",
        "(s LIKE '%' || s)",
        "(s ILIKE 'H%')",
        "(s NOT LIKE '_')",
        "(s ~ '^[a-z]+$')",
        "(s ~* 'ABC')",
        "(s !~ 'l+')",
        "(s SIMILAR TO '%(b|l)%')",
        "(t + iv)",
        "(t - iv)",
        "(t - t)",
        "(dt + i)",
        "(dt - i)",
        "(dt - dt)",
        "(dt + iv)",
        "(iv + iv)",
        "(iv - iv)",
        "(iv * i)",
        "(iv * d)",
        "(iv / i)",
        "(-iv)",
        "(a || a)",
        "(a || b)",
        "(b || a)",
        "(a @> a)",
        "(a <@ a)",
        "(a && a)",
        "(a[1])",
        "(a[2])",
        "(CASE WHEN i > 0 THEN s ELSE 'neg' END)",
        "(COALESCE(s, 'n/a'))",
        "(COALESCE(i, b, 0))",
        "(NULLIF(i, 0))",
        "(GREATEST(i, 2))",
        "(LEAST(d, 0))",
    ] {
        out.push(expr.to_string());
    }
    // Reading PostgreSQL's templates: constants, and the rows' own values written by to_char.
    for (text, template) in [
        ("2026-03-04 05:06:07", "YYYY-MM-DD HH24:MI:SS"),
        ("20260304 050607", "YYYYMMDD HH24MISS"),
        ("04 Mar 2026", "DD Mon YYYY"),
        ("4 MARCH 2026 5:06 pm", "DD MONTH YYYY HH12:MI AM"),
        ("12:00 A.M. 2026-01-01", "HH:MI A.M. YYYY-MM-DD"),
        ("2026-03-04 07.5", "YYYY-MM-DD SS.MS"),
        ("2026-03-04 07.123456", "YYYY-MM-DD SS.US"),
        ("2026-03-04 5:6:7.25", "YYYY-MM-DD HH24:MI:SS.FF2"),
        ("26-1-2", "YY-MM-DD"),
        ("2026/060", "YYYY-DDD"),
        ("  2026 03   04", "YYYY MM DD"),
        ("Wednesday, 2026-03-04", "Day, YYYY-MM-DD"),
        ("3rd of March 2026", "DDth \"of\" Month YYYY"),
        ("2026-03-04T05:06:07Z", "YYYY-MM-DD\"T\"HH24:MI:SS"),
        ("2026 10", "YYYY WW"),
        ("2026-03 2", "YYYY-MM W"),
        ("2,026 3 4", "Y,YYY MM DD"),
        ("2460739", "J"),
        ("2026-13-01", "YYYY-MM-DD"),
        ("2026-02-30", "YYYY-MM-DD"),
        ("13:00 PM 2026", "HH12:MI PM YYYY"),
        ("2026-xx-01", "YYYY-MM-DD"),
        ("Foo 2026", "Mon YYYY"),
    ] {
        out.push(format!("to_date('{text}', '{template}')"));
        out.push(format!("to_timestamp('{text}', '{template}')::timestamp"));
    }
    // Numbers read by PostgreSQL's numeric templates.
    for (text, template) in [
        ("12,454.8-", "99G999D9S"),
        ("-12.5", "99.99"),
        ("  42", "9999"),
        ("<12>", "99PR"),
        ("12-", "99MI"),
        ("$1,234.5", "L9,999.9"),
        ("12345", "999"),
        ("3.14159", "9.99"),
        ("12 34", "99 99"),
        ("abc", "999"),
    ] {
        out.push(format!("to_number('{text}', '{template}')"));
    }
    out.push("to_number(to_char(b, '9999999999999999999'), '9999999999999999999')".into());
    // Numbers written by PostgreSQL's numeric templates, over the edge values of i, b and d.
    for template in [
        "9999",
        "FM9999",
        "0000",
        "9,999,999",
        "9G999D99",
        "S999",
        "999S",
        "999MI",
        "FM999MI",
        "PL999",
        "SG999",
        "999PR",
        "99V99",
        "9.99EEEE",
        "RN",
        "999th",
        "FM9999999999999999999.999",
        "\"n=\"999",
    ] {
        for x in ["i", "b", "d"] {
            out.push(format!("to_char({x}, '{template}')"));
        }
    }
    for template in [
        "YYYY-MM-DD HH24:MI:SS.US",
        "FMDD FMMonth YYYY HH12:MI:SS AM",
        "YYYYDDD SSSSS",
    ] {
        out.push(format!(
            "to_timestamp(to_char(t, '{template}'), '{template}')::timestamp"
        ));
        out.push(format!("to_date(to_char(dt, '{template}'), '{template}')"));
    }
    let targets = [
        "SMALLINT",
        "INT",
        "BIGINT",
        "REAL",
        "DOUBLE PRECISION",
        "NUMERIC(20, 4)",
        "VARCHAR",
        "TEXT",
        "BOOLEAN",
        "DATE",
        "TIMESTAMP",
        "INTERVAL",
    ];
    for c in COLUMNS.iter().filter(|c| c.name != "a") {
        for t in targets {
            out.push(format!("CAST({} AS {t})", c.name));
        }
    }
    out
}

fn column_for(data_type: &str) -> Option<&'static str> {
    let t = data_type;
    let family = if t.starts_with("Int8") || t.starts_with("Int16") || t.starts_with("Int32") {
        "Int32"
    } else if t.starts_with("Int64") || t.starts_with("UInt") {
        "Int64"
    } else if t.starts_with("Float") || t.starts_with("Decimal") {
        "Float64"
    } else if t.starts_with("Utf8") || t.starts_with("LargeUtf8") || t == "String" {
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
    COLUMNS.iter().find(|c| c.family == family).map(|c| c.name)
}

/// The registry's deterministic scalar functions and every call of each to try.
pub async fn calls(c: &PgClient) -> (Vec<String>, Vec<String>) {
    let functions: Vec<String> = rows(
        c,
        "SELECT DISTINCT routine_name FROM information_schema.routines
         WHERE function_type = 'SCALAR' AND is_deterministic ORDER BY 1",
    )
    .await
    .expect("list functions")
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    // Declared signatures: (function, routine id) → types by position.
    let mut declared: BTreeMap<String, BTreeMap<String, Vec<(i64, String)>>> = BTreeMap::new();
    for r in rows(
        c,
        "SELECT specific_name, rid, ordinal_position, data_type FROM information_schema.parameters
         WHERE parameter_mode = 'IN'",
    )
    .await
    .expect("list parameters")
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
    (functions, calls)
}
