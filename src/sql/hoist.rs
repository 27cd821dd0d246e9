//! Inputs that are queries of their own become materialized views of their own, named
//! `<view>__<alias>`, and the view reads those:
//! - a join input that aggregates, ranks or joins (Nexmark q7 and q8 join two windowed
//!   aggregates);
//! - the derived table an aggregate reads, when that table aggregates too (an aggregate over an
//!   aggregate: Nexmark q4 averages per-auction maxima, q5 takes the maximum of per-auction counts).
//!
//! Hoisting is recursive: a hoisted query's own inputs become views first
//! (`<view>__<alias>__<alias>`). The hoisted views are ordinary views (they show in `eddy.views`,
//! are checkpointed and restored); they are created before the view, recorded before it, and
//! dropped with it.

use datafusion::sql::sqlparser::ast;

use super::statement::normalize_ident;
use super::{CreateView, EmitMode};
use crate::error::Result;

/// The views to create first, in creation order, and `v` reading them instead of its subqueries.
pub fn hoist_join_inputs(mut v: CreateView) -> Result<(CreateView, Vec<CreateView>)> {
    let mut subs = Vec::new();
    let ast::SetExpr::Select(select) = v.query.body.as_mut() else {
        return Ok((v, subs));
    };
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    let mut hoisted = 0;
    for twj in select.from.iter_mut() {
        if twj.joins.is_empty() && !grouped {
            continue;
        }
        let mut factors: Vec<&mut ast::TableFactor> = vec![&mut twj.relation];
        factors.extend(twj.joins.iter_mut().map(|j| &mut j.relation));
        for f in factors {
            let ast::TableFactor::Derived {
                lateral: false,
                subquery,
                alias,
                ..
            } = f
            else {
                continue;
            };
            if !needs_view(subquery) {
                continue;
            }
            hoisted += 1;
            let suffix = match alias {
                Some(a) => normalize_ident(&a.name),
                None => format!("in{hoisted}"),
            };
            let name = format!("{}__{suffix}", v.name);
            let sql = format!("CREATE MATERIALIZED VIEW {} AS {subquery}", quote(&name));
            let (sub, nested) = hoist_join_inputs(CreateView {
                name: name.clone(),
                if_not_exists: false,
                query: subquery.clone(),
                emit: EmitMode::OnUpdate,
                options: Default::default(),
                sql,
            })?;
            subs.extend(nested);
            subs.push(sub);
            *f = ast::TableFactor::Table {
                name: ast::ObjectName::from(vec![ast::Ident::with_quote('"', name)]),
                alias: alias.clone(),
                args: None,
                with_hints: vec![],
                version: None,
                with_ordinality: false,
                partitions: vec![],
                json_path: None,
                sample: None,
                index_hints: vec![],
            };
        }
    }
    if hoisted > 0 {
        // The stored statement reads the hoisted views (a restart creates them from their own).
        v.sql = canonical_sql(&v);
    }
    Ok((v, subs))
}

/// `CREATE MATERIALIZED VIEW` text for `v` as it is now (options, query, emit).
pub fn canonical_sql(v: &CreateView) -> String {
    let options: Vec<String> = v
        .options
        .iter()
        .map(|(k, val)| format!("{} = '{}'", quote(k), val.replace('\'', "''")))
        .collect();
    format!(
        "CREATE MATERIALIZED VIEW {}{}{} AS {}{}",
        if v.if_not_exists {
            "IF NOT EXISTS "
        } else {
            ""
        },
        quote(&v.name),
        if options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", options.join(", "))
        },
        v.query,
        if v.emit == EmitMode::OnWindowClose {
            " EMIT ON WINDOW CLOSE"
        } else {
            ""
        }
    )
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A query the join cannot take as an input directly.
fn needs_view(q: &ast::Query) -> bool {
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return !matches!(q.body.as_ref(), ast::SetExpr::Query(_));
    };
    let grouped = !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    let ranked = s.projection.iter().any(|item| match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            matches!(e, ast::Expr::Function(f) if f.over.is_some())
        }
        _ => false,
    });
    let nested = s.from.iter().any(|t| {
        !t.joins.is_empty()
            || matches!(&t.relation, ast::TableFactor::Derived { subquery, .. } if needs_view(subquery))
    });
    grouped || ranked || nested || s.distinct.is_some() || s.having.is_some() || s.from.len() > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Statement;

    fn view(sql: &str) -> CreateView {
        match crate::sql::parse(sql).unwrap().remove(0) {
            Statement::CreateView(v) => v,
            other => panic!("not a view: {other:?}"),
        }
    }

    #[test]
    fn aggregates_in_join_inputs_become_views() {
        let v = view(
            "CREATE MATERIALIZED VIEW q8 AS SELECT P.id, P.starttime FROM (
               SELECT id, window_start AS starttime FROM TUMBLE(person, ts, INTERVAL '10' SECOND)
               GROUP BY id, window_start, window_end) P
             JOIN (SELECT seller, window_start AS starttime FROM TUMBLE(auction, ts, INTERVAL '10' SECOND)
               GROUP BY seller, window_start, window_end) A
             ON P.id = A.seller AND P.starttime = A.starttime",
        );
        let (v, subs) = hoist_join_inputs(v).unwrap();
        let names: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["q8__p", "q8__a"]);
        assert!(
            v.sql.contains("FROM \"q8__p\" P JOIN \"q8__a\" A"),
            "{}",
            v.sql
        );
        // Every stored statement parses back.
        for sql in subs.iter().map(|s| &s.sql).chain([&v.sql]) {
            assert!(matches!(
                crate::sql::parse(sql).unwrap().remove(0),
                Statement::CreateView(_)
            ));
        }
        // Plain inputs and a filter-only subquery stay as they are.
        let plain = view(
            "CREATE MATERIALIZED VIEW j AS SELECT * FROM a JOIN (SELECT * FROM b WHERE x > 1) c ON a.k = c.k",
        );
        let sql = plain.sql.clone();
        let (plain, subs) = hoist_join_inputs(plain).unwrap();
        assert!(subs.is_empty());
        assert_eq!(plain.sql, sql);
    }

    #[test]
    fn aggregates_over_aggregates_become_views_recursively() {
        let v = view(
            "CREATE MATERIALIZED VIEW q5 AS SELECT a.auction FROM (
               SELECT auction, count(*) AS num, window_start AS s FROM bid GROUP BY auction, window_start) a
             JOIN (SELECT max(c.num) AS maxn, c.s FROM (
                     SELECT count(*) AS num, window_start AS s FROM bid GROUP BY auction, window_start) c
                   GROUP BY c.s) m
             ON a.s = m.s AND a.num >= m.maxn",
        );
        let (v, subs) = hoist_join_inputs(v).unwrap();
        let names: Vec<&str> = subs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["q5__a", "q5__m__c", "q5__m"]);
        assert!(
            subs[2].sql.contains("FROM \"q5__m__c\" c"),
            "{}",
            subs[2].sql
        );
        assert!(v.sql.contains("JOIN \"q5__m\" m"), "{}", v.sql);
        // An aggregate over a plain derived table, and a Top-N over one, stay in one view.
        for sql in [
            "CREATE MATERIALIZED VIEW t AS SELECT k, count(*) FROM (SELECT k FROM s WHERE x > 1) d GROUP BY k",
            "CREATE MATERIALIZED VIEW t AS SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY x) AS r FROM s) WHERE r <= 1",
        ] {
            let (_, subs) = hoist_join_inputs(view(sql)).unwrap();
            assert!(subs.is_empty(), "{sql}");
        }
    }
}
