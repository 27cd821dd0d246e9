//! Rewrites of PostgreSQL idioms that catalog queries of clients use and DataFusion does not
//! plan, applied to every query after `datafusion-pg-catalog`'s own rewrites:
//!
//! - `ARRAY(subquery)`: `(SELECT array_agg(c) FROM (subquery) AS a(c))`; psql's `\d+` asks
//!   for the options of a TOAST table with one DataFusion cannot plan (a correlated `unnest` in
//!   FROM), and eddy has no TOAST tables, so that one is the empty array;
//! - `generate_subscripts(a, 1)` (SQLAlchemy's reflection of keys and indexes, beside
//!   `unnest(a)`): `unnest(range(1, cardinality(a) + 1))`, which DataFusion zips with the
//!   `unnest` as PostgreSQL zips set-returning functions in a select list;
//! - a scalar subquery over `pg_catalog` tables that is not an aggregate (SQLAlchemy's column
//!   reflection: `(SELECT pg_get_expr(…) FROM pg_attrdef WHERE …)`): its value is taken with
//!   `first_value(…)`, since DataFusion plans a correlated scalar subquery only when it is
//!   aggregated. Such a subquery over the catalog yields at most one row; subqueries over other
//!   tables are left alone, so a user's query still hears when one returns more;
//! - a scalar function in FROM (`FROM string_to_array(…) s`, Grafana) as a one-row derived
//!   table, as PostgreSQL reads it;
//! - `x::regtype::text` (psql, pgcli): `format_type(x, NULL)`, the type's name, which is what
//!   PostgreSQL's `regtype` output is (the crate plans `regtype` as the bare oid, so the text
//!   was `20` rather than `bigint`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::tokens::parser_error;
use crate::error::{EddyError, Result};

/// Parse one query, with the rewrites of `datafusion-pg-catalog` (`compat`) where they are
/// safe, and eddy's own:
///
/// - a catalog query (one reading a `pg_…` or `information_schema` relation) is rewritten by the crate,
///   by this module, then by the crate's rules again, which turn a correlated scalar subquery
///   in a select list into NULL: wrong in general, but what DataFusion cannot plan there are
///   the per-column details (defaults, identity, collation) eddy's relations do not have;
/// - any other query with a scalar subquery in a select list is parsed without the crate's
///   rules, so such a subquery is planned by DataFusion or refused, never answered NULL;
/// - every other query goes through the crate's rules (its `= ANY(array)`, array literal and
///   `regclass` rewrites), then this module's.
pub fn parse(compat: &PostgresCompatibilityParser, sql: &str) -> Result<ast::Statement> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let lower = sql.to_ascii_lowercase();
    // The crate replaces some whole client queries before parsing: those it reads as given.
    let Ok(raw) = Parser::parse_sql(&dialect, sql) else {
        let mut stmt = one(compat.parse(sql).map_err(|e| parser_error(sql, e))?)?;
        rewrite(&mut stmt);
        return Ok(stmt);
    };
    let mut stmt = one(raw)?;
    let catalog = reads_catalog(&stmt);
    // `SELECT current_user` keeps its name: aliased before the crate turns the call into
    // `session_user()` (then the text the crate reads is this statement's).
    let named_users = name_user_columns(&mut stmt);
    let sql = &if named_users {
        stmt.to_string()
    } else {
        sql.to_string()
    };
    // The crate replaces Grafana's search-path subquery with '' (from before current_setting
    // existed), which silently matches nothing: such a query gets the crate's rules only.
    let bypass = lower.contains("current_setting('search_path')");
    if catalog && bypass {
        rewrite_catalog(&mut stmt);
        stmt = compat.rewrite(stmt);
    } else if catalog {
        // The crate first (it matches some client queries by their text), then eddy's
        // rewrites, then the crate's rules again over what they made.
        stmt = one(compat.parse(sql).map_err(|e| parser_error(sql, e))?)?;
        rewrite_catalog(&mut stmt);
        stmt = compat.rewrite(stmt);
    } else if !has_select_list_subquery(&stmt) {
        stmt = one(compat.parse(sql).map_err(|e| parser_error(sql, e))?)?;
        rewrite(&mut stmt);
    } else {
        rewrite(&mut stmt);
    }
    Ok(stmt)
}

fn one(mut stmts: Vec<ast::Statement>) -> Result<ast::Statement> {
    if stmts.len() != 1 {
        return Err(EddyError::syntax("expected exactly one query"));
    }
    Ok(stmts.remove(0))
}

/// Whether `name` is a catalog relation: `pg_catalog.…`, `information_schema.…`, or `pg_…`.
fn is_catalog_name(name: &ObjectName) -> bool {
    let first = name.0.first().and_then(|p| p.as_ident());
    first.is_some_and(|id| {
        let n = id.value.to_ascii_lowercase();
        // Quoted or not: Metabase writes "information_schema"."columns".
        n.starts_with("pg_") || (n == "information_schema" && name.0.len() > 1)
    })
}

/// Whether `stmt` reads a catalog relation (psql's, pgcli's, SQLAlchemy's queries do).
fn reads_catalog(stmt: &ast::Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            self.0 |= is_catalog_name(name);
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false);
    let _ = stmt.visit(&mut f);
    f.0
}

/// Whether a select list anywhere in `stmt` holds a scalar subquery.
fn has_select_list_subquery(stmt: &ast::Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
            if let ast::SetExpr::Select(select) = q.body.as_ref() {
                let mut inner = SubqueryFinder(false);
                for item in &select.projection {
                    let _ = item.visit(&mut inner);
                }
                self.0 |= inner.0;
            }
            ControlFlow::Continue(())
        }
    }
    struct SubqueryFinder(bool);
    impl Visitor for SubqueryFinder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if matches!(e, Expr::Subquery(_)) {
                self.0 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut f = Finder(false);
    let _ = stmt.visit(&mut f);
    f.0
}

tokio::task_local! {
    /// The user of the connection whose statement is being planned: `current_user`,
    /// `session_user` and `user` name them (the crate answered `postgres` whoever connected).
    pub static SESSION_USER: String;
}

/// `current_user`, `session_user()` (what the crate makes of `current_user`) or `user()`.
fn is_user_call(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let bare = name.strip_prefix("pg_catalog.").unwrap_or(&name);
            matches!(bare, "session_user" | "current_user" | "user")
                && match &f.args {
                    FunctionArguments::None => true,
                    FunctionArguments::List(l) => l.args.is_empty(),
                    FunctionArguments::Subquery(_) => false,
                }
        }
        Expr::Identifier(i) if i.quote_style.is_none() => {
            matches!(
                i.value.to_ascii_lowercase().as_str(),
                "current_user" | "session_user"
            )
        }
        _ => false,
    }
}

/// `pg_table_is_visible(x)` as whether relation `x` lives in a schema of the search path
/// (`public`, `pg_catalog`): the crate's answered true for every relation, so psql's `\dv` and
/// SQLAlchemy's `get_view_names()` listed `eddy.*` and `information_schema.*` as if unqualified.
fn visible_relation(e: &Expr) -> Option<Expr> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_lowercase();
    if name.trim_start_matches("pg_catalog.") != "pg_table_is_visible" {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(oid))] = list.args.as_slice() else {
        return None;
    };
    let sql = "SELECT __visible_class.oid FROM pg_catalog.pg_class AS __visible_class \
               JOIN pg_catalog.pg_namespace AS __visible_namespace \
               ON __visible_class.relnamespace = __visible_namespace.oid \
               WHERE __visible_namespace.nspname IN ('public', 'pg_catalog')";
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let ast::Statement::Query(subquery) = Parser::parse_sql(&dialect, sql).ok()?.pop()? else {
        return None;
    };
    Some(Expr::InSubquery {
        expr: Box::new(oid.clone()),
        subquery,
        negated: false,
    })
}

/// Aliases each `current_user` / `session_user` / `user` standing alone in a select list with
/// its own name, as PostgreSQL names that column; whether there was one.
fn name_user_columns(stmt: &mut ast::Statement) -> bool {
    struct Namer(bool);
    impl VisitorMut for Namer {
        type Break = ();
        fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<()> {
            let ast::SetExpr::Select(select) = q.body.as_mut() else {
                return ControlFlow::Continue(());
            };
            for item in &mut select.projection {
                let ast::SelectItem::UnnamedExpr(e) = item else {
                    continue;
                };
                if !is_user_call(e) {
                    continue;
                }
                let name = match e {
                    Expr::Identifier(i) => i.value.to_ascii_lowercase(),
                    Expr::Function(f) => f.name.to_string().to_ascii_lowercase(),
                    _ => continue,
                };
                let name = name.trim_start_matches("pg_catalog.").to_string();
                *item = ast::SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias: Ident::new(name),
                };
                self.0 = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut namer = Namer(false);
    let _ = stmt.visit(&mut namer);
    namer.0
}

/// Rewrite `stmt` in place.
pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = stmt.visit(&mut Rewriter { catalog: false });
}

/// Rewrite a catalog query in place: [`rewrite`], and a one-column set-returning function
/// aliased `AS i` names its column `i`, as in PostgreSQL (elsewhere DataFusion's `value`
/// stays, which eddy's queries have used).
fn rewrite_catalog(stmt: &mut ast::Statement) {
    let _ = stmt.visit(&mut Rewriter { catalog: true });
}

struct Rewriter {
    /// The query reads the catalog (see [`rewrite_catalog`]).
    catalog: bool,
}

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

/// `generate_subscripts(a, 1)` as `unnest(range(1, cardinality(a) + 1))`; other dimensions and
/// the reversed form are left as they are.
fn subscripts(f: &ast::Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [array, dim] = args.as_slice() else {
        return None;
    };
    // The dimension may be a parameter (`$1`, `$1::INTEGER`): eddy's arrays have one
    // dimension, so any other gives no rows.
    let literal_one = dim.to_string() == "1";
    if !literal_one && matches!(dim, Expr::Value(_)) {
        return None;
    }
    let one = || Expr::value(ast::Value::Number("1".into(), false));
    let length = Expr::Cast {
        kind: ast::CastKind::Cast,
        expr: Box::new(function("cardinality", vec![(*array).clone()])),
        data_type: ast::DataType::BigInt(None),
        array: false,
        format: None,
    };
    let stop = Expr::BinaryOp {
        left: Box::new(length),
        op: ast::BinaryOperator::Plus,
        right: Box::new(one()),
    };
    let subscripts = function("range", vec![one(), stop]);
    if literal_one {
        return Some(function("unnest", vec![subscripts]));
    }
    let when_first = Expr::Case {
        case_token: ast::helpers::attached_token::AttachedToken::empty(),
        end_token: ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![ast::CaseWhen {
            condition: Expr::BinaryOp {
                left: Box::new((*dim).clone()),
                op: ast::BinaryOperator::Eq,
                right: Box::new(one()),
            },
            result: subscripts,
        }],
        else_result: None,
    };
    Some(function("unnest", vec![when_first]))
}

/// Whether every table `select` reads is a catalog table (`pg_catalog.…` or `pg_…`).
fn reads_only_the_catalog(select: &ast::Select) -> bool {
    fn catalog_factor(f: &ast::TableFactor) -> bool {
        matches!(f, ast::TableFactor::Table { name, .. } if is_catalog_name(name))
    }
    !select.from.is_empty()
        && select.from.iter().all(|t| {
            catalog_factor(&t.relation) && t.joins.iter().all(|j| catalog_factor(&j.relation))
        })
}

/// `(SELECT x FROM pg_… WHERE …)` becomes `(SELECT first_value(x) FROM pg_… WHERE …)`.
fn aggregate_catalog_subquery(q: &mut ast::Query) {
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return;
    };
    if select.projection.len() != 1
        || !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        || !reads_only_the_catalog(select)
    {
        return;
    }
    let expr = match &mut select.projection[0] {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return,
    };
    if let Expr::Function(f) = expr {
        let name = f.name.to_string().to_ascii_lowercase();
        if [
            "count",
            "max",
            "min",
            "sum",
            "avg",
            "array_agg",
            "string_agg",
            "bool_and",
            "bool_or",
            "first_value",
        ]
        .contains(&name.as_str())
        {
            return;
        }
    }
    *expr = function("first_value", vec![expr.clone()]);
}

/// `CASE WHEN c THEN (SELECT first_value(x) FROM pg_… WHERE w) END` as
/// `(SELECT first_value(x) FROM pg_… WHERE (c) AND (w))`: the same value (no row, so NULL,
/// when `c` does not hold), in a form DataFusion decorrelates (it does not plan a correlated
/// subquery inside CASE).
fn condition_into_subquery(when: &ast::CaseWhen) -> Option<Expr> {
    let Expr::Subquery(q) = &when.result else {
        return None;
    };
    let mut q = q.clone();
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    let aggregated = matches!(
        &select.projection[..],
        [ast::SelectItem::UnnamedExpr(Expr::Function(f))
            | ast::SelectItem::ExprWithAlias { expr: Expr::Function(f), .. }]
            if f.name.to_string().eq_ignore_ascii_case("first_value")
    );
    if !aggregated || !reads_only_the_catalog(select) {
        return None;
    }
    let condition = Expr::Nested(Box::new(when.condition.clone()));
    select.selection = Some(match select.selection.take() {
        Some(w) => Expr::BinaryOp {
            left: Box::new(condition),
            op: ast::BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(w))),
        },
        None => condition,
    });
    Some(Expr::Subquery(q))
}

/// A `CASE WHEN x IN (subquery)` condition as `array_has((SELECT array_agg(…) FROM subquery),
/// x)`, which DataFusion plans in a select list and an `ORDER BY` (an `IN (subquery)` it plans
/// only in a filter; Grafana's table list sorts by one). The same where it stands: a NULL `x`
/// or an empty subquery make the condition NULL or false, and WHEN takes neither.
fn in_subquery_as_array(condition: &mut Expr) {
    let Expr::InSubquery {
        expr,
        subquery,
        negated: false,
    } = condition
    else {
        return;
    };
    if let Some(array) = array_of(subquery.clone()) {
        *condition = function("array_has", vec![array, (**expr).clone()]);
    }
}

/// `col_description(…)`, `obj_description(…)`, `shobj_description(…)` (any schema prefix).
fn is_comment_lookup(f: &ast::Function) -> bool {
    let name = f.name.to_string().to_ascii_lowercase();
    let name = name.rsplit('.').next().unwrap_or(&name);
    matches!(
        name,
        "col_description" | "obj_description" | "shobj_description"
    )
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

/// Functions that return one value, which PostgreSQL lets a FROM clause read as a one-row table
/// (Grafana: `FROM …, string_to_array(current_setting('search_path'), ',') s`).
const SCALAR_FUNCTIONS_IN_FROM: [&str; 3] =
    ["string_to_array", "current_schemas", "current_setting"];

/// `generate_series(…) AS i` / `unnest(…) AS i` names its one column `i` (DataFusion's is
/// `value`).
fn name_function_column(factor: &mut ast::TableFactor) {
    let ast::TableFactor::Table {
        name,
        alias: Some(alias),
        args: Some(_),
        ..
    } = factor
    else {
        return;
    };
    let fname = name.to_string().to_ascii_lowercase();
    if ["generate_series", "unnest"].contains(&fname.trim_start_matches("pg_catalog."))
        && alias.columns.is_empty()
    {
        alias.columns = vec![ast::TableAliasColumnDef::from_name(
            alias.name.value.clone(),
        )];
    }
}

/// `f(args) [AS] s` in FROM, for a scalar `f`, as `(SELECT f(args) AS s) AS s`.
fn scalar_function_as_table(factor: &mut ast::TableFactor) {
    let ast::TableFactor::Table {
        name,
        alias,
        args: Some(args),
        ..
    } = factor
    else {
        return;
    };
    let fname = name.to_string().to_ascii_lowercase();
    if !SCALAR_FUNCTIONS_IN_FROM.contains(&fname.trim_start_matches("pg_catalog.")) {
        return;
    }
    let column = alias
        .as_ref()
        .map(|a| a.name.value.clone())
        .unwrap_or_else(|| fname.clone());
    let args: Vec<String> = args.args.iter().map(|a| a.to_string()).collect();
    let sql = format!(
        "SELECT {fname}({}) AS {}",
        args.join(", "),
        Ident::with_quote('"', column.clone())
    );
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let Some(ast::Statement::Query(subquery)) = Parser::parse_sql(&dialect, &sql)
        .ok()
        .and_then(|mut v| v.pop())
    else {
        return;
    };
    *factor = ast::TableFactor::Derived {
        lateral: false,
        subquery,
        alias: Some(ast::TableAlias {
            explicit: true,
            name: Ident::with_quote('"', column),
            columns: vec![],
            at: None,
        }),
        sample: None,
    };
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        if self.catalog {
            name_function_column(factor);
        }
        scalar_function_as_table(factor);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(visible) = visible_relation(expr) {
            *expr = visible;
            return ControlFlow::Continue(());
        }
        if is_user_call(expr) {
            if let Ok(user) = SESSION_USER.try_with(|u| u.clone()) {
                *expr = Expr::value(ast::Value::SingleQuotedString(user));
                return ControlFlow::Continue(());
            }
        }
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
            Expr::Subquery(q) => aggregate_catalog_subquery(q),
            Expr::Case {
                operand: None,
                conditions,
                ..
            } if self.catalog
                && conditions
                    .iter()
                    .any(|w| matches!(w.condition, Expr::InSubquery { negated: false, .. })) =>
            {
                for when in conditions.iter_mut() {
                    in_subquery_as_array(&mut when.condition);
                }
            }
            Expr::Case {
                operand: None,
                conditions,
                else_result,
                ..
            } if conditions.len() == 1
                && else_result
                    .as_deref()
                    .is_none_or(|e| matches!(e, Expr::Value(v) if v.value == ast::Value::Null)) =>
            {
                if let Some(e) = condition_into_subquery(&conditions[0]) {
                    *expr = e;
                }
            }
            // eddy keeps no comments: these are NULL whatever they are given, so a name cast
            // to regclass in their arguments is not resolved (Metabase passes
            // `CAST(format(…) AS regclass)` of a computed name, which eddy cannot resolve).
            Expr::Function(f) if self.catalog && is_comment_lookup(f) => {
                let _ = ast::visit_expressions_mut(&mut f.args, |e| {
                    if matches!(e, Expr::Cast { data_type, .. } if is_type(data_type, &["regclass"]))
                    {
                        *e = Expr::value(ast::Value::Null);
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
            Expr::Function(f)
                if f.name
                    .to_string()
                    .eq_ignore_ascii_case("generate_subscripts") =>
            {
                if let Some(e) = subscripts(f) {
                    *expr = e;
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
            rewritten(
                "SELECT CASE WHEN a.h THEN (SELECT d.x FROM pg_attrdef d WHERE d.n = a.n) \
                 ELSE NULL END FROM pg_attribute a"
            ),
            "SELECT (SELECT first_value(d.x) FROM pg_attrdef d WHERE (a.h) AND (d.n = a.n)) \
             FROM pg_attribute a"
        );
        // Over a user's table a subquery stays as written: it must still fail on two rows.
        assert_eq!(
            rewritten("SELECT (SELECT x FROM t WHERE t.k = u.k) FROM u"),
            "SELECT (SELECT x FROM t WHERE t.k = u.k) FROM u"
        );
        assert_eq!(
            rewritten("SELECT unnest(k), generate_subscripts(k, 1) FROM i"),
            "SELECT unnest(k), unnest(range(1, CAST(cardinality(k) AS BIGINT) + 1)) FROM i"
        );
        assert_eq!(
            rewritten("SELECT array(SELECT 'a' || x FROM u)"),
            "SELECT (SELECT array_agg(__array_element) FROM (SELECT 'a' || x FROM u) AS \
             __array_subquery (__array_element))"
        );
    }

    #[test]
    fn in_subquery_conditions_of_catalog_queries_read_an_array() {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let catalog = |sql: &str| {
            let mut stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
                .expect("parse")
                .remove(0);
            rewrite_catalog(&mut stmt);
            stmt.to_string()
        };
        assert_eq!(
            catalog(
                "SELECT t FROM pg_tables ORDER BY CASE WHEN s IN (SELECT 'public') THEN 0 \
                 ELSE 1 END"
            ),
            "SELECT t FROM pg_tables ORDER BY CASE WHEN array_has((SELECT \
             array_agg(__array_element) FROM (SELECT 'public') AS __array_subquery \
             (__array_element)), s) THEN 0 ELSE 1 END"
        );
        // NOT IN differs on NULLs, and outside a catalog query nothing changes.
        let not_in = "SELECT CASE WHEN s NOT IN (SELECT 'a') THEN 0 END FROM pg_tables";
        assert_eq!(catalog(not_in), not_in);
        let user = "SELECT CASE WHEN s IN (SELECT 'a') THEN 0 END FROM t";
        assert_eq!(rewritten(user), user);
    }

    #[test]
    fn comment_lookups_resolve_no_names_and_quoted_catalog_names_count() {
        let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
        let stmt = |sql: &str| {
            datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql)
                .expect("parse")
                .remove(0)
        };
        // Metabase's field sync, quoted: a catalog query.
        let mut q = stmt(
            "SELECT COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', c.s, c.t) AS REGCLASS) AS OID), 1) \
             FROM \"information_schema\".\"columns\" AS c",
        );
        assert!(reads_catalog(&q));
        rewrite_catalog(&mut q);
        assert_eq!(
            q.to_string(),
            "SELECT COL_DESCRIPTION(CAST(NULL AS OID), 1) FROM \"information_schema\".\"columns\" \
             AS c"
        );
        assert!(!reads_catalog(&stmt("SELECT * FROM information_schema")));
        assert!(!reads_catalog(&stmt("SELECT * FROM \"pg\".x")));
    }
}
