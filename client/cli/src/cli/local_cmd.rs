//! `basin local up` and `basin demo`.

use std::path::PathBuf;

use crate::local::{LocalCluster, LocalOptions};
use anyhow::{Context, bail};
use basin_client::transfer;
use basin_client::{CreateOptions, DfsClient, Location};

use super::roles::stop_signal;

#[derive(clap::Subcommand)]
pub enum LocalCmd {
    /// Run every role in this process until Ctrl-C.
    Up(UpArgs),
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[arg(long, default_value = "./basin-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 1, value_parser = parse_masters)]
    pub masters: usize,
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    #[arg(long, default_value_t = 1)]
    pub task_workers: usize,
    /// Cluster default block size in bytes.
    #[arg(long)]
    pub block_size: Option<u64>,
    /// Run these steps (YAML) once the cluster is up, as EMR does.
    #[arg(long)]
    pub steps: Option<PathBuf>,
    /// Shut down after the steps and exit with their status (a transient cluster).
    #[arg(long, requires = "steps")]
    pub terminate: bool,
    /// Port of the HTTP endpoint (metrics, Kinesis API); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub http_port: u16,
    /// Warehouse compute nodes (0: no warehouse).
    #[arg(long, alias = "compute", default_value_t = 2)]
    pub computes: usize,
    /// Slices on each compute node.
    #[arg(long, default_value_t = 2)]
    pub slices: u32,
    /// Port of the warehouse's PostgreSQL endpoint (BASIN_PG); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub pg_port: u16,
    #[command(flatten)]
    pub stream: super::roles::StreamArgs,
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keep the demo's data here (default: a temporary directory, removed at the end).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

fn parse_masters(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err("a master group has 1, 3 or 5 members".into()),
    }
}

fn options(a: &UpArgs) -> anyhow::Result<LocalOptions> {
    if a.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let mut o = LocalOptions::new(a.data_dir.clone());
    o.masters = a.masters;
    o.workers = a.workers;
    o.task_workers = a.task_workers;
    if let Some(b) = a.block_size {
        o.block_size = b;
    }
    o.http_port = a.http_port;
    o.streams = a.stream.config();
    o.computes = a.computes;
    o.slices = a.slices;
    o.pg_port = a.pg_port;
    Ok(o)
}

pub async fn run_up(a: UpArgs) -> anyhow::Result<()> {
    let opts = options(&a)?;
    // Check the steps file before starting anything.
    let steps = match &a.steps {
        Some(p) => Some(super::steps::load(p)?),
        None => None,
    };
    let cluster = LocalCluster::start(&opts).await?;
    println!(
        "Basin local cluster is up ({} master(s), {} core worker(s), {} task worker(s))",
        a.masters, a.workers, a.task_workers
    );
    println!("  BASIN_MASTER={}", cluster.master_addrs.join(","));
    println!("  BASIN_TOKEN={}", cluster.token);
    println!(
        "  BASIN_KINESIS_URL={}   (AWS SDKs: endpoint_url)",
        cluster.kinesis_url
    );
    if let Some(l) = &cluster.leader_addr {
        println!("  BASIN_LEADER={l}   (Arrow Flight SQL: basin sql, ADBC, JDBC)");
    }
    if let Some(pg) = &cluster.pg_addr {
        println!(
            "  BASIN_PG={pg}   (psql -h HOST -p PORT -U basin dev; the password is BASIN_TOKEN)"
        );
    }
    println!(
        "  env file: {}   (source it in another shell: set -a; . {}; set +a)",
        cluster.env_file.display(),
        cluster.env_file.display()
    );
    if let Some(steps) = steps {
        let dfs = DfsClient::new(cluster.master_client(), "basin".into());
        let outcome = super::steps::run(&dfs, &steps).await;
        if a.terminate || outcome.terminate {
            println!("stopping…");
            cluster.shutdown().await;
            if outcome.failed > 0 {
                bail!("{} of {} step(s) failed", outcome.failed, steps.steps.len());
            }
            return Ok(());
        }
    }
    println!("Press Ctrl-C to stop.");
    stop_signal().await;
    println!("stopping…");
    cluster.shutdown().await;
    Ok(())
}

pub async fn run_demo(a: DemoArgs) -> anyhow::Result<()> {
    let tmp = tempdir()?;
    let dir = a.data_dir.clone().unwrap_or_else(|| tmp.clone());
    let mut opts = LocalOptions::new(dir.join("cluster"));
    opts.block_size = 1024 * 1024;
    println!("== starting a local cluster in {}", opts.data_dir.display());
    let cluster = LocalCluster::start(&opts).await?;
    let result = tour(&cluster, &dir).await;
    cluster.shutdown().await;
    if a.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    println!("== demo finished: every step passed");
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("basin-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    Ok(p)
}

/// Copies a local file into the cluster.
async fn upload(dfs: &DfsClient, local: &std::path::Path, dest: &str) -> anyhow::Result<()> {
    let src = transfer::local_source(local).await?;
    let sink = transfer::create(dfs, &Location::parse(dest)?, &CreateOptions::default()).await?;
    transfer::pump(src, sink, &|_| {}).await?;
    Ok(())
}

/// Streams: create, put with several keys, read back in order, split a shard.
async fn stream_tour(cluster: &LocalCluster) -> anyhow::Result<()> {
    use basin_client::streams::{PutEntry, PutOutcome, StreamClient};
    let sc = StreamClient::new(cluster.master_client());
    println!("== stream create clicks --shards 2");
    sc.create("clicks", 2, 0, 0).await?;
    println!("== stream put clicks   (300 records, 10 partition keys)");
    let entries: Vec<PutEntry> = (0..300)
        .map(|i| PutEntry {
            partition_key: format!("user-{}", i % 10),
            explicit_hash_key: None,
            data: bytes::Bytes::from(format!("click {i}")),
        })
        .collect();
    let out = sc.put_records("clicks", entries).await?;
    let ok = out
        .iter()
        .filter(|o| matches!(o, PutOutcome::Ok { .. }))
        .count();
    if ok != 300 {
        bail!("only {ok} of 300 records were acknowledged");
    }
    let info = sc.describe("clicks").await?;
    let mut read = 0;
    for s in &info.shards {
        let r = sc.get_records("clicks", &s.shard_id, 0, 10_000).await?;
        println!(
            "   {}: {} records, seq {}..{}, primary node {}, in sync {:?}",
            s.shard_id,
            r.records.len(),
            r.records.first().map(|x| x.seq).unwrap_or(0),
            r.records.last().map(|x| x.seq).unwrap_or(0),
            s.primary,
            s.isr
        );
        read += r.records.len();
    }
    if read != 300 {
        bail!("read back {read} records, put 300");
    }
    println!("== stream split clicks shardId-000000000000");
    let s0 = &info.shards[0];
    let (a, b): (u128, u128) = (s0.start_hash.parse()?, s0.end_hash.parse()?);
    let info = sc
        .split("clicks", &s0.shard_id, a + (b - a) / 2 + 1)
        .await?;
    println!(
        "   {} shards, {} open; the Kinesis API is at {}",
        info.shards.len(),
        info.shards.iter().filter(|s| s.open).count(),
        cluster.kinesis_url
    );
    Ok(())
}

/// The warehouse: a KEY-distributed table loaded with COPY from the cluster
/// file system, and an aggregate over its slices (what psql on BASIN_PG sees).
async fn warehouse_tour(cluster: &LocalCluster, dfs: &DfsClient) -> anyhow::Result<()> {
    use basin_leader::engine::Outcome;
    let Some(pg) = &cluster.pg_addr else {
        return Ok(());
    };
    let engine = basin_leader::Engine::new(cluster.master_client(), &cluster.token);
    let csv: String = (1..=1000)
        .map(|i| format!("{i},region-{},{}.25\n", i % 4, i % 50))
        .collect();
    let mut w = dfs.create("/demo/sales.csv", &Default::default()).await?;
    w.write(bytes::Bytes::from(csv)).await?;
    w.close().await?;
    for sql in [
        "CREATE TABLE sales (id BIGINT NOT NULL, region VARCHAR(20), amount DECIMAL(10,2)) DISTSTYLE KEY DISTKEY(region) SORTKEY(id)",
        "COPY sales FROM 'basin:///demo/sales.csv' FORMAT CSV",
    ] {
        println!("== sql: {sql}");
        engine.execute("basin", sql).await?;
    }
    let sql = "SELECT region, count(*) AS n, sum(amount) AS total FROM sales GROUP BY region ORDER BY region";
    println!("== sql: {sql}");
    let Outcome::Rows { batches, .. } = engine.execute("basin", sql).await? else {
        bail!("the query returned no rows");
    };
    let lines = basin_leader::reference::lines(&batches)?;
    for l in &lines {
        println!("   {l}");
    }
    if lines.len() != 4 || !lines.iter().all(|l| l.contains("|250|")) {
        bail!("unexpected warehouse result: {lines:?}");
    }
    // How it ran: one stage on every slice, grouped where the rows are
    // (the table is distributed on region), and the leader's final merge.
    println!("== sql: EXPLAIN {sql}");
    let Outcome::Rows { batches, .. } = engine.execute("basin", &format!("EXPLAIN {sql}")).await?
    else {
        bail!("EXPLAIN returned no rows");
    };
    let plan = basin_leader::reference::lines(&batches)?;
    for l in &plan {
        println!("   {l}");
    }
    if !plan.iter().any(|l| l.starts_with("Distributed plan")) {
        bail!("the query did not run on the compute nodes: {plan:?}");
    }
    println!(
        "   psql: PGPASSWORD=$BASIN_TOKEN psql -h {} -p {} -U basin dev",
        pg.split(':').next().unwrap_or("127.0.0.1"),
        pg.rsplit(':').next().unwrap_or("")
    );
    Ok(())
}

async fn tour(cluster: &LocalCluster, dir: &std::path::Path) -> anyhow::Result<()> {
    let dfs = DfsClient::new(cluster.master_client(), "basin".into());
    let local = dir.join("demo-input.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 12345u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&local, &data)?;

    println!("== dfs mkdir -p /demo");
    dfs.mkdir("/demo", true).await?;
    println!(
        "== dfs put {} /demo/data.bin   (1 MiB blocks, replication 3)",
        local.display()
    );
    upload(&dfs, &local, "/demo/data.bin").await?;
    println!("== dfs ls /demo");
    for s in dfs.list("/demo").await? {
        println!(
            "   {} {} bytes, replication {}",
            s.path, s.length, s.replication
        );
    }
    println!("== dfs stat /demo/data.bin");
    let st = dfs.stat("/demo/data.bin").await?;
    for b in &st.blocks {
        let reps: Vec<String> = b.replicas.iter().map(|r| r.name.clone()).collect();
        println!(
            "   blk_{} {} bytes on [{}]",
            b.block_id,
            b.length,
            reps.join(", ")
        );
    }
    println!("== dfs get /demo/data.bin");
    let out = dir.join("demo-output.bin");
    let _ = std::fs::remove_file(&out);
    let src = transfer::open(&dfs, &Location::parse("/demo/data.bin")?).await?;
    let sink = transfer::create_local(&out, true).await?;
    transfer::pump(src, sink, &|_| {}).await?;
    if std::fs::read(&out)? != data {
        bail!("the file read back differs from the one written");
    }
    println!("   {} bytes read back, identical", data.len());
    println!("== job submit --builtin wordcount --input /demo/words.txt --output /demo/counts");
    let text = "the quick brown fox\njumps over the lazy dog\nthe dog sleeps\n".repeat(200);
    let words = dir.join("demo-words.txt");
    std::fs::write(&words, &text)?;
    upload(&dfs, &words, "/demo/words.txt").await?;
    let job = super::job_cmd::wordcount(&dfs, "/demo/words.txt", "/demo/counts").await?;
    if job.state != "SUCCEEDED" {
        bail!("wordcount job {}: {}", job.state, job.failure);
    }
    let mut the = None;
    for part in dfs
        .list("/demo/counts")
        .await?
        .iter()
        .filter(|e| e.path.contains("part-"))
    {
        let (_, mut stream) = dfs.open(&part.path).await?;
        let mut body = Vec::new();
        while let Some(c) = futures::StreamExt::next(&mut stream).await {
            body.extend_from_slice(&c?);
        }
        for line in String::from_utf8_lossy(&body).lines() {
            if let Some(n) = line.strip_prefix("the\t") {
                the = Some(n.to_string());
            }
        }
    }
    println!(
        "   job {} {}: {} maps, {} reduces; \"the\" counted {} times",
        job.job_id,
        job.state,
        job.maps_total,
        job.reduces_total,
        the.as_deref().unwrap_or("0")
    );
    if the.as_deref() != Some("600") {
        bail!("wordcount counted \"the\" {:?} times, expected 600", the);
    }
    stream_tour(cluster).await?;
    warehouse_tour(cluster, &dfs).await?;
    println!("== dfs fsck /");
    let f = dfs.fsck("/").await?;
    println!(
        "   healthy {}  under-replicated {}  missing {}",
        f.healthy, f.under_replicated, f.missing
    );
    if f.missing > 0 {
        bail!("fsck reports missing blocks");
    }
    Ok(())
}
