//! The cluster token: every RPC carries `authorization: Bearer <token>`.
//!
//! Servers wrap their router in [`RequireTokenLayer`], a tower layer that
//! answers `UNAUTHENTICATED` before any handler runs. Clients add the header
//! with [`TokenInterceptor`].

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::{Request, Status};

/// Header value for a token.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Tower layer that refuses requests without the cluster token.
#[derive(Clone)]
pub struct RequireTokenLayer {
    expected: Arc<str>,
}

impl RequireTokenLayer {
    pub fn new(token: &str) -> Self {
        Self {
            expected: Arc::from(bearer(token)),
        }
    }
}

impl<S> tower::Layer<S> for RequireTokenLayer {
    type Service = RequireToken<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireToken {
            inner,
            expected: self.expected.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequireToken<S> {
    inner: S,
    expected: Arc<str>,
}

impl<S, B> tower::Service<http::Request<B>> for RequireToken<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        std::future::Ready<Result<http::Response<Body>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ok = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| constant_time_eq(v.as_bytes(), self.expected.as_bytes()));
        if ok {
            futures::future::Either::Left(self.inner.call(req))
        } else {
            metrics::counter!("basin_rpc_unauthenticated_total").increment(1);
            let st = Status::unauthenticated(
                "missing or wrong cluster token (set --token or BASIN_TOKEN)",
            );
            futures::future::Either::Right(std::future::ready(Ok(st.into_http())))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Client-side interceptor adding the token to every request.
#[derive(Clone)]
pub struct TokenInterceptor {
    value: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl TokenInterceptor {
    pub fn new(token: &str) -> Self {
        Self {
            value: bearer(token).parse().ok(),
        }
    }
}

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A fresh random token (hex, 128 bits) for a new cluster.
pub fn generate_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
