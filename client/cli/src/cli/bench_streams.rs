//! Stream load generators for `bench/streams.sh`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use basin_client::streams::{PutEntry, PutOutcome, StreamClient};
use bytes::Bytes;
use serde_json::json;

use super::Global;
use super::output::print_json;

/// Acknowledged records per second with `concurrency` PutRecords calls in flight.
pub async fn put(
    g: &Global,
    stream: &str,
    records: u64,
    size: usize,
    batch: usize,
    concurrency: u64,
) -> anyhow::Result<()> {
    let client = StreamClient::new(g.masters()?).with_external(g.external_addrs);
    client.describe(stream).await?;
    let batch = batch.clamp(1, 500) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let bar = indicatif::ProgressBar::new(records);
    let payload = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, failed, bar, payload) = (
            client.clone(),
            next.clone(),
            failed.clone(),
            bar.clone(),
            payload.clone(),
        );
        let stream = stream.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= records {
                    return Ok::<_, anyhow::Error>(());
                }
                let n = batch.min(records - first);
                let entries = (first..first + n)
                    .map(|i| PutEntry {
                        partition_key: format!("pk-{}", i % 4096),
                        explicit_hash_key: None,
                        data: payload.clone(),
                    })
                    .collect();
                let out = client.put_records(&stream, entries).await?;
                let bad = out
                    .iter()
                    .filter(|o| matches!(o, PutOutcome::Failed { .. }))
                    .count() as u64;
                failed.fetch_add(bad, Ordering::Relaxed);
                bar.inc(n);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let ok = records - failed.load(Ordering::Relaxed);
    print_json(&json!({
        "records": ok,
        "failed": records - ok,
        "bytes": ok * size as u64,
        "seconds": secs,
        "records_per_sec": ok as f64 / secs,
        "mb_per_sec": (ok * size as u64) as f64 / secs / 1e6,
    }));
    Ok(())
}

/// Put→get latency: the producer stamps each record with its send time; a
/// reader polling the shard's primary notes when each becomes readable.
pub async fn latency(
    g: &Global,
    stream: &str,
    rate: u64,
    records: u64,
    size: usize,
) -> anyhow::Result<()> {
    let client = StreamClient::new(g.masters()?).with_external(g.external_addrs);
    let info = client.describe(stream).await?;
    let shards: Vec<String> = info
        .shards
        .iter()
        .filter(|s| s.open)
        .map(|s| s.shard_id.clone())
        .collect();
    let epoch = Instant::now();
    let seen = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for shard in shards {
        let (client, stream, seen) = (client.clone(), stream.to_string(), seen.clone());
        let from = client
            .resolve(&stream, &shard, basin_client::streams::Position::Latest)
            .await?;
        readers.push(tokio::spawn(async move {
            let mut next = from;
            let mut lat = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30 + records / rate.max(1));
            while Instant::now() < deadline {
                let r = client.get_records(&stream, &shard, next, 10_000).await?;
                let now = epoch.elapsed().as_micros() as u64;
                for rec in &r.records {
                    let sent = std::str::from_utf8(&rec.data[..rec.data.len().min(20)])
                        .ok()
                        .and_then(|s| s.trim().parse::<u64>().ok());
                    if let Some(sent) = sent {
                        lat.push(now.saturating_sub(sent));
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next = r.next_seq;
                if r.records.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if seen.load(Ordering::Relaxed) >= records {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let interval = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    let bar = indicatif::ProgressBar::new(records);
    for i in 0..records {
        tick.tick().await;
        let mut data = format!("{:>20}", epoch.elapsed().as_micros()).into_bytes();
        data.resize(size.max(20), b'x');
        client
            .put_records(
                stream,
                vec![PutEntry {
                    partition_key: format!("pk-{i}"),
                    explicit_hash_key: None,
                    data: Bytes::from(data),
                }],
            )
            .await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await??);
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|us| *us as f64 / 1000.0)
            .unwrap_or(f64::NAN)
    };
    print_json(&json!({
        "records": all.len(),
        "rate": rate,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": all.last().map(|us| *us as f64 / 1000.0),
    }));
    Ok(())
}
