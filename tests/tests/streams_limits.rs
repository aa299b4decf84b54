//! Stream limits and retention: Kinesis-named errors for oversized records,
//! oversized calls, empty keys, expired iterators and throttled shards; the
//! client library retries throttling; old records and their segment files
//! disappear after the retention period.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use basin_tests::streams::{client, put_batch, read_all};
use basin_tests::{Cluster, Spec, http_post, wait_for};
use serde_json::{Value, json};

fn kinesis(c: &Cluster, op: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let target = format!("Kinesis_20131202.{op}");
    let (code, text) = http_post(
        &c.masters[0].http,
        "/",
        &[
            ("X-Amz-Target", &target),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        body.to_string().as_bytes(),
    )?;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((code, v))
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn limits_give_kinesis_errors_and_throttling_is_retried() {
    // Default per-shard limits: 1 MiB/s and 1,000 records/s in.
    let c = Cluster::start(Spec {
        task: 0,
        ..Spec::default()
    })
    .expect("cluster");
    let run = || -> anyhow::Result<()> {
        let (code, _) = kinesis(
            &c,
            "CreateStream",
            json!({"StreamName": "lim", "ShardCount": 1}),
        )?;
        anyhow::ensure!(code == 200, "create: {code}");
        let expect = |op: &str, body: Value, want: &str| -> anyhow::Result<()> {
            let (code, v) = kinesis(&c, op, body)?;
            anyhow::ensure!(
                code == 400 && v["__type"] == want,
                "{op}: wanted {want}, got {code} {v}"
            );
            Ok(())
        };
        let big = vec![b'x'; 1024 * 1024 + 1];
        expect(
            "PutRecord",
            json!({"StreamName": "lim", "PartitionKey": "k", "Data": b64(&big)}),
            "ValidationException",
        )?;
        let many: Vec<Value> = (0..501)
            .map(|i| json!({"PartitionKey": format!("k{i}"), "Data": b64(b"x")}))
            .collect();
        expect(
            "PutRecords",
            json!({"StreamName": "lim", "Records": many}),
            "ValidationException",
        )?;
        expect(
            "PutRecord",
            json!({"StreamName": "lim", "PartitionKey": "", "Data": b64(b"x")}),
            "ValidationException",
        )?;
        // An iterator issued six minutes ago (they live five).
        let old = basin_client::streams::iterator::encode(
            "lim",
            "shardId-000000000000",
            0,
            basin_common::now_ms() - 6 * 60 * 1000,
        );
        expect(
            "GetRecords",
            json!({"ShardIterator": old}),
            "ExpiredIteratorException",
        )?;
        // 500 records of 2,100 bytes in one call: more than a second's 1 MiB.
        let heavy: Vec<Value> = (0..500)
            .map(|i| json!({"PartitionKey": format!("k{i}"), "Data": b64(&[b'y'; 2100])}))
            .collect();
        let (code, v) = kinesis(
            &c,
            "PutRecords",
            json!({"StreamName": "lim", "Records": heavy}),
        )?;
        anyhow::ensure!(code == 200, "heavy put: {code} {v}");
        let failed = v["FailedRecordCount"].as_u64().unwrap_or(0);
        let throttled = v["Records"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["ErrorCode"] == "ProvisionedThroughputExceededException")
                    .count()
            })
            .unwrap_or(0);
        anyhow::ensure!(
            failed > 0 && throttled as u64 == failed,
            "expected throttled records, got {v}"
        );
        // The client library (and the CLI) retry throttled records with backoff:
        // 2,500 records at 1,000/s all land.
        c.ok(&["stream", "create", "slow", "--shards", "1"])?;
        let lines: String = (0..2500).map(|i| format!("k{}\tr{i}\n", i % 10)).collect();
        let file = c.dir.path().join("slow.tsv");
        std::fs::write(&file, lines)?;
        let out = std::process::Command::new(basin_tests::basin_bin())
            .args(["--master", &c.master_list(), "--token", &c.token])
            .args(["stream", "put", "slow", "--keyed"])
            .stdin(std::fs::File::open(&file)?)
            .env("RUST_LOG", "warn")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "throttled put: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = read_all(&c, "slow")?;
        anyhow::ensure!(read.len() == 2500, "read {} of 2500", read.len());
        Ok(())
    };
    if let Err(e) = run() {
        c.dump_logs();
        panic!("{e:#}");
    }
}

fn segment_files(c: &Cluster) -> BTreeSet<std::path::PathBuf> {
    let mut out = BTreeSet::new();
    for w in &c.workers {
        let root = w.data_dir.join("streams");
        let Ok(streams) = std::fs::read_dir(&root) else {
            continue;
        };
        for s in streams.flatten() {
            let Ok(shards) = std::fs::read_dir(s.path()) else {
                continue;
            };
            for sh in shards.flatten() {
                let Ok(files) = std::fs::read_dir(sh.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    if f.path().extension().is_some_and(|e| e == "seg") {
                        out.insert(f.path());
                    }
                }
            }
        }
    }
    out
}

#[test]
fn records_past_retention_disappear_with_their_segments() {
    let c = Cluster::start(Spec {
        task: 0,
        worker_args: vec![
            "--stream-no-limits".into(),
            "--stream-segment-roll".into(),
            "1s".into(),
        ],
        ..Spec::default()
    })
    .expect("cluster");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let run = || -> anyhow::Result<()> {
        c.ok(&[
            "stream",
            "create",
            "short",
            "--shards",
            "1",
            "--retention",
            "4s",
        ])?;
        let sc = client(&c);
        let old: Vec<(String, String)> = (0..50)
            .map(|i| (format!("k{i}"), format!("old-{i}")))
            .collect();
        rt.block_on(put_batch(&sc, "short", old))?;
        let first_files = wait_for(
            "replicas of the old records",
            Duration::from_secs(20),
            || {
                let f = segment_files(&c);
                (f.len() >= 3).then_some(f)
            },
        )?;
        let mut n = 0;
        wait_for(
            "old records and their segment files to go",
            Duration::from_secs(60),
            || {
                // Keep writing so that the stream has fresh records too.
                n += 1;
                rt.block_on(put_batch(
                    &sc,
                    "short",
                    vec![("k".into(), format!("new-{n}"))],
                ))
                .ok()?;
                let read = read_all(&c, "short").ok()?;
                let old_left = read.iter().filter(|r| r.data.starts_with("old-")).count();
                let now = segment_files(&c);
                let gone = first_files.iter().all(|f| !now.contains(f));
                let newest = format!("new-{n}");
                (old_left == 0 && gone && read.iter().any(|r| r.data == newest)).then_some(())
            },
        )?;
        Ok(())
    };
    if let Err(e) = run() {
        c.dump_logs();
        panic!("{e:#}");
    }
}
