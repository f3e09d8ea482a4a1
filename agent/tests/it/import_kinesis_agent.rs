//! `tailrace import-kinesis-agent` on Kinesis Agent configs (the agent's own
//! example files and a documented-options one): the YAML is what the golden
//! files say, `tailrace check` accepts it, every difference is a NOTE and on
//! stderr, secrets are not copied, and bad input gets a precise error.
//!
//! Regenerate the golden `*.yaml` files with
//! `TAILRACE_BLESS=1 cargo test -p tailrace-agent --test import_kinesis_agent`
//! and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use tailrace_agent::commands::import::{convert, Imported};
use tailrace_agent::config;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kinesis-agent")
}

fn import(name: &str) -> Imported {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture");
    convert(name, &text).expect("converts")
}

/// The output equals the golden file and passes `tailrace check`'s loader.
fn assert_golden(name: &str, imported: &Imported) {
    let golden = fixtures().join(name.replace(".json", ".yaml"));
    if std::env::var_os("TAILRACE_BLESS").is_some() {
        std::fs::write(&golden, &imported.yaml).expect("write golden");
    }
    let expected = std::fs::read_to_string(&golden).expect("golden file");
    assert_eq!(imported.yaml, expected, "{name}");
    if let Err(e) = config::Validated::parse(Path::new("imported.yaml"), &imported.yaml) {
        panic!(
            "tailrace check rejects the import of {name}:\n{e}\n---\n{}",
            imported.yaml
        );
    }
}

#[test]
fn agent_example_config() {
    let out = import("example-agent.json");
    assert_golden("example-agent.json", &out);
    assert!(!out.yaml.contains("SECRETKEY") && !out.yaml.contains("ACCESSKEY"));
    assert_eq!(
        out.notes,
        [
            "awsAccessKeyId: not copied: tailrace takes credentials from the AWS SDK's default chain (instance profile, AWS_* environment, ~/.aws); never put keys in the config",
            "awsSecretAccessKey: not copied: tailrace takes credentials from the AWS SDK's default chain (instance profile, AWS_* environment, ~/.aws); never put keys in the config",
            "checkpointFile: tailrace keeps its own checkpoints in state_dir; the Kinesis Agent's cannot be carried over (see docs/MIGRATING.md)",
            "cloudwatch.emitMetrics: no equivalent: tailrace logs to the journal and reports per-file progress with `tailrace status`",
            "cloudwatch.endpoint: no equivalent: tailrace logs to the journal and reports per-file progress with `tailrace status`",
            "flows[0].dataProcessingOptions[0]: CSVTOJSON has no equivalent: lines are shipped as written (raw), not as JSON",
            "flows[0].format: check that this is the LogFormat your server writes (raw mode ships lines as written; aggregate mode parses them with it)",
            "flows[1].dataProcessingOptions[0]: LOGTOJSON sent one JSON object per line; tailrace sends per-client partial aggregates per window (which the tailrace aggregator reads). Other consumers of this stream need `mode: raw` (lines as written, several per record)",
        ]
    );
    let v = config::Validated::parse(Path::new("imported.yaml"), &out.yaml).expect("valid");
    assert_eq!(v.aws.region.as_deref(), Some("us-west-2"));
    assert_eq!(v.flows.len(), 2);
    assert_eq!(v.flows[1].config.start_at, config::StartAt::Beginning);
    assert_eq!(v.flows[1].config.mode, config::Mode::Aggregate);
    assert_eq!(v.flows[1].format.spec(), tailrace_logformat::COMMON);
}

#[test]
fn agent_release_config_drops_the_firehose_flow() {
    let out = import("release-agent.json");
    assert_golden("release-agent.json", &out);
    assert!(out.notes.iter().any(|n| n.starts_with(
        "flows[1]: deliveryStream `yourdeliverystream` (Firehose) has no equivalent"
    )));
    let v = config::Validated::parse(Path::new("imported.yaml"), &out.yaml).expect("valid");
    assert_eq!(v.flows.len(), 1);
    assert_eq!(v.flows[0].config.stream, "yourkinesisstream");
    assert_eq!(
        v.flows[0].config.partition_key,
        config::PartitionKey::Random
    );
}

#[test]
fn documented_options_are_mapped_or_noted() {
    let out = import("web-hosts.json");
    assert_golden("web-hosts.json", &out);
    let v = config::Validated::parse(Path::new("imported.yaml"), &out.yaml).expect("valid");
    assert_eq!(v.aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(v.shutdown_timeout, std::time::Duration::from_secs(20));
    let names: Vec<&str> = v.flows.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["apache-logs", "apache-logs-2", "apache-errors"]);
    assert_eq!(v.flows[2].config.mode, config::Mode::Raw);
    assert_eq!(v.flows[2].config.linger, std::time::Duration::from_secs(60));
    for key in [
        "assumeRoleARN:",
        "assumeRoleExternalId:",
        "flows[0].partitionKeyOption: DETERMINISTIC",
        "flows[0].maxBufferAgeMillis:",
        "flows[0].maxBufferSizeRecords:",
        "flows[1].dataProcessingOptions[0].matchPattern:",
        "flows[1].dataProcessingOptions[0].customFieldNames:",
        "flows[2].multiLineStartPattern:",
        "flows[2].skipHeaderLines:",
        "flows[2].truncatedRecordTerminator:",
        "flows[2].dataProcessingOptions[0]: SINGLELINE",
        "flows[2].dataProcessingOptions[1]: LOGTOJSON APACHEERRORLOG",
    ] {
        assert!(
            out.notes.iter().any(|n| n.starts_with(key)),
            "no note for {key}: {:#?}",
            out.notes
        );
    }
    // Every note is also a comment in the YAML.
    assert_eq!(
        out.yaml.matches("# NOTE: ").count(),
        out.notes.len(),
        "{}",
        out.yaml
    );
}

#[test]
fn invalid_json_names_line_and_column() {
    let text = std::fs::read_to_string(fixtures().join("trailing-comma.json")).expect("fixture");
    let err = convert("agent.json", &text)
        .expect_err("invalid")
        .to_string();
    assert_eq!(err, "agent.json:4:3: invalid JSON: trailing comma");
    let err = convert("agent.json", "[1, 2]")
        .expect_err("not an object")
        .to_string();
    assert_eq!(
        err,
        "agent.json: (top level): expected a JSON object `{ ... }`"
    );
    let err = convert("agent.json", r#"{"flows": {"filePattern": "/x"}}"#)
        .expect_err("flows not a list")
        .to_string();
    assert_eq!(err, "agent.json: flows: expected a list of flows `[ ... ]`");
    let err = convert("agent.json", r#"{"flows": [{"kinesisStream": "s"}]}"#)
        .expect_err("no filePattern")
        .to_string();
    assert_eq!(err, "agent.json: flows[0]: missing `filePattern`");
    let err = convert(
        "agent.json",
        r#"{"flows": [{"filePattern": "/x", "kinesisStream": "s", "initialPosition": "MIDDLE"}]}"#,
    )
    .expect_err("bad initialPosition")
    .to_string();
    assert_eq!(
        err,
        "agent.json: flows[0]: `initialPosition` must be START_OF_FILE or END_OF_FILE"
    );
}

#[test]
fn the_binary_prints_yaml_on_stdout_and_the_summary_on_stderr() {
    let bin = env!("CARGO_BIN_EXE_tailrace");
    let out = Command::new(bin)
        .current_dir(fixtures())
        .args(["import-kinesis-agent", "release-agent.json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let yaml = String::from_utf8(out.stdout).expect("utf-8");
    let expected = std::fs::read_to_string(fixtures().join("release-agent.yaml")).expect("golden");
    assert_eq!(yaml, expected);
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert!(
        stderr.starts_with("tailrace import-kinesis-agent: 3 differences"),
        "{stderr}"
    );

    // What it printed passes `tailrace check`.
    let dir = std::env::temp_dir().join(format!("tailrace-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("tailrace.yaml");
    std::fs::write(&file, &yaml).expect("write");
    let check = Command::new(bin)
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(check.status.success(), "{check:?}");

    let missing = Command::new(bin)
        .args(["import-kinesis-agent", "/nonexistent/agent.json"])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(2));
}
