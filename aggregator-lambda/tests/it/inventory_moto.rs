//! The inventory updater from the aggregator's side, against moto_server:
//! the `tailrace-aggregator inventory sync` command (dry run, write, nothing
//! to do, a file a person broke), and end to end, how soon traffic from a
//! newly launched instance is attributed to its application by the
//! aggregator's join once the launch event reached the updater.

use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::*;
use anyhow::{bail, Context, Result};
use serde_json::json;
use tailrace_aggregator::config::Settings;
use tailrace_aggregator::entry::inventory::{updater, validate};
use tailrace_aggregator::ingest::batch::InputRecord;
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_tests::ec2::{ami, launch_one as launch, owner_tags};
use tailrace_tests::{get_object, metric_sum, put_object, Moto, Piped};

/// People's rows: the updater must keep them byte for byte.
const HAND: &str =
    "ip_or_cidr,application,contact\n# partners\n192.0.2.0/24,partner-api,\"Partners, Inc.\"\n";

/// The metadata file's text and ETag.
async fn read(s3: &aws_sdk_s3::Client) -> Result<(String, String)> {
    get_object(s3, META_BUCKET, META_KEY).await
}

/// `tailrace-aggregator inventory sync` with `extra` arguments; killed
/// after 60 s.
fn sync(moto: &Moto, extra: &[&str]) -> Result<Output> {
    Piped::spawn(aggregator_cli(moto, &["inventory", "sync"]).args(extra))?
        .wait(Duration::from_secs(60))
        .context("inventory sync did not finish within 60 s")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_sync_cli_dry_run_write_and_a_broken_file() -> Result<()> {
    let moto = Moto::start()?;
    let sdk = moto.sdk_config().await;
    let s3 = metadata_file(&moto, HAND).await?;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ami = ami(&ec2).await?;
    let (web, web_ip) = launch(&ec2, &ami, &owner_tags("web", "Doe, \"Jane\"")).await?;
    let (bare, _) = launch(&ec2, &ami, &[("Name", "bastion")]).await?;
    let (_, etag0) = read(&s3).await?;

    // --dry-run: the diff and the new file on stdout; nothing written.
    let out = sync(&moto, &["--dry-run"])?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let row = format!("{web_ip},web,\"Doe, \"\"Jane\"\"\"");
    assert!(stdout.contains(&format!("+ {row}    # {web}")), "{stdout}");
    assert!(stdout.contains(&format!("? {bare}: ")), "{stdout}");
    assert!(stdout.contains("dry run: nothing written"), "{stdout}");
    assert_eq!(read(&s3).await?, (HAND.to_string(), etag0));

    // For real: the file read back has the row and the people's rows.
    let out = sync(&moto, &[])?;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("{META_URL}: written")), "{stdout}");
    let (file, etag1) = read(&s3).await?;
    assert!(file.starts_with(HAND), "{file}");
    let parsed = Metadata::parse(&file);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let info = parsed
        .metadata
        .lookup(web_ip.parse()?)
        .context("web's row")?;
    assert_eq!(
        (&*info.application, &*info.contact),
        ("web", "Doe, \"Jane\"")
    );
    assert_eq!(parsed.metadata.len(), 2, "{file}");

    // Nothing changed: nothing written.
    let out = sync(&moto, &[])?;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("{META_URL}: unchanged")));
    assert_eq!(read(&s3).await?.1, etag1);

    // A person breaks a row: exit 1, a line naming the row, the file kept.
    let broken = format!("{HAND}10.0.0.0/33,vpn,netops\n");
    put_object(&s3, META_BUCKET, META_KEY, &broken).await?;
    let out = sync(&moto, &[])?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("row 4") && stderr.contains("the file is left as it is"),
        "{stderr}"
    );
    assert_eq!(read(&s3).await?.0, broken);
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One `combined` line from `ip` at `time`, as a raw-line record.
fn line(seq: u64, ip: &str, time: i64) -> InputRecord {
    record(
        seq,
        tailrace_tests::loggen::combined_line(ip, time, "/", 200, 10, "test").into_bytes(),
    )
}

/// Requests of `[Service=raw, SourceApplication=app]` summed over the
/// five-minute windows `from..=to` (Unix seconds).
async fn requests(cw: &aws_sdk_cloudwatch::Client, app: &str, from: i64, to: i64) -> Result<f64> {
    let mut sum = 0.0;
    let mut w = from / 300 * 300;
    while w <= to {
        let dims = [("Service", "raw"), ("SourceApplication", app)];
        sum += metric_sum(cw, NAMESPACE, "Requests", &dims, w, 300)
            .await?
            .0;
        w += 300;
    }
    Ok(sum)
}

/// Launch → the updater's Lambda handler on the Auto Scaling launch event →
/// the aggregator's handler (metadata TTL 1 s) on raw lines from the new
/// address, one batch every 100 ms. Lines joined before the aggregator read
/// the new file are `unknown`; from the first attributed batch on, every line
/// is the instance's application. The delays are printed (docs/INVENTORY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_instance_is_attributed_once_the_updater_wrote_the_file() -> Result<()> {
    let moto = Moto::start()?;
    let sdk = moto.sdk_config().await;
    metadata_file(&moto, HAND).await?;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let ami = ami(&ec2).await?;
    const TTL: Duration = Duration::from_secs(1);
    let aggregator = handler_via(&moto.endpoint(), &moto.endpoint(), TTL, quick_retry(3)).await?;
    let env = |name: &str| match name {
        "TAILRACE_METADATA" => Some(META_URL.to_string()),
        _ => None,
    };
    let updater = updater(&sdk, &Settings::from_lookup(env)?, env)?;
    let first = unix_now();
    let mut seq = 0u64;
    // The aggregator has read the file before the launch (and caches it).
    seq += 1;
    let warm = aggregator
        .handle(&[line(seq, "192.0.2.7", unix_now())])
        .await;
    assert!(warm.failed.is_empty());

    let launched = Instant::now();
    let (id, ip) = launch(&ec2, &ami, &owner_tags("fresh", "fresh@example.com")).await?;
    // The instance serves before its launch event reaches the updater.
    seq += 1;
    let early = aggregator.handle(&[line(seq, &ip, unix_now())]).await;
    assert!(early.failed.is_empty());
    let mut unknown = 1.0;

    let event = json!({
        "version": "0", "id": "3e3c153a-8339-4e30-8c35-687ebef853fe",
        "detail-type": "EC2 Instance Launch Successful", "source": "aws.autoscaling",
        "account": "123456789012", "time": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "region": "us-east-1", "resources": [],
        "detail": {"StatusCode": "InProgress", "AutoScalingGroupName": "fresh-asg", "EC2InstanceId": id}
    });
    let answer = tailrace_inventory::lambda::handle(&updater, &event, &validate).await?;
    assert_eq!(answer["added"], 1, "{answer}");
    let written = launched.elapsed();

    // One line per batch until a batch is attributed to `fresh`.
    let deadline = Instant::now() + Duration::from_secs(20);
    let attributed = loop {
        seq += 1;
        let out = aggregator.handle(&[line(seq, &ip, unix_now())]).await;
        assert!(out.failed.is_empty());
        if requests(&cw, "fresh", first, unix_now()).await? >= 1.0 {
            break launched.elapsed();
        }
        unknown += 1.0;
        if Instant::now() > deadline {
            bail!("no line from {ip} attributed to `fresh` within 20 s of the file's write");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A few more lines: all attributed.
    for _ in 0..5 {
        seq += 1;
        let out = aggregator.handle(&[line(seq, &ip, unix_now())]).await;
        assert!(out.failed.is_empty());
    }
    let last = unix_now();
    assert_eq!(requests(&cw, "fresh", first, last).await?, 6.0);
    assert_eq!(requests(&cw, "unknown", first, last).await?, unknown);
    assert_eq!(requests(&cw, "partner-api", first, last).await?, 1.0);
    assert!(
        attributed <= written + TTL + Duration::from_secs(2),
        "attributed {attributed:?} after launch, file written at {written:?}, TTL {TTL:?}"
    );
    eprintln!(
        "inventory e2e: file written {:.0} ms after RunInstances returned; first line attributed to `fresh` {:.0} ms after it (metadata TTL {TTL:?}; {unknown} line(s) `unknown` before)",
        written.as_secs_f64() * 1e3,
        attributed.as_secs_f64() * 1e3
    );
    Ok(())
}
