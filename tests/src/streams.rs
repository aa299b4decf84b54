//! Stream helpers for the tests: a client on the cluster, an acknowledging
//! producer, and reads through the CLI (which follows shard lineage).

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use basin_client::streams::{PutEntry, PutOutcome, StreamClient};
use basin_common::rpc::{Connector, MasterClient};
use serde_json::Value;

use crate::{Cluster, basin_bin};

/// A stream client of this cluster's masters.
pub fn client(c: &Cluster) -> StreamClient {
    let masters = MasterClient::new(
        Connector::new(&c.token, None),
        c.masters.iter().map(|m| m.addr.clone()).collect(),
    );
    StreamClient::new(masters)
}

/// One acknowledged record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub shard: String,
    pub seq: u64,
    pub key: String,
    pub data: String,
}

/// Puts records (500 per call) and returns the acknowledged ones (failed ones are left out).
pub async fn put_batch(
    client: &StreamClient,
    stream: &str,
    recs: Vec<(String, String)>,
) -> Result<Vec<Acked>> {
    let mut acked = Vec::with_capacity(recs.len());
    for chunk in recs.chunks(500) {
        acked.extend(put_call(client, stream, chunk.to_vec()).await?);
    }
    Ok(acked)
}

async fn put_call(
    client: &StreamClient,
    stream: &str,
    recs: Vec<(String, String)>,
) -> Result<Vec<Acked>> {
    let entries = recs
        .iter()
        .map(|(k, d)| PutEntry {
            partition_key: k.clone(),
            explicit_hash_key: None,
            data: bytes::Bytes::from(d.clone().into_bytes()),
        })
        .collect();
    let out = client.put_records(stream, entries).await?;
    Ok(out
        .into_iter()
        .zip(recs)
        .filter_map(|(o, (key, data))| match o {
            PutOutcome::Ok { shard_id, seq } => Some(Acked {
                shard: shard_id,
                seq,
                key,
                data,
            }),
            PutOutcome::Failed { .. } => None,
        })
        .collect())
}

/// A record as `basin stream read --json` prints it.
#[derive(Clone, Debug)]
pub struct Read {
    pub shard: String,
    pub seq: u64,
    pub key: String,
    pub data: String,
}

pub fn parse_read_lines(text: &str) -> Result<Vec<Read>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).with_context(|| format!("bad line {l:?}"))?;
            Ok(Read {
                shard: v["shard"].as_str().unwrap_or_default().to_string(),
                seq: v["seq"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .context("seq")?,
                key: v["partition_key"].as_str().unwrap_or_default().to_string(),
                data: v["data"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// Reads the whole stream with the CLI (parents before children) until caught up.
pub fn read_all(c: &Cluster, stream: &str) -> Result<Vec<Read>> {
    let out = std::process::Command::new(basin_bin())
        .args(["--master", &c.master_list(), "--token", &c.token, "--json"])
        .args(["stream", "read", stream])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "stream read failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_read_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Checks what a read returned against what was acknowledged: every
/// acknowledged record at its (shard, seq) once, seqs strictly increasing per
/// shard, and each key's records in the order they were acknowledged.
pub fn check_against_acks(read: &[Read], acked: &[Acked]) -> Result<()> {
    let mut by_pos: BTreeMap<(String, u64), &Read> = BTreeMap::new();
    let mut last_seq: BTreeMap<&str, u64> = BTreeMap::new();
    for r in read {
        if let Some(prev) = last_seq.insert(&r.shard, r.seq)
            && r.seq <= prev
        {
            bail!("{}: seq {} after {prev}", r.shard, r.seq);
        }
        if by_pos.insert((r.shard.clone(), r.seq), r).is_some() {
            bail!("{} seq {} read twice", r.shard, r.seq);
        }
    }
    for a in acked {
        let Some(r) = by_pos.get(&(a.shard.clone(), a.seq)) else {
            bail!("acknowledged record {a:?} was not read back");
        };
        if r.data != a.data || r.key != a.key {
            bail!(
                "at {} seq {}: read {:?}, acknowledged {a:?}",
                a.shard,
                a.seq,
                r.data
            );
        }
    }
    // Per-key order: the acknowledged records of a key appear in acknowledgement order.
    let pos: BTreeMap<(String, u64), usize> = read
        .iter()
        .enumerate()
        .map(|(i, r)| ((r.shard.clone(), r.seq), i))
        .collect();
    let mut last_of_key: BTreeMap<&str, usize> = BTreeMap::new();
    for a in acked {
        let i = pos[&(a.shard.clone(), a.seq)];
        if let Some(prev) = last_of_key.insert(&a.key, i)
            && i <= prev
        {
            bail!(
                "key {}: record {:?} read before an earlier one",
                a.key,
                a.data
            );
        }
    }
    Ok(())
}
