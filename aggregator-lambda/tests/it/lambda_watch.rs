//! The built `bootstrap` binary runs under `cargo lambda watch` (the Lambda
//! runtime API emulator) and answers Kinesis events sent with
//! `cargo lambda invoke`:
//! - a good record and a poison one: the response lists no failures (a
//!   poison record is skipped, not failed; `PoisonRecords` = 1) and the
//!   metrics reach CloudWatch (moto);
//! - four records whose PutMetricData calls partly fail (CloudWatch behind
//!   `tailrace_tests::cloudwatch_proxy`, failing every attempt of the call
//!   that carries the `omega-*` applications): `batchItemFailures` names exactly the two
//!   records behind those units; the redelivery Lambda then makes (from the
//!   lowest failed sequence number on, so a record that succeeded comes
//!   back too) is answered with no failures, and every request is counted
//!   exactly once.
//!
//! `cargo lambda watch --only-lambda-apis` serves the runtime and invoke APIs
//! only; the test starts the `bootstrap` that `cargo test` just built itself,
//! with the environment the Lambda service would give it and
//! `AWS_LAMBDA_RUNTIME_API` pointing at the emulator's per-function route
//! (`/.rt/<name>`), so `cargo lambda invoke bootstrap` reaches it. Letting
//! `watch` start the function would run `cargo run` from inside `cargo test`
//! (a second build, contending for the target directory lock): slow and
//! unbounded, so the test does not do that.
//!
//! Needs `cargo-lambda` on PATH (`pip install cargo-lambda`) and
//! `moto_server`; the test fails with a clear message without them. Every
//! process it starts listens on 127.0.0.1 and is killed when the test ends;
//! each invocation is bounded (100 s), and so each test.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use anyhow::{bail, Context};
use tailrace_tests::cloudwatch_proxy::{CloudWatchProxy, CwFaults};
use tailrace_tests::{free_port, metric_sum, wait_for_port, Moto};

/// Name of the function, as `cargo lambda invoke` addresses it.
const FUNCTION: &str = "bootstrap";
/// How long `cargo lambda watch` may take to listen.
const WATCH_START: Duration = Duration::from_secs(30);
/// How long one `cargo lambda invoke` may take (an invocation that retries
/// PutMetricData 6 times against a slow moto takes about 20 s).
const INVOKE_TIMEOUT: Duration = Duration::from_secs(100);

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

/// Fails with an install hint unless `cargo-lambda` runs.
fn require_cargo_lambda() -> anyhow::Result<()> {
    let ok = Command::new("cargo-lambda")
        .args(["lambda", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "cargo-lambda is not on PATH: this test needs it (`pip install cargo-lambda`, \
             which bundles zig)"
        );
    }
    Ok(())
}

/// A process started in its own process group; the whole group is killed
/// (SIGKILL) when dropped. `cargo-lambda` may run behind a shim, so killing
/// the one pid is not enough. Its stdin is a pipe kept open as long as the
/// value lives (an earlier attempt saw a background `watch` stop at once with
/// stdin closed; not reproduced with `--only-lambda-apis`, kept as a
/// precaution).
struct Group {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Group {
    fn spawn(cmd: &mut Command) -> anyhow::Result<Group> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdin = child.stdin.take();
        Ok(Group {
            child,
            _stdin: stdin,
        })
    }

    /// Wait for exit up to `timeout`; `None` on timeout (the process still runs).
    fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("tailrace-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A log file opened for appending, so stdout and stderr can share it.
fn log_file(path: &Path) -> anyhow::Result<File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?)
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One Kinesis event record as the event source mapping sends it.
fn event_record(seq: &str, data: &[u8]) -> serde_json::Value {
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
}

/// `cargo lambda watch` and the `bootstrap` under it, with moto_server for
/// every AWS service unless `env` says otherwise (e.g.
/// `AWS_ENDPOINT_URL_CLOUDWATCH`). Both are killed when dropped.
struct LambdaUnderWatch {
    scratch: Scratch,
    port: u16,
    _watch: Group,
    boot: Group,
    invocations: std::cell::Cell<u32>,
}

impl LambdaUnderWatch {
    fn start(tag: &str, moto: &Moto, env: &[(&str, String)]) -> anyhow::Result<LambdaUnderWatch> {
        require_cargo_lambda()?;
        let scratch = Scratch::new(tag)?;
        // The runtime API emulator.
        let port = free_port()?;
        let watch_log = scratch.path("watch.log");
        let mut watch = Group::spawn(
            Command::new("cargo-lambda")
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "--timeout",
                    "100",
                    "-A",
                    "127.0.0.1",
                    "-P",
                    &port.to_string(),
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(log_file(&watch_log)?)
                .stderr(log_file(&watch_log)?),
        )?;
        if let Err(e) = wait_for_port(port, WATCH_START) {
            let status = watch.child.try_wait()?;
            bail!(
                "cargo lambda watch did not listen ({e}); exit status {status:?}; output:\n{}",
                read_log(&watch_log)
            );
        }

        // The function, as the Lambda service would start it.
        let boot_log = scratch.path("bootstrap.log");
        let mut boot = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
        boot.env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt/{FUNCTION}"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tailrace")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("TAILRACE_METADATA", META_URL)
        .env("TAILRACE_NAMESPACE", NAMESPACE)
        .stdout(log_file(&boot_log)?)
        .stderr(log_file(&boot_log)?);
        for (k, v) in moto.child_env() {
            boot.env(k, v);
        }
        for (k, v) in env {
            boot.env(k, v);
        }
        let boot = Group::spawn(&mut boot)?;
        Ok(LambdaUnderWatch {
            scratch,
            port,
            _watch: watch,
            boot,
            invocations: std::cell::Cell::new(0),
        })
    }

    /// Everything the processes wrote, for failure messages.
    fn diagnostics(&self) -> String {
        format!(
            "\nbootstrap:\n{}\nwatch:\n{}",
            read_log(&self.scratch.path("bootstrap.log")),
            read_log(&self.scratch.path("watch.log"))
        )
    }

    /// Asserts an invocation's answer lists no failed record.
    fn assert_no_failures(&self, response: serde_json::Value) {
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": []}),
            "{}",
            self.diagnostics()
        );
    }

    /// The bootstrap's log.
    fn log(&self) -> String {
        read_log(&self.scratch.path("bootstrap.log"))
    }

    /// Invoke the function with these records (sequence number, data), as
    /// `cargo lambda invoke` does; its JSON answer.
    async fn invoke(&self, records: &[(String, Vec<u8>)]) -> anyhow::Result<serde_json::Value> {
        let n = self.invocations.get() + 1;
        self.invocations.set(n);
        let event = serde_json::json!({
            "Records": records.iter().map(|(seq, data)| event_record(seq, data)).collect::<Vec<_>>()
        });
        let event_file = self.scratch.path(&format!("event-{n}.json"));
        std::fs::write(&event_file, serde_json::to_vec(&event)?)?;
        let out = self.scratch.path(&format!("invoke-{n}.out"));
        let err = self.scratch.path(&format!("invoke-{n}.err"));
        let port = self.port;
        let (status, response) = {
            let (out, err) = (out.clone(), err.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut invoke = Group::spawn(
                    Command::new("cargo-lambda")
                        .args([
                            "lambda",
                            "invoke",
                            FUNCTION,
                            "-A",
                            "127.0.0.1",
                            "-P",
                            &port.to_string(),
                            "--data-file",
                        ])
                        .arg(&event_file)
                        .current_dir(env!("CARGO_MANIFEST_DIR"))
                        .stdout(File::create(&out)?)
                        .stderr(File::create(&err)?),
                )?;
                let status = invoke.wait_timeout(INVOKE_TIMEOUT)?;
                Ok((status, read_log(&out)))
            })
            .await??
        };
        let diagnostics = || format!("\ninvoke stderr:\n{}{}", read_log(&err), self.diagnostics());
        match status {
            None => bail!(
                "cargo lambda invoke did not return within {INVOKE_TIMEOUT:?}{}",
                diagnostics()
            ),
            Some(s) if !s.success() => bail!("cargo lambda invoke failed: {s}{}", diagnostics()),
            Some(_) => {}
        }
        serde_json::from_str(response.trim())
            .with_context(|| format!("invoke response {response:?}{}", diagnostics()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_answers_a_kinesis_event_under_cargo_lambda_watch() -> anyhow::Result<()> {
    let started = Instant::now();
    let moto = Moto::start()?;
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    metadata_file(
        &moto,
        "ip_or_cidr,application,contact\n10.1.0.0/16,shop,shop@example.com\n",
    )
    .await?;
    let mut lambda = LambdaUnderWatch::start("lambda-watch", &moto, &[])?;

    // One good partial and one poison record (a truncated partial).
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
    let good = partial("h1", 1, "web", w, &r).encode();
    let poison = good[..good.len() / 2].to_vec();
    let response = lambda
        .invoke(&[
            ("49590000000000000000000001".into(), good),
            ("49590000000000000000000002".into(), poison),
        ])
        .await?;
    lambda.assert_no_failures(response);
    let log = lambda.log();
    assert!(
        log.contains("poison record skipped") && log.contains("49590000000000000000000002"),
        "the poison record is logged with its sequence number{}",
        lambda.diagnostics()
    );
    let running = lambda.boot.child.try_wait()?.is_none();
    assert!(
        running,
        "bootstrap keeps running for the next invocation{}",
        lambda.diagnostics()
    );

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
    assert_eq!(health_sum(&cw, "PoisonRecords").await?, 1.0);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_failure_names_exactly_the_failed_records() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    metadata_file(&moto, &wide_meta()).await?;
    let proxy = CloudWatchProxy::start(&moto.endpoint(), fail_omega())?;
    let lambda = LambdaUnderWatch::start(
        "lambda-partial",
        &moto,
        // moto takes seconds for a 1,000-datum call on a loaded machine; a
        // timed-out attempt may still be stored and its retry would count twice.
        &[
            ("AWS_ENDPOINT_URL_CLOUDWATCH", proxy.endpoint()),
            ("TAILRACE_PUT_TIMEOUT", "60s".into()),
        ],
    )?;
    let w = window_ago(2);
    let seq = |n: u32| format!("4959100000000000000000000{n}");
    let mut expected = Expected::new();
    let records = vec![
        (seq(1), wide_partial("h0", w, &[(1, 1, 1)], &mut expected)),
        (seq(2), wide_partial("h1", w, &[(2, 1, 2)], &mut expected)),
        (
            seq(3),
            wide_partial("h2", w, &[(1, 2, 1), (2, 2, 1)], &mut expected),
        ),
        (seq(4), wide_partial("h3", w, &[(1, 3, 3)], &mut expected)),
    ];
    let requests = |family: &str| -> std::collections::BTreeMap<String, f64> {
        expected
            .iter()
            .filter(|((_, _, app), _)| app.starts_with(family))
            .map(|((_, _, app), e)| (app.clone(), e.requests))
            .collect()
    };
    let response = lambda.invoke(&records).await?;
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": seq(2)},
            {"itemIdentifier": seq(3)}
        ]}),
        "exactly the records behind the omega units{}",
        lambda.diagnostics()
    );
    let counts = proxy.counts();
    assert_eq!(
        counts.matched, 6,
        "the default policy: 6 attempts, then given up: {counts:?}"
    );
    let (alpha, omega) = WIDE_APPS.split_at(WIDE);
    assert_eq!(
        sums_by_app(&cw, "Requests", "web", alpha, w).await?,
        requests("alpha")
    );

    // What Lambda sends next: from the lowest failed sequence number on.
    proxy.set_faults(CwFaults::default());
    lambda.assert_no_failures(lambda.invoke(&records[1..]).await?);
    let log = lambda.log();
    assert!(
        log.contains("partly published partial"),
        "{}",
        lambda.diagnostics()
    );
    // Each request counted once: alpha 1 + 1 + 3, omega 2 + 1.
    assert!(requests("alpha").values().all(|&n| n == 5.0));
    assert!(requests("omega").values().all(|&n| n == 3.0));
    assert_eq!(
        sums_by_app(&cw, "Requests", "web", alpha, w).await?,
        requests("alpha")
    );
    assert_eq!(
        sums_by_app(&cw, "Requests", "web", omega, w).await?,
        requests("omega")
    );
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
