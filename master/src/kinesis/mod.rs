//! The Kinesis Data Streams JSON HTTP API (`application/x-amz-json-1.1`,
//! `X-Amz-Target: Kinesis_20131202.<Op>`), so stock AWS SDKs and the AWS CLI
//! can use Basin streams: point them at `http://<master --http-listen>/`.
//!
//! - [`sigv4`]: AWS Signature Version 4 verification (when keys are configured).
//! - `validate`: request validation with AWS's messages.
//! - [`ops`]: the operations, their request validation and response shapes.
//!
//! Everything is translated into calls on [`basin_client::streams::StreamClient`].

pub mod ops;
pub mod sigv4;
mod validate;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use basin_client::streams::{StreamClient, StreamError, StreamErrorCode};

/// The `X-Amz-Target` prefix of every Kinesis operation.
pub const TARGET_PREFIX: &str = "Kinesis_20131202.";
/// The content type of every response.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The largest request body read (PutRecords: 5 MiB of data, base64 encoded, plus JSON).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The operations served (also the `op` label values of the request counter).
pub const OPERATIONS: &[&str] = &[
    "CreateStream",
    "DeleteStream",
    "DescribeStream",
    "DescribeStreamSummary",
    "ListStreams",
    "ListShards",
    "PutRecord",
    "PutRecords",
    "GetShardIterator",
    "GetRecords",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "SplitShard",
    "MergeShards",
    "UpdateShardCount",
];

struct Api {
    client: StreamClient,
    /// Access key → secret; `None` accepts any (or no) signature.
    keys: Option<HashMap<String, String>>,
}

/// The Kinesis API router: `POST /`. With `keys`, every request must carry a
/// valid SigV4 signature by one of those access keys.
pub fn router(client: StreamClient, keys: Option<HashMap<String, String>>) -> Router {
    let api = Arc::new(Api { client, keys });
    Router::new().route("/", post(handle)).with_state(api)
}

/// A Kinesis error: HTTP status, `__type` and message.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: Cow::Borrowed(code),
            message: message.into(),
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", message)
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new("SerializationException", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: Cow::Borrowed("InternalFailure"),
            message: message.into(),
        }
    }
}

impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        let status = if e.code == StreamErrorCode::Internal {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError {
            status,
            code: Cow::Borrowed(e.code.kinesis_name()),
            message: e.message,
        }
    }
}

fn respond(status: StatusCode, body: Vec<u8>, request_id: &str, error: Option<&str>) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amzn-requestid", request_id);
    if let Some(code) = error {
        b = b.header("x-amzn-errortype", code);
    }
    b.body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn error_response(e: &ApiError, request_id: &str) -> Response {
    let body = serde_json::json!({ "__type": e.code, "message": e.message });
    respond(
        e.status,
        serde_json::to_vec(&body).unwrap_or_default(),
        request_id,
        Some(e.code.as_ref()),
    )
}

async fn handle(State(api): State<Arc<Api>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    let op: &'static str = target
        .strip_prefix(TARGET_PREFIX)
        .and_then(|name| OPERATIONS.iter().copied().find(|o| *o == name))
        .unwrap_or("unknown");
    metrics::counter!("basin_kinesis_requests_total", "op" => op).increment(1);

    let result: Result<serde_json::Value, ApiError> = async {
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|e| {
                ApiError::validation(format!(
                    "request body unreadable or larger than {MAX_BODY_BYTES} bytes: {e}"
                ))
            })?;
        if let Some(keys) = &api.keys {
            let query = parts.uri.query().unwrap_or("");
            sigv4::verify(
                keys,
                parts.method.as_str(),
                parts.uri.path(),
                query,
                &parts.headers,
                &body,
            )
            .map_err(|e| {
                tracing::info!(op, error = ?e, "kinesis request refused");
                ApiError::new(e.code(), e.message())
            })?;
        }
        if op == "unknown" {
            return Err(ApiError::new(
                "UnknownOperationException",
                format!("unknown operation {target:?}"),
            ));
        }
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let mime = ct.split(';').next().unwrap_or("").trim();
            if mime != "application/x-amz-json-1.1"
                && mime != "application/x-amz-json-1.0"
                && mime != "application/json"
            {
                return Err(ApiError::serialization(format!(
                    "unsupported content type {ct:?}; use {CONTENT_TYPE}"
                )));
            }
        }
        ops::dispatch(&api.client, op, &body).await
    }
    .await;

    match result {
        Ok(value) => {
            tracing::debug!(op, "kinesis request ok");
            match serde_json::to_vec(&value) {
                Ok(bytes) => respond(StatusCode::OK, bytes, &request_id, None),
                Err(e) => error_response(&ApiError::internal(e.to_string()), &request_id),
            }
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(op, code = %e.code, message = %e.message, "kinesis request failed");
            } else {
                tracing::debug!(op, code = %e.code, message = %e.message, "kinesis request rejected");
            }
            metrics::counter!("basin_kinesis_errors_total", "op" => op, "code" => e.code.to_string())
                .increment(1);
            error_response(&e, &request_id)
        }
    }
}
