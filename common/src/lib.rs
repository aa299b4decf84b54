//! Pieces every Basin process shares, kept small:
//!
//! - [`path`]: `basin://` path normalisation and validation.
//! - [`auth`]: the cluster-token tower layer (servers) and interceptor (clients).
//! - [`rpc`]: outbound gRPC channels (token, TLS, message limits) and the
//!   leader-following master client.
//! - [`telemetry`]: tracing set-up and the `/metrics`, `/healthz`, `/readyz` HTTP server.
//! - [`tls`]: loading `--tls-cert/--tls-key/--tls-ca` files.
//! - [`error`]: the one error-code mapping to `tonic::Status`.

pub mod auth;
pub mod blockio;
pub mod error;
pub mod path;
pub mod rpc;
pub mod telemetry;
pub mod tls;

pub use error::{ErrorCode, NOT_LEADER_KEY};

/// Largest gRPC message any Basin process accepts (data chunks are 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Accepted connections of a bound listener with Nagle's algorithm off:
/// small answers (acks, stream puts) must not wait for a delayed ACK.
pub fn incoming_nodelay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
