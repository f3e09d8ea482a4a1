//! The inventory updater's Lambda function (`provided.al2023`): EventBridge
//! events from Auto Scaling and EC2, and the reconcile schedule, each handled
//! by [`tailrace_inventory::lambda::handle`] with the aggregator's metadata
//! parser as the judge of the file. Settings come from the environment
//! (`TAILRACE_METADATA`, `TAILRACE_INVENTORY_GRACE`,
//! `TAILRACE_INVENTORY_APPLICATION_TAG`, `TAILRACE_INVENTORY_CONTACT_TAG`,
//! `TAILRACE_NAMESPACE`). A failure to reach S3, EC2 or Auto Scaling is the
//! invocation's error, so Lambda retries the event.

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tailrace_aggregator::clients::sdk_config;
use tailrace_aggregator::config::Settings;
use tailrace_aggregator::entry::inventory::{updater, validate};
use tailrace_aggregator::logging::{self, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init(LogFormat::Json, true);
    let sdk = sdk_config(None).await;
    let settings = Settings::from_env().context("reading settings from the environment")?;
    let updater = updater(&sdk, &settings, |name| std::env::var(name).ok())
        .context("reading settings from the environment")?;
    let updater = &updater;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        tailrace_inventory::lambda::handle(updater, &event.payload, &validate)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}
