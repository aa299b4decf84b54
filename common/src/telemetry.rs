//! Logging and the operational HTTP endpoint every role exposes.
//!
//! `init_logging` sets up `tracing` once per process (`RUST_LOG` filters it).
//! `serve_http` serves `/metrics` (Prometheus text), `/healthz` (the process
//! is up) and `/readyz` (the role says it can serve) on a bound listener.

use std::sync::Arc;
use std::sync::OnceLock;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Sets up the global tracing subscriber (idempotent).
pub fn init_logging() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,sled=warn,openraft=warn,h2=warn,hyper=warn,tower=warn",
            )
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    });
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // A second recorder in the same process (embedded cluster) is fine to skip.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Answers whether a role is ready to serve.
pub type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves `/metrics`, `/healthz`, `/readyz` and a role's own routes
/// (`extra`, e.g. the master's Kinesis API) until `shutdown` resolves.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    ready: ReadyFn,
    extra: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = prometheus();
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let r = ready();
                async move {
                    if r {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
        .merge(extra);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
