//! One simulated host: its identity, mode, request rate, and the records it
//! sends for a window.

use std::collections::HashMap;

use tailrace_wire::raw::RecordPacker;
use tailrace_wire::{ClientKey, ClientStats, Partial, MAX_RECORD_BYTES};

use super::lines::{agent_json, combined_line, Request};
use super::population::Population;
use super::{FleetConfig, RecordKind, SimRecord};
use crate::rng::Rng;

/// The agent's random partition keys are 32 hex digits.
const KEY_LEN: usize = 32;

/// Paths of the simulated requests.
const PATHS: [&str; 6] = [
    "/",
    "/api/v1/items?page=2",
    "/static/app.js",
    "/checkout",
    "/api/v1/cart/42",
    "/healthz",
];

/// How a host ships its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// tailrace, `mode: aggregate`.
    Aggregate,
    /// tailrace, `mode: raw`.
    Raw,
    /// The Amazon Kinesis Agent with `LOGTOJSON`.
    KinesisAgent,
}

/// A host of the fleet.
#[derive(Debug, Clone)]
pub struct SimHost {
    /// EC2-style instance id.
    pub host_id: String,
    /// Index of its service.
    pub service: usize,
    /// How it ships.
    pub mode: HostMode,
    /// Lines per second.
    pub rate: u64,
    /// Whether it sends a late partial for the previous window each window.
    pub sends_late: bool,
    seed: u64,
}

fn status(rng: &mut Rng) -> u16 {
    match rng.below(100) {
        0..=84 => 200,
        85..=91 => 304,
        92..=97 => 404,
        _ => 503,
    }
}

/// Log-normal latency in µs (median 20 ms), clamped to 100 µs..5 s.
fn latency(rng: &mut Rng) -> u64 {
    let (u1, u2) = (rng.unit().max(1e-12), rng.unit());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (20_000f64.ln() + z).exp().clamp(100.0, 5_000_000.0) as u64
}

fn key(rng: &mut Rng) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

impl SimHost {
    /// Host number `index` of a fleet made with `config`.
    pub fn new(rng: &mut Rng, index: usize, config: &FleetConfig) -> SimHost {
        let roll = rng.unit();
        let mode = if roll < config.raw_share {
            HostMode::Raw
        } else if roll < config.raw_share + config.agent_share {
            HostMode::KinesisAgent
        } else {
            HostMode::Aggregate
        };
        SimHost {
            host_id: format!("i-{:017x}", rng.next_u64() >> 4),
            service: rng.below(config.services.max(1) as u64) as usize,
            mode,
            rate: rng.log_uniform(config.rate_min.max(1), config.rate_max.max(1)),
            sends_late: mode == HostMode::Aggregate && rng.chance(config.late_share),
            seed: rng.next_u64() ^ index as u64,
        }
    }

    fn service_name(&self) -> String {
        format!("svc-{:02}", self.service)
    }

    /// The records this host sends for the window at `window_start`.
    pub fn records(
        &self,
        population: &Population,
        config: &FleetConfig,
        window_start: i64,
    ) -> Vec<SimRecord> {
        let mut rng = Rng::new(self.seed ^ (window_start as u64).wrapping_mul(0x9e37_79b9));
        let secs = i64::from(config.window_secs.max(1));
        let n = self.rate * secs as u64;
        let draw = |rng: &mut Rng, i: u64, start: i64, n: u64| {
            let client = population.draw(rng, self.service);
            let status = status(rng);
            let bytes = if status == 304 {
                0
            } else {
                rng.log_uniform(200, 50_000)
            };
            let time = start + (i as i64 * secs) / n.max(1) as i64;
            (client, time, status, bytes)
        };
        match self.mode {
            HostMode::Aggregate => {
                let mut groups: HashMap<ClientKey, ClientStats> = HashMap::new();
                for i in 0..n {
                    let (client, _, status, bytes) = draw(&mut rng, i, window_start, n);
                    let lat = latency(&mut rng);
                    groups.entry(client.key.clone()).or_default().record(
                        Some(status),
                        bytes,
                        Some(lat),
                    );
                }
                let sequence = (window_start / secs) as u64 * 4;
                let mut out = self.partial(&mut rng, config, window_start, false, groups, sequence);
                if self.sends_late {
                    let late_n = rng.range(1, 20);
                    let mut late: HashMap<ClientKey, ClientStats> = HashMap::new();
                    for i in 0..late_n {
                        let (client, _, status, bytes) = draw(&mut rng, i, window_start, late_n);
                        let lat = latency(&mut rng);
                        late.entry(client.key.clone()).or_default().record(
                            Some(status),
                            bytes,
                            Some(lat),
                        );
                    }
                    let prev = window_start - secs;
                    out.extend(self.partial(&mut rng, config, prev, true, late, sequence + 2));
                }
                out
            }
            HostMode::Raw => {
                let mut packer = RecordPacker::new(MAX_RECORD_BYTES - KEY_LEN);
                let mut out = Vec::new();
                let mut line = Vec::with_capacity(512);
                let mut second = window_start;
                let mut lines_in = 0u64;
                let linger = i64::from(config.linger_secs.max(1));
                let mut emit = |data: Vec<u8>, lines: u64, rng: &mut Rng| {
                    out.push(SimRecord {
                        kind: RecordKind::Raw,
                        partition_key: key(rng),
                        data,
                        requests: lines,
                        groups: 0,
                    });
                };
                for i in 0..n {
                    let (client, time, status, bytes) = draw(&mut rng, i, window_start, n);
                    if time >= second + linger {
                        if let Some(data) = packer.finish() {
                            emit(data, lines_in, &mut rng);
                        }
                        lines_in = 0;
                        second = time;
                    }
                    line.clear();
                    let path = rng.pick(&PATHS);
                    combined_line(
                        &mut line,
                        &Request {
                            client: &client.text,
                            time,
                            status,
                            bytes,
                            path,
                        },
                    );
                    if let Some(full) = packer.push(&line) {
                        emit(full, lines_in, &mut rng);
                        lines_in = 0;
                    }
                    lines_in += 1;
                }
                if let Some(data) = packer.finish() {
                    emit(data, lines_in, &mut rng);
                }
                out
            }
            HostMode::KinesisAgent => {
                let per = config.agent_lines_per_record.max(1);
                let mut out = Vec::new();
                let mut data = Vec::new();
                let mut lines_in = 0u64;
                for i in 0..n {
                    let (client, time, status, bytes) = draw(&mut rng, i, window_start, n);
                    let path = rng.pick(&PATHS);
                    let obj = agent_json(&Request {
                        client: &client.text,
                        time,
                        status,
                        bytes,
                        path,
                    });
                    data.extend_from_slice(obj.to_string().as_bytes());
                    data.push(b'\n');
                    lines_in += 1;
                    if lines_in as usize == per || i + 1 == n {
                        out.push(SimRecord {
                            kind: RecordKind::AgentJson,
                            partition_key: key(&mut rng),
                            data: std::mem::take(&mut data),
                            requests: lines_in,
                            groups: 0,
                        });
                        lines_in = 0;
                    }
                }
                out
            }
        }
    }

    /// The records of one partial, encoded as the agent encodes them.
    fn partial(
        &self,
        rng: &mut Rng,
        config: &FleetConfig,
        window_start: i64,
        late: bool,
        groups: HashMap<ClientKey, ClientStats>,
        mut sequence: u64,
    ) -> Vec<SimRecord> {
        let mut partial = Partial {
            host_id: self.host_id.clone(),
            service: self.service_name(),
            flow: "web".into(),
            window_start,
            window_secs: config.window_secs.max(1),
            late,
            groups: groups.into_iter().collect(),
            ..Partial::default()
        };
        partial.groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let requests = partial.total().requests;
        let groups = partial.groups.len();
        let records = partial.encode_split(MAX_RECORD_BYTES - KEY_LEN, &mut sequence);
        let split = records.len() > 1;
        records
            .into_iter()
            .map(|data| SimRecord {
                kind: if late {
                    RecordKind::LatePartial
                } else {
                    RecordKind::Partial
                },
                partition_key: key(rng),
                // A split partial's groups are spread over its records.
                requests: if split {
                    Partial::decode(&data).map_or(0, |p| p.total().requests)
                } else {
                    requests
                },
                groups: if split {
                    Partial::decode(&data).map_or(0, |p| p.groups.len())
                } else {
                    groups
                },
                data,
            })
            .collect()
    }
}
