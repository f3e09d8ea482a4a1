//! Test kit for tailrace's component and end-to-end tests.
//!
//! Tests run against real servers, started by the tests themselves on
//! 127.0.0.1: `moto_server` for Kinesis, S3 and CloudWatch, and the binaries
//! this workspace builds (`tailrace`, `tailrace-aggregator`). This crate owns
//! starting and stopping those processes and reading results back, so each
//! test states only its scenario and its assertions.
//!
//! Binaries are found next to the test executable (`target/<profile>/`); the
//! README's test command builds them first (`cargo build --workspace --bins`).
//!
//! # What is here
//!
//! One copy of every helper the tests and the bench share:
//! - processes: [`Moto`], [`AgentDir`] (an agent's directory, config, start,
//!   stop, status and checkpoint), [`ChildGuard`], [`Piped`],
//!   [`run_checked`];
//! - reading results back: [`read_stream`], [`until_stream`],
//!   [`id_counts`], [`metric_sum`], [`get_object`];
//! - [`loggen`]: the one line generator (every CLF time stamp comes from
//!   `tailrace_logformat::LogTime::write_clf`);
//! - [`http`]: the one HTTP/1.1 reader (the fault proxies and the bench's
//!   Kinesis sink), and [`proxy`]: the one fault-proxy shell, generic over
//!   a [`proxy::FaultPolicy`] ([`fault_proxy`] for Kinesis,
//!   [`cloudwatch_proxy`] for CloudWatch);
//! - [`loadrun`]: the one steady-rate writer (with rotation) and `/proc`
//!   probe of the soak, the outage measurement and the host budget;
//! - [`fuzz`]: the one fuzz-corpus walker; [`rng`]: the one xorshift
//!   generator of the tests and criterion benchmarks;
//! - `ec2` (feature `ec2`): instances in moto's EC2.
//!
//! Without the default `servers` feature only the light half builds (HTTP
//! reader, line generator, generator, fuzz walker): the criterion benchmarks
//! of `logformat` and `wire` and the bench crate's release build use it so
//! and compile no AWS SDK.
//!
//! # Where a new test goes
//!
//! - A test of one crate's behaviour goes in that crate: a unit test next to
//!   the code when it needs no process or server; else a module of the
//!   crate's one integration-test binary, `<crate>/tests/it/` (agent,
//!   aggregator, inventory), one file per topic (`faults_moto.rs`,
//!   `reload_moto.rs`, …; `_moto` when it starts moto_server), declared in
//!   `it/main.rs`. Add to the topic's file when there is one; a new topic is
//!   a new file. One binary per crate, as ripgrep does: each of these links
//!   the AWS SDK, and linking it once instead of once per topic is most of
//!   what building the tests costs. nextest still runs every test in its own
//!   process; pick a topic with `-E 'test(/^model_moto::/)'`, or
//!   `cargo test -p tailrace-agent --test it model_moto::`.
//! - A test gets its own binary only when it changes the process for
//!   everything else in it: `agent/tests/nofile.rs` (the open-files limit),
//!   `logformat/tests/no_alloc.rs` (a counting global allocator). logformat
//!   and wire keep a binary per file: they link no SDK, so there is little
//!   to save.
//! - A test that crosses crates (agent → Kinesis → aggregator → CloudWatch)
//!   goes in `tests/tests/` here.
//! - A helper used by one test file stays in that file. Used by two files of
//!   one crate, it moves to that crate's `tests/it/common/` (the agent's
//!   holds httpd and logrotate). Used by two crates, or by a test and the bench, it moves here, with a doc
//!   comment, and no `unwrap()` on what it reads from outside: return an
//!   error with context (a failing test then says what it was doing).
//! - Before adding a helper, look here and in the crate's shared module:
//!   `duplicates --change` lists what a change wrote again.

pub mod agent;
#[cfg(feature = "servers")]
pub mod cloudwatch_proxy;
#[cfg(feature = "ec2")]
pub mod ec2;
#[cfg(feature = "servers")]
pub mod fault_proxy;
pub mod fuzz;
pub mod http;
#[cfg(feature = "servers")]
pub mod loadrun;
pub mod loggen;
#[cfg(feature = "servers")]
pub mod proxy;
pub mod rng;
#[cfg(feature = "servers")]
pub mod s3_proxy;

pub use agent::{run_agent, run_checked, spawn_logged, AgentDir, ChildGuard, Piped};

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
#[cfg(feature = "servers")]
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
#[cfg(feature = "servers")]
use aws_config::{BehaviorVersion, Region, SdkConfig};
#[cfg(feature = "servers")]
use aws_sdk_kinesis::types::ShardIteratorType;

/// Region every test uses; moto accepts any.
pub const REGION: &str = "us-east-1";

#[cfg(feature = "servers")]
/// A `moto_server` process listening on a free loopback port.
///
/// Lives as long as the value: dropping it kills the server, so a failing
/// test never leaves one behind.
pub struct Moto {
    child: Child,
    port: u16,
}

#[cfg(feature = "servers")]
impl Moto {
    /// Start `moto_server` on 127.0.0.1 and wait until it accepts connections.
    pub fn start() -> Result<Moto> {
        Moto::start_on(free_port()?)
    }

    /// Start `moto_server` on a given loopback port (to bring an endpoint
    /// back after an outage the agent was already pointed at).
    pub fn start_on(port: u16) -> Result<Moto> {
        // moto's own entry point, with DynamoDB's per-item atomicity added
        // (tests/python/moto_server_atomic.py says why).
        let launcher = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/moto_server_atomic.py");
        let child = Command::new("python3")
            .arg(&launcher)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting moto_server through {} (python3 -m pip install 'moto[server]>=5.2.5')",
                    launcher.display()
                )
            })?;
        let mut moto = Moto { child, port };
        wait_for_port(port, Duration::from_secs(30))
            .with_context(|| format!("moto_server did not listen on 127.0.0.1:{port}"))?;
        if let Some(status) = moto.child.try_wait()? {
            bail!("moto_server exited early: {status}");
        }
        Ok(moto)
    }

    /// The endpoint URL to give SDK clients and binaries.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An SDK config pointed at this server with dummy static credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.endpoint()).await
    }

    /// A Kinesis client for this server.
    pub async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.sdk_config().await)
    }

    /// Start a server with an ACTIVE stream `name` of `shards` shards: the
    /// server and a Kinesis client for it.
    pub async fn with_stream(name: &str, shards: i32) -> Result<(Moto, aws_sdk_kinesis::Client)> {
        let moto = Moto::start()?;
        let kinesis = moto.kinesis().await;
        create_stream(&kinesis, name, shards).await?;
        Ok((moto, kinesis))
    }

    /// Environment for child processes so the SDK's default chain finds dummy
    /// credentials and never asks the instance metadata service.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        child_env()
    }
}

#[cfg(feature = "servers")]
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment variables giving a child process dummy AWS credentials.
pub fn child_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

#[cfg(feature = "servers")]
/// An SDK config for an arbitrary endpoint (a fault-injecting proxy, say).
pub async fn sdk_config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "tailrace-tests",
        ))
        .load()
        .await
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Wait until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listened on {addr} within {timeout:?}")
}

/// Path of a binary built by this workspace (`tailrace`, `tailrace-aggregator`):
/// next to the test executable's profile, or in `TAILRACE_BIN_DIR` if set
/// (a measurement run by a debug harness of a release agent).
pub fn bin(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TAILRACE_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        if !path.is_file() {
            bail!("{} is missing (TAILRACE_BIN_DIR)", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target/<profile> ancestor")?;
    let path = profile_dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(feature = "servers")]
/// Create a Kinesis stream and wait until it is ACTIVE.
pub async fn create_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<()> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .with_context(|| format!("creating stream {name}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await?;
        let active = out
            .stream_description_summary()
            .map(|s| s.stream_status().as_str() == "ACTIVE")
            .unwrap_or(false);
        if active {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("stream {name} not ACTIVE after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One record read back from a stream.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Shard the record is on.
    pub shard_id: String,
    /// Sequence number Kinesis assigned.
    pub sequence_number: String,
    /// Partition key the producer chose.
    pub partition_key: String,
    /// The record's data.
    pub data: Vec<u8>,
}

#[cfg(feature = "servers")]
/// Read every record on every shard of `stream`, from the oldest.
pub async fn read_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<StreamRecord>> {
    let shards = client.list_shards().stream_name(stream).send().await?;
    let mut records = Vec::new();
    for shard in shards.shards() {
        let shard_id = shard.shard_id().to_string();
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator()
            .map(str::to_string);
        while let Some(it) = iterator.take() {
            let out = client
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await?;
            let got = out.records().len();
            for r in out.records() {
                records.push(StreamRecord {
                    shard_id: shard_id.clone(),
                    sequence_number: r.sequence_number().to_string(),
                    partition_key: r.partition_key().unwrap_or_default().to_string(),
                    data: r.data().as_ref().to_vec(),
                });
            }
            if got == 0 || out.millis_behind_latest() == Some(0) && got < 10_000 {
                break;
            }
            iterator = out.next_shard_iterator().map(str::to_string);
        }
    }
    Ok(records)
}

#[cfg(feature = "servers")]
/// Read `stream` ([`read_stream`]) every 100 ms until `check` makes
/// something of its records, or fail after `timeout` naming `what`.
pub async fn until_stream<T>(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut(Vec<StreamRecord>) -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check(read_stream(kinesis, stream).await?)? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} on stream {stream}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The raw-mode lines of `records` (without their newlines), in stream
/// order.
pub fn raw_lines(records: &[StreamRecord]) -> impl Iterator<Item = &[u8]> {
    records
        .iter()
        .flat_map(|r| tailrace_wire::raw::lines(&r.data))
}

/// Whether every id in `0..n` is among the raw lines of `records`, each
/// line's id read by `id_of` (lines without one are passed over).
pub fn has_every_id(
    records: &[StreamRecord],
    n: usize,
    id_of: impl Fn(&[u8]) -> Option<usize>,
) -> bool {
    let mut seen = vec![false; n];
    for i in raw_lines(records).filter_map(id_of) {
        if let Some(s) = seen.get_mut(i) {
            *s = true;
        }
    }
    seen.iter().all(|&b| b)
}

/// How often each id arrived among the raw lines of `records`, each
/// line's id read by `id_of`; a line without one is an error (nobody wrote
/// it).
pub fn id_counts(
    records: &[StreamRecord],
    id_of: impl Fn(&[u8]) -> Option<usize>,
) -> Result<std::collections::HashMap<usize, usize>> {
    let mut count = std::collections::HashMap::new();
    for l in raw_lines(records) {
        let id = id_of(l)
            .with_context(|| format!("a line nobody wrote: {}", String::from_utf8_lossy(l)))?;
        *count.entry(id).or_insert(0) += 1;
    }
    Ok(count)
}

/// A whole number from the environment variable `name`, else `default`
/// (the long tests' knobs).
pub fn env_or(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// A process's resident set size in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

/// CPU time (user + system) a process has used, in clock ticks (1/100 s).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let (user, system) = cpu_times(pid)?;
    Ok(user + system)
}

/// User and system CPU time a process has used, apart, in clock ticks.
pub fn cpu_times(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("/proc stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime, stime))
}

#[cfg(feature = "servers")]
/// Poll `check` every 100 ms until it returns `Some`, or fail after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(feature = "servers")]
/// An S3 client for `config` with path-style addressing (moto serves no
/// virtual-host buckets on 127.0.0.1).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[cfg(feature = "servers")]
/// Write `body` to `s3://bucket/key` (the bucket must exist).
pub async fn put_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &str,
) -> Result<()> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            body.as_bytes().to_vec(),
        ))
        .send()
        .await
        .with_context(|| format!("writing s3://{bucket}/{key}"))?;
    Ok(())
}

#[cfg(feature = "servers")]
/// The text and ETag of `s3://bucket/key`.
pub async fn get_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(String, String)> {
    let o = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("reading s3://{bucket}/{key}"))?;
    let etag = o.e_tag().unwrap_or_default().to_string();
    let body = o.body.collect().await.context("object body")?.into_bytes();
    Ok((
        String::from_utf8(body.to_vec()).context("object is not UTF-8")?,
        etag,
    ))
}

#[cfg(feature = "servers")]
/// Sum and SampleCount of `metric` with exactly these `dimensions` over one
/// window, read back with GetMetricStatistics (period = the window).
/// `(0.0, 0.0)` when there is no datapoint.
///
/// moto matches dimensions as a *subset* (real CloudWatch matches exactly):
/// asking for `[SourceApplication=x]` there also returns the datums published
/// under `[Service=…, SourceApplication=x]`.
pub async fn metric_sum(
    cw: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    metric: &str,
    dimensions: &[(&str, &str)],
    window_start: i64,
    window_secs: i32,
) -> Result<(f64, f64)> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let mut req = cw
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name(metric)
        .start_time(DateTime::from_secs(window_start))
        .end_time(DateTime::from_secs(window_start + i64::from(window_secs)))
        .period(window_secs)
        .statistics(Statistic::Sum)
        .statistics(Statistic::SampleCount);
    for (name, value) in dimensions {
        req = req.dimensions(Dimension::builder().name(*name).value(*value).build());
    }
    let out = req
        .send()
        .await
        .with_context(|| format!("GetMetricStatistics {namespace}/{metric} {dimensions:?}"))?;
    let mut sum = 0.0;
    let mut count = 0.0;
    for dp in out.datapoints() {
        sum += dp.sum().unwrap_or(0.0);
        count += dp.sample_count().unwrap_or(0.0);
    }
    Ok((sum, count))
}
