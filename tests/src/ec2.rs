//! Instances in moto's EC2, for the inventory updater's tests (the
//! aggregator's and the inventory crate's): an AMI moto knows, and
//! instances launched with tags. Behind the `ec2` feature: `aws-sdk-ec2` is
//! the largest SDK crate to compile, and only those two crates need it.

use anyhow::{Context, Result};
use aws_sdk_ec2::types::{Instance, InstanceType, ResourceType, Tag, TagSpecification};

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

/// The updater's owner tags: `tailrace:application` and `tailrace:contact`.
pub fn owner_tags<'a>(application: &'a str, contact: &'a str) -> [(&'static str, &'a str); 2] {
    [
        ("tailrace:application", application),
        ("tailrace:contact", contact),
    ]
}

/// Launch `count` t2.micro instances of `ami` with these tags: the
/// instances as RunInstances answered.
pub async fn run_instances(
    ec2: &aws_sdk_ec2::Client,
    ami: &str,
    count: i32,
    tags: &[(&str, &str)],
) -> Result<Vec<Instance>> {
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
    Ok(out.instances().to_vec())
}

/// Launch `count` instances with these tags; their ids.
pub async fn launch(
    ec2: &aws_sdk_ec2::Client,
    ami: &str,
    count: i32,
    tags: &[(&str, &str)],
) -> Result<Vec<String>> {
    Ok(run_instances(ec2, ami, count, tags)
        .await?
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect())
}

/// Launch one instance with these tags: its id and private address.
pub async fn launch_one(
    ec2: &aws_sdk_ec2::Client,
    ami: &str,
    tags: &[(&str, &str)],
) -> Result<(String, String)> {
    let instances = run_instances(ec2, ami, 1, tags).await?;
    let i = instances.first().context("no instance")?;
    Ok((
        i.instance_id().context("no id")?.to_string(),
        i.private_ip_address().context("no address")?.to_string(),
    ))
}
