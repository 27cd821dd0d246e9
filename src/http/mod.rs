//! eddy over HTTP (`--http-addr`), on the same runtime as the Postgres protocol:
//!
//! - `GET /v1/views/{name}/changes`: a view's changes as Server-Sent Events, or as a
//!   WebSocket when the request asks to upgrade ([`changes`]);
//! - `POST /v1/sql`: statements in, JSON out, for scripts ([`sql`]);
//! - `GET /metrics`: Prometheus' text format ([`metrics`]);
//! - `GET /`: a live dashboard (one page, in the binary), fed by `GET /v1/status` and
//!   `GET /v1/views/{name}/plan` ([`status`]);
//! - `GET /healthz` (the process answers) and `GET /readyz` (it has restored its catalog and
//!   serves), open to anyone, as probes are.
//!
//! When the Postgres side has passwords, so has this one: HTTP Basic authentication against
//! the same users, and a `reader` may only read (as over the Postgres protocol).

pub mod changes;
pub mod json;
pub mod metrics;
pub mod sql;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;

use crate::engine::credentials::{Credentials, Role};
use crate::engine::Engine;
use crate::error::EddyError;

/// Who may use the HTTP endpoints.
#[derive(Clone)]
pub enum HttpAuth {
    /// Anyone, as an admin (the Postgres side trusts too).
    Trust,
    /// HTTP Basic against these users.
    Password(Arc<Credentials>),
}

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    engine: Arc<Engine>,
    auth: HttpAuth,
    metrics: Arc<metrics::Metrics>,
}

/// The role a request was authenticated with (set by the auth layer).
#[derive(Clone, Copy)]
pub struct Caller(pub Role);

/// Serve HTTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    auth: HttpAuth,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState {
        metrics: Arc::new(metrics::Metrics::new(engine.clone())),
        engine,
        auth,
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/", get(dashboard))
        .route("/v1/status", get(status::stream))
        .route("/v1/views/{name}/plan", get(status::plan))
        .route("/v1/views/{name}/changes", get(changes::changes))
        .route("/v1/sql", post(sql::sql))
        .route("/metrics", get(metrics::scrape))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .merge(guarded)
        .with_state(state)
}

/// The dashboard page: static, embedded in the binary; it reads `/v1/status`.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

/// An error as a JSON response (see [`error_parts`]).
pub fn error_response(e: EddyError) -> Response {
    let (status, error) = error_parts(e);
    (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
}

/// An error as JSON, with its SQLSTATE (and hint, detail, position where it has them), and
/// the HTTP status that fits it.
pub fn error_parts(e: EddyError) -> (StatusCode, serde_json::Value) {
    let code = e.sqlstate();
    let status = match &code[..2] {
        "28" => StatusCode::UNAUTHORIZED,
        "42" if code == "42501" => StatusCode::FORBIDDEN,
        "42" if code == "42P01" || code == "42704" => StatusCode::NOT_FOUND,
        "53" | "54" => StatusCode::SERVICE_UNAVAILABLE,
        "57" if code == "57014" => StatusCode::REQUEST_TIMEOUT,
        "XX" | "58" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut error = serde_json::json!({"code": code, "message": e.to_string()});
    if let pgwire::error::PgWireError::UserError(info) = e.into_pg() {
        for (key, value) in [
            ("hint", info.hint),
            ("detail", info.detail),
            ("position", info.position),
        ] {
            if let Some(v) = value {
                error[key] = v.into();
            }
        }
    }
    (status, error)
}

/// Check HTTP Basic credentials where passwords are on; remember the caller's role.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let role = match &state.auth {
        HttpAuth::Trust => Some(Role::Admin),
        HttpAuth::Password(c) => match basic(req.headers()) {
            Some((user, password)) => {
                let c = c.clone();
                // PBKDF2 is deliberately slow: not on the runtime's threads.
                tokio::task::spawn_blocking(move || c.check_password(&user, &password))
                    .await
                    .ok()
                    .flatten()
            }
            None => None,
        },
    };
    let Some(role) = role else {
        let mut r = error_response(EddyError::Data {
            code: "28P01",
            message: "password authentication failed: give a user and password with HTTP \
                      Basic authentication"
                .into(),
        });
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"eddy\""),
        );
        return r;
    };
    req.extensions_mut().insert(Caller(role));
    next.run(req).await
}

/// The user and password of a Basic `Authorization` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
