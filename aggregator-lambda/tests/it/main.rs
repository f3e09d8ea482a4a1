//! The aggregator's integration tests, one binary (linking the AWS SDK once,
//! not once per topic), a module per topic: `<topic>.rs` here, `_moto` when
//! it starts moto_server. Shared scenario pieces: `common/` (also included
//! by `benches/handler.rs`) and the test kit (`tailrace_tests`). Where a new
//! test goes: `tests/src/lib.rs` of the kit.

mod common;

mod check_metadata;
mod consume_moto;
mod faults_moto;
mod handler_moto;
mod idempotency_moto;
mod inventory_moto;
mod lambda_watch;
mod model_moto;
mod notify_moto;
mod replay_moto;
mod resend_moto;
