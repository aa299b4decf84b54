//! AWS Signature Version 4 verification for the Kinesis HTTP API.
//!
//! The canonical request is rebuilt the way botocore builds it: the method,
//! the URI-encoded path, the query pairs sorted as sent, the signed headers
//! (lowercased names, trimmed values with inner runs of spaces collapsed),
//! the signed header list, and the hex SHA-256 of the body (or the
//! `x-amz-content-sha256` header when the client sent one).

use std::collections::HashMap;

use axum::http::HeaderMap;
use ring::{digest, hmac};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request was not authenticated; each maps to an AWS error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header we cannot parse, or a missing `X-Amz-Date`.
    Incomplete(String),
    /// An access key we do not know.
    UnknownKey(String),
    /// The signature does not match.
    BadSignature,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey(_) => "UnrecognizedClientException",
            AuthError::BadSignature => "InvalidSignatureException",
        }
    }

    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "Missing Authentication Token".into(),
            AuthError::Incomplete(m) => m.clone(),
            AuthError::UnknownKey(_) => {
                "The security token included in the request is invalid.".into()
            }
            AuthError::BadSignature => "The request signature we calculated does not match the \
                 signature you provided. Check your AWS Secret Access Key and signing method."
                .into(),
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

pub fn parse_authorization(value: &str) -> Result<Authorization, AuthError> {
    let bad = |m: &str| AuthError::Incomplete(m.to_string());
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| bad("Authorization header requires the AWS4-HMAC-SHA256 algorithm."))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let credential =
        credential.ok_or_else(|| bad("Authorization header requires 'Credential' parameter."))?;
    let signed =
        signed.ok_or_else(|| bad("Authorization header requires 'SignedHeaders' parameter."))?;
    let signature =
        signature.ok_or_else(|| bad("Authorization header requires 'Signature' parameter."))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts[0].is_empty() {
        return Err(bad(
            "Credential should be scoped to a valid region, like 'us-east-1'.",
        ));
    }
    Ok(Authorization {
        access_key: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers: signed
            .split(';')
            .filter(|h| !h.is_empty())
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
        signature: signature.to_ascii_lowercase(),
    })
}

/// Checks the request's signature against `keys` (access key → secret).
/// Returns the access key on success.
pub fn verify(
    keys: &HashMap<String, String>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, AuthError> {
    let value = headers
        .get("authorization")
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Incomplete("Authorization header is not ASCII.".into()))?;
    let auth = parse_authorization(value)?;
    let secret = keys
        .get(&auth.access_key)
        .ok_or_else(|| AuthError::UnknownKey(auth.access_key.clone()))?;
    let amz_date = header_value(headers, "x-amz-date")
        .ok_or_else(|| AuthError::Incomplete("Missing X-Amz-Date header.".into()))?;
    let payload_hash = header_value(headers, "x-amz-content-sha256")
        .unwrap_or_else(|| hex(digest::digest(&digest::SHA256, body).as_ref()));
    let creq = canonical_request(
        method,
        path,
        query,
        headers,
        &auth.signed_headers,
        &payload_hash,
    );
    let sts = string_to_sign(&amz_date, &auth.scope(), &creq);
    let expected = signature(secret, &auth.date, &auth.region, &auth.service, &sts);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(auth.access_key)
    } else {
        tracing::debug!(access_key = %auth.access_key, canonical_request = %creq, "sigv4 mismatch");
        Err(AuthError::BadSignature)
    }
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(
            values
                .iter()
                .map(|v| canonical_header_value(v))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// Trims and collapses runs of spaces, as SigV4 asks.
fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request (non-S3 rules: the path is URI-encoded once more).
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let canonical_uri = uri_encode(path, false);
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let value = header_value(headers, name).unwrap_or_default();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&value);
        canonical_headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri,
        canonical_query,
        canonical_headers,
        signed_headers.join(";"),
        payload_hash
    )
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    )
}

/// The hex signature of `string_to_sign` with the key derived from `secret`.
pub fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, msg).as_ref().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// AWS URI encoding: everything but unreserved characters is %XX (upper case).
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// The GET iam ListUsers example from the AWS SigV4 documentation.
    #[test]
    fn aws_documented_example() {
        let h = headers(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "iam.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ]);
        let signed: Vec<String> = ["content-type", "host", "x-amz-date"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let empty = hex(digest::digest(&digest::SHA256, b"").as_ref());
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let creq = canonical_request(
            "GET",
            "/",
            "Version=2010-05-08&Action=ListUsers",
            &h,
            &signed,
            &empty,
        );
        assert_eq!(
            creq,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n\
             content-type:application/x-www-form-urlencoded; charset=utf-8\n\
             host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            &creq,
        );
        assert!(sts.ends_with("f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"));
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
            &sts,
        );
        assert_eq!(
            sig,
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );

        // The same through `verify`.
        let mut h = h;
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date, Signature={sig}"
            ))
            .unwrap(),
        );
        let keys = HashMap::from([(
            "AKIDEXAMPLE".to_string(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        )]);
        assert_eq!(
            verify(
                &keys,
                "GET",
                "/",
                "Action=ListUsers&Version=2010-05-08",
                &h,
                b""
            ),
            Ok("AKIDEXAMPLE".to_string())
        );
    }

    /// A request signed by botocore 1.43 (`SigV4Auth(...).add_auth`) for the
    /// kinesis JSON protocol is verified; a changed body or secret is not.
    #[test]
    fn botocore_signed_request() {
        let body = br#"{"ShardCount": 2, "StreamName": "boto"}"#;
        let h = headers(&[
            ("x-amz-target", "Kinesis_20131202.CreateStream"),
            ("content-type", "application/x-amz-json-1.1"),
            ("user-agent", "Boto3/1.43.11 test"),
            ("x-amz-date", "20261201T063059Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=basin/20261201/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
                 Signature=72a075e315c6b721ee753f1f963ef2493692a81c859f657f2ab04fa2c7125288",
            ),
            ("content-length", "39"),
            ("host", "127.0.0.1:4567"),
        ]);
        let keys = HashMap::from([("basin".to_string(), "basin-secret".to_string())]);
        assert_eq!(
            verify(&keys, "POST", "/", "", &h, body),
            Ok("basin".to_string())
        );
        assert_eq!(
            verify(
                &keys,
                "POST",
                "/",
                "",
                &h,
                br#"{"ShardCount": 3, "StreamName": "boto"}"#
            ),
            Err(AuthError::BadSignature)
        );
        let wrong = HashMap::from([("basin".to_string(), "other".to_string())]);
        assert_eq!(
            verify(&wrong, "POST", "/", "", &h, body),
            Err(AuthError::BadSignature)
        );
        let unknown = HashMap::from([("someone".to_string(), "basin-secret".to_string())]);
        assert_eq!(
            verify(&unknown, "POST", "/", "", &h, body),
            Err(AuthError::UnknownKey("basin".into()))
        );
        assert_eq!(
            verify(&keys, "POST", "/", "", &HeaderMap::new(), body),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn malformed_authorization() {
        assert!(matches!(
            parse_authorization("Basic abc"),
            Err(AuthError::Incomplete(_))
        ));
        assert!(matches!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=x"),
            Err(AuthError::Incomplete(_))
        ));
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/kinesis/aws4_request,SignedHeaders=Host;x-amz-date,Signature=AB",
        )
        .unwrap();
        assert_eq!(a.access_key, "AK");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.signature, "ab");
    }
}
