//! `basin dfs …`: hdfs-dfs-like commands over `basin://`, `s3://` and `file://`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use basin_client::transfer::{self, Source};
use basin_client::{ClientError, CreateOptions, DfsClient, Location};
use basin_proto as pb;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::Global;
use super::cluster_cmd::node_json;
use super::output::{bytes_bar, human_bytes, mode_string, print_json, time_string};

#[derive(clap::Subcommand)]
pub enum DfsCmd {
    /// Copy local files (or directories) into the cluster or an object store.
    Put {
        /// Replace an existing destination.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(long, default_value_t = 0)]
        block_size: u64,
        #[arg(long, default_value_t = 0)]
        replication: u32,
        #[arg(required = true, num_args = 2..)]
        paths: Vec<String>,
    },
    /// Copy a file (or, with -r, a directory) to the local disk.
    Get {
        #[arg(short = 'f', long)]
        force: bool,
        src: String,
        dst: PathBuf,
    },
    /// Print files to stdout.
    Cat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List a directory.
    Ls {
        #[arg(short = 'R', short_alias = 'r', long)]
        recursive: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// Create directories.
    Mkdir {
        #[arg(short = 'p', long)]
        parents: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Delete files or (with -r) directories.
    Rm {
        #[arg(short = 'r', short_alias = 'R', long)]
        recursive: bool,
        /// No error when the path does not exist.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move or rename.
    Mv { src: String, dst: String },
    /// Copy between any two places (basin://, s3://, file://).
    Cp {
        #[arg(short = 'r', short_alias = 'R', long)]
        recursive: bool,
        #[arg(short = 'f', long)]
        force: bool,
        src: String,
        dst: String,
    },
    /// Space used.
    Du {
        #[arg(short = 's', long)]
        summary: bool,
        #[arg(default_value = "/")]
        path: String,
    },
    /// File status, with blocks and their replica locations.
    Stat { path: String },
    /// Block health: healthy, under-replicated, missing, corrupt.
    Fsck {
        #[arg(default_value = "/")]
        path: String,
    },
    /// Change the replication factor of a file (or every file below a directory).
    Setrep {
        /// Wait until every block has the new factor.
        #[arg(short = 'w', long)]
        wait: bool,
        replication: u32,
        path: String,
    },
}

fn status_json(s: &pb::FileStatus) -> serde_json::Value {
    json!({
        "path": s.path, "type": if s.is_dir { "dir" } else { "file" }, "length": s.length,
        "replication": s.replication, "block_size": s.block_size, "owner": s.owner,
        "mode": format!("{:o}", s.mode), "mtime_ms": s.mtime_ms,
    })
}

fn print_status_line(s: &pb::FileStatus) {
    println!(
        "{} {:>3} {:<10} {:>12} {} {}",
        mode_string(s.is_dir, s.mode),
        if s.is_dir {
            "-".to_string()
        } else {
            s.replication.to_string()
        },
        s.owner,
        s.length,
        time_string(s.mtime_ms),
        s.path
    );
}

pub async fn run(g: &Global, cmd: DfsCmd) -> anyhow::Result<()> {
    let dfs = g.dfs()?;
    match cmd {
        DfsCmd::Put {
            force,
            block_size,
            replication,
            mut paths,
        } => {
            let dst = paths.pop().unwrap_or_default();
            let dst = Location::parse(&dst)?;
            let opts = CreateOptions {
                replication,
                block_size,
                overwrite: force,
            };
            let into_dir = paths.len() > 1 || is_dir(&dfs, &dst).await?;
            for src in &paths {
                let src = PathBuf::from(src);
                let target = if into_dir {
                    dst.join(&file_name(&src)?)
                } else {
                    dst.clone()
                };
                put_path(&dfs, &src, &target, &opts).await?;
            }
            Ok(())
        }
        DfsCmd::Get { force, src, dst } => {
            let src = Location::parse(&src)?;
            let dst = if dst.is_dir() {
                dst.join(loc_name(&src))
            } else {
                dst
            };
            get_path(&dfs, &src, &dst, force).await
        }
        DfsCmd::Cat { paths } => {
            let mut out = tokio::io::stdout();
            for p in paths {
                let mut src = transfer::open(&dfs, &Location::parse(&p)?).await?;
                while let Some(chunk) = src.stream.next().await {
                    out.write_all(&chunk?).await?;
                }
            }
            out.flush().await?;
            Ok(())
        }
        DfsCmd::Ls { recursive, path } => {
            let loc = Location::parse(&path)?;
            let mut all = Vec::new();
            list(&dfs, &loc, recursive, &mut all).await?;
            if g.json {
                print_json(&json!(all.iter().map(status_json).collect::<Vec<_>>()));
            } else {
                for s in &all {
                    print_status_line(s);
                }
            }
            Ok(())
        }
        DfsCmd::Mkdir { parents, paths } => {
            for p in paths {
                match Location::parse(&p)? {
                    Location::Basin(p) => dfs.mkdir(&p, parents).await?,
                    // Object stores have no directories: a prefix exists once an object is under it.
                    Location::Object { .. } => {}
                }
            }
            Ok(())
        }
        DfsCmd::Rm {
            recursive,
            force,
            paths,
        } => {
            for p in paths {
                let r = remove(&dfs, &Location::parse(&p)?, recursive).await;
                match r {
                    Err(ClientError::NotFound(_)) if force => {}
                    other => other?,
                }
            }
            Ok(())
        }
        DfsCmd::Mv { src, dst } => {
            let (s, d) = (Location::parse(&src)?, Location::parse(&dst)?);
            match (&s, &d) {
                (Location::Basin(a), Location::Basin(b)) => dfs.rename(a, b).await?,
                _ => {
                    copy(&dfs, &s, &d, true, false).await?;
                    remove(&dfs, &s, true).await?;
                }
            }
            Ok(())
        }
        DfsCmd::Cp {
            recursive,
            force,
            src,
            dst,
        } => {
            let (s, d) = (Location::parse(&src)?, Location::parse(&dst)?);
            let d = if is_dir(&dfs, &d).await? {
                d.join(&loc_name(&s))
            } else {
                d
            };
            copy(&dfs, &s, &d, recursive, force).await?;
            Ok(())
        }
        DfsCmd::Du { summary, path } => {
            let loc = Location::parse(&path)?;
            let rows: Vec<(String, u64, u64)> = match &loc {
                Location::Basin(p) => {
                    let entries = if summary {
                        vec![dfs.stat(p).await?.status.unwrap_or_default()]
                    } else {
                        dfs.list(p).await?
                    };
                    let mut rows = Vec::new();
                    for e in entries {
                        let s = dfs.summary(&e.path).await?;
                        rows.push((e.path, s.length, s.space_consumed));
                    }
                    rows
                }
                Location::Object { store, path, url } => {
                    let mut total = 0;
                    let mut list = store.list(Some(path));
                    while let Some(m) = list.next().await {
                        total += m?.size;
                    }
                    vec![(url.clone(), total, total)]
                }
            };
            if g.json {
                print_json(&json!(
                    rows.iter()
                        .map(|(p, l, s)| json!({"path": p, "length": l, "space_consumed": s}))
                        .collect::<Vec<_>>()
                ));
            } else {
                for (p, l, s) in rows {
                    println!("{:>12}  {:>12}  {p}", human_bytes(l), human_bytes(s));
                }
            }
            Ok(())
        }
        DfsCmd::Stat { path } => {
            let loc = Location::parse(&path)?;
            match loc {
                Location::Basin(p) => {
                    let st = dfs.stat(&p).await?;
                    let s = st.status.clone().unwrap_or_default();
                    if g.json {
                        let blocks: Vec<_> = st
                            .blocks
                            .iter()
                            .map(|b| json!({"block_id": b.block_id, "offset": b.offset, "length": b.length,
                                "replicas": b.replicas.iter().map(node_json).collect::<Vec<_>>()}))
                            .collect();
                        let mut v = status_json(&s);
                        v["blocks"] = json!(blocks);
                        print_json(&v);
                    } else {
                        print_status_line(&s);
                        for b in &st.blocks {
                            let reps: Vec<String> = b
                                .replicas
                                .iter()
                                .map(|r| format!("{}@{}", r.id, r.addr))
                                .collect();
                            println!(
                                "  blk_{:<8} offset {:>12} len {:>10}  [{}]",
                                b.block_id,
                                b.offset,
                                b.length,
                                reps.join(", ")
                            );
                        }
                    }
                }
                Location::Object { store, path, url } => {
                    let m = store
                        .head(&path)
                        .await
                        .map_err(|e| transfer::object_err(&url, e))?;
                    if g.json {
                        print_json(
                            &json!({"path": url, "type": "object", "length": m.size, "mtime": m.last_modified.to_rfc3339()}),
                        );
                    } else {
                        println!("{url} {} {}", m.size, m.last_modified.to_rfc3339());
                    }
                }
            }
            Ok(())
        }
        DfsCmd::Fsck { path } => {
            let r = dfs.fsck(&path).await?;
            if g.json {
                let files: Vec<_> = r.files.iter().map(|f| json!({"path": f.path,
                    "blocks": f.blocks.iter().map(|b| json!({"block_id": b.block_id, "live": b.live, "expected": b.expected, "corrupt": b.corrupt, "nodes": b.nodes})).collect::<Vec<_>>()})).collect();
                print_json(
                    &json!({"healthy": r.healthy, "under_replicated": r.under_replicated, "over_replicated": r.over_replicated,
                    "missing": r.missing, "corrupt": r.corrupt, "files": files,
                    "status": if r.missing > 0 { "CORRUPT" } else { "HEALTHY" }}),
                );
            } else {
                for f in &r.files {
                    for b in &f.blocks {
                        if b.live != b.expected || b.corrupt > 0 {
                            println!(
                                "{}: blk_{} {} of {} replicas{}",
                                f.path,
                                b.block_id,
                                b.live,
                                b.expected,
                                if b.live == 0 {
                                    " MISSING"
                                } else if b.corrupt > 0 {
                                    " (corrupt replica being replaced)"
                                } else {
                                    ""
                                }
                            );
                        }
                    }
                }
                println!(
                    "files: {}  blocks healthy: {}  under-replicated: {}  over-replicated: {}  missing: {}  corrupt: {}",
                    r.files.len(),
                    r.healthy,
                    r.under_replicated,
                    r.over_replicated,
                    r.missing,
                    r.corrupt
                );
                println!(
                    "The filesystem under '{path}' is {}",
                    if r.missing > 0 { "CORRUPT" } else { "HEALTHY" }
                );
            }
            if r.missing > 0 {
                bail!("{} block(s) missing under {path}", r.missing);
            }
            Ok(())
        }
        DfsCmd::Setrep {
            wait,
            replication,
            path,
        } => {
            let p = match Location::parse(&path)? {
                Location::Basin(p) => p,
                Location::Object { .. } => bail!("setrep applies to basin:// paths only"),
            };
            let n = dfs.set_replication(&p, replication).await?;
            if wait {
                let deadline = tokio::time::Instant::now()
                    + g.timeout.max(std::time::Duration::from_secs(120));
                loop {
                    let r = dfs.fsck(&p).await?;
                    if r.files
                        .iter()
                        .all(|f| f.blocks.iter().all(|b| b.live == b.expected))
                    {
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        bail!("timed out waiting for replication {replication} on {p}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            }
            println!("replication set to {replication} on {n} file(s) under {p}");
            Ok(())
        }
    }
}

fn file_name(p: &Path) -> anyhow::Result<String> {
    match p.file_name() {
        Some(n) => Ok(n.to_string_lossy().to_string()),
        None => bail!("cannot tell a file name from {}", p.display()),
    }
}

fn loc_name(l: &Location) -> String {
    match l {
        Location::Basin(p) => basin_common::path::file_name(p).to_string(),
        Location::Object { path, .. } => path.filename().unwrap_or("object").to_string(),
    }
}

async fn is_dir(dfs: &DfsClient, loc: &Location) -> Result<bool, ClientError> {
    match loc {
        Location::Basin(p) => Ok(dfs.exists(p).await?.is_some_and(|s| s.is_dir)),
        Location::Object { .. } => Ok(loc.display().ends_with('/')),
    }
}

async fn put_path(
    dfs: &DfsClient,
    src: &Path,
    dst: &Location,
    opts: &CreateOptions,
) -> anyhow::Result<()> {
    let meta = tokio::fs::metadata(src)
        .await
        .map_err(|e| ClientError::local(src.display().to_string(), e))?;
    if meta.is_dir() {
        if let Location::Basin(p) = dst {
            dfs.mkdir(p, true).await?;
        }
        let mut rd = tokio::fs::read_dir(src).await?;
        while let Some(e) = rd.next_entry().await? {
            let name = e.file_name().to_string_lossy().to_string();
            Box::pin(put_path(dfs, &e.path(), &dst.join(&name), opts)).await?;
        }
        return Ok(());
    }
    let source = transfer::local_source(src).await?;
    let sink = transfer::create(dfs, dst, opts).await?;
    pump_with_bar(source, sink, &format!("put {}", src.display())).await
}

async fn get_path(dfs: &DfsClient, src: &Location, dst: &Path, force: bool) -> anyhow::Result<()> {
    if let Location::Basin(p) = src
        && dfs.stat(p).await?.status.is_some_and(|s| s.is_dir)
    {
        tokio::fs::create_dir_all(dst).await?;
        for e in dfs.list(p).await? {
            let name = basin_common::path::file_name(&e.path).to_string();
            Box::pin(get_path(
                dfs,
                &Location::Basin(e.path.clone()),
                &dst.join(name),
                force,
            ))
            .await?;
        }
        return Ok(());
    }
    let source = transfer::open(dfs, src).await?;
    let sink = transfer::create_local(dst, force).await?;
    pump_with_bar(source, sink, &format!("get {}", src.display())).await
}

async fn pump_with_bar(source: Source, sink: transfer::Sink, label: &str) -> anyhow::Result<()> {
    let bar = bytes_bar(source.len, label);
    let r = transfer::pump(source, sink, &|n| bar.set_position(n)).await;
    bar.finish_and_clear();
    r?;
    Ok(())
}

async fn list(
    dfs: &DfsClient,
    loc: &Location,
    recursive: bool,
    out: &mut Vec<pb::FileStatus>,
) -> Result<(), ClientError> {
    match loc {
        Location::Basin(p) => {
            for e in dfs.list(p).await? {
                let dir = e.is_dir;
                let path = e.path.clone();
                out.push(e);
                if recursive && dir {
                    Box::pin(list(dfs, &Location::Basin(path), true, out)).await?;
                }
            }
        }
        Location::Object { store, path, url } => {
            let base = url.trim_end_matches('/').to_string();
            let prefix_len = path.as_ref().len();
            let mk = |rel: &str, is_dir: bool, len: u64, ms: i64| pb::FileStatus {
                path: if rel.is_empty() {
                    base.clone()
                } else {
                    format!("{base}/{rel}")
                },
                is_dir,
                length: len,
                mode: if is_dir { 0o755 } else { 0o644 },
                mtime_ms: ms,
                ..Default::default()
            };
            let rel = |p: &str| {
                p.get(prefix_len..)
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_string()
            };
            if recursive {
                let mut l = store.list(Some(path));
                while let Some(m) = l.next().await {
                    let m = m?;
                    out.push(mk(
                        &rel(m.location.as_ref()),
                        false,
                        m.size,
                        m.last_modified.timestamp_millis(),
                    ));
                }
            } else {
                let r = store.list_with_delimiter(Some(path)).await?;
                for d in r.common_prefixes {
                    out.push(mk(&rel(d.as_ref()), true, 0, 0));
                }
                for m in r.objects {
                    out.push(mk(
                        &rel(m.location.as_ref()),
                        false,
                        m.size,
                        m.last_modified.timestamp_millis(),
                    ));
                }
                if out.is_empty()
                    && let Ok(m) = store.head(path).await
                {
                    out.push(mk("", false, m.size, m.last_modified.timestamp_millis()));
                }
            }
        }
    }
    Ok(())
}

async fn remove(dfs: &DfsClient, loc: &Location, recursive: bool) -> Result<(), ClientError> {
    match loc {
        Location::Basin(p) => dfs.delete(p, recursive).await,
        Location::Object { store, path, url } => {
            if store.head(path).await.is_ok() {
                return store
                    .delete(path)
                    .await
                    .map_err(|e| transfer::object_err(url, e));
            }
            if !transfer::object_is_dir(store.as_ref(), path).await? {
                return Err(ClientError::NotFound(url.clone()));
            }
            if !recursive {
                return Err(ClientError::IsADirectory(url.clone()));
            }
            let mut l = store.list(Some(path));
            while let Some(m) = l.next().await {
                let m = m?;
                store.delete(&m.location).await?;
            }
            Ok(())
        }
    }
}

pub(crate) async fn copy(
    dfs: &DfsClient,
    src: &Location,
    dst: &Location,
    recursive: bool,
    force: bool,
) -> Result<(), ClientError> {
    let src_is_dir = match src {
        Location::Basin(p) => dfs.stat(p).await?.status.is_some_and(|s| s.is_dir),
        Location::Object { store, path, .. } => {
            store.head(path).await.is_err() && transfer::object_is_dir(store.as_ref(), path).await?
        }
    };
    if src_is_dir {
        if !recursive {
            return Err(ClientError::IsADirectory(src.display()));
        }
        if let Location::Basin(p) = dst {
            dfs.mkdir(p, true).await?;
        }
        let mut entries = Vec::new();
        list(dfs, src, false, &mut entries).await?;
        for e in entries {
            let name = e.path.rsplit('/').next().unwrap_or_default().to_string();
            Box::pin(copy(dfs, &src.join(&name), &dst.join(&name), true, force)).await?;
        }
        return Ok(());
    }
    let source = transfer::open(dfs, src).await?;
    let sink = transfer::create(
        dfs,
        dst,
        &CreateOptions {
            overwrite: force,
            ..Default::default()
        },
    )
    .await?;
    let bar = bytes_bar(source.len, &format!("cp {}", src.display()));
    let r = transfer::pump(source, sink, &|n| bar.set_position(n)).await;
    bar.finish_and_clear();
    r.map(|_| ())
}
