//! Rewrites of PostgreSQL idioms that catalog queries of clients use and DataFusion does not
//! plan, applied to every query after `datafusion-pg-catalog`'s own rewrites:
//!
//! - `ARRAY(subquery)`: `(SELECT array_agg(c) FROM (subquery) AS a(c))`; psql's `\d+` asks
//!   for the options of a TOAST table with one DataFusion cannot plan (a correlated `unnest` in
//!   FROM), and eddy has no TOAST tables, so that one is the empty array;
//! - `x::regtype::text` (psql, pgcli): `format_type(x, NULL)`, the type's name, which is what
//!   PostgreSQL's `regtype` output is (the crate plans `regtype` as the bare oid, so the text
//!   was `20` rather than `bigint`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, VisitMut, VisitorMut,
};

/// Rewrite `stmt` in place.
pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = stmt.visit(&mut Rewriter);
}

struct Rewriter;

fn is_type(data_type: &ast::DataType, names: &[&str]) -> bool {
    let text = data_type.to_string().to_ascii_lowercase();
    let bare = text.strip_prefix("pg_catalog.").unwrap_or(&text);
    names.contains(&bare)
}

fn function(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// An empty `text[]`.
fn empty_text_array() -> Expr {
    Expr::Cast {
        kind: ast::CastKind::DoubleColon,
        expr: Box::new(Expr::value(ast::Value::SingleQuotedString("{}".into()))),
        data_type: ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(ast::DataType::Text),
            None,
        )),
        array: false,
        format: None,
    }
}

/// `(SELECT array_agg(c) FROM (query) AS a(c))`.
fn array_of(query: Box<ast::Query>) -> Option<Expr> {
    let column = Ident::new("__array_element");
    let sql = format!("SELECT array_agg({column}) FROM ({query}) AS __array_subquery({column})");
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql).ok()?;
    match stmts.pop()? {
        ast::Statement::Query(q) => Some(Expr::Subquery(q)),
        _ => None,
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Cast {
                expr: inner,
                data_type,
                ..
            } if is_type(data_type, &["text", "varchar", "character varying", "name"]) => {
                if let Expr::Cast {
                    expr: oid,
                    data_type: reg,
                    ..
                } = inner.as_ref()
                {
                    if is_type(reg, &["regtype"]) {
                        let null = Expr::value(ast::Value::Null);
                        *expr = function("format_type", vec![(**oid).clone(), null]);
                    }
                }
            }
            Expr::Function(f)
                if f.name.to_string().eq_ignore_ascii_case("array")
                    && matches!(f.args, FunctionArguments::Subquery(_)) =>
            {
                if let FunctionArguments::Subquery(q) = &f.args {
                    let text = q.to_string().to_ascii_lowercase();
                    if text.contains("unnest(tc.reloptions)") {
                        // psql's `\d+`: the options of the table's TOAST table. eddy has no
                        // TOAST tables (`reltoastrelid` is 0), so there are none: `{}`.
                        *expr = empty_text_array();
                    } else if let Some(e) = array_of(q.clone()) {
                        *expr = e;
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let mut stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .expect("parse")
            .remove(0);
        rewrite(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn regtype_text_is_the_type_name_and_array_subqueries_aggregate() {
        assert_eq!(
            rewritten("SELECT a.atttypid::regtype::text FROM t a"),
            "SELECT format_type(a.atttypid, NULL) FROM t a"
        );
        assert_eq!(
            rewritten("SELECT x::pg_catalog.regtype::pg_catalog.text"),
            "SELECT format_type(x, NULL)"
        );
        // A regtype compared as an oid stays an oid.
        assert_eq!(
            rewritten("SELECT x::regtype = 20"),
            "SELECT x::regtype = 20"
        );
        assert_eq!(
            rewritten("SELECT array(SELECT 'a' || x FROM u)"),
            "SELECT (SELECT array_agg(__array_element) FROM (SELECT 'a' || x FROM u) AS \
             __array_subquery (__array_element))"
        );
    }
}
