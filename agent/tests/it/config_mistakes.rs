//! Every kind of mistake in a config file gets one precise message:
//! `file:line:column: key path: what was expected`, and a file with several
//! mistakes gets all of them at once. The messages are asserted exactly,
//! since they are the interface `tailrace check` offers a person.

use std::path::Path;

use tailrace_agent::config;

/// One valid flow; tests append keys to it (at 4 spaces) or more flows.
const FLOW: &str = "flows:
  - name: web
    paths: [/var/log/a.log]
    format: combined
    stream: s
";

fn check(text: &str) -> String {
    match config::Validated::parse(Path::new("t.yaml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn with(extra: &str) -> String {
    format!("{FLOW}{extra}")
}

#[test]
fn valid_flow_is_accepted() {
    config::Validated::parse(Path::new("t.yaml"), FLOW).expect("valid");
}

#[test]
fn yaml_syntax_error() {
    assert_eq!(
        check("flows:\n  - name: web\n    paths: [/var/log/a.log\n    format: combined\n"),
        "t.yaml:4:11: invalid YAML: illegal placement of ':' indicator"
    );
}

#[test]
fn tab_indentation_names_every_tabbed_line() {
    assert_eq!(
        check("flows:\n  - name: web\n\tpaths: [/var/log/a.log]\n\tformat: combined\n"),
        "t.yaml:3:1: tab in indentation: YAML indents with spaces only\n\
         t.yaml:4:1: tab in indentation: YAML indents with spaces only"
    );
}

#[test]
fn unknown_key_suggests_the_nearest() {
    assert_eq!(
        check(&with("    allowed_latness: 1m\n")),
        "t.yaml:6:5: flows[0].allowed_latness: unknown key `allowed_latness`; did you mean `allowed_lateness`?"
    );
    assert_eq!(
        check(&format!("statedir: /x\n{FLOW}")),
        "t.yaml:1:1: statedir: unknown key `statedir`; did you mean `state_dir`?"
    );
    assert_eq!(
        check(&format!("aws:\n  zone: x\n{FLOW}")),
        "t.yaml:2:3: aws.zone: unknown key `zone`; expected one of: endpoint_url, region"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        check("flows:\n  - name: web\n    paths: /var/log/a.log\n    format: combined\n    stream: s\n    trusted_proxies: true\n"),
        "t.yaml:3:12: flows[0].paths: expected a list of text values, got `/var/log/a.log`\n\
         t.yaml:6:22: flows[0].trusted_proxies: expected a whole number of 0 or more, or trusted proxy networks like `10.0.0.0/8`, got `true`"
    );
    assert_eq!(
        check("flows: web\n"),
        "t.yaml:1:8: flows: expected a list, got `web`"
    );
    assert_eq!(
        check("just text\n"),
        "t.yaml:1:1: expected a mapping (`key: value` lines), got `just text`"
    );
}

#[test]
fn bad_enum_value_suggests_the_nearest() {
    assert_eq!(
        check(&with("    mode: agregate\n")),
        "t.yaml:6:11: flows[0].mode: expected `raw` or `aggregate`, got `agregate`; did you mean `aggregate`?"
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        check(&with("    window: 5 minutes please\n    linger: 30\n")),
        "t.yaml:6:13: flows[0].window: expected a duration like `30s`, `5m` or `1h`, got `5 minutes please`\n\
         t.yaml:7:13: flows[0].linger: expected a duration with a unit, like `30s`, `5m` or `1h`, got `30`"
    );
}

#[test]
fn bad_size() {
    assert_eq!(
        check(&with("    max_line_bytes: 4 parsecs\n")),
        "t.yaml:6:21: flows[0].max_line_bytes: expected a size like `512 KiB` or `4 MiB` (units: B, KiB, MiB, GiB, kB, MB, GB), not `parsecs`, got `4 parsecs`"
    );
}

#[test]
fn negative_numbers() {
    assert_eq!(
        check(&with(
            "    trusted_proxies: -1\n    max_groups_per_window: -5\n    max_line_bytes: -1\n"
        )),
        "t.yaml:6:22: flows[0].trusted_proxies: expected a whole number of 0 or more, or trusted proxy networks like `10.0.0.0/8`, got `-1`\n\
         t.yaml:7:28: flows[0].max_groups_per_window: expected a whole number of 0 or more, got `-5`\n\
         t.yaml:8:21: flows[0].max_line_bytes: expected a size of at least 0 bytes, got `-1`"
    );
}

#[test]
fn empty_paths() {
    assert_eq!(
        check("flows:\n  - name: web\n    paths: []\n    format: combined\n    stream: s\n  - name: web2\n    paths: [\"\"]\n    format: combined\n    stream: s\n"),
        "t.yaml:3:12: flows[0].paths: expected at least one glob\n\
         t.yaml:7:13: flows[1].paths[0]: expected an absolute glob, got an empty path"
    );
}

#[test]
fn relative_paths() {
    assert_eq!(
        check("state_dir: state\nflows:\n  - name: web\n    paths: [/var/log/a.log, var/log/b.log]\n    format: combined\n    stream: s\n"),
        "t.yaml:1:12: state_dir: expected an absolute path (the service's working directory is not yours)\n\
         t.yaml:4:29: flows[0].paths[1]: `var/log/b.log` must be an absolute path (the service's working directory is not yours)"
    );
}

#[test]
fn bad_glob() {
    assert_eq!(
        check("flows:\n  - name: web\n    paths: [\"/var/log/[a.log\"]\n    format: combined\n    stream: s\n    exclude: [\"[\"]\n"),
        "t.yaml:3:13: flows[0].paths[0]: `/var/log/[a.log` is not a valid glob: Pattern syntax error near position 9: invalid range pattern\n\
         t.yaml:6:15: flows[0].exclude[0]: `[` is not a valid glob: Pattern syntax error near position 0: invalid range pattern"
    );
}

#[test]
fn bad_logformat_points_at_the_directive() {
    // Line 4 is `    format: "%h \"%r\" %Z %t"`: %Z is at column 24.
    let text = "flows:\n  - name: web\n    paths: [/var/log/a.log]\n    format: \"%h \\\"%r\\\" %Z %t\"\n    stream: s\n";
    let message = check(text);
    assert!(
        message.starts_with(
            "t.yaml:4:24: flows[0].format: LogFormat does not compile at character 9 of the format: unknown directive %Z (expected one of %a %A"
        ),
        "{message}"
    );
    let line4 = text.lines().nth(3).expect("line 4");
    assert_eq!(&line4[23..25], "%Z");
    // Single-quoted: `%{` at characters 4-5 is never closed; column 18 is the `{`.
    assert_eq!(
        check("flows:\n  - name: web\n    paths: [/var/log/a.log]\n    format: '%h %{x'\n    stream: s\n")
            .lines()
            .next()
            .and_then(|l| l.split(": ").next()),
        Some("t.yaml:4:18")
    );
}

#[test]
fn client_field_the_format_lacks() {
    assert_eq!(
        check(&with("    mode: aggregate\n    client_field: x_forwarded_for\n")),
        "t.yaml:7:19: flows[0].client_field: the format has no field `x_forwarded_for` (it has: client, ident, user, time, request, status, bytes, referer, user_agent)"
    );
}

#[test]
fn duplicate_flow_names() {
    assert_eq!(
        check(&with("  - name: web\n    paths: [/var/log/b.log]\n    format: combined\n    stream: s\n")),
        "t.yaml:6:11: flows[1].name: flow name `web` is already used by flows[0]; names must be unique"
    );
}

#[test]
fn two_flows_on_the_same_stream_and_file() {
    assert_eq!(
        check(&with("  - name: web2\n    paths: [/var/log/a.log]\n    format: common\n    stream: s\n")),
        "t.yaml:7:13: flows[1].paths[0]: flow `web` already sends `/var/log/a.log` to stream `s`: every line would be sent twice"
    );
    // The same file to another stream is a fan-out, not a mistake.
    config::Validated::parse(
        Path::new("t.yaml"),
        &with(
            "  - name: web2\n    paths: [/var/log/a.log]\n    format: common\n    stream: other\n",
        ),
    )
    .expect("fan-out is fine");
}

#[test]
fn window_must_divide_an_hour() {
    assert_eq!(
        check(&with("    mode: aggregate\n    window: 7m\n")),
        "t.yaml:7:13: flows[0].window: expected a window that divides an hour (1m, 2m, 3m, 4m, 5m, 6m, 10m, 12m, 15m, 20m, 30m or 1h), got 7m"
    );
    assert_eq!(
        check(&with("    mode: aggregate\n    window: 2h\n")),
        "t.yaml:7:13: flows[0].window: expected whole seconds between 1m and 1h, got 2h"
    );
}

#[test]
fn max_record_bytes_over_the_kinesis_limit() {
    assert_eq!(
        check(&with("    max_record_bytes: 2 MiB\n")),
        "t.yaml:6:23: flows[0].max_record_bytes: expected between 1 KiB and 1 MiB (Kinesis' limit), got 2097152"
    );
}

#[test]
fn missing_required_key() {
    assert_eq!(
        check("flows:\n  - name: web\n    paths: [/var/log/a.log]\n    format: combined\n"),
        "t.yaml:2:5: flows[0]: missing required key `stream`: Kinesis stream name (or ARN)"
    );
    assert_eq!(
        check("state_dir: /var/lib/tailrace\n"),
        "t.yaml:1:1: <top level>: missing required key `flows`: The log flows: which files, how to parse them, where to send them"
    );
}

#[test]
fn duplicate_key() {
    assert_eq!(
        check(&with("    stream: t\n")),
        "t.yaml:6:5: invalid YAML: key `stream` appears twice in the same mapping"
    );
}

#[test]
fn empty_file() {
    for text in ["", "\n\n", "# only a comment\n", "---\n"] {
        assert_eq!(
            check(text),
            "t.yaml:1:1: the file is empty: expected a mapping with at least `flows`",
            "{text:?}"
        );
    }
}

#[test]
fn every_mistake_is_reported_at_once() {
    let text = "flows:
  - name: web
    paths: [/var/log/a.log]
    format: combined
    stream: s
    start_at: middle
    allowed_latness: 1m
    window: 5 min please
    partition_key: \"\"
  - name: x
    paths: [/var/log/b.log]
    format: combined
";
    assert_eq!(
        check(text),
        "t.yaml:6:15: flows[0].start_at: expected `beginning` or `end`, got `middle`\n\
         t.yaml:7:5: flows[0].allowed_latness: unknown key `allowed_latness`; did you mean `allowed_lateness`?\n\
         t.yaml:8:13: flows[0].window: expected a duration like `30s`, `5m` or `1h`, got `5 min please`\n\
         t.yaml:9:20: flows[0].partition_key: expected a non-empty value\n\
         t.yaml:10:5: flows[1]: missing required key `stream`: Kinesis stream name (or ARN)"
    );
}

#[test]
fn check_exits_2_and_prints_to_stderr() {
    let dir = std::env::temp_dir().join(format!("tailrace-mistakes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("bad.yaml");
    std::fs::write(&file, with("    allowed_latness: 1m\n")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tailrace"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:6:5: flows[0].allowed_latness: unknown key `allowed_latness`; did you mean `allowed_lateness`?\n",
            file.display()
        )
    );
}

#[test]
fn dimension_values_cloudwatch_would_refuse() {
    let e = check(&with("    mode: aggregate\n    service: \"caf\u{e9}\"\n"));
    assert!(
        e.starts_with("t.yaml:7:") && e.contains("flows[0].service: CloudWatch would refuse it as the `Service` dimension: character 4"),
        "{e}"
    );
    let long = "s".repeat(1025);
    let e = check(&with(&format!("    service: {long}\n")));
    assert!(e.contains("1025 characters long"), "{e}");
    let e = check(&format!("host_id: \"a\\tb\"\n{FLOW}"));
    assert!(
        e.starts_with("t.yaml:1:")
            && e.contains("host_id: not usable as the CloudWatch `Host` dimension"),
        "{e}"
    );
}

#[test]
fn trusted_proxy_networks() {
    let ok = format!("{FLOW}    client_field: referer\n    trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 192.168.1.7]\n");
    let v = config::Validated::parse(Path::new("t.yaml"), &ok).expect("valid");
    assert!(matches!(
        &v.flows[0].proxy_trust,
        tailrace_agent::config::proxies::ProxyTrust::Networks(n) if n.len() == 3
    ));
    let e = check(&with("    trusted_proxies: [10.0.0.0/8, proxy.internal]\n"));
    assert!(
        e.starts_with("t.yaml:6:") && e.contains("flows[0].trusted_proxies[1]: `proxy.internal` is not an IP address or a CIDR network"),
        "{e}"
    );
    let e = check(&with("    trusted_proxies: 10.0.0.0/33\n"));
    assert!(
        e.contains("flows[0].trusted_proxies: `10.0.0.0/33` is not an IP address"),
        "{e}"
    );
    // Networks need the peer's address in the format to check it.
    let e = check(
        "flows:\n  - name: web\n    paths: [/var/log/a.log]\n    format: '%t \"%r\" %>s %b \"%{X-Forwarded-For}i\"'\n    stream: s\n    client_field: x_forwarded_for\n    trusted_proxies: [10.0.0.0/8]\n",
    );
    assert!(
        e.contains("trusted networks need the peer's address"),
        "{e}"
    );
}

#[test]
fn brace_globs_and_time_zones() {
    let e = check("flows:\n  - name: web\n    paths: [\"/var/log/{a,b}.log\"]\n    format: combined\n    stream: s\n");
    assert!(
        e.starts_with("t.yaml:3:")
            && e.contains(
                "flows[0].paths[0]: `/var/log/{a,b}.log` uses brace alternatives `{a,b}`"
            ),
        "{e}"
    );
    let e = check(&with("    timezone: Europe/Atlantis\n"));
    assert!(
        e.starts_with("t.yaml:6:")
            && e.contains("flows[0].timezone: unknown time zone `Europe/Atlantis`"),
        "{e}"
    );
    let v = config::Validated::parse(Path::new("t.yaml"), &with("    timezone: Europe/Paris\n"))
        .expect("valid");
    assert_eq!(v.flows[0].format.zone().label(), "Europe/Paris");
}
