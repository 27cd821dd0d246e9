//! Lateral `UNNEST` in `FROM`:
//!
//! ```sql
//! SELECT t.topic_name, count(*) FROM rsvps, UNNEST("group".group_topics) AS t GROUP BY 1
//! ```
//!
//! DataFusion plans `unnest(…)` in a projection but not as a lateral table
//! function over a column of the relation before it. This rewrite turns
//! `FROM r, UNNEST(e) AS t` (or `FROM r CROSS JOIN UNNEST(e) AS t`) into
//! `FROM (SELECT *, unnest(e) AS t FROM r) AS r`: one row per element, the
//! element in column `t` (so `t.field` reads a field of a struct element).
//! Rows whose list is NULL or empty produce no rows, as in Postgres.

use datafusion::sql::sqlparser::ast::{
    Join, JoinOperator, Query, SetExpr, TableAlias, TableFactor, TableWithJoins,
};
use datafusion::sql::sqlparser::parser::Parser;

use super::tokens::DIALECT;
use crate::error::{EddyError, Result};

/// Rewrite every lateral `UNNEST` in `query`'s `FROM` clauses.
pub fn rewrite_lateral_unnest(query: &mut Query) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            rewrite_lateral_unnest(&mut cte.query)?;
        }
    }
    rewrite_set_expr(&mut query.body)
}

fn rewrite_set_expr(body: &mut SetExpr) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for twj in &mut select.from {
                for f in std::iter::once(&mut twj.relation)
                    .chain(twj.joins.iter_mut().map(|j| &mut j.relation))
                {
                    if let TableFactor::Derived { subquery, .. } = f {
                        rewrite_lateral_unnest(subquery)?;
                    }
                }
            }
            let from = std::mem::take(&mut select.from);
            select.from = rewrite_from(from)?;
            Ok(())
        }
        SetExpr::Query(q) => rewrite_lateral_unnest(q),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left)?;
            rewrite_set_expr(right)
        }
        _ => Ok(()),
    }
}

fn is_unnest(f: &TableFactor) -> bool {
    matches!(f, TableFactor::UNNEST { .. })
}

/// `[r, UNNEST(e) AS t]` or `[r CROSS JOIN UNNEST(e) AS t]` → `[(SELECT *, unnest(e) AS t FROM r) AS r]`.
fn rewrite_from(mut from: Vec<TableWithJoins>) -> Result<Vec<TableWithJoins>> {
    let (base, unnest) = match from.as_mut_slice() {
        [a, b] if a.joins.is_empty() && b.joins.is_empty() && is_unnest(&b.relation) => {
            let b = from.pop().map(|b| b.relation);
            let a = from.pop().map(|a| a.relation);
            (a, b)
        }
        [a] if a.joins.len() == 1
            && is_unnest(&a.joins[0].relation)
            && matches!(a.joins[0].join_operator, JoinOperator::CrossJoin(_)) =>
        {
            match from.pop() {
                Some(mut twj) => {
                    let Join { relation, .. } = twj.joins.remove(0);
                    (Some(twj.relation), Some(relation))
                }
                None => (None, None),
            }
        }
        _ => return Ok(from),
    };
    let (
        Some(base),
        Some(TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset,
            with_ordinality,
            ..
        }),
    ) = (base, unnest)
    else {
        return Err(EddyError::Internal(
            "lateral UNNEST rewrite lost its parts".into(),
        ));
    };
    if with_offset || with_ordinality || array_exprs.len() != 1 {
        return Err(EddyError::not_supported(
            "UNNEST in FROM takes one array, without WITH OFFSET / WITH ORDINALITY",
        ));
    }
    let column = match &alias {
        Some(TableAlias { name, columns, .. }) if columns.is_empty() => name.clone(),
        Some(_) => return Err(EddyError::not_supported(
            "UNNEST(…) AS t(column) is not supported; write UNNEST(…) AS t and use t (or t.field)",
        )),
        None => {
            return Err(EddyError::not_supported(
                "UNNEST in FROM needs an alias: UNNEST(…) AS t",
            ))
        }
    };
    let outer_alias = match &base {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            Some(a.name.clone())
        }
        TableFactor::Table {
            name, args: None, ..
        } => name.0.last().and_then(|p| p.as_ident()).cloned(),
        _ => None,
    };
    let sql = format!(
        "SELECT *, unnest({}) AS {column} FROM {base}",
        array_exprs[0]
    );
    let subquery = Parser::new(&DIALECT)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_query())
        .map_err(|e| EddyError::Internal(format!("lateral UNNEST rewrite: {e}")))?;
    Ok(vec![TableWithJoins {
        relation: TableFactor::Derived {
            lateral: false,
            subquery,
            alias: outer_alias.map(|name| TableAlias {
                explicit: true,
                name,
                columns: vec![],
                at: None,
            }),
            sample: None,
        },
        joins: vec![],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> String {
        crate::sql::rewritten_query(sql, |q| rewrite_lateral_unnest(q).unwrap())
    }

    #[test]
    fn comma_and_cross_join_forms() {
        let want = "SELECT t.x FROM (SELECT *, unnest(r.xs) AS t FROM r) AS r";
        assert_eq!(rewrite("SELECT t.x FROM r, UNNEST(r.xs) AS t"), want);
        assert_eq!(
            rewrite("SELECT t.x FROM r CROSS JOIN UNNEST(r.xs) AS t"),
            want
        );
        assert_eq!(
            rewrite("SELECT 1 FROM HOP(s, ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE), UNNEST(a) AS t"),
            "SELECT 1 FROM (SELECT *, unnest(a) AS t FROM HOP(s, ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE))"
        );
        assert_eq!(rewrite("SELECT 1 FROM a, b"), "SELECT 1 FROM a, b");
    }
}
