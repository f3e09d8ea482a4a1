//! Per-line statistics cost: `ClientStats::record` with realistic latencies (log-normal,
//! median 20 ms, clamped to 100 µs..5 s) and `ClientStats::merge`, against a copy of the
//! previous implementation (`old`: an `ln` per value and a sorted `Vec<(i32, u64)>` of buckets)
//! so before and after come out of the same run.
// criterion_group! defines an undocumented `pub fn` (workspace lint missing_docs).
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tailrace_wire::ClientStats;

/// The implementation before the dense/table rewrite, kept verbatim (minus docs) as the
/// reference figure.
mod old {
    const LN_GAMMA: f64 = 0.020000666706669435;
    const MAX_BUCKET_INDEX: i32 = 2218;

    fn bucket_index(micros: u64) -> Option<i32> {
        if micros == 0 {
            return None;
        }
        let index = ((micros as f64).ln() / LN_GAMMA).ceil();
        Some((index as i32).clamp(0, MAX_BUCKET_INDEX))
    }

    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct LatencyHistogram {
        zero_count: u64,
        buckets: Vec<(i32, u64)>,
        count: u64,
        sum_micros: u64,
    }

    impl LatencyHistogram {
        pub fn heap_bytes(&self) -> usize {
            self.buckets.capacity() * std::mem::size_of::<(i32, u64)>()
        }

        pub fn record(&mut self, micros: u64) {
            self.record_n(micros, 1);
        }

        pub fn record_n(&mut self, micros: u64, n: u64) {
            if n == 0 {
                return;
            }
            self.count = self.count.saturating_add(n);
            self.sum_micros = self.sum_micros.saturating_add(micros.saturating_mul(n));
            match bucket_index(micros) {
                None => self.zero_count = self.zero_count.saturating_add(n),
                Some(index) => match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
                    Ok(pos) => self.buckets[pos].1 = self.buckets[pos].1.saturating_add(n),
                    Err(pos) => self.buckets.insert(pos, (index, n)),
                },
            }
        }

        pub fn merge(&mut self, other: &LatencyHistogram) {
            if other.count == 0 && other.buckets.is_empty() && other.zero_count == 0 {
                return;
            }
            self.zero_count = self.zero_count.saturating_add(other.zero_count);
            self.count = self.count.saturating_add(other.count);
            self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
            if self.buckets.is_empty() {
                self.buckets = other.buckets.clone();
                return;
            }
            let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
            let (mut a, mut b) = (
                self.buckets.iter().peekable(),
                other.buckets.iter().peekable(),
            );
            loop {
                match (a.peek(), b.peek()) {
                    (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                        if ia < ib {
                            merged.push((ia, ca));
                            a.next();
                        } else if ib < ia {
                            merged.push((ib, cb));
                            b.next();
                        } else {
                            merged.push((ia, ca.saturating_add(cb)));
                            a.next();
                            b.next();
                        }
                    }
                    (Some(&&x), None) => {
                        merged.push(x);
                        a.next();
                    }
                    (None, Some(&&x)) => {
                        merged.push(x);
                        b.next();
                    }
                    (None, None) => break,
                }
            }
            self.buckets = merged;
        }
    }

    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct ClientStats {
        pub requests: u64,
        pub bytes: u64,
        pub status_classes: [u64; 6],
        pub latency: LatencyHistogram,
    }

    fn status_class(status: Option<u16>) -> usize {
        match status {
            Some(s @ 100..=599) => usize::from(s / 100),
            _ => 0,
        }
    }

    impl ClientStats {
        pub fn record(&mut self, status: Option<u16>, bytes: u64, latency_micros: Option<u64>) {
            self.requests = self.requests.saturating_add(1);
            self.bytes = self.bytes.saturating_add(bytes);
            let class = &mut self.status_classes[status_class(status)];
            *class = class.saturating_add(1);
            if let Some(micros) = latency_micros {
                self.latency.record(micros);
            }
        }

        pub fn merge(&mut self, other: &ClientStats) {
            self.requests = self.requests.saturating_add(other.requests);
            self.bytes = self.bytes.saturating_add(other.bytes);
            for (a, b) in self.status_classes.iter_mut().zip(other.status_classes) {
                *a = a.saturating_add(b);
            }
            self.latency.merge(&other.latency);
        }
    }
}

/// The kit's xorshift64*, so runs are comparable.
use tailrace_tests::rng::XorShift as Rng;

/// One access-log line's worth of inputs.
type Line = (Option<u16>, u64, Option<u64>);

/// `n` lines: log-normal latency (median 20 ms, σ = 1.5 in ln, clamped to 100 µs..5 s),
/// mostly 2xx, some 3xx/4xx/5xx, sizes up to ~50 KB.
fn lines(n: usize, seed: u64) -> Vec<Line> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let latency = (20_000.0 * (1.5 * rng.normal()).exp()).clamp(100.0, 5_000_000.0) as u64;
            let status = match rng.next_u64() % 100 {
                0..=84 => 200,
                85..=91 => 304,
                92..=97 => 404,
                _ => 503,
            };
            (Some(status), rng.next_u64() % 50_000, Some(latency))
        })
        .collect()
}

/// Client of each line: Zipf-like (s = 1) over `clients`, as `tailrace-genlog` draws them.
fn zipf_clients(n: usize, clients: usize, seed: u64) -> Vec<usize> {
    let weights: Vec<f64> = (1..=clients).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(clients);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cumulative.push(acc);
    }
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let u = rng.open_unit();
            cumulative.partition_point(|&c| c < u).min(clients - 1)
        })
        .collect()
}

const LINES: usize = 1 << 16;
const CLIENTS: usize = 5000;

/// Prints the memory the 5000-client workload holds, old and new (bytes of `ClientStats`
/// values plus histogram heap, allocator overhead not counted).
fn report_memory(input: &[Line], clients: &[usize]) {
    let mut all_old = vec![old::ClientStats::default(); CLIENTS];
    let mut all_new = vec![ClientStats::default(); CLIENTS];
    for (&(status, bytes, latency), &k) in input.iter().zip(clients) {
        all_old[k].record(status, bytes, latency);
        all_new[k].record(status, bytes, latency);
    }
    let heap_old: usize = all_old.iter().map(|s| s.latency.heap_bytes()).sum();
    let heap_new: usize = all_new.iter().map(|s| s.latency.heap_bytes()).sum();
    let used = all_new.iter().filter(|s| s.requests > 0).count();
    let allocating = all_new
        .iter()
        .filter(|s| s.latency.heap_bytes() > 0)
        .count();
    eprintln!(
        "memory, {} lines over {used} clients: ClientStats {} B old / {} B new; \
         histogram heap {heap_old} B old / {heap_new} B new; {allocating} histograms allocate (new)",
        input.len(),
        std::mem::size_of::<old::ClientStats>(),
        std::mem::size_of::<ClientStats>(),
    );
}

fn record(c: &mut Criterion) {
    let input = lines(LINES, 0x5eed);
    let clients = zipf_clients(LINES, CLIENTS, 0xc11e);
    report_memory(&input, &clients);
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(LINES as u64));

    // One busy client: every line into the same `ClientStats` (warm: buckets already seen).
    group.bench_function("one_client/old", |b| {
        let mut stats = old::ClientStats::default();
        b.iter(|| {
            for &(status, bytes, latency) in &input {
                stats.record(status, bytes, latency);
            }
            black_box(&stats);
        })
    });
    group.bench_function("one_client/new", |b| {
        let mut stats = ClientStats::default();
        b.iter(|| {
            for &(status, bytes, latency) in &input {
                stats.record(status, bytes, latency);
            }
            black_box(&stats);
        })
    });

    // 5000 clients with Zipf popularity, starting empty (a fresh window).
    group.bench_function("5000_clients_fresh/old", |b| {
        b.iter_batched(
            || vec![old::ClientStats::default(); CLIENTS],
            |mut all| {
                for (&(status, bytes, latency), &k) in input.iter().zip(&clients) {
                    all[k].record(status, bytes, latency);
                }
                all
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("5000_clients_fresh/new", |b| {
        b.iter_batched(
            || vec![ClientStats::default(); CLIENTS],
            |mut all| {
                for (&(status, bytes, latency), &k) in input.iter().zip(&clients) {
                    all[k].record(status, bytes, latency);
                }
                all
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn merge(c: &mut Criterion) {
    let input = lines(LINES, 0xfeed);
    let clients = zipf_clients(LINES, CLIENTS, 0xabc);
    let mut group = c.benchmark_group("merge");

    // Two busy clients' stats (32768 lines each): merge one into a copy of the other.
    let (mut a_old, mut b_old) = (old::ClientStats::default(), old::ClientStats::default());
    let (mut a_new, mut b_new) = (ClientStats::default(), ClientStats::default());
    for (i, &(status, bytes, latency)) in input.iter().enumerate() {
        if i % 2 == 0 {
            a_old.record(status, bytes, latency);
            a_new.record(status, bytes, latency);
        } else {
            b_old.record(status, bytes, latency);
            b_new.record(status, bytes, latency);
        }
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("busy_pair/old", |b| {
        b.iter_batched_ref(
            || a_old.clone(),
            |a| a.merge(black_box(&b_old)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("busy_pair/new", |b| {
        b.iter_batched_ref(
            || a_new.clone(),
            |a| a.merge(black_box(&b_new)),
            BatchSize::SmallInput,
        )
    });

    // Two hosts' windows of 5000 Zipf clients each, merged client by client (what the
    // aggregator does with partials); most clients are small.
    let half = LINES / 2;
    let mut hosts_old = vec![vec![old::ClientStats::default(); CLIENTS]; 2];
    let mut hosts_new = vec![vec![ClientStats::default(); CLIENTS]; 2];
    for (i, (&(status, bytes, latency), &k)) in input.iter().zip(&clients).enumerate() {
        let host = usize::from(i >= half);
        hosts_old[host][k].record(status, bytes, latency);
        hosts_new[host][k].record(status, bytes, latency);
    }
    group.throughput(Throughput::Elements(CLIENTS as u64));
    group.bench_function("5000_clients/old", |b| {
        b.iter_batched_ref(
            || hosts_old[0].clone(),
            |acc| {
                for (a, o) in acc.iter_mut().zip(&hosts_old[1]) {
                    a.merge(o);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("5000_clients/new", |b| {
        b.iter_batched_ref(
            || hosts_new[0].clone(),
            |acc| {
                for (a, o) in acc.iter_mut().zip(&hosts_new[1]) {
                    a.merge(o);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, record, merge);
criterion_main!(benches);
