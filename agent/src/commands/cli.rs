//! The command line: `run`, `check`, `status`, `parse`, `replay`, and the
//! config tools `schema` and `import-kinesis-agent`; hidden: `completions`
//! and `man`, which generate the packaged shell completions and man page.
//!
//! Errors reach the user here, once, with their context chain; exit codes:
//! 0 success, 1 runtime failure, 2 bad config or usage.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tailrace_logformat::{LogFormat, Parsed, Zone};

use super::args::{Cli, Command};
use super::manpage;
use crate::config;

fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("TAILRACE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only on a terminal, and never with `NO_COLOR` set to anything
    // (https://no-color.org): journald, a file or a pipe get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // journald adds its own timestamps; keep lines short and greppable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check --live` runs the agent's own tailer, whose decisions it
    // prints itself: only warnings go to the log.
    init_logging(match cli.command {
        Command::Check { live: true, .. } => "warn",
        _ => "info",
    });
    match cli.command {
        Command::Check { config, live, user } => check(&config, live, user.as_deref()),
        Command::Schema => report(schema()),
        Command::ImportKinesisAgent { file } => import_kinesis_agent(&file),
        Command::Completions { shell } => {
            print!("{}", manpage::completions(shell));
            ExitCode::SUCCESS
        }
        Command::Man => {
            print!("{}", manpage::man_page());
            ExitCode::SUCCESS
        }
        Command::Parse { format, file } => report(parse(&format, None, file.as_deref())),
        Command::Status { config, json } => match config::Validated::load(&config) {
            Ok(cfg) => report(status(&cfg, json)),
            Err(e) => config_error(e),
        },
        Command::Run { config } => match config::Validated::load(&config) {
            Ok(cfg) => report(block_on(crate::runtime::daemon::run(cfg, &config))),
            Err(e) => config_error(e),
        },
        Command::Replay {
            config,
            flow,
            files,
        } => match config::Validated::load(&config) {
            Ok(cfg) => report(block_on(crate::runtime::replay::replay(
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

fn check(path: &Path, live: bool, user: Option<&str>) -> ExitCode {
    match config::Validated::load(path) {
        Ok(cfg) => {
            for warning in crate::read::globs::probe_flows(&cfg, path) {
                eprintln!("warning: {warning}");
            }
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
            if !live {
                return ExitCode::SUCCESS;
            }
            let report = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(super::preflight::live(&cfg, user)),
                Err(e) => {
                    eprintln!("tailrace: error: starting the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            print!("{}", report.render());
            if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => config_error(e),
    }
}

fn schema() -> Result<()> {
    let text = serde_json::to_string_pretty(&config::json_schema()).context("rendering JSON")?;
    println!("{text}");
    Ok(())
}

fn import_kinesis_agent(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match crate::commands::import::convert(&file.display().to_string(), &text) {
        Ok(imported) => {
            print!("{}", imported.yaml);
            eprint!("{}", crate::commands::import::summary(&imported.notes));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn status(config: &config::Validated, json: bool) -> Result<()> {
    let status = crate::commands::status::collect(config).context("reading the state directory")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("rendering JSON")?
        );
    } else {
        print!("{}", crate::commands::status::render(&status));
    }
    Ok(())
}

/// `tailrace parse`: one JSON object per input line; non-matching lines give
/// `{"error": ..., "line": N}` and parsing goes on.
fn parse(format: &str, timezone: Option<&str>, file: Option<&Path>) -> Result<()> {
    let zone = match timezone {
        Some(name) => Zone::named(name).map_err(|e| anyhow::anyhow!("--timezone: {e}"))?,
        None => Zone::system(),
    };
    let format = LogFormat::compile(format)
        .map_err(|e| anyhow::anyhow!("--format: {e}"))?
        .with_zone(zone);
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
