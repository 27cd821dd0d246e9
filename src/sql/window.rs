//! Window table-valued functions in `FROM`.
//!
//! `TUMBLE(t, ts, size)`, `HOP(t, ts, slide, size)`,
//! `CUMULATE(t, ts, step, size)`, `SESSION(t, ts, gap)` and
//! `TUMBLE_ROWS(t, ts, n)` (Flink's
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))` form is turned into this
//! one at the token level) are replaced in the query AST by a reference to a
//! placeholder relation `__eddy_window_N`, whose schema is the input's plus
//! `window_start` and `window_end`. DataFusion then plans the query as usual
//! and the streaming planner maps each placeholder back to "input stream +
//! window assignment".

use datafusion::sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, Ident, ObjectName, Query, SetExpr, TableFactor,
    TableWithJoins,
};

use super::statement::{normalize_ident, normalize_object_name};
use crate::error::{EddyError, Result};

/// Prefix of the placeholder relations that stand for window TVFs.
pub const PLACEHOLDER_PREFIX: &str = "__eddy_window_";

/// Which window function, with its interval arguments still as SQL.
#[derive(Debug, Clone)]
pub enum WindowFnArgs {
    /// `TUMBLE(t, ts, size)`.
    Tumble {
        /// Window size.
        size: Box<ast::Expr>,
    },
    /// `HOP(t, ts, slide, size)`.
    Hop {
        /// Distance between window starts.
        slide: Box<ast::Expr>,
        /// Window size.
        size: Box<ast::Expr>,
    },
    /// `TUMBLE_ROWS(t, ts, n)`: per group key, windows of `n` rows in arrival order.
    Rows {
        /// Rows per window.
        count: Box<ast::Expr>,
    },
    /// `SESSION(t, ts, gap)`: per group key, rows less than `gap` apart.
    Session {
        /// Inactivity that ends a session.
        gap: Box<ast::Expr>,
    },
    /// `CUMULATE(t, ts, step, size)`: windows that start every `size` and
    /// grow by `step` until they are `size` long.
    Cumulate {
        /// How much each window is longer than the previous one.
        step: Box<ast::Expr>,
        /// The longest window.
        size: Box<ast::Expr>,
    },
}

/// One window TVF found in a query.
#[derive(Debug, Clone)]
pub struct WindowTvf {
    /// The placeholder relation name that replaced the call.
    pub placeholder: String,
    /// The input relation (table, source or view).
    pub input: String,
    /// The event-time column of the input (`proctime` for `PROCTIME()`).
    pub time_column: String,
    /// The time argument is `PROCTIME()`: windows over processing time,
    /// in a column `proctime` appended to the input's.
    pub processing_time: bool,
    /// Kind and interval arguments.
    pub args: WindowFnArgs,
}

/// Replace every window TVF in `query` by a placeholder; return what was replaced.
pub fn extract_windows(query: &mut Query) -> Result<Vec<WindowTvf>> {
    let mut w = Walk {
        found: Vec::new(),
        strict: true,
    };
    walk_query(query, &mut w)?;
    Ok(w.found)
}

/// The window TVFs of a query (`SELECT … FROM TUMBLE(…)` outside a view)
/// as the batch query they stand for: each call becomes a common table
/// expression that gives every row its windows (`date_bin` bounds; HOP and
/// CUMULATE unnest a range of them). Other table functions are left alone.
pub fn batch_windows(query: &mut Query) -> Result<()> {
    let mut w = Walk {
        found: Vec::new(),
        strict: false,
    };
    walk_query(query, &mut w)?;
    if w.found.is_empty() {
        return Ok(());
    }
    let ctes: Vec<String> = w
        .found
        .iter()
        .map(|t| Ok(format!("{} AS ({})", t.placeholder, batch_sql(t)?)))
        .collect::<Result<_>>()?;
    let sql = format!("WITH {} SELECT 1", ctes.join(", "));
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql)
        .map_err(|e| EddyError::Internal(format!("window rewrite: {e}")))?;
    let Some(ast::Statement::Query(q)) = parsed.into_iter().next() else {
        return Err(EddyError::Internal("window rewrite: not a query".into()));
    };
    let Some(with) = q.with else {
        return Err(EddyError::Internal("window rewrite: no WITH".into()));
    };
    match &mut query.with {
        Some(existing) => {
            let mut tables = with.cte_tables;
            tables.append(&mut existing.cte_tables);
            existing.cte_tables = tables;
        }
        None => query.with = Some(with),
    }
    Ok(())
}

/// The batch query that gives the rows of `t`'s input their windows.
fn batch_sql(t: &WindowTvf) -> Result<String> {
    use super::canonical::quote;
    if t.processing_time {
        return Err(EddyError::NotSupported {
            message: "windows over PROCTIME() run in materialized views only".into(),
            hint: Some(
                "A query over a table's rows has no arrival times; window by its event time."
                    .into(),
            ),
        });
    }
    let (input, ts) = (quote(&t.input), quote(&t.time_column));
    let bin = |size: &ast::Expr| format!("date_bin({size}, {ts}, TIMESTAMP '1970-01-01 00:00:00')");
    Ok(match &t.args {
        WindowFnArgs::Tumble { size } => format!(
            "SELECT *, {b} AS window_start, {b} + {size} AS window_end FROM {input}",
            b = bin(size)
        ),
        WindowFnArgs::Hop { slide, size } => format!(
            "SELECT * EXCLUDE (__eddy_ws), __eddy_ws AS window_start, __eddy_ws + {size} AS \
             window_end FROM (SELECT *, unnest(range({b} - {size} + {slide}, {b} + {slide}, \
             {slide})) AS __eddy_ws FROM {input})",
            b = bin(slide)
        ),
        WindowFnArgs::Cumulate { step, size } => format!(
            "SELECT * EXCLUDE (__eddy_we), {p} AS window_start, __eddy_we AS window_end FROM \
             (SELECT *, unnest(range({b} + {step}, {p} + {size} + {step}, {step})) AS __eddy_we \
             FROM {input})",
            b = bin(step),
            p = bin(size)
        ),
        WindowFnArgs::Session { .. } | WindowFnArgs::Rows { .. } => {
            return Err(EddyError::NotSupported {
                message: "SESSION and TUMBLE_ROWS windows are not supported in a query".into(),
                hint: Some(
                    "They need the rows in event-time order per key: create a materialized view \
                     with them and SELECT from it."
                        .into(),
                ),
            })
        }
    })
}

/// What a walk over a query found, and whether other table functions are errors.
struct Walk {
    found: Vec<WindowTvf>,
    /// In a view: only window TVFs may be called in `FROM`.
    strict: bool,
}

fn walk_query(q: &mut Query, found: &mut Walk) -> Result<()> {
    if let Some(with) = &mut q.with {
        for cte in &mut with.cte_tables {
            walk_query(&mut cte.query, found)?;
        }
    }
    walk_set_expr(&mut q.body, found)
}

fn walk_set_expr(body: &mut SetExpr, found: &mut Walk) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for twj in &mut select.from {
                walk_table_with_joins(twj, found)?;
            }
            Ok(())
        }
        SetExpr::Query(q) => walk_query(q, found),
        SetExpr::SetOperation { left, right, .. } => {
            walk_set_expr(left, found)?;
            walk_set_expr(right, found)
        }
        _ => Ok(()),
    }
}

fn walk_table_with_joins(twj: &mut TableWithJoins, found: &mut Walk) -> Result<()> {
    walk_factor(&mut twj.relation, found)?;
    for j in &mut twj.joins {
        walk_factor(&mut j.relation, found)?;
    }
    Ok(())
}

fn walk_factor(f: &mut TableFactor, found: &mut Walk) -> Result<()> {
    match f {
        TableFactor::Table {
            name,
            args: args @ Some(_),
            alias,
            ..
        } => {
            let fname = name.to_string().to_uppercase();
            let window = matches!(
                fname.as_str(),
                "TUMBLE" | "HOP" | "CUMULATE" | "SESSION" | "TUMBLE_ROWS"
            );
            if !window && !found.strict {
                return Ok(());
            }
            let call_args = args.take().map(|a| a.args).unwrap_or_default();
            let tvf = match window {
                true => parse_call(&fname, call_args, found.found.len())?,
                false => {
                    return Err(EddyError::not_supported(format!(
                        "table function {name} is not supported in a materialized view"
                    )))
                }
            };
            *name = ObjectName::from(vec![Ident::new(tvf.placeholder.clone())]);
            // Unaliased, the window's rows keep the input's name: `bid.auction` still resolves.
            if alias.is_none() {
                *alias = Some(ast::TableAlias {
                    explicit: true,
                    name: Ident::with_quote('"', tvf.input.clone()),
                    columns: vec![],
                    at: None,
                });
            }
            found.found.push(tvf);
            Ok(())
        }
        TableFactor::Derived { subquery, .. } => walk_query(subquery, found),
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => walk_table_with_joins(table_with_joins, found),
        _ => Ok(()),
    }
}

fn parse_call(fname: &str, args: Vec<FunctionArg>, index: usize) -> Result<WindowTvf> {
    let exprs: Vec<ast::Expr> = args
        .into_iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(EddyError::syntax(format!(
                "syntax error: unexpected argument {other} to {fname}"
            ))),
        })
        .collect::<Result<_>>()?;
    let usage = match fname {
        "TUMBLE" => "TUMBLE(table, time_column, size)",
        "CUMULATE" => "CUMULATE(table, time_column, step, size)",
        "SESSION" => "SESSION(table, time_column, gap)",
        "TUMBLE_ROWS" => "TUMBLE_ROWS(table, time_column, rows)",
        _ => "HOP(table, time_column, slide, size)",
    };
    let expected = if matches!(fname, "TUMBLE" | "SESSION" | "TUMBLE_ROWS") {
        3
    } else {
        4
    };
    if exprs.len() != expected {
        return Err(EddyError::syntax(format!(
            "syntax error: {fname} takes {expected} arguments, got {}: {usage}",
            exprs.len()
        )));
    }
    let input = match &exprs[0] {
        ast::Expr::Identifier(id) => normalize_ident(id),
        ast::Expr::CompoundIdentifier(parts) => {
            normalize_object_name(&ObjectName::from(parts.clone()))?
        }
        other => {
            return Err(EddyError::syntax(format!(
                "syntax error: the first argument of {fname} must name a table, source or view, got {other}: {usage}"
            )))
        }
    };
    let (time_column, processing_time) = match &exprs[1] {
        ast::Expr::Identifier(id) => (normalize_ident(id), false),
        ast::Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("proctime") => {
            ("proctime".to_string(), true)
        }
        other => {
            return Err(EddyError::syntax(format!(
                "syntax error: the second argument of {fname} must be a time column or PROCTIME(), got {other}: {usage}"
            )))
        }
    };
    let args = match fname {
        "TUMBLE" => WindowFnArgs::Tumble {
            size: Box::new(exprs[2].clone()),
        },
        "TUMBLE_ROWS" => WindowFnArgs::Rows {
            count: Box::new(exprs[2].clone()),
        },
        "SESSION" => WindowFnArgs::Session {
            gap: Box::new(exprs[2].clone()),
        },
        "CUMULATE" => WindowFnArgs::Cumulate {
            step: Box::new(exprs[2].clone()),
            size: Box::new(exprs[3].clone()),
        },
        _ => WindowFnArgs::Hop {
            slide: Box::new(exprs[2].clone()),
            size: Box::new(exprs[3].clone()),
        },
    };
    Ok(WindowTvf {
        placeholder: format!("{PLACEHOLDER_PREFIX}{index}"),
        input,
        time_column,
        processing_time,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{parse, Statement};

    #[test]
    fn replaces_tumble_with_placeholder() {
        let Statement::CreateView(mut v) = parse(
            "CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) FROM \
             TUMBLE(Bids, ts, INTERVAL '10' SECOND) AS w GROUP BY window_start",
        )
        .unwrap()
        .remove(0) else {
            panic!()
        };
        let w = extract_windows(&mut v.query).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].input, "bids");
        assert_eq!(w[0].time_column, "ts");
        assert!(v.query.to_string().contains("FROM __eddy_window_0 AS w"));
    }

    #[test]
    fn wrong_arity_is_a_syntax_error() {
        let Statement::CreateView(mut v) =
            parse("CREATE MATERIALIZED VIEW v AS SELECT * FROM HOP(bids, ts, INTERVAL '1' SECOND)")
                .unwrap()
                .remove(0)
        else {
            panic!()
        };
        let e = extract_windows(&mut v.query).unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }
}
