//! `ALTER SOURCE [IF EXISTS] s ADD [COLUMN] [IF NOT EXISTS] col type [NULL]`: a
//! production topic's records gained a field. Here the statement's shape is
//! checked and the stored `CREATE SOURCE` text is given the new column; what
//! the running source and its views do is the engine's business
//! (`engine::alter_source`).

use datafusion::sql::sqlparser::ast::{ColumnDef, ColumnOption};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::statement::normalize_object_name;
use super::tokens::{
    byte_offset, char_position, matching_paren, parser_error, significant, split_statements,
    StatementTokens,
};
use crate::error::{EddyError, Result};

/// `ALTER SOURCE … ADD COLUMN …`.
#[derive(Debug, Clone)]
pub struct AlterSource {
    /// The source.
    pub name: String,
    /// `IF EXISTS` was given: a missing source is not an error.
    pub if_exists: bool,
    /// `IF NOT EXISTS` was given: a column of that name already there is not an error.
    pub if_not_exists: bool,
    /// The new column.
    pub column: ColumnDef,
    /// The column definition as written, for the stored `CREATE SOURCE` text.
    pub column_sql: String,
}

/// The hint for column options an added column cannot have.
const NULLABLE_HINT: &str = "Records the source delivered before the column was added lack \
                             it: an added column is nullable and has no constraints. Check its \
                             values in the views that read it.";

/// Parse `ALTER SOURCE …` (the caller checked the first two words).
pub fn parse_alter_source(sql: &str, st: StatementTokens) -> Result<AlterSource> {
    let perr = |e| parser_error(sql, e);
    let last = significant(&st.tokens)
        .last()
        .map(|&i| st.tokens[i].span.end);
    // Column types such as `STRUCT<a INT>` parse in the generic dialect, as in CREATE SOURCE.
    let mut p = Parser::new(&datafusion::sql::sqlparser::dialect::GenericDialect {})
        .with_tokens_with_locations(st.tokens);
    for _ in 0..2 {
        p.next_token();
    }
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
    let action = p.next_token();
    match &action.token {
        Token::Word(w) if w.keyword == Keyword::ADD => {}
        Token::Word(w)
            if matches!(
                w.keyword,
                Keyword::DROP | Keyword::RENAME | Keyword::ALTER | Keyword::SET | Keyword::OWNER
            ) =>
        {
            return Err(EddyError::NotSupported {
                message: format!("ALTER SOURCE … {} is not supported", w.value.to_uppercase()),
                hint: Some(
                    "Only ADD COLUMN is. To change a source otherwise, drop it and create it \
                     again."
                        .into(),
                ),
            })
        }
        other => {
            return Err(EddyError::Syntax {
                message: format!("syntax error at or near \"{other}\": expected ADD COLUMN"),
                position: Some(char_position(sql, action.span.start)),
            })
        }
    }
    let _ = p.parse_keyword(Keyword::COLUMN);
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let start = p.peek_token().span.start;
    let mut column = p.parse_column_def().map_err(perr)?;
    let end = p.peek_token();
    if end.token != Token::EOF {
        return Err(EddyError::Syntax {
            message: format!("syntax error at or near \"{}\"", end.token),
            position: Some(char_position(sql, end.span.start)),
        });
    }
    for o in &column.options {
        let what = match &o.option {
            ColumnOption::Null => continue,
            ColumnOption::NotNull => "NOT NULL".to_string(),
            ColumnOption::Check(_) => "a CHECK constraint".to_string(),
            ColumnOption::PrimaryKey(_) => "PRIMARY KEY".to_string(),
            other => other.to_string(),
        };
        return Err(EddyError::NotSupported {
            message: format!(
                "a column added to source \"{name}\" cannot have {what}: it is nullable"
            ),
            hint: Some(NULLABLE_HINT.into()),
        });
    }
    column.name = datafusion::sql::sqlparser::ast::Ident::new(super::statement::normalize_ident(
        &column.name,
    ));
    let column_sql = match last {
        Some(end) => sql
            .get(byte_offset(sql, start)..byte_offset(sql, end))
            .map(str::to_string),
        None => None,
    }
    .unwrap_or_else(|| column.to_string());
    Ok(AlterSource {
        name,
        if_exists,
        if_not_exists,
        column,
        column_sql,
    })
}

/// `sql`, a `CREATE SOURCE` statement, with `column` (a column definition's
/// text) added at the end of its column list and the rest exactly as written.
pub fn with_column(sql: &str, column: &str) -> Result<String> {
    let bad = || EddyError::Internal(format!("not a CREATE SOURCE with columns: {sql}"));
    let st = split_statements(sql)?.into_iter().next().ok_or_else(bad)?;
    let tokens = &st.tokens;
    // The name is words, dots and quoted identifiers: the first `(` opens the column list.
    let open = tokens
        .iter()
        .position(|t| t.token == Token::LParen)
        .ok_or_else(bad)?;
    let close = matching_paren(tokens, open).ok_or_else(bad)?;
    let last = significant(&tokens[..close])
        .last()
        .copied()
        .filter(|&i| i > open)
        .ok_or_else(bad)?;
    let at = byte_offset(sql, tokens[last].span.end);
    Ok(format!(
        "{}, {column}{}",
        sql.get(..at).ok_or_else(bad)?,
        sql.get(at..).ok_or_else(bad)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{parse, Statement};

    fn alter(sql: &str) -> Result<AlterSource> {
        match parse(sql)?.remove(0) {
            Statement::AlterSource(a) => Ok(a),
            other => panic!("not ALTER SOURCE: {other:?}"),
        }
    }

    #[test]
    fn add_column_forms() {
        let a = alter("ALTER SOURCE s ADD COLUMN extra BIGINT").unwrap();
        assert_eq!(
            (a.name.as_str(), a.if_exists, a.if_not_exists),
            ("s", false, false)
        );
        assert_eq!(a.column.name.value, "extra");
        assert_eq!(a.column_sql, "extra BIGINT");
        let a =
            alter("alter source if exists \"S\" add if not exists Extra varchar null;").unwrap();
        assert!(a.if_exists && a.if_not_exists);
        assert_eq!(a.name, "S");
        assert_eq!(a.column.name.value, "extra");
        assert_eq!(a.column_sql, "Extra varchar null");
    }

    #[test]
    fn constraints_and_other_actions_are_refused() {
        for sql in [
            "ALTER SOURCE s ADD COLUMN x INT NOT NULL",
            "ALTER SOURCE s ADD x INT PRIMARY KEY",
            "ALTER SOURCE s ADD x INT CHECK (x > 0)",
            "ALTER SOURCE s DROP COLUMN x",
        ] {
            assert_eq!(alter(sql).unwrap_err().sqlstate(), "0A000", "{sql}");
        }
        assert_eq!(
            alter("ALTER SOURCE s ADD COLUMN x INT y")
                .unwrap_err()
                .sqlstate(),
            "42601"
        );
        assert_eq!(
            alter("ALTER SOURCE s FROB").unwrap_err().sqlstate(),
            "42601"
        );
    }

    #[test]
    fn with_column_keeps_the_rest() {
        let sql = "CREATE SOURCE \"a(b\" (k VARCHAR, v BIGINT -- note\n) INCLUDE offset \
                   WITH (connector = 'kafka', topic = 't')";
        assert_eq!(
            with_column(sql, "extra BIGINT").unwrap(),
            "CREATE SOURCE \"a(b\" (k VARCHAR, v BIGINT, extra BIGINT -- note\n) INCLUDE offset \
             WITH (connector = 'kafka', topic = 't')"
        );
        let sql = "create source s (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
                   with (connector = 'file')";
        assert_eq!(
            with_column(sql, "x INT").unwrap(),
            "create source s (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND, x INT) \
             with (connector = 'file')"
        );
    }
}
