//! The mergeable latency histogram (DDSketch-style logarithmic buckets).
//!
//! A latency `v` (whole microseconds, `v ≥ 1`) falls into bucket `i = ceil(ln(v) / ln(γ))`, with
//! `γ = (1 + α) / (1 − α)` and `α = RELATIVE_ERROR = 0.01`. Bucket `i` covers `(γ^(i−1), γ^i]` and is
//! represented by `2·γ^i / (γ + 1)`, which is within `α` (relative) of every value in the bucket.
//! `v = 0` has its own bucket, represented by 0. The bucket boundaries are fixed, so merging two
//! histograms is adding counts per bucket: exact, associative and commutative.

/// `γ = (1 + α) / (1 − α)` for `α = 0.01`.
pub const GAMMA: f64 =
    (1.0 + LatencyHistogram::RELATIVE_ERROR) / (1.0 - LatencyHistogram::RELATIVE_ERROR);

/// `ln(γ)`, spelled out so every build computes the same bucket indexes.
const LN_GAMMA: f64 = 0.020000666706669435;

/// The highest bucket index a `u64` latency can have (`bucket_index(u64::MAX)`).
pub const MAX_BUCKET_INDEX: i32 = 2218;

/// The bucket index of a latency of `micros ≥ 1` microseconds: `ceil(ln(micros) / ln(γ))`.
///
/// Returns `None` for 0, which is counted in the separate zero bucket.
pub fn bucket_index(micros: u64) -> Option<i32> {
    if micros == 0 {
        return None;
    }
    let index = ((micros as f64).ln() / LN_GAMMA).ceil();
    // ln(u64::MAX)/ln(γ) < 2218, so the cast never saturates; clamp anyway for rounding.
    Some((index as i32).clamp(0, MAX_BUCKET_INDEX))
}

/// The representative value (µs) of bucket `index`: `2·γ^index / (γ + 1)`.
pub fn bucket_value(index: i32) -> f64 {
    2.0 * (index as f64 * LN_GAMMA).exp() / (GAMMA + 1.0)
}

/// Mergeable latency histogram: fixed logarithmic buckets (DDSketch-style, `γ` chosen for a
/// relative error of [`LatencyHistogram::RELATIVE_ERROR`]), sparse, exact under merge.
///
/// Counts and the sum saturate at `u64::MAX` rather than wrap (saturating addition of
/// non-negative numbers stays associative and commutative).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Observations of exactly 0 µs.
    zero_count: u64,
    /// `(bucket index, count)`, strictly ascending by index, every count > 0.
    buckets: Vec<(i32, u64)>,
    /// Total number of observations (zero bucket included).
    count: u64,
    /// Sum of all observed values in µs.
    sum_micros: u64,
}

impl LatencyHistogram {
    /// The relative error of every value this histogram reports (1%).
    pub const RELATIVE_ERROR: f64 = 0.01;

    /// Records one latency, in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.record_n(micros, 1);
    }

    /// Records `n` observations of the same latency.
    pub fn record_n(&mut self, micros: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.count = self.count.saturating_add(n);
        self.sum_micros = self.sum_micros.saturating_add(micros.saturating_mul(n));
        match bucket_index(micros) {
            None => self.zero_count = self.zero_count.saturating_add(n),
            Some(index) => match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
                Ok(pos) => self.buckets[pos].1 = self.buckets[pos].1.saturating_add(n),
                Err(pos) => self.buckets.insert(pos, (index, n)),
            },
        }
    }

    /// Adds `other`'s observations to this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.count == 0 && other.buckets.is_empty() && other.zero_count == 0 {
            return;
        }
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.count = self.count.saturating_add(other.count);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                    if ia < ib {
                        merged.push((ia, ca));
                        a.next();
                    } else if ib < ia {
                        merged.push((ib, cb));
                        b.next();
                    } else {
                        merged.push((ia, ca.saturating_add(cb)));
                        a.next();
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    merged.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all observations, in µs (saturating).
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `(representative value in µs, count)` per non-empty bucket, ascending by value: the zero
    /// bucket `(0.0, n)` first if it has observations. For CloudWatch `Values`/`Counts`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let zero = (self.zero_count > 0).then_some((0.0, self.zero_count));
        zero.into_iter()
            .chain(self.buckets.iter().map(|&(i, c)| (bucket_value(i), c)))
    }

    /// Observations of exactly 0 µs.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// `(bucket index, count)` per non-empty bucket (zero bucket excluded), ascending by index.
    pub fn bucket_counts(&self) -> &[(i32, u64)] {
        &self.buckets
    }

    /// The `q`-quantile (`0 ≤ q ≤ 1`), within [`Self::RELATIVE_ERROR`] of the exact one.
    ///
    /// The exact quantile is the observation of 0-based rank `floor(q · (count − 1))` in ascending
    /// order; this returns the representative value of the bucket holding it. `None` when empty
    /// or `q` is outside `0..=1` (or NaN).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = self.zero_count;
        if seen > rank {
            return Some(0.0);
        }
        for &(index, count) in &self.buckets {
            seen = seen.saturating_add(count);
            if seen > rank {
                return Some(bucket_value(index));
            }
        }
        // Only reachable when counts saturated; the highest bucket is the best answer.
        self.buckets.last().map(|&(i, _)| bucket_value(i))
    }

    /// Builds a histogram from its parts, checking them (used by the decoder).
    pub(crate) fn from_parts(
        zero_count: u64,
        buckets: Vec<(i32, u64)>,
        sum_micros: u64,
    ) -> Result<LatencyHistogram, String> {
        let mut count = zero_count;
        let mut previous: Option<i32> = None;
        for &(index, c) in &buckets {
            if !(0..=MAX_BUCKET_INDEX).contains(&index) {
                return Err(format!(
                    "histogram bucket index {index} outside 0..={MAX_BUCKET_INDEX}"
                ));
            }
            if previous.is_some_and(|p| index <= p) {
                return Err(format!(
                    "histogram bucket indexes not strictly ascending ({} then {index})",
                    previous.unwrap_or_default()
                ));
            }
            if c == 0 {
                return Err(format!("histogram bucket {index} has count 0"));
            }
            previous = Some(index);
            count = count.saturating_add(c);
        }
        if count == 0 && sum_micros != 0 {
            return Err(format!(
                "histogram has no observations but a sum of {sum_micros} µs"
            ));
        }
        Ok(LatencyHistogram {
            zero_count,
            buckets,
            count,
            sum_micros,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches() {
        assert!((GAMMA.ln() - LN_GAMMA).abs() < 1e-15);
        assert_eq!(bucket_index(u64::MAX), Some(MAX_BUCKET_INDEX));
        assert_eq!(bucket_index(1), Some(0));
        assert_eq!(bucket_index(0), None);
    }

    #[test]
    fn every_value_within_relative_error_of_its_bucket() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for x in [v, v + 1, v * 2 - 1] {
                let rep = bucket_value(bucket_index(x).unwrap_or(0));
                let err = (rep - x as f64).abs() / x as f64;
                assert!(
                    err <= LatencyHistogram::RELATIVE_ERROR + 1e-9,
                    "{x}: {rep} err {err}"
                );
            }
            v = v * 3 / 2 + 1;
        }
    }

    #[test]
    fn record_count_sum_quantile() {
        let mut h = LatencyHistogram::default();
        assert!(h.is_empty());
        assert_eq!(h.quantile(0.5), None);
        for v in [0, 100, 200, 300, 1_000_000] {
            h.record(v);
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum_micros(), 1_000_600);
        assert_eq!(h.quantile(0.0), Some(0.0));
        let median = h.quantile(0.5).unwrap();
        assert!((median - 200.0).abs() <= 2.0, "{median}");
        let max = h.quantile(1.0).unwrap();
        assert!((max - 1e6).abs() <= 1e4);
        assert_eq!(h.quantile(1.5), None);
        assert_eq!(h.quantile(f64::NAN), None);
        let b: Vec<_> = h.buckets().collect();
        assert_eq!(b.len(), 5);
        assert_eq!(b[0], (0.0, 1));
    }

    #[test]
    fn from_parts_rejects_inconsistent() {
        assert!(LatencyHistogram::from_parts(0, vec![(3, 1), (3, 1)], 10).is_err());
        assert!(LatencyHistogram::from_parts(0, vec![(3, 0)], 10).is_err());
        assert!(LatencyHistogram::from_parts(0, vec![(-1, 1)], 10).is_err());
        assert!(LatencyHistogram::from_parts(0, vec![], 10).is_err());
        assert!(LatencyHistogram::from_parts(1, vec![(5, 2)], 10).is_ok());
    }
}
