//! `basin job …`: submit MapReduce jobs and follow them.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use basin_client::{CreateOptions, DfsClient, Location, transfer};
use basin_proto as pb;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use object_store::ObjectStoreExt;
use serde_json::json;

use super::Global;
use super::output::{print_json, time_string};

#[derive(clap::Subcommand)]
pub enum JobCmd {
    /// Submit a job: --builtin NAME, or --mapper/--combiner/--reducer commands.
    Submit(Box<SubmitArgs>),
    /// A job's state, progress and failure reason.
    Status { id: u64 },
    /// Wait for a job with progress bars; exits non-zero if it fails.
    Wait { id: u64 },
    /// Every job.
    List,
    /// Stop a job.
    Kill { id: u64 },
    /// Each attempt's error and stderr.
    Logs { id: u64 },
    /// A job's counters.
    Counters { id: u64 },
}

#[derive(clap::Args, serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SubmitArgs {
    /// Input files, directories or globs (comma-separated): basin://, s3://, file://.
    #[arg(long, value_delimiter = ',')]
    pub input: Vec<String>,
    /// Output directory (must not exist).
    #[arg(long)]
    pub output: String,
    /// A built-in job: wordcount, grep (with --pattern), sort.
    #[arg(long, conflicts_with_all = ["mapper", "reducer", "combiner"])]
    pub builtin: Option<String>,
    /// Regular expression for the grep built-in.
    #[arg(long)]
    pub pattern: Option<String>,
    /// teragen: how many 100-byte records to write.
    #[arg(long)]
    pub records: Option<u64>,
    /// teragen: how many map tasks write them.
    #[arg(long)]
    pub maps: Option<u32>,
    #[arg(long)]
    pub mapper: Option<String>,
    #[arg(long)]
    pub combiner: Option<String>,
    #[arg(long)]
    pub reducer: Option<String>,
    /// Number of reduce tasks (0: map-only).
    #[arg(long, default_value_t = 1)]
    #[serde(default = "one")]
    pub reducers: u32,
    /// Bytes per map task (default: the file's block size).
    #[arg(long)]
    pub split_size: Option<u64>,
    /// Local files to ship into every task's working directory.
    #[arg(long)]
    pub file: Vec<std::path::PathBuf>,
    /// Map-side sort buffer in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    #[serde(default = "sort_buffer")]
    pub sort_buffer: u64,
    /// Attempts per task before the job fails.
    #[arg(long, default_value_t = 4)]
    #[serde(default = "four")]
    pub max_attempts: u32,
    #[arg(long, default_value = "")]
    pub name: String,
    /// No speculative attempts for straggling tasks.
    #[arg(long)]
    pub no_speculation: bool,
    /// Wait for the job, showing progress; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
}

fn one() -> u32 {
    1
}
fn four() -> u32 {
    4
}
fn sort_buffer() -> u64 {
    64 * 1024 * 1024
}

fn glob_match(pattern: &str, name: &str) -> bool {
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

/// Files under a cluster path (recursively; `_`/`.` names skipped, as Hadoop does).
async fn basin_files(
    dfs: &DfsClient,
    p: &str,
    out: &mut Vec<pb::FileStatus>,
) -> anyhow::Result<()> {
    let name = basin_common::path::file_name(p);
    if name.contains('*') || name.contains('?') {
        let parent = basin_common::path::parent(p).unwrap_or("/");
        for e in dfs.list(parent).await? {
            if glob_match(name, basin_common::path::file_name(&e.path)) {
                Box::pin(basin_files(dfs, &e.path, out)).await?;
            }
        }
        return Ok(());
    }
    let st = dfs.stat(p).await?.status.unwrap_or_default();
    if !st.is_dir {
        out.push(st);
        return Ok(());
    }
    for e in dfs.list(p).await? {
        let n = basin_common::path::file_name(&e.path);
        if n.starts_with('_') || n.starts_with('.') {
            continue;
        }
        Box::pin(basin_files(dfs, &e.path, out)).await?;
    }
    Ok(())
}

/// Input splits with the nodes that hold each split's first block.
async fn splits(
    dfs: &DfsClient,
    inputs: &[String],
    split_size: Option<u64>,
) -> anyhow::Result<Vec<pb::InputSplit>> {
    let mut out = Vec::new();
    for raw in inputs {
        match Location::parse(raw)? {
            Location::Basin(p) => {
                let mut files = Vec::new();
                basin_files(dfs, &p, &mut files).await?;
                if files.is_empty() {
                    bail!("no input files match {raw}");
                }
                for f in files {
                    let st = dfs.stat(&f.path).await?;
                    let size = split_size.unwrap_or(f.block_size).max(1);
                    let mut offset = 0;
                    loop {
                        let hosts = st
                            .blocks
                            .iter()
                            .find(|b| b.offset <= offset && offset < b.offset + b.length)
                            .map(|b| b.replicas.iter().map(|r| r.id).collect())
                            .unwrap_or_default();
                        let length = size.min(f.length.saturating_sub(offset));
                        out.push(pb::InputSplit {
                            path: f.path.clone(),
                            offset,
                            length,
                            hosts,
                            whole_file: false,
                        });
                        offset += size;
                        if offset >= f.length {
                            break;
                        }
                    }
                }
            }
            Location::Object { store, path, url } => {
                if store.head(&path).await.is_ok() {
                    out.push(pb::InputSplit {
                        path: url,
                        whole_file: true,
                        ..Default::default()
                    });
                    continue;
                }
                let base = url.trim_end_matches('/').to_string();
                let prefix_len = path.as_ref().len();
                let mut list = store.list(Some(&path));
                let mut any = false;
                while let Some(m) = list.next().await {
                    let m = m?;
                    let rel = m
                        .location
                        .as_ref()
                        .get(prefix_len..)
                        .unwrap_or("")
                        .trim_start_matches('/')
                        .to_string();
                    out.push(pb::InputSplit {
                        path: format!("{base}/{rel}"),
                        whole_file: true,
                        ..Default::default()
                    });
                    any = true;
                }
                if !any {
                    bail!("no input objects under {raw}");
                }
            }
        }
    }
    Ok(out)
}

/// Ships local artefacts into the cluster for the tasks to fetch.
async fn upload_files(
    dfs: &DfsClient,
    files: &[std::path::PathBuf],
) -> anyhow::Result<Vec<String>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let dir = format!("/tmp/basin-jobs/{}", uuid::Uuid::new_v4());
    dfs.mkdir(&dir, true).await?;
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .with_context(|| format!("--file {}", f.display()))?;
        let dest = format!("{dir}/{name}");
        let src = transfer::local_source(f).await?;
        let sink = transfer::create(
            dfs,
            &Location::Basin(dest.clone()),
            &CreateOptions::default(),
        )
        .await?;
        transfer::pump(src, sink, &|_| {}).await?;
        out.push(dest);
    }
    Ok(out)
}

/// TeraGen's splits: row ranges, no input files.
fn teragen_splits(records: u64, maps: u32) -> Vec<pb::InputSplit> {
    let maps = u64::from(maps.max(1)).min(records.max(1));
    let per = records.div_ceil(maps);
    (0..maps)
        .map(|m| m * per)
        .take_while(|start| *start < records)
        .map(|start| pb::InputSplit {
            path: String::new(),
            offset: start,
            length: per.min(records - start),
            ..Default::default()
        })
        .collect()
}

/// TeraSort's total-order boundaries: keys sampled from the input, sorted,
/// cut into `reducers` ranges of about equal size.
async fn sample_boundaries(
    dfs: &DfsClient,
    splits: &[pb::InputSplit],
    reducers: u32,
) -> anyhow::Result<String> {
    const SAMPLE_BYTES: u64 = 100 * 1000;
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for s in splits.iter().take(20) {
        let start = s.offset.div_ceil(100) * 100;
        let (_, mut stream) = dfs.open_from(&s.path, start).await?;
        let mut buf = Vec::new();
        while (buf.len() as u64) < SAMPLE_BYTES.min(s.length) {
            match stream.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => break,
            }
        }
        keys.extend(buf.chunks_exact(100).map(|r| r[..10].to_vec()));
    }
    keys.sort();
    let r = reducers.max(1) as usize;
    let hex = |k: &Vec<u8>| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok((1..r)
        .filter_map(|i| keys.get(i * keys.len() / r))
        .map(hex)
        .collect::<Vec<_>>()
        .join(","))
}

/// The job spec for submit arguments: inputs expanded into splits, local
/// artefacts shipped into the cluster.
pub async fn build_spec(dfs: &DfsClient, a: &SubmitArgs) -> anyhow::Result<pb::JobSpec> {
    let builtin = a.builtin.clone().unwrap_or_default();
    let teragen = builtin == "teragen";
    if (a.input.is_empty() && !teragen) || a.output.is_empty() {
        bail!("a job needs an input and an output");
    }
    let mut reducers = a.reducers;
    let splits = if teragen {
        let Some(n) = a.records.filter(|n| *n > 0) else {
            bail!("teragen needs --records N")
        };
        reducers = 0;
        teragen_splits(n, a.maps.unwrap_or(2))
    } else {
        splits(dfs, &a.input, a.split_size).await?
    };
    let files = upload_files(dfs, &a.file).await?;
    let mut args = HashMap::new();
    if let Some(p) = &a.pattern {
        args.insert("pattern".to_string(), p.clone());
    }
    match builtin.as_str() {
        "terasort" => {
            args.insert(
                "boundaries".to_string(),
                sample_boundaries(dfs, &splits, reducers).await?,
            );
        }
        "teravalidate" => reducers = 1,
        _ => {}
    }
    Ok(pb::JobSpec {
        name: if a.name.is_empty() {
            a.builtin.clone().unwrap_or_else(|| "streaming".into())
        } else {
            a.name.clone()
        },
        output: a.output.clone(),
        builtin: a.builtin.clone().unwrap_or_default(),
        args,
        mapper: a.mapper.clone().unwrap_or_default(),
        combiner: a.combiner.clone().unwrap_or_default(),
        reducer: a.reducer.clone().unwrap_or_default(),
        reducers,
        splits,
        files,
        sort_buffer_bytes: a.sort_buffer,
        max_attempts: a.max_attempts,
        user: dfs.user.clone(),
        no_speculation: a.no_speculation,
    })
}

pub async fn submit(dfs: &DfsClient, spec: pb::JobSpec) -> anyhow::Result<u64> {
    let req = pb::SubmitJobRequest { spec: Some(spec) };
    Ok(dfs
        .masters
        .call(|mut c| {
            let r = req.clone();
            async move { c.submit_job(r).await }
        })
        .await?
        .job_id)
}

/// Polls a job until it ends (no progress bars: steps and the demo).
pub async fn wait_quiet(dfs: &DfsClient, id: u64) -> anyhow::Result<pb::JobStatus> {
    loop {
        let req = pb::JobRequest { job_id: id };
        let j = dfs
            .masters
            .call(|mut c| async move { c.get_job(req).await })
            .await?;
        if j.state != "RUNNING" && j.state != "PREP" {
            return Ok(j);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Submits a built-in wordcount and waits for it (used by `basin demo`).
pub async fn wordcount(
    dfs: &DfsClient,
    input: &str,
    output: &str,
) -> anyhow::Result<pb::JobStatus> {
    let args = SubmitArgs {
        input: vec![input.to_string()],
        output: output.to_string(),
        builtin: Some("wordcount".into()),
        reducers: 2,
        sort_buffer: sort_buffer(),
        max_attempts: 4,
        ..Default::default()
    };
    let id = submit(dfs, build_spec(dfs, &args).await?).await?;
    wait_quiet(dfs, id).await
}

async fn get(g: &Global, id: u64) -> anyhow::Result<pb::JobStatus> {
    let req = pb::JobRequest { job_id: id };
    Ok(g.masters()?
        .call(|mut c| {
            let r = req;
            async move { c.get_job(r).await }
        })
        .await?)
}

fn status_json(j: &pb::JobStatus) -> serde_json::Value {
    let mut counters: Vec<(&String, &i64)> = j.counters.iter().collect();
    counters.sort();
    json!({
        "id": j.job_id, "name": j.name, "state": j.state, "user": j.user, "output": j.output,
        "maps": {"total": j.maps_total, "done": j.maps_done},
        "reduces": {"total": j.reduces_total, "done": j.reduces_done},
        "submitted_ms": j.submitted_ms, "finished_ms": j.finished_ms, "failure": j.failure,
        "counters": counters.into_iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

fn percent(done: u32, total: u32) -> u32 {
    (done * 100).checked_div(total).unwrap_or(100)
}

fn print_status(j: &pb::JobStatus) {
    println!(
        "job {} {} [{}]  map {}% ({}/{})  reduce {}% ({}/{})  output {}",
        j.job_id,
        j.name,
        j.state,
        percent(j.maps_done, j.maps_total),
        j.maps_done,
        j.maps_total,
        percent(j.reduces_done, j.reduces_total),
        j.reduces_done,
        j.reduces_total,
        j.output
    );
    if !j.failure.is_empty() {
        println!("  failure: {}", j.failure);
    }
}

/// Follows a job to its end with map and reduce progress bars.
async fn wait(g: &Global, id: u64) -> anyhow::Result<pb::JobStatus> {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{msg:8} [{bar:30}] {pos}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let maps = multi.add(
        ProgressBar::new(0)
            .with_style(style.clone())
            .with_message("map"),
    );
    let reduces = multi.add(ProgressBar::new(0).with_style(style).with_message("reduce"));
    loop {
        let j = get(g, id).await?;
        maps.set_length(j.maps_total as u64);
        maps.set_position(j.maps_done as u64);
        reduces.set_length(j.reduces_total as u64);
        reduces.set_position(j.reduces_done as u64);
        if j.state != "RUNNING" && j.state != "PREP" {
            maps.finish_and_clear();
            reduces.finish_and_clear();
            return Ok(j);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn finish(g: &Global, j: &pb::JobStatus) -> anyhow::Result<()> {
    if g.json {
        print_json(&status_json(j));
    } else {
        print_status(j);
    }
    match j.state.as_str() {
        "SUCCEEDED" => Ok(()),
        _ => bail!(
            "job {} {}: {}",
            j.job_id,
            j.state,
            if j.failure.is_empty() {
                "no reason given"
            } else {
                &j.failure
            }
        ),
    }
}

pub async fn run(g: &Global, cmd: JobCmd) -> anyhow::Result<()> {
    match cmd {
        JobCmd::Submit(a) => {
            let dfs = g.dfs()?;
            let spec = build_spec(&dfs, &a).await?;
            let id = submit(&dfs, spec).await?;
            if !a.wait {
                if g.json {
                    print_json(&json!({"id": id}));
                } else {
                    println!("job {id} submitted");
                }
                return Ok(());
            }
            if !g.json {
                eprintln!("job {id} submitted; waiting");
            }
            let j = wait(g, id).await?;
            finish(g, &j)
        }
        JobCmd::Wait { id } => {
            let j = wait(g, id).await?;
            finish(g, &j)
        }
        JobCmd::Status { id } => {
            let j = get(g, id).await?;
            if g.json {
                print_json(&status_json(&j));
            } else {
                print_status(&j);
            }
            Ok(())
        }
        JobCmd::List => {
            let r = g
                .masters()?
                .call(|mut c| async move { c.list_jobs(pb::Empty {}).await })
                .await?;
            if g.json {
                print_json(&json!(r.jobs.iter().map(status_json).collect::<Vec<_>>()));
            } else {
                for j in &r.jobs {
                    println!(
                        "{:<6} {:<10} {:<20} maps {}/{} reduces {}/{}  {}",
                        j.job_id,
                        j.state,
                        j.name,
                        j.maps_done,
                        j.maps_total,
                        j.reduces_done,
                        j.reduces_total,
                        time_string(j.submitted_ms)
                    );
                }
            }
            Ok(())
        }
        JobCmd::Kill { id } => {
            let req = pb::JobRequest { job_id: id };
            let j = g
                .masters()?
                .call(|mut c| {
                    let r = req;
                    async move { c.kill_job(r).await }
                })
                .await?;
            print_status(&j);
            Ok(())
        }
        JobCmd::Logs { id } => {
            let j = get(g, id).await?;
            for t in &j.tasks {
                for a in &t.attempts {
                    let kind = if t.is_map { "map" } else { "reduce" };
                    println!(
                        "== {kind} {} attempt {} on node {} [{}]",
                        t.index, a.attempt, a.worker, a.state
                    );
                    if !a.error.is_empty() {
                        println!("error: {}", a.error);
                    }
                    if !a.log.is_empty() {
                        println!("{}", a.log.trim_end());
                    }
                }
            }
            Ok(())
        }
        JobCmd::Counters { id } => {
            let j = get(g, id).await?;
            let mut c: Vec<(&String, &i64)> = j.counters.iter().collect();
            c.sort();
            if g.json {
                print_json(&json!(
                    c.into_iter()
                        .map(|(k, v)| (k.clone(), json!(v)))
                        .collect::<serde_json::Map<_, _>>()
                ));
            } else {
                for (k, v) in c {
                    println!("{k:<28} {v}");
                }
            }
            Ok(())
        }
    }
}
