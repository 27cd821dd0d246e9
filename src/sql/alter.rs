//! `ALTER MATERIALIZED VIEW name SET (option = value, …)` and
//! `RESET (option, …)`: change a running view's options. What an option
//! change does to the view's state is the engine's business
//! (`engine::replace`); here only the statement's shape is checked.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::statement::{normalize_object_name, parse_options, parser_for};
use super::tokens::{char_position, parser_error, StatementTokens};
use crate::error::{EddyError, Result};

/// `ALTER MATERIALIZED VIEW [IF EXISTS] name SET (…) | RESET (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterView {
    /// The view.
    pub name: String,
    /// `IF EXISTS` was given.
    pub if_exists: bool,
    /// Options to set, keys lower-cased.
    pub set: BTreeMap<String, String>,
    /// Options to remove (back to their defaults), lower-cased.
    pub reset: Vec<String>,
}

/// Parse `ALTER MATERIALIZED VIEW …` (the caller checked the first three words).
pub fn parse_alter_view(sql: &str, st: StatementTokens) -> Result<AlterView> {
    let perr = |e| parser_error(sql, e);
    let mut p = parser_for(st.tokens);
    for _ in 0..3 {
        p.next_token();
    }
    let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = normalize_object_name(&p.parse_object_name(false).map_err(perr)?)?;
    let mut out = AlterView {
        name,
        if_exists,
        set: BTreeMap::new(),
        reset: Vec::new(),
    };
    let action = p.next_token();
    match &action.token {
        Token::Word(w) if w.keyword == Keyword::SET => {
            let o = parse_options(sql, &mut p)?;
            if let Some(k) = o.secrets.keys().next() {
                return Err(EddyError::invalid(format!(
                    "option '{k}' of a materialized view cannot be a secret"
                )));
            }
            out.set = o.options;
        }
        Token::Word(w) if w.keyword == Keyword::RESET => {
            p.expect_token(&Token::LParen).map_err(perr)?;
            loop {
                let mut key = p.parse_identifier().map_err(perr)?.value;
                while p.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&p.parse_identifier().map_err(perr)?.value);
                }
                out.reset.push(key.to_lowercase());
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen).map_err(perr)?;
        }
        Token::Word(w) if w.keyword == Keyword::RENAME || w.keyword == Keyword::OWNER => {
            return Err(EddyError::NotSupported {
                message: format!(
                    "ALTER MATERIALIZED VIEW … {} is not supported",
                    w.value.to_uppercase()
                ),
                hint: Some(
                    "Only SET (…) and RESET (…) of the view's options are. To change its \
                     query, use CREATE OR REPLACE MATERIALIZED VIEW."
                        .into(),
                ),
            })
        }
        other => {
            return Err(EddyError::Syntax {
                message: format!(
                    "syntax error at or near \"{other}\": expected SET (…) or RESET (…)"
                ),
                position: Some(char_position(sql, action.span.start)),
            })
        }
    }
    let end = p.peek_token();
    if end.token != Token::EOF {
        return Err(EddyError::Syntax {
            message: format!("syntax error at or near \"{}\"", end.token),
            position: Some(char_position(sql, end.span.start)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{parse, Statement};

    fn alter(sql: &str) -> Result<AlterView> {
        match parse(sql)?.remove(0) {
            Statement::AlterView(a) => Ok(a),
            other => panic!("not ALTER: {other:?}"),
        }
    }

    #[test]
    fn set_and_reset() {
        let a = alter("ALTER MATERIALIZED VIEW v SET (state_ttl = '1 hour')").unwrap();
        assert_eq!(a.name, "v");
        assert_eq!(a.set["state_ttl"], "1 hour");
        let a =
            alter("alter materialized view if exists \"V\" reset (state_ttl, backfill.x)").unwrap();
        assert!(a.if_exists);
        assert_eq!(a.name, "V");
        assert_eq!(a.reset, vec!["state_ttl", "backfill.x"]);
    }

    #[test]
    fn other_forms_are_refused() {
        let e = alter("ALTER MATERIALIZED VIEW v RENAME TO w").unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        let e = alter("ALTER MATERIALIZED VIEW v DROP x").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
        let e = alter("ALTER MATERIALIZED VIEW v SET (state_ttl = '1 hour') x").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }

    #[test]
    fn or_replace_parses() {
        let Statement::CreateView(v) = parse("CREATE OR REPLACE MATERIALIZED VIEW v AS SELECT 1")
            .unwrap()
            .remove(0)
        else {
            panic!("not a view")
        };
        assert!(v.or_replace && !v.if_not_exists);
        let e =
            parse("CREATE OR REPLACE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1").unwrap_err();
        assert_eq!(e.sqlstate(), "42601");
    }
}
