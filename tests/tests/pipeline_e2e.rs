//! End to end, through the real servers: two agents in aggregate mode →
//! Kinesis (moto) → `tailrace-aggregator consume` → CloudWatch (moto).
//! Per (window, SourceApplication), Requests and Bytes read back with
//! GetMetricStatistics equal an independent count of the log files, with the
//! metadata join (CIDR, exact IP, IPv6, unknown) applied by hand.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use tailrace_tests::loggen::{now, Request, FORMAT};
use tailrace_tests::{bin, child_env, put_object, run_checked, s3_client, AgentDir, Moto};

const WINDOW: i64 = 300;
const METADATA: &str = "ip_or_cidr,application,contact\n# test mapping\n10.0.1.0/24,billing,billing@example.com\n10.0.1.7,billing-admin,admin@example.com\n2001:db8::/32,search,search@example.com\n";

/// The application the metadata above gives a client (most specific wins).
fn application(client: &str) -> &'static str {
    if client == "10.0.1.7" {
        "billing-admin"
    } else if client.starts_with("10.0.1.") {
        "billing"
    } else if client.starts_with("2001:db8:") {
        "search"
    } else {
        "unknown"
    }
}

fn requests(host: usize, base: i64) -> Vec<Request> {
    let clients = [
        "10.0.1.5",
        "10.0.1.7",
        "10.0.1.200",
        "2001:db8::10",
        "2001:db8:1::2",
        "192.0.2.50",
        "198.51.100.7",
    ];
    (0..900)
        .map(|i| Request {
            client: clients[(i * (host + 1)) % clients.len()].to_string(),
            time: base + (i as i64 * 3 * WINDOW) / 900,
            path: format!("/host{host}/{i}"),
            status: [200, 200, 302, 404, 503][i % 5],
            bytes: (i as u64 * 131) % 7000,
            micros: 500 + (i as u64 * 977) % 90_000,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_to_cloudwatch_match_an_independent_count() -> Result<()> {
    let (moto, _kinesis) = Moto::with_stream("e2e", 2).await?;
    let sdk = moto.sdk_config().await;
    let s3 = s3_client(&sdk);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    s3.create_bucket().bucket("meta").send().await?;
    put_object(&s3, "meta", "apps.csv", METADATA).await?;

    let base = (now() - 40 * 60).div_euclid(WINDOW) * WINDOW;
    // Independent count: (window, application) -> (requests, bytes).
    let mut truth: BTreeMap<(i64, &str), (u64, u64)> = BTreeMap::new();
    let mut agents = Vec::new();
    for host in 0..2 {
        let a = AgentDir::new(
            &format!("e2e-host{host}"),
            &format!("host-{host}"),
            &moto.endpoint(),
            &format!("    format: '{FORMAT}'\n    start_at: beginning\n    stream: e2e\n    mode: aggregate\n    service: checkout\n"),
        )?;
        let reqs = requests(host, base);
        let text: String = reqs.iter().map(Request::line).collect();
        fs::write(&a.log, text)?;
        for r in &reqs {
            let e = truth
                .entry((r.time.div_euclid(WINDOW) * WINDOW, application(&r.client)))
                .or_default();
            e.0 += 1;
            e.1 += r.bytes;
        }
        let agent = a.run(&bin("tailrace")?, "1")?;
        agents.push((a, agent));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (a, agent) in &mut agents {
        agent
            .stop(Duration::from_secs(25))
            .with_context(|| format!("agent logs in {}", a.dir.display()))?;
    }

    run_checked(
        Command::new(bin("tailrace-aggregator")?)
            .args(["consume", "--stream", "e2e"])
            .args(["--metadata", "s3://meta/apps.csv", "--endpoint-url"])
            .arg(moto.endpoint())
            .args(["--exit-when-idle", "3s"])
            .envs(child_env()),
        "tailrace-aggregator consume",
    )?;

    let start = aws_sdk_cloudwatch::primitives::DateTime::from_secs(base - WINDOW);
    let end = aws_sdk_cloudwatch::primitives::DateTime::from_secs(base + 6 * WINDOW);
    let apps = ["billing", "billing-admin", "search", "unknown"];
    for app in apps {
        for (metric, pick) in [("Requests", 0usize), ("Bytes", 1)] {
            // Query [Service, SourceApplication]: moto matches a dimension
            // filter against supersets, so [SourceApplication] alone would
            // add the per-service datums too.
            let got = cloudwatch
                .get_metric_statistics()
                .namespace("Tailrace")
                .metric_name(metric)
                .dimensions(
                    Dimension::builder()
                        .name("Service")
                        .value("checkout")
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("SourceApplication")
                        .value(app)
                        .build(),
                )
                .start_time(start)
                .end_time(end)
                .period(WINDOW as i32)
                .statistics(Statistic::Sum)
                .send()
                .await?;
            let mut by_window: BTreeMap<i64, u64> = BTreeMap::new();
            for p in got.datapoints() {
                let ts = p.timestamp().context("datapoint without timestamp")?.secs();
                *by_window.entry(ts).or_default() += p.sum().unwrap_or(0.0) as u64;
            }
            let want: BTreeMap<i64, u64> = truth
                .iter()
                .filter(|((_, a), _)| *a == app)
                .map(|((w, _), v)| (*w, if pick == 0 { v.0 } else { v.1 }))
                .filter(|(_, v)| *v > 0)
                .collect();
            ensure!(!want.is_empty(), "the scenario should give {app} traffic");
            ensure!(
                by_window == want,
                "{metric} for {app}: CloudWatch {by_window:?}, log files {want:?}"
            );
        }
    }
    for (a, _) in &agents {
        let _ = fs::remove_dir_all(&a.dir);
    }
    Ok(())
}
