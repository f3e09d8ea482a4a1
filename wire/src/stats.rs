//! Per-client statistics of one window: requests, bytes, status classes, latency.

use crate::histogram::LatencyHistogram;

/// Per-client statistics of one window.
///
/// Invariants (kept by [`ClientStats::record`] and [`ClientStats::merge`]; the decoder rejects
/// records that break them): the status classes add up to `requests`, and the latency
/// histogram counts at most `requests` observations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientStats {
    /// Number of requests (log lines) counted.
    pub requests: u64,
    /// Sum of response sizes in bytes (`%b`/`%B`/`%O`; `-` counts as 0).
    pub bytes: u64,
    /// index 0: status missing or outside 100..=599; 1..=5: 1xx..5xx
    pub status_classes: [u64; 6],
    /// Latency of the requests that had one (`%D`, `%T`, …); may count fewer than `requests`.
    pub latency: LatencyHistogram,
}

/// The `status_classes` slot of a status: 1..=5 for 1xx..5xx, 0 when missing or out of range.
pub fn status_class(status: Option<u16>) -> usize {
    match status {
        Some(s @ 100..=599) => usize::from(s / 100),
        _ => 0,
    }
}

impl ClientStats {
    /// Counts one request. Additions saturate at `u64::MAX`.
    #[inline]
    pub fn record(&mut self, status: Option<u16>, bytes: u64, latency_micros: Option<u64>) {
        self.requests = self.requests.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        let class = &mut self.status_classes[status_class(status)];
        *class = class.saturating_add(1);
        if let Some(micros) = latency_micros {
            self.latency.record(micros);
        }
    }

    /// Adds `other` to this (exact, associative and commutative).
    pub fn merge(&mut self, other: &ClientStats) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bytes = self.bytes.saturating_add(other.bytes);
        for (a, b) in self.status_classes.iter_mut().zip(other.status_classes) {
            *a = a.saturating_add(b);
        }
        self.latency.merge(&other.latency);
    }

    /// Whether no request was counted.
    pub fn is_empty(&self) -> bool {
        *self == ClientStats::default()
    }

    /// Requests with a 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.status_classes[5]
    }

    /// Requests with a 4xx status.
    pub fn client_errors(&self) -> u64 {
        self.status_classes[4]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_classes() {
        let mut s = ClientStats::default();
        s.record(Some(200), 10, Some(5));
        s.record(Some(404), 0, None);
        s.record(None, 3, None);
        s.record(Some(99), 0, None);
        s.record(Some(600), 0, None);
        s.record(Some(503), 0, None);
        assert_eq!(s.requests, 6);
        assert_eq!(s.bytes, 13);
        assert_eq!(s.status_classes, [3, 0, 1, 0, 1, 1]);
        assert_eq!(s.latency.count(), 1);
        assert_eq!(s.server_errors(), 1);
        assert_eq!(s.client_errors(), 1);
    }
}
