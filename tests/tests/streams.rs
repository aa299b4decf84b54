//! Streams: records in and out across shards, primary failover under a
//! producer, and resharding under load.

use std::time::Duration;

use basin_tests::streams::{Acked, check_against_acks, client, put_batch, read_all};
use basin_tests::{Cluster, Spec, wait_for};

fn spec() -> Spec {
    Spec {
        task: 0,
        worker_args: vec!["--stream-no-limits".into()],
        ..Spec::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// 100,000 records over 4 shards and many partition keys, put through the
/// CLI: every record read back exactly once, per-key order kept, sequence
/// numbers strictly increasing per shard.
#[test]
fn hundred_thousand_records_over_four_shards() {
    let c = Cluster::start(spec()).expect("cluster");
    let run = || -> anyhow::Result<()> {
        c.ok(&["stream", "create", "clicks", "--shards", "4"])?;
        let n = 100_000usize;
        let input: String = (0..n)
            .map(|i| format!("user-{}\t{}:{i}\n", i % 1009, i % 1009))
            .collect();
        let file = c.dir.path().join("records.tsv");
        std::fs::write(&file, input)?;
        let out = std::process::Command::new(basin_tests::basin_bin())
            .args(["--master", &c.master_list(), "--token", &c.token])
            .args(["stream", "put", "clicks", "--keyed"])
            .stdin(std::fs::File::open(&file)?)
            .env("RUST_LOG", "warn")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "put failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = read_all(&c, "clicks")?;
        anyhow::ensure!(read.len() == n, "read {} records, put {n}", read.len());
        let mut seen = vec![false; n];
        let mut last_per_key: std::collections::HashMap<String, usize> = Default::default();
        let mut last_seq: std::collections::HashMap<String, u64> = Default::default();
        let mut shards = std::collections::BTreeSet::new();
        for r in &read {
            let (_, i) = r.data.split_once(':').expect("payload");
            let i: usize = i.parse()?;
            anyhow::ensure!(!seen[i], "record {i} read twice");
            seen[i] = true;
            anyhow::ensure!(r.key == format!("user-{}", i % 1009), "key of {i}");
            if let Some(prev) = last_per_key.insert(r.key.clone(), i) {
                anyhow::ensure!(prev < i, "key {}: {i} after {prev}", r.key);
            }
            if let Some(prev) = last_seq.insert(r.shard.clone(), r.seq) {
                anyhow::ensure!(prev < r.seq, "{}: seq {} after {prev}", r.shard, r.seq);
            }
            shards.insert(r.shard.clone());
        }
        anyhow::ensure!(seen.iter().all(|s| *s), "records missing");
        anyhow::ensure!(shards.len() == 4, "records landed in {shards:?}");
        Ok(())
    };
    if let Err(e) = run() {
        c.dump_logs();
        panic!("{e:#}");
    }
}

/// `kill -9` the worker holding a shard's primary while a producer writes:
/// every acknowledged record is readable afterwards, in order, once.
#[test]
fn primary_failover_loses_no_acknowledged_record() {
    // A fourth core worker gives the lost replica somewhere to go.
    let mut c = Cluster::start(Spec { core: 4, ..spec() }).expect("cluster");
    let rt = runtime();
    let run = |c: &mut Cluster| -> anyhow::Result<()> {
        c.ok(&["stream", "create", "orders", "--shards", "2"])?;
        let sc = client(c);
        let info = rt.block_on(sc.describe("orders"))?;
        let victim_id = info.shards[0].primary;
        let victim = c
            .workers
            .iter()
            .position(|w| c.node_id(&w.name).ok() == Some(victim_id))
            .expect("primary's worker");
        // The producer runs on its own task; the kill lands while puts are in flight.
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Acked>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let producer = {
            let (sc, acked, stop) = (sc.clone(), acked.clone(), stop.clone());
            rt.spawn(async move {
                let mut next = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let recs: Vec<(String, String)> = (0..20)
                        .map(|j| {
                            let i = next + j;
                            (format!("k{}", i % 37), format!("v{i}"))
                        })
                        .collect();
                    next += 20;
                    let got = put_batch(&sc, "orders", recs).await?;
                    acked.lock().expect("acks").extend(got);
                }
                Ok::<_, anyhow::Error>(())
            })
        };
        let count = || acked.lock().map(|a| a.len()).unwrap_or(0);
        wait_for("2000 acknowledged records", Duration::from_secs(60), || {
            (count() >= 2000).then_some(())
        })?;
        c.workers[victim].kill9();
        let before = count();
        wait_for("2000 more after the kill", Duration::from_secs(120), || {
            (count() >= before + 2000).then_some(())
        })?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(producer)??;
        let acked = acked.lock().expect("acks").clone();
        let info = rt.block_on(sc.describe("orders"))?;
        anyhow::ensure!(
            info.shards[0].primary != victim_id && info.shards[0].epoch > 1,
            "shard 0 did not fail over: {:?}",
            info.shards[0]
        );
        let read = read_all(c, "orders")?;
        check_against_acks(&read, &acked)?;
        // The lost replica is re-created on the spare worker, which catches up and joins the in-sync set.
        wait_for(
            "shard 0 back at three in-sync replicas",
            Duration::from_secs(60),
            || {
                let s = rt.block_on(sc.describe("orders")).ok()?.shards[0].clone();
                (s.replicas.len() == 3 && !s.replicas.contains(&victim_id) && s.isr.len() == 3)
                    .then_some(())
            },
        )?;
        Ok(())
    };
    if let Err(e) = run(&mut c) {
        c.dump_logs();
        panic!("{e:#}");
    }
}

/// Split a shard and merge two shards while a producer writes: a reader
/// that follows lineage sees every acknowledged record, per-key order kept.
#[test]
fn split_and_merge_under_load() {
    let c = Cluster::start(spec()).expect("cluster");
    let rt = runtime();
    let run = || -> anyhow::Result<()> {
        c.ok(&["stream", "create", "events", "--shards", "2"])?;
        let sc = client(&c);
        let mut acked: Vec<Acked> = Vec::new();
        let mut next = 0usize;
        // Writes 20 batches, then goes on until every shard in `into` has taken
        // records: a closed parent's primary learns of the close with its next
        // heartbeat, and until then it may still take (and readers still see) records.
        let mut produce = |acked: &mut Vec<Acked>, into: &[&str]| -> anyhow::Result<()> {
            let start = std::time::Instant::now();
            let first = acked.len();
            for round in 0.. {
                let used = |s: &&str| acked[first..].iter().any(|a| a.shard == *s);
                if round >= 20 && into.iter().all(used) {
                    break;
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(60),
                    "no records reached {into:?}"
                );
                let recs: Vec<(String, String)> = (0..25)
                    .map(|j| {
                        let i = next + j;
                        (format!("key-{}", i % 53), format!("e{i}"))
                    })
                    .collect();
                next += 25;
                acked.extend(rt.block_on(put_batch(&sc, "events", recs))?);
            }
            Ok(())
        };
        produce(
            &mut acked,
            &["shardId-000000000000", "shardId-000000000001"],
        )?;
        // Split shard 0 at a quarter of the hash space: children 2 and 3.
        let quarter = (u128::MAX / 4).to_string();
        c.ok(&[
            "stream",
            "split",
            "events",
            "shardId-000000000000",
            "--at",
            &quarter,
        ])?;
        produce(
            &mut acked,
            &["shardId-000000000002", "shardId-000000000003"],
        )?;
        // Merge child 3 with shard 1 (adjacent ranges): child 4.
        c.ok(&[
            "stream",
            "merge",
            "events",
            "shardId-000000000003",
            "shardId-000000000001",
        ])?;
        produce(&mut acked, &["shardId-000000000004"])?;
        let info = rt.block_on(sc.describe("events"))?;
        let open: Vec<&str> = info
            .shards
            .iter()
            .filter(|s| s.open)
            .map(|s| s.shard_id.as_str())
            .collect();
        anyhow::ensure!(
            open == ["shardId-000000000002", "shardId-000000000004"],
            "open shards {open:?}"
        );
        let read = wait_for("a full read", Duration::from_secs(30), || {
            let r = read_all(&c, "events").ok()?;
            (r.len() >= acked.len()).then_some(r)
        })?;
        check_against_acks(&read, &acked)?;
        let used: std::collections::BTreeSet<&str> =
            acked.iter().map(|a| a.shard.as_str()).collect();
        anyhow::ensure!(used.len() == 5, "records went to {used:?}");
        // UpdateShardCount: 2 open shards become 3 uniform ones (children with several parents).
        c.ok(&["stream", "scale", "events", "3"])?;
        produce(
            &mut acked,
            &[
                "shardId-000000000005",
                "shardId-000000000006",
                "shardId-000000000007",
            ],
        )?;
        let info = rt.block_on(sc.describe("events"))?;
        let open: Vec<_> = info.shards.iter().filter(|s| s.open).collect();
        anyhow::ensure!(open.len() == 3, "open after scale: {}", open.len());
        anyhow::ensure!(
            open.iter().any(|s| s.parents.len() == 2),
            "a scaled shard should have two parents: {open:?}"
        );
        let read = wait_for("a full read after scaling", Duration::from_secs(30), || {
            let r = read_all(&c, "events").ok()?;
            (r.len() >= acked.len()).then_some(r)
        })?;
        check_against_acks(&read, &acked)?;
        Ok(())
    };
    if let Err(e) = run() {
        c.dump_logs();
        panic!("{e:#}");
    }
}

/// Enhanced fan-out: a registered consumer gets records pushed over
/// SubscribeToShard, from every open shard.
#[test]
fn registered_consumer_gets_pushed_records() {
    let c = Cluster::start(spec()).expect("cluster");
    let rt = runtime();
    let run = || -> anyhow::Result<()> {
        c.ok(&["stream", "create", "push", "--shards", "2"])?;
        c.ok(&["stream", "consumer", "push", "dashboard"])?;
        let info = c.json(&["stream", "describe", "push"])?;
        anyhow::ensure!(
            info["consumers"][0] == "dashboard",
            "consumer not registered: {info}"
        );
        let sc = client(&c);
        let recs: Vec<(String, String)> = (0..200)
            .map(|i| (format!("k{i}"), format!("p{i}")))
            .collect();
        rt.block_on(put_batch(&sc, "push", recs))?;
        let out = c.ok(&[
            "--json",
            "stream",
            "read",
            "push",
            "--consumer",
            "dashboard",
            "--limit",
            "200",
            "--idle-exit",
            "20s",
        ])?;
        let read = basin_tests::streams::parse_read_lines(&out)?;
        let got: std::collections::BTreeSet<&str> = read.iter().map(|r| r.data.as_str()).collect();
        anyhow::ensure!(
            got.len() == 200,
            "pushed {} distinct records of 200",
            got.len()
        );
        Ok(())
    };
    if let Err(e) = run() {
        c.dump_logs();
        panic!("{e:#}");
    }
}
