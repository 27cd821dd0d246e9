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

/// Refuse `SET datafusion.…`: DataFusion's settings belong to the context
/// every connection shares, so one session's `SET` would change every
/// other session's queries (and views planned after it).
pub fn refuse_shared_settings(s: &ast::Statement) -> Result<()> {
    let text = s.to_string().to_lowercase();
    let Some(rest) = text.strip_prefix("set ") else {
        return Ok(());
    };
    let rest = rest
        .trim_start()
        .trim_start_matches("session ")
        .trim_start_matches("local ")
        .trim_start();
    if rest.starts_with("datafusion.") {
        return Err(crate::error::EddyError::NotSupported {
            message: "SET datafusion.* is not supported: DataFusion settings are shared by \
                      every connection, so one session would change them for all"
                .into(),
            hint: Some(
                "eddy sets them for the whole server; per-session settings are \
                 statement_timeout, state_ttl, TimeZone and the other PostgreSQL ones."
                    .into(),
            ),
        });
    }
    Ok(())
}

/// Give a `CREATE` / `EXPLAIN CREATE MATERIALIZED VIEW` without its own
/// `state_ttl` the session's.
pub fn with_session_defaults(stmt: Statement, metadata: &HashMap<String, String>) -> Statement {
    let Some(ttl) = super::settings::state_ttl_of(metadata) else {
        return stmt;
    };
    match stmt {
        Statement::CreateView(v) => Statement::CreateView(with_ttl(v, &ttl)),
        Statement::ExplainView(v) => Statement::ExplainView(with_ttl(v, &ttl)),
        other => other,
    }
}

fn with_ttl(mut v: CreateView, ttl: &str) -> CreateView {
    if v.options.contains_key("state_ttl") {
        return v;
    }
    v.options.insert("state_ttl".into(), ttl.to_string());
    // The stored statement carries the option (the session's setting is gone after a restart).
    v.sql = crate::sql::canonical::canonical_sql(&v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_settings_are_not_per_session() {
        let refuse = |sql: &str| {
            let Statement::Session(s) = crate::sql::parse(sql).unwrap().remove(0) else {
                panic!("not a session statement: {sql}");
            };
            refuse_shared_settings(&s)
        };
        let e = refuse("SET datafusion.execution.batch_size = 1").unwrap_err();
        assert_eq!(e.sqlstate(), "0A000");
        assert!(refuse("SET SESSION datafusion.execution.batch_size TO 1").is_err());
        assert!(refuse("SET statement_timeout = '1s'").is_ok());
        assert!(refuse("SET TimeZone = 'UTC'").is_ok());
    }

    #[test]
    fn views_take_the_session_ttl_into_their_sql() {
        let mut m = HashMap::new();
        m.insert("set:state_ttl".to_string(), "1 hour".to_string());
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
