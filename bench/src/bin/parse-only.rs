//! `tailrace-parse-only`: the "parsing alone" baseline of the end-to-end benchmark.
//!
//! Reads FILE line by line (256 KiB buffered reads, like the agent) and parses
//! every line with `tailrace_logformat`, doing nothing else. With
//! `--aggregate`, it also folds every parsed line into per-window,
//! per-client `tailrace_wire::ClientStats` in a `HashMap` — an in-process
//! stand-in for the agent's aggregation, without windows closing, encoding
//! or shipping. Prints one JSON object with counts and timings to stdout.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use tailrace_logformat::{LogFormat, Parsed};
use tailrace_wire::{ClientKey, ClientStats};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "tailrace-parse-only",
    about = "Parse every line of a log and nothing else"
)]
struct Args {
    /// A preset (common, combined, vhost_combined) or an Apache LogFormat string.
    #[arg(long, short)]
    format: String,
    /// Also aggregate per window and client in memory (window length in seconds).
    #[arg(long)]
    aggregate: Option<u32>,
    /// The log file.
    file: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let format = LogFormat::compile(&args.format).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut parsed = Parsed::new();
    let mut line = Vec::with_capacity(4096);
    let (mut lines, mut errors, mut bytes, mut checksum) = (0u64, 0u64, 0u64, 0u64);
    let mut windows: HashMap<(i64, ClientKey), ClientStats> = HashMap::new();
    let started = Instant::now();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .context("reading the log")?;
        if n == 0 {
            break;
        }
        lines += 1;
        bytes += n as u64;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match format.parse(text, &mut parsed) {
            Ok(()) => {
                checksum = checksum
                    .wrapping_add(u64::from(parsed.status().unwrap_or(0)))
                    .wrapping_add(parsed.response_bytes());
                if let Some(window) = args.aggregate {
                    let secs = parsed.time().map_or(0, |t| t.unix_secs);
                    let start = secs - secs.rem_euclid(i64::from(window.max(1)));
                    let client = parsed
                        .client(text)
                        .map_or(ClientKey::Name(String::new()), ClientKey::from_text);
                    windows.entry((start, client)).or_default().record(
                        parsed.status(),
                        parsed.response_bytes(),
                        parsed.duration_us(),
                    );
                }
            }
            Err(_) => errors += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "lines": lines,
        "errors": errors,
        "bytes": bytes,
        "seconds": secs,
        "lines_per_sec": lines as f64 / secs.max(1e-9),
        "mb_per_sec": bytes as f64 / 1e6 / secs.max(1e-9),
        "groups": windows.len(),
        "checksum": checksum,
    });
    println!("{out}");
    Ok(())
}
