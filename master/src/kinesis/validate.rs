//! Request validation for the Kinesis operations: the members AWS checks,
//! with AWS's messages, and the base64 the SDKs send.

use axum::body::Bytes;
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use basin_client::streams;
use serde_json::Value;

use super::ApiError;

/// Base64 as the SDKs send it (standard alphabet; padding optional on input).
pub(super) const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
pub(super) const MAX_PARTITION_KEY_CHARS: usize = 256;

pub(super) fn null_error(member: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value null at '{member}' failed to satisfy constraint: \
         Member must not be null"
    ))
}

pub(super) fn required<T>(v: Option<T>, member: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| null_error(member))
}

pub(super) fn constraint(member: &str, value: Option<&str>, what: &str) -> ApiError {
    let value = value.map(|v| format!(" '{v}'")).unwrap_or_default();
    ApiError::validation(format!(
        "1 validation error detected: Value{value} at '{member}' failed to satisfy constraint: \
         Member must {what}"
    ))
}

pub(super) fn check_range(v: i64, min: i64, max: i64, member: &str) -> Result<i64, ApiError> {
    let s = v.to_string();
    if v < min {
        return Err(constraint(
            member,
            Some(s.as_str()),
            &format!("have value greater than or equal to {min}"),
        ));
    }
    if v > max {
        return Err(constraint(
            member,
            Some(s.as_str()),
            &format!("have value less than or equal to {max}"),
        ));
    }
    Ok(v)
}

pub(super) fn validate_stream_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 128 {
        return Err(constraint(
            "streamName",
            Some(name),
            "have length between 1 and 128",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(constraint(
            "streamName",
            Some(name),
            "satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

/// The stream a request names, by `StreamName` or `StreamARN`.
pub(super) fn stream_name(name: Option<String>, arn: Option<String>) -> Result<String, ApiError> {
    let name = match (name, arn) {
        (Some(n), _) => n,
        (None, Some(arn)) => arn
            .rsplit_once(":stream/")
            .map(|(_, n)| n.to_string())
            .ok_or_else(|| {
                constraint(
                    "streamARN",
                    Some(arn.as_str()),
                    "satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
                )
            })?,
        (None, None) => {
            return Err(ApiError::validation(
                "Either StreamName or StreamARN should be provided.",
            ));
        }
    };
    validate_stream_name(&name)?;
    Ok(name)
}

pub(super) fn decode_data(data: &str, member: &str) -> Result<Bytes, ApiError> {
    let bytes = B64
        .decode(data.trim())
        .map_err(|e| ApiError::serialization(format!("'{member}' is not valid base64: {e}")))?;
    if bytes.len() > streams::MAX_RECORD_BYTES {
        return Err(constraint(
            member,
            None,
            &format!(
                "have length less than or equal to {}",
                streams::MAX_RECORD_BYTES
            ),
        ));
    }
    Ok(Bytes::from(bytes))
}

pub(super) fn validate_partition_key(key: &str, member: &str) -> Result<(), ApiError> {
    let n = key.chars().count();
    if n < 1 {
        return Err(constraint(
            member,
            Some(key),
            "have length greater than or equal to 1",
        ));
    }
    if n > MAX_PARTITION_KEY_CHARS {
        return Err(constraint(
            member,
            None,
            &format!("have length less than or equal to {MAX_PARTITION_KEY_CHARS}"),
        ));
    }
    Ok(())
}

/// A decimal 128-bit hash key (`0|([1-9]\d{0,38})`, at most 2^128 - 1).
pub(super) fn parse_hash_key(v: &str, member: &str) -> Result<u128, ApiError> {
    let pattern_ok = v == "0"
        || (!v.is_empty()
            && v.len() <= 39
            && !v.starts_with('0')
            && v.bytes().all(|b| b.is_ascii_digit()));
    if !pattern_ok {
        return Err(constraint(
            member,
            Some(v),
            "satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        ));
    }
    v.parse::<u128>().map_err(|_| {
        ApiError::invalid_argument(format!("{member} {v} must be between 0 and 2^128 - 1"))
    })
}

/// A decimal sequence number (the u64 sequence of a shard).
pub(super) fn parse_seq(v: &str, member: &str) -> Result<u64, ApiError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(constraint(
            member,
            Some(v),
            "satisfy regular expression pattern: 0|([1-9]\\d{0,128})",
        ));
    }
    v.parse::<u64>().map_err(|_| {
        ApiError::invalid_argument(format!(
            "StartingSequenceNumber {v} used in GetShardIterator on this stream is invalid."
        ))
    })
}

/// An SDK timestamp: epoch seconds as a JSON number (or a numeric string).
pub(super) fn parse_timestamp_ms(v: &Value, member: &str) -> Result<i64, ApiError> {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s.is_finite() => Ok((s * 1000.0).round() as i64),
        _ => Err(ApiError::serialization(format!(
            "'{member}' must be a timestamp in epoch seconds"
        ))),
    }
}

pub(super) fn b64_token(s: &str) -> String {
    B64.encode(s.as_bytes())
}

pub(super) fn un_b64_token(t: &str) -> Result<String, ApiError> {
    B64.decode(t.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::invalid_argument("NextToken is not valid"))
}
