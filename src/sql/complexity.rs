//! A bound on how deeply a statement's expressions can nest, checked on its
//! tokens before anything is parsed.
//!
//! Parsing, planning, optimizing, evaluating and even dropping an expression
//! tree all recurse. `SELECT 1+1+…+1` with 50,000 terms parses (sqlparser
//! folds a chain of binary operators in a loop) into a tree 50,000 levels
//! deep, and the first recursive walk over it overflows the thread's stack,
//! which aborts the whole process. Counting on tokens catches that before a
//! tree exists, so nothing deep is ever built or dropped.
//!
//! The estimate is an upper bound on the depth of the tree: for each open
//! bracket level, the operators seen since the level opened or since its
//! last comma, plus the number of open levels. Operators are symbols
//! (`+`, `=`, `||`, `::`, …) and the words that combine operands (`AND`,
//! `OR`, `NOT`, `IS`, `LIKE`, `BETWEEN`, `UNION`, `JOIN`, …). Lists (`IN
//! (…)`, `VALUES`, select lists, arguments) reset at each comma, and a
//! `CASE` (a level of its own, closed by `END`) at each `WHEN`, `THEN` and
//! `ELSE`, so long lists are fine; only long chains count.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::tokens::{char_position, is_whitespace};
use crate::error::{EddyError, Result};

pub use crate::error::MAX_EXPRESSION_DEPTH;

/// Words that join two operands into a deeper node.
const OPERATOR_WORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "IS",
    "LIKE",
    "ILIKE",
    "SIMILAR",
    "BETWEEN",
    "IN",
    "UNION",
    "INTERSECT",
    "EXCEPT",
    "JOIN",
    "COLLATE",
    "AT",
];

/// Refuse a statement whose expressions could nest deeper than
/// [`MAX_EXPRESSION_DEPTH`] (SQLSTATE 54001, with the position where the
/// bound was crossed).
pub fn check_depth(sql: &str, tokens: &[TokenWithSpan]) -> Result<()> {
    // Per open level: operators seen since it opened or since its last
    // separator, and whether a CASE opened it (then END closes it).
    let mut levels: Vec<(usize, bool)> = vec![(0, false)];
    let mut operators: usize = 0;
    for t in tokens {
        let keyword = match &t.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        };
        match (&t.token, keyword.as_deref()) {
            (tok, _) if is_whitespace(tok) => continue,
            (Token::LParen | Token::LBracket | Token::LBrace, _) => levels.push((0, false)),
            (_, Some("CASE")) => levels.push((0, true)),
            (Token::RParen | Token::RBracket | Token::RBrace, _) => {
                if levels.len() > 1 {
                    operators -= levels.pop().map_or(0, |l| l.0);
                }
            }
            (_, Some("END")) if levels.last().is_some_and(|l| l.1) => {
                operators -= levels.pop().map_or(0, |l| l.0);
            }
            // A CASE's branches are separate expressions, like list items.
            (Token::Comma, _) | (_, Some("WHEN" | "THEN" | "ELSE")) => {
                if let Some(last) = levels.last_mut() {
                    operators -= last.0;
                    last.0 = 0;
                }
            }
            (tok, _) if is_operator(tok) => {
                if let Some(last) = levels.last_mut() {
                    last.0 += 1;
                    operators += 1;
                }
            }
            _ => continue,
        }
        let depth = operators + levels.len() - 1;
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(EddyError::TooComplex {
                message: format!(
                    "statement too complex: its expressions nest more than \
                     {MAX_EXPRESSION_DEPTH} levels deep"
                ),
                position: Some(char_position(sql, t.span.start)),
            });
        }
    }
    Ok(())
}

fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => {
            w.quote_style.is_none()
                && OPERATOR_WORDS
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k))
        }
        Token::Number(..)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::Placeholder(_)
        | Token::Period
        | Token::Colon
        | Token::SemiColon
        | Token::EOF => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::tokens::split_statements;

    fn depth_ok(sql: &str) -> Result<()> {
        // split_statements runs the check itself.
        split_statements(sql).map(|_| ())
    }

    fn chain(n: usize, op: &str) -> String {
        let terms: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        terms.join(op)
    }

    #[test]
    fn long_operator_chains_are_refused_with_54001_and_a_position() {
        let sql = format!("SELECT {}", chain(50_000, "+"));
        let e = depth_ok(&sql).unwrap_err();
        assert_eq!(e.sqlstate(), "54001");
        assert!(e.to_string().contains("more than 1000 levels"), "{e}");
        let EddyError::TooComplex {
            position: Some(p), ..
        } = e
        else {
            panic!("no position: {e:?}")
        };
        // The 1001st `+`: "SELECT " is 7 characters, each "cN+" before it is longer.
        assert!(p > 1000 * 3 && p < sql.len(), "position {p}");
        let e = depth_ok(&format!("SELECT 1 WHERE {}", chain(2_000, " AND "))).unwrap_err();
        assert_eq!(e.sqlstate(), "54001");
        let e = depth_ok(&chain(1_500, " UNION ALL SELECT ")).unwrap_err();
        assert_eq!(e.sqlstate(), "54001");
    }

    #[test]
    fn lists_and_moderate_chains_pass() {
        assert!(depth_ok(&format!("SELECT {}", chain(900, "+"))).is_ok());
        let list: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        assert!(depth_ok(&format!("SELECT 1 WHERE x IN ({})", list.join(","))).is_ok());
        let rows: Vec<String> = (0..20_000).map(|i| format!("({i}, {i} + 1)")).collect();
        assert!(depth_ok(&format!("INSERT INTO t VALUES {}", rows.join(", "))).is_ok());
        let items: Vec<String> = (0..5_000).map(|i| format!("a + {i} AS c{i}")).collect();
        assert!(depth_ok(&format!("SELECT {} FROM t", items.join(", "))).is_ok());
        // A CASE with many branches is flat.
        let whens: Vec<String> = (0..3_000)
            .map(|i| format!("WHEN a = {i} THEN a + {i}"))
            .collect();
        let case = format!("SELECT 1 + CASE {} ELSE 0 END + 2 FROM t", whens.join(" "));
        assert!(depth_ok(&case).is_ok());
    }

    #[test]
    fn brackets_count_as_levels() {
        let sql = format!("SELECT {}1{}", "(".repeat(1_200), ")".repeat(1_200));
        assert_eq!(depth_ok(&sql).unwrap_err().sqlstate(), "54001");
        // Closed brackets no longer count.
        let sql = format!("SELECT {}", vec!["((((1))))"; 1_000].join(", "));
        assert!(depth_ok(&sql).is_ok());
    }
}
