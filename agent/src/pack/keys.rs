//! Partition keys: which key each record a flow sends carries, per its
//! `partition_key` strategy (random, the host id, or a fixed key).

use rand::Rng;

use crate::config::PartitionKey;

/// Makes partition keys per the flow's strategy.
#[derive(Debug, Clone)]
pub struct KeyMaker {
    strategy: PartitionKey,
    host_id: String,
}

impl KeyMaker {
    /// A key maker for `strategy`; `host_id` serves `PartitionKey::HostId`.
    pub fn new(strategy: PartitionKey, host_id: &str) -> KeyMaker {
        KeyMaker {
            strategy,
            host_id: host_id.chars().take(256).collect(),
        }
    }

    /// The longest key this maker produces, in bytes.
    pub fn max_len(&self) -> usize {
        match &self.strategy {
            PartitionKey::Random => 32,
            PartitionKey::HostId => self.host_id.len().max(1),
            PartitionKey::Fixed(k) => k.len(),
        }
    }

    /// The next key.
    pub fn next_key(&self) -> String {
        match &self.strategy {
            PartitionKey::Random => format!("{:032x}", rand::rng().random::<u128>()),
            PartitionKey::HostId if self.host_id.is_empty() => "tailrace".into(),
            PartitionKey::HostId => self.host_id.clone(),
            PartitionKey::Fixed(k) => k.clone(),
        }
    }
}
