//! The Lambda function (`provided.al2023`): settings from the environment,
//! clients built once, every invocation handled by
//! [`tailrace_aggregator::entry::lambda::handle_invocation`]: Kinesis records from
//! the event source mapping, and CloudWatch alarm notifications from the
//! alarm topic (SNS) when `TAILRACE_NOTIFY_TOPIC` names the topic to write
//! the person-readable message to. The handler and the notifier share one
//! metadata source (one cached copy of the file).

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tailrace_aggregator::clients::{
    build_handler, build_notifier, metadata_source, sdk_config, Clients,
};
use tailrace_aggregator::config::Settings;
use tailrace_aggregator::entry::lambda::handle_invocation;
use tailrace_aggregator::logging::{self, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init(LogFormat::Json, true);
    let settings = Settings::from_env().context("reading settings from the environment")?;
    // AWS_ENDPOINT_URL (an emulator, `cargo lambda watch` tests) comes from
    // the environment through the default chain, so a service-specific
    // AWS_ENDPOINT_URL_<SERVICE> still overrides it (a programmatic endpoint
    // would win over both); S3 switches to path-style addressing when an
    // endpoint is set (`Clients::new`).
    let config = sdk_config(None).await;
    let clients = Clients::new(&config);
    let metadata = metadata_source(&settings, &clients);
    let handler = build_handler(&settings, &clients, &metadata).context("building the handler")?;
    let notifier = settings
        .notify_topic
        .as_deref()
        .map(|topic| build_notifier(&settings, &clients, &metadata, topic));
    let handler = &handler;
    let notifier = notifier.as_ref();
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // Boxed: the future of both paths together is deep enough to
            // overflow the compiler's layout query depth when inlined here.
            Box::pin(handle_invocation(handler, notifier, event)).await
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}
