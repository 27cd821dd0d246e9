//! Per-connection settings: `SET state_ttl = '1 hour'` gives every join view
//! this connection creates without its own `WITH (state_ttl = …)` that TTL
//! (`SET state_ttl = DEFAULT` clears it). The setting lives in the
//! connection's metadata; a view created with it records the option in its
//! stored SQL, so it is re-created with the same TTL after a restart.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast;

use crate::error::Result;
#[cfg(test)]
use crate::sql::EmitMode;
use crate::sql::{CreateView, Statement};

/// Connection metadata key of the session's `state_ttl`.
const STATE_TTL: &str = "eddy.state_ttl";

/// Handle `SET state_ttl …`: `Some` if `s` was one (with its outcome).
pub fn set_state_ttl(
    s: &ast::Statement,
    metadata: &mut HashMap<String, String>,
) -> Option<Result<()>> {
    let text = s.to_string();
    let rest = text.strip_prefix("SET ")?.trim_start();
    let (name, value) = rest.split_once([' ', '='])?;
    if !name.eq_ignore_ascii_case("state_ttl") {
        return None;
    }
    let value = value.trim_start_matches([' ', '=']).trim();
    let value = value
        .strip_prefix("TO ")
        .or_else(|| value.strip_prefix("to "))
        .unwrap_or(value)
        .trim();
    if value.eq_ignore_ascii_case("DEFAULT") {
        metadata.remove(STATE_TTL);
        return Some(Ok(()));
    }
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value)
        .replace("''", "'");
    Some(crate::plan::parse_state_ttl(&value).map(|_| {
        metadata.insert(STATE_TTL.into(), value);
    }))
}

/// Give a `CREATE` / `EXPLAIN CREATE MATERIALIZED VIEW` without its own
/// `state_ttl` the session's.
pub fn with_session_defaults(stmt: Statement, metadata: &HashMap<String, String>) -> Statement {
    let Some(ttl) = metadata.get(STATE_TTL) else {
        return stmt;
    };
    match stmt {
        Statement::CreateView(v) => Statement::CreateView(with_ttl(v, ttl)),
        Statement::ExplainView(v) => Statement::ExplainView(with_ttl(v, ttl)),
        other => other,
    }
}

fn with_ttl(mut v: CreateView, ttl: &str) -> CreateView {
    if v.options.contains_key("state_ttl") {
        return v;
    }
    v.options.insert("state_ttl".into(), ttl.to_string());
    // The stored statement carries the option (the session's setting is gone after a restart).
    v.sql = crate::sql::hoist::canonical_sql(&v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(sql: &str, m: &mut HashMap<String, String>) -> Option<Result<()>> {
        let Statement::Session(s) = crate::sql::parse(sql).unwrap().remove(0) else {
            panic!("not a session statement: {sql}");
        };
        set_state_ttl(&s, m)
    }

    #[test]
    fn set_and_clear_state_ttl() {
        let mut m = HashMap::new();
        assert!(set("SET search_path = public", &mut m).is_none());
        assert!(set("SET state_ttl = '1 hour'", &mut m).unwrap().is_ok());
        assert_eq!(m.get(STATE_TTL).map(String::as_str), Some("1 hour"));
        assert!(set("SET state_ttl TO '30 minutes'", &mut m)
            .unwrap()
            .is_ok());
        assert_eq!(m.get(STATE_TTL).map(String::as_str), Some("30 minutes"));
        assert!(set("SET state_ttl = 'soon'", &mut m).unwrap().is_err());
        assert!(set("SET state_ttl = DEFAULT", &mut m).unwrap().is_ok());
        assert!(m.is_empty());
    }

    #[test]
    fn views_take_the_session_ttl_into_their_sql() {
        let mut m = HashMap::new();
        m.insert(STATE_TTL.to_string(), "1 hour".to_string());
        let stmt = crate::sql::parse(
            "CREATE MATERIALIZED VIEW v AS SELECT * FROM TUMBLE(t, ts, INTERVAL '1' SECOND) \
             EMIT ON WINDOW CLOSE",
        )
        .unwrap()
        .remove(0);
        let Statement::CreateView(v) = with_session_defaults(stmt, &m) else {
            panic!("not a view");
        };
        assert_eq!(
            v.options.get("state_ttl").map(String::as_str),
            Some("1 hour")
        );
        // The stored text parses back to the same view with the option.
        let Statement::CreateView(again) = crate::sql::parse(&v.sql).unwrap().remove(0) else {
            panic!("stored SQL is not a view: {}", v.sql);
        };
        assert_eq!(again.options, v.options);
        assert_eq!(again.emit, EmitMode::OnWindowClose);
        assert_eq!(again.name, "v");
        assert_eq!(again.query.to_string(), v.query.to_string());
    }
}
