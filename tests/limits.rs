//! The connection limit: the client over the limit gets SQLSTATE 53300
//! ("too many clients") and the server keeps serving the others.

mod common;

use std::time::{Duration, Instant};

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_over_the_limit_is_refused_with_53300() {
    // Only this test binary sets it, before its one server starts.
    std::env::set_var("EDDY_MAX_CONNECTIONS", "2");
    let server = Server::start().await;
    std::env::remove_var("EDDY_MAX_CONNECTIONS");
    // Server::start's readiness probe connected and disconnected; wait until its slot is free.
    let c1 = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let c2 = loop {
        match server.connect().await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("second connection not yet accepted: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("second connection refused: {e}"),
        }
    };
    let refused = server
        .connect()
        .await
        .err()
        .expect("a third connection must be refused");
    assert!(
        refused.contains("53300"),
        "expected SQLSTATE 53300, got: {refused}"
    );
    // The two admitted clients still work.
    for c in [&c1, &c2] {
        let rows = c
            .simple_query("SELECT 1")
            .await
            .expect("query on an admitted client");
        assert!(!rows.is_empty());
    }
    // Closing one frees a slot.
    drop(c1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match server.connect().await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(e.contains("53300"), "unexpected error: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("slot was not freed: {e}"),
        }
    }
}

/// Forgotten sessions do not hold the slots forever (issue 14, hole 8): a
/// session that runs no statement for `--idle-session-timeout` seconds is
/// closed, and a new client gets in. A long statement is not idleness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_and_free_their_slots() {
    let server =
        Server::start_with_args(&["--max-connections", "2", "--idle-session-timeout", "1"]).await;
    // The readiness probe's slot must be free first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = server.client().await;
    let idle = server.client().await;
    let refused = server
        .connect()
        .await
        .err()
        .expect("a third client is refused");
    assert!(refused.contains("53300"), "{refused}");
    // A statement longer than the timeout keeps its session.
    let started = Instant::now();
    let rows = busy
        .simple_query("SELECT count(*) FROM generate_series(1, 1000000000)")
        .await
        .expect("a long statement is not idleness");
    assert!(!rows.is_empty());
    assert!(
        started.elapsed() > Duration::from_millis(1200),
        "the statement must outlast the timeout to show anything: {:?}",
        started.elapsed()
    );
    // The idle one has been closed meanwhile; its slot is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match server.connect().await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert!(e.contains("53300"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the idle session's slot never came free: {e}"),
        }
    };
    assert!(
        idle.simple_query("SELECT 1").await.is_err(),
        "the idle session is closed"
    );
    third
        .simple_query("SELECT 1")
        .await
        .expect("the new client works");
}
