//! The Lambda function (`provided.al2023`): settings from the environment,
//! clients built once, every invocation handled by
//! [`tailrace_aggregator::lambda::handle_event`].

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tailrace_aggregator::clients::{build_handler, sdk_config, Clients};
use tailrace_aggregator::config::Settings;
use tailrace_aggregator::lambda::handle_event;
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
    let handler = build_handler(&settings, &clients).context("building the handler")?;
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::kinesis::KinesisEvent>| async move {
            handle_event(handler, event).await
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}
