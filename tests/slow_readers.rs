//! A client that sends a query for a large result and then stops reading
//! (issue 14) does not slow ingestion: its query waits on the socket, and
//! holds nothing that sources or views need. In a test binary of its own, so
//! that no other test's load skews the two ingest-rate windows it compares.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

/// A raw client that sends a query for a large result and then never reads:
/// the server's socket buffer fills and the query waits, holding nothing
/// that ingestion needs.
fn stalled_reader(port: u16, sql: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut msg = common::startup_message();
    msg.push(b'Q');
    msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    s.write_all(&msg).expect("send");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_slow_ingestion() {
    let server = Server::start().await;
    let c = server.client().await;
    c.batch_execute(&format!(
        "{}
         CREATE TABLE wide (k BIGINT, pad TEXT);
         INSERT INTO wide SELECT value, repeat('x', 200) FROM generate_series(1, 300000);",
        common::CLICKS_20K
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = common::ingest_rate(&c, "clicks", Duration::from_secs(4)).await;
    // About 60 MB of rows, far beyond the socket buffers: the server blocks on this client.
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| stalled_reader(server.port, "SELECT * FROM wide"))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = common::ingest_rate(&c, "clicks", Duration::from_secs(4)).await;
    eprintln!(
        "stalled readers: ingest {before:.0} rows/s before, {during:.0} rows/s with 3 clients \
         not reading 60 MB results"
    );
    assert!(
        during >= before * 0.9,
        "ingest fell from {before:.0} to {during:.0} rows/s"
    );
    // Other clients are served meanwhile.
    common::eventually(&c, "SELECT count(*) FROM per_user", &[&["50"]]).await;
    drop(stalled);
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
}
