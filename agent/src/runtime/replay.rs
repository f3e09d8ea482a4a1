//! `tailrace replay`: ship a fixed list of files once, from start to end,
//! through the same sink and shipper as a running flow, without touching
//! checkpoints.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::config::Validated;
use crate::read::tailer::Tailer;
use crate::shared::counters::FlowStats;
use crate::shared::ledger::Ledger;
use crate::state::sequences::Sequences;

use super::aws::{kinesis_client, resolve_host_id};
use super::flows::{finish, start_flow, tailer_settings, FlowContext};

/// `tailrace replay`: ship the given files once from start to end.
pub async fn replay(config: Validated, flow_name: Option<&str>, files: &[PathBuf]) -> Result<()> {
    let Validated {
        flows,
        host_id,
        aws,
        ..
    } = config;
    let names: Vec<String> = flows.iter().map(|f| f.name().to_string()).collect();
    let flow = match flow_name {
        Some(name) => flows
            .into_iter()
            .find(|f| f.name() == name)
            .with_context(|| {
                format!(
                    "no flow named `{name}` in the config (it has: {})",
                    names.join(", ")
                )
            })?,
        None if names.len() == 1 => flows.into_iter().next().context("no flows")?,
        None => bail!(
            "the config has {} flows; choose one with --flow ({})",
            names.len(),
            names.join(", ")
        ),
    };
    let flow = Arc::new(flow);
    let host_id = resolve_host_id(&host_id).await;
    let client = kinesis_client(&aws).await;
    let ledger = Ledger::new();
    let stop = Arc::new(AtomicBool::new(false));
    let sequences = Sequences::default();
    sequences.register(flow.name());
    let ctx = FlowContext {
        ledger: &ledger,
        client: &client,
        host_id: &host_id,
        stop: &stop,
        sequences: &sequences,
        runtime: tokio::runtime::Handle::current(),
    };
    let mut tailer = Tailer::new(tailer_settings(&flow), ledger.clone(), Vec::new());
    let mut total = 0u64;
    for f in files {
        tailer
            .add_file_from_start(f)
            .with_context(|| format!("cannot read {}", f.display()))?;
        total += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    }
    // Replays get their own sequence space so they never collide with `run`.
    let first_sequence = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
        << 1;
    let started = Instant::now();
    let stats = Arc::new(FlowStats::started_now());
    let handle = start_flow(
        flow.clone(),
        &ctx,
        tailer,
        first_sequence,
        true,
        stats,
        None,
    )?;
    let progress = super::progress::Progress::new(total);
    let stats = handle.stats.clone();
    let progress_task = {
        let stats = stats.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                progress.set(stats.bytes_read.get());
            }
        })
    };
    let clean = finish(
        vec![handle],
        Instant::now() + Duration::from_secs(365 * 24 * 3600),
    )
    .await;
    progress_task.abort();
    progress.finish();
    if !clean || ledger.outstanding() > 0 {
        bail!("replay did not finish shipping");
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        lines = stats.lines_read.get(),
        records = stats.records_sent.get(),
        bytes = stats.bytes_sent.get(),
        seconds = format!("{secs:.2}"),
        "replay done"
    );
    Ok(())
}
