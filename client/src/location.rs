//! One address type for every place data can live: the cluster file system
//! (`basin://` or a bare absolute path), object stores (`s3://bucket/key`,
//! `file:///dir/file`), and, for `put`/`get`, the local disk.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use url::Url;

use crate::error::{ClientError, Result};

#[derive(Clone)]
pub enum Location {
    /// A normalised cluster path.
    Basin(String),
    /// An object in an object store, with the URL it came from.
    Object {
        store: Arc<dyn ObjectStore>,
        path: ObjPath,
        url: String,
    },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl Location {
    /// Parses a cluster-side argument of a `basin dfs` command.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.starts_with("s3://") || raw.starts_with("file://") {
            return object_location(raw);
        }
        if let Some((scheme, _)) = raw.split_once("://")
            && scheme != "basin"
        {
            return Err(ClientError::Invalid(format!(
                "unsupported scheme {scheme}:// in {raw} (use basin://, s3:// or file://)"
            )));
        }
        Ok(Location::Basin(basin_common::path::normalize(raw)?))
    }

    pub fn display(&self) -> String {
        match self {
            Location::Basin(p) => format!("basin://{p}"),
            Location::Object { url, .. } => url.clone(),
        }
    }

    /// A child location (for recursive copies).
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Basin(p) => Location::Basin(basin_common::path::join(p, name)),
            Location::Object { store, path, url } => Location::Object {
                store: store.clone(),
                path: path.clone().join(name),
                url: format!("{}/{name}", url.trim_end_matches('/')),
            },
        }
    }
}

fn object_location(raw: &str) -> Result<Location> {
    let url =
        Url::parse(raw).map_err(|e| ClientError::Invalid(format!("invalid URL {raw}: {e}")))?;
    match url.scheme() {
        "file" => {
            let fs_path = url.to_file_path().map_err(|_| {
                ClientError::Invalid(format!("invalid file URL {raw}: needs an absolute path"))
            })?;
            let path = ObjPath::from_absolute_path(&fs_path)
                .map_err(|e| ClientError::Invalid(format!("invalid file URL {raw}: {e}")))?;
            let store = object_store::local::LocalFileSystem::new().with_automatic_cleanup(true);
            Ok(Location::Object {
                store: Arc::new(store),
                path,
                url: raw.to_string(),
            })
        }
        "s3" => {
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ClientError::Invalid(format!("invalid S3 URL {raw}: no bucket")))?;
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            // Local S3-compatible servers (MinIO, moto) speak plain HTTP and path-style URLs.
            if let Ok(ep) =
                std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"))
            {
                builder = builder
                    .with_endpoint(&ep)
                    .with_allow_http(ep.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build()?;
            let key = url.path().trim_start_matches('/');
            let path = ObjPath::parse(key)
                .map_err(|e| ClientError::Invalid(format!("invalid S3 key in {raw}: {e}")))?;
            Ok(Location::Object {
                store: Arc::new(store),
                path,
                url: raw.to_string(),
            })
        }
        other => Err(ClientError::Invalid(format!(
            "unsupported scheme {other}://"
        ))),
    }
}
