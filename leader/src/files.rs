//! Files the warehouse reads and writes outside its slices: COPY sources,
//! UNLOAD targets and external tables, in the cluster file system
//! (`basin:///…`) or an object store (`s3://…`, `file:///…`).

use basin_client::transfer::{self, object_err};
use basin_client::{CreateOptions, DfsClient, Location};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::error::{Result, WarehouseError};

fn client_err(e: basin_client::ClientError) -> WarehouseError {
    match e {
        basin_client::ClientError::NotFound(p) => {
            WarehouseError::NotFound(format!("no such file or directory: {p}"))
        }
        other => WarehouseError::Invalid(other.to_string()),
    }
}

/// Hidden files (`_SUCCESS`, `.crc`, in-progress `.tmp`) are not data.
fn is_data(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    !(base.starts_with('_') || base.starts_with('.') || base.ends_with(".tmp"))
}

/// The data files at a location: the file itself, or every file below a directory or prefix, in name order.
pub async fn list(dfs: &DfsClient, raw: &str) -> Result<Vec<Location>> {
    let loc = Location::parse(raw).map_err(client_err)?;
    let mut out = Vec::new();
    match &loc {
        Location::Basin(p) => {
            let st = dfs.stat(p).await.map_err(client_err)?;
            match st.status {
                None => {
                    return Err(WarehouseError::NotFound(format!(
                        "no such file or directory: {}",
                        loc.display()
                    )));
                }
                Some(s) if s.is_dir => {
                    for e in dfs.list(p).await.map_err(client_err)? {
                        if !e.is_dir && is_data(&e.path) {
                            out.push(Location::Basin(e.path));
                        }
                    }
                }
                Some(_) => out.push(loc.clone()),
            }
        }
        Location::Object { store, path, url } => {
            let mut l = store.list(Some(path));
            let mut found = Vec::new();
            while let Some(m) = l.next().await {
                let m = m.map_err(|e| client_err(object_err(url, e)))?;
                found.push(m.location);
            }
            if found.is_empty() {
                out.push(loc.clone());
            }
            found.sort();
            let prefix = path.as_ref().len();
            for f in found {
                let rel = f
                    .as_ref()
                    .get(prefix..)
                    .unwrap_or("")
                    .trim_start_matches('/');
                if is_data(rel) {
                    out.push(loc.join(rel));
                }
            }
        }
    }
    if out.is_empty() {
        return Err(WarehouseError::NotFound(format!(
            "no data files at {}",
            loc.display()
        )));
    }
    Ok(out)
}

/// Whether a file exists.
pub async fn exists(dfs: &DfsClient, loc: &Location) -> Result<bool> {
    match loc {
        Location::Basin(p) => match dfs.exists(p).await {
            Ok(s) => Ok(s.is_some()),
            Err(basin_client::ClientError::NotFound(_)) => Ok(false),
            Err(e) => Err(client_err(e)),
        },
        Location::Object { store, path, .. } => Ok(store.head(path).await.is_ok()),
    }
}

/// A whole file.
pub async fn read(dfs: &DfsClient, loc: &Location) -> Result<Bytes> {
    let src = transfer::open(dfs, loc).await.map_err(client_err)?;
    let mut buf = BytesMut::with_capacity(src.len.unwrap_or(0) as usize);
    let mut stream = src.stream;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(client_err)?);
    }
    Ok(buf.freeze())
}

/// Writes a whole file, replacing what was there.
pub async fn write(dfs: &DfsClient, loc: &Location, data: Bytes) -> Result<()> {
    let opts = CreateOptions {
        overwrite: true,
        ..Default::default()
    };
    if let Location::Basin(p) = loc
        && let Some(parent) = basin_common::path::parent(p)
    {
        dfs.mkdir(parent, true).await.map_err(client_err)?;
    }
    let mut sink = transfer::create(dfs, loc, &opts)
        .await
        .map_err(client_err)?;
    if let Err(e) = sink.write(data).await {
        sink.abort().await;
        return Err(client_err(e));
    }
    sink.finish().await.map_err(client_err)
}

/// Deletes a file; a missing one is not an error.
pub async fn remove(dfs: &DfsClient, loc: &Location) -> Result<()> {
    match loc {
        Location::Basin(p) => match dfs.delete(p, false).await {
            Ok(()) | Err(basin_client::ClientError::NotFound(_)) => Ok(()),
            Err(e) => Err(client_err(e)),
        },
        Location::Object { store, path, url } => match store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(client_err(object_err(url, e))),
        },
    }
}
