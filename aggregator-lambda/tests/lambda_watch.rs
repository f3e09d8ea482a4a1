//! The `bootstrap` binary under `cargo lambda watch` (the Lambda runtime API
//! emulator) answers a Kinesis event sent with `cargo lambda invoke`: the
//! response lists no failures (a poison record is skipped, not failed) and
//! the metrics reach CloudWatch (moto).
//!
//! Needs `cargo-lambda` (`pip install cargo-lambda`); without it the test
//! says so on stderr and passes.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tailrace_tests::{free_port, metric_sum, put_object, s3_client, wait_for_port, Moto};

/// Standard base64 with padding (the event's `data` field).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn cargo_lambda_available() -> bool {
    Command::new("cargo")
        .args(["lambda", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Kills the whole process group of `cargo lambda watch` (it starts cargo,
/// which starts the function) when dropped.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "unfinished: under `cargo lambda watch` (stdin closed) the invoke never returned; not yet debugged"]
async fn bootstrap_answers_a_kinesis_event_under_cargo_lambda_watch() -> anyhow::Result<()> {
    if !cargo_lambda_available() {
        eprintln!("SKIPPED: cargo-lambda is not installed (pip install cargo-lambda)");
        return Ok(());
    }
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    let s3 = s3_client(&config);
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    s3.create_bucket().bucket("meta").send().await?;
    put_object(
        &s3,
        "meta",
        "apps.csv",
        "ip_or_cidr,application,contact\n10.1.0.0/16,shop,shop@example.com\n",
    )
    .await?;

    let port = free_port()?;
    let mut cmd = Command::new("cargo");
    cmd.args([
        "lambda",
        "watch",
        "--ignore-changes",
        "-A",
        "127.0.0.1",
        "-P",
        &port.to_string(),
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env("AWS_ENDPOINT_URL", moto.endpoint())
    .env("TAILRACE_METADATA", "s3://meta/apps.csv")
    .env("TAILRACE_NAMESPACE", NAMESPACE)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0);
    for (k, v) in moto.child_env() {
        cmd.env(k, v);
    }
    let _watch = Group(cmd.spawn()?);
    wait_for_port(port, Duration::from_secs(120))?;

    let w = window_ago(2);
    let r = [
        reqs(3, "10.1.7.7", 200, 10, Some(900)),
        reqs(1, "198.51.100.1", 503, 1, None),
    ]
    .concat();
    let mut expected = Expected::new();
    expect(&mut expected, w, "web", &r, &|ip| {
        if ip == "10.1.7.7" {
            "shop"
        } else {
            "unknown"
        }
    });
    let record = |seq: &str, data: &[u8]| {
        serde_json::json!({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "pk",
                "sequenceNumber": seq,
                "data": base64(data),
                "approximateArrivalTimestamp": 1_700_000_000.5
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": format!("shardId-000000000000:{seq}"),
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/tailrace",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/logs"
        })
    };
    let event = serde_json::json!({
        "Records": [
            record("49590000000000000000000001", &partial("h1", 1, "web", w, &r).encode()),
            record("49590000000000000000000002", b"\0TRP\x01\xff\xff poison"),
        ]
    });
    let dir = std::env::temp_dir().join(format!("tailrace-lambda-{port}"));
    std::fs::create_dir_all(&dir)?;
    let event_file = dir.join("event.json");
    std::fs::write(&event_file, serde_json::to_vec(&event)?)?;

    let out = tokio::task::spawn_blocking(move || {
        Command::new("cargo")
            .args([
                "lambda",
                "invoke",
                "bootstrap",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
                "--data-file",
            ])
            .arg(&event_file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo lambda invoke failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response: serde_json::Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(response, serde_json::json!({"batchItemFailures": []}));

    assert_metrics(&cw, &expected).await?;
    let (sum, _) = metric_sum(
        &cw,
        NAMESPACE,
        "Requests",
        &[("Service", "web"), ("SourceApplication", "shop")],
        w,
        300,
    )
    .await?;
    assert_eq!(sum, 3.0);
    Ok(())
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"hello\n"), "aGVsbG8K");
}
