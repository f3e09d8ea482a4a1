//! `tailrace-fleet` runs on a small fleet and its counts add up: every
//! simulated request is counted by the aggregator's merge, every tailrace
//! partial is decoded, every raw and Kinesis Agent line is counted, nothing is
//! poison. Not a timing test: the figures it prints are not checked.

use std::process::Command;

#[test]
fn small_fleet_counts_add_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_tailrace-fleet"))
        .args([
            "--hosts",
            "40",
            "--windows",
            "2",
            "--clients",
            "500",
            "--applications",
            "12",
            "--rate-min",
            "1",
            "--rate-max",
            "4",
            "--raw-share",
            "0.1",
            "--agent-share",
            "0.1",
            "--late-share",
            "0.3",
            "--batch",
            "50",
            "--publish",
            "none",
        ])
        .output()
        .expect("run tailrace-fleet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().expect("summary line");
    let summary: serde_json::Value = serde_json::from_str(json).expect("summary JSON");
    let windows = summary["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2);
    for w in windows {
        let n = |k: &str| w[k].as_u64().unwrap_or_else(|| panic!("{k} in {w}"));
        assert!(
            n("partial_records") > 0 && n("late_partial_records") > 0,
            "{w}"
        );
        assert!(n("raw_records") > 0 && n("agent_records") > 0, "{w}");
        assert_eq!(
            n("records"),
            n("partial_records")
                + n("late_partial_records")
                + n("raw_records")
                + n("agent_records")
        );
        assert_eq!(n("counted_requests"), n("requests"), "{w}");
        assert_eq!(
            n("counted_tailrace_partials"),
            n("partial_records") + n("late_partial_records")
        );
        assert_eq!(n("poison"), 0);
        assert_eq!(n("failed"), 0);
        // Batches close at 50 records, or earlier at the 6 MB payload.
        assert!(n("batches") as f64 >= (n("records") as f64 / 50.0).ceil());
        assert!(n("datums") > 0 && n("calls") > 0);
    }
}
