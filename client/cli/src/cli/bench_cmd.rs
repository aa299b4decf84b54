//! `basin bench …`: load generators used by the scripts in `bench/`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use basin_client::CreateOptions;
use serde_json::json;

use super::Global;
use super::output::print_json;

#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Master metadata throughput: create and close empty files.
    CreateFiles {
        #[arg(long, default_value_t = 2000)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: u64,
        #[arg(long, default_value = "/bench-meta")]
        dir: String,
    },
    /// Acknowledged PutRecords throughput into an existing stream.
    StreamPut {
        #[arg(long)]
        stream: String,
        #[arg(long, default_value_t = 200_000)]
        records: u64,
        /// Bytes of data per record.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Records per PutRecords call.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Calls in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u64,
    },
    /// Put→get latency at a fixed rate: one record per put, read back by a
    /// polling reader; prints p50/p99 in milliseconds.
    StreamLatency {
        #[arg(long)]
        stream: String,
        /// Records per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        #[arg(long, default_value_t = 2000)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        size: usize,
    },
    /// Single-process DataFusion over files (the reference the warehouse is
    /// compared with): tables from a schema file of CREATE TABLE statements,
    /// data from DIR/NAME.parquet or DIR/NAME.tbl; prints rows as `psql -A -t`
    /// does, and each query's time on stderr.
    Datafusion {
        #[arg(long)]
        schema: std::path::PathBuf,
        #[arg(long)]
        data: std::path::PathBuf,
        /// Query files, run in order.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

pub async fn run(g: &Global, cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Datafusion {
            schema,
            data,
            files,
        } => {
            let ddl = std::fs::read_to_string(&schema)
                .with_context(|| format!("cannot read {}", schema.display()))?;
            let ctx = basin_leader::reference::session(&ddl, &data).await?;
            for f in files {
                let sql = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                let start = Instant::now();
                let rows = basin_leader::reference::query(&ctx, sql.trim().trim_end_matches(';'))
                    .await
                    .with_context(|| format!("{}", f.display()))?;
                eprintln!("{}\t{:.3}", f.display(), start.elapsed().as_secs_f64());
                for r in rows {
                    println!("{r}");
                }
            }
            Ok(())
        }
        BenchCmd::StreamPut {
            stream,
            records,
            size,
            batch,
            concurrency,
        } => super::bench_streams::put(g, &stream, records, size, batch, concurrency).await,
        BenchCmd::StreamLatency {
            stream,
            rate,
            records,
            size,
        } => super::bench_streams::latency(g, &stream, rate, records, size).await,
        BenchCmd::CreateFiles {
            count,
            concurrency,
            dir,
        } => {
            let dfs = g.dfs()?;
            dfs.mkdir(&dir, true).await?;
            let next = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency.max(1) {
                let (dfs, next, dir) = (dfs.clone(), next.clone(), dir.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok::<(), basin_client::ClientError>(());
                        }
                        let w = dfs
                            .create(&format!("{dir}/f{i}"), &CreateOptions::default())
                            .await?;
                        w.close().await?;
                    }
                }));
            }
            for t in tasks {
                t.await??;
            }
            let secs = start.elapsed().as_secs_f64();
            let ops = count as f64 / secs;
            if g.json {
                print_json(&json!({"files": count, "seconds": secs, "files_per_sec": ops}));
            } else {
                println!("{count} files created and closed in {secs:.2}s: {ops:.0} files/s");
            }
            Ok(())
        }
    }
}
