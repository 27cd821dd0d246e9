//! The canonical text of a view definition: what is stored for it when the
//! statement as typed is not what it means (a session's `SET state_ttl`).

use super::{CreateView, EmitMode};

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

/// `name` as a quoted SQL identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
