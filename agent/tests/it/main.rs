//! The agent's integration tests, one binary (linking the AWS SDK once, not
//! once per topic), a module per topic: `<topic>.rs` here, `_moto` when it
//! starts moto_server. Shared helpers: the test kit (`tailrace_tests`) and
//! `common/` (httpd, logrotate). `nofile.rs` stays its own binary: it
//! changes the process's open-files limit. Where a new test goes:
//! `tests/src/lib.rs` of the kit.

mod common;

mod aggregate_moto;
mod apache_httpd;
mod config_mistakes;
mod faults_moto;
mod generated_files;
mod host_faults_moto;
mod import_kinesis_agent;
mod local_time_and_proxies_moto;
mod logrotate_matrix;
mod model_moto;
mod monitoring_moto;
mod operations_moto;
mod outage_moto;
mod raw_rotation_moto;
mod reload_moto;
mod selfmetrics_carry_moto;
mod watchdog_notify;
