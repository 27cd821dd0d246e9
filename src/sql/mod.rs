//! SQL front end: tokens → typed [`Statement`]s, and the window TVF rewrite.

pub mod access;
pub mod alter;
pub mod alter_source;
pub mod canonical;
pub mod catalog_queries;
pub mod column_names;
pub mod complexity;
pub mod copy;
pub mod cursor;
pub mod literals;
pub mod names;
pub mod statement;
pub mod subscribe;
pub mod tokens;
pub mod unnest;
pub mod window;

pub use statement::{
    parse, CreateSink, CreateStream, CreateView, EmitMode, ObjectKind, Statement, WatermarkDef,
};

/// `sql` (one query) with `rewrite` applied to it, as text: for the tests of the AST rewrites.
#[cfg(test)]
pub(crate) fn rewritten_query(
    sql: &str,
    rewrite: impl FnOnce(&mut datafusion::sql::sqlparser::ast::Query),
) -> String {
    use datafusion::sql::sqlparser::{ast, parser::Parser};
    let mut stmt = Parser::new(&tokens::DIALECT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statement())
        .expect("parse");
    let ast::Statement::Query(q) = &mut stmt else {
        panic!("not a query: {sql}")
    };
    rewrite(q);
    stmt.to_string()
}
