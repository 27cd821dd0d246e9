//! Token-level helpers: splitting a query string into statements, mapping
//! sqlparser positions to character offsets, and the few token rewrites eddy
//! needs before sqlparser sees a statement (Flink's `TABLE(TUMBLE(TABLE t,
//! DESCRIPTOR(c), …))` form and a trailing `EMIT …` clause).

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Word};

use crate::error::{EddyError, Result};

/// The dialect eddy parses with.
pub const DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

/// One statement's tokens and its text in the original query string.
#[derive(Debug, Clone)]
pub struct StatementTokens {
    /// Tokens, with their original spans (whitespace included).
    pub tokens: Vec<TokenWithSpan>,
    /// The statement's source text, trimmed, without the trailing `;`.
    pub text: String,
}

/// Tokenize `sql` and split it at top-level semicolons, dropping empty statements.
pub fn split_statements(sql: &str) -> Result<Vec<StatementTokens>> {
    let tokens = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| EddyError::Syntax {
            message: format!("syntax error: {}", e.message),
            position: Some(char_position(sql, e.location)),
        })?;
    let mut out = Vec::new();
    let mut current: Vec<TokenWithSpan> = Vec::new();
    for t in tokens {
        if matches!(t.token, Token::SemiColon) {
            push_statement(sql, &mut out, std::mem::take(&mut current))?;
        } else if !matches!(t.token, Token::EOF) {
            current.push(t);
        }
    }
    push_statement(sql, &mut out, current)?;
    Ok(out)
}

fn push_statement(
    sql: &str,
    out: &mut Vec<StatementTokens>,
    mut tokens: Vec<TokenWithSpan>,
) -> Result<()> {
    unreserve_top(&mut tokens);
    complete_timestamp_literals(&mut tokens);
    let significant: Vec<&TokenWithSpan> =
        tokens.iter().filter(|t| !is_whitespace(&t.token)).collect();
    let (Some(first), Some(last)) = (significant.first(), significant.last()) else {
        return Ok(());
    };
    super::complexity::check_depth(sql, &tokens)?;
    let start = byte_offset(sql, first.span.start);
    let end = byte_offset(sql, last.span.end);
    let text = sql.get(start..end).unwrap_or_default().trim().to_string();
    out.push(StatementTokens { tokens, text });
    Ok(())
}

/// `TOP` is no keyword in PostgreSQL, but sqlparser reads `SELECT top FROM t` as SQL Server's
/// `SELECT TOP n`: right after SELECT, DISTINCT or ALL, an unquoted `top` becomes the
/// identifier it is in PostgreSQL.
fn unreserve_top(tokens: &mut [TokenWithSpan]) {
    let sig = significant(tokens);
    for w in sig.windows(2) {
        let after_select = ["SELECT", "DISTINCT", "ALL"]
            .iter()
            .any(|k| is_word(&tokens[w[0]].token, k));
        if let Token::Word(word) = &mut tokens[w[1]].token {
            if after_select && word.quote_style.is_none() && word.keyword == Keyword::TOP {
                word.value = word.value.to_lowercase();
                word.quote_style = Some('"');
                word.keyword = Keyword::NoKeyword;
            }
        }
    }
}

/// PostgreSQL reads a timestamp without seconds (`TIMESTAMP '2020-04-15 12:02'`, `9:05` for
/// the hour); Arrow's parser needs them. In a timestamp literal — `TIMESTAMP '…'`,
/// `'…'::timestamp`, `CAST('…' AS TIMESTAMP)` — such a text gets `:00`.
fn complete_timestamp_literals(tokens: &mut [TokenWithSpan]) {
    let sig = significant(tokens);
    let at = |k: usize, kw: &str| sig.get(k).is_some_and(|&i| is_word(&tokens[i].token, kw));
    let tok = |k: usize| sig.get(k).map(|&i| &tokens[i].token);
    let mut literals = Vec::new();
    for (k, &i) in sig.iter().enumerate() {
        if !matches!(tokens[i].token, Token::SingleQuotedString(_)) {
            continue;
        }
        let typed = k > 0 && at(k - 1, "TIMESTAMP");
        let cast = matches!(tok(k + 1), Some(Token::DoubleColon)) && at(k + 2, "TIMESTAMP");
        let call = k > 1
            && matches!(tok(k - 1), Some(Token::LParen))
            && at(k - 2, "CAST")
            && at(k + 1, "AS")
            && at(k + 2, "TIMESTAMP");
        if typed || cast || call {
            literals.push(i);
        }
    }
    for i in literals {
        if let Token::SingleQuotedString(text) = &mut tokens[i].token {
            if let Some(full) = crate::pgtext::datetime::complete_seconds(text) {
                *text = full;
            }
        }
    }
}

/// True for whitespace and comments.
pub fn is_whitespace(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Byte offset of a 1-based line/column location in `sql` (columns count characters).
pub fn byte_offset(sql: &str, loc: Location) -> usize {
    if loc.line == 0 {
        return 0;
    }
    let mut line = 1u64;
    let mut col = 1u64;
    for (i, ch) in sql.char_indices() {
        if line == loc.line && col == loc.column {
            return i;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    sql.len()
}

/// 1-based character position (what Postgres reports) of a location.
pub fn char_position(sql: &str, loc: Location) -> usize {
    let byte = byte_offset(sql, loc);
    sql.get(..byte).map_or(0, |s| s.chars().count()) + 1
}

/// Turn a sqlparser error into a syntax error with a Postgres position.
pub fn parser_error(sql: &str, e: ParserError) -> EddyError {
    let raw = match &e {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => {
            return EddyError::TooComplex {
                message: "statement too complex: it nests more than 50 levels of brackets, \
                          subqueries or prefix operators"
                    .into(),
                position: None,
            }
        }
    };
    // sqlparser appends " at Line: L, Column: C"; turn that into a position.
    let (message, position) = match raw.rfind(" at Line: ") {
        Some(idx) => {
            let tail = &raw[idx + " at Line: ".len()..];
            let mut parts = tail.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse::<u64>().ok());
            let column = parts.next().and_then(|c| c.trim().parse::<u64>().ok());
            let pos = match (line, column) {
                (Some(line), Some(column)) => Some(char_position(sql, Location { line, column })),
                _ => None,
            };
            (raw[..idx].to_string(), pos)
        }
        None => (raw, None),
    };
    let message = message.replace("Expected: ", "expected ");
    EddyError::Syntax {
        message: format!("syntax error: {message}"),
        position,
    }
}

/// The word of a token, if it is an unquoted word.
pub fn word(t: &Token) -> Option<&Word> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w),
        _ => None,
    }
}

/// True if `t` is the unquoted keyword/word `kw` (case-insensitive).
pub fn is_word(t: &Token, kw: &str) -> bool {
    word(t).is_some_and(|w| w.value.eq_ignore_ascii_case(kw))
}

/// Indices of the non-whitespace tokens.
pub fn significant(tokens: &[TokenWithSpan]) -> Vec<usize> {
    tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !is_whitespace(&t.token))
        .map(|(i, _)| i)
        .collect()
}

/// True if the significant tokens start with the given words.
pub fn starts_with_words(tokens: &[TokenWithSpan], words: &[&str]) -> bool {
    let sig = significant(tokens);
    words.len() <= sig.len()
        && words
            .iter()
            .zip(sig.iter())
            .all(|(w, &i)| is_word(&tokens[i].token, w))
}

/// Emission mode given by a trailing `EMIT …` clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitClause {
    /// `EMIT ON WINDOW CLOSE`.
    OnWindowClose,
    /// `EMIT ON UPDATE` (the default, stated explicitly).
    OnUpdate,
}

/// Remove a trailing `EMIT ON WINDOW CLOSE` / `EMIT ON UPDATE` clause.
pub fn strip_emit_clause(tokens: &mut Vec<TokenWithSpan>) -> Option<EmitClause> {
    let sig = significant(tokens);
    let n = sig.len();
    let tail = |k: usize| &tokens[sig[n - k]].token;
    if n >= 4
        && is_word(tail(4), "EMIT")
        && is_word(tail(3), "ON")
        && is_word(tail(2), "WINDOW")
        && is_word(tail(1), "CLOSE")
    {
        tokens.truncate(sig[n - 4]);
        return Some(EmitClause::OnWindowClose);
    }
    if n >= 3 && is_word(tail(3), "EMIT") && is_word(tail(2), "ON") && is_word(tail(1), "UPDATE") {
        tokens.truncate(sig[n - 3]);
        return Some(EmitClause::OnUpdate);
    }
    None
}

/// `sql` (one query) with Flink's window TVF form rewritten into the short
/// form (see [`rewrite_flink_windows`]), a column named `top` read as one
/// (see [`unreserve_top`]) and timestamp literals without seconds completed
/// (see [`complete_timestamp_literals`]); unchanged when it has none of them.
pub fn query_text(sql: &str) -> Result<String> {
    let upper = sql.to_ascii_uppercase();
    if upper.contains("DESCRIPTOR") {
        let mut out = Vec::new();
        for st in split_statements(sql)? {
            let mut tokens = st.tokens;
            rewrite_flink_windows(&mut tokens);
            out.push(
                tokens
                    .iter()
                    .map(|t| t.token.to_string())
                    .collect::<String>(),
            );
        }
        return Ok(out.join(";\n"));
    }
    if !upper.contains("TOP") && !upper.contains("TIMESTAMP") {
        return Ok(sql.to_string());
    }
    // Only the tokens the passes change are written anew; the rest of the text stays as it
    // was (a token written back loses its escapes: 'it''s' would become 'it's').
    let raw = Tokenizer::new(&DIALECT, sql)
        .tokenize_with_location()
        .map_err(|e| EddyError::Syntax {
            message: format!("syntax error: {}", e.message),
            position: Some(char_position(sql, e.location)),
        })?;
    let mut fixed = raw.clone();
    unreserve_top(&mut fixed);
    complete_timestamp_literals(&mut fixed);
    let mut out = sql.to_string();
    for (before, after) in raw.iter().zip(&fixed).rev() {
        if before.token != after.token {
            let start = byte_offset(sql, before.span.start);
            let end = byte_offset(sql, before.span.end);
            out.replace_range(start..end, &after.token.to_string());
        }
    }
    Ok(out)
}

/// Remove `FOR SYSTEM_TIME AS OF <expr>` after a table in `FROM` (a
/// temporal join: the table as it is when the stream's row is processed)
/// and return the tables it followed, lower-cased unless quoted. `<expr>`
/// is a (qualified) column or a function call.
pub fn strip_system_time(tokens: &mut Vec<TokenWithSpan>) -> Vec<String> {
    let mut tables = Vec::new();
    loop {
        let sig = significant(tokens);
        let found = sig.windows(4).position(|w| {
            is_word(&tokens[w[0]].token, "FOR")
                && is_word(&tokens[w[1]].token, "SYSTEM_TIME")
                && is_word(&tokens[w[2]].token, "AS")
                && is_word(&tokens[w[3]].token, "OF")
        });
        let Some(p) = found else { return tables };
        if let Some(Token::Word(w)) = p.checked_sub(1).map(|b| &tokens[sig[b]].token) {
            tables.push(match w.quote_style {
                Some(_) => w.value.clone(),
                None => w.value.to_lowercase(),
            });
        }
        // The expression: words joined by dots, then an argument list if any.
        let mut end = p + 4;
        while end < sig.len() && matches!(tokens[sig[end]].token, Token::Word(_)) {
            end += 1;
            if end < sig.len() && matches!(tokens[sig[end]].token, Token::Period) {
                end += 1;
            } else {
                break;
            }
        }
        let mut last = sig[end.min(sig.len()) - 1];
        if end < sig.len() && matches!(tokens[sig[end]].token, Token::LParen) {
            match matching_paren(tokens, sig[end]) {
                Some(close) => last = close,
                None => return tables,
            }
        }
        tokens.drain(sig[p]..=last);
    }
}

/// Rewrite Flink's window TVF form into the short form:
/// `TABLE(TUMBLE(TABLE t, DESCRIPTOR(c), args…))` → `TUMBLE(t, c, args…)`
/// (same for HOP, SESSION, CUMULATE). Token spans are kept for error positions.
pub fn rewrite_flink_windows(tokens: &mut [TokenWithSpan]) {
    loop {
        let sig = significant(tokens);
        let found = sig.windows(5).position(|w| {
            is_word(&tokens[w[0]].token, "TABLE")
                && matches!(tokens[w[1]].token, Token::LParen)
                && word(&tokens[w[2]].token).is_some_and(|x| is_window_fn(&x.value))
                && matches!(tokens[w[3]].token, Token::LParen)
                && is_word(&tokens[w[4]].token, "TABLE")
        });
        let Some(p) = found else { return };
        let (outer_table, outer_lparen, inner_table) = (sig[p], sig[p + 1], sig[p + 4]);
        let Some(outer_rparen) = matching_paren(tokens, outer_lparen) else {
            return;
        };
        // SESSION's `TABLE t PARTITION BY k, …`: the session key is the GROUP BY
        // key without the window columns, so the clause is dropped.
        let mut i = inner_table;
        while i < outer_rparen {
            if is_word(&tokens[i].token, "PARTITION")
                && next_significant(tokens, i + 1).is_some_and(|b| is_word(&tokens[b].token, "BY"))
            {
                let mut depth = 0i32;
                let mut j = i;
                while j < outer_rparen {
                    match tokens[j].token {
                        Token::LParen => depth += 1,
                        Token::RParen => depth -= 1,
                        Token::Comma if depth == 0 => break,
                        _ => {}
                    }
                    tokens[j].token =
                        Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space);
                    j += 1;
                }
                break;
            }
            i += 1;
        }
        // Replace DESCRIPTOR ( c ) by c inside the call.
        let mut i = inner_table;
        while i < outer_rparen {
            if is_word(&tokens[i].token, "DESCRIPTOR") {
                if let Some(lp) = next_significant(tokens, i + 1) {
                    if matches!(tokens[lp].token, Token::LParen) {
                        if let Some(rp) = matching_paren(tokens, lp) {
                            tokens[rp].token = Token::Whitespace(
                                datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
                            );
                            for t in &mut tokens[i..=lp] {
                                t.token = Token::Whitespace(
                                    datafusion::sql::sqlparser::tokenizer::Whitespace::Space,
                                );
                            }
                        }
                    }
                }
            }
            i += 1;
        }
        let space = Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space);
        tokens[outer_rparen].token = space.clone();
        tokens[inner_table].token = space.clone();
        tokens[outer_lparen].token = space.clone();
        tokens[outer_table].token = space;
    }
}

fn is_window_fn(name: &str) -> bool {
    ["TUMBLE", "HOP", "SESSION", "CUMULATE"]
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
}

fn next_significant(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| !is_whitespace(&tokens[i].token))
}

/// Index of the `)` matching the `(` at `open`.
pub fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Keyword helper re-exported for statement parsing.
pub fn kw(w: &Word) -> Keyword {
    w.keyword
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(tokens: &[TokenWithSpan]) -> String {
        let s: String = tokens.iter().map(|t| t.token.to_string()).collect();
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn splits_statements_and_keeps_text() {
        let s = split_statements("SELECT 1; ; select 'a;b' ;").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].text, "SELECT 1");
        assert_eq!(s[1].text, "select 'a;b'");
    }

    #[test]
    fn strips_emit_on_window_close() {
        let mut t = split_statements("SELECT a FROM t EMIT ON WINDOW CLOSE").unwrap()[0]
            .tokens
            .clone();
        assert_eq!(strip_emit_clause(&mut t), Some(EmitClause::OnWindowClose));
        assert_eq!(text(&t), "SELECT a FROM t");
    }

    #[test]
    fn rewrites_flink_tvf() {
        let mut t = split_statements(
            "SELECT * FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) AS w",
        )
        .unwrap()[0]
            .tokens
            .clone();
        rewrite_flink_windows(&mut t);
        assert_eq!(
            text(&t),
            "SELECT * FROM HOP( bids, ts , INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS w"
        );
    }

    #[test]
    fn rewrites_flink_tvf_in_a_query_text() {
        let q = "SELECT count(*) FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))";
        let got = query_text(q).unwrap();
        assert_eq!(
            got.split_whitespace().collect::<Vec<_>>().join(" "),
            "SELECT count(*) FROM TUMBLE( t, ts , INTERVAL '1' SECOND)"
        );
        assert_eq!(query_text("SELECT 1").unwrap(), "SELECT 1");
    }

    #[test]
    fn timestamp_literals_without_seconds_are_completed() {
        assert_eq!(
            query_text("SELECT TIMESTAMP '2020-04-15 12:02', '2020-04-15 9:05'::timestamp")
                .unwrap(),
            "SELECT TIMESTAMP '2020-04-15 12:02:00', '2020-04-15 09:05:00'::timestamp"
        );
        assert_eq!(
            query_text("SELECT CAST('2020-04-15T12:02' AS TIMESTAMP)").unwrap(),
            "SELECT CAST('2020-04-15 12:02:00' AS TIMESTAMP)"
        );
        // Only timestamp literals, and only that shape.
        for q in [
            "SELECT '2020-04-15 12:02' AS text_kept, TIMESTAMP '2020-04-15 12:02:07'",
            "SELECT TIMESTAMP '12:02', TIMESTAMP '2020-04-15 12:2'",
        ] {
            assert_eq!(query_text(q).unwrap(), q);
        }
    }

    #[test]
    fn top_is_a_column_name_as_in_postgres() {
        assert_eq!(
            query_text("SELECT TOP, DISTINCT_top FROM t").unwrap(),
            "SELECT \"top\", DISTINCT_top FROM t"
        );
        assert_eq!(
            query_text("SELECT DISTINCT top FROM t").unwrap(),
            "SELECT DISTINCT \"top\" FROM t"
        );
        // The rest of the text is kept as written, escapes and all.
        assert_eq!(
            query_text("SELECT 'it''s' AS stop, E'a\\nb', top FROM t -- top").unwrap(),
            "SELECT 'it''s' AS stop, E'a\\nb', top FROM t -- top"
        );
        assert_eq!(
            query_text("SELECT top, 'it''s' FROM t").unwrap(),
            "SELECT \"top\", 'it''s' FROM t"
        );
        // Elsewhere it is a plain word already.
        assert_eq!(
            query_text("SELECT a FROM t ORDER BY top").unwrap(),
            "SELECT a FROM t ORDER BY top"
        );
    }

    #[test]
    fn strips_for_system_time_as_of() {
        let mut t = split_statements(
            "SELECT * FROM b JOIN Side FOR SYSTEM_TIME AS OF b.p_time AS s ON b.k = s.k \
             JOIN \"T\" FOR SYSTEM_TIME AS OF PROCTIME() ON true",
        )
        .unwrap()[0]
            .tokens
            .clone();
        assert_eq!(strip_system_time(&mut t), ["side", "T"]);
        assert_eq!(
            text(&t),
            "SELECT * FROM b JOIN Side AS s ON b.k = s.k JOIN \"T\" ON true"
        );
    }

    #[test]
    fn positions_are_one_based_characters() {
        let sql = "SELECT\n  é, x";
        assert_eq!(char_position(sql, Location { line: 2, column: 3 }), 10);
    }
}
