//! Shared by the moto tests: a fleet in moto's EC2 and Auto Scaling, the
//! aggregator's parser as validator, and an independent reading of the file.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use tailrace_aggregator::metadata::Metadata;
use tailrace_inventory::plan::FileError;

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

pub const HAND: &str = "# people's rows: partners and VPN\nip_or_cidr,application,contact\n192.0.2.0/24,partner-api,\"Partners, Inc.\"\n10.8.0.0/16,vpn,netops@example.com\n";

/// An AMI moto knows.
pub async fn ami(ec2: &aws_sdk_ec2::Client) -> Result<String> {
    let images = ec2
        .describe_images()
        .send()
        .await
        .context("DescribeImages")?;
    images
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_string))
        .context("moto lists no AMI")
}

/// Launch `count` instances with these tags; their ids.
pub async fn launch(
    ec2: &aws_sdk_ec2::Client,
    ami: &str,
    count: i32,
    tags: &[(&str, &str)],
) -> Result<Vec<String>> {
    let mut req = ec2
        .run_instances()
        .image_id(ami)
        .min_count(count)
        .max_count(count)
        .instance_type(InstanceType::T2Micro);
    if !tags.is_empty() {
        let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(*k).value(*v).build());
        }
        req = req.tag_specifications(spec.build());
    }
    let out = req.send().await.context("RunInstances")?;
    Ok(out
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect())
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

pub async fn read(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(String, String)> {
    let o = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .context("GetObject")?;
    let etag = o.e_tag().unwrap_or_default().to_string();
    let body = o.body.collect().await.context("body")?.into_bytes();
    Ok((String::from_utf8(body.to_vec()).context("utf-8")?, etag))
}
