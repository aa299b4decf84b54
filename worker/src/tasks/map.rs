//! A map attempt: read the split, run the mapper (native or a command),
//! and either partition/sort/spill for reducers or, in a map-only job, write
//! straight to the attempt's output file.

use std::sync::Arc;

use basin_proto as pb;

use super::builtin::Builtin;
use super::collector::{Collector, Combine, Counters, add};
use super::output::OutputWriter;
use super::records::parse;
use super::{TaskEnv, TaskResult, input, streaming, tera};

enum Sink {
    Shuffle(Collector),
    Direct(Box<OutputWriter>),
}

impl Sink {
    async fn emit(&mut self, k: Vec<u8>, v: Vec<u8>) -> Result<(), String> {
        match self {
            Sink::Shuffle(c) => c.add(k, v).await,
            Sink::Direct(w) => w.write(&k, &v).await,
        }
    }
}

/// A map's input: text lines, or fixed-size binary records (TeraSort).
enum Input {
    Lines(input::LineReader),
    Fixed(input::FixedReader),
}

impl Input {
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, String> {
        match self {
            Input::Lines(r) => r.next_line().await,
            Input::Fixed(r) => r.next_record().await,
        }
    }
}

fn no_log(e: String) -> (String, String) {
    (e, String::new())
}

/// TeraGen: writes rows `[offset, offset+length)` of the data set.
async fn teragen(env: &TaskEnv, a: &pb::TaskAssignment, split: &pb::InputSplit) -> TaskResult {
    let mut out = OutputWriter::create(&env.dfs, &a.output_path)
        .await
        .map_err(no_log)?;
    for row in split.offset..split.offset + split.length {
        out.write_raw(&tera::record(row)).await.map_err(no_log)?;
    }
    let n = out.close().await.map_err(no_log)?;
    let mut counters = Counters::new();
    add(&mut counters, "map_input_records", n);
    add(&mut counters, "map_output_records", n);
    Ok((counters, String::new()))
}

/// TeraValidate's map: one summary record per split, keyed so that splits
/// sort in file order.
async fn teravalidate(env: &TaskEnv, a: &pb::TaskAssignment, split: &pb::InputSplit) -> TaskResult {
    let spec = a.spec.clone().unwrap_or_default();
    let mut reader = input::open_fixed(&env.dfs, split, tera::RECORD)
        .await
        .map_err(no_log)?;
    let mut summary = tera::Summary::default();
    while let Some(rec) = reader.next_record().await.map_err(no_log)? {
        summary.add(&rec);
    }
    let mut c = Collector::new(
        &env.outdir,
        spec.reducers,
        spec.sort_buffer_bytes as usize,
        Combine::None,
    );
    let key = format!("{}\t{:020}", split.path, split.offset).into_bytes();
    c.add(key, summary.encode()).await.map_err(no_log)?;
    let mut counters = c.finish().await.map_err(no_log)?;
    add(&mut counters, "map_input_records", summary.count);
    add(&mut counters, "map_output_records", 1);
    Ok((counters, String::new()))
}

pub async fn run(env: &TaskEnv, a: &pb::TaskAssignment) -> TaskResult {
    let spec = a.spec.clone().unwrap_or_default();
    match (spec.builtin.as_str(), a.split.as_ref()) {
        ("teragen", Some(split)) => return teragen(env, a, split).await,
        ("teravalidate", Some(split)) => return teravalidate(env, a, split).await,
        _ => {}
    }
    let split = a
        .split
        .clone()
        .ok_or(("map task without a split".to_string(), String::new()))?;
    let builtin = if spec.builtin.is_empty() {
        None
    } else {
        Some(Arc::new(
            Builtin::new(&spec.builtin, &spec.args).map_err(|e| (e, String::new()))?,
        ))
    };
    let mut sink = if spec.reducers == 0 {
        Sink::Direct(Box::new(
            OutputWriter::create(&env.dfs, &a.output_path)
                .await
                .map_err(|e| (e, String::new()))?,
        ))
    } else {
        let combine = match (&builtin, spec.combiner.is_empty()) {
            (Some(b), _) => Combine::Builtin(b.clone()),
            (None, false) => Combine::Streaming {
                cmd: spec.combiner.clone(),
                cwd: env.workdir.clone(),
            },
            (None, true) => Combine::None,
        };
        let c = Collector::new(
            &env.outdir,
            spec.reducers,
            spec.sort_buffer_bytes as usize,
            combine,
        );
        Sink::Shuffle(match spec.args.get("boundaries") {
            Some(hex) => c.with_boundaries(tera::decode_boundaries(hex)),
            None => c,
        })
    };
    let mut reader = if spec.builtin == "terasort" {
        Input::Fixed(
            input::open_fixed(&env.dfs, &split, tera::RECORD)
                .await
                .map_err(no_log)?,
        )
    } else {
        Input::Lines(input::open(&env.dfs, &split).await.map_err(no_log)?)
    };
    let mut counters = Counters::new();
    let mut inputs = 0u64;
    let mut outputs = 0u64;
    let log = match &builtin {
        Some(b) => {
            let mut out = Vec::new();
            while let Some(line) = reader.next().await.map_err(|e| (e, String::new()))? {
                inputs += 1;
                b.map(&line, &mut |k, v| out.push((k, v)));
                outputs += out.len() as u64;
                for (k, v) in out.drain(..) {
                    sink.emit(k, v).await.map_err(|e| (e, String::new()))?;
                }
            }
            String::new()
        }
        None => {
            let mut child =
                streaming::spawn(&spec.mapper, &env.workdir).map_err(|e| (e, String::new()))?;
            let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
            let feeder = child.stdin.take().map(|s| streaming::feed(s, rx));
            let reading = tokio::spawn(async move {
                let mut n = 0u64;
                while let Some(line) = reader.next().await? {
                    n += 1;
                    if tx.send(line.to_vec()).await.is_err() {
                        break;
                    }
                }
                Ok::<u64, String>(n)
            });
            let mut line = Vec::new();
            while child
                .next_line(&mut line)
                .await
                .map_err(|e| (e, child.stderr_tail()))?
            {
                outputs += 1;
                let (k, v) = parse(&line);
                sink.emit(k, v)
                    .await
                    .map_err(|e| (e, child.stderr_tail()))?;
            }
            inputs = match reading.await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err((e, child.stderr_tail())),
                Err(e) => return Err((format!("input reader: {e}"), child.stderr_tail())),
            };
            if let Some(f) = feeder {
                let _ = f.await;
            }
            child.wait().await?
        }
    };
    add(&mut counters, "map_input_records", inputs);
    add(&mut counters, "map_output_records", outputs);
    match sink {
        Sink::Shuffle(c) => {
            for (k, v) in c.finish().await.map_err(|e| (e, log.clone()))? {
                *counters.entry(k).or_default() += v;
            }
        }
        Sink::Direct(w) => {
            w.close().await.map_err(|e| (e, log.clone()))?;
        }
    }
    Ok((counters, log))
}
