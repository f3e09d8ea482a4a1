//! The inventory updater's integration tests, one binary, a module per
//! topic: `<topic>.rs` here, `_moto` when it starts moto_server (those need
//! the `aws` feature). Shared pieces: `common/` and the test kit
//! (`tailrace_tests`). Where a new test goes: `tests/src/lib.rs` of the kit.

mod common;

#[cfg(feature = "aws")]
mod lambda_moto;
mod plan_model;
mod plan_rules;
#[cfg(feature = "aws")]
mod sync_moto;
mod template;
