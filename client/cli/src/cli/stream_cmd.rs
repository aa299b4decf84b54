//! `basin stream …`: Kinesis-style streams from the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use basin_client::streams::{Position, PutEntry, PutOutcome, RetentionChange, StreamClient, pb};
use bytes::Bytes;
use serde_json::json;

use super::Global;
use super::output::print_json;

#[derive(clap::Subcommand)]
pub enum StreamCmd {
    /// Create a stream of N shards (hash ranges split evenly).
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Replicas per shard (default 3, capped by the core workers).
        #[arg(long, default_value_t = 0)]
        replication: u32,
        /// Retention in hours (24 to 168 by default).
        #[arg(long)]
        retention_hours: Option<u32>,
        /// Retention as a duration below an hour (tests).
        #[arg(long, hide = true, value_parser = humantime::parse_duration)]
        retention: Option<Duration>,
    },
    /// Shards, hash ranges, primaries and in-sync replicas of a stream.
    Describe {
        name: String,
    },
    List,
    Delete {
        name: String,
    },
    /// Put one record (DATA or --file), or one record per stdin line.
    Put {
        name: String,
        /// Partition key (MD5 picks the shard). Required unless --keyed.
        #[arg(long)]
        partition_key: Option<String>,
        /// Route by this 128-bit hash key instead of the partition key's MD5.
        #[arg(long)]
        explicit_hash_key: Option<String>,
        /// stdin lines are KEY<TAB>DATA.
        #[arg(long)]
        keyed: bool,
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Records per PutRecords call for stdin lines.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        data: Option<String>,
    },
    /// Read records (every shard, parents before children, unless --shard).
    Read {
        name: String,
        #[arg(long)]
        shard: Option<String>,
        /// trim-horizon | latest | seq:N | after:N | at:RFC3339
        #[arg(long, default_value = "trim-horizon")]
        from: String,
        /// Keep reading new records until stopped.
        #[arg(long)]
        follow: bool,
        /// Read as a member of this consumer group (shards shared, checkpoints kept).
        #[arg(long)]
        group: Option<String>,
        /// This member's name in the group (default: host-pid).
        #[arg(long)]
        member: Option<String>,
        /// Read through a registered consumer's push subscription (enhanced fan-out).
        #[arg(long)]
        consumer: Option<String>,
        /// Stop after this many records.
        #[arg(long)]
        limit: Option<u64>,
        /// With --group or --follow: exit after no record arrived for this long.
        #[arg(long, value_parser = humantime::parse_duration)]
        idle_exit: Option<Duration>,
    },
    /// Split a shard at a hash key (default: the middle of its range).
    Split {
        name: String,
        shard: String,
        #[arg(long)]
        at: Option<String>,
    },
    /// Merge two shards with adjacent hash ranges.
    Merge {
        name: String,
        shard: String,
        adjacent: String,
    },
    /// Change the number of open shards (uniform ranges; 50%–200% of now).
    Scale {
        name: String,
        shards: u32,
    },
    /// Set the retention period in hours (24–168).
    Retention {
        name: String,
        hours: u32,
    },
    /// Register (or with --remove, deregister) an enhanced fan-out consumer.
    Consumer {
        name: String,
        consumer: String,
        #[arg(long)]
        remove: bool,
    },
}

fn client(g: &Global) -> anyhow::Result<StreamClient> {
    Ok(StreamClient::new(g.masters()?).with_external(g.external_addrs))
}

fn print_info(g: &Global, info: &pb::StreamInfo) {
    if g.json {
        print_json(&info_json(info));
        return;
    }
    println!(
        "{}  {}  retention {}  replication {}  {} shards ({} open)",
        info.name,
        info.status,
        retention_text(info.retention_ms),
        info.replication,
        info.shards.len(),
        info.shards.iter().filter(|s| s.open).count()
    );
    println!(
        "{:<22} {:<7} {:>8} {:>7} {:<14} {:<14} {:<40} PARENTS",
        "SHARD", "STATE", "PRIMARY", "EPOCH", "REPLICAS", "IN-SYNC", "HASH RANGE"
    );
    for s in &info.shards {
        let ids = |v: &[u64]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let parents = [s.parent.as_str(), s.adjacent_parent.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{:<22} {:<7} {:>8} {:>7} {:<14} {:<14} {:<40} {}",
            s.shard_id,
            if s.open { "OPEN" } else { "CLOSED" },
            s.primary,
            s.epoch,
            ids(&s.replicas),
            ids(&s.isr),
            format!("{}..{}", short_hash(&s.start_hash), short_hash(&s.end_hash)),
            parents
        );
    }
    if !info.consumers.is_empty() {
        println!("consumers: {}", info.consumers.join(", "));
    }
}

fn short_hash(h: &str) -> String {
    h.parse::<u128>()
        .map(|v| format!("{v:032x}"))
        .unwrap_or_else(|_| h.to_string())
}

fn retention_text(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else {
        humantime::format_duration(Duration::from_millis(ms)).to_string()
    }
}

fn info_json(info: &pb::StreamInfo) -> serde_json::Value {
    json!({
        "name": info.name,
        "status": info.status,
        "retention_hours": info.retention_hours,
        "retention_ms": info.retention_ms,
        "replication": info.replication,
        "created_ms": info.created_ms,
        "consumers": info.consumers,
        "groups": info.groups.iter().map(|g| json!({
            "name": g.name,
            "checkpoints": g.checkpoints.iter().map(|c| json!({
                "shard": c.shard, "seq": c.seq, "finished": c.finished,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "shards": info.shards.iter().map(|s| json!({
            "shard_id": s.shard_id,
            "open": s.open,
            "start_hash": s.start_hash,
            "end_hash": s.end_hash,
            "parent": s.parent,
            "adjacent_parent": s.adjacent_parent,
            "epoch": s.epoch,
            "primary": s.primary,
            "primary_addr": s.primary_addr,
            "replicas": s.replicas,
            "isr": s.isr,
        })).collect::<Vec<_>>(),
    })
}

pub async fn run(g: &Global, cmd: StreamCmd) -> anyhow::Result<()> {
    let c = client(g)?;
    match cmd {
        StreamCmd::Create {
            name,
            shards,
            replication,
            retention_hours,
            retention,
        } => {
            let ms = match (retention, retention_hours) {
                (Some(d), _) => d.as_millis() as u64,
                (None, Some(h)) => {
                    if !(24..=168).contains(&h) {
                        bail!("--retention-hours must be 24 to 168");
                    }
                    h as u64 * 3_600_000
                }
                (None, None) => 0,
            };
            let info = c.create(&name, shards, replication, ms).await?;
            print_info(g, &info);
        }
        StreamCmd::Describe { name } => print_info(g, &c.describe(&name).await?),
        StreamCmd::List => {
            let names = c.list().await?;
            if g.json {
                print_json(&json!(names));
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        StreamCmd::Delete { name } => {
            c.delete(&name).await?;
            if !g.json {
                println!("deleted {name}");
            }
        }
        StreamCmd::Put {
            name,
            partition_key,
            explicit_hash_key,
            keyed,
            file,
            batch,
            data,
        } => {
            put(
                g,
                &c,
                &name,
                partition_key,
                explicit_hash_key,
                keyed,
                file,
                batch,
                data,
            )
            .await?
        }
        StreamCmd::Read {
            name,
            shard,
            from,
            follow,
            group,
            member,
            consumer,
            limit,
            idle_exit,
        } => {
            let from = parse_from(&from)?;
            let opts = ReadOpts {
                json: g.json,
                follow,
                limit,
                idle_exit,
            };
            match (group, consumer) {
                (Some(group), _) => {
                    let member = member.unwrap_or_else(default_member);
                    super::stream_read::group(&c, &name, &group, &member, &opts).await?
                }
                (None, Some(consumer)) => {
                    super::stream_read::fanout(&c, &name, shard, &consumer, from, &opts).await?
                }
                (None, None) => super::stream_read::plain(&c, &name, shard, from, &opts).await?,
            }
        }
        StreamCmd::Split { name, shard, at } => {
            let info = c.describe(&name).await?;
            let s = info
                .shards
                .iter()
                .find(|s| s.shard_id == shard)
                .with_context(|| format!("stream {name} has no shard {shard}"))?;
            let at = match at {
                Some(h) => h
                    .parse::<u128>()
                    .context("--at must be a 128-bit hash key")?,
                None => {
                    let a: u128 = s.start_hash.parse().unwrap_or(0);
                    let b: u128 = s.end_hash.parse().unwrap_or(u128::MAX);
                    a + (b - a) / 2 + 1
                }
            };
            print_info(g, &c.split(&name, &shard, at).await?);
        }
        StreamCmd::Merge {
            name,
            shard,
            adjacent,
        } => print_info(g, &c.merge(&name, &shard, &adjacent).await?),
        StreamCmd::Scale { name, shards } => {
            print_info(g, &c.update_shard_count(&name, shards).await?)
        }
        StreamCmd::Retention { name, hours } => print_info(
            g,
            &c.set_retention(&name, hours, RetentionChange::Set).await?,
        ),
        StreamCmd::Consumer {
            name,
            consumer,
            remove,
        } => print_info(g, &c.register_consumer(&name, &consumer, remove).await?),
    }
    Ok(())
}

fn default_member() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "member".into());
    format!("{host}-{}", std::process::id())
}

pub struct ReadOpts {
    pub json: bool,
    pub follow: bool,
    pub limit: Option<u64>,
    pub idle_exit: Option<Duration>,
}

pub fn parse_from(s: &str) -> anyhow::Result<Position> {
    Ok(match s {
        "trim-horizon" | "TRIM_HORIZON" => Position::TrimHorizon,
        "latest" | "LATEST" => Position::Latest,
        _ => {
            if let Some(n) = s.strip_prefix("seq:") {
                Position::At(n.parse().context("seq:N needs a sequence number")?)
            } else if let Some(n) = s.strip_prefix("after:") {
                Position::After(n.parse().context("after:N needs a sequence number")?)
            } else if let Some(t) = s.strip_prefix("at:") {
                let t = humantime::parse_rfc3339_weak(t)
                    .with_context(|| format!("at:{t} is not an RFC 3339 time"))?;
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                Position::AtTimestamp(ms)
            } else {
                bail!(
                    "--from must be trim-horizon, latest, seq:N, after:N or at:RFC3339 (got {s:?})"
                )
            }
        }
    })
}

/// One output line per record.
pub fn print_record(out: &mut impl Write, json: bool, shard: &str, r: &pb::StoredRecord) {
    let _ = if json {
        writeln!(
            out,
            "{}",
            json!({
                "shard": shard,
                "seq": r.seq.to_string(),
                "partition_key": r.partition_key,
                "arrival_ms": r.arrival_ms,
                "data": String::from_utf8_lossy(&r.data),
            })
        )
    } else {
        writeln!(out, "{}", String::from_utf8_lossy(&r.data))
    };
}

#[allow(clippy::too_many_arguments)]
async fn put(
    g: &Global,
    c: &StreamClient,
    name: &str,
    key: Option<String>,
    hash: Option<String>,
    keyed: bool,
    file: Option<std::path::PathBuf>,
    batch: usize,
    data: Option<String>,
) -> anyhow::Result<()> {
    let one = match (&data, &file) {
        (Some(d), None) => Some(Bytes::from(d.clone().into_bytes())),
        (None, Some(f)) => Some(Bytes::from(
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        )),
        (Some(_), Some(_)) => bail!("give DATA or --file, not both"),
        (None, None) => None,
    };
    if let Some(data) = one {
        let Some(key) = key else {
            bail!("--partition-key is required");
        };
        let out = c
            .put_records(
                name,
                vec![PutEntry {
                    partition_key: key,
                    explicit_hash_key: hash,
                    data,
                }],
            )
            .await?;
        return report(g, &out, true);
    }
    if !keyed && key.is_none() {
        bail!("--partition-key is required (or --keyed with KEY<TAB>DATA lines)");
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message("records put");
    let mut pending: Vec<PutEntry> = Vec::new();
    let mut failed = 0u64;
    let mut outcomes = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose().context("cannot read stdin")?;
        let done = line.is_none();
        if let Some(line) = line {
            let (k, d) = if keyed {
                let (k, d) = line
                    .split_once('\t')
                    .with_context(|| format!("--keyed line without a TAB: {line:?}"))?;
                (k.to_string(), d.to_string())
            } else {
                (key.clone().unwrap_or_default(), line)
            };
            pending.push(PutEntry {
                partition_key: k,
                explicit_hash_key: hash.clone(),
                data: Bytes::from(d.into_bytes()),
            });
        }
        let size: usize = pending
            .iter()
            .map(|e| e.data.len() + e.partition_key.len())
            .sum();
        if !pending.is_empty()
            && (done || pending.len() >= batch.clamp(1, 500) || size > 4 * 1024 * 1024)
        {
            let out = c.put_records(name, std::mem::take(&mut pending)).await?;
            failed += out
                .iter()
                .filter(|o| matches!(o, PutOutcome::Failed { .. }))
                .count() as u64;
            bar.inc(out.len() as u64);
            outcomes.extend(out);
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    report(g, &outcomes, false)?;
    if failed > 0 {
        bail!("{failed} of {} records failed", outcomes.len());
    }
    Ok(())
}

fn report(g: &Global, out: &[PutOutcome], single: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let mut per_shard: BTreeMap<String, u64> = BTreeMap::new();
    for o in out {
        match o {
            PutOutcome::Ok { shard_id, seq } => {
                *per_shard.entry(shard_id.clone()).or_default() += 1;
                if g.json {
                    let _ = writeln!(w, "{}", json!({"shard": shard_id, "seq": seq.to_string()}));
                } else if single {
                    let _ = writeln!(w, "{shard_id} {seq}");
                }
            }
            PutOutcome::Failed { code, message } => {
                if g.json {
                    let _ = writeln!(
                        w,
                        "{}",
                        json!({"error_code": code.kinesis_name(), "error": message})
                    );
                } else {
                    eprintln!("failed: {}: {message}", code.kinesis_name());
                }
            }
        }
    }
    if !g.json && !single {
        let shards: BTreeSet<_> = per_shard.keys().collect();
        let _ = writeln!(
            w,
            "put {} records into {} shards",
            per_shard.values().sum::<u64>(),
            shards.len()
        );
    }
    if single && let Some(PutOutcome::Failed { code, message }) = out.first() {
        bail!("{}: {message}", code.kinesis_name());
    }
    Ok(())
}
