//! A real, separate Kafka-protocol broker for tests: `tansu` (in-memory
//! storage) on a free loopback port, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: on PATH or in cargo's bin directory.
pub fn tansu_binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// The tansu binary, or `None` after saying why `test` is skipped; with
/// `EDDY_REQUIRE_REAL_BROKER=1` (CI) a missing binary fails instead.
pub fn tansu_or_skip(test: &str) -> Option<PathBuf> {
    let bin = tansu_binary();
    if bin.is_none() {
        if std::env::var("EDDY_REQUIRE_REAL_BROKER").as_deref() == Ok("1") {
            panic!("EDDY_REQUIRE_REAL_BROKER=1 but no tansu binary (cargo install tansu --features dynostore)");
        }
        eprintln!("SKIPPED {test}: no tansu binary on PATH or in ~/.cargo/bin");
    }
    bin
}

/// A tansu broker process, killed on drop.
pub struct Tansu {
    child: Child,
    /// `host:port` it listens on.
    pub bootstrap: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start tansu with `extra` arguments; it tells clients to connect to
/// `advertised_port` (default: the port it listens on).
pub fn start_tansu(bin: &PathBuf, extra: &[&str], advertised_port: Option<u16>) -> Tansu {
    let port = super::free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{}", advertised_port.unwrap_or(port));
    let log = super::unique_temp_dir().join("tansu.log");
    let out = std::fs::File::create(&log).expect("tansu log");
    let err = out.try_clone().expect("tansu log");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start tansu");
    let t = Tansu {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        log: log.clone(),
    };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "tansu did not listen on {port}; log: {}",
            super::read_tail(&log, 4096)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t
}

/// Create `topics` (name, partitions) on the broker at `bootstrap`.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let created = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for r in created {
        r.expect("topic created");
    }
}
