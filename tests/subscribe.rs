//! SUBSCRIBE over the real wire protocol (issue 19): a view's snapshot, then its changes as
//! they happen, with positions and progress rows; as COPY data (what psql shows), as rows of
//! the extended protocol (drivers' streaming reads) and through a cursor's FETCH; a query's
//! filter and projection; resuming from a position, also across a SIGKILL; and a subscriber
//! that stops reading cut off while the view and a fast subscriber go on.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio_postgres::types::ToSql;

use common::{error_text, rows, PgClient, Server};

/// How long a test waits for the next row of a subscription.
const ROW_WAIT: Duration = Duration::from_secs(30);

const SETUP: &str = common::BIDS_PER_AUCTION;

/// One COPY row's fields.
type Line = Vec<String>;

/// The next COPY row of a subscription, as text fields.
async fn next_line<S>(copy: &mut S) -> Line
where
    S: Stream<Item = Result<Bytes, tokio_postgres::Error>> + Unpin,
{
    let data = tokio::time::timeout(ROW_WAIT, copy.next())
        .await
        .expect("a subscription row within the wait")
        .expect("the subscription goes on")
        .unwrap_or_else(|e| panic!("subscription failed: {}", error_text(&e)));
    String::from_utf8_lossy(&data)
        .trim_end_matches('\n')
        .split('\t')
        .map(str::to_string)
        .collect()
}

/// COPY rows up to and including the next progress row (`eddy_progressed` = t).
async fn until_progress<S>(copy: &mut S) -> (Vec<Line>, Line)
where
    S: Stream<Item = Result<Bytes, tokio_postgres::Error>> + Unpin,
{
    let mut data = Vec::new();
    loop {
        let line = next_line(copy).await;
        if line[1] == "t" {
            return (data, line);
        }
        data.push(line);
    }
}

/// Data rows without their position and watermark: diff, then the columns, sorted.
fn changes(lines: &[Line]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|l| l[3..].join(" ")).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_subscribe_sends_the_snapshot_then_each_change_with_progress() {
    let server = Server::start().await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    let reader = server.client().await;
    let copy = reader
        .copy_out("COPY (SUBSCRIBE TO per_auction WITH (PROGRESS)) TO STDOUT")
        .await
        .expect("subscribe");
    futures::pin_mut!(copy);
    // The snapshot: the view's rows as inserts at one position, then progress at it.
    let (snapshot, progress) = until_progress(&mut copy).await;
    assert_eq!(changes(&snapshot), ["1 1 1 10", "1 2 1 20"]);
    assert!(snapshot.iter().all(|l| l[0] == progress[0] && l[1] == "f"));
    assert_eq!(&progress[3..], ["\\N"; 4]);
    let p0: i64 = progress[0].parse().expect("position");
    // The subscription and its connection, as the system tables show them.
    assert_eq!(
        rows(
            &client,
            "SELECT view, via, rows_sent, position FROM eddy.subscriptions"
        )
        .await
        .expect("subscriptions"),
        [["per_auction", "copy", "2", progress[0].as_str()]]
    );
    let sessions = rows(
        &client,
        "SELECT state, user_name FROM eddy.connections WHERE query LIKE 'COPY (SUBSCRIBE%'",
    )
    .await
    .expect("connections");
    assert_eq!(sessions, [["active", "eddy"]]);
    // A change: the old row retracted, the new one inserted, at a later position; the
    // watermark moves with the new row's time.
    client
        .batch_execute("INSERT INTO bids VALUES (1, 5, '2026-01-01 00:00:09')")
        .await
        .expect("insert");
    let mut seen = Vec::new();
    let progress = loop {
        let (data, progress) = until_progress(&mut copy).await;
        seen.extend(data);
        if progress[2] == "2026-01-01 00:00:08" {
            break progress;
        }
    };
    assert_eq!(changes(&seen), ["-1 1 1 10", "1 1 2 15"]);
    // The aggregate (over its partitions) took the three rows in and sent four changes out (two inserts,
    // then a retraction and an insert), as eddy.operators counts them.
    assert_eq!(
        rows(
            &client,
            "SELECT sum(rows_in), sum(rows_out) FROM eddy.operators \
             WHERE view = 'per_auction' AND operator = 'aggregate'",
        )
        .await
        .expect("operators"),
        [["3", "4"]]
    );
    // EXPLAIN ANALYZE shows the same under the aggregate of the view's graph.
    let plan: Vec<String> = rows(&client, "EXPLAIN ANALYZE MATERIALIZED VIEW per_auction")
        .await
        .expect("explain analyze")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let at = plan
        .iter()
        .position(|l| l.trim_start().starts_with("Aggregate:"))
        .unwrap_or_else(|| panic!("{plan:#?}"));
    assert!(plan[at + 1].contains("rows_in=3 rows_out=4"), "{plan:#?}");
    assert!(
        plan.last()
            .is_some_and(|l| l.contains("view: rows=2") && l.contains("subscribers=1")),
        "{plan:#?}"
    );
    let p1: i64 = seen[0][0].parse().expect("position");
    assert!(p1 > p0, "positions go up: {p0} then {p1}");
    assert!(progress[0].parse::<i64>().expect("position") >= p1);
    // A cancel request ends the subscription, and the connection goes on.
    stop(&reader).await;
    let err = copy.next().await.expect("the end").expect_err("canceled");
    assert!(
        error_text(&err).starts_with("57014"),
        "{}",
        error_text(&err)
    );
    assert_eq!(
        rows(
            &reader,
            "SELECT n, total FROM per_auction WHERE auction = 1"
        )
        .await
        .expect("select"),
        [["2", "15"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_rows_of_a_query_and_refuses_what_needs_state() {
    let server = Server::start().await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    // The extended protocol, as drivers stream rows: each row arrives as it is sent.
    let reader = server.client().await;
    let stmt = reader
        .prepare(
            "SUBSCRIBE (SELECT auction, total * 2 AS doubled FROM per_auction WHERE total > 12)",
        )
        .await
        .expect("prepare");
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["eddy_position", "eddy_diff", "auction", "doubled"]);
    let params: [&(dyn ToSql + Sync); 0] = [];
    let stream = reader.query_raw(&stmt, params).await.expect("subscribe");
    futures::pin_mut!(stream);
    async fn next<S>(stream: &mut S) -> (i64, i64, i64)
    where
        S: Stream<Item = Result<tokio_postgres::Row, tokio_postgres::Error>> + Unpin,
    {
        let row = tokio::time::timeout(ROW_WAIT, stream.next())
            .await
            .expect("a row within the wait")
            .expect("the subscription goes on")
            .expect("a row");
        (row.get(1), row.get(2), row.get(3))
    }
    assert_eq!(next(&mut stream).await, (1, 2, 40));
    client
        .batch_execute("INSERT INTO bids VALUES (1, 5, '2026-01-01 00:00:02')")
        .await
        .expect("insert");
    // Auction 1 now has total 15: its new row passes the filter (the retraction of the old
    // one, total 10, does not).
    assert_eq!(next(&mut stream).await, (1, 1, 30));
    for (sql, state, words) in [
        (
            "SUBSCRIBE (SELECT count(*) FROM per_auction)",
            "0A000",
            "aggregate",
        ),
        (
            "SUBSCRIBE (SELECT * FROM per_auction ORDER BY total)",
            "0A000",
            "ORDER BY",
        ),
        ("SUBSCRIBE bids", "0A000", "not a materialized view"),
        ("SUBSCRIBE nope", "42P01", "does not exist"),
        (
            "SUBSCRIBE per_auction WITH (snapshoot = false)",
            "42601",
            "snapshoot",
        ),
        ("SUBSCRIBE per_auction AS OF 5", "22023", "no longer kept"),
    ] {
        let err = client.simple_query(sql).await.expect_err(sql);
        let text = error_text(&err);
        assert!(
            text.starts_with(state) && text.contains(words),
            "{sql}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_fetch_waits_for_changes_up_to_its_timeout() {
    let server = Server::start().await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    let reader = server.client().await;
    reader
        .batch_execute("BEGIN; DECLARE c CURSOR FOR SUBSCRIBE per_auction")
        .await
        .expect("declare");
    // The snapshot is there at once; FETCH takes what has come, up to its count.
    assert_eq!(rows(&reader, "FETCH 1 c").await.expect("fetch").len(), 1);
    assert_eq!(rows(&reader, "FETCH ALL c").await.expect("fetch").len(), 1);
    let started = Instant::now();
    let none = rows(&reader, "FETCH ALL c WITH (timeout = '300ms')").await;
    assert_eq!(none.expect("fetch").len(), 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
    client
        .batch_execute("INSERT INTO bids VALUES (3, 7, '2026-01-01 00:00:02')")
        .await
        .expect("insert");
    // Without a timeout, FETCH waits for the change.
    let got = rows(&reader, "FETCH ALL FROM c").await.expect("fetch");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][1..], ["1", "3", "1", "7"]);
    reader
        .batch_execute("CLOSE c; COMMIT")
        .await
        .expect("close");
}

/// Stop `client`'s subscription (a cancel request, as psql's Ctrl-C): the connection goes on.
async fn stop(client: &PgClient) {
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel");
}

/// The data rows of a subscription `AS OF position` until its first progress row.
async fn resume(client: &PgClient, view: &str, position: &str) -> Result<Vec<Line>, String> {
    let sql = format!("COPY (SUBSCRIBE {view} WITH (PROGRESS) AS OF {position}) TO STDOUT");
    let copy = client.copy_out(&sql).await.map_err(|e| error_text(&e))?;
    futures::pin_mut!(copy);
    let data = until_progress(&mut copy).await.0;
    stop(client).await;
    Ok(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_from_its_last_position_also_after_a_crash() {
    let dir = common::unique_temp_dir();
    let mut server = Server::start_in(&dir).await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    let reader = server.client().await;
    let last = {
        let copy = reader
            .copy_out("COPY (SUBSCRIBE per_auction WITH (PROGRESS)) TO STDOUT")
            .await
            .expect("subscribe");
        futures::pin_mut!(copy);
        let last = until_progress(&mut copy).await.1[0].clone();
        stop(&reader).await;
        last
    };
    // Changes while the client is away come to it on resume, and nothing else.
    client
        .batch_execute("INSERT INTO bids VALUES (2, 4, '2026-01-01 00:00:03')")
        .await
        .expect("insert");
    common::eventually(
        &client,
        "SELECT n FROM per_auction WHERE auction = 2",
        &[&["2"]],
    )
    .await;
    let missed = resume(&reader, "per_auction", &last).await.expect("resume");
    assert_eq!(changes(&missed), ["-1 2 1 20", "1 2 2 24"]);
    let checkpointed = missed[0][0].clone();
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    // After the checkpoint: a change the client sees, then a crash before the next one.
    client
        .batch_execute("INSERT INTO bids VALUES (1, 1, '2026-01-01 00:00:04')")
        .await
        .expect("insert");
    common::eventually(
        &client,
        "SELECT n FROM per_auction WHERE auction = 1",
        &[&["2"]],
    )
    .await;
    let lost = resume(&reader, "per_auction", &checkpointed)
        .await
        .expect("resume");
    assert_eq!(changes(&lost), ["-1 1 1 10", "1 1 2 11"]);
    let lost_position = lost[0][0].clone();
    drop((client, reader));
    server.kill();
    let server = Server::start_in(&dir).await;
    let client = server.client().await;
    common::eventually(
        &client,
        "SELECT n FROM per_auction WHERE auction = 1",
        &[&["2"]],
    )
    .await;
    // The checkpoint's position resumes: the change after it comes again (the view made it
    // again from the table's log), once.
    let again = resume(&client, "per_auction", &checkpointed)
        .await
        .expect("resume after the crash");
    assert_eq!(changes(&again), ["-1 1 1 10", "1 1 2 11"]);
    assert!(again[0][0].parse::<i64>().unwrap() > lost_position.parse::<i64>().unwrap());
    // A position from after the checkpoint, before the crash, is refused, not resumed with
    // the change twice.
    let err = resume(&client, "per_auction", &lost_position)
        .await
        .expect_err("a position the restart undid");
    assert!(err.starts_with("22023") && err.contains("restart"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_cut_off_and_no_one_waits_for_it() {
    let server = Server::start_with_args(&["--subscribe-buffer", "8"]).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE SOURCE clicks (id BIGINT NOT NULL, user_id INT, ts TIMESTAMP NOT NULL,
                                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'datagen', rows_per_second = '20000', number_of_rows = '100000',
                   seed = '7', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
                   'fields.user_id.min' = '1', 'fields.user_id.max' = '50');
             CREATE MATERIALIZED VIEW wide AS SELECT id, user_id, repeat('x', 200) AS pad
                 FROM clicks;",
        )
        .await
        .expect("setup");
    // The source's and the view's rates, while the generator runs.
    let deadline = Instant::now() + ROW_WAIT;
    loop {
        let r = rows(
            &client,
            "SELECT s.rows_per_s, v.rows_per_s, v.freshness_ms IS NOT NULL \
             FROM eddy.sources s, eddy.views v WHERE s.name = 'clicks' AND v.name = 'wide'",
        )
        .await
        .expect("rates");
        let rate = |i: usize| r[0][i].parse::<f64>().expect("a rate");
        if rate(0) > 5000.0 && rate(1) > 5000.0 && r[0][2] == "t" {
            break;
        }
        assert!(Instant::now() < deadline, "rates never showed: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One subscriber that never reads (a raw socket): the server's socket buffers fill, its
    // buffer of 8 change batches fills, and it is cut off.
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let mut msg = common::startup_message();
    let sql = "SUBSCRIBE wide WITH (SNAPSHOT = false)";
    msg.push(b'Q');
    msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    std::io::Write::write_all(&mut stalled, &msg).expect("send");
    // One that reads everything.
    let reader = server.client().await;
    let copy = reader
        .copy_out("COPY (SUBSCRIBE wide WITH (SNAPSHOT = false)) TO STDOUT")
        .await
        .expect("subscribe");
    futures::pin_mut!(copy);
    // Every click from the first one the fast subscriber saw on reaches it, once, while the
    // other one is stalled.
    let mut ids = vec![false; 100_001];
    let mut first = None;
    let mut left = usize::MAX;
    let mut position = 0i64;
    while left > 0 {
        let line = next_line(&mut copy).await;
        let p: i64 = line[0].parse().expect("position");
        assert!(p >= position, "positions never go back");
        position = p;
        assert_eq!(line[1], "1");
        let id: usize = line[2].parse().expect("id");
        assert!(!ids[id], "id {id} sent twice");
        ids[id] = true;
        let first = *first.get_or_insert_with(|| {
            left = 100_001 - id;
            id
        });
        if id >= first {
            left -= 1;
        }
    }
    assert_eq!(
        rows(&client, "SELECT count(*) FROM wide")
            .await
            .expect("count"),
        [["100000"]]
    );
    // The stalled client, reading at last, finds the error that cut it off and the position
    // to resume from.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + ROW_WAIT;
    let needle = b"fell behind";
    while !seen.windows(needle.len()).any(|w| w == needle) {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was never cut off"
        );
        let n = stalled.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed without the error");
        seen.extend_from_slice(&buf[..n]);
        // Only the tail matters.
        if seen.len() > 1 << 20 {
            seen.drain(..seen.len() - 4096);
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("53400") && text.contains("AS OF"), "{text}");
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_psql_shows_changes_as_they_come_and_ctrl_c_stops_it() {
    let server = Server::start().await;
    let client = server.client().await;
    client.batch_execute(SETUP).await.expect("setup");
    common::eventually(&client, "SELECT count(*) FROM per_auction", &[&["2"]]).await;
    // psql writes COPY data to its standard output as it comes; line buffering (a terminal's,
    // here stdbuf's) shows each row at once.
    let mut psql = std::process::Command::new("stdbuf")
        .args(["-oL", "psql", "-X", "-h", "127.0.0.1", "-p"])
        .arg(server.port.to_string())
        .args(["-U", "eddy", "eddy", "-c"])
        .arg("COPY (SUBSCRIBE (SELECT auction, n FROM per_auction)) TO STDOUT WITH (FORMAT csv)")
        .env_remove("PGPASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql (Debian's postgresql-client) runs");
    let stdout = psql.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.expect("psql output")).is_err() {
                break;
            }
        }
    });
    let next = || {
        let line = rx.recv_timeout(ROW_WAIT).expect("psql shows a row");
        line.split(',').skip(1).collect::<Vec<_>>().join(",")
    };
    let mut snapshot = vec![next(), next()];
    snapshot.sort();
    assert_eq!(snapshot, ["1,1,1", "1,2,1"]);
    client
        .batch_execute("INSERT INTO bids VALUES (2, 1, '2026-01-01 00:00:02')")
        .await
        .expect("insert");
    let mut change = vec![next(), next()];
    change.sort();
    assert_eq!(change, ["-1,2,1", "1,2,2"]);
    // Ctrl-C: psql sends a cancel request; the subscription ends with 57014.
    // SAFETY: kill(2) on the child's pid, which is still running.
    unsafe { libc::kill(psql.id() as i32, libc::SIGINT) };
    let out = psql.wait_with_output().expect("psql exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cancel"),
        "{stderr}"
    );
    lines.join().expect("reader");
    assert_eq!(
        rows(&client, "SELECT count(*) FROM per_auction")
            .await
            .expect("count"),
        [["2"]]
    );
}
