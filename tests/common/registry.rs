//! A stand-in for a Confluent-compatible schema registry, on a loopback
//! port in the test process, and Avro encoding helpers.
//!
//! No Confluent-compatible registry can be installed on these machines
//! (Confluent's is not in the package registries we reach; karapace needs a
//! real Kafka), so this small HTTP server speaks the calls eddy makes, as
//! Confluent's registry answers them:
//! - `GET /schemas/ids/{id}`: `{"schema": "…"}` (with `"schemaType": "JSON"`
//!   for a JSON Schema, one whose `type` is `object` — an Avro record's is
//!   `record` — and `"PROTOBUF"` for text that is not JSON, `.proto`), or
//!   404 with error code 40403;
//! - `POST /subjects/{subject}/versions` with `{"schema": "…"}`: `{"id": n}`,
//!   the same id for the same schema (under any subject).
//!
//! Every call must carry Basic authentication for user `u`, password `p`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

/// `Authorization` for user `u`, password `p`.
pub const BASIC_AUTH: &str = "Basic dTpw";

/// What the registry holds.
#[derive(Default)]
pub struct Registered {
    /// Schemas by id.
    pub schemas: HashMap<u32, String>,
    /// Ids registered under each subject, in order.
    pub subjects: BTreeMap<String, Vec<u32>>,
}

type Shared = Arc<Mutex<Registered>>;

/// A registry on a loopback port, until stopped.
pub struct FakeRegistry {
    addr: SocketAddr,
    state: Shared,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// No keep-alive: a stopped registry must refuse connections, not answer on
/// a connection kept from before.
const CLOSE: [(header::HeaderName, &str); 1] = [(header::CONNECTION, "close")];

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(BASIC_AUTH)
}

async fn schema_by_id(
    State(state): State<Shared>,
    Path(id): Path<u32>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, CLOSE, "who are you?").into_response();
    }
    let schema = state
        .lock()
        .expect("registry state")
        .schemas
        .get(&id)
        .cloned();
    match schema {
        Some(s) => {
            let kind = match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(v) if v["type"] == "object" => Some("JSON"),
                Ok(_) => None,
                Err(_) => Some("PROTOBUF"),
            };
            let answer = match kind {
                Some(k) => serde_json::json!({ "schema": s, "schemaType": k }),
                None => serde_json::json!({ "schema": s }),
            };
            (CLOSE, Json(answer)).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            CLOSE,
            Json(serde_json::json!({ "error_code": 40403, "message": "Schema not found" })),
        )
            .into_response(),
    }
}

async fn register(
    State(state): State<Shared>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, CLOSE, "who are you?").into_response();
    }
    let schema = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["schema"].as_str().map(str::to_string));
    // Confluent checks the schema parses as Avro; JSON is as far as this one goes.
    let Some(schema) = schema.filter(|s| serde_json::from_str::<serde_json::Value>(s).is_ok())
    else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            CLOSE,
            Json(serde_json::json!({ "error_code": 42201, "message": "Invalid schema" })),
        )
            .into_response();
    };
    let mut r = state.lock().expect("registry state");
    let found = r
        .schemas
        .iter()
        .find(|(_, s)| **s == schema)
        .map(|(id, _)| *id);
    let id = found.unwrap_or_else(|| {
        let id = r.schemas.keys().max().map_or(1, |m| m + 1);
        r.schemas.insert(id, schema);
        id
    });
    let versions = r.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    (CLOSE, Json(serde_json::json!({ "id": id }))).into_response()
}

impl FakeRegistry {
    /// A registry holding `schemas` by id, listening on `addr` (port 0: any).
    pub async fn start(addr: SocketAddr, schemas: HashMap<u32, String>) -> FakeRegistry {
        let state = Arc::new(Mutex::new(Registered {
            schemas,
            ..Registered::default()
        }));
        Self::serve(addr, state).await
    }

    async fn serve(addr: SocketAddr, state: Shared) -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the registry");
        let addr = listener.local_addr().expect("registry address");
        let app = Router::new()
            .route("/schemas/ids/{id}", get(schema_by_id))
            .route("/subjects/{subject}/versions", post(register))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRegistry {
            addr,
            state,
            task: Some(task),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The schema registered under `subject` last, with its id.
    pub fn latest(&self, subject: &str) -> Option<(u32, String)> {
        let r = self.state.lock().expect("registry state");
        let id = *r.subjects.get(subject)?.last()?;
        Some((id, r.schemas.get(&id)?.clone()))
    }

    /// Stop listening: connections are refused from now on.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listen again on the same address, with the same schemas.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = FakeRegistry::serve(self.addr, self.state.clone()).await;
    }
}

/// Avro `string`, appended to `out`.
pub fn avro_string(s: &str, out: &mut Vec<u8>) {
    super::kafka::avro_long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Confluent wire format: 0, the schema id (big-endian), the datum.
pub fn framed(id: u32, datum: Vec<u8>) -> Vec<u8> {
    [vec![0], id.to_be_bytes().to_vec(), datum].concat()
}
