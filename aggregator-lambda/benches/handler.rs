//! Aggregator benchmarks.
//!
//! * `handler/*`: one Lambda batch of 200 realistic tailrace partials through
//!   the handler's own code, without network: decode, metadata join and merge
//!   ([`merge_batch`], exactly what `Handler::handle` runs), then the
//!   per-window "who do I call" summaries, the CloudWatch datums ([`plan`]) and
//!   their grouping into PutMetricData calls ([`batches`]). The PutMetricData
//!   calls themselves are not measured. `decode_200` (decoding alone) and
//!   `partial_ids_200` (the replay ids alone) break the figure down.
//!   `tallies_200` is the client tallies of the merged batch (top 100
//!   clients per partial and application, `tally`), encoded as the JSON
//!   the handler writes to S3 beside the claims' finishes.
//! * `cold_start/*`: the release `bootstrap` from process start to its first
//!   `GET /2018-06-01/runtime/invocation/next` on a fake runtime API
//!   (a loopback listener in this process).
//!
//! The batch: 25 hosts × 2 services × 4 five-minute windows = 200 partials,
//! requests drawn from 5,000 clients (92% IPv4, 8% IPv6) with Zipf (s = 1)
//! popularity, log-normal latencies (median 20 ms), a metadata file of 300
//! entries (/16, /24, /32 and IPv6 /48 blocks) covering about 70% of the
//! clients. Partials are sized so the batch fits Lambda's 6 MB invocation
//! payload once base64-encoded (about 4 MB of partials).
//!
//! Run: `cargo bench -p tailrace-aggregator --bench handler`
//! (`TAILRACE_BOOTSTRAP=path` measures the cold start of another build).
// criterion_group! defines an undocumented `pub fn` (workspace lint missing_docs).
#![allow(missing_docs)]

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

#[path = "../tests/it/common/mod.rs"]
mod common;

use common::{partial_of, window_ago};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tailrace_aggregator::entry::handler::SEEN_CAPACITY;
use tailrace_aggregator::ingest::batch::{decode_batch, local_admissions, BatchStats, InputRecord};
use tailrace_aggregator::ingest::decode::Decoder;
use tailrace_aggregator::join::batch::{
    merge_admitted, merge_batch, TOP_APPLICATIONS, TOP_UNKNOWN_CLIENTS,
};
use tailrace_aggregator::join::merge::{PartialId, SeenPartials};
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_aggregator::publish::packing::{batches, MAX_BYTES_PER_CALL, MAX_DATUMS_PER_CALL};
use tailrace_aggregator::publish::plan::plan;
use tailrace_aggregator::publish::tally::TallyBuilder;
use tailrace_wire::{ClientKey, ClientStats, Partial};

const HOSTS: usize = 25;
const SERVICES: [&str; 2] = ["web", "api"];
const WINDOWS: i64 = 4;
const CLIENTS: usize = 5_000;
/// Requests per partial: ~250 distinct clients per partial, ~20 KB encoded.
const REQUESTS_PER_PARTIAL: usize = 700;

/// The kit's xorshift64*: deterministic, no dependency.
use tailrace_tests::rng::XorShift as Rng;

/// The metadata file (300 entries) and the client population.
fn population(rng: &mut Rng) -> (String, Vec<IpAddr>) {
    let mut csv = String::from("ip_or_cidr,application,contact\n");
    // 40 /16, 200 /24, 40 /32 (inside the /24s: most specific wins), 20 IPv6 /48.
    for i in 0..40 {
        csv.push_str(&format!(
            "10.{i}.0.0/16,app-{i:03},team-{i:03}@example.com\n"
        ));
    }
    for i in 0..200 {
        csv.push_str(&format!(
            "172.{}.{}.0/24,app-{:03},\"Team {}, +1 555 {:04}\"\n",
            16 + i / 100,
            i % 100,
            40 + i,
            i,
            i
        ));
    }
    for i in 0..40 {
        csv.push_str(&format!("172.16.{i}.7,canary-{i:02},canary@example.com\n"));
    }
    for i in 0..20 {
        csv.push_str(&format!(
            "2001:db8:{i:x}::/48,partner-{i:02},partners@example.com\n"
        ));
    }
    let clients = (0..CLIENTS)
        .map(|_| {
            let r = rng.unit();
            if r < 0.08 {
                // IPv6: half inside the partner blocks.
                let block = if rng.unit() < 0.5 {
                    rng.below(20)
                } else {
                    0x100 + rng.below(50)
                };
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    block as u16,
                    0,
                    0,
                    0,
                    rng.below(65_536) as u16,
                    rng.below(65_536) as u16,
                ))
            } else if r < 0.38 {
                // Public, unknown.
                IpAddr::V4(Ipv4Addr::new(
                    198,
                    51,
                    rng.below(256) as u8,
                    1 + rng.below(254) as u8,
                ))
            } else if r < 0.70 {
                IpAddr::V4(Ipv4Addr::new(
                    10,
                    rng.below(40) as u8,
                    rng.below(256) as u8,
                    1 + rng.below(254) as u8,
                ))
            } else {
                let i = rng.below(200);
                IpAddr::V4(Ipv4Addr::new(
                    172,
                    16 + (i / 100) as u8,
                    (i % 100) as u8,
                    1 + rng.below(20) as u8,
                ))
            }
        })
        .collect();
    (csv, clients)
}

/// Cumulative Zipf (s = 1) weights over `n` ranks.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for k in 1..=n {
        sum += 1.0 / k as f64;
        cdf.push(sum);
    }
    cdf.iter().map(|c| c / sum).collect()
}

/// Log-normal latency in µs, median 20 ms, clamped to 100 µs..5 s.
fn latency(rng: &mut Rng) -> u64 {
    let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    ((20_000.0f64).ln() + 1.0 * z)
        .exp()
        .clamp(100.0, 5_000_000.0) as u64
}

struct Batch {
    records: Vec<InputRecord>,
    metadata: Metadata,
}

fn batch() -> Batch {
    let mut rng = Rng(0x7a11_7ace);
    let (csv, clients) = population(&mut rng);
    let parsed = Metadata::parse(&csv);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let cdf = zipf_cdf(CLIENTS);
    let mut records = Vec::new();
    let mut sequence = 0u64;
    for w in 0..WINDOWS {
        let window_start = window_ago(WINDOWS - w);
        for host in 0..HOSTS {
            for service in SERVICES {
                let mut groups: std::collections::HashMap<ClientKey, ClientStats> =
                    std::collections::HashMap::new();
                for _ in 0..REQUESTS_PER_PARTIAL {
                    let u = rng.unit();
                    let rank = cdf.partition_point(|&c| c < u).min(CLIENTS - 1);
                    let status = match rng.below(100) {
                        0..=1 => 503,
                        2..=4 => 404,
                        _ => 200,
                    };
                    let bytes = 200 + rng.below(50_000);
                    groups
                        .entry(ClientKey::from(clients[rank]))
                        .or_default()
                        .record(Some(status), bytes, Some(latency(&mut rng)));
                }
                sequence += 1;
                let host = format!("host-{host:02}.example.com");
                let partial = partial_of(&host, sequence, service, window_start, groups);
                records.push(InputRecord {
                    sequence_number: format!("4959000000000000000000{sequence:06}"),
                    partition_key: partial.host_id.clone(),
                    data: partial.encode(),
                });
            }
        }
    }
    Batch {
        records,
        metadata: parsed.metadata,
    }
}

/// Everything the handler does for a batch short of the PutMetricData calls;
/// returns (datums, calls) so nothing is optimised away.
fn batch_to_datums(decoder: &Decoder, b: &Batch) -> (usize, usize) {
    let seen = SeenPartials::new(SEEN_CAPACITY);
    let mut stats = BatchStats::default();
    let merged = merge_batch(decoder, &seen, &b.records, &b.metadata, &mut stats);
    let mut summary = 0usize;
    for (_, report) in merged.merger.windows() {
        summary += report.top_applications(TOP_APPLICATIONS).len();
        summary += report.top_unknown_clients(TOP_UNKNOWN_CLIENTS).len();
    }
    let entries = merged.merger.entries();
    let plan = plan(&entries, SystemTime::now());
    let calls = batches(&plan.datums, MAX_DATUMS_PER_CALL, MAX_BYTES_PER_CALL).len();
    black_box(summary);
    (plan.datums.len(), calls)
}

fn handler_benches(c: &mut Criterion) {
    let b = batch();
    let decoder = match Decoder::new("combined", "raw", 300) {
        Ok(d) => d,
        Err(e) => panic!("decoder: {e}"),
    };
    {
        let bytes: usize = b.records.iter().map(|r| r.data.len()).sum();
        let seen = SeenPartials::new(SEEN_CAPACITY);
        let mut stats = BatchStats::default();
        let merged = merge_batch(&decoder, &seen, &b.records, &b.metadata, &mut stats);
        let groups: usize = b
            .records
            .iter()
            .filter_map(|r| Partial::decode(&r.data).ok())
            .map(|p| p.groups.len())
            .sum();
        let requests: u64 = merged
            .merger
            .windows()
            .iter()
            .map(|(_, r)| r.requests())
            .sum();
        let (datums, calls) = batch_to_datums(&decoder, &b);
        eprintln!(
            "batch: {} records, {} bytes of partials ({} base64), {} client groups, \
             {} requests, {} metadata entries, {} merge keys, {} datums in {} PutMetricData calls; stats {:?}",
            b.records.len(),
            bytes,
            bytes.div_ceil(3) * 4,
            groups,
            requests,
            b.metadata.len(),
            merged.merger.entries().len(),
            datums,
            calls,
            stats
        );
        assert_eq!(stats.partials, b.records.len());
    }

    let mut g = c.benchmark_group("handler");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(b.records.len() as u64));
    g.bench_function("decode_200", |bench| {
        bench.iter(|| {
            let mut n = 0;
            for r in &b.records {
                if let Ok(d) = decoder.decode(&r.data, &r.sequence_number) {
                    n += d.partials.len();
                }
            }
            black_box(n)
        })
    });
    let partials: Vec<(Partial, &[u8])> = b
        .records
        .iter()
        .filter_map(|r| {
            Partial::decode(&r.data)
                .ok()
                .map(|p| (p, r.data.as_slice()))
        })
        .collect();
    g.bench_function("partial_ids_200", |bench| {
        bench.iter(|| {
            for (p, data) in &partials {
                black_box(PartialId::of(p, data));
            }
        })
    });
    g.bench_function("merge_batch_200", |bench| {
        bench.iter_batched(
            || SeenPartials::new(SEEN_CAPACITY),
            |seen| {
                let mut stats = BatchStats::default();
                let merged = merge_batch(&decoder, &seen, &b.records, &b.metadata, &mut stats);
                black_box(merged.merger.is_empty())
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("batch_to_datums_200", |bench| {
        bench.iter(|| black_box(batch_to_datums(&decoder, &b)))
    });
    let mut stats = BatchStats::default();
    let decoded = decode_batch(&decoder, &b.records, &mut stats);
    let admissions = local_admissions(&SeenPartials::new(SEEN_CAPACITY), &decoded);
    let merged = merge_admitted(&decoded, &admissions, &b.metadata, &mut stats);
    let tallies = |out: &mut usize| {
        let mut builder = TallyBuilder::new();
        for (index, contributed) in merged.contributions.iter().enumerate() {
            for c in contributed {
                if let Some((_, p, id)) = decoded[index].iter().find(|(_, _, id)| *id == c.id) {
                    builder.add(p, id, &c.contributed, |_| true);
                }
            }
        }
        let objects = builder.finish();
        for t in &objects {
            *out += serde_json::to_vec(t).map_or(0, |v| v.len());
        }
        objects.len()
    };
    let mut json = 0;
    let objects = tallies(&mut json);
    eprintln!("tallies: {objects} objects, {json} bytes of JSON for the batch");
    g.bench_function("tallies_200", |bench| {
        bench.iter(|| {
            let mut n = 0;
            black_box(tallies(&mut n));
            black_box(n)
        })
    });
    g.finish();
}

/// Environment the Lambda service gives a function, plus dummy credentials.
fn lambda_env(cmd: &mut Command, runtime_api: &str) {
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "tailrace-aggregator")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/tailrace-aggregator",
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("TAILRACE_METADATA", "s3://tailrace-meta/apps.csv")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// Start `bootstrap`, wait for its first `next` request; the time from just
/// before `spawn` to the end of the request line.
fn one_cold_start(exe: &str, listener: &TcpListener, runtime_api: &str) -> Duration {
    let mut cmd = Command::new(exe);
    lambda_env(&mut cmd, runtime_api);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("starting {exe}: {e}"),
    };
    let elapsed = loop {
        let (stream, _) = match listener.accept() {
            Ok(s) => s,
            Err(e) => panic!("accept: {e}"),
        };
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        if line.starts_with("GET /2018-06-01/runtime/invocation/next ") {
            break started.elapsed();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

/// One checked start with a deadline, so a broken binary fails the bench
/// instead of hanging it.
fn check_cold_start(exe: &str, listener: &TcpListener, runtime_api: &str) {
    let mut cmd = Command::new(exe);
    lambda_env(&mut cmd, runtime_api);
    cmd.stderr(Stdio::inherit());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("starting {exe}: {e}"),
    };
    let _ = listener.set_nonblocking(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                break Some(line);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let _ = listener.set_nonblocking(false);
    let _ = child.kill();
    let _ = child.wait();
    match got {
        Some(line) if line.starts_with("GET /2018-06-01/runtime/invocation/next ") => {}
        other => panic!("{exe} did not ask for the next invocation within 10 s: {other:?}"),
    }
}

fn cold_start_benches(c: &mut Criterion) {
    // `TAILRACE_BOOTSTRAP` names another build (e.g. the `cargo build
    // --release` one, without the dev-dependencies' features).
    let exe_env = std::env::var("TAILRACE_BOOTSTRAP").ok();
    let exe = exe_env
        .as_deref()
        .unwrap_or(env!("CARGO_BIN_EXE_bootstrap"));
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("binding the fake runtime API: {e}"),
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => panic!("{e}"),
    };
    // The form the Lambda service uses: host:port, no scheme.
    let runtime_api = format!("127.0.0.1:{port}");
    check_cold_start(exe, &listener, &runtime_api);
    let mut g = c.benchmark_group("cold_start");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("bootstrap_to_first_next", |bench| {
        bench.iter_custom(|iters| {
            (0..iters)
                .map(|_| one_cold_start(exe, &listener, &runtime_api))
                .sum()
        })
    });
    g.finish();
}

criterion_group!(benches, handler_benches, cold_start_benches);
criterion_main!(benches);
