//! The canonical text of a view definition: what is stored for it when the
//! statement as typed is not what it means (a session's `SET state_ttl`).

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::tokenizer::Token;

use super::tokens::{byte_offset, is_word, matching_paren, significant, split_statements};
use super::{CreateView, EmitMode};
use crate::error::{EddyError, Result};

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

/// `sql`, a `CREATE MATERIALIZED VIEW` statement, with its `WITH (…)`
/// options replaced by `options` (no clause when there are none) and the
/// rest exactly as written (`ALTER MATERIALIZED VIEW … SET`).
pub fn with_options(sql: &str, options: &BTreeMap<String, String>) -> Result<String> {
    let bad = || EddyError::Internal(format!("not a CREATE MATERIALIZED VIEW statement: {sql}"));
    let st = split_statements(sql)?.into_iter().next().ok_or_else(bad)?;
    let tokens = &st.tokens;
    let sig = significant(tokens);
    let word = |i: usize, w: &str| sig.get(i).is_some_and(|&t| is_word(&tokens[t].token, w));
    let mut i = sig
        .iter()
        .position(|&t| is_word(&tokens[t].token, "VIEW"))
        .ok_or_else(bad)?
        + 1;
    if word(i, "IF") {
        i += 3;
    }
    // The name: words joined by dots.
    i += 1;
    while sig
        .get(i)
        .is_some_and(|&t| matches!(tokens[t].token, Token::Period))
    {
        i += 2;
    }
    let name_end = *sig.get(i - 1).ok_or_else(bad)?;
    let after_name = byte_offset(sql, tokens[name_end].span.end);
    let rest_from = if word(i, "WITH") {
        let open = *sig.get(i + 1).ok_or_else(bad)?;
        let close = matching_paren(tokens, open).ok_or_else(bad)?;
        byte_offset(sql, tokens[close].span.end)
    } else {
        after_name
    };
    let clause = if options.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = options
            .iter()
            .map(|(k, v)| format!("{} = '{}'", quote(k), v.replace('\'', "''")))
            .collect();
        format!(" WITH ({})", list.join(", "))
    };
    let text = sql;
    Ok(format!(
        "{}{clause}{}",
        text.get(..after_name).ok_or_else(bad)?,
        text.get(rest_from..).ok_or_else(bad)?
    ))
}

/// `name` as a quoted SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn with_options_replaces_only_the_clause() {
        let sql =
            "CREATE MATERIALIZED VIEW s.v WITH (state_ttl = '1 hour') AS SELECT a -- x\n FROM t";
        assert_eq!(
            with_options(sql, &opts(&[("state_ttl", "2 hours")])).unwrap(),
            "CREATE MATERIALIZED VIEW s.v WITH (\"state_ttl\" = '2 hours') AS SELECT a -- x\n FROM t"
        );
        assert_eq!(
            with_options(sql, &BTreeMap::new()).unwrap(),
            "CREATE MATERIALIZED VIEW s.v AS SELECT a -- x\n FROM t"
        );
        let sql = "create or replace materialized view \"V w\" as select 1";
        assert_eq!(
            with_options(sql, &opts(&[("backfill", "none"), ("state_ttl", "it's")])).unwrap(),
            "create or replace materialized view \"V w\" WITH (\"backfill\" = 'none', \
             \"state_ttl\" = 'it''s') as select 1"
        );
        let sql = "CREATE MATERIALIZED VIEW IF NOT EXISTS v AS SELECT 1";
        assert_eq!(
            with_options(sql, &opts(&[("state_ttl", "1 s")])).unwrap(),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS v WITH (\"state_ttl\" = '1 s') AS SELECT 1"
        );
    }
}
