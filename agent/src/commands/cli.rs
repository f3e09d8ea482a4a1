//! The command line: `run`, `check`, `status`, `parse`, `replay`, and the
//! config tools `schema` and `import-kinesis-agent`; hidden: `completions`
//! and `man`, which generate the packaged shell completions and man page.
//!
//! Errors reach the user here, once, with their context chain; exit codes:
//! 0 success, 1 runtime failure, 2 bad config or usage.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use tailrace_logformat::{LogFormat, Parsed, Zone};

use crate::config;

/// tailrace: Apache access logs → per-application metrics, through Kinesis.
#[derive(Debug, Parser)]
#[command(
    name = "tailrace",
    version,
    about = "tail Apache access logs, pre-aggregate them on the host and ship them to Kinesis",
    long_about = LONG_ABOUT,
    after_long_help = crate::manpage::AFTER_LONG_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const LONG_ABOUT: &str = "tailrace follows Apache access logs in any LogFormat through rotation, \
parses them, and puts them on an Amazon Kinesis data stream: either every line as written \
(mode: raw) or partial aggregates per client address over event-time tumbling windows \
(mode: aggregate), which the tailrace aggregator turns into CloudWatch metrics per service and \
source application.

File offsets are checkpointed only after Kinesis acknowledged everything before them, so a \
crash, a reboot or a Kinesis outage loses nothing; lines after the last checkpoint may be sent \
again.";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM: tail, parse, aggregate, ship, checkpoint.
    ///
    /// On SIGTERM or SIGINT it flushes open records and windows, waits for
    /// acknowledgements for at most shutdown_timeout, writes the checkpoints
    /// and exits 0. On SIGHUP (systemctl reload) it re-reads the
    /// configuration: added flows start, removed flows drain and stop,
    /// changed flows carry on from their checkpoints; an invalid file is
    /// refused and the running configuration stays.
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file (and that its formats compile); report every problem.
    ///
    /// Every problem is printed as FILE:LINE:COLUMN: KEY: WHAT IS EXPECTED;
    /// unknown keys come with the nearest valid key. Exit status 2 when there
    /// is any.
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show, per flow and file, what is acknowledged, the file's size and the lag.
    ///
    /// Per flow and file: the offset up to which Kinesis acknowledged every
    /// line, the file's size now and the lag between them, files not
    /// checkpointed yet, and whether an agent holds the state directory. Reads
    /// the checkpoint without stopping the agent; --json for scripts.
    Status {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Parse lines from FILE (or stdin) and print one JSON object per line.
    ///
    /// FORMAT is a preset (common, combined, vhost_combined) or an Apache
    /// LogFormat string. Lines that do not match give {"error":...,"line":N}
    /// and parsing goes on.
    Parse {
        /// A preset (common, combined, vhost_combined) or an Apache LogFormat string.
        #[arg(long, short)]
        format: String,
        /// File to read; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Ship the given files once, start to end, through the same pipeline as `run`.
    ///
    /// For backfills (e.g. a bounded range when moving from the Kinesis
    /// Agent, see docs/MIGRATING.md) and benchmarks. With several flows in the
    /// configuration, --flow names the one whose settings apply.
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
    /// Print the JSON Schema of the config file (for editors and CI checks).
    Schema,
    /// Print the tailrace config equivalent to a Kinesis Agent agent.json.
    ///
    /// The YAML goes to standard output, with a `# NOTE:` comment wherever the
    /// Kinesis Agent had something tailrace does not have or does differently;
    /// the same notes are summed up on standard error. Credentials are never
    /// copied. See docs/MIGRATING.md for moving a host without gaps.
    ImportKinesisAgent {
        /// The Kinesis Agent's configuration.
        #[arg(default_value = crate::import_kinesis_agent::DEFAULT_PATH)]
        file: PathBuf,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

/// The clap command, as `--help`, the man page and the completions see it.
pub fn command() -> clap::Command {
    Cli::command()
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
        Command::Schema => report(schema()),
        Command::ImportKinesisAgent { file } => import_kinesis_agent(&file),
        Command::Completions { shell } => {
            print!("{}", crate::manpage::completions(shell));
            ExitCode::SUCCESS
        }
        Command::Man => {
            print!("{}", crate::manpage::man_page());
            ExitCode::SUCCESS
        }
        Command::Parse { format, file } => report(parse(&format, None, file.as_deref())),
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
            for warning in crate::globs::probe_flows(&cfg, path) {
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
            ExitCode::SUCCESS
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
    match crate::import_kinesis_agent::convert(&file.display().to_string(), &text) {
        Ok(imported) => {
            print!("{}", imported.yaml);
            eprint!("{}", crate::import_kinesis_agent::summary(&imported.notes));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
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
