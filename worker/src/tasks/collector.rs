//! The map side of the shuffle: records are partitioned by key, buffered up
//! to the sort buffer, sorted, combined and spilled to the worker's disk;
//! at the end the spills of each partition are merged into one sorted file
//! that reducers fetch.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::builtin::{Builtin, reduce_sorted};
use super::records::{Merger, Record, parse, partition, text_line, write_framed};
use super::streaming;

pub type Counters = BTreeMap<String, i64>;

pub fn add(c: &mut Counters, name: &str, n: u64) {
    *c.entry(name.to_string()).or_default() += n as i64;
}

/// How records of one key are folded before they leave the map.
pub enum Combine {
    None,
    Builtin(Arc<Builtin>),
    Streaming { cmd: String, cwd: PathBuf },
}

pub struct Collector {
    dir: PathBuf,
    partitions: u32,
    limit: usize,
    buf: Vec<Vec<Record>>,
    bytes: usize,
    spills: Vec<PathBuf>,
    combine: Combine,
    /// Sorted key boundaries of a total-order partitioner (TeraSort); hash otherwise.
    boundaries: Option<Vec<Vec<u8>>>,
    pub counters: Counters,
}

fn io(e: std::io::Error) -> String {
    format!("map output: {e}")
}

impl Collector {
    pub fn new(dir: &Path, partitions: u32, limit: usize, combine: Combine) -> Self {
        Collector {
            dir: dir.to_path_buf(),
            partitions: partitions.max(1),
            limit: limit.max(64 * 1024),
            buf: (0..partitions.max(1)).map(|_| Vec::new()).collect(),
            bytes: 0,
            spills: Vec::new(),
            combine,
            boundaries: None,
            counters: Counters::new(),
        }
    }

    /// Partitions by range instead of by hash.
    pub fn with_boundaries(mut self, b: Vec<Vec<u8>>) -> Self {
        self.boundaries = Some(b);
        self
    }

    pub async fn add(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.bytes += key.len() + value.len() + 32;
        let p = match &self.boundaries {
            Some(b) => (super::tera::partition(&key, b) as usize).min(self.partitions as usize - 1),
            None => partition(&key, self.partitions) as usize,
        };
        self.buf[p].push((key, value));
        if self.bytes >= self.limit {
            self.spill().await?;
        }
        Ok(())
    }

    async fn spill(&mut self) -> Result<(), String> {
        let sdir = self.dir.join(format!("spill-{}", self.spills.len()));
        std::fs::create_dir_all(&sdir).map_err(io)?;
        for p in 0..self.partitions as usize {
            let mut recs = std::mem::take(&mut self.buf[p]);
            recs.sort_by(|a, b| a.0.cmp(&b.0));
            let recs = self.combine(recs).await?;
            add(&mut self.counters, "spilled_records", recs.len() as u64);
            let path = sdir.join(format!("part-{p}"));
            tokio::task::block_in_place(|| -> std::io::Result<()> {
                let mut w =
                    std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&path)?);
                for (k, v) in &recs {
                    write_framed(&mut w, k, v)?;
                }
                w.flush()
            })
            .map_err(io)?;
        }
        self.bytes = 0;
        self.spills.push(sdir);
        Ok(())
    }

    async fn combine(&mut self, recs: Vec<Record>) -> Result<Vec<Record>, String> {
        if recs.is_empty() {
            return Ok(recs);
        }
        let input = recs.len() as u64;
        let out = match &self.combine {
            Combine::None => return Ok(recs),
            Combine::Builtin(b) if b.has_combiner() => {
                let mut out = Vec::new();
                let mut groups = 0;
                reduce_sorted(b, recs, &mut groups, &mut |k, v| out.push((k, v)));
                out
            }
            Combine::Builtin(_) => return Ok(recs),
            Combine::Streaming { cmd, cwd } => {
                let mut child = streaming::spawn(cmd, cwd)?;
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                let feeder = child.stdin.take().map(|s| streaming::feed(s, rx));
                tokio::spawn(async move {
                    for (k, v) in recs {
                        let line = text_line(&k, &v);
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                });
                let mut out = Vec::new();
                let mut line = Vec::new();
                while child.next_line(&mut line).await? {
                    out.push(parse(&line));
                }
                if let Some(f) = feeder {
                    let _ = f.await;
                }
                child
                    .wait()
                    .await
                    .map_err(|(e, log)| format!("combiner: {e}\n{log}"))?;
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            }
        };
        add(&mut self.counters, "combine_input_records", input);
        add(
            &mut self.counters,
            "combine_output_records",
            out.len() as u64,
        );
        Ok(out)
    }

    /// Spills what is left and merges every partition into `dir/part-N`.
    pub async fn finish(mut self) -> Result<Counters, String> {
        self.spill().await?;
        for p in 0..self.partitions {
            let runs: Vec<PathBuf> = self
                .spills
                .iter()
                .map(|s| s.join(format!("part-{p}")))
                .collect();
            let dest = self.dir.join(format!("part-{p}"));
            if runs.len() == 1 {
                std::fs::rename(&runs[0], &dest).map_err(io)?;
                continue;
            }
            tokio::task::block_in_place(|| -> std::io::Result<()> {
                let mut m = Merger::open(&runs)?;
                let mut w =
                    std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&dest)?);
                while let Some((k, v)) = m.next_record()? {
                    write_framed(&mut w, &k, &v)?;
                }
                w.flush()
            })
            .map_err(io)?;
        }
        for s in &self.spills {
            let _ = std::fs::remove_dir_all(s);
        }
        Ok(self.counters)
    }
}
