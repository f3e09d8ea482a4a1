//! Shared by the moto tests: a fleet in moto's EC2 and Auto Scaling, the
//! aggregator's parser as validator, and an independent reading of the file.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_inventory::plan::FileError;
#[allow(unused_imports)]
pub use tailrace_tests::ec2::{ami, launch, owner_tags};

/// The aggregator's parser as the updater's validator: the file's errors.
/// (The aggregator's own copy, `tailrace_aggregator::entry::inventory::validate`,
/// is behind its `inventory` feature, which these tests do not turn on.)
pub fn validate(text: &str) -> Vec<FileError> {
    Metadata::parse(text)
        .errors
        .into_iter()
        .map(|e| FileError {
            row: e.row,
            reason: e.reason,
        })
        .collect()
}

/// People's rows the updater must keep.
pub const HAND: &str = "# people's rows: partners and VPN\nip_or_cidr,application,contact\n192.0.2.0/24,partner-api,\"Partners, Inc.\"\n10.8.0.0/16,vpn,netops@example.com\n";

/// moto with an empty bucket `bucket`: the server, its SDK config, and S3
/// and EC2 clients for it.
pub async fn moto_with_bucket(
    bucket: &str,
) -> Result<(
    tailrace_tests::Moto,
    aws_config::SdkConfig,
    aws_sdk_s3::Client,
    aws_sdk_ec2::Client,
)> {
    let moto = tailrace_tests::Moto::start()?;
    let sdk = moto.sdk_config().await;
    let s3 = tailrace_tests::s3_client(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .context("CreateBucket")?;
    Ok((moto, sdk, s3, ec2))
}

/// Private addresses of every instance EC2 lists as not terminated, by id.
pub async fn addresses(ec2: &aws_sdk_ec2::Client) -> Result<BTreeMap<String, Vec<IpAddr>>> {
    let mut out = BTreeMap::new();
    let resp = ec2
        .describe_instances()
        .send()
        .await
        .context("DescribeInstances")?;
    for r in resp.reservations() {
        for i in r.instances() {
            let gone = matches!(
                i.state().and_then(|s| s.name()),
                Some(aws_sdk_ec2::types::InstanceStateName::Terminated)
                    | Some(aws_sdk_ec2::types::InstanceStateName::ShuttingDown)
            );
            if gone {
                continue;
            }
            let mut a: Vec<IpAddr> = i
                .private_ip_address()
                .and_then(|s| s.parse().ok())
                .into_iter()
                .collect();
            a.sort();
            out.insert(i.instance_id().unwrap_or_default().to_string(), a);
        }
    }
    Ok(out)
}

/// The file's updater rows as plain CSV lines (annotations and markers cut),
/// and everything else.
pub fn managed_lines(text: &str) -> (Vec<String>, String) {
    let mut rows = Vec::new();
    let mut people = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# >>> tailrace inventory") {
            inside = true;
        } else if line == "# <<< tailrace inventory" {
            inside = false;
        } else if inside {
            if !line.starts_with('#') {
                rows.push(line.to_string());
            }
        } else {
            people.push_str(line);
            people.push('\n');
        }
    }
    rows.sort();
    (rows, people)
}

/// The text and ETag of `s3://bucket/key`.
#[allow(unused_imports)]
pub use tailrace_tests::get_object as read;
