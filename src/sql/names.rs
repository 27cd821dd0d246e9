//! A view's column names as PostgreSQL gives them: an unaliased select item is named by
//! [`super::column_names::column_name`] (`count(*)` is `count`, `t.b` is `b`, `x::int` is `x`),
//! not by DataFusion's rendering of the whole expression (`count(*)`, `t[b]`), which would
//! have to be quoted to be queried.

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr};

use super::column_names::column_name;

/// Alias each unaliased item of `query`'s outermost select lists by PostgreSQL's name for it.
/// A name two items would share stays DataFusion's (a view's columns need distinct names);
/// next to a `*` only compound identifiers are named, as the wildcard's names are unknown here.
pub fn name_columns(query: &mut Query) {
    name_set_expr(&mut query.body);
}

fn name_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let wildcard = select.projection.iter().any(|i| {
                matches!(
                    i,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(_, _)
                )
            });
            let names: Vec<Option<String>> = select
                .projection
                .iter()
                .map(|i| match i {
                    SelectItem::UnnamedExpr(e) => Some(column_name(e)),
                    SelectItem::ExprWithAlias { alias, .. } => {
                        Some(super::statement::normalize_ident(alias))
                    }
                    _ => None,
                })
                .collect();
            let unique = |n: &str| names.iter().flatten().filter(|m| *m == n).count() == 1;
            for (item, name) in select.projection.iter_mut().zip(&names) {
                let SelectItem::UnnamedExpr(expr) = item else {
                    continue;
                };
                let Some(name) = name else { continue };
                let rename = match expr {
                    // DataFusion names a column by itself already.
                    Expr::Identifier(_) => false,
                    Expr::CompoundIdentifier(_) => true,
                    _ => !wildcard && unique(name),
                };
                if rename {
                    let expr = std::mem::replace(expr, Expr::Identifier(Ident::new("")));
                    *item = SelectItem::ExprWithAlias {
                        expr,
                        alias: Ident::with_quote('"', name.as_str()),
                    };
                }
            }
        }
        SetExpr::Query(q) => name_set_expr(&mut q.body),
        SetExpr::SetOperation { left, right, .. } => {
            name_set_expr(left);
            name_set_expr(right);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(sql: &str) -> String {
        crate::sql::rewritten_query(sql, name_columns)
    }

    #[test]
    fn unaliased_items_get_postgresql_names() {
        assert_eq!(
            named("SELECT t.topic_name, \"group\".city AS c, n FROM x"),
            "SELECT t.topic_name AS \"topic_name\", \"group\".city AS c, n FROM x"
        );
        assert_eq!(
            named("SELECT window_start, count(*), max(price)::int, avg(p) AS a FROM x"),
            "SELECT window_start, count(*) AS \"count\", max(price)::INT AS \"max\", \
             avg(p) AS a FROM x"
        );
        // Two items PostgreSQL would both call `count` (it refuses such a view): neither is
        // renamed. Next to `*`, only compound identifiers are.
        assert_eq!(
            named("SELECT count(*), count(x), 1 + 1 FROM x"),
            "SELECT count(*), count(x), 1 + 1 AS \"?column?\" FROM x"
        );
        assert_eq!(
            named("SELECT *, count(*) OVER (), x.y FROM x"),
            "SELECT *, count(*) OVER (), x.y AS \"y\" FROM x"
        );
    }
}
