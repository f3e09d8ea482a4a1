//! The command line: `run`, `check`, `parse`, `replay`.
//!
//! Errors reach the user here, once, with their context chain; exit codes:
//! 0 success, 1 runtime failure, 2 bad config or usage.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tailrace_logformat::{LogFormat, Parsed};

use crate::config;

/// tailrace: Apache access logs → per-application metrics, through Kinesis.
#[derive(Debug, Parser)]
#[command(name = "tailrace", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM: tail, parse, aggregate, ship, checkpoint.
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file (and that its formats compile); report every problem.
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show, per flow and file, what is acknowledged, the file's size and the lag.
    Status {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Parse lines from FILE (or stdin) and print one JSON object per line.
    Parse {
        /// A preset (common, combined, vhost_combined) or an Apache LogFormat string.
        #[arg(long, short)]
        format: String,
        /// File to read; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Ship the given files once, start to end, through the same pipeline as `run`.
    Replay {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The flow whose settings to use (needed when the config has several).
        #[arg(long)]
        flow: Option<String>,
        /// Files to ship.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TAILRACE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // journald adds its own timestamps; keep lines short and greppable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Parse { format, file } => report(parse(&format, file.as_deref())),
        Command::Status { config, json } => match config::load(&config) {
            Ok(cfg) => report(status(&cfg, json)),
            Err(e) => config_error(e),
        },
        Command::Run { config } => match config::load(&config) {
            Ok(cfg) => report(block_on(crate::runtime::run(cfg, &config))),
            Err(e) => config_error(e),
        },
        Command::Replay {
            config,
            flow,
            files,
        } => match config::load(&config) {
            Ok(cfg) => report(block_on(crate::runtime::replay(
                cfg,
                flow.as_deref(),
                &files,
            ))),
            Err(e) => config_error(e),
        },
    }
}

fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(f)
}

fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tailrace: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config_error(e: config::ConfigError) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(2)
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} flow{})",
                path.display(),
                cfg.flows.len(),
                if cfg.flows.len() == 1 { "" } else { "s" }
            );
            for f in &cfg.flows {
                println!(
                    "  {}: {} mode, format `{}`, stream {}",
                    f.name(),
                    f.config.mode,
                    f.format.spec(),
                    f.config.stream
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => config_error(e),
    }
}

fn status(config: &config::Validated, json: bool) -> Result<()> {
    let status = crate::status::collect(config).context("reading the state directory")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("rendering JSON")?
        );
    } else {
        print!("{}", crate::status::render(&status));
    }
    Ok(())
}

/// `tailrace parse`: one JSON object per input line; non-matching lines give
/// `{"error": ..., "line": N}` and parsing goes on.
fn parse(format: &str, file: Option<&Path>) -> Result<()> {
    let format = LogFormat::compile(format).map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let input: Box<dyn Read> = match file {
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut parsed = Parsed::new();
    let mut line = Vec::new();
    let mut json = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .context("reading input")?
            == 0
        {
            break;
        }
        n += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        json.clear();
        match format.parse(text, &mut parsed) {
            Ok(()) => parsed.write_json(&format, text, &mut json),
            Err(e) => {
                let msg = serde_json::json!({"error": e.to_string(), "line": n});
                json.extend_from_slice(msg.to_string().as_bytes());
            }
        }
        json.push(b'\n');
        if let Err(e) = out.write_all(&json) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing output");
        }
    }
    out.flush()
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(e)
            }
        })
        .context("writing output")?;
    Ok(())
}
