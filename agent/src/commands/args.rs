//! The command line's shape: every command, argument and help text, as one
//! clap definition. `--help`, the man page and the shell completions
//! ([`super::manpage`]) are all rendered from it, so they cannot disagree;
//! [`super::cli`] runs what it parses.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// tailrace: Apache access logs → per-application metrics, through Kinesis.
#[derive(Debug, Parser)]
#[command(
    name = "tailrace",
    version,
    about = "tail Apache access logs, pre-aggregate them on the host and ship them to Kinesis",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
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
    ///
    /// With --live, also check the host the agent would run on: that AWS
    /// credentials resolve and DescribeStreamSummary answers for each
    /// stream; that the service user can write the state directory, list
    /// each glob's directories and read its files; which files each flow
    /// would read now and from which offset, and why; flows that read the
    /// same file, and globs that match one file under several names. Exit
    /// status 1 when anything found would stop shipping.
    Check {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Also check AWS, the state directory and the files, as the agent
        /// would meet them.
        #[arg(long)]
        live: bool,
        /// The service user the files are checked for (with --live;
        /// default: tailrace when it exists and check runs as root, else
        /// the user running check).
        #[arg(long, requires = "live")]
        user: Option<String>,
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
        #[arg(default_value = crate::commands::import::DEFAULT_PATH)]
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

/// Text after `tailrace --help`, and the man page's sections after COMMANDS.
///
/// Layout rules the man page renderer relies on: a line in capitals at
/// column 0 is a section heading; a line indented 2 spaces followed by lines
/// indented 6 is a term and its description; other 2-space lines are
/// paragraph text; 4-space lines are verbatim examples; blank lines separate
/// paragraphs.
pub const AFTER_LONG_HELP: &str = "\
CONFIGURATION
  The configuration is YAML; unknown keys are errors. Paths must be absolute. \
Durations are written 250ms, 30s, 5m, 1h; sizes 4096, 512 KiB, 1 MiB. Every key with its \
default and meaning is in the example /etc/tailrace/tailrace.yaml; `tailrace schema` prints \
the JSON Schema. Top-level keys:
  state_dir
      Where checkpoints are kept. Default /var/lib/tailrace.
  host_id
      auto (the EC2 instance id through IMDSv2, else the host name) or a literal.
  checkpoint_interval
      How often changed checkpoints are written. Default 1s.
  shutdown_timeout
      The SIGTERM budget. Default 30s.
  aws.region, aws.endpoint_url
      Region (default: the AWS SDK's chain) and an endpoint override (a local emulator).
  flows
      A list of flows, each with: name (unique); paths (absolute globs; rotated copies may \
match); exclude (file-name globs, default the compressed suffixes); format (preset or \
LogFormat string); start_at (beginning or end, default end, for files present at start \
without a checkpoint); stream (Kinesis stream name or ARN); mode (raw or aggregate, default \
raw); partition_key (random, host_id or a fixed key); max_line_bytes, max_record_bytes \
(default 1 MiB); linger (raw mode, default 1s); and in aggregate mode window (1m to 1h, \
dividing an hour, default 5m), allowed_lateness (default 1m), service (the Service \
dimension, default the flow name), client_field and trusted_proxies (take the client from a \
header such as X-Forwarded-For, N from the right), max_groups_per_window (default 100000).

ENVIRONMENT
  TAILRACE_LOG
      Log filter (tracing syntax), e.g. debug; default info. Logs go to standard error \
(the journal under systemd).
  AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...
      The AWS SDK's default credential and region chain; on EC2 the instance profile \
through IMDSv2 is used.

EXIT STATUS
  0
      Success (for run: stopped cleanly).
  1
      Runtime failure.
  2
      Bad configuration or usage (the systemd unit does not restart on it).

FILES
  /etc/tailrace/tailrace.yaml
      The configuration used by the systemd unit.
  /var/lib/tailrace/
      Checkpoints (checkpoints.json and the version before it, checkpoints.json.prev) \
and status.json, which tailrace status reads.
  /usr/lib/systemd/system/tailrace.service
      The systemd unit; change it with systemctl edit tailrace.

EXAMPLES
    tailrace check --config /etc/tailrace/tailrace.yaml
    sudo tailrace check --live --user tailrace --config /etc/tailrace/tailrace.yaml
    sudo systemctl reload tailrace
    journalctl -u tailrace -f
    tail -n 5 /var/log/apache2/access.log | tailrace parse --format combined
    tailrace import-kinesis-agent /etc/aws-kinesis/agent.json > tailrace.yaml

SEE ALSO
  systemctl(1), journalctl(1), systemd.exec(5)";
