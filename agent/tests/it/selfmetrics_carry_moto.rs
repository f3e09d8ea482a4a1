//! Self-metrics survive a CloudWatch outage: increases counted while
//! PutMetricData fails are carried into the next successful publication, so
//! the sums in CloudWatch (moto_server on 127.0.0.1) still equal the counts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use tailrace_agent::config::HealthConfig;
use tailrace_agent::observe::cloudwatch::Publisher;
use tailrace_agent::observe::registry::{FlowEntry, Registry};
use tailrace_agent::shared::counters::FlowStats;
use tailrace_tests::{free_port, metric_sum, sdk_config_for, Moto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increases_counted_during_an_outage_are_published_afterwards() -> Result<()> {
    let port = free_port()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let sdk = sdk_config_for(&endpoint).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let registry = Arc::new(Registry::new(HealthConfig::default()));
    let stats = Arc::new(FlowStats::started_now());
    registry.insert(
        "web",
        FlowEntry {
            stats: stats.clone(),
            stream: "s".into(),
            stall_after: Duration::from_secs(600),
        },
    );
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let mut publisher = Publisher::new(cloudwatch.clone(), "Carry".into(), None, registry);

    // Nothing listens: the publication fails and counts nothing as sent.
    stats.lines_read.add(70);
    ensure!(
        publisher.publish_once().await.is_err(),
        "publishing to nothing must fail"
    );
    stats.lines_read.add(30);

    let _moto = Moto::start_on(port)?;
    let n = publisher.publish_once().await.map_err(anyhow::Error::msg)?;
    ensure!(n > 0, "datums published");
    stats.lines_read.add(5);
    publisher.publish_once().await.map_err(anyhow::Error::msg)?;
    let (sum, samples) = metric_sum(
        &cloudwatch,
        "Carry",
        "LinesRead",
        &[("Flow", "web")],
        started - 120,
        3600,
    )
    .await?;
    ensure!(
        sum == 105.0,
        "LinesRead sum {sum}, want 105 (70 + 30 carried, then 5)"
    );
    ensure!(
        samples == 2.0,
        "two successful publications, got {samples} datapoints"
    );
    Ok(())
}
