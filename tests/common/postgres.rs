//! A real PostgreSQL server for differential tests: Debian's `postgresql` package, started by the
//! test in a temporary directory on a free loopback port (`initdb` + `postgres`, trust auth, UTC,
//! `C.UTF-8`), killed when dropped. As root the server runs as the `postgres` user, because
//! PostgreSQL refuses to run as root.
//!
//! When the binaries are missing the test is skipped with a message, unless
//! `EDDY_REQUIRE_POSTGRES` is set (CI sets it), in which case it fails.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{connect_with, free_port, unique_temp_dir, PgClient};

/// How long the server may take to accept connections.
const STARTUP: Duration = Duration::from_secs(60);

/// A running PostgreSQL server; stopped (and its directory removed) on drop.
pub struct Postgres {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// The directory holding `initdb` and `postgres`: `PATH` first, then the newest
/// `/usr/lib/postgresql/<version>/bin` (where Debian puts them, off `PATH`).
fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join("initdb").is_file() && d.join("postgres").is_file() {
                return Some(d);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// The `postgres` account's uid and gid from `/etc/passwd`.
fn postgres_account() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == "postgres")
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Runs `cmd` as the `postgres` account when this process is root.
fn as_server_user(cmd: &mut Command, account: Option<(u32, u32)>) {
    if let Some((uid, gid)) = account {
        cmd.uid(uid).gid(gid);
    }
}

impl Postgres {
    /// Starts a server, or returns `None` (after saying why) when PostgreSQL is not installed and
    /// `EDDY_REQUIRE_POSTGRES` is unset.
    pub async fn start_or_skip() -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            let why = "PostgreSQL server binaries (initdb, postgres) not found: \
                       apt-get install postgresql";
            if std::env::var_os("EDDY_REQUIRE_POSTGRES").is_some() {
                panic!("{why} (EDDY_REQUIRE_POSTGRES is set)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        Some(Postgres::start(&bin).await)
    }

    async fn start(bin: &Path) -> Postgres {
        let root = is_root();
        let account = if root {
            Some(postgres_account().expect("running as root and no `postgres` account exists"))
        } else {
            None
        };
        let dir = unique_temp_dir();
        let data = dir.join("data");
        if let Some((uid, gid)) = account {
            chown(&dir, uid, gid);
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdin(Stdio::null());
        as_server_user(&mut initdb, account);
        let out = super::run_bounded(initdb, STARTUP);
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = fs::File::create(dir.join("postgres.log")).expect("create postgres.log");
        if let Some((uid, gid)) = account {
            chown(&dir.join("postgres.log"), uid, gid);
        }
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "TimeZone=UTC",
                "-c",
                "max_connections=20",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        as_server_user(&mut cmd, account);
        let child = cmd.spawn().expect("spawn postgres");
        let pg = Postgres { child, dir, port };
        let start = Instant::now();
        loop {
            match pg.connect().await {
                Ok(_) => return pg,
                Err(e) if start.elapsed() > STARTUP => panic!(
                    "PostgreSQL did not accept connections within {STARTUP:?}: {e}\n{}",
                    super::read_tail(&pg.dir.join("postgres.log"), 4096)
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// A new connection as `postgres` to database `postgres`.
    pub async fn connect(&self) -> Result<PgClient, String> {
        self.connect_to("postgres").await
    }

    /// A new connection as `postgres` to `database`.
    pub async fn connect_to(&self, database: &str) -> Result<PgClient, String> {
        connect_with(&format!(
            "host=127.0.0.1 port={} user=postgres dbname={database} connect_timeout=10",
            self.port
        ))
        .await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's "fast" shutdown (SIGTERM would wait for clients); SIGKILL if
        // it lingers.
        // SAFETY: kill has no memory preconditions; a stale pid is at worst ESRCH.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Gives `path` to `uid:gid`.
fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}
