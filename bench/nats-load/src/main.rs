//! JetStream load generator for bench/streams.sh, mirroring
//! `basin bench stream-put` and `basin bench stream-latency`:
//!
//!   nats-load put     --server URLS --stream S [--streams K] --records N --size B
//!                     [--batch 500] [--concurrency 8] [--replicas R]
//!   nats-load latency --server URLS --stream S [--streams K] --rate R --records N --size B
//!                     [--replicas R]
//!
//! Both (re)create K file-storage streams S0..S(K-1) with `--replicas`
//! replicas, each bound to subject `S.i` (K plays the part of Basin's shards).
//! `put`: `concurrency` tasks, each with its own connection, claim `batch`
//! records at a time, publish them all and then await every PublishAck (so up
//! to concurrency × batch acknowledged publishes are in flight), and print
//! {records, failed, bytes, seconds, records_per_sec, mb_per_sec}.
//! `latency`: one pull consumer per stream (deliver new, no acks) reads while
//! a producer publishes one record per tick at `rate`, each stamped with its
//! send time and awaited until acknowledged; prints {records, rate, p50_ms,
//! p99_ms, max_ms}. Output is JSON on stdout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, context::ContextBuilder, stream};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    mode: String,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, Error> {
        let mut it = std::env::args().skip(1);
        let mode = it.next().ok_or("usage: nats-load put|latency --flag value …")?;
        let mut flags = HashMap::new();
        while let Some(k) = it.next() {
            let k = k.strip_prefix("--").ok_or_else(|| format!("unexpected {k}"))?.to_string();
            let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
            flags.insert(k, v);
        }
        Ok(Args { mode, flags })
    }
    fn str(&self, k: &str, default: &str) -> String {
        self.flags.get(k).cloned().unwrap_or_else(|| default.to_string())
    }
    fn num(&self, k: &str, default: u64) -> Result<u64, Error> {
        match self.flags.get(k) {
            Some(v) => Ok(v.parse().map_err(|e| format!("--{k} {v}: {e}"))?),
            None => Ok(default),
        }
    }
}

async fn connect(servers: &str) -> Result<async_nats::Client, Error> {
    let addrs: Vec<async_nats::ServerAddr> =
        servers.split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    Ok(async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(10))
        .connect(addrs)
        .await?)
}

/// Deletes and creates streams `name0..name{k-1}` (subjects `name.i`).
async fn create_streams(
    js: &jetstream::Context,
    name: &str,
    k: u64,
    replicas: usize,
) -> Result<(), Error> {
    for i in 0..k {
        let sname = format!("{name}{i}");
        let _ = js.delete_stream(&sname).await;
        let mut tries = 0;
        loop {
            let r = js
                .create_stream(stream::Config {
                    name: sname.clone(),
                    subjects: vec![format!("{name}.{i}")],
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await;
            match r {
                Ok(_) => break,
                // A cluster that has just formed may not have a meta leader yet.
                Err(e) if tries < 60 => {
                    tries += 1;
                    if tries == 1 {
                        eprintln!("create stream {sname}: {e}; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(format!("create stream {sname}: {e}").into()),
            }
        }
    }
    Ok(())
}

async fn put(a: &Args) -> Result<(), Error> {
    let servers = a.str("server", "nats://127.0.0.1:4222");
    let name = a.str("stream", "BENCH");
    let k = a.num("streams", 1)?.max(1);
    let records = a.num("records", 200_000)?;
    let size = a.num("size", 100)? as usize;
    let batch = a.num("batch", 500)?.max(1);
    let concurrency = a.num("concurrency", 8)?.max(1);
    let replicas = a.num("replicas", 1)? as usize;

    let admin = jetstream::new(connect(&servers).await?);
    create_streams(&admin, &name, k, replicas).await?;

    let payload = Bytes::from(vec![b'x'; size]);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut contexts = Vec::new();
    for _ in 0..concurrency {
        let client = connect(&servers).await?;
        contexts.push(
            ContextBuilder::new()
                .timeout(Duration::from_secs(30))
                .max_ack_inflight(batch as usize * 2)
                .backpressure_on_inflight(true)
                .build(client),
        );
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (t, js) in contexts.into_iter().enumerate() {
        let (next, failed, payload, name) =
            (next.clone(), failed.clone(), payload.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::with_capacity(batch as usize);
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= records {
                    return Ok::<_, Error>(());
                }
                let n = batch.min(records - first);
                for i in first..first + n {
                    // Spread records over the streams as Basin spreads them over shards.
                    let subject = format!("{name}.{}", (i + t as u64) % k);
                    match js.publish(subject, payload.clone()).await {
                        Ok(ack) => acks.push(ack),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                for ack in acks.drain(..) {
                    if ack.await.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let ok = records - failed.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "records": ok,
            "failed": records - ok,
            "bytes": ok * size as u64,
            "seconds": secs,
            "records_per_sec": ok as f64 / secs,
            "mb_per_sec": (ok * size as u64) as f64 / secs / 1e6,
        })
    );
    Ok(())
}

async fn latency(a: &Args) -> Result<(), Error> {
    let servers = a.str("server", "nats://127.0.0.1:4222");
    let name = a.str("stream", "LAT");
    let k = a.num("streams", 1)?.max(1);
    let rate = a.num("rate", 200)?.max(1);
    let records = a.num("records", 2000)?;
    let size = a.num("size", 100)? as usize;
    let replicas = a.num("replicas", 1)? as usize;

    let client = connect(&servers).await?;
    let js = ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .build(client);
    create_streams(&js, &name, k, replicas).await?;

    let epoch = Instant::now();
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(records as usize)));
    let seen = Arc::new(AtomicU64::new(0));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let mut readers = Vec::new();
    for i in 0..k {
        let st = js.get_stream(format!("{name}{i}")).await?;
        let c = st
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::New,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await?;
        let mut msgs = c.messages().await?;
        let (lat, seen, all_seen) = (lat.clone(), seen.clone(), all_seen.clone());
        readers.push(tokio::spawn(async move {
            while let Some(m) = msgs.next().await {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("consumer: {e}");
                        continue;
                    }
                };
                let now = epoch.elapsed().as_micros() as u64;
                let p = &m.payload;
                let sent = std::str::from_utf8(&p[..p.len().min(20)])
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if let Some(sent) = sent {
                    lat.lock().unwrap().push(now.saturating_sub(sent));
                    if seen.fetch_add(1, Ordering::Relaxed) + 1 >= records {
                        all_seen.notify_one();
                    }
                }
            }
        }));
    }
    // Let the pull requests reach the server before the first publish.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for i in 0..records {
        tick.tick().await;
        let mut data = format!("{:>20}", epoch.elapsed().as_micros()).into_bytes();
        data.resize(size.max(20), b'x');
        js.publish(format!("{name}.{}", i % k), Bytes::from(data))
            .await?
            .await?;
    }
    // Wait for the readers to see every record (at most 30 s more), then stop them.
    if seen.load(Ordering::Relaxed) < records {
        let _ = tokio::time::timeout(Duration::from_secs(30), all_seen.notified()).await;
    }
    for r in &readers {
        r.abort();
    }
    let mut all = std::mem::take(&mut *lat.lock().unwrap());
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|us| *us as f64 / 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        json!({
            "records": all.len(),
            "rate": rate,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": all.last().map(|us| *us as f64 / 1000.0),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = Args::parse()?;
    match a.mode.as_str() {
        "put" => put(&a).await,
        "latency" => latency(&a).await,
        m => Err(format!("unknown mode {m}: put or latency").into()),
    }
}
