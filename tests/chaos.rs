//! Chaos (issue 14): while records are produced to Kafka and read, eddy is
//! killed with SIGKILL and restarted, and the broker goes down and comes
//! back (while eddy reads), at random moments. Afterwards the views must equal an independent count of
//! what was produced: nothing lost, nothing counted twice.
//!
//! The broker is librdkafka's mock cluster in this test process (it outlives
//! eddy). `cargo test --test chaos` runs 4 rounds; `EDDY_CHAOS_ROUNDS=50` a
//! long run. The seed is printed, so a failure replays.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::kafka::producer;
use common::{rows, Server};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 3;
const PER_ROUND: usize = 400;

/// Record `n`: its partition, payload, account and amount.
fn record(n: usize) -> (i32, String, String, i64) {
    let account = format!("u{}", (n * 13) % 7);
    let amount = ((n * 31) % 101) as i64;
    let payload = format!(r#"{{"account": "{account}", "amount": {amount}}}"#);
    ((n % PARTITIONS as usize) as i32, payload, account, amount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_stay_exact_through_kills_and_outages() {
    let rounds: usize = std::env::var("EDDY_CHAOS_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    let seed = 1_400 + rounds as u64;
    eprintln!("chaos: {rounds} rounds, seed {seed}");
    let mut rng = SmallRng::seed_from_u64(seed);
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("pay", PARTITIONS, 1).expect("topic");
    let data_dir = common::unique_temp_dir().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let args = ["--checkpoint-interval", "1"];
    let mut server = Server::start_in_with(&data_dir, &args).await;
    server
        .client()
        .await
        .batch_execute(&format!(
            "CREATE SOURCE pay (account VARCHAR, amount BIGINT)
               WITH (connector = 'kafka', topic = 'pay', 'bootstrap.servers' = '{bootstrap}');
             CREATE MATERIALIZED VIEW per_account AS
               SELECT account, count(*) AS n, sum(amount) AS total FROM pay GROUP BY account;"
        ))
        .await
        .expect("DDL");
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut next = 0usize;
    let (mut kills, mut outages) = (0, 0);
    for _ in 0..rounds {
        // A producer per round: after an outage the mock cluster can leave an
        // idempotent producer unable to deliver, and this test must know exactly
        // what was produced.
        let p = producer(&bootstrap);
        let batch: Vec<_> = (next..next + PER_ROUND).map(record).collect();
        next += PER_ROUND;
        for (_, _, account, amount) in &batch {
            let e = expected.entry(account.clone()).or_default();
            e.0 += 1;
            e.1 += amount;
        }
        let records = batch
            .into_iter()
            .map(|(part, payload, _, _)| (part, None, payload, None));
        let chaos_after = Duration::from_millis(rng.random_range(50..1500));
        let kill = rng.random_bool(0.6);
        if kill {
            // eddy dies while records are being produced and read.
            let produce = common::kafka::produce(&p, "pay", records);
            let chaos = async {
                tokio::time::sleep(chaos_after).await;
                server.kill();
                kills += 1;
            };
            tokio::join!(produce, chaos);
            server = Server::start_in_with(&data_dir, &args).await;
        } else {
            // The broker goes away while eddy reads (not while the test produces, so
            // what was produced is known exactly).
            common::kafka::produce(&p, "pay", records).await;
            tokio::time::sleep(chaos_after / 4).await;
            cluster.broker_down(1).expect("broker down");
            tokio::time::sleep(Duration::from_millis(700)).await;
            cluster.broker_up(1).expect("broker up");
            outages += 1;
        }
    }
    eprintln!("chaos: {kills} SIGKILLs of eddy, {outages} broker outages, {next} records");
    let want: Vec<Vec<String>> = expected
        .iter()
        .map(|(a, (n, t))| vec![a.clone(), n.to_string(), t.to_string()])
        .collect();
    let c = server.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got = rows(
            &c,
            "SELECT account, n, total FROM per_account ORDER BY account",
        )
        .await;
        if got.as_ref() == Ok(&want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after {kills} kills and {outages} outages the view is {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!server.log_contains("panicked"), "{}", server.log_tail());
}
