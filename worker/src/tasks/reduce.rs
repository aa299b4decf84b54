//! A reduce attempt: fetch this partition from every map's worker (the
//! shuffle), merge-sort the runs, run the reducer over the key-grouped
//! stream, and write the attempt's output file.

use std::io::Write;

use basin_proto as pb;
use futures::StreamExt;

use super::builtin::{Builtin, Grouper};
use super::collector::{Counters, add};
use super::output::OutputWriter;
use super::records::{Merger, Record, text_line};
use super::{TaskEnv, TaskResult, streaming};

/// Fetches every map's output for `partition` into local files.
async fn shuffle(
    env: &TaskEnv,
    a: &pb::TaskAssignment,
    partition: u32,
    counters: &mut Counters,
) -> Result<Vec<std::path::PathBuf>, String> {
    let job = a.attempt.as_ref().map(|r| r.job_id).unwrap_or(0);
    let mut files = Vec::new();
    for loc in &a.map_outputs {
        let path = env.outdir.join(format!("in-{}", loc.map_index));
        let req = pb::FetchMapOutputRequest {
            job_id: job,
            map_index: loc.map_index,
            attempt: loc.attempt,
            partition,
        };
        let fail = |e: String| {
            // Reported with the failure: the master re-runs this map.
            env.lost_maps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(loc.map_index);
            format!(
                "fetching map {} output from node {} ({}): {e}",
                loc.map_index, loc.node_id, loc.addr
            )
        };
        let mut client = basin_common::blockio::worker_client(&env.connector, &loc.addr)
            .map_err(|e| fail(e.message().to_string()))?;
        let mut stream = client
            .fetch_map_output(req)
            .await
            .map_err(|e| fail(e.message().to_string()))?
            .into_inner();
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| fail(e.to_string()))?);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| fail(e.message().to_string()))?;
            add(counters, "shuffle_bytes", chunk.data.len() as u64);
            f.write_all(&chunk.data).map_err(|e| fail(e.to_string()))?;
        }
        f.flush().map_err(|e| fail(e.to_string()))?;
        files.push(path);
    }
    Ok(files)
}

/// Merges the runs on a blocking thread, handing batches of sorted records over.
fn merged(
    files: Vec<std::path::PathBuf>,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Record>, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut m = match Merger::open(&files) {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("merge: {e}")));
                return;
            }
        };
        let mut batch = Vec::with_capacity(4096);
        loop {
            match m.next_record() {
                Ok(Some(r)) => {
                    batch.push(r);
                    if batch.len() == 4096
                        && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
                    {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = tx.blocking_send(Ok(batch));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(format!("merge: {e}")));
                    return;
                }
            }
        }
    });
    rx
}

/// A reduce output record: `key<TAB>value` lines, or the record's bytes as
/// they are (TeraSort's binary records).
async fn write(
    out: &mut OutputWriter,
    raw: bool,
    k: &[u8],
    v: &[u8],
) -> Result<(), (String, String)> {
    let r = if raw {
        let mut rec = Vec::with_capacity(k.len() + v.len());
        rec.extend_from_slice(k);
        rec.extend_from_slice(v);
        out.write_raw(&rec).await
    } else {
        out.write(k, v).await
    };
    r.map_err(|e| (e, String::new()))
}

/// TeraValidate's reduce: the split summaries arrive in split order.
async fn teravalidate(
    mut records: tokio::sync::mpsc::Receiver<Result<Vec<Record>, String>>,
    mut out: OutputWriter,
    mut counters: Counters,
) -> TaskResult {
    let mut summaries = Vec::new();
    while let Some(batch) = records.recv().await {
        for (_, v) in batch.map_err(|e| (e, String::new()))? {
            summaries.push(
                super::tera::Summary::decode(&v)
                    .ok_or(("bad split summary".to_string(), String::new()))?,
            );
        }
    }
    let n = summaries.len() as u64;
    let total = super::tera::validate(summaries);
    for (k, v) in [
        ("records", total.count.to_string()),
        ("checksum", format!("{:x}", total.checksum)),
        ("unsorted", total.unsorted.to_string()),
    ] {
        out.write(k.as_bytes(), v.as_bytes())
            .await
            .map_err(|e| (e, String::new()))?;
    }
    let written = out.close().await.map_err(|e| (e, String::new()))?;
    add(&mut counters, "reduce_input_records", n);
    add(&mut counters, "reduce_output_records", written);
    Ok((counters, String::new()))
}

pub async fn run(env: &TaskEnv, a: &pb::TaskAssignment) -> TaskResult {
    let spec = a.spec.clone().unwrap_or_default();
    let partition = a.attempt.as_ref().map(|r| r.index).unwrap_or(0);
    let mut counters = Counters::new();
    let files = shuffle(env, a, partition, &mut counters)
        .await
        .map_err(|e| (e, String::new()))?;
    let mut out = OutputWriter::create(&env.dfs, &a.output_path)
        .await
        .map_err(|e| (e, String::new()))?;
    let mut records = merged(files);
    if spec.builtin == "teravalidate" {
        return teravalidate(records, out, counters).await;
    }
    let raw = spec.builtin == "terasort";
    let (log, inputs, groups) = if !spec.builtin.is_empty() {
        let mut inputs = 0u64;
        let b = Builtin::new(&spec.builtin, &spec.args).map_err(|e| (e, String::new()))?;
        let mut grouper = Grouper::default();
        let mut emitted = Vec::new();
        while let Some(batch) = records.recv().await {
            for (k, v) in batch.map_err(|e| (e, String::new()))? {
                inputs += 1;
                grouper.push(&b, k, v, &mut |k, v| emitted.push((k, v)));
            }
            for (k, v) in emitted.drain(..) {
                write(&mut out, raw, &k, &v).await?;
            }
        }
        grouper.flush(&b, &mut |k, v| emitted.push((k, v)));
        for (k, v) in emitted.drain(..) {
            write(&mut out, raw, &k, &v).await?;
        }
        (String::new(), inputs, grouper.groups)
    } else {
        let mut child =
            streaming::spawn(&spec.reducer, &env.workdir).map_err(|e| (e, String::new()))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
        let feeder = child.stdin.take().map(|s| streaming::feed(s, rx));
        let pump = tokio::spawn(async move {
            let (mut n, mut g) = (0u64, 0u64);
            let mut last: Option<Vec<u8>> = None;
            while let Some(batch) = records.recv().await {
                for (k, v) in batch? {
                    n += 1;
                    if last.as_ref() != Some(&k) {
                        g += 1;
                    }
                    let line = text_line(&k, &v);
                    last = Some(k);
                    if tx.send(line).await.is_err() {
                        return Ok((n, g));
                    }
                }
            }
            Ok::<(u64, u64), String>((n, g))
        });
        let mut line = Vec::new();
        while child
            .next_line(&mut line)
            .await
            .map_err(|e| (e, child.stderr_tail()))?
        {
            out.write_line(&line)
                .await
                .map_err(|e| (e, child.stderr_tail()))?;
        }
        let (inputs, groups) = match pump.await {
            Ok(Ok(ng)) => ng,
            Ok(Err(e)) => return Err((e, child.stderr_tail())),
            Err(e) => return Err((e.to_string(), child.stderr_tail())),
        };
        if let Some(f) = feeder {
            let _ = f.await;
        }
        (child.wait().await?, inputs, groups)
    };
    let written = out.close().await.map_err(|e| (e, log.clone()))?;
    add(&mut counters, "reduce_input_records", inputs);
    add(&mut counters, "reduce_input_groups", groups);
    add(&mut counters, "reduce_output_records", written);
    Ok((counters, log))
}
