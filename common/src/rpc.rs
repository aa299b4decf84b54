//! Outbound gRPC: one [`Connector`] per process builds channels that carry the
//! cluster token, use TLS when configured, and accept Basin-sized messages.
//! [`MasterClient`] follows the Raft leader across a list of masters.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use basin_proto::master_client::MasterClient as RawMasterClient;
use thiserror::Error;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::auth::TokenInterceptor;
use crate::error::leader_hint;

/// A channel that adds the cluster token to every call.
pub type AuthChannel = InterceptedService<Channel, TokenInterceptor>;

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("invalid address {addr}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("master unreachable (tried {tried}): {reason}")]
    MasterUnreachable { tried: String, reason: String },
    #[error("{}", .0.message())]
    Status(#[from] Status),
}

/// Builds authenticated channels to other Basin processes.
#[derive(Clone)]
pub struct Connector {
    token: String,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
}

impl Connector {
    pub fn new(token: &str, tls: Option<ClientTlsConfig>) -> Self {
        Self {
            token: token.to_string(),
            tls,
            connect_timeout: Duration::from_secs(3),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// A lazily connecting channel to `addr` (`host:port` or a URL).
    pub fn channel(&self, addr: &str) -> Result<AuthChannel, RpcError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let bad = |reason: String| RpcError::BadAddress {
            addr: addr.to_string(),
            reason,
        };
        let mut ep = Endpoint::from_shared(url)
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_adaptive_window(true)
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(32 * 1024 * 1024));
        if let Some(tls) = &self.tls {
            ep = ep.tls_config(tls.clone()).map_err(|e| bad(e.to_string()))?;
        }
        Ok(InterceptedService::new(
            ep.connect_lazy(),
            TokenInterceptor::new(&self.token),
        ))
    }

    /// A typed master client on one address.
    pub fn master(&self, addr: &str) -> Result<RawMasterClient<AuthChannel>, RpcError> {
        Ok(RawMasterClient::new(self.channel(addr)?)
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::MAX_MESSAGE_BYTES))
    }
}

/// A master client that sends each call to the Raft leader: it follows
/// not-leader redirects and moves on to the next master when one is down.
#[derive(Clone)]
pub struct MasterClient {
    connector: Connector,
    addrs: Arc<Vec<String>>,
    /// Index into `addrs` (or past it: then `extra` holds a redirect target).
    current: Arc<AtomicUsize>,
    extra: Arc<std::sync::Mutex<Option<String>>>,
    /// How long one call keeps trying before it gives up.
    pub deadline: Duration,
}

impl MasterClient {
    pub fn new(connector: Connector, addrs: Vec<String>) -> Self {
        Self {
            connector,
            addrs: Arc::new(addrs),
            current: Arc::new(AtomicUsize::new(0)),
            extra: Arc::new(std::sync::Mutex::new(None)),
            deadline: Duration::from_secs(30),
        }
    }

    pub fn with_deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    fn current_addr(&self) -> String {
        if let Ok(g) = self.extra.lock()
            && let Some(a) = g.as_ref()
        {
            return a.clone();
        }
        let i = self.current.load(Ordering::Relaxed) % self.addrs.len().max(1);
        self.addrs.get(i).cloned().unwrap_or_default()
    }

    fn advance(&self) {
        if let Ok(mut g) = self.extra.lock() {
            *g = None;
        }
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    fn redirect(&self, leader: &str) {
        if let Some(i) = self.addrs.iter().position(|a| a == leader) {
            if let Ok(mut g) = self.extra.lock() {
                *g = None;
            }
            self.current.store(i, Ordering::Relaxed);
        } else if let Ok(mut g) = self.extra.lock() {
            *g = Some(leader.to_string());
        }
    }

    /// Runs `f` against the leader master, retrying on redirects, unreachable
    /// masters and elections until the deadline.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, RpcError>
    where
        F: Fn(RawMasterClient<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        if self.addrs.is_empty() {
            return Err(RpcError::MasterUnreachable {
                tried: "(none)".into(),
                reason: "no master address given (--master or BASIN_MASTER)".into(),
            });
        }
        let start = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut tried: Vec<String> = Vec::new();
        loop {
            let addr = self.current_addr();
            if !tried.contains(&addr) {
                tried.push(addr.clone());
            }
            let result = match self.connector.master(&addr) {
                Ok(c) => f(c).await,
                Err(e) => return Err(e),
            };
            let st = match result {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(st) => st,
            };
            let retry = if let Some(hint) = leader_hint(&st) {
                match hint {
                    Some(leader) if leader != addr => {
                        self.redirect(&leader);
                        backoff = Duration::from_millis(50);
                        true
                    }
                    _ => {
                        self.advance();
                        true
                    }
                }
            } else if st.code() == Code::Unavailable && !is_safe_mode(&st) {
                // Not listening, or mid-election on that node: try the next one.
                self.advance();
                true
            } else if st.code() == Code::Unknown && st.message().contains("transport") {
                self.advance();
                true
            } else {
                false
            };
            if !retry {
                return Err(RpcError::Status(st));
            }
            if start.elapsed() >= self.deadline {
                if st.code() == Code::Unavailable {
                    return Err(RpcError::MasterUnreachable {
                        tried: tried.join(", "),
                        reason: st.message().to_string(),
                    });
                }
                return Err(RpcError::Status(st));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

/// Whether a status says the master is in safe mode (a retry will not help soon).
pub fn is_safe_mode(st: &Status) -> bool {
    st.message().contains("safe mode")
}
