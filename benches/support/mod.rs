//! What the end-to-end benches share: a real `eddy serve` (the release binary) on a free port,
//! killed when dropped, and tokio-postgres clients of it. Each bench uses what it needs.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server process; killed on drop.
pub struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Start eddy (with `extra` flags, a fresh data dir named after `bench`) and connect to it.
pub async fn start(bench: &str, extra: &[&str]) -> (ServerProcess, tokio_postgres::Client, u16) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("eddy-bench-{bench}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "serve",
            "--pg-addr",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start eddy");
    let server = ServerProcess(child);
    let conn = format!("host=127.0.0.1 port={port} user=eddy dbname=eddy");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return (server, client, port);
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("eddy did not start: {e}"),
        }
    }
}

/// Another client of the server on `port`.
pub async fn connect(port: u16) -> tokio_postgres::Client {
    let conn = format!("host=127.0.0.1 port={port} user=eddy dbname=eddy");
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}
