//! Kafka over TLS, and SASL (issue 14). A source and a sink reach a real
//! broker (tansu) through TLS, verifying it with a CA file read under
//! `--file-root`; a source and a sink logging in with SASL SCRAM-SHA-256, the
//! password a `CREATE SECRET`, are turned away by a broker that requires
//! logins, and eddy shows why (librdkafka's words) without the password.
//!
//! tansu 0.6 accepts `--cert/--key` but does not serve TLS, so TLS ends in a
//! small rustls proxy in this test (eddy's own acceptor) that forwards to
//! tansu; tansu advertises the proxy's port, so every client connection goes
//! through TLS. tansu with `--authentication` offers only SCRAM, checked
//! against users in its storage, and a memory broker that requires logins
//! cannot be given one (creating a user needs a login): so the SASL test is
//! the refusal, not a successful login.

mod common;

use std::time::{Duration, Instant};

use common::tansu::{start_tansu, tansu_or_skip};
use common::{connect_as, error_text, Server};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const EVENTUALLY: Duration = Duration::from_secs(60);

/// Accept TLS on `listener` and forward each connection to `upstream`.
async fn tls_proxy(listener: TcpListener, upstream: String, cert: String, key: String) {
    let acceptor = eddy::server::tls::acceptor(cert.as_ref(), key.as_ref()).expect("acceptor");
    let mut conns = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
        conns.spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if let Ok(mut up) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

/// librdkafka settings of a client of the broker behind TLS.
fn over_tls(bootstrap: &str, ca: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", ca);
    c
}

/// A tansu broker behind a TLS proxy: (broker, proxy address).
async fn tansu_behind_tls(
    bin: &std::path::PathBuf,
    extra: &[&str],
    cert: &str,
    key: &str,
    tasks: &mut JoinSet<()>,
) -> (common::tansu::Tansu, String) {
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    let tansu = start_tansu(bin, extra, Some(port));
    tasks.spawn(tls_proxy(
        proxy,
        tansu.bootstrap.clone(),
        cert.to_string(),
        key.to_string(),
    ));
    (tansu, format!("127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_sink_over_tls_and_a_sasl_refusal() {
    let Some(bin) = tansu_or_skip("source_and_sink_over_tls_and_a_sasl_refusal") else {
        return;
    };
    let root = common::unique_temp_dir();
    let (cert, key) = common::self_signed_certificate(&root);
    let mut tasks = JoinSet::new();
    let (tansu, bootstrap) = tansu_behind_tls(&bin, &[], &cert, &key, &mut tasks).await;
    let (_locked, locked_bootstrap) =
        tansu_behind_tls(&bin, &["--authentication"], &cert, &key, &mut tasks).await;

    let admin: AdminClient<DefaultClientContext> =
        over_tls(&bootstrap, &cert).create().expect("admin client");
    let created = admin
        .create_topics(
            &[
                NewTopic::new("ev", 1, TopicReplication::Fixed(1)),
                NewTopic::new("ev-out", 1, TopicReplication::Fixed(1)),
            ],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create topics over TLS: {e}; tansu: {}",
                common::read_tail(&tansu.log, 3000)
            )
        });
    for r in created {
        r.expect("topic created");
    }
    let producer: FutureProducer = over_tls(&bootstrap, &cert)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for v in 1..=100 {
        let payload = format!("{{\"v\": {v}}}");
        producer
            .send(
                FutureRecord::<(), _>::to("ev").payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered over TLS");
    }

    // eddy with passwords on reads files only under its file root: the CA goes there.
    let data = common::unique_temp_dir();
    std::fs::create_dir_all(data.join("files")).unwrap();
    std::fs::copy(&cert, data.join("files/ca.pem")).unwrap();
    let server = Server::start_in_with(&data, &["--password", "admin-pw"]).await;
    let c = connect_as(server.port, "eddy", "admin-pw").await.unwrap();
    let tls = |b: &str| {
        format!(
            "'properties.bootstrap.servers' = '{b}', 'properties.security.protocol' = 'SSL',
             'properties.ssl.ca.location' = 'ca.pem'"
        )
    };
    c.batch_execute(&format!(
        "CREATE SOURCE ev (v INT) WITH (connector = 'kafka', topic = 'ev',
             'scan.startup.mode' = 'earliest', format = 'json', {});
         CREATE MATERIALIZED VIEW total AS SELECT count(*) AS n, sum(v) AS s FROM ev;
         CREATE SINK total_out FROM total WITH (connector = 'kafka', topic = 'ev-out',
             delivery = 'at_least_once', {});",
        tls(&bootstrap),
        tls(&bootstrap),
    ))
    .await
    .unwrap_or_else(|e| panic!("DDL: {}", error_text(&e)));
    common::eventually(&c, "SELECT n, s FROM total", &[&["100", "5050"]]).await;
    // The sink wrote over TLS too; read it back the same way.
    let (b, ca) = (bootstrap.clone(), cert.clone());
    let last = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = over_tls(&b, &ca)
            .set("group.id", "kafka-security-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["ev-out"]).expect("subscribe");
        let start = Instant::now();
        while start.elapsed() < EVENTUALLY {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let text = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                if text.contains("5050") {
                    return text;
                }
            }
        }
        panic!("the sink's row did not arrive")
    })
    .await
    .expect("reader");
    let v: serde_json::Value = serde_json::from_str(&last).expect("JSON change");
    assert_eq!(v["after"]["n"], 100, "{last}");

    // SASL SCRAM over TLS, the password from a secret: the broker has no such
    // user, and eddy says the login failed (and nothing of the password).
    let sasl = format!(
        "'properties.bootstrap.servers' = '{locked_bootstrap}',
         'properties.security.protocol' = 'SASL_SSL',
         'properties.sasl.mechanism' = 'SCRAM-SHA-256',
         'properties.sasl.username' = 'eddy',
         'properties.sasl.password' = SECRET kafka_pw,
         'properties.ssl.ca.location' = 'ca.pem'"
    );
    c.batch_execute(&format!(
        "CREATE SECRET kafka_pw AS 'eddy-kafka-pw';
         CREATE SOURCE locked (v INT) WITH (connector = 'kafka', topic = 'ev',
             'scan.startup.mode' = 'earliest', format = 'json',
             {sasl});"
    ))
    .await
    .unwrap_or_else(|e| panic!("SASL source: {}", error_text(&e)));
    let start = Instant::now();
    let error = loop {
        let r = common::rows(
            &c,
            "SELECT rows_read, coalesce(last_error, '') FROM eddy.sources WHERE name = 'locked'",
        )
        .await
        .unwrap();
        assert_eq!(r[0][0], "0", "read without a login: {r:?}");
        if !r[0][1].is_empty() {
            break r[0][1].clone();
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "no error shown: {r:?}; sources: {:?}; eddy: {}",
            common::rows(&c, "SELECT * FROM eddy.sources").await,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("the locked source says: {error}");
    assert!(
        error.to_lowercase().contains("authenticat"),
        "not an authentication error: {error}"
    );
    for text in [error, server.log_tail()] {
        assert!(!text.contains("eddy-kafka-pw"), "the secret leaked: {text}");
    }
    // A sink to that broker says the same, in its own status.
    c.batch_execute(&format!(
        "CREATE SINK locked_out FROM total WITH (connector = 'kafka', topic = 'ev-out',
             delivery = 'at_least_once',
             'properties.message.timeout.ms' = '2000', {sasl});"
    ))
    .await
    .unwrap_or_else(|e| panic!("SASL sink: {}", error_text(&e)));
    let start = Instant::now();
    let sink_error = loop {
        let r = common::rows(
            &c,
            "SELECT coalesce(last_error, '') FROM eddy.sinks WHERE name = 'locked_out'",
        )
        .await
        .unwrap();
        if r[0][0].to_lowercase().contains("authenticat") {
            break r[0][0].clone();
        }
        assert!(start.elapsed() < EVENTUALLY, "sink error: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("the locked sink says: {sink_error}");
    assert!(!sink_error.contains("eddy-kafka-pw"));
    // The rest of the server carries on.
    common::eventually(&c, "SELECT n FROM total", &[&["100"]]).await;
    tasks.abort_all();
}
