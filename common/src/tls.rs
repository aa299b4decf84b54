//! TLS material for gRPC listeners and channels (rustls through tonic).

use std::path::{Path, PathBuf};

use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--tls-cert and --tls-key must be given together")]
    Incomplete,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Server TLS from a PEM certificate chain and key, when both are given.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ServerTlsConfig>, TlsError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => {
            let id = Identity::from_pem(read(c)?, read(k)?);
            Ok(Some(ServerTlsConfig::new().identity(id)))
        }
        _ => Err(TlsError::Incomplete),
    }
}

/// Client TLS trusting the given PEM CA (the cluster's own CA or self-signed cert).
pub fn client_config(ca: &Path) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)))
}
