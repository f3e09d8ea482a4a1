//! A simulated fleet for the aggregator: what one Kinesis shard carries from
//! N hosts, window after window.
//!
//! Most hosts run the agent in aggregate mode and send one partial per
//! window (encoded with the wire crate's own `Partial::encode_split`, as the
//! agent does); a share also send a *late* partial for the window before. A
//! share run in raw mode (lines packed by the wire crate's `RecordPacker`,
//! one record per `linger` second, as the agent's raw mode does) and a share
//! run the Amazon Kinesis Agent (`LOGTOJSON` objects). Clients come from one
//! population shared by the fleet, with Zipf popularity per service behind a
//! load balancer, so every host of a service sees the same busy clients and a
//! long tail of its own. Everything is deterministic for a seed.

mod host;
mod lines;
mod population;

pub use host::{HostMode, SimHost};
pub use lines::{agent_json, combined_line};
pub use population::Population;

use crate::rng::Rng;

/// What a fleet looks like.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Hosts on the shard.
    pub hosts: usize,
    /// Services (the `Service` dimension); hosts are spread over them.
    pub services: usize,
    /// Source applications in the metadata file.
    pub applications: usize,
    /// Distinct clients in the fleet's population.
    pub clients: usize,
    /// Window length in seconds.
    pub window_secs: u32,
    /// Per-host request rate, lines/s: log-uniform between these.
    pub rate_min: u64,
    /// See `rate_min`.
    pub rate_max: u64,
    /// Share of aggregate-mode hosts that also send a late partial per window.
    pub late_share: f64,
    /// Share of hosts in raw mode.
    pub raw_share: f64,
    /// Share of hosts running the Kinesis Agent (JSON).
    pub agent_share: f64,
    /// Raw mode's linger: one record per this many seconds (at most 1 MiB).
    pub linger_secs: u32,
    /// Kinesis Agent: JSON objects per record (the agent's default is 1).
    pub agent_lines_per_record: usize,
    /// Seed of everything.
    pub seed: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            hosts: 2000,
            services: 10,
            applications: 100,
            clients: 20_000,
            window_secs: 300,
            rate_min: 5,
            rate_max: 100,
            late_share: 0.05,
            raw_share: 0.01,
            agent_share: 0.01,
            linger_secs: 1,
            agent_lines_per_record: 1,
            seed: 1,
        }
    }
}

/// The kind of a simulated record (what the aggregator should count it as).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// An on-time tailrace partial.
    Partial,
    /// A late tailrace partial (for the window before).
    LatePartial,
    /// Raw access-log lines.
    Raw,
    /// Kinesis Agent JSON.
    AgentJson,
}

/// One record as it would sit on the stream.
#[derive(Debug, Clone)]
pub struct SimRecord {
    /// What it is.
    pub kind: RecordKind,
    /// Partition key.
    pub partition_key: String,
    /// Data.
    pub data: Vec<u8>,
    /// Requests (lines) it carries.
    pub requests: u64,
    /// Client groups, for a partial (0 otherwise).
    pub groups: usize,
}

/// The fleet: its hosts and the metadata file that names their clients.
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    population: Population,
    hosts: Vec<SimHost>,
}

impl Fleet {
    /// A fleet for `config`.
    pub fn new(config: FleetConfig) -> Fleet {
        let mut rng = Rng::new(config.seed);
        let population = Population::new(&mut rng, config.clients, config.applications);
        let hosts = (0..config.hosts)
            .map(|i| SimHost::new(&mut rng, i, &config))
            .collect();
        Fleet {
            config,
            population,
            hosts,
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The metadata CSV (`ip_or_cidr,application,contact`).
    pub fn metadata_csv(&self) -> &str {
        self.population.metadata_csv()
    }

    /// The hosts.
    pub fn hosts(&self) -> &[SimHost] {
        &self.hosts
    }

    /// Every record host `index` puts on the stream for the window starting
    /// at `window_start` (raw and JSON records during it, partials when it
    /// closes), in the order it sends them.
    pub fn host_records(&self, index: usize, window_start: i64) -> Vec<SimRecord> {
        match self.hosts.get(index) {
            Some(host) => host.records(&self.population, &self.config, window_start),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FleetConfig {
        FleetConfig {
            hosts: 60,
            clients: 500,
            applications: 10,
            rate_min: 1,
            rate_max: 5,
            raw_share: 0.1,
            agent_share: 0.1,
            late_share: 0.2,
            ..FleetConfig::default()
        }
    }

    #[test]
    fn deterministic_and_every_kind_present() {
        let (a, b) = (Fleet::new(small()), Fleet::new(small()));
        let start = 1_795_600_200;
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..60 {
            let (ra, rb) = (a.host_records(i, start), b.host_records(i, start));
            assert_eq!(ra.len(), rb.len());
            for (x, y) in ra.iter().zip(&rb) {
                assert_eq!(x.data, y.data);
            }
            kinds.extend(ra.iter().map(|r| r.kind));
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(a.metadata_csv(), b.metadata_csv());
    }

    #[test]
    fn records_respect_kinesis_limits() {
        let fleet = Fleet::new(small());
        for i in 0..60 {
            for r in fleet.host_records(i, 1_795_600_200) {
                assert!(r.data.len() + r.partition_key.len() <= tailrace_wire::MAX_RECORD_BYTES);
                assert!((1..=256).contains(&r.partition_key.len()));
            }
        }
    }
}
