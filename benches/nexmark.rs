//! The Nexmark benchmark harness: the queries in `sql/nexmark/`, in-process (the engine the
//! server runs, without the wire protocol), over the `nexmark` source or over JSON from Kafka.
//!
//! ```text
//! cargo bench --bench nexmark                       # q0 q1 q2 q5 q7 q8, 10 M events each
//! cargo bench --bench nexmark -- q5 --events 2000000
//! cargo bench --bench nexmark -- all                # every query in sql/nexmark/
//! cargo bench --bench nexmark -- q0 --kafka         # JSON bids through a Kafka topic (tansu)
//! cargo bench --bench nexmark -- --json-file F.jsonl # the peer queries over a file (benches/peer.sh)
//! cargo bench --bench nexmark -- q5 --parallelism 1 # one partition per operator, one decoding thread
//! ```
//!
//! For each query, **throughput**: three unthrottled nexmark sources (`--events` events of all
//! kinds), then the query's view; the clock runs from `CREATE MATERIALIZED VIEW` until the view's
//! watermark reaches the end of the streams (every row processed, every window closed), or, for a
//! view whose input has no watermark (q4), until its last change once the sources have finished. Reported:
//! events of all kinds per second (whole run, and divided by the cores), rows the sources read,
//! CPU seconds used and events per CPU-second, rows in the view at the end, and the process's peak
//! resident memory during the run (`VmHWM`, reset before each query).
//!
//! Then **freshness** (`--latency SECS`, default 10; 0 skips it): the sources are throttled to
//! half the measured rate (or `--rate`), with event time = wall-clock time of generation; a probe
//! view `max(date_time)` over the query's view is polled every 10 ms, and each poll's sample is
//! `now − max(date_time)`: how old the newest row a reader can see is. Percentiles over the samples
//! after a 2 s warm-up. Only for queries whose view has a `date_time` column.
//!
//! `--kafka`: a loader first produces the bids of `--events` events as JSON to a topic of a tansu
//! broker it starts (`tansu` on the PATH or in `~/.cargo/bin`; or `--bootstrap HOST:PORT` for a
//! running broker), then the query reads that topic with `format = 'json'`: the Kafka consumer and
//! JSON decoding are measured too. The clock stops when the view holds every bid (q0) or, for other
//! queries, when the source has read every record and the view's row count has not changed for
//! 500 ms (reported time excludes that wait).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use eddy::engine::{Engine, Limits, Outcome};
use eddy::sql::parse;
use hdrhistogram::Histogram;

/// The server's allocator (see `src/main.rs`), so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_QUERIES: &[&str] = &["q0", "q1", "q2", "q5", "q7", "q8"];
const DEFAULT_EVENTS: u64 = 10_000_000;
/// Longest a throughput run may take.
const RUN_LIMIT: Duration = Duration::from_secs(1800);
const POLL: Duration = Duration::from_millis(10);

struct Args {
    queries: Vec<String>,
    events: u64,
    latency_secs: u64,
    rate: Option<u64>,
    kafka: bool,
    bootstrap: Option<String>,
    /// `--json-file PATH`: the peer queries over a JSON-lines file of bids.
    json_file: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench nexmark -- [q0 q5 …|all] [--events N] [--latency SECS] \
         [--rate EVENTS_PER_S] [--kafka [--bootstrap HOST:PORT]] [--parallelism N]\n       \
         cargo bench --bench nexmark -- --json-file BIDS.jsonl [q0 q1 q2 hop tumble]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        queries: Vec::new(),
        events: DEFAULT_EVENTS,
        latency_secs: 10,
        rate: None,
        kafka: false,
        bootstrap: None,
        json_file: None,
    };
    let mut it = std::env::args().skip(1);
    let number =
        |v: Option<String>| -> u64 { v.and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()) };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--events" => args.events = number(it.next()),
            "--latency" => args.latency_secs = number(it.next()),
            "--rate" => args.rate = Some(number(it.next())),
            "--kafka" => args.kafka = true,
            "--bootstrap" => args.bootstrap = Some(it.next().unwrap_or_else(|| usage())),
            "--json-file" => args.json_file = Some(it.next().unwrap_or_else(|| usage()).into()),
            "--parallelism" => {
                let n = number(it.next()).max(1) as usize;
                let _ = PARALLELISM.set(n);
            }
            "hop" | "tumble" => args.queries.push(a),
            "all" => args.queries.extend(all_queries()),
            q if q.starts_with('q') => args.queries.push(q.to_string()),
            _ => usage(),
        }
    }
    if args.queries.is_empty() {
        let default: Vec<&str> = match args.json_file {
            Some(_) => peer::QUERIES.iter().map(|(q, _)| *q).collect(),
            None => DEFAULT_QUERIES.to_vec(),
        };
        args.queries = default.into_iter().map(str::to_string).collect();
    }
    args
}

fn query_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql/nexmark")
}

fn all_queries() -> Vec<String> {
    let mut qs: Vec<(u32, String)> = std::fs::read_dir(query_dir())
        .expect("sql/nexmark")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let q = name.strip_suffix(".sql")?.to_string();
            Some((q.strip_prefix('q')?.parse().ok()?, q))
        })
        .collect();
    qs.sort();
    qs.into_iter().map(|(_, q)| q).collect()
}

/// Run `sql`; the rows of the last statement as text.
async fn run(engine: &Engine, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let mut out = Vec::new();
    for stmt in parse(sql).map_err(|e| e.to_string())? {
        out.clear();
        if let Outcome::Rows(df) = engine.execute(stmt).await.map_err(|e| e.to_string())? {
            for b in df.collect().await.map_err(|e| e.to_string())? {
                let cols: Vec<_> = b
                    .columns()
                    .iter()
                    .map(|c| datafusion::arrow::compute::cast(c, &DataType::Utf8).expect("text"))
                    .collect();
                for r in 0..b.num_rows() {
                    out.push(
                        cols.iter()
                            .map(|c| {
                                let s = c.as_string::<i32>();
                                if s.is_null(r) {
                                    String::new()
                                } else {
                                    s.value(r).to_string()
                                }
                            })
                            .collect(),
                    );
                }
            }
        }
    }
    Ok(out)
}

async fn one_i64(engine: &Engine, sql: &str) -> Option<i64> {
    run(engine, sql).await.ok()?.first()?.first()?.parse().ok()
}

/// `--parallelism N`: partitions per keyed operator and decoding threads (default: cores).
static PARALLELISM: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn engine() -> Engine {
    let defaults = Limits::default();
    Engine::new(Limits {
        view_max_rows: 200_000_000,
        checkpoint_interval_secs: 0,
        partitions: PARALLELISM.get().copied().unwrap_or(defaults.partitions),
        ..defaults
    })
    .expect("engine")
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// CPU seconds (user + system) this process has used.
fn cpu_secs() -> f64 {
    process_cpu_secs("self")
}

/// CPU seconds (user + system) process `pid` (or `self`) has used.
fn process_cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / tick
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Reset the peak resident set size (`VmHWM`) to the current one.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn nexmark_sources(events: Option<u64>, rate: u64, live: bool) -> String {
    ["person", "auction", "bid"]
        .iter()
        .map(|kind| {
            let mut opts = format!(
                "connector = 'nexmark', 'nexmark.table.type' = '{kind}', 'nexmark.rate' = {rate}"
            );
            if let Some(n) = events {
                opts.push_str(&format!(", 'nexmark.events' = {n}"));
            }
            if live {
                opts.push_str(", 'nexmark.base.time' = 'now'");
            }
            format!("CREATE SOURCE {kind} WITH ({opts});")
        })
        .collect()
}

fn query_sql(q: &str) -> String {
    std::fs::read_to_string(query_dir().join(format!("{q}.sql")))
        .unwrap_or_else(|e| panic!("sql/nexmark/{q}.sql: {e}"))
}

struct Throughput {
    events_per_s: f64,
}

/// Wait until `view` has processed every event; returns when it had. That is when its watermark
/// reaches the end of time. A view whose input carries no watermark (an aggregate over an updating
/// view, such as q4) is done once every source has finished and its contents have not changed
/// for 500 ms: then the time of the last change counts.
async fn wait_done(engine: &Engine, view: &str) -> Instant {
    let start = Instant::now();
    let sql = format!(
        "SELECT CASE WHEN watermark > TIMESTAMP '2200-01-01 00:00:00' THEN 1 ELSE 0 END, \
         CAST(watermark IS NULL AS INT), rows, state_bytes FROM eddy.views WHERE name = '{view}'"
    );
    let running = "SELECT count(*) FROM eddy.sources WHERE status = 'running'";
    let failed = "SELECT name || ': ' || last_error FROM eddy.views WHERE last_error IS NOT NULL \
         UNION ALL SELECT name || ': ' || last_error FROM eddy.sources WHERE last_error IS NOT NULL";
    let mut last: (Vec<String>, Instant) = (Vec::new(), Instant::now());
    loop {
        let row = run(engine, &sql)
            .await
            .ok()
            .and_then(|r| r.into_iter().next())
            .unwrap_or_default();
        if row.first().map(String::as_str) == Some("1") {
            return Instant::now();
        }
        let no_watermark = row.get(1).map(String::as_str) == Some("1");
        // Without a watermark, progress shows only in the rows (small here: q4 has five).
        let mut seen = row;
        if no_watermark {
            let content = run(engine, &format!("SELECT * FROM {view}")).await;
            seen.extend(content.unwrap_or_default().into_iter().flatten());
        }
        if seen != last.0 {
            last = (seen, Instant::now());
        }
        if no_watermark
            && one_i64(engine, running).await == Some(0)
            && last.1.elapsed() > Duration::from_millis(500)
        {
            return last.1;
        }
        if let Ok(errors) = run(engine, failed).await {
            assert!(errors.is_empty(), "{view} failed: {errors:?}");
        }
        assert!(start.elapsed() < RUN_LIMIT, "{view} did not finish");
        tokio::time::sleep(POLL).await;
    }
}

/// Rows the sources read, and rows `view` holds.
async fn read_and_held(engine: &Engine, view: &str) -> (i64, i64) {
    let read = one_i64(
        engine,
        "SELECT CAST(sum(rows_read) AS BIGINT) FROM eddy.sources",
    )
    .await
    .unwrap_or(0);
    let rows = one_i64(
        engine,
        &format!("SELECT rows FROM eddy.views WHERE name = '{view}'"),
    )
    .await
    .unwrap_or(0);
    (read, rows)
}

async fn throughput(q: &str, events: u64) -> Option<Throughput> {
    let engine = engine();
    run(&engine, &nexmark_sources(Some(events), 0, false))
        .await
        .expect("sources");
    let view = format!("nexmark_{q}");
    reset_peak_memory();
    let rss0 = status_kb("VmRSS:") / 1024;
    let (cpu0, start) = (cpu_secs(), Instant::now());
    if let Err(e) = run(&engine, &query_sql(q)).await {
        println!("{q:<4} not run: {e}");
        return None;
    }
    let end = wait_done(&engine, &view).await;
    let secs = (end - start).as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let (read, rows) = read_and_held(&engine, &view).await;
    // The view's state: its rows (Arrow size) and its operators' state.
    let state = one_i64(
        &engine,
        &format!("SELECT state_bytes FROM eddy.views WHERE name = '{view}'"),
    )
    .await
    .unwrap_or(0);
    let rate = events as f64 / secs;
    println!(
        "{q:<4} {events:>10} events {secs:>7.2} s {:>10.0} events/s {:>9.0} /core | \
         {read:>10} source rows ({:>9.0}/s) | {cpu:>6.1} CPU-s {:>9.0} events/CPU-s | \
         {rows:>9} view rows, state {} MiB | RSS {rss0} MiB before, peak {} MiB",
        rate,
        rate / cores(),
        read as f64 / secs,
        events as f64 / cpu.max(1e-9),
        state >> 20,
        status_kb("VmHWM:") / 1024
    );
    // Drop everything: a later query's memory figures start from a clean engine.
    run(&engine, "DROP SOURCE person, auction, bid CASCADE")
        .await
        .expect("drop");
    Some(Throughput { events_per_s: rate })
}

/// Freshness of `q`'s view at `rate` events/s for `secs` seconds.
async fn freshness(q: &str, rate: u64, secs: u64) {
    let engine = engine();
    run(&engine, &nexmark_sources(None, rate, true))
        .await
        .expect("sources");
    run(&engine, &query_sql(q)).await.expect("view");
    let probe =
        format!("CREATE MATERIALIZED VIEW probe AS SELECT max(date_time) AS t FROM nexmark_{q}");
    if let Err(e) = run(&engine, &probe).await {
        println!("{q:<4} freshness not measured (needs a date_time column): {e}");
        return;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).expect("histogram");
    let start = Instant::now();
    let warmup = Duration::from_secs(2);
    let end = warmup + Duration::from_secs(secs);
    while start.elapsed() < end {
        tokio::time::sleep(POLL).await;
        let t = one_i64(
            &engine,
            "SELECT CAST(extract(epoch FROM t) * 1000 AS BIGINT) FROM probe",
        )
        .await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if let (Some(t), true) = (t, start.elapsed() > warmup) {
            hist.saturating_record((now - t).max(1) as u64);
        }
    }
    let read = one_i64(
        &engine,
        "SELECT CAST(sum(rows_read) AS BIGINT) FROM eddy.sources",
    )
    .await
    .unwrap_or(0);
    println!(
        "{q:<4} freshness at {rate} events/s ({read} source rows in {:.0} s): p50 {} ms  p99 {} ms  \
         max {} ms  ({} samples every {} ms)",
        start.elapsed().as_secs_f64(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
        hist.len(),
        POLL.as_millis()
    );
}

/// A tansu broker this harness started; killed on drop.
struct Broker {
    child: Option<Child>,
    bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn broker(bootstrap: Option<String>) -> Broker {
    if let Some(b) = bootstrap {
        return Broker {
            child: None,
            bootstrap: b,
        };
    }
    let bin = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu")))
        .find(|p| p.is_file())
        .expect("--kafka needs tansu (cargo install tansu --features dynostore) or --bootstrap");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "tansu did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Broker {
        child: Some(child),
        bootstrap: format!("127.0.0.1:{port}"),
    }
}

mod kafka_load {
    //! The loader: the bids of the first N Nexmark events as JSON records.
    use std::time::{Duration, Instant};

    use nexmark::config::{NexmarkConfig, RateShape};
    use nexmark::event::{Event, EventType};
    use nexmark::EventGenerator;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    /// Partitions of the bid topic (one per core).
    pub const PARTITIONS: i32 = 2;

    /// Produce the bids to `topic`; returns how many.
    pub fn load(bootstrap: &str, topic: &str, events: u64) -> u64 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("admin");
        rt.block_on(admin.create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .set("compression.type", "none")
            .create()
            .expect("producer");
        let config = NexmarkConfig {
            base_time: 1_704_067_200_000,
            first_rate: 10_000,
            next_rate: 10_000,
            rate_shape: RateShape::Square,
            ..NexmarkConfig::default()
        };
        let mut generator = EventGenerator::new(config).with_type_filter(EventType::Bid);
        let start = Instant::now();
        let mut n = 0u64;
        while generator.global_offset() < events {
            let Some(Event::Bid(b)) = generator.next() else {
                continue;
            };
            let payload = serde_json::json!({
                "auction": b.auction, "bidder": b.bidder, "price": b.price,
                "channel": b.channel, "url": b.url, "date_time": b.date_time, "extra": b.extra,
            })
            .to_string();
            let mut rec = BaseRecord::<(), _>::to(topic)
                .payload(&payload)
                .partition((n % PARTITIONS as u64) as i32);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            n += 1;
        }
        producer.flush(Duration::from_secs(600)).expect("flush");
        println!(
            "load {n} bid records as JSON to '{topic}' in {:.1} s ({:.0} records/s)",
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64()
        );
        n
    }
}

/// tansu answers a fetch only when its wait runs out, even with records at hand (measured: a
/// plain consumer reads 190 K records/s at eddy's default 100 ms, 830 K/s at 10 ms); a
/// broker that answers at once (Apache Kafka, Redpanda) is not held back by the default.
const FETCH_WAIT_MS: u32 = 10;
/// How often a Kafka run looks whether the view holds every record (±50 ms on runs of seconds).
const KAFKA_POLL: Duration = Duration::from_millis(50);

async fn kafka_throughput(q: &str, broker: &Broker, topic: &str, bids: u64) {
    let bootstrap = broker.bootstrap.as_str();
    let broker_pid = broker.child.as_ref().map(|c| c.id().to_string());
    let broker_cpu = || broker_pid.as_deref().map_or(0.0, process_cpu_secs);
    let engine = engine();
    run(
        &engine,
        &format!(
            "CREATE SOURCE bid (auction BIGINT NOT NULL, bidder BIGINT NOT NULL, \
             price BIGINT NOT NULL, channel VARCHAR NOT NULL, url VARCHAR NOT NULL, \
             date_time TIMESTAMP(3) NOT NULL, extra VARCHAR NOT NULL, \
             WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
             WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{bootstrap}', \
             format = 'json', 'properties.fetch.wait.max.ms' = '{FETCH_WAIT_MS}')"
        ),
    )
    .await
    .expect("kafka source");
    let view = format!("nexmark_{q}");
    reset_peak_memory();
    let (cpu0, start) = (cpu_secs(), Instant::now());
    let broker0 = broker_cpu();
    if let Err(e) = run(&engine, &query_sql(q)).await {
        println!("{q:<4} (kafka) not run: {e}");
        return;
    }
    let read_sql = "SELECT CAST(sum(rows_read) + sum(rows_rejected) AS BIGINT) FROM eddy.sources";
    let rows_sql = format!("SELECT rows FROM eddy.views WHERE name = '{view}'");
    let mut last = (None, Instant::now());
    let end = loop {
        assert!(start.elapsed() < RUN_LIMIT, "{q} over kafka did not finish");
        // Polled less often than the in-process runs: these queries cost CPU that
        // counts as the engine's (at 10 ms, about a tenth of a core).
        tokio::time::sleep(KAFKA_POLL).await;
        let rows = one_i64(&engine, &rows_sql).await;
        if q == "q0" && rows == Some(bids as i64) {
            break Instant::now();
        }
        if rows != last.0 {
            last = (rows, Instant::now());
        }
        let read = one_i64(&engine, read_sql).await.unwrap_or(0);
        if q != "q0" && read >= bids as i64 && last.1.elapsed() > Duration::from_millis(500) {
            break last.1;
        }
    };
    let secs = (end - start).as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let broker_used = broker_cpu() - broker0;
    let rejected = one_i64(
        &engine,
        "SELECT CAST(sum(rows_rejected) AS BIGINT) FROM eddy.sources",
    )
    .await
    .unwrap_or(0);
    let rate = bids as f64 / secs;
    println!(
        "{q:<4} kafka+json {bids:>10} records {secs:>7.2} s {:>10.0} records/s {:>9.0} /core | \
         {rejected} rejected | {cpu:>6.1} CPU-s {:>9.0} records/CPU-s (broker: {broker_used:.1} CPU-s) \
         | peak RSS {} MiB",
        rate,
        rate / cores(),
        bids as f64 / cpu.max(1e-9),
        status_kb("VmHWM:") / 1024
    );
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(path) = &args.json_file {
        println!(
            "peer queries: {} cores, bids from {}",
            cores(),
            path.display()
        );
        rt.block_on(async {
            for q in &args.queries {
                peer::file_throughput(q, path).await;
            }
        });
        return;
    }
    println!(
        "nexmark: {} cores, {} events per query ({})",
        cores(),
        args.events,
        if args.kafka {
            "kafka + json"
        } else {
            "in-process generator"
        }
    );
    if args.kafka {
        let broker = broker(args.bootstrap.clone());
        let topic = format!("nexmark-bid-{}", std::process::id());
        let bids = kafka_load::load(&broker.bootstrap, &topic, args.events);
        rt.block_on(async {
            for q in &args.queries {
                kafka_throughput(q, &broker, &topic, bids).await;
            }
        });
        // Stop the readers while the broker is up: a Kafka consumer closing
        // against a broker that is gone waits for it.
        drop(rt);
        return;
    }
    let mut measured: HashMap<String, f64> = HashMap::new();
    rt.block_on(async {
        for q in &args.queries {
            if let Some(t) = throughput(q, args.events).await {
                measured.insert(q.clone(), t.events_per_s);
            }
        }
        if args.latency_secs == 0 {
            return;
        }
        for q in &args.queries {
            let Some(max) = measured.get(q) else { continue };
            let rate = args.rate.unwrap_or((max / 2.0) as u64).max(1);
            freshness(q, rate, args.latency_secs).await;
        }
    });
}

mod peer {
    //! The queries `benches/peer.sh` runs in eddy and in Flink SQL over the same JSON file of
    //! bids (`benches/peer/peer_flink.py` holds Flink's text of each).
    use std::path::Path;
    use std::time::Instant;

    use super::{
        cores, cpu_secs, engine, read_and_held, reset_peak_memory, run, status_kb, wait_done,
    };

    /// (name, SELECT): Flink's windowed aggregates emit once a window closes, so eddy's do too.
    pub const QUERIES: &[(&str, &str)] = &[
        (
            "q0",
            "SELECT auction, bidder, price, date_time, extra FROM bid",
        ),
        (
            "q1",
            "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid",
        ),
        (
            "q2",
            "SELECT auction, price FROM bid WHERE auction % 123 = 0",
        ),
        (
            "hop",
            "SELECT auction, window_start, count(*) AS n \
             FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND) \
             GROUP BY auction, window_start, window_end EMIT ON WINDOW CLOSE",
        ),
        (
            "tumble",
            "SELECT window_start, max(price) AS m, count(*) AS n \
             FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end EMIT ON WINDOW CLOSE",
        ),
    ];

    /// Read `path` through the `file` source into the view of query `q`; print rows per
    /// CPU-second of this process (the line `benches/peer.sh` reads).
    pub async fn file_throughput(q: &str, path: &Path) {
        let Some((_, select)) = QUERIES.iter().find(|(name, _)| *name == q) else {
            println!("{q}: not a peer query (q0 q1 q2 hop tumble)");
            return;
        };
        let engine = engine();
        run(
            &engine,
            &format!(
                "CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, \
                 channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR, \
                 WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
                 WITH (connector = 'file', path = '{}', format = 'json')",
                path.display()
            ),
        )
        .await
        .expect("file source");
        reset_peak_memory();
        let (cpu0, start) = (cpu_secs(), Instant::now());
        let view = format!("peer_{q}");
        run(
            &engine,
            &format!("CREATE MATERIALIZED VIEW {view} AS {select}"),
        )
        .await
        .expect("view");
        let end = wait_done(&engine, &view).await;
        let (secs, cpu) = ((end - start).as_secs_f64(), cpu_secs() - cpu0);
        let (read, rows) = read_and_held(&engine, &view).await;
        println!(
            "peer {q:<6} eddy {read:>9} rows {secs:>7.2} s {:>10.0} rows/s {:>9.0} /core | \
             {cpu:>6.1} CPU-s {:>9.0} rows/CPU-s | {rows:>9} view rows | peak RSS {} MiB",
            read as f64 / secs,
            read as f64 / secs / cores(),
            read as f64 / cpu.max(1e-9),
            status_kb("VmHWM:") / 1024
        );
        run(&engine, "DROP SOURCE bid CASCADE").await.expect("drop");
    }
}
