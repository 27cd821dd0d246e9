//! `POST /v1/sql`: statements in (a JSON body `{"sql": "…"}`, or the SQL as plain text), JSON
//! out, for scripts that would rather not speak the Postgres protocol:
//!
//! ```json
//! {"results": [{"command": "CREATE TABLE"},
//!              {"command": "SELECT 2", "columns": [{"name": "n", "type": "int8"}],
//!               "rows": [{"n": 1}, {"n": 2}]}]}
//! ```
//!
//! Statements run in order, as psql's `-c` runs them; the first error stops the rest and is
//! answered with its SQLSTATE, after the results of those that ran. A result may have at most
//! [`MAX_ROWS`] rows (add LIMIT, or read it with COPY over the Postgres protocol). Each request
//! is a session of its own: SET, transactions, cursors, COPY and SUBSCRIBE belong to the
//! Postgres protocol (the changes endpoint is HTTP's SUBSCRIBE).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::{json, Value};

use super::{error_parts, error_response, AppState, Caller};
use crate::engine::credentials::check_privilege;
use crate::engine::interrupt::Interrupt;
use crate::engine::Outcome;
use crate::error::{EddyError, Result};
use crate::sql::column_names::ResultNames;
use crate::sql::Statement;

/// Most rows one result may have.
pub const MAX_ROWS: usize = 100_000;
/// Most bytes of SQL one request may send.
pub const MAX_SQL_BYTES: usize = 1 << 20;

/// The handler.
pub async fn sql(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = match sql_text(&headers, &body) {
        Ok(t) => t,
        Err(e) => return error_response(e),
    };
    let statements = match crate::sql::parse(&text) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    let mut results = Vec::new();
    for stmt in statements {
        match run(&state, caller, stmt).await {
            Ok(r) => results.push(r),
            Err(e) => {
                // The results of the statements that ran go with the error.
                let (status, error) = error_parts(e);
                return (status, Json(json!({ "results": results, "error": error })))
                    .into_response();
            }
        }
    }
    (StatusCode::OK, Json(json!({ "results": results }))).into_response()
}

/// The SQL of the request: `{"sql": "…"}` when it says it is JSON, else the body as text.
fn sql_text(headers: &HeaderMap, body: &Bytes) -> Result<String> {
    if body.len() > MAX_SQL_BYTES {
        return Err(EddyError::LimitExceeded(format!(
            "the SQL is {} bytes; a request may send {MAX_SQL_BYTES}",
            body.len()
        )));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        let v: Value = serde_json::from_slice(body).map_err(|e| EddyError::InvalidParameter {
            message: format!("the body is not JSON: {e}"),
            hint: Some("Send {\"sql\": \"SELECT …\"}, or the SQL as text/plain.".into()),
        })?;
        return v["sql"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| EddyError::InvalidParameter {
                message: "the JSON body has no \"sql\" string".into(),
                hint: Some("Send {\"sql\": \"SELECT …\"}.".into()),
            });
    }
    String::from_utf8(body.to_vec()).map_err(|_| EddyError::Data {
        code: "22021",
        message: "the SQL is not UTF-8".into(),
    })
}

/// Run one statement: its command tag, and its rows if it has any.
async fn run(state: &AppState, caller: Caller, stmt: Statement) -> Result<Value> {
    check_privilege(Some(caller.0), "", &stmt)?;
    if let Statement::Session(_)
    | Statement::Copy(_)
    | Statement::Cursor(_)
    | Statement::Subscribe(_) = stmt
    {
        return Err(EddyError::NotSupported {
            message: "this statement is not available over HTTP: each request is a session of \
                      its own"
                .into(),
            hint: Some(
                "Use the Postgres protocol (psql, a driver) for SET, transactions, cursors and \
                 COPY; GET /v1/views/{name}/changes streams a view's changes."
                    .into(),
            ),
        });
    }
    let names = match &stmt {
        Statement::Query(q, _) => ResultNames::of(q),
        _ => None,
    };
    let mut interrupt = Interrupt::none();
    let (notices, outcome) = state
        .engine
        .execute_interruptible(stmt, None, &mut interrupt)
        .await?
        .split_notices();
    let mut answer = match outcome {
        Outcome::Command { tag, rows } => json!({ "command": command(&tag, rows) }),
        Outcome::Rows(df) => {
            let mut batches = df.execute_stream().await?;
            let schema = match &names {
                Some(n) => n.apply(&batches.schema()),
                None => batches.schema(),
            };
            let columns: Vec<Value> = schema
                .fields()
                .iter()
                .map(|f| {
                    let t = arrow_pg::datatypes::into_pg_type(f.data_type())
                        .map(|t| t.name().to_string())
                        .unwrap_or_else(|_| f.data_type().to_string());
                    json!({"name": f.name(), "type": t})
                })
                .collect();
            let mut rows = Vec::new();
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                if rows.len() + batch.num_rows() > MAX_ROWS {
                    return Err(EddyError::LimitExceeded(format!(
                        "the result has more than {MAX_ROWS} rows, more than one HTTP response \
                         may carry: add LIMIT, or read it with COPY over the Postgres protocol"
                    )));
                }
                let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
                    schema.clone(),
                    batch.columns().to_vec(),
                )?;
                rows.extend(
                    (0..batch.num_rows())
                        .map(|i| Value::Object(super::json::row_object(&batch, 0, i))),
                );
            }
            json!({
                "command": format!("SELECT {}", rows.len()),
                "columns": columns,
                "rows": rows,
            })
        }
        Outcome::Noticed { .. } => {
            return Err(EddyError::Internal(
                "a notice left after split_notices".into(),
            ))
        }
    };
    if !notices.is_empty() {
        answer["notices"] = json!(notices);
    }
    Ok(answer)
}

/// The command tag as PostgreSQL writes it (`INSERT 0 3`, `DELETE 2`, `CREATE TABLE`).
fn command(tag: &str, rows: Option<usize>) -> String {
    match (tag, rows) {
        ("INSERT", Some(n)) => format!("INSERT 0 {n}"),
        (_, Some(n)) => format!("{tag} {n}"),
        _ => tag.to_string(),
    }
}
