//! eddy over HTTP (issue 19), driven for real: `POST /v1/sql` over a plain HTTP socket, a
//! view's changes as Server-Sent Events (resumed with `Last-Event-ID`) and as a WebSocket
//! (tokio-tungstenite), HTTP Basic authentication with the Postgres side's users and roles,
//! and `/metrics` scraped by a real Prometheus (Debian's `prometheus`, started here), whose
//! PromQL answers are checked.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use common::Server;

/// How long a test waits for an event or an answer.
const WAIT: Duration = Duration::from_secs(30);

const SETUP: &str = common::BIDS_PER_AUCTION;

/// A server with HTTP on a port of its own.
async fn start(extra: &[&str]) -> (Server, u16) {
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--http-addr", addr.as_str()];
    args.extend_from_slice(extra);
    (Server::start_with_args(&args).await, port)
}

/// Send an HTTP/1.0 request (the response ends when the server closes the connection).
async fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("send");
    s
}

/// A whole response: status and body.
async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = send(port, method, path, headers, body).await;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// `POST /v1/sql` with a JSON body: status and JSON answer.
async fn sql(port: u16, auth: Option<&str>, text: &str) -> (u16, Value) {
    let body = json!({ "sql": text }).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    let basic;
    if let Some(a) = auth {
        basic = format!("Basic {}", base64(a));
        headers.push(("Authorization", basic.as_str()));
    }
    let (status, body) = request(port, "POST", "/v1/sql", &headers, &body).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn base64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Server-Sent Events read off a socket, one event at a time.
struct Events(BufReader<TcpStream>);

impl Events {
    async fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> Events {
        let mut r = BufReader::new(send(port, "GET", path, headers, "").await);
        let mut line = String::new();
        r.read_line(&mut line).await.expect("status line");
        assert!(line.contains(" 200 "), "{line}");
        loop {
            line.clear();
            r.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                return Events(r);
            }
        }
    }

    /// The next event: (kind, id, data).
    async fn next(&mut self) -> (String, Option<String>, Value) {
        let (mut kind, mut id, mut data) = (String::new(), None, String::new());
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(WAIT, self.0.read_line(&mut line))
                .await
                .expect("an event in time")
                .expect("read");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() && !data.is_empty() {
                return (kind, id, serde_json::from_str(&data).expect("JSON data"));
            }
            if let Some(v) = line.strip_prefix("event: ") {
                kind = v.to_string();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }

    /// Events until a `changes` one; its rows as `op auction n total`, sorted, and its id.
    async fn changes(&mut self) -> (Vec<String>, String) {
        loop {
            let (kind, id, data) = self.next().await;
            if kind == "changes" {
                return (rows_of(&data), id.expect("an id"));
            }
        }
    }
}

fn rows_of(data: &Value) -> Vec<String> {
    let mut rows: Vec<String> = data["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["op"].as_str().expect("op"),
                r["row"]["auction"],
                r["row"]["n"],
                r["row"]["total"]
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_http_answers_rows_commands_and_errors_as_json() {
    let (_server, port) = start(&[]).await;
    let (status, body) = sql(port, None, SETUP).await;
    assert_eq!(status, 200, "{body}");
    let commands: Vec<&str> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["command"].as_str().expect("command"))
        .collect();
    assert_eq!(
        commands,
        ["CREATE TABLE", "CREATE MATERIALIZED VIEW", "INSERT 0 2"]
    );
    // PostgreSQL's notices come along with the command.
    let (status, body) = sql(port, None, "DROP TABLE IF EXISTS nope").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["command"], "DROP TABLE", "{body}");
    assert_eq!(
        body["results"][0]["notices"],
        json!(["table \"nope\" does not exist, skipping"]),
        "{body}"
    );
    // Rows by column name, with PostgreSQL's type names and JSON values.
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        let (status, body) = sql(
            port,
            None,
            "SELECT auction, n, total, TIMESTAMP '2026-01-01 00:00:05' AS at, 1.5::float8 AS f \
             FROM per_auction ORDER BY auction",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["results"][0]["rows"].as_array().map(Vec::len) == Some(2)
            || Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let result = &answer["results"][0];
    assert_eq!(result["command"], "SELECT 2");
    assert_eq!(
        result["columns"],
        json!([{"name": "auction", "type": "int8"}, {"name": "n", "type": "int8"},
               {"name": "total", "type": "int8"}, {"name": "at", "type": "timestamp"},
               {"name": "f", "type": "float8"}])
    );
    assert_eq!(
        result["rows"][1],
        json!({"auction": 2, "n": 1, "total": 20, "at": "2026-01-01T00:00:05", "f": 1.5})
    );
    // The first error stops the rest; the results before it come with it.
    let (status, body) = sql(port, None, "SELECT 1 AS one; SELECT * FROM nope; SELECT 2").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["results"][0]["rows"], json!([{"one": 1}]));
    assert_eq!(body["error"]["code"], "42P01");
    assert!(body["results"].as_array().expect("results").len() == 1);
    // Plain text works too; a session statement says where it belongs.
    let (status, text) = request(port, "POST", "/v1/sql", &[], "SET TimeZone = 'UTC'").await;
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("0A000")),
        "{body}"
    );
    assert!(body["error"]["hint"]
        .as_str()
        .expect("hint")
        .contains("Postgres protocol"));
    let (status, text) = request(port, "POST", "/v1/sql", &[], "SELEC 1").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("42601"), "{text}");
    assert_eq!(
        request(port, "GET", "/healthz", &[], "").await,
        (200, "ok\n".into())
    );
    assert_eq!(
        request(port, "GET", "/readyz", &[], "").await,
        (200, "ready\n".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_push_changes_and_resume_from_the_last_event_id() {
    let (server, port) = start(&[]).await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    let mut events = Events::open(port, "/v1/views/per_auction/changes", &[]).await;
    let (snapshot, id0) = events.changes().await;
    assert_eq!(snapshot, ["insert 1 1 10", "insert 2 1 20"]);
    assert_eq!(
        common::rows(
            &client,
            "SELECT view, via, rows_sent FROM eddy.subscriptions"
        )
        .await
        .expect("subscriptions"),
        [["per_auction", "sse", "2"]]
    );
    client
        .batch_execute("INSERT INTO bids VALUES (1, 5, '2026-01-01 00:00:09')")
        .await
        .expect("insert");
    let (change, id1) = events.changes().await;
    assert_eq!(change, ["delete 1 1 10", "insert 1 2 15"]);
    assert!(id1.parse::<i64>().unwrap() > id0.parse::<i64>().unwrap());
    // The watermark moves with the row's time; a progress event says so.
    loop {
        let (kind, _, data) = events.next().await;
        if kind == "progress" && data["watermark"] == "2026-01-01T00:00:08" {
            break;
        }
    }
    drop(events);
    // Away for a change; back with the last id seen: that change, and nothing before it.
    client
        .batch_execute("INSERT INTO bids VALUES (3, 7, '2026-01-01 00:00:10')")
        .await
        .expect("insert");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["3"]]).await;
    let mut again = Events::open(
        port,
        "/v1/views/per_auction/changes",
        &[("Last-Event-ID", id1.as_str())],
    )
    .await;
    assert_eq!(again.changes().await.0, ["insert 3 1 7"]);
    // A view that does not exist is a 404 with its SQLSTATE.
    let (status, body) = request(port, "GET", "/v1/views/nope/changes", &[], "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("42P01"), "{body}");
    let (status, body) = request(
        port,
        "GET",
        "/v1/views/per_auction/changes?after=x",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_pushes_the_same_changes() {
    let (server, port) = start(&[]).await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    let url = format!("ws://127.0.0.1:{port}/v1/views/per_auction/changes?snapshot=false");
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let mut next_changes = async || loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("a message");
        let data: Value = serde_json::from_str(msg.to_text().expect("text")).expect("JSON");
        if data["type"] == "changes" {
            return rows_of(&data);
        }
    };
    client
        .batch_execute("INSERT INTO bids VALUES (2, 2, '2026-01-01 00:00:02')")
        .await
        .expect("insert");
    assert_eq!(next_changes().await, ["delete 2 1 20", "insert 2 2 22"]);
    ws.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_takes_the_same_users_and_roles_as_postgres() {
    let (_server, http) = start(&[
        "--password",
        "admin-secret",
        "--reader-password",
        "reader-secret",
    ])
    .await;
    let (status, body) = sql(http, None, "SELECT 1").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "28P01");
    let (status, _) = sql(http, Some("eddy:wrong"), "SELECT 1").await;
    assert_eq!(status, 401);
    let (status, _) = sql(http, Some("nobody:admin-secret"), "SELECT 1").await;
    assert_eq!(status, 401);
    let (status, body) = sql(http, Some("eddy:admin-secret"), SETUP).await;
    assert_eq!(status, 200, "{body}");
    // A reader reads (SQL and changes) and may not write.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = sql(
            http,
            Some("reader:reader-secret"),
            "SELECT count(*) AS c FROM per_auction",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["results"][0]["rows"] == json!([{"c": 2}]) {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = sql(
        http,
        Some("reader:reader-secret"),
        "INSERT INTO bids VALUES (9, 9, now())",
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("42501")),
        "{body}"
    );
    let reader = format!("Basic {}", base64("reader:reader-secret"));
    let mut events = Events::open(
        http,
        "/v1/views/per_auction/changes",
        &[("Authorization", reader.as_str())],
    )
    .await;
    assert_eq!(events.changes().await.0, ["insert 1 1 10", "insert 2 1 20"]);
    let (status, _) = request(http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 401, "metrics need a user too");
    let (status, body) = request(
        http,
        "GET",
        "/metrics",
        &[("Authorization", reader.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("eddy_view_rows{view=\"per_auction\"} 2"),
        "{body}"
    );
    // No Postgres client is connected: the connections are all zero.
    assert!(
        body.contains("eddy_connections{state=\"active\"} 0"),
        "{body}"
    );
    assert_eq!(request(http, "GET", "/healthz", &[], "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_metrics() {
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("EDDY_REQUIRE_PROMETHEUS").is_none(),
            "prometheus is not installed (apt-get install prometheus)"
        );
        eprintln!("skipped: prometheus is not installed (.ci/run installs it)");
        return;
    }
    let (server, port) = start(&[]).await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    // Prometheus, scraping eddy every second.
    let dir = common::unique_temp_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: eddy\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("config");
    let web = common::free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(prometheus);
    // PromQL: the table's rows read, and the view's rows, as eddy counts them.
    let query = |q: &str| format!("/api/v1/query?query={q}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let mut seen = (false, false);
    while !(seen.0 && seen.1) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never had the series; last answer: {last}\nlog: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if TcpStream::connect(("127.0.0.1", web)).await.is_err() {
            continue;
        }
        let (_, body) = request(
            web,
            "GET",
            &query("eddy_source_rows_read_total%7Bsource%3D%22bids%22%7D"),
            &[],
            "",
        )
        .await;
        last = body.clone();
        if let Ok(v) = serde_json::from_str::<Value>(&body) {
            seen.0 |= v["data"]["result"][0]["value"][1] == "2";
        }
        let (_, body) = request(
            web,
            "GET",
            &query("eddy_view_rows%7Bview%3D%22per_auction%22%7D"),
            &[],
            "",
        )
        .await;
        if let Ok(v) = serde_json::from_str::<Value>(&body) {
            seen.1 |= v["data"]["result"][0]["value"][1] == "2";
        }
    }
}
