//! The Kinesis JSON HTTP API on the master's `--http-listen` address: a stock
//! boto3 client creates a stream, lists its shards, puts and reads records,
//! sees the server's validation errors and deletes the stream; raw requests
//! get Kinesis-shaped errors.

use std::path::PathBuf;
use std::process::Command;

use basin_tests::{Cluster, Spec, http_post};

const TARGET: &str = "X-Amz-Target";
const JSON_11: &str = "application/x-amz-json-1.1";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/kinesis_boto3.py")
}

fn boto3_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn boto3_client_round_trip() -> anyhow::Result<()> {
    if !boto3_installed() {
        println!("SKIPPED: boto3 not installed");
        return Ok(());
    }
    // The masters verify SigV4 with the script's key, so a signed SDK request is checked end to end.
    let c = Cluster::start(Spec {
        task: 0,
        extra_master_args: vec!["--kinesis-keys".into(), "basin=basin-secret".into()],
        ..Spec::default()
    })?;
    let (code, body) = http_post(
        &c.masters[0].http,
        "/",
        &[
            (TARGET, "Kinesis_20131202.ListStreams"),
            ("Content-Type", JSON_11),
        ],
        b"{}",
    )?;
    assert!(
        code == 400 && body.contains("MissingAuthenticationToken"),
        "an unsigned request was not refused: {code} {body}"
    );
    let endpoint = format!("http://{}", c.masters[0].http);
    let out = Command::new("python3")
        .arg(script())
        .arg(&endpoint)
        // No proxy, config file or profile of the machine running the tests.
        .env("NO_PROXY", "*")
        .env("no_proxy", "*")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.lines().any(|l| l.trim() == "OK") {
        c.dump_logs();
        panic!(
            "kinesis_boto3.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
    }
    Ok(())
}

#[test]
fn raw_json_requests_and_errors() -> anyhow::Result<()> {
    let c = Cluster::start(Spec {
        core: 1,
        task: 0,
        ..Spec::default()
    })?;
    let http = &c.masters[0].http;

    let (code, body) = http_post(
        http,
        "/",
        &[
            (TARGET, "Kinesis_20131202.ListStreams"),
            ("Content-Type", JSON_11),
        ],
        b"{}",
    )?;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert!(v["StreamNames"].is_array(), "{body}");
    assert_eq!(v["HasMoreStreams"], false, "{body}");

    let (code, body) = http_post(
        http,
        "/",
        &[
            (TARGET, "Kinesis_20131202.NoSuchOperation"),
            ("Content-Type", JSON_11),
        ],
        b"{}",
    )?;
    assert_eq!(code, 400, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["__type"], "UnknownOperationException", "{body}");

    let (code, body) = http_post(
        http,
        "/",
        &[
            (TARGET, "Kinesis_20131202.DescribeStream"),
            ("Content-Type", "application/json"),
        ],
        b"{not json",
    )?;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("SerializationException"), "{body}");

    let (code, body) = http_post(
        http,
        "/",
        &[
            (TARGET, "Kinesis_20131202.DescribeStream"),
            ("Content-Type", JSON_11),
        ],
        br#"{"StreamName":"no-such-stream"}"#,
    )?;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("ResourceNotFoundException"), "{body}");
    Ok(())
}
