//! Reaching AWS and naming the host: the SDK config and the Kinesis client
//! from the config's `aws` section, and the host id (`auto`: the EC2
//! instance id, else the hostname).

use std::time::Duration;

use aws_config::BehaviorVersion;

use crate::config::AwsConfig;

/// The SDK config from the config's AWS section and the SDK's default chain.
pub async fn sdk_config(aws: &AwsConfig) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    // Without an attempt timeout, an endpoint that accepts a call and never
    // answers would hold the flow's shipper forever; the shipper retries.
    loader = loader.timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build(),
    );
    if let Some(endpoint) = &aws.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// Build a Kinesis client from the config's AWS section and the SDK's default chain.
pub async fn kinesis_client(aws: &AwsConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(aws).await)
}

/// The EC2 instance id from the instance metadata service (IMDSv2, short
/// timeout); `None` off EC2 or when `AWS_EC2_METADATA_DISABLED=true`.
pub async fn imds_instance_id() -> Option<String> {
    let imds_disabled =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if imds_disabled {
        return None;
    }
    let client = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_millis(300))
        .read_timeout(Duration::from_millis(500))
        .max_attempts(1)
        .build();
    let got = tokio::time::timeout(
        Duration::from_secs(2),
        client.get("/latest/meta-data/instance-id"),
    )
    .await;
    match got {
        Ok(Ok(id)) => Some(String::from(id)).filter(|id| !id.is_empty()),
        _ => None,
    }
}

/// The host id: a literal from the config, or for `auto` the EC2 instance id
/// (IMDSv2, short timeout), else the hostname.
pub async fn resolve_host_id(configured: &str) -> String {
    if configured != "auto" {
        return configured.to_string();
    }
    host_id_from(configured, imds_instance_id().await)
}

pub(super) fn host_id_from(configured: &str, instance_id: Option<String>) -> String {
    if configured != "auto" {
        return configured.to_string();
    }
    instance_id.unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
}
