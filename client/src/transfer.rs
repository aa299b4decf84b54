//! Moving bytes between any two places: local files, `basin://`, `s3://`,
//! `file://`. Every long transfer can report progress.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::io::Write;

use tokio::io::AsyncReadExt;

use crate::dfs::{CreateOptions, DfsClient, DfsWriter};
use crate::error::{ClientError, Result};
use crate::location::Location;

/// Called with the number of bytes moved so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// An open source of bytes and its length when known.
pub struct Source {
    pub len: Option<u64>,
    pub stream: BoxStream<'static, Result<Bytes>>,
}

const READ_CHUNK: usize = 4 * 1024 * 1024;

/// Reads a local file.
pub async fn local_source(path: &std::path::Path) -> Result<Source> {
    let name = path.display().to_string();
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ClientError::local(&name, e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| ClientError::local(&name, e))?;
    if meta.is_dir() {
        return Err(ClientError::IsADirectory(name));
    }
    let stream = async_stream(move |tx| async move {
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        let _ = tx.send(Err(ClientError::local(&name, e))).await;
                        return;
                    }
                }
            }
            if filled == 0 {
                return;
            }
            buf.truncate(filled);
            if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                return;
            }
        }
    });
    Ok(Source {
        len: Some(meta.len()),
        stream,
    })
}

/// Turns a producer task into a stream (read-ahead of a few chunks).
fn async_stream<F, Fut>(f: F) -> BoxStream<'static, Result<Bytes>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// Opens a cluster or object-store location for reading.
pub async fn open(dfs: &DfsClient, loc: &Location) -> Result<Source> {
    match loc {
        Location::Basin(p) => {
            let (len, stream) = dfs.open(p).await?;
            Ok(Source {
                len: Some(len),
                stream,
            })
        }
        Location::Object { store, path, url } => {
            let r = store.get(path).await.map_err(|e| object_err(url, e))?;
            let len = r.meta.size;
            let url = url.clone();
            let stream = r
                .into_stream()
                .map(move |c| c.map_err(|e| object_err(&url, e)))
                .boxed();
            Ok(Source {
                len: Some(len),
                stream,
            })
        }
    }
}

pub fn object_err(url: &str, e: object_store::Error) -> ClientError {
    match e {
        object_store::Error::NotFound { .. } => ClientError::NotFound(url.to_string()),
        object_store::Error::AlreadyExists { .. } => ClientError::AlreadyExists(url.to_string()),
        other => ClientError::Object(other),
    }
}

/// A destination being written.
pub enum Sink {
    Basin(Box<DfsWriter>),
    Object {
        upload: WriteMultipart,
        url: String,
    },
    Local {
        file: std::io::BufWriter<std::fs::File>,
        tmp: std::path::PathBuf,
        dest: std::path::PathBuf,
    },
}

impl Sink {
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        match self {
            Sink::Basin(w) => w.write(data).await,
            Sink::Object { upload, url } => {
                upload
                    .wait_for_capacity(4)
                    .await
                    .map_err(|e| object_err(url, e))?;
                upload.put(data);
                Ok(())
            }
            // Plain blocking writes on this worker thread: cheaper than a
            // round trip to the blocking pool per chunk.
            Sink::Local { file, tmp, .. } => tokio::task::block_in_place(|| file.write_all(&data))
                .map_err(|e| ClientError::local(tmp.display().to_string(), e)),
        }
    }

    /// Makes the written data visible at its destination.
    pub async fn finish(self) -> Result<()> {
        match self {
            Sink::Basin(w) => w.close().await.map(|_| ()),
            Sink::Object { upload, url } => upload
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| object_err(&url, e)),
            Sink::Local {
                mut file,
                tmp,
                dest,
            } => {
                let name = dest.display().to_string();
                tokio::task::block_in_place(|| {
                    file.flush()?;
                    file.get_ref().sync_all()
                })
                .map_err(|e| ClientError::local(&name, e))?;
                tokio::fs::rename(&tmp, &dest)
                    .await
                    .map_err(|e| ClientError::local(&name, e))
            }
        }
    }

    /// Throws away what was written.
    pub async fn abort(self) {
        match self {
            Sink::Basin(w) => w.abort().await,
            Sink::Object { upload, .. } => {
                let _ = upload.abort().await;
            }
            Sink::Local { tmp, .. } => {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
        }
    }
}

/// Creates a cluster or object-store destination; refuses to replace an
/// existing one unless `opts.overwrite`.
pub async fn create(dfs: &DfsClient, loc: &Location, opts: &CreateOptions) -> Result<Sink> {
    match loc {
        Location::Basin(p) => Ok(Sink::Basin(Box::new(dfs.create(p, opts).await?))),
        Location::Object { store, path, url } => {
            if !opts.overwrite && store.head(path).await.is_ok() {
                return Err(ClientError::AlreadyExists(url.clone()));
            }
            let upload = store
                .put_multipart(path)
                .await
                .map_err(|e| object_err(url, e))?;
            Ok(Sink::Object {
                upload: WriteMultipart::new(upload),
                url: url.clone(),
            })
        }
    }
}

/// Creates a local destination file (written beside it, renamed at the end).
pub async fn create_local(dest: &std::path::Path, overwrite: bool) -> Result<Sink> {
    let name = dest.display().to_string();
    if !overwrite && tokio::fs::metadata(dest).await.is_ok() {
        return Err(ClientError::AlreadyExists(name));
    }
    let file_name = dest
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".{file_name}.basin-tmp-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(|e| ClientError::local(&name, e))?;
    let file = std::io::BufWriter::with_capacity(4 << 20, file);
    Ok(Sink::Local {
        file,
        tmp,
        dest: dest.to_path_buf(),
    })
}

/// Pumps a source into a sink; on any failure the sink is aborted, so a
/// partial copy never appears.
pub async fn pump(mut src: Source, mut sink: Sink, progress: Progress<'_>) -> Result<u64> {
    let mut moved = 0u64;
    while let Some(chunk) = src.stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                sink.abort().await;
                return Err(e);
            }
        };
        moved += chunk.len() as u64;
        if let Err(e) = sink.write(chunk).await {
            sink.abort().await;
            return Err(e);
        }
        progress(moved);
    }
    sink.finish().await?;
    Ok(moved)
}

/// Whether an object-store location is a "directory" (has objects below it).
pub async fn object_is_dir(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> Result<bool> {
    let mut list = store.list(Some(path));
    Ok(list.next().await.transpose()?.is_some())
}
