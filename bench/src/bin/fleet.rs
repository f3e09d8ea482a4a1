//! `tailrace-fleet`: N simulated hosts' records through the aggregator's own
//! handler, batch after batch, as one Kinesis shard would deliver them to one
//! warm Lambda environment; prints what it cost and what that means for
//! hosts per shard and per environment.
//!
//! Records come from [`tailrace_bench::fleet`] (the wire crate's encoders),
//! host after host; a batch closes at `--batch` records or when the next
//! record would take the invocation past Lambda's 6 MB payload (base64 data
//! plus an estimated envelope), as the event source mapping does.
//! With `--publish moto` every batch goes through `Handler::handle` (decode,
//! metadata join, merge, PutMetricData to a `moto_server` it starts); with
//! `--publish none` through `handler::merge_batch` plus the datum plan and
//! its grouping into calls, without the calls. Aggregator CPU is the
//! process's user + system time around those calls only (`getrusage`; the
//! runtime is single-threaded and moto is another process), so generating
//! the records is not counted. Peak RSS is the process's high-water mark,
//! reset just before the first batch.
//!
//! `bench/fleet.sh` runs it the way BENCHMARKS.md reports it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use tailrace_aggregator::entry::handler::{Handler, SEEN_CAPACITY};
use tailrace_aggregator::ingest::batch::{BatchStats, InputRecord};
use tailrace_aggregator::ingest::decode::Decoder;
use tailrace_aggregator::join::batch::{merge_batch, TOP_APPLICATIONS, TOP_UNKNOWN_CLIENTS};
use tailrace_aggregator::join::merge::SeenPartials;
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_aggregator::join::metadata_source::MetadataSource;
use tailrace_aggregator::publish::calls::{Publisher, RetryPolicy};
use tailrace_aggregator::publish::packing::{batches, MAX_BYTES_PER_CALL, MAX_DATUMS_PER_CALL};
use tailrace_aggregator::publish::plan::{add_health, plan};
use tailrace_bench::fleet::{Fleet, FleetConfig, RecordKind};

/// Kinesis: bytes per second per shard (data + partition key).
const SHARD_BYTES_PER_SEC: f64 = 1_048_576.0;
/// Kinesis: records per second per shard.
const SHARD_RECORDS_PER_SEC: f64 = 1_000.0;
/// Lambda: invocation payload limit (the records arrive base64-encoded).
const LAMBDA_PAYLOAD: usize = 6_000_000;
/// Per record in the invocation's JSON besides its base64 data: event id,
/// ARNs, sequence number, partition key, field names (an estimate).
const RECORD_ENVELOPE: usize = 500;

/// A record's share of the invocation payload.
fn payload_bytes(data: usize, key: usize) -> usize {
    data.div_ceil(3) * 4 + key + RECORD_ENVELOPE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Publish {
    /// No PutMetricData calls: plan and group the datums only.
    None,
    /// Start moto_server and publish every batch there (`Handler::handle`).
    Moto,
}

/// Simulate a fleet's records through the aggregator's handler.
#[derive(Debug, Parser)]
#[command(name = "tailrace-fleet")]
struct Args {
    /// Hosts on the shard.
    #[arg(long, default_value_t = 2000)]
    hosts: usize,
    /// Windows to simulate (the first is reported as warm-up as well).
    #[arg(long, default_value_t = 2)]
    windows: usize,
    /// Window length, seconds.
    #[arg(long, default_value_t = 300)]
    window_secs: u32,
    /// Services the hosts are spread over.
    #[arg(long, default_value_t = 10)]
    services: usize,
    /// Source applications in the metadata file.
    #[arg(long, default_value_t = 100)]
    applications: usize,
    /// Distinct clients in the fleet.
    #[arg(long, default_value_t = 20_000)]
    clients: usize,
    /// Per-host lines/s, log-uniform between --rate-min and --rate-max.
    #[arg(long, default_value_t = 5)]
    rate_min: u64,
    /// See --rate-min.
    #[arg(long, default_value_t = 100)]
    rate_max: u64,
    /// Share of aggregate-mode hosts that send a late partial every window.
    #[arg(long, default_value_t = 0.05)]
    late_share: f64,
    /// Share of hosts in raw mode.
    #[arg(long, default_value_t = 0.01)]
    raw_share: f64,
    /// Share of hosts running the Kinesis Agent (LOGTOJSON).
    #[arg(long, default_value_t = 0.01)]
    agent_share: f64,
    /// Raw mode's linger, seconds (one record per linger).
    #[arg(long, default_value_t = 1)]
    linger_secs: u32,
    /// Kinesis Agent JSON objects per record.
    #[arg(long, default_value_t = 1)]
    agent_lines_per_record: usize,
    /// Records per Lambda batch (the event source mapping's BatchSize).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Where the metrics go.
    #[arg(long, value_enum, default_value_t = Publish::None)]
    publish: Publish,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What one window cost.
#[derive(Debug, Default, Clone, Serialize)]
struct WindowRow {
    window_start: i64,
    records: usize,
    partial_records: usize,
    late_partial_records: usize,
    raw_records: usize,
    agent_records: usize,
    requests: u64,
    /// Data + partition key.
    bytes: usize,
    /// Of which in tailrace partials (on time and late).
    partial_bytes: usize,
    /// Of which raw-line records.
    raw_bytes: usize,
    /// Of which Kinesis Agent records.
    agent_bytes: usize,
    /// Client groups in the on-time partials.
    partial_groups: usize,
    batches: usize,
    /// Batches closed by the 6 MB payload before reaching --batch records.
    payload_capped_batches: usize,
    max_batch_bytes: usize,
    cpu_ms: f64,
    max_batch_cpu_ms: f64,
    wall_ms: f64,
    datums: usize,
    calls: usize,
    /// What the aggregator counted, for the check.
    counted_tailrace_partials: usize,
    counted_lines: u64,
    counted_requests: Option<u64>,
    poison: usize,
    failed: usize,
}

/// Process CPU (user + system), milliseconds.
#[allow(unsafe_code)] // getrusage: libc has no safe wrapper; see SAFETY below.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `VmHWM` and `VmRSS` of this process, KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Everything `Handler::handle` does short of the PutMetricData calls.
fn plan_only(
    decoder: &Decoder,
    seen: &SeenPartials,
    metadata: &Metadata,
    records: &[InputRecord],
) -> (BatchStats, u64) {
    let mut stats = BatchStats {
        records: records.len(),
        ..BatchStats::default()
    };
    let merged = merge_batch(decoder, seen, records, metadata, &mut stats);
    let windows = merged.merger.windows();
    stats.windows = windows.len();
    let mut requests = 0;
    for (_, report) in &windows {
        requests += report.requests();
        std::hint::black_box(report.top_applications(TOP_APPLICATIONS));
        std::hint::black_box(report.top_unknown_clients(TOP_UNKNOWN_CLIENTS));
    }
    let entries = merged.merger.entries();
    let now = SystemTime::now();
    let mut plan = plan(&entries, now);
    add_health(&mut plan, stats.poison, stats.rejected_lines, false, now);
    stats.datums = plan.datums.len();
    stats.calls = batches(&plan.datums, MAX_DATUMS_PER_CALL, MAX_BYTES_PER_CALL).len();
    (stats, requests)
}

struct Aggregator {
    decoder: Decoder,
    metadata: Metadata,
    seen: SeenPartials,
    handler: Option<Handler>,
    runtime: tokio::runtime::Runtime,
    _moto: Option<tailrace_tests::Moto>,
}

impl Aggregator {
    fn new(fleet: &Fleet, publish: Publish) -> Result<Aggregator> {
        let parsed = Metadata::parse(fleet.metadata_csv());
        if let Some(e) = parsed.errors.first() {
            bail!("the simulated metadata file has errors: {e}");
        }
        let window = fleet.config().window_secs;
        let decoder = Decoder::new("combined", "raw", window).context("raw-line decoder")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let (handler, moto) = match publish {
            Publish::None => (None, None),
            Publish::Moto => {
                let moto = tailrace_tests::Moto::start()?;
                let config = runtime.block_on(moto.sdk_config());
                let publisher =
                    Publisher::new(aws_sdk_cloudwatch::Client::new(&config), "TailraceFleet")
                        .with_retry(RetryPolicy {
                            // moto takes seconds for a 1,000-datum call.
                            attempt_timeout: std::time::Duration::from_secs(120),
                            ..RetryPolicy::default()
                        });
                let handler = Handler::new(
                    decoder.clone(),
                    MetadataSource::fixed(parsed.metadata.clone()),
                    publisher,
                );
                (Some(handler), Some(moto))
            }
        };
        Ok(Aggregator {
            decoder,
            metadata: parsed.metadata,
            seen: SeenPartials::new(SEEN_CAPACITY),
            handler,
            runtime,
            _moto: moto,
        })
    }

    /// Handle one batch; adds its cost and counts to `row`.
    fn batch(&self, records: &[InputRecord], row: &mut WindowRow) {
        let wall = Instant::now();
        let cpu = cpu_ms();
        let (stats, requests) = match &self.handler {
            Some(h) => (self.runtime.block_on(h.handle(records)).stats, None),
            None => {
                let (s, r) = plan_only(&self.decoder, &self.seen, &self.metadata, records);
                (s, Some(r))
            }
        };
        let spent = cpu_ms() - cpu;
        row.cpu_ms += spent;
        row.max_batch_cpu_ms = row.max_batch_cpu_ms.max(spent);
        row.wall_ms += wall.elapsed().as_secs_f64() * 1e3;
        row.batches += 1;
        row.max_batch_bytes = row.max_batch_bytes.max(
            records
                .iter()
                .map(|r| payload_bytes(r.data.len(), r.partition_key.len()))
                .sum(),
        );
        row.datums += stats.datums;
        row.calls += stats.calls;
        row.counted_tailrace_partials += stats.tailrace_partials;
        row.counted_lines += stats.lines;
        row.poison += stats.poison;
        row.failed += stats.failed;
        if let Some(r) = requests {
            *row.counted_requests.get_or_insert(0) += r;
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch == 0 || args.windows == 0 {
        bail!("--batch and --windows must be at least 1");
    }
    let fleet = Fleet::new(FleetConfig {
        hosts: args.hosts,
        services: args.services,
        applications: args.applications,
        clients: args.clients,
        window_secs: args.window_secs,
        rate_min: args.rate_min,
        rate_max: args.rate_max,
        late_share: args.late_share,
        raw_share: args.raw_share,
        agent_share: args.agent_share,
        linger_secs: args.linger_secs,
        agent_lines_per_record: args.agent_lines_per_record,
        seed: args.seed,
    });
    let agg = Aggregator::new(&fleet, args.publish)?;

    let secs = i64::from(args.window_secs.max(1));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs() as i64;
    // The last complete window ends before now; CloudWatch takes them all.
    let last = now.div_euclid(secs) * secs - secs;
    let first = last - (args.windows as i64 - 1) * secs;

    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (_, rss_start) = memory_kib();
    let mut rows = Vec::new();
    let mut sequence = 0u64;
    for w in 0..args.windows {
        let start = first + w as i64 * secs;
        let mut row = WindowRow {
            window_start: start,
            ..WindowRow::default()
        };
        let mut pending: Vec<InputRecord> = Vec::with_capacity(args.batch);
        let mut payload = 0usize;
        for h in 0..fleet.hosts().len() {
            for r in fleet.host_records(h, start) {
                let size = r.data.len() + r.partition_key.len();
                row.records += 1;
                row.requests += r.requests;
                row.bytes += size;
                match r.kind {
                    RecordKind::Partial => {
                        row.partial_records += 1;
                        row.partial_bytes += size;
                        row.partial_groups += r.groups;
                    }
                    RecordKind::LatePartial => {
                        row.late_partial_records += 1;
                        row.partial_bytes += size;
                    }
                    RecordKind::Raw => {
                        row.raw_records += 1;
                        row.raw_bytes += size;
                    }
                    RecordKind::AgentJson => {
                        row.agent_records += 1;
                        row.agent_bytes += size;
                    }
                }
                // The event source mapping stops a batch at BatchSize records
                // or at the 6 MB invocation payload, whichever comes first.
                let share = payload_bytes(r.data.len(), r.partition_key.len());
                if !pending.is_empty() && payload + share > LAMBDA_PAYLOAD {
                    row.payload_capped_batches += 1;
                    agg.batch(&pending, &mut row);
                    pending.clear();
                    payload = 0;
                }
                payload += share;
                sequence += 1;
                pending.push(InputRecord {
                    sequence_number: format!(
                        "49600000000000000000000000000000000000{sequence:018}"
                    ),
                    partition_key: r.partition_key,
                    data: r.data,
                });
                if pending.len() == args.batch {
                    agg.batch(&pending, &mut row);
                    pending.clear();
                    payload = 0;
                }
            }
        }
        if !pending.is_empty() {
            agg.batch(&pending, &mut row);
        }
        rows.push(row);
    }
    let (peak, rss_end) = memory_kib();
    report(&args, &fleet, &rows, rss_start, peak, rss_end);
    Ok(())
}

#[derive(Serialize)]
struct Summary<'a> {
    hosts: usize,
    window_secs: u32,
    publish: &'static str,
    windows: &'a [WindowRow],
    rss_start_kib: u64,
    peak_rss_kib: u64,
    rss_end_kib: u64,
    hosts_per_shard_bytes: f64,
    hosts_per_shard_records: f64,
    hosts_per_environment_10pct_cpu: f64,
    lambda_cpu_share: f64,
}

fn report(args: &Args, fleet: &Fleet, rows: &[WindowRow], rss0: u64, peak: u64, rss1: u64) {
    let modes = fleet.hosts().iter().fold([0usize; 3], |mut acc, h| {
        acc[h.mode as usize] += 1;
        acc
    });
    println!(
        "fleet: {} hosts ({} aggregate, {} raw, {} Kinesis Agent; {} send late partials), \
         {} services, {} applications, {} clients, {}-{} lines/s per host, {} s windows, \
         batches of {}, publish: {:?}",
        args.hosts,
        modes[0],
        modes[1],
        modes[2],
        fleet.hosts().iter().filter(|h| h.sends_late).count(),
        args.services,
        args.applications,
        args.clients,
        args.rate_min,
        args.rate_max,
        args.window_secs,
        args.batch,
        args.publish
    );
    println!();
    println!("| window | records (partial / late / raw / KA) | requests | MB (data+key): all (partials / raw / KA) | groups per partial | batches (payload-capped) | largest payload MB | aggregator CPU ms | CPU ms / batch (mean, max) | wall ms | datums | PutMetricData calls |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in rows.iter().enumerate() {
        println!(
            "| {}{} | {} ({} / {} / {} / {}) | {} | {:.2} ({:.2} / {:.2} / {:.2}) | {:.0} | {} ({}) | {:.2} | {:.0} | {:.1}, {:.1} | {:.0} | {} | {} |",
            i + 1,
            if i == 0 && rows.len() > 1 { " (warm-up)" } else { "" },
            r.records,
            r.partial_records,
            r.late_partial_records,
            r.raw_records,
            r.agent_records,
            r.requests,
            r.bytes as f64 / 1e6,
            r.partial_bytes as f64 / 1e6,
            r.raw_bytes as f64 / 1e6,
            r.agent_bytes as f64 / 1e6,
            r.partial_groups as f64 / r.partial_records.max(1) as f64,
            r.batches,
            r.payload_capped_batches,
            r.max_batch_bytes as f64 / 1e6,
            r.cpu_ms,
            r.cpu_ms / r.batches.max(1) as f64,
            r.max_batch_cpu_ms,
            r.wall_ms,
            r.datums,
            r.calls
        );
    }
    // Steady state: the windows after the first (or the only one).
    let steady: Vec<&WindowRow> = if rows.len() > 1 {
        rows[1..].iter().collect()
    } else {
        rows.iter().collect()
    };
    let n = steady.len().max(1) as f64;
    let mean = |f: &dyn Fn(&WindowRow) -> f64| steady.iter().map(|r| f(r)).sum::<f64>() / n;
    let secs = f64::from(args.window_secs.max(1));
    let hosts = args.hosts as f64;
    let bytes_s = mean(&|r| r.bytes as f64) / secs;
    let records_s = mean(&|r| r.records as f64) / secs;
    let cpu = mean(&|r| r.cpu_ms);
    let wall = mean(&|r| r.wall_ms);
    let batches = mean(&|r| r.batches as f64);
    let calls = mean(&|r| r.calls as f64);
    let budget_ms = secs * 1e3;
    let by_bytes = hosts * SHARD_BYTES_PER_SEC / bytes_s.max(1e-9);
    let by_records = hosts * SHARD_RECORDS_PER_SEC / records_s.max(1e-9);
    let by_cpu = hosts * 0.10 * budget_ms / cpu.max(1e-9);
    let by_wall = hosts * 0.10 * budget_ms / wall.max(1e-9);
    let max_batch = rows.iter().map(|r| r.max_batch_bytes).max().unwrap_or(0);
    println!();
    println!("Steady state (mean of windows 2..{}):", rows.len().max(2));
    println!();
    println!("| quantity | value | limit | hosts per shard / environment at that limit |");
    println!("|---|---:|---:|---:|");
    println!(
        "| stream bytes/s (data + key) | {:.0} | 1 MiB/s per shard | {:.0} |",
        bytes_s, by_bytes
    );
    println!(
        "| stream records/s | {:.1} | 1,000/s per shard | {:.0} |",
        records_s, by_records
    );
    println!(
        "| aggregator CPU ms per window | {:.0} ({:.1} per batch of up to {} records) | 10% of {:.0} ms = {:.0} ms | {:.0} |",
        cpu,
        cpu / batches.max(1.0),
        args.batch,
        budget_ms,
        budget_ms * 0.1,
        by_cpu
    );
    println!(
        "| handler wall ms per window ({}) | {:.0} | same | {:.0} |",
        match args.publish {
            Publish::None => "no PutMetricData",
            Publish::Moto => "PutMetricData to moto_server",
        },
        wall,
        by_wall
    );
    println!(
        "| PutMetricData calls per window | {:.0} ({:.2}/s) | (account TPS quota) | - |",
        calls,
        calls / secs
    );
    println!(
        "| largest invocation payload (estimate) | {:.2} MB | 6 MB | - |",
        max_batch as f64 / 1e6
    );
    println!(
        "| Lambda time used (CPU) | {:.2}% of the window | aim < 10% | - |",
        cpu / budget_ms * 100.0
    );
    println!();
    println!(
        "RSS: {:.1} MiB before the first batch, peak {:.1} MiB (high-water mark reset before the first batch), {:.1} MiB at the end",
        rss0 as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    if max_batch > LAMBDA_PAYLOAD {
        println!("WARNING: a single record exceeds Lambda's 6 MB invocation payload");
    }
    let summary = Summary {
        hosts: args.hosts,
        window_secs: args.window_secs,
        publish: match args.publish {
            Publish::None => "none",
            Publish::Moto => "moto",
        },
        windows: rows,
        rss_start_kib: rss0,
        peak_rss_kib: peak,
        rss_end_kib: rss1,
        hosts_per_shard_bytes: by_bytes,
        hosts_per_shard_records: by_records,
        hosts_per_environment_10pct_cpu: by_cpu,
        lambda_cpu_share: cpu / budget_ms,
    };
    println!();
    println!("{}", serde_json::to_string(&summary).unwrap_or_default());
}
