//! What the dashboard shows, from the system tables: `GET /v1/status` pushes, once a second as
//! Server-Sent Events, the sources, views, operators, checkpoints, newest dead letters and
//! subscriptions;
//! `GET /v1/views/{name}/plan` is a view's operator graph (its `EXPLAIN`, one operator a line).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{error_response, AppState};
use crate::catalog::ObjectRef;
use crate::engine::{Engine, Outcome};
use crate::error::{EddyError, Result};

/// How often the status is pushed.
const EVERY: Duration = Duration::from_secs(1);

/// The queries the status is made of, by the name each result goes under.
const PARTS: &[(&str, &str)] = &[
    (
        "sources",
        "SELECT name, connector, status, rows_read, rows_rejected, rows_late, rows_per_s, lag, \
         freshness_ms, watermark, last_error FROM eddy.sources ORDER BY name",
    ),
    (
        "views",
        "SELECT name, status, rows, state_bytes, rows_late, rows_per_s, freshness_ms, \
         subscribers, watermark, last_error FROM eddy.views ORDER BY name",
    ),
    (
        "operators",
        "SELECT view, operator, explain, sum(rows_in) AS rows_in, sum(rows_out) AS rows_out, \
         sum(state_bytes) AS state_bytes, sum(blocked_ms) AS blocked_ms FROM eddy.operators \
         GROUP BY view, operator, explain",
    ),
    (
        "checkpoints",
        "SELECT epoch, started_at, status, trigger, duration_ms, bytes FROM eddy.checkpoints \
         ORDER BY epoch DESC LIMIT 30",
    ),
    (
        "dead_letters",
        "SELECT id, source, error, received_at FROM eddy.dead_letters ORDER BY id DESC LIMIT 10",
    ),
    (
        "subscriptions",
        "SELECT id, view, via, rows_sent, buffered FROM eddy.subscriptions ORDER BY id",
    ),
    (
        "connections",
        "SELECT count(*) AS open, count(*) FILTER (WHERE state = 'active') AS active \
         FROM eddy.connections",
    ),
];

/// A query's rows as JSON objects (at most [`super::sql::MAX_ROWS`]).
pub async fn rows_json(engine: &Engine, sql: &str) -> Result<Vec<Value>> {
    let df = engine.query(sql).await?;
    let mut rows = Vec::new();
    for batch in df.collect().await? {
        if rows.len() + batch.num_rows() > super::sql::MAX_ROWS {
            return Err(EddyError::LimitExceeded(format!(
                "more than {} rows",
                super::sql::MAX_ROWS
            )));
        }
        rows.extend(
            (0..batch.num_rows()).map(|i| Value::Object(super::json::row_object(&batch, 0, i))),
        );
    }
    Ok(rows)
}

/// The status now.
async fn status(engine: &Engine) -> Value {
    let mut out = json!({});
    for (name, sql) in PARTS {
        out[*name] = match rows_json(engine, sql).await {
            Ok(rows) => Value::Array(rows),
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    out
}

/// `GET /v1/status`: the status, once a second.
pub async fn stream(State(state): State<AppState>) -> Response {
    let events =
        futures::stream::unfold((state.engine.clone(), true), |(engine, first)| async move {
            if !first {
                tokio::time::sleep(EVERY).await;
            }
            let body = status(&engine).await;
            let event = Event::default().event("status").data(body.to_string());
            Some((Ok::<_, std::convert::Infallible>(event), (engine, false)))
        });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /v1/views/{name}/plan`: `{"view": name, "lines": [...]}`.
pub async fn plan(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match explain(&state.engine, &name).await {
        Ok(lines) => Json(json!({"view": name, "lines": lines})).into_response(),
        Err(e) => error_response(e),
    }
}

async fn explain(engine: &Engine, name: &str) -> Result<Vec<String>> {
    let sql = engine
        .catalog()
        .with(|e| match e.get(name) {
            Some(entry) if matches!(entry.object, ObjectRef::View(_)) => Some(entry.sql.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            EddyError::UndefinedObject(format!("materialized view \"{name}\" does not exist"))
        })?;
    let mut statements = crate::sql::parse(&format!("EXPLAIN {sql}"))?;
    let stmt = statements
        .pop()
        .ok_or_else(|| EddyError::Internal("EXPLAIN of a view parsed to nothing".into()))?;
    let Outcome::Rows(df) = engine.execute(stmt).await? else {
        return Err(EddyError::Internal("EXPLAIN gave no rows".into()));
    };
    let mut lines = Vec::new();
    for batch in df.collect().await? {
        for i in 0..batch.num_rows() {
            let mut line = String::new();
            for c in batch.columns() {
                crate::pgtext::write_text(c.as_ref(), i, crate::pgtext::Style::OUTPUT, &mut line);
            }
            lines.push(line);
        }
    }
    Ok(lines)
}
