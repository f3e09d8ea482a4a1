//! Shared scenario pieces for the aggregator's moto tests (and its bench,
//! which includes this file): a request model, partials built from it, the
//! expected totals computed independently of the aggregator (a plain IP →
//! application table written in the test), and the handler set up against
//! moto_server with the metadata file in `s3://meta/apps.csv`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use tailrace_aggregator::clients::{build_handler, metadata_source, Clients};
use tailrace_aggregator::config::{S3Location, Settings};
use tailrace_aggregator::entry::handler::Handler;
use tailrace_aggregator::ingest::batch::InputRecord;
use tailrace_aggregator::ingest::decode::Decoder;
use tailrace_aggregator::join::metadata_source::MetadataSource;
use tailrace_aggregator::publish::calls::{Publisher, RetryPolicy};
use tailrace_tests::loggen::{clf_time, combined_line};
use tailrace_tests::{put_object, s3_client, sdk_config_for, Moto};
use tailrace_wire::{ClientKey, ClientStats, Partial};

/// Bucket of the metadata file.
pub const META_BUCKET: &str = "meta";
/// Key of the metadata file.
pub const META_KEY: &str = "apps.csv";
/// `s3://meta/apps.csv`.
pub const META_URL: &str = "s3://meta/apps.csv";

/// The expected application of each test address; anything else is `unknown`.
pub type Mapping = &'static [(&'static str, &'static str)];

/// The small metadata file most tests need: the corp network and the
/// shop inside it.
pub const SMALL_META: &str = "\
ip_or_cidr,application,contact
10.0.0.0/8,corp,corp@example.com
10.1.0.0/16,shop,shop@example.com
";

/// One address of each application of [`SMALL_META`].
pub const SMALL_MAP: Mapping = &[("10.9.0.1", "corp"), ("10.1.7.7", "shop")];

/// `mapping` as the function [`expect`] takes.
pub fn lookup(mapping: Mapping) -> impl Fn(&str) -> &'static str {
    move |ip| {
        mapping
            .iter()
            .find(|(i, _)| *i == ip)
            .map_or("unknown", |(_, app)| app)
    }
}

/// One Kinesis record with a sequence number made from `seq`.
pub fn record(seq: u64, data: Vec<u8>) -> InputRecord {
    InputRecord {
        sequence_number: format!("4960000000000000000000{seq:04}"),
        partition_key: format!("pk{seq}"),
        data,
    }
}

/// The sequence numbers of `batch[i]` for each `i` of `which`, in that
/// order (what a handler's `failed` must say).
pub fn sequence_numbers(batch: &[InputRecord], which: &[usize]) -> Vec<String> {
    which
        .iter()
        .map(|&i| batch[i].sequence_number.clone())
        .collect()
}

/// Put one record with partition key `key` on the stream `logs`.
pub async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    key: &str,
    data: Vec<u8>,
) -> anyhow::Result<()> {
    kinesis
        .put_record()
        .stream_name("logs")
        .partition_key(key)
        .data(aws_sdk_kinesis::primitives::Blob::new(data))
        .send()
        .await?;
    Ok(())
}

/// moto_server with the metadata file and the stream `logs`: where a test
/// of the stream path (`consume`, `replay`, two consumers) starts.
pub struct StreamOnMoto {
    /// The server; dropping it stops it.
    pub moto: Moto,
    /// The SDK configuration pointing at it.
    pub config: aws_config::SdkConfig,
    /// S3, to rewrite the metadata file.
    pub s3: aws_sdk_s3::Client,
    /// Kinesis, to put records on `logs`.
    pub kinesis: aws_sdk_kinesis::Client,
    /// CloudWatch, to read the metrics back.
    pub cw: aws_sdk_cloudwatch::Client,
}

/// Start moto_server, write the metadata file `csv` and create the stream
/// `logs` with `shards` shards.
pub async fn stream_on_moto(csv: &str, shards: i32) -> anyhow::Result<StreamOnMoto> {
    let moto = Moto::start()?;
    let config = moto.sdk_config().await;
    let s3 = metadata_file(&moto, csv).await?;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    tailrace_tests::create_stream(&kinesis, "logs", shards).await?;
    Ok(StreamOnMoto {
        moto,
        config,
        s3,
        kinesis,
        cw,
    })
}

/// Create the bucket and write the metadata file `csv`; the S3 client.
pub async fn metadata_file(moto: &Moto, csv: &str) -> anyhow::Result<aws_sdk_s3::Client> {
    let s3 = s3_client(&moto.sdk_config().await);
    s3.create_bucket().bucket(META_BUCKET).send().await?;
    put_object(&s3, META_BUCKET, META_KEY, csv).await?;
    Ok(s3)
}

/// `tailrace-aggregator <words> --metadata s3://meta/apps.csv
/// --endpoint-url <moto>` with dummy credentials and without the caller's
/// `RUST_LOG`; start it with [`tailrace_tests::Piped::spawn`].
pub fn aggregator_cli(moto: &Moto, words: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tailrace-aggregator"));
    cmd.args(words)
        .args(["--metadata", META_URL, "--endpoint-url", &moto.endpoint()])
        .env_remove("RUST_LOG")
        .envs(moto.child_env());
    cmd
}

/// Settings reading `s3://meta/apps.csv` afresh for every batch (TTL 0).
pub fn settings() -> Settings {
    Settings {
        metadata: Some(S3Location {
            bucket: META_BUCKET.into(),
            key: META_KEY.into(),
        }),
        namespace: NAMESPACE.into(),
        metadata_ttl: Duration::ZERO,
        ..Settings::default()
    }
}

/// The handler the binaries would build, every service on moto.
pub async fn moto_handler(moto: &Moto) -> anyhow::Result<(Handler, Clients)> {
    let clients = Clients::new(&moto.sdk_config().await);
    let settings = settings();
    let metadata = metadata_source(&settings, &clients);
    Ok((build_handler(&settings, &clients, &metadata)?, clients))
}

/// A quick retry policy for tests: `attempts` in all, 10–40 ms apart. The
/// attempt timeout is long: moto takes seconds for a 1,000-datum call on a
/// loaded machine, and an attempt that times out may still be stored.
pub fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        attempt_timeout: Duration::from_secs(60),
    }
}

/// A handler reading metadata through `s3_endpoint` with `ttl` and
/// publishing through `cloudwatch_endpoint` (a fault proxy), with the
/// production clients' settings (no SDK retries for CloudWatch).
pub async fn handler_via(
    s3_endpoint: &str,
    cloudwatch_endpoint: &str,
    ttl: Duration,
    retry: RetryPolicy,
) -> anyhow::Result<Handler> {
    let s3 = Clients::new(&sdk_config_for(s3_endpoint).await).s3;
    let cw = Clients::new(&sdk_config_for(cloudwatch_endpoint).await).cloudwatch;
    let settings = settings();
    let location = settings.metadata.clone().expect("settings name a file");
    Ok(Handler::new(
        Decoder::new(&settings.raw_format, &settings.raw_service, 300)?,
        MetadataSource::new(s3, location, ttl),
        Publisher::new(cw, NAMESPACE).with_retry(retry),
    ))
}

/// Namespace used by the tests.
pub const NAMESPACE: &str = "TailraceTest";

/// One request as a log line would describe it.
#[derive(Debug, Clone, Copy)]
pub struct Req {
    pub ip: &'static str,
    pub status: u16,
    pub bytes: u64,
    pub latency_us: Option<u64>,
}

/// `n` identical requests.
pub fn reqs(
    n: usize,
    ip: &'static str,
    status: u16,
    bytes: u64,
    latency_us: Option<u64>,
) -> Vec<Req> {
    vec![
        Req {
            ip,
            status,
            bytes,
            latency_us
        };
        n
    ]
}

/// A tailrace partial with these requests.
pub fn partial(
    host: &str,
    sequence: u64,
    service: &str,
    window_start: i64,
    requests: &[Req],
) -> Partial {
    let mut groups: BTreeMap<ClientKey, ClientStats> = BTreeMap::new();
    for r in requests {
        let ip: IpAddr = r.ip.parse().expect("test ip");
        groups.entry(ClientKey::from(ip)).or_default().record(
            Some(r.status),
            r.bytes,
            r.latency_us,
        );
    }
    partial_of(host, sequence, service, window_start, groups)
}

/// A tailrace partial of flow `access` with these client groups.
pub fn partial_of(
    host: &str,
    sequence: u64,
    service: &str,
    window_start: i64,
    groups: impl IntoIterator<Item = (ClientKey, ClientStats)>,
) -> Partial {
    Partial {
        host_id: host.into(),
        service: service.into(),
        flow: "access".into(),
        window_start,
        window_secs: 300,
        sequence,
        late: false,
        groups: groups.into_iter().collect(),
        ..Partial::default()
    }
}

/// Apache `combined` lines for these requests at `time` (Unix seconds).
pub fn combined_lines(requests: &[Req], time: i64) -> String {
    requests
        .iter()
        .map(|r| combined_line(r.ip, time, "/x", r.status, r.bytes, "test"))
        .collect()
}

/// Kinesis Agent `LOGTOJSON` (COMBINEDAPACHELOG) objects for these requests.
pub fn agent_json(requests: &[Req], time: i64) -> String {
    let mut out = String::new();
    for r in requests {
        let bytes = if r.bytes == 0 {
            "null".to_string()
        } else {
            format!("\"{}\"", r.bytes)
        };
        out.push_str(&format!(
            "{{\"host\":\"{}\",\"ident\":null,\"authuser\":null,\"datetime\":\"{}\",\"request\":\"GET /x HTTP/1.1\",\"response\":\"{}\",\"bytes\":{},\"referer\":null,\"agent\":\"test\"}}\n",
            r.ip,
            clf_time(time),
            r.status,
            bytes
        ));
    }
    out
}

/// Expected totals of one (window, service, application).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Expect {
    pub requests: f64,
    pub bytes: f64,
    pub client_errors: f64,
    pub server_errors: f64,
    pub latency_count: f64,
    pub latency_sum: f64,
}

/// Expected totals keyed by (window, service, application).
pub type Expected = BTreeMap<(i64, String, String), Expect>;

/// Add `requests` to `expected`, mapping each IP with `mapping`.
pub fn expect(
    expected: &mut Expected,
    window: i64,
    service: &str,
    requests: &[Req],
    mapping: &dyn Fn(&str) -> &'static str,
) {
    for r in requests {
        let e = expected
            .entry((window, service.to_string(), mapping(r.ip).to_string()))
            .or_default();
        e.requests += 1.0;
        e.bytes += r.bytes as f64;
        if (400..500).contains(&r.status) {
            e.client_errors += 1.0;
        }
        if r.status >= 500 {
            e.server_errors += 1.0;
        }
        if let Some(l) = r.latency_us {
            e.latency_count += 1.0;
            e.latency_sum += l as f64;
        }
    }
}

/// Check every expected key against CloudWatch, both dimension sets.
pub async fn assert_metrics(
    cw: &aws_sdk_cloudwatch::Client,
    expected: &Expected,
) -> anyhow::Result<()> {
    use tailrace_tests::metric_sum;
    // Per (window, application) over services.
    let mut per_app: BTreeMap<(i64, String), Expect> = BTreeMap::new();
    for ((window, service, app), e) in expected {
        let dims = [
            ("Service", service.as_str()),
            ("SourceApplication", app.as_str()),
        ];
        let got = |m: &'static str| metric_sum(cw, NAMESPACE, m, &dims, *window, 300);
        let what = format!("window {window} service {service} app {app}");
        assert_eq!(got("Requests").await?.0, e.requests, "Requests {what}");
        assert_eq!(got("Bytes").await?.0, e.bytes, "Bytes {what}");
        assert_eq!(
            got("ClientErrors").await?.0,
            e.client_errors,
            "ClientErrors {what}"
        );
        assert_eq!(
            got("ServerErrors").await?.0,
            e.server_errors,
            "ServerErrors {what}"
        );
        let (lat_sum, lat_count) = got("Latency").await?;
        assert_eq!(lat_count, e.latency_count, "Latency SampleCount {what}");
        assert!(
            (lat_sum - e.latency_sum).abs() <= e.latency_sum * 0.011,
            "Latency Sum {what}: {lat_sum} vs {}",
            e.latency_sum
        );
        let a = per_app.entry((*window, app.clone())).or_default();
        a.requests += e.requests;
        a.bytes += e.bytes;
    }
    for ((window, app), e) in &per_app {
        let dims = [("SourceApplication", app.as_str())];
        // moto matches dimensions as a subset, so the [SourceApplication]
        // query also sums the [Service, SourceApplication] datums: twice the
        // total when both dimension sets were published.
        let (requests, _) = metric_sum(cw, NAMESPACE, "Requests", &dims, *window, 300).await?;
        assert_eq!(
            requests,
            2.0 * e.requests,
            "Requests window {window} app {app} (both dimension sets)"
        );
        let (bytes, _) = metric_sum(cw, NAMESPACE, "Bytes", &dims, *window, 300).await?;
        assert_eq!(
            bytes,
            2.0 * e.bytes,
            "Bytes window {window} app {app} (both dimension sets)"
        );
    }
    Ok(())
}

/// A window start `windows_ago` five-minute windows before the current one.
pub fn window_ago(windows_ago: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    (now / 300 - windows_ago) * 300
}

/// `Sum` of `metric` per application over one window, with the dimensions
/// `[Service=service, SourceApplication=app]`, in one GetMetricData call
/// (at most 500 applications).
pub async fn sums_by_app(
    cw: &aws_sdk_cloudwatch::Client,
    metric: &str,
    service: &str,
    apps: &[String],
    window: i64,
) -> anyhow::Result<BTreeMap<String, f64>> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let mut req = cw
        .get_metric_data()
        .start_time(DateTime::from_secs(window))
        .end_time(DateTime::from_secs(window + 300));
    for (i, app) in apps.iter().enumerate() {
        let metric = Metric::builder()
            .namespace(NAMESPACE)
            .metric_name(metric)
            .dimensions(Dimension::builder().name("Service").value(service).build())
            .dimensions(
                Dimension::builder()
                    .name("SourceApplication")
                    .value(app)
                    .build(),
            )
            .build();
        req = req.metric_data_queries(
            MetricDataQuery::builder()
                .id(format!("q{i}"))
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric)
                        .period(300)
                        .stat("Sum")
                        .build(),
                )
                .build(),
        );
    }
    let out = req.send().await?;
    let mut sums = BTreeMap::new();
    for r in out.metric_data_results() {
        let i: usize = r.id().unwrap_or_default().trim_start_matches('q').parse()?;
        sums.insert(apps[i].clone(), r.values().iter().sum());
    }
    for app in apps {
        sums.entry(app.clone()).or_insert(0.0);
    }
    Ok(sums)
}

/// Applications in the wide scenario per family (`alpha`, `omega`).
pub const WIDE: usize = 125;

/// `alpha-000`…`alpha-124`, then `omega-000`…`omega-124`.
pub static WIDE_APPS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let mut v: Vec<String> = (0..WIDE).map(|i| format!("alpha-{i:03}")).collect();
    v.extend((0..WIDE).map(|i| format!("omega-{i:03}")));
    v
});

/// The wide scenario's metadata file: `10.1.N.0/24` is `alpha-NNN`,
/// `10.2.N.0/24` is `omega-NNN`. Each application is one unit of 8 datums
/// (4 metrics × 2 dimension sets, no latency), so the alpha units fill one
/// PutMetricData call (1,000 datums) and the omega units the next; a fault
/// proxy failing the second distinct call fails exactly the omega units.
pub fn wide_meta() -> String {
    let mut csv = String::from("ip_or_cidr,application,contact\n");
    for i in 0..WIDE {
        csv.push_str(&format!("10.1.{i}.0/24,alpha-{i:03},alpha@example.com\n"));
        csv.push_str(&format!("10.2.{i}.0/24,omega-{i:03},omega@example.com\n"));
    }
    csv
}

/// A CloudWatch fault proxy setting that fails every attempt of the
/// second PutMetricData call: in the wide scenario, the omega units.
pub fn fail_omega() -> tailrace_tests::cloudwatch_proxy::CwFaults {
    tailrace_tests::cloudwatch_proxy::CwFaults {
        fail_call: Some(1),
        ..Default::default()
    }
}

/// A `web` partial in window `w` with, for each `(net, host, n)`, `n`
/// requests (200, 10 bytes) from `10.<net>.N.<host>` for every N; the
/// requests are added to `expected` under the wide scenario's mapping.
pub fn wide_partial(
    host: &str,
    w: i64,
    clients: &[(u8, u8, u64)],
    expected: &mut Expected,
) -> Vec<u8> {
    let mut groups = Vec::new();
    for &(net, h, n) in clients {
        for i in 0..WIDE {
            let mut s = ClientStats::default();
            for _ in 0..n {
                s.record(Some(200), 10, None);
            }
            groups.push((ClientKey::V4([10, net, i as u8, h]), s));
            let app = match net {
                1 => WIDE_APPS[i].clone(),
                2 => WIDE_APPS[WIDE + i].clone(),
                _ => "unknown".into(),
            };
            let e = expected.entry((w, "web".into(), app)).or_default();
            e.requests += n as f64;
            e.bytes += 10.0 * n as f64;
        }
    }
    partial_of(host, 1, "web", w, groups).encode()
}

/// Sum of a dimensionless health metric over the ten minutes around now.
pub async fn health_sum(cw: &aws_sdk_cloudwatch::Client, metric: &str) -> anyhow::Result<f64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let start = now / 60 * 60 - 300;
    Ok(
        tailrace_tests::metric_sum(cw, NAMESPACE, metric, &[], start, 600)
            .await?
            .0,
    )
}

/// The log events of the code running on this thread, as text, for tests
/// that assert what an operator would read. Install with
/// [`LogCapture::install`]; works with a current-thread runtime.
///
/// One global subscriber routes each event to the buffer of the thread that
/// emitted it. (A per-test `set_default` subscriber lost events when tests
/// ran in parallel: tracing caches each call site's interest globally, and
/// a site first hit on a thread without a subscriber could stay disabled.)
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<LogCapture>> = const { std::cell::RefCell::new(None) };
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes an event to this thread's capture, if any.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| match c.borrow_mut().as_mut() {
            Some(capture) => capture.write(buf),
            None => Ok(buf.len()),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops this thread's capture when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl LogCapture {
    /// Capture this thread's events (level info and up) until the guard drops.
    pub fn install() -> (LogCapture, CaptureGuard) {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(|| ThreadWriter)
                .finish();
            // Another global subscriber would be a bug in this test binary.
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the aggregator's tests");
        });
        let capture = LogCapture::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(capture.clone()));
        (capture, CaptureGuard)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// A new SQS queue `name` subscribed to the SNS topic `topic_arn`: its URL,
/// to read what the topic delivers (an SNS envelope per message).
pub async fn queue_subscribed_to(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic_arn: &str,
    name: &str,
) -> anyhow::Result<String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    sns.subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(&arn)
        .send()
        .await?;
    Ok(url)
}
