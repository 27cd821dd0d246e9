//! `SUBSCRIBE [TO] view | (query) [WITH (SNAPSHOT [=] bool, PROGRESS [=] bool)] [AS OF position]`
//! and the places it may stand: alone, in `COPY (SUBSCRIBE …) TO STDOUT` (so plain psql shows
//! rows as they come) and in `DECLARE c CURSOR FOR SUBSCRIBE …`; and `FETCH`'s
//! `WITH (timeout = …)`, which says how long a FETCH from a subscription waits for a first row.

use std::time::Duration;

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::statement::normalize_object_name;
use super::tokens::{char_position, is_whitespace, is_word, matching_paren, parser_error, DIALECT};
use crate::error::{EddyError, Result};

/// What a subscription reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeSource {
    /// `SUBSCRIBE TO view`: every column of a materialized view.
    View(String),
    /// `SUBSCRIBE (SELECT … FROM view …)`: a query over one view, as SQL text.
    Query(String),
}

/// A classified `SUBSCRIBE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// What it reads.
    pub source: SubscribeSource,
    /// Send the view's current rows first, as inserts (default: true, unless `AS OF`).
    pub snapshot: bool,
    /// Send progress rows: "every change up to this position has been sent".
    pub progress: bool,
    /// Resume after this position (one the client saw): only later changes are sent.
    pub as_of: Option<i64>,
}

fn syntax(sql: &str, t: &TokenWithSpan, what: &str) -> EddyError {
    EddyError::Syntax {
        message: format!("syntax error at or near \"{}\": {what}", t.token),
        position: Some(char_position(sql, t.span.start)),
    }
}

/// Parse a `SUBSCRIBE` statement's tokens (the first significant one is `SUBSCRIBE`).
pub fn parse(sql: &str, tokens: Vec<TokenWithSpan>) -> Result<Subscribe> {
    let perr = |e| parser_error(sql, e);
    let mut p = Parser::new(&DIALECT).with_tokens_with_locations(tokens);
    p.next_token(); // SUBSCRIBE
    let _ = p.parse_keyword(Keyword::TO);
    let source = if p.peek_token().token == Token::LParen {
        p.next_token();
        let query = p.parse_query().map_err(perr)?;
        p.expect_token(&Token::RParen).map_err(perr)?;
        SubscribeSource::Query(query.to_string())
    } else {
        SubscribeSource::View(normalize_object_name(
            &p.parse_object_name(false).map_err(perr)?,
        )?)
    };
    let mut snapshot = None;
    let mut progress = false;
    if p.parse_keyword(Keyword::WITH) {
        for (name, value, at) in options(sql, &mut p)? {
            let flag = || {
                boolean(value.as_deref()).ok_or_else(|| EddyError::Syntax {
                    message: format!(
                        "{name} requires a Boolean value, not {}",
                        value.as_deref().unwrap_or("")
                    ),
                    position: Some(at),
                })
            };
            match name.as_str() {
                "snapshot" => snapshot = Some(flag()?),
                "progress" => progress = flag()?,
                _ => {
                    return Err(EddyError::Syntax {
                        message: format!(
                            "option \"{name}\" not recognized: SUBSCRIBE takes SNAPSHOT and \
                             PROGRESS"
                        ),
                        position: Some(at),
                    })
                }
            }
        }
    }
    let as_of = if p.parse_keywords(&[Keyword::AS, Keyword::OF]) {
        let t = p.next_token();
        match &t.token {
            Token::Number(n, _) => {
                Some(n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    syntax(
                        sql,
                        &t,
                        "AS OF takes a position SUBSCRIBE sent (a whole number)",
                    )
                })?)
            }
            _ => return Err(syntax(sql, &t, "AS OF takes a position SUBSCRIBE sent")),
        }
    } else {
        None
    };
    let t = p.peek_token();
    if t.token != Token::EOF {
        return Err(syntax(sql, &t, "SUBSCRIBE ends after WITH (…) and AS OF"));
    }
    if as_of.is_some() && snapshot == Some(true) {
        return Err(EddyError::NotSupported {
            message: "SUBSCRIBE … AS OF cannot send a snapshot".into(),
            hint: Some(
                "A resume sends the changes after the position, which the client applies to the \
                 rows it has; to start over, subscribe with a snapshot and without AS OF."
                    .into(),
            ),
        });
    }
    Ok(Subscribe {
        source,
        snapshot: snapshot.unwrap_or(as_of.is_none()),
        progress,
        as_of,
    })
}

/// `( name [[=] value], … )`: names lowercased, values as written (a bare name is true).
fn options(sql: &str, p: &mut Parser) -> Result<Vec<(String, Option<String>, usize)>> {
    let perr = |e| parser_error(sql, e);
    p.expect_token(&Token::LParen).map_err(perr)?;
    let mut out = Vec::new();
    loop {
        let t = p.next_token();
        let at = char_position(sql, t.span.start);
        let Token::Word(w) = &t.token else {
            return Err(syntax(sql, &t, "expected an option name"));
        };
        let name = w.value.to_lowercase();
        let _ = p.consume_token(&Token::Eq);
        let value = match p.peek_token().token {
            Token::Comma | Token::RParen => None,
            _ => {
                let v = p.next_token();
                Some(match v.token {
                    Token::Word(w) => w.value,
                    Token::SingleQuotedString(s) => s,
                    Token::Number(n, _) => n,
                    _ => return Err(syntax(sql, &v, "expected an option value")),
                })
            }
        };
        out.push((name, value, at));
        if p.consume_token(&Token::RParen) {
            return Ok(out);
        }
        p.expect_token(&Token::Comma).map_err(perr)?;
    }
}

/// PostgreSQL's Boolean option values; a bare option name is true.
fn boolean(v: Option<&str>) -> Option<bool> {
    match v.map(|v| v.to_lowercase()).as_deref() {
        None | Some("true" | "on" | "1" | "yes") => Some(true),
        Some("false" | "off" | "0" | "no") => Some(false),
        _ => None,
    }
}

/// A `SUBSCRIBE` inside a statement: `COPY (SUBSCRIBE …) TO …` or `DECLARE c CURSOR FOR
/// SUBSCRIBE …`. Returns the outer statement's tokens with `SELECT 1` where the subscription
/// stood (so that sqlparser reads its COPY or DECLARE options), and the subscription's tokens.
pub fn split_nested(tokens: &[TokenWithSpan]) -> Option<(Vec<TokenWithSpan>, Vec<TokenWithSpan>)> {
    let sig: Vec<usize> = super::tokens::significant(tokens);
    let first = &tokens[*sig.first()?].token;
    let (start, end) = if is_word(first, "COPY") {
        let open = *sig.get(1)?;
        if tokens[open].token != Token::LParen || !is_word(&tokens[*sig.get(2)?].token, "SUBSCRIBE")
        {
            return None;
        }
        let close = matching_paren(tokens, open)?;
        (open + 1, close)
    } else if is_word(first, "DECLARE") {
        let at = sig.windows(2).find(|w| {
            is_word(&tokens[w[0]].token, "FOR") && is_word(&tokens[w[1]].token, "SUBSCRIBE")
        })?;
        (at[1], tokens.len())
    } else {
        return None;
    };
    let inner = tokens[start..end].to_vec();
    let mut outer = tokens[..start].to_vec();
    let select = |t: Token| TokenWithSpan::wrap(t);
    outer.push(select(Token::make_keyword("SELECT")));
    outer.push(select(Token::Whitespace(Whitespace::Space)));
    outer.push(select(Token::Number("1".into(), false)));
    outer.extend_from_slice(&tokens[end..]);
    Some((outer, inner))
}

/// Take `WITH (timeout = '…')` off the end of a `FETCH`: how long to wait for a first row
/// of a subscription (PostgreSQL's duration syntax: `500ms`, `2s`, a bare number is ms).
pub fn strip_fetch_timeout(sql: &str, tokens: &mut Vec<TokenWithSpan>) -> Result<Option<Duration>> {
    let sig = super::tokens::significant(tokens);
    let Some(with) = sig
        .iter()
        .position(|&i| is_word(&tokens[i].token, "WITH"))
        .map(|k| sig[k])
    else {
        return Ok(None);
    };
    let mut p = Parser::new(&DIALECT).with_tokens_with_locations(tokens[with + 1..].to_vec());
    let mut timeout = None;
    for (name, value, at) in options(sql, &mut p)? {
        if name != "timeout" {
            return Err(EddyError::Syntax {
                message: format!("FETCH option \"{name}\" not recognized: FETCH takes timeout"),
                position: Some(at),
            });
        }
        let v = value.unwrap_or_default();
        let ms = crate::pgtext::datetime::duration_ms(&v).map_err(|_| EddyError::Syntax {
            message: format!(
                "invalid timeout \"{v}\": give a duration such as '500ms', '2s' or '1min'"
            ),
            position: Some(at),
        })?;
        timeout = Some(Duration::from_millis(ms));
    }
    let t = p.peek_token();
    if t.token != Token::EOF {
        return Err(syntax(sql, &t, "FETCH ends after WITH (…)"));
    }
    tokens.truncate(with);
    while tokens.last().is_some_and(|t| is_whitespace(&t.token)) {
        tokens.pop();
    }
    Ok(timeout)
}

/// PostgreSQL reads `FETCH ALL c` and `FETCH c` (FROM and IN are optional); sqlparser wants
/// one: put `FROM` before the cursor name where neither is written.
pub fn add_fetch_from(tokens: &mut Vec<TokenWithSpan>) {
    let sig = super::tokens::significant(tokens);
    let has_from = sig
        .iter()
        .any(|&i| is_word(&tokens[i].token, "FROM") || is_word(&tokens[i].token, "IN"));
    if let (false, Some(&name)) = (has_from, sig.last().filter(|_| sig.len() >= 2)) {
        tokens.splice(
            name..name,
            [
                TokenWithSpan::wrap(Token::make_keyword("FROM")),
                TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space)),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::tokens::split_statements;

    fn sub(sql: &str) -> Result<Subscribe> {
        let st = split_statements(sql)?.remove(0);
        parse(sql, st.tokens)
    }

    #[test]
    fn subscribe_reads_a_view_or_a_query_with_options() {
        let s = sub("SUBSCRIBE TO counts").unwrap();
        assert_eq!(s.source, SubscribeSource::View("counts".into()));
        assert!(s.snapshot && !s.progress && s.as_of.is_none());
        let s = sub("SUBSCRIBE (SELECT a FROM v WHERE a > 1) WITH (SNAPSHOT = false, PROGRESS)")
            .unwrap();
        assert_eq!(
            s.source,
            SubscribeSource::Query("SELECT a FROM v WHERE a > 1".into())
        );
        assert!(!s.snapshot && s.progress);
        let s = sub("SUBSCRIBE v WITH (progress 'on') AS OF 17").unwrap();
        assert_eq!((s.snapshot, s.progress, s.as_of), (false, true, Some(17)));
        let err = sub("SUBSCRIBE v WITH (snapshoot = true)").unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
        assert!(err.to_string().contains("snapshoot"), "{err}");
        assert_eq!(
            sub("SUBSCRIBE v WITH (SNAPSHOT) AS OF 3")
                .unwrap_err()
                .sqlstate(),
            "0A000"
        );
        assert_eq!(sub("SUBSCRIBE v AS OF x").unwrap_err().sqlstate(), "42601");
        assert_eq!(sub("SUBSCRIBE v extra").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn nested_subscriptions_leave_the_outer_statement_readable() {
        let sql = "COPY (SUBSCRIBE TO v WITH (PROGRESS)) TO STDOUT WITH (FORMAT csv)";
        let st = split_statements(sql).unwrap().remove(0);
        let (outer, inner) = split_nested(&st.tokens).unwrap();
        let text = |t: &[TokenWithSpan]| t.iter().map(|t| t.token.to_string()).collect::<String>();
        assert_eq!(text(&outer), "COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)");
        assert_eq!(text(&inner), "SUBSCRIBE TO v WITH (PROGRESS)");
        let sql = "DECLARE c CURSOR WITH HOLD FOR SUBSCRIBE v";
        let st = split_statements(sql).unwrap().remove(0);
        let (outer, inner) = split_nested(&st.tokens).unwrap();
        assert_eq!(text(&outer), "DECLARE c CURSOR WITH HOLD FOR SELECT 1");
        assert_eq!(text(&inner), "SUBSCRIBE v");
        let st = split_statements("COPY (SELECT 1) TO STDOUT")
            .unwrap()
            .remove(0);
        assert!(split_nested(&st.tokens).is_none());
    }

    #[test]
    fn fetch_timeout_is_taken_off_the_statement() {
        let sql = "FETCH ALL c WITH (timeout = '1.5s')";
        let mut tokens = split_statements(sql).unwrap().remove(0).tokens;
        let t = strip_fetch_timeout(sql, &mut tokens).unwrap();
        assert_eq!(t, Some(Duration::from_millis(1500)));
        let text: String = tokens.iter().map(|t| t.token.to_string()).collect();
        assert_eq!(text, "FETCH ALL c");
        add_fetch_from(&mut tokens);
        let text: String = tokens.iter().map(|t| t.token.to_string()).collect();
        assert_eq!(text, "FETCH ALL FROM c");
        let sql = "FETCH ALL c WITH (timeout = 'soon')";
        let mut tokens = split_statements(sql).unwrap().remove(0).tokens;
        assert_eq!(
            strip_fetch_timeout(sql, &mut tokens)
                .unwrap_err()
                .sqlstate(),
            "42601"
        );
    }
}
