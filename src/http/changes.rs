//! `GET /v1/views/{name}/changes`: a view's changes pushed as they happen, as Server-Sent
//! Events (what `curl -N` and a browser's `EventSource` read), or as a WebSocket when the
//! request asks to upgrade. The same subscription as `SUBSCRIBE … WITH (PROGRESS)`:
//!
//! - `changes`: `{"type":"changes","position":P,"rows":[{"op":"insert","diff":1,"row":{…}}]}`,
//!   every row the view changed at position P (the snapshot first, at the position it is as of);
//! - `progress`: `{"type":"progress","position":P,"watermark":"…"}`: everything up to P is sent;
//! - `error`: why the stream ended (fell behind, view dropped or failed), with its SQLSTATE.
//!
//! An event's id is its position, so a client that reconnects with `Last-Event-ID` (as
//! `EventSource` does by itself) or `?after=P` gets exactly the changes after it. `?snapshot=false`
//! starts with the next change.

use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, TimestampNanosecondType};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use super::{error_response, AppState, Caller};
use crate::engine::credentials::check_privilege;
use crate::error::{EddyError, Result};
use crate::sql::subscribe::{Subscribe, SubscribeSource};
use crate::sql::Statement;
use crate::views::subscription::Subscription;

/// How often an idle stream sends a keep-alive (so a client that went away is noticed).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One value of a query string (`a=1&b=2`), undecoded (positions and booleans need none).
fn param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bad_param(name: &str, value: &str, want: &str) -> Response {
    error_response(EddyError::InvalidParameter {
        message: format!("invalid value for {name}: \"{value}\""),
        hint: Some(want.into()),
    })
}

/// The handler.
pub async fn changes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    let query = query.as_deref();
    let last_event = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match param(query, "after").or(last_event) {
        None | Some("") => None,
        Some(v) => match v.parse::<i64>() {
            Ok(p) if p >= 0 => Some(p),
            _ => return bad_param("after", v, "Give a position this view sent (an event id)."),
        },
    };
    let snapshot = match param(query, "snapshot") {
        None => after.is_none(),
        Some("true") if after.is_none() => true,
        Some("false") => false,
        Some(v) => {
            return bad_param(
                "snapshot",
                v,
                "snapshot=true or snapshot=false (a resume with after= sends no snapshot).",
            )
        }
    };
    let sub = Subscribe {
        source: SubscribeSource::View(name),
        snapshot,
        progress: true,
        as_of: after,
    };
    let stmt = Statement::Subscribe(sub);
    if let Err(e) = check_privilege(Some(caller.0), "", &stmt) {
        return error_response(e);
    }
    let Statement::Subscribe(sub) = stmt else {
        return error_response(EddyError::Internal("not a subscription".into()));
    };
    let via = if ws.is_ok() { "websocket" } else { "sse" };
    let subscription = match state.engine.subscribe(&sub, via).await {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    match ws {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| websocket(socket, subscription)),
        Err(_) => {
            let events = messages(subscription).map(|(kind, id, body)| {
                let event = Event::default().event(kind).data(body.to_string());
                Ok::<_, std::convert::Infallible>(match id {
                    Some(p) => event.id(p.to_string()),
                    None => event,
                })
            });
            Sse::new(events)
                .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
                .into_response()
        }
    }
}

/// Push the subscription over a WebSocket until either side ends it.
async fn websocket(mut socket: WebSocket, subscription: Subscription) {
    let mut out = Box::pin(messages(subscription));
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                // The client said goodbye, or went away.
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                Some(Ok(_)) => {}
            },
            next = out.next() => {
                let Some((_, _, body)) = next else { return };
                if socket.send(WsMessage::text(body.to_string())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The subscription's rows as (event kind, id, JSON body); an error ends it with an `error`.
fn messages(subscription: Subscription) -> impl Stream<Item = (&'static str, Option<i64>, Value)> {
    futures::stream::unfold(Some(subscription), |sub| async move {
        let mut sub = sub?;
        let batch = sub.next().await?;
        Some(
            match batch.map_err(EddyError::from).and_then(|b| to_json(&b)) {
                Ok(m) => (m, Some(sub)),
                Err(e) => {
                    let body =
                        json!({"type": "error", "code": e.sqlstate(), "message": e.to_string()});
                    (("error", None, body), None)
                }
            },
        )
    })
}

/// A subscription batch (all its rows progress rows, or all changes at one position) as JSON.
fn to_json(batch: &RecordBatch) -> Result<(&'static str, Option<i64>, Value)> {
    let column = |i: usize| batch.column(i).as_ref();
    let position = column(0).as_primitive::<Int64Type>();
    let progressed = column(1).as_boolean();
    let watermark = column(2).as_primitive::<TimestampNanosecondType>();
    let last = batch
        .num_rows()
        .checked_sub(1)
        .ok_or_else(|| EddyError::Internal("a subscription sent an empty batch".into()))?;
    let p = position.value(last);
    let wm = super::json::value(watermark, last);
    if progressed.value(last) {
        return Ok((
            "progress",
            Some(p),
            json!({"type": "progress", "position": p, "watermark": wm}),
        ));
    }
    let diff = column(3).as_primitive::<Int64Type>();
    let rows: Vec<Value> = (0..batch.num_rows())
        .map(|i| {
            let d = if diff.is_null(i) { 0 } else { diff.value(i) };
            json!({
                "op": if d < 0 { "delete" } else { "insert" },
                "diff": d,
                "row": super::json::row_object(batch, 4, i),
            })
        })
        .collect();
    Ok((
        "changes",
        Some(p),
        json!({"type": "changes", "position": p, "watermark": wm, "rows": rows}),
    ))
}
