//! `DECLARE name CURSOR FOR query`, `FETCH [FORWARD] [n | ALL | NEXT] [FROM] name` and
//! `CLOSE name | ALL`, as PostgreSQL reads them (psycopg's server-side cursors send these).
//! eddy's cursors scan forward only: SCROLL, and fetching backward or by position, are
//! refused with PostgreSQL's errors.

use datafusion::sql::sqlparser::ast;

use super::statement::normalize_ident;
use crate::error::{EddyError, Result};

/// How many rows a FETCH takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchCount {
    /// At most this many.
    Rows(u64),
    /// Every row left.
    All,
}

/// What a cursor reads.
#[derive(Debug, Clone)]
pub enum CursorQuery {
    /// A query, as SQL text: FETCH takes its rows until they run out.
    Sql(String),
    /// A subscription: FETCH waits for a first change, then takes those already there.
    Subscribe(super::subscribe::Subscribe),
}

/// A classified cursor statement.
#[derive(Debug, Clone)]
pub enum CursorStatement {
    /// `DECLARE name [BINARY] [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`.
    Declare {
        /// Cursor name (normalised).
        name: String,
        /// `WITH HOLD`: the cursor outlives the transaction block.
        hold: bool,
        /// What it reads.
        query: CursorQuery,
    },
    /// `FETCH …`.
    Fetch {
        /// Cursor name.
        name: String,
        /// How many rows.
        count: FetchCount,
        /// `WITH (timeout = …)`: how long a FETCH from a subscription waits for a first row
        /// (none: until one comes).
        timeout: Option<std::time::Duration>,
    },
    /// `CLOSE name` (`None`: `CLOSE ALL`).
    Close(Option<String>),
}

fn backward() -> EddyError {
    EddyError::Data {
        code: "55000",
        message: "cursor can only scan forward".into(),
    }
}

fn count_of(v: &ast::ValueWithSpan) -> Result<i64> {
    match &v.value {
        ast::Value::Number(n, _) => n
            .parse::<i64>()
            .map_err(|_| EddyError::syntax(format!("FETCH count must be an integer, not {n}"))),
        other => Err(EddyError::syntax(format!(
            "FETCH count must be an integer, not {other}"
        ))),
    }
}

/// Forward by `n` (negative: backward, refused).
fn forward(n: i64) -> Result<FetchCount> {
    u64::try_from(n)
        .map(FetchCount::Rows)
        .map_err(|_| backward())
}

/// Classify `DECLARE`, `FETCH` or `CLOSE`; `None` for any other statement.
pub fn classify_cursor(stmt: &ast::Statement) -> Result<Option<CursorStatement>> {
    use ast::FetchDirection as D;
    Ok(Some(match stmt {
        ast::Statement::Declare { stmts } => {
            let [d] = stmts.as_slice() else {
                return Err(EddyError::syntax("DECLARE one cursor at a time"));
            };
            let (Some(query), [name]) = (&d.for_query, d.names.as_slice()) else {
                return Err(EddyError::not_supported(
                    "DECLARE of variables is not supported: eddy declares cursors \
                     (DECLARE name CURSOR FOR query)",
                ));
            };
            if d.scroll == Some(true) {
                return Err(EddyError::NotSupported {
                    message: "SCROLL cursors are not supported".into(),
                    hint: Some("Declare the cursor NO SCROLL: eddy's cursors scan forward.".into()),
                });
            }
            CursorStatement::Declare {
                name: normalize_ident(name),
                hold: d.hold == Some(true),
                query: CursorQuery::Sql(query.to_string()),
            }
        }
        ast::Statement::Fetch {
            name,
            direction,
            into,
            ..
        } => {
            if into.is_some() {
                return Err(EddyError::not_supported("FETCH … INTO is not supported"));
            }
            let count = match direction {
                D::Next => FetchCount::Rows(1),
                D::All | D::ForwardAll => FetchCount::All,
                D::Forward { limit: None } => FetchCount::Rows(1),
                D::Count { limit } | D::Forward { limit: Some(limit) } => {
                    forward(count_of(limit)?)?
                }
                D::Relative { limit } => forward(count_of(limit)?)?,
                D::Prior
                | D::First
                | D::Last
                | D::Absolute { .. }
                | D::Backward { .. }
                | D::BackwardAll => return Err(backward()),
            };
            CursorStatement::Fetch {
                name: normalize_ident(name),
                count,
                timeout: None,
            }
        }
        ast::Statement::Close { cursor } => CursorStatement::Close(match cursor {
            ast::CloseCursor::All => None,
            ast::CloseCursor::Specific { name } => Some(normalize_ident(name)),
        }),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(sql: &str) -> Result<CursorStatement> {
        let stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .map_err(|e| EddyError::syntax(e.to_string()))?;
        Ok(classify_cursor(&stmts[0])?.expect("a cursor statement"))
    }

    #[test]
    fn psycopg_cursor_statements_read_as_postgres_reads_them() {
        let CursorStatement::Declare {
            name,
            hold,
            query: CursorQuery::Sql(query),
        } = cursor("DECLARE \"My\" CURSOR WITHOUT HOLD FOR SELECT 1").unwrap()
        else {
            panic!("declare")
        };
        assert_eq!(
            (name.as_str(), hold, query.as_str()),
            ("My", false, "SELECT 1")
        );
        let fetch = |sql| match cursor(sql).unwrap() {
            CursorStatement::Fetch { name, count, .. } => (name, count),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fetch("FETCH FORWARD 5 FROM c"),
            ("c".into(), FetchCount::Rows(5))
        );
        assert_eq!(fetch("FETCH ALL FROM c"), ("c".into(), FetchCount::All));
        assert_eq!(
            fetch("FETCH NEXT FROM c"),
            ("c".into(), FetchCount::Rows(1))
        );
        assert_eq!(fetch("FETCH 3 IN c").1, FetchCount::Rows(3));
        assert_eq!(
            cursor("FETCH PRIOR FROM c").unwrap_err().sqlstate(),
            "55000"
        );
        assert_eq!(
            cursor("FETCH BACKWARD 2 FROM c").unwrap_err().sqlstate(),
            "55000"
        );
        assert_eq!(
            cursor("DECLARE c SCROLL CURSOR FOR SELECT 1")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert!(matches!(
            cursor("CLOSE ALL").unwrap(),
            CursorStatement::Close(None)
        ));
        assert!(matches!(
            cursor("CLOSE c").unwrap(),
            CursorStatement::Close(Some(n)) if n == "c"
        ));
    }
}
