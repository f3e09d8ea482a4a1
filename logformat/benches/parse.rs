//! Parsing throughput on realistic `combined` lines: thousands of distinct clients
//! (IPv4 and some IPv6), varied methods, paths, query strings, referers and agents.
// criterion_group! defines an undocumented `pub fn` (workspace lint missing_docs).
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tailrace_logformat::{LogFormat, LogTime, Parsed};

/// The kit's xorshift64*, so runs are comparable.
use tailrace_tests::rng::XorShift as Rng;

const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "POST", "PUT", "HEAD", "DELETE"];
const SEGMENTS: &[&str] = &[
    "api", "v1", "v2", "users", "orders", "static", "img", "css", "js", "search", "health",
    "checkout", "cart", "items", "reports", "export",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "aws-sdk-java/2.25.6 Linux/6.1 OpenJDK_64-Bit_Server_VM/17.0.10",
    "ELB-HealthChecker/2.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const REFERERS: &[&str] = &[
    "-",
    "-",
    "https://www.example.com/",
    "https://shop.example.com/cart?step=2",
    "https://www.google.com/search?q=example+widgets",
];
const STATUSES: &[&str] = &[
    "200", "200", "200", "200", "304", "301", "404", "500", "201",
];

fn lines(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(n);
    let mut time = Vec::new();
    for i in 0..n {
        let mut l = Vec::with_capacity(320);
        if rng.below(10) == 0 {
            l.extend_from_slice(
                format!("2001:db8:{:x}::{:x}", rng.below(4096), rng.below(65536)).as_bytes(),
            );
        } else {
            // ~5000 distinct clients.
            let c = rng.below(5000);
            l.extend_from_slice(
                format!("10.{}.{}.{}", c >> 16 & 255, c >> 8 & 255, c & 255).as_bytes(),
            );
        }
        l.extend_from_slice(if rng.below(20) == 0 {
            b" - svc "
        } else {
            b" - - "
        });
        l.push(b'[');
        time.clear();
        LogTime {
            unix_secs: 1_760_000_000 + i as i64,
            nanos: 0,
            offset_secs: 0,
        }
        .write_clf(&mut time);
        l.extend_from_slice(&time);
        l.extend_from_slice(b"] \"");
        l.extend_from_slice(rng.pick(METHODS).as_bytes());
        l.push(b' ');
        for _ in 0..1 + rng.below(4) {
            l.push(b'/');
            l.extend_from_slice(rng.pick(SEGMENTS).as_bytes());
        }
        if rng.below(3) == 0 {
            l.extend_from_slice(format!("/{}", rng.below(1_000_000)).as_bytes());
        }
        if rng.below(4) == 0 {
            l.extend_from_slice(format!("?page={}&sort=desc", rng.below(50)).as_bytes());
        }
        l.extend_from_slice(b" HTTP/1.1\" ");
        l.extend_from_slice(rng.pick(STATUSES).as_bytes());
        l.extend_from_slice(format!(" {} \"", rng.below(200_000)).as_bytes());
        l.extend_from_slice(rng.pick(REFERERS).as_bytes());
        l.extend_from_slice(b"\" \"");
        l.extend_from_slice(rng.pick(AGENTS).as_bytes());
        l.push(b'"');
        out.push(l);
    }
    out
}

fn bench(c: &mut Criterion) {
    let lines = lines(10_000);
    let total: usize = lines.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(total as u64));

    let combined = LogFormat::compile("combined").expect("combined compiles");
    let mut parsed = Parsed::new();
    for l in &lines {
        combined
            .parse(l, &mut parsed)
            .expect("benchmark lines parse");
    }
    g.bench_function("combined", |b| {
        b.iter(|| {
            let mut statuses = 0u64;
            for l in &lines {
                if combined.parse(black_box(l), &mut parsed).is_ok() {
                    statuses += u64::from(parsed.status().unwrap_or(0));
                }
            }
            black_box(statuses)
        })
    });

    let mut json = Vec::with_capacity(1 << 20);
    g.bench_function("combined+json", |b| {
        b.iter(|| {
            for l in &lines {
                if combined.parse(black_box(l), &mut parsed).is_ok() {
                    json.clear();
                    parsed.write_json(&combined, l, &mut json);
                    black_box(&json);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
