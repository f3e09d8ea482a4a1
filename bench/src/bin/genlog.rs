//! `tailrace-genlog`: writes a realistic Apache access log for benchmarks.
//!
//! Thousands of clients (IPv4 and some IPv6) with Zipf-like popularity, each
//! with its own user agent; varied methods, paths, query strings, statuses
//! (mostly 200, some 3xx/4xx/5xx), sizes, referers; a few odd-but-real lines
//! (a TLS handshake sent to the plain-HTTP port, request timeouts). Event
//! time advances at `--rate` lines per second, so a long log spans many
//! 5-minute windows. The same `--seed` gives the same bytes.
//!
//! `--shape` picks the traffic: `web` (the default above), `service` (short
//! service-to-service lines: internal clients, short API paths, no referer,
//! SDK user agents; ~115 bytes with `%D`), or `browser` (long browser lines:
//! long query strings and referers, user agents and search terms with
//! escaped quotes `\"` as Apache writes them; ~770 bytes with `%D`).
//!
//! Lines are built into one buffer with `itoa` and byte pushes; no per-line
//! allocation, so a gigabyte takes seconds.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tailrace_bench::rng::{Rng, Zipf};
use tailrace_logformat::LogTime;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "tailrace-genlog",
    about = "Write a realistic Apache access log"
)]
struct Args {
    /// Number of lines to write.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Number of distinct clients.
    #[arg(long, default_value_t = 5000)]
    clients: usize,
    /// Log format: `combined`, or `combined_d` (combined plus ` %D`, microseconds).
    #[arg(long, value_enum, default_value_t = Format::Combined)]
    format: Format,
    /// Event time of the first line, unix seconds; default: now minus lines/rate.
    #[arg(long)]
    start: Option<i64>,
    /// Lines per second of event time.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Traffic shape: `web`, `service` (short lines), `browser` (long lines, escaped quotes).
    #[arg(long, value_enum, default_value_t = Shape::Web)]
    shape: Shape,
    /// Zipf exponent of client popularity (1.0: the top client sends ~1/ln(clients) of the traffic).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Seed of the random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file; stdout when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Supported log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`
    Combined,
    /// `combined` plus ` %D`.
    #[value(name = "combined_d")]
    CombinedD,
}

/// Traffic shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// Mixed web traffic (browsers, bots, some API clients).
    Web,
    /// Short service-to-service lines.
    Service,
    /// Long browser lines with escaped quotes.
    Browser,
}

const SERVICE_AGENTS: &[(u32, &str)] = &[
    (40, "Go-http-client/1.1"),
    (25, "okhttp/4.12.0"),
    (20, "python-requests/2.31.0"),
    (15, "curl/8.5.0"),
];

/// Extra search terms of browser lines: clients send quotes, Apache escapes them.
const QUOTED: &[&str] = &[
    "\\\"blue widget\\\"",
    "\\\"steel desk\\\" -sale",
    "gift \\\"for kids\\\"",
];

const AGENTS: &[(u32, &str)] = &[
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"),
    (12, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15"),
    (10, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1"),
    (10, "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36"),
    (8, "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
    (5, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67"),
    (4, "curl/8.5.0"),
    (4, "python-requests/2.31.0"),
    (3, "Go-http-client/1.1"),
    (3, "aws-sdk-java/2.25.6 Linux/6.1.79 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy"),
    (3, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (2, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (2, "ELB-HealthChecker/2.0"),
    (1, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    (1, "-"),
];

const REFERERS: &[(u32, &str)] = &[
    (50, "-"),
    (15, "https://www.example.com/"),
    (8, "https://www.example.com/products/"),
    (6, "https://shop.example.com/cart?step=2"),
    (8, "https://www.google.com/"),
    (3, "https://www.bing.com/search?q=example+widgets&form=QBLH"),
    (3, "https://t.co/Xy7kPq2Lm"),
    (2, "android-app://com.google.android.gm/"),
];

const METHODS: &[(u32, &str)] = &[
    (850, "GET"),
    (80, "POST"),
    (30, "HEAD"),
    (20, "PUT"),
    (10, "DELETE"),
    (8, "OPTIONS"),
    (2, "PATCH"),
];

const PROTOCOLS: &[(u32, &str)] = &[(70, "HTTP/1.1"), (28, "HTTP/2.0"), (2, "HTTP/1.0")];

const STATUSES: &[(u32, u16)] = &[
    (8600, 200),
    (150, 201),
    (50, 204),
    (80, 206),
    (100, 301),
    (100, 302),
    (400, 304),
    (60, 400),
    (40, 401),
    (40, 403),
    (200, 404),
    (10, 405),
    (20, 429),
    (80, 500),
    (30, 502),
    (30, 503),
    (10, 504),
];

const SECTIONS: &[&str] = &[
    "users", "orders", "items", "products", "carts", "sessions", "search", "reports", "invoices",
    "accounts",
];
const WORDS: &[&str] = &[
    "widget", "blue", "gadget", "large", "steel", "organic", "coffee", "lamp", "desk", "chair",
    "cable", "usb-c", "gift", "sale", "winter", "kids", "garden", "tools", "phone", "case",
];
const STATIC_EXT: &[&str] = &["css", "js", "png", "jpg", "svg", "woff2", "webp", "ico"];
const USERS: &[&str] = &["alice", "bob", "svc-export", "carol", "deploy"];

/// One client: its address and habits.
struct Client {
    addr: String,
    agent: &'static str,
    user: &'static str,
}

fn make_clients(rng: &mut Rng, n: usize, shape: Shape) -> Vec<Client> {
    let mut seen = HashSet::with_capacity(n);
    let mut clients = Vec::with_capacity(n);
    while clients.len() < n {
        let addr = if shape == Shape::Service {
            // Internal callers.
            format!(
                "10.{}.{}.{}",
                rng.below(64),
                rng.below(256),
                rng.range(1, 254)
            )
        } else if rng.chance(0.08) {
            format!(
                "2001:db8:{:x}:{:x}::{:x}",
                rng.below(0x1_0000),
                rng.below(0x1_0000),
                rng.range(1, 0xffff)
            )
        } else {
            // Public-looking IPv4: avoid 0, 10, 127, 224+.
            let a = loop {
                let a = rng.range(1, 223);
                if a != 10 && a != 127 {
                    break a;
                }
            };
            format!(
                "{a}.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.range(1, 254)
            )
        };
        if !seen.insert(addr.clone()) {
            continue;
        }
        let agent = if shape == Shape::Service {
            *rng.weighted(SERVICE_AGENTS)
        } else {
            *rng.weighted(AGENTS)
        };
        let user = if rng.chance(0.03) {
            *rng.pick(USERS)
        } else {
            "-"
        };
        clients.push(Client { addr, agent, user });
    }
    clients
}

/// Appends a request path (with query string, sometimes).
fn write_path(out: &mut Vec<u8>, rng: &mut Rng, itoa: &mut itoa::Buffer) {
    match rng.below(100) {
        0..=29 => {
            out.extend_from_slice(b"/static/");
            let ext = *rng.pick(STATIC_EXT);
            out.extend_from_slice(ext.as_bytes());
            out.push(b'/');
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            out.push(b'-');
            out.extend_from_slice(itoa.format(rng.below(200)).as_bytes());
            out.push(b'.');
            out.extend_from_slice(ext.as_bytes());
            if rng.chance(0.5) {
                out.extend_from_slice(b"?v=");
                let v = rng.next_u64() & 0xffff_ffff;
                out.extend_from_slice(format_hex(v).as_slice());
            }
        }
        30..=64 => {
            out.extend_from_slice(if rng.chance(0.7) {
                b"/api/v2/"
            } else {
                b"/api/v1/"
            });
            out.extend_from_slice(rng.pick(SECTIONS).as_bytes());
            if rng.chance(0.7) {
                out.push(b'/');
                out.extend_from_slice(itoa.format(rng.log_uniform(1, 5_000_000)).as_bytes());
            }
            if rng.chance(0.3) {
                out.extend_from_slice(b"?page=");
                out.extend_from_slice(itoa.format(rng.range(1, 40)).as_bytes());
                out.extend_from_slice(b"&limit=");
                out.extend_from_slice(itoa.format(*rng.pick(&[10u32, 25, 50, 100])).as_bytes());
                if rng.chance(0.3) {
                    out.extend_from_slice(b"&sort=-created_at&fields=id,name,status");
                }
            }
        }
        65..=79 => {
            out.extend_from_slice(b"/products/");
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            out.push(b'-');
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            out.push(b'-');
            out.extend_from_slice(itoa.format(rng.range(1000, 99_999)).as_bytes());
            if rng.chance(0.2) {
                out.extend_from_slice(
                    b"?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
                );
            }
        }
        80..=87 => {
            out.extend_from_slice(b"/search?q=");
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            out.push(b'+');
            out.extend_from_slice(rng.pick(WORDS).as_bytes());
            if rng.chance(0.4) {
                out.extend_from_slice(b"&page=");
                out.extend_from_slice(itoa.format(rng.range(2, 9)).as_bytes());
            }
        }
        88..=92 => out.push(b'/'),
        93..=96 => out.extend_from_slice(b"/health"),
        97 => out.extend_from_slice(b"/wp-login.php"),
        98 => out.extend_from_slice(b"/.env"),
        _ => out.extend_from_slice(b"/favicon.ico"),
    }
}

/// Appends marketing parameters as browsers carry them (`&utm_…&gclid=…`).
fn write_tracking(out: &mut Vec<u8>, rng: &mut Rng, itoa: &mut itoa::Buffer) {
    out.extend_from_slice(b"&utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale-");
    out.extend_from_slice(itoa.format(rng.range(2020, 2026)).as_bytes());
    out.extend_from_slice(b"&utm_content=hero-banner-");
    out.extend_from_slice(rng.pick(WORDS).as_bytes());
    out.extend_from_slice(b"&gclid=");
    for _ in 0..4 {
        out.extend_from_slice(format_hex(rng.next_u64()).as_slice());
    }
    out.extend_from_slice(b"&fbclid=IwAR");
    for _ in 0..3 {
        out.extend_from_slice(format_hex(rng.next_u64()).as_slice());
    }
}

fn format_hex(v: u64) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Appends the response size (`%b`: `-` when no body).
fn write_size(
    out: &mut Vec<u8>,
    rng: &mut Rng,
    itoa: &mut itoa::Buffer,
    method: &str,
    status: u16,
) {
    let size = match status {
        204 | 304 => 0,
        _ if method == "HEAD" => 0,
        200 | 206 => rng.log_uniform(120, 400_000),
        201 => rng.range(80, 900),
        301 | 302 => rng.range(220, 260),
        400..=499 => rng.range(150, 600),
        _ => rng.range(300, 800),
    };
    if size == 0 {
        out.push(b'-');
    } else {
        out.extend_from_slice(itoa.format(size).as_bytes());
    }
}

/// Time taken in microseconds (`%D`): mostly fast, a long tail.
fn duration_us(rng: &mut Rng, status: u16) -> u64 {
    match rng.below(100) {
        _ if status == 304 => rng.log_uniform(80, 3_000),
        0..=79 => rng.log_uniform(150, 40_000),
        80..=96 => rng.log_uniform(40_000, 900_000),
        _ => rng.log_uniform(900_000, 30_000_000),
    }
}

/// Writes the whole log to `out`.
fn generate(args: &Args, out: &mut dyn Write) -> Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a positive number of lines per second");
    }
    let start = match args.start {
        Some(s) => s,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("system clock before 1970")?
                .as_secs() as i64;
            now - (args.lines as f64 / args.rate).ceil() as i64
        }
    };
    let mut rng = Rng::new(args.seed);
    let clients = make_clients(&mut rng, args.clients, args.shape);
    let zipf = Zipf::new(clients.len(), args.zipf);
    let mut itoa = itoa::Buffer::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 21);
    let (mut cached_sec, mut cached_stamp) = (i64::MIN, Vec::with_capacity(32));
    for i in 0..args.lines {
        let mut sec = start + (i as f64 / args.rate) as i64;
        // Apache stamps the request's start but writes the line at its end:
        // a few lines are a little out of order.
        if rng.chance(0.02) {
            sec -= rng.range(1, 4) as i64;
        }
        if sec != cached_sec {
            cached_sec = sec;
            cached_stamp.clear();
            LogTime {
                unix_secs: sec,
                nanos: 0,
                offset_secs: 0,
            }
            .write_clf(&mut cached_stamp);
        }
        let client = &clients[zipf.sample(&mut rng)];
        buf.extend_from_slice(client.addr.as_bytes());
        buf.extend_from_slice(b" - ");
        buf.extend_from_slice(client.user.as_bytes());
        buf.extend_from_slice(b" [");
        buf.extend_from_slice(&cached_stamp);
        buf.extend_from_slice(b"] \"");
        let odd = rng.below(2000);
        let status;
        if odd == 0 {
            // A TLS ClientHello sent to the plain-HTTP port, as Apache logs it.
            buf.extend_from_slice(b"\\x16\\x03\\x01\" 400 0 \"-\" \"-\"");
            status = 400;
        } else if odd == 1 {
            // The client connected and sent nothing before the timeout.
            buf.extend_from_slice(b"-\" 408 - \"-\" \"-\"");
            status = 408;
        } else if args.shape == Shape::Service {
            let method = if rng.chance(0.8) { "GET" } else { "POST" };
            buf.extend_from_slice(method.as_bytes());
            buf.extend_from_slice(b" /v1/");
            buf.extend_from_slice(rng.pick(SECTIONS).as_bytes());
            buf.push(b'/');
            buf.extend_from_slice(itoa.format(rng.below(100_000)).as_bytes());
            buf.extend_from_slice(b" HTTP/1.1\" ");
            status = *rng.weighted(STATUSES);
            buf.extend_from_slice(itoa.format(status).as_bytes());
            buf.push(b' ');
            write_size(&mut buf, &mut rng, &mut itoa, method, status);
            buf.extend_from_slice(b" \"-\" \"");
            buf.extend_from_slice(client.agent.as_bytes());
            buf.push(b'"');
        } else {
            let browser = args.shape == Shape::Browser;
            let method = if browser {
                "GET"
            } else {
                *rng.weighted(METHODS)
            };
            buf.extend_from_slice(method.as_bytes());
            buf.push(b' ');
            write_path(&mut buf, &mut rng, &mut itoa);
            if browser {
                write_tracking(&mut buf, &mut rng, &mut itoa);
            }
            buf.push(b' ');
            buf.extend_from_slice(rng.weighted(PROTOCOLS).as_bytes());
            buf.extend_from_slice(b"\" ");
            status = *rng.weighted(STATUSES);
            buf.extend_from_slice(itoa.format(status).as_bytes());
            buf.push(b' ');
            write_size(&mut buf, &mut rng, &mut itoa, method, status);
            buf.extend_from_slice(b" \"");
            if browser {
                // A search page whose terms carry quotes, escaped by Apache.
                buf.extend_from_slice(b"https://www.example.com/search?q=");
                buf.extend_from_slice(rng.pick(QUOTED).as_bytes());
                write_tracking(&mut buf, &mut rng, &mut itoa);
            } else {
                buf.extend_from_slice(rng.weighted(REFERERS).as_bytes());
            }
            buf.extend_from_slice(b"\" \"");
            buf.extend_from_slice(client.agent.as_bytes());
            if browser {
                buf.extend_from_slice(b" [FBAN/FBIOS;FBAV/459.0.0.51.110;FBBV/596476937;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4.1;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5;FBRV/\\\"598163264\\\"]");
            }
            buf.push(b'"');
        }
        if args.format == Format::CombinedD {
            buf.push(b' ');
            let d = if status == 408 {
                rng.range(20_000_000, 60_000_000)
            } else {
                duration_us(&mut rng, status)
            };
            buf.extend_from_slice(itoa.format(d).as_bytes());
        }
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let result = match &args.output {
        Some(path) => {
            let mut file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            generate(&args, &mut file)
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            generate(&args, &mut lock)
        }
    };
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other.context("writing the log"),
    }
}
