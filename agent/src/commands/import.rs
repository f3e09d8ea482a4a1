//! `tailrace import-kinesis-agent`: turn an Amazon Kinesis Agent `agent.json`
//! into the equivalent tailrace YAML.
//!
//! The output is a config `tailrace check` accepts, with a YAML comment at
//! every place where the Kinesis Agent had something tailrace does not have or
//! does differently, and the same notes returned as a list for a summary on
//! stderr. Nothing is silently dropped: every key of the input is either
//! mapped or named in a note. Secrets (`awsSecretAccessKey`) are never copied.
//! Key names follow the agent's own configuration classes
//! (`AgentConfiguration`, `FileFlow`, `KinesisConstants`, the processing
//! options); `docs/MIGRATING.md` has the table.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Where the Kinesis Agent keeps its configuration.
pub const DEFAULT_PATH: &str = "/etc/aws-kinesis/agent.json";

/// Why an `agent.json` could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not JSON at all.
    #[error("{path}:{line}:{column}: invalid JSON: {message}")]
    Json {
        /// The input file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json expected.
        message: String,
    },
    /// JSON, but not the shape of a Kinesis Agent config.
    #[error("{path}: {key}: {message}")]
    Shape {
        /// The input file.
        path: String,
        /// Dotted key path, e.g. `flows[1].filePattern`.
        key: String,
        /// What was expected.
        message: String,
    },
}

/// The converted config and the notes about what differs.
#[derive(Debug)]
pub struct Imported {
    /// tailrace YAML, comments included.
    pub yaml: String,
    /// One line per difference, e.g. `flows[1]: deliveryStream ...`.
    pub notes: Vec<String>,
}

/// Convert the text of an `agent.json`; `path` is used in messages.
pub fn convert(path: &str, text: &str) -> Result<Imported, ImportError> {
    let root: Value = serde_json::from_str(text).map_err(|e| ImportError::Json {
        path: path.to_string(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let shape = |key: &str, message: &str| ImportError::Shape {
        path: path.to_string(),
        key: key.to_string(),
        message: message.to_string(),
    };
    let Value::Object(root) = root else {
        return Err(shape("(top level)", "expected a JSON object `{ ... }`"));
    };
    let mut out = Output::default();
    out.line(&format!(
        "# tailrace configuration imported from the Kinesis Agent's {path}\n\
         # by `tailrace import-kinesis-agent`. Review every `NOTE:` below, then run\n\
         #   tailrace check --config THIS_FILE\n\
         # Moving a host without gaps or double counting: docs/MIGRATING.md.\n"
    ));
    out.line("# Checkpoints: the Kinesis Agent's checkpoint file cannot be carried over.");
    out.line("state_dir: /var/lib/tailrace");

    let mut aws = Vec::new();
    for (key, value) in &root {
        let text = value_text(value);
        match key.as_str() {
            "flows" => {}
            "kinesis.region" => aws.push(format!("region: {}", yaml_str(&text))),
            "kinesis.endpoint" if text.is_empty() => {}
            "kinesis.endpoint" => {
                let host = text
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let region = host
                    .strip_prefix("kinesis.")
                    .and_then(|r| r.strip_suffix(".amazonaws.com"));
                match region {
                    Some(region) if !root.contains_key("kinesis.region") => {
                        aws.push(format!(
                            "# kinesis.endpoint {text} is the standard endpoint of this region."
                        ));
                        aws.push(format!("region: {}", yaml_str(region)));
                    }
                    Some(_) => {}
                    None => {
                        let url = if text.contains("://") {
                            text.clone()
                        } else {
                            format!("https://{text}")
                        };
                        aws.push(format!("endpoint_url: {}", yaml_str(&url)));
                    }
                }
            }
            "shutdownTimeoutMillis" => match value.as_u64() {
                Some(ms) => out.line(&format!("shutdown_timeout: {}", millis(ms))),
                None => return Err(shape(key, "expected a number of milliseconds")),
            },
            "checkpointFile" | "checkpointTimeToLiveDays" => out.note(
                key,
                "tailrace keeps its own checkpoints in state_dir; the Kinesis Agent's cannot be carried over (see docs/MIGRATING.md)",
            ),
            "awsAccessKeyId" | "awsSecretAccessKey" => out.note(
                key,
                "not copied: tailrace takes credentials from the AWS SDK's default chain (instance profile, AWS_* environment, ~/.aws); never put keys in the config",
            ),
            "assumeRoleARN" => out.note(
                key,
                &format!(
                    "tailrace has no role setting: add a profile with `role_arn = {text}` (and `credential_source = Ec2InstanceMetadata`) to the service's ~/.aws/config and set AWS_PROFILE with `systemctl edit tailrace`, or grant the instance role kinesis:PutRecords on the stream"
                ),
            ),
            "assumeRoleExternalId" => out.note(
                key,
                "set `external_id` in the same ~/.aws/config profile as role_arn",
            ),
            "sts.endpoint" => out.note(
                key,
                "set AWS_ENDPOINT_URL_STS in the service's environment if you need it",
            ),
            "firehose.endpoint" => {
                if !text.is_empty() {
                    out.note(key, "tailrace does not write to Firehose");
                }
            }
            k if k.starts_with("cloudwatch.") || k.starts_with("log.") => out.note(
                key,
                "no equivalent: tailrace logs to the journal and reports per-file progress with `tailrace status`",
            ),
            "maxSendingThreads"
            | "maxSendingThreadsPerCore"
            | "sendingThreadsKeepAliveMillis"
            | "sendingThreadsMaxQueueSize"
            | "maxConnections"
            | "connectionTimeoutMillis"
            | "connectionTTLMillis"
            | "socketTimeoutMillis"
            | "useTcpKeepAlive"
            | "useHttpGzip"
            | "userAgent"
            | "userAgentOverride" => out.note(
                key,
                "no equivalent: tailrace sizes its sending and connections itself",
            ),
            _ => out.note(key, "not a key tailrace knows how to map; ignored"),
        }
    }
    if !aws.is_empty() {
        out.line("aws:");
        for l in &aws {
            out.line(&format!("  {l}"));
        }
    } else {
        out.line("# Region: from the AWS SDK's chain (AWS_REGION, profile, then IMDS on EC2).");
    }

    let flows = match root.get("flows") {
        Some(Value::Array(flows)) => flows.as_slice(),
        Some(_) => return Err(shape("flows", "expected a list of flows `[ ... ]`")),
        None => &[],
    };
    let mut names: Vec<String> = Vec::new();
    let mut written = 0;
    out.line("flows:");
    for (i, flow) in flows.iter().enumerate() {
        let key = format!("flows[{i}]");
        let Value::Object(flow) = flow else {
            return Err(shape(&key, "expected a flow object `{ ... }`"));
        };
        if convert_flow(&key, flow, &mut out, &mut names).map_err(|m| shape(&key, &m))? {
            written += 1;
        }
    }
    if written == 0 {
        return Err(shape(
            "flows",
            "no flow writes to a Kinesis data stream (`kinesisStream`): nothing to import",
        ));
    }
    Ok(Imported {
        yaml: out.text,
        notes: out.notes,
    })
}

#[derive(Default)]
struct Output {
    text: String,
    notes: Vec<String>,
}

impl Output {
    fn line(&mut self, l: &str) {
        self.text.push_str(l);
        self.text.push('\n');
    }
    /// A note at the top level: a comment here and a summary line.
    fn note(&mut self, key: &str, message: &str) {
        self.line(&format!("# NOTE: {key}: {message}"));
        self.notes.push(format!("{key}: {message}"));
    }
}

/// One flow; returns whether it was written (Firehose flows are not).
fn convert_flow(
    key: &str,
    flow: &Map<String, Value>,
    out: &mut Output,
    names: &mut Vec<String>,
) -> Result<bool, String> {
    let get_str = |k: &str| -> Result<Option<String>, String> {
        match flow.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    let get_u64 = |k: &str| -> Result<Option<u64>, String> {
        match flow.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .map(Some)
                .ok_or_else(|| format!("`{k}` must be a non-negative number")),
        }
    };
    let pattern = get_str("filePattern")?.ok_or("missing `filePattern`")?;
    let stream = match (get_str("kinesisStream")?, get_str("deliveryStream")?) {
        (Some(s), _) => s,
        (None, Some(d)) => {
            let msg = format!(
                "deliveryStream `{d}` (Firehose) has no equivalent: tailrace writes to Kinesis data streams only; this flow ({pattern}) is not imported"
            );
            out.line(&format!("  # NOTE: {key}: {msg}"));
            out.notes.push(format!("{key}: {msg}"));
            return Ok(false);
        }
        (None, None) => return Err("expected `kinesisStream` or `deliveryStream`".into()),
    };
    let mut notes: Vec<String> = Vec::new();
    let mut note = |out: &mut Output, k: &str, msg: &str| {
        let full = format!("{key}.{k}");
        out.notes.push(format!("{full}: {msg}"));
        notes.push(format!("# NOTE: {k}: {msg}"));
    };

    // Format and mode from the processing options.
    let mut format = "combined".to_string();
    let mut mode = "raw";
    let mut format_known = false;
    let options = match flow.get("dataProcessingOptions") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err("`dataProcessingOptions` must be a list".into()),
    };
    for (j, opt) in options.iter().enumerate() {
        let ok = format!("dataProcessingOptions[{j}]");
        let name = opt
            .get("optionName")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{ok}: missing `optionName`"))?;
        match name {
            "LOGTOJSON" => {
                let log_format = opt.get("logFormat").and_then(Value::as_str).unwrap_or("");
                match log_format {
                    "COMMONAPACHELOG" | "COMBINEDAPACHELOG" => {
                        format = if log_format == "COMMONAPACHELOG" {
                            "common"
                        } else {
                            "combined"
                        }
                        .into();
                        format_known = true;
                        mode = "aggregate";
                        note(
                            out,
                            &ok,
                            "LOGTOJSON sent one JSON object per line; tailrace sends per-client partial aggregates per window (which the tailrace aggregator reads). Other consumers of this stream need `mode: raw` (lines as written, several per record)",
                        );
                    }
                    "APACHEERRORLOG" | "SYSLOG" | "RFC3164SYSLOG" | "RFC5424SYSLOG" => note(
                        out,
                        &ok,
                        &format!("LOGTOJSON {log_format}: tailrace parses access logs only; this flow ships the lines as written (raw), not as JSON"),
                    ),
                    other => note(
                        out,
                        &ok,
                        &format!("LOGTOJSON logFormat `{other}` has no equivalent; lines are shipped as written (raw)"),
                    ),
                }
                if let Some(p) = opt.get("matchPattern").and_then(Value::as_str) {
                    note(
                        out,
                        &format!("{ok}.matchPattern"),
                        &format!("tailrace describes lines with the Apache LogFormat, not a regular expression (`{p}`): put the LogFormat from httpd.conf in `format`"),
                    );
                    format_known = false;
                }
                if opt.get("customFieldNames").is_some() {
                    note(
                        out,
                        &format!("{ok}.customFieldNames"),
                        "field names come from the LogFormat directives (see `tailrace parse --format ...`); client_field names the client's field",
                    );
                }
            }
            "SINGLELINE" => note(
                out,
                &ok,
                "SINGLELINE: tailrace ships single lines; there is nothing to join",
            ),
            "CSVTOJSON" => note(
                out,
                &ok,
                "CSVTOJSON has no equivalent: lines are shipped as written (raw), not as JSON",
            ),
            "ADDMETADATA" | "ADDEC2METADATA" => note(
                out,
                &ok,
                &format!("{name} has no equivalent: aggregate mode carries the host id (host_id) in every partial"),
            ),
            other => note(
                out,
                &ok,
                &format!("{other} has no equivalent; ignored"),
            ),
        }
    }
    if !format_known {
        note(
            out,
            "format",
            "check that this is the LogFormat your server writes (raw mode ships lines as written; aggregate mode parses them with it)",
        );
    }

    let mut lines: Vec<String> = Vec::new();
    let mut start_at = None;
    let mut linger = None;
    let mut partition_key = "random";
    for (k, v) in flow {
        match k.as_str() {
            "filePattern" | "kinesisStream" | "dataProcessingOptions" => {}
            "initialPosition" => match v.as_str() {
                Some("START_OF_FILE") => start_at = Some("beginning"),
                Some("END_OF_FILE") => start_at = Some("end"),
                _ => return Err("`initialPosition` must be START_OF_FILE or END_OF_FILE".into()),
            },
            "maxBufferAgeMillis" => {
                let ms = get_u64(k)?.unwrap_or(0);
                if mode == "raw" {
                    linger = Some(millis(ms));
                } else {
                    note(
                        out,
                        k,
                        "aggregate mode sends a window when it closes (window + allowed_lateness); there is no buffer age",
                    );
                }
            }
            "maxBufferSizeRecords" | "maxBufferSizeBytes" | "publishQueueCapacity" => note(
                out,
                k,
                "no equivalent: tailrace fills each PutRecords call up to Kinesis' limits (500 records, 5 MiB) and records up to max_record_bytes",
            ),
            "partitionKeyOption" => match v.as_str() {
                Some("RANDOM") => partition_key = "random",
                Some("DETERMINISTIC") => note(
                    out,
                    k,
                    "DETERMINISTIC (a hash of each record's data) has no equivalent; `random` spreads records over all shards, `host_id` keeps one host on one shard",
                ),
                _ => return Err("`partitionKeyOption` must be RANDOM or DETERMINISTIC".into()),
            },
            "multiLineStartPattern" => note(
                out,
                k,
                "no equivalent: tailrace reads one record per line (access logs have no multi-line records)",
            ),
            "skipHeaderLines" => note(
                out,
                k,
                "no equivalent: header lines are shipped in raw mode and counted as unparsed in aggregate mode",
            ),
            "truncatedRecordTerminator" => note(
                out,
                k,
                "no equivalent: lines longer than max_line_bytes are truncated and counted, without a terminator",
            ),
            "fileFooterPattern"
            | "retryInitialBackoffMillis"
            | "retryMaxBackoffMillis"
            | "waitOnFullPublishQueueMillis"
            | "waitOnEmptyPublishQueueMillis"
            | "waitOnFullRetryQueueMillis"
            | "minTimeBetweenFilePollsMillis"
            | "maxTimeBetweenFileTrackerRefreshMillis"
            | "log.emitInternalMetrics" => note(
                out,
                k,
                "no equivalent: tailrace handles retries, back-off and file polling itself",
            ),
            _ => note(out, k, "not a key tailrace knows how to map; ignored"),
        }
    }

    let base = sanitize(&stream);
    let mut name = base.clone();
    let mut n = 2;
    while names.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    names.push(name.clone());

    lines.push(format!("- name: {}", yaml_str(&name)));
    lines.push(format!("  paths: [{}]", yaml_quoted(&pattern)));
    lines.push(format!("  format: {}", yaml_str(&format)));
    lines.push(format!("  stream: {}", yaml_str(&stream)));
    lines.push(format!("  mode: {mode}"));
    if let Some(s) = start_at {
        lines.push(format!("  start_at: {s}"));
    }
    lines.push(format!("  partition_key: {partition_key}"));
    if let Some(l) = linger {
        lines.push(format!("  linger: {l}"));
    }
    for n in &notes {
        out.line(&format!("  {n}"));
    }
    for l in &lines {
        out.line(&format!("  {l}"));
    }
    Ok(true)
}

/// Milliseconds as a tailrace duration.
fn millis(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// A flow name from a stream name or ARN: letters, digits, `-`, `_`, `.`.
fn sanitize(stream: &str) -> String {
    let last = stream.rsplit('/').next().unwrap_or(stream);
    let s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "flow".into()
    } else {
        s
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A YAML scalar: plain when that is unambiguous, else double-quoted.
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_string()
    } else {
        yaml_quoted(s)
    }
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn yaml_quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// serde_json appends ` at line L column C`; the position is printed in front.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Render the summary printed on stderr.
pub fn summary(notes: &[String]) -> String {
    let mut s = String::new();
    if notes.is_empty() {
        s.push_str("tailrace import-kinesis-agent: every key has an equivalent\n");
        return s;
    }
    let _ = writeln!(
        s,
        "tailrace import-kinesis-agent: {} difference{} (also as NOTE comments in the output):",
        notes.len(),
        if notes.len() == 1 { "" } else { "s" }
    );
    for n in notes {
        let _ = writeln!(s, "  - {n}");
    }
    s
}
