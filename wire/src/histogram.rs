//! The mergeable latency histogram (DDSketch-style logarithmic buckets).
//!
//! A latency `v` (whole microseconds, `v ≥ 1`) falls into bucket `i = ceil(ln(v) / ln(γ))`, with
//! `γ = (1 + α) / (1 − α)` and `α = RELATIVE_ERROR = 0.01`. Bucket `i` covers `(γ^(i−1), γ^i]` and is
//! represented by `2·γ^i / (γ + 1)`, which is within `α` (relative) of every value in the bucket.
//! `v = 0` has its own bucket, represented by 0. The bucket boundaries are fixed, so merging two
//! histograms is adding counts per bucket: exact, associative and commutative.

mod bounds;
mod storage;

use bounds::BUCKETS;
pub use bounds::MAX_BUCKET_INDEX;
use storage::{pack, Buckets, PACKED_MAX};

/// `γ = (1 + α) / (1 − α)` for `α = 0.01`.
pub const GAMMA: f64 =
    (1.0 + LatencyHistogram::RELATIVE_ERROR) / (1.0 - LatencyHistogram::RELATIVE_ERROR);

/// `ln(γ)`, spelled out so every build computes the same bucket indexes.
const LN_GAMMA: f64 = 0.020000666706669435;

// `UPPER[i]`: the largest latency (µs) in bucket `i`, i.e. the largest `v` with
// `ceil(ln(v) / ln γ) ≤ i` as computed in `f64` (`ln` of `v as f64`, divided by `LN_GAMMA`,
// rounded up). Buckets 1..=34 hold no integer, so their bound repeats the previous one.
//
// The table is spelled out (`histogram/bounds.rs`) rather than computed with the platform's
// `ln`, so every build computes the same indexes; the tests recompute it from `ln` and check
// the lookup against `ln` exhaustively up to 2^22, around every bound and on random values.
use bounds::UPPER;

/// Mantissa bits below the leading one that select a sub-slot of a power of two in
/// [`FIRST_INDEX`]. A sub-slot spans a ratio of at most `1 + 2^-6 < γ`, so it meets at most
/// two buckets (checked when the table is built).
const SUB_BITS: u32 = 6;

/// Bucket index of the smallest integer in each sub-slot `(exponent << SUB_BITS) | mantissa`
/// (0 for sub-slots that hold no integer, which no input reaches).
static FIRST_INDEX: [u16; 64 << SUB_BITS] = first_indexes();

/// The bucket index of `v` by binary search in [`UPPER`]: the smallest `i` with
/// `UPPER[i] ≥ v` (compile-time helper for [`first_indexes`]).
const fn index_by_search(v: u64) -> usize {
    let (mut lo, mut hi) = (0usize, BUCKETS - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if UPPER[mid] >= v {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Builds [`FIRST_INDEX`], failing the build if a sub-slot meets more than two buckets.
const fn first_indexes() -> [u16; 64 << SUB_BITS] {
    let mut table = [0u16; 64 << SUB_BITS];
    let mut e = 0u32;
    while e < 64 {
        let mut m = 0u128;
        while m < (1 << SUB_BITS) {
            // Integers v with leading one at bit e and the next SUB_BITS bits equal to m:
            // 2^e·(64 + m)/64 ≤ v < 2^e·(65 + m)/64.
            let first = (((64 + m) << e) + 63) >> SUB_BITS;
            let end = (((65 + m) << e) + 63) >> SUB_BITS;
            if first < end {
                let last = end - 1;
                let low = index_by_search(first as u64);
                let high = index_by_search(if last > u64::MAX as u128 {
                    u64::MAX
                } else {
                    last as u64
                });
                assert!(high <= low + 1, "a sub-slot meets more than two buckets");
                table[((e as usize) << SUB_BITS) | m as usize] = low as u16;
            }
            m += 1;
        }
        e += 1;
    }
    table
}

/// The bucket index of a latency of `micros ≥ 1` microseconds: `ceil(ln(micros) / ln(γ))`.
///
/// Returns `None` for 0, which is counted in the separate zero bucket.
///
/// Computed without a logarithm: the leading one and the next six bits of `micros` select a
/// slot of a precomputed table giving the lowest bucket the slot meets, and one comparison
/// with that bucket's upper bound picks it or the next. The result is, for every `u64`, what
/// `((micros as f64).ln() / ln γ).ceil()` gives (clamped to `0..=MAX_BUCKET_INDEX`).
#[inline]
pub fn bucket_index(micros: u64) -> Option<i32> {
    if micros == 0 {
        return None;
    }
    Some(index_of(micros) as i32)
}

/// [`bucket_index`] of `v ≥ 1`, as a `usize`.
#[inline(always)]
fn index_of(v: u64) -> usize {
    let zeros = v.leading_zeros();
    // Leading one moved to bit 63; the SUB_BITS bits after it select the sub-slot.
    let mantissa = ((v << zeros) >> (63 - SUB_BITS)) as usize & ((1 << SUB_BITS) - 1);
    let exponent = 63usize.wrapping_sub(zeros as usize);
    let slot = ((exponent << SUB_BITS) | mantissa) & ((64 << SUB_BITS) - 1);
    let first = usize::from(FIRST_INDEX[slot]);
    match UPPER.get(first) {
        Some(&upper) if v > upper => first + 1,
        _ => first,
    }
}

/// The representative value (µs) of bucket `index`: `2·γ^index / (γ + 1)`.
pub fn bucket_value(index: i32) -> f64 {
    2.0 * (index as f64 * LN_GAMMA).exp() / (GAMMA + 1.0)
}

/// Mergeable latency histogram: fixed logarithmic buckets (DDSketch-style, `γ` chosen for a
/// relative error of [`LatencyHistogram::RELATIVE_ERROR`]), exact under merge.
///
/// Counts and the sum saturate at `u64::MAX` rather than wrap (saturating addition of
/// non-negative numbers stays associative and commutative).
///
/// Storage adapts to the contents (equality and every accessor only see the buckets):
/// up to 3 non-empty buckets live inline (56 bytes in all, no allocation); more are kept as a
/// sorted list of 8-byte entries (bucket index and count packed together); once the list has
/// at least 16 entries and their index span is at most 4 times their number, a dense array of
/// counts over that span (8 bytes per bucket), which records with one indexed addition.
#[derive(Clone, Default)]
pub struct LatencyHistogram {
    /// Observations of exactly 0 µs.
    zero_count: u64,
    /// The non-zero buckets.
    buckets: Buckets,
    /// Total number of observations (zero bucket included).
    count: u64,
    /// Sum of all observed values in µs.
    sum_micros: u64,
}

impl PartialEq for LatencyHistogram {
    fn eq(&self, other: &LatencyHistogram) -> bool {
        self.zero_count == other.zero_count
            && self.count == other.count
            && self.sum_micros == other.sum_micros
            && self.buckets.iter().eq(other.buckets.iter())
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("zero_count", &self.zero_count)
            .field("buckets", &self.buckets.iter().collect::<Vec<_>>())
            .field("count", &self.count)
            .field("sum_micros", &self.sum_micros)
            .finish()
    }
}

impl LatencyHistogram {
    /// The relative error of every value this histogram reports (1%).
    pub const RELATIVE_ERROR: f64 = 0.01;

    /// Records one latency, in microseconds.
    #[inline]
    pub fn record(&mut self, micros: u64) {
        self.record_n(micros, 1);
    }

    /// Records `n` observations of the same latency.
    #[inline]
    pub fn record_n(&mut self, micros: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.count = self.count.saturating_add(n);
        self.sum_micros = self.sum_micros.saturating_add(micros.saturating_mul(n));
        if micros == 0 {
            self.zero_count = self.zero_count.saturating_add(n);
        } else {
            self.buckets.add(index_of(micros), n);
        }
    }

    /// Adds `other`'s observations to this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.count = self.count.saturating_add(other.count);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.buckets.merge(&other.buckets);
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
            .chain(self.buckets.iter().map(|(i, c)| (bucket_value(i), c)))
    }

    /// Observations of exactly 0 µs.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// `(bucket index, count)` per non-empty bucket (zero bucket excluded), ascending by index,
    /// every count > 0.
    pub fn bucket_counts(&self) -> impl Iterator<Item = (i32, u64)> + Clone + '_ {
        self.buckets.iter()
    }

    /// Bytes this histogram holds on the heap (0 for up to 3 non-empty buckets), beyond its
    /// `size_of::<LatencyHistogram>()` (56 bytes).
    pub fn heap_bytes(&self) -> usize {
        match &self.buckets {
            Buckets::Inline { .. } => 0,
            Buckets::Sparse(entries) => entries.capacity() * size_of::<u64>(),
            Buckets::Dense { counts, .. } => counts.capacity() * size_of::<u64>(),
        }
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
        let mut last = None;
        for (index, count) in self.buckets.iter() {
            seen = seen.saturating_add(count);
            if seen > rank {
                return Some(bucket_value(index));
            }
            last = Some(index);
        }
        // Only reachable when counts saturated; the highest bucket is the best answer.
        last.map(bucket_value)
    }

    /// Builds a histogram from its parts, checking them (used by the decoder).
    pub(crate) fn from_parts(
        zero_count: u64,
        buckets: Vec<(i32, u64)>,
        sum_micros: u64,
    ) -> Result<LatencyHistogram, String> {
        let mut count = zero_count;
        let mut previous: Option<i32> = None;
        let mut fits_packing = true;
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
            fits_packing &= c <= PACKED_MAX;
            previous = Some(index);
            count = count.saturating_add(c);
        }
        if count == 0 && sum_micros != 0 {
            return Err(format!(
                "histogram has no observations but a sum of {sum_micros} µs"
            ));
        }
        // Indexes are checked to be in 0..=MAX_BUCKET_INDEX, so the casts are exact.
        let storage = if fits_packing {
            Buckets::from_packed(buckets.iter().map(|&(i, c)| pack(i as usize, c)).collect())
        } else {
            let mut storage = Buckets::default();
            for &(i, c) in &buckets {
                storage.add(i as usize, c);
            }
            storage
        };
        Ok(LatencyHistogram {
            zero_count,
            buckets: storage,
            count,
            sum_micros,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::storage::DENSE_SLACK;
    use super::*;

    /// The definition: what `bucket_index` computed before the lookup table.
    fn bucket_index_ln(micros: u64) -> Option<i32> {
        if micros == 0 {
            return None;
        }
        let index = ((micros as f64).ln() / LN_GAMMA).ceil();
        Some((index as i32).clamp(0, MAX_BUCKET_INDEX))
    }

    /// xorshift64*, for reproducible random inputs.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn upper_bounds_match_ln() {
        for i in 0..MAX_BUCKET_INDEX {
            // The largest v with bucket_index_ln(v) ≤ i.
            let (mut lo, mut hi) = (1u64, u64::MAX);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if bucket_index_ln(mid) <= Some(i) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            assert_eq!(UPPER[i as usize], lo, "bucket {i}");
        }
        assert_eq!(UPPER[BUCKETS - 1], u64::MAX);
    }

    #[test]
    fn lookup_matches_ln_for_every_value_up_to_2_pow_22() {
        for v in 0..=1u64 << 22 {
            assert_eq!(bucket_index(v), bucket_index_ln(v), "{v}");
        }
    }

    /// The `ln` computation can only disagree with the ideal (monotone) `⌈ln v / ln γ⌉` when
    /// `ln v / ln γ` is within ~2^-40 of an integer (1-ulp `ln`, then one division), i.e. when
    /// `v` is within a relative ~2^-44.6 of a bucket bound: fewer than 200 `f64` steps. Check
    /// 1024 half-ulp steps (at least 512 distinct `f64`s) on each side of every bound.
    #[test]
    fn lookup_matches_ln_around_every_bucket_bound() {
        for &bound in UPPER.iter().take(BUCKETS - 1) {
            let x = bound as f64;
            let ulp = (x.next_up() - x) as u64;
            let step = (ulp / 2).max(1);
            for j in 0..=1024u64 {
                for v in [
                    bound.checked_add(j * step),
                    bound.checked_sub(j * step),
                    bound.checked_add(j * step + 1),
                    bound.checked_sub(j * step + 1),
                ]
                .into_iter()
                .flatten()
                {
                    assert_eq!(bucket_index(v), bucket_index_ln(v), "{v} near {bound}");
                }
            }
        }
    }

    #[test]
    fn lookup_matches_ln_on_random_values_of_every_magnitude() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000_000 {
            let r = rng.next();
            let v = r >> (rng.next() % 64);
            assert_eq!(bucket_index(v), bucket_index_ln(v), "{v}");
        }
        for e in 0..64 {
            for v in [(1u64 << e) - 1, 1 << e, (1 << e) + 1, u64::MAX >> e] {
                assert_eq!(bucket_index(v), bucket_index_ln(v), "{v}");
            }
        }
    }

    /// Reference model: a map from bucket index to count, saturating.
    fn model(values: &[(u64, u64)]) -> (u64, Vec<(i32, u64)>) {
        let mut zero = 0u64;
        let mut map = std::collections::BTreeMap::<i32, u64>::new();
        for &(v, n) in values {
            if n == 0 {
                continue;
            }
            match bucket_index_ln(v) {
                None => zero = zero.saturating_add(n),
                Some(i) => {
                    let c = map.entry(i).or_default();
                    *c = c.saturating_add(n);
                }
            }
        }
        (zero, map.into_iter().collect())
    }

    fn check_against_model(h: &LatencyHistogram, values: &[(u64, u64)]) {
        let (zero, buckets) = model(values);
        assert_eq!(h.zero_count(), zero);
        assert_eq!(h.bucket_counts().collect::<Vec<_>>(), buckets);
        let count = buckets
            .iter()
            .fold(zero, |acc, &(_, c)| acc.saturating_add(c));
        assert_eq!(h.count(), count);
        let rebuilt = LatencyHistogram::from_parts(zero, buckets, h.sum_micros());
        assert_eq!(rebuilt.as_ref(), Ok(h));
    }

    fn arb_value() -> impl proptest::strategy::Strategy<Value = (u64, u64)> {
        use proptest::prelude::*;
        (
            prop_oneof![
                Just(0u64),
                1u64..100,
                100u64..5_000_000,
                2_000u64..40_000,
                any::<u64>(),
            ],
            prop_oneof![
                8 => 1u64..3,
                1 => Just(0u64),
                1 => (1u64 << 47)..(1u64 << 49),
                1 => any::<u64>(),
            ],
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// Every storage (inline, sparse, dense, counts beyond the packing) records and
        /// merges exactly like the model.
        #[test]
        fn record_and_merge_match_the_model(
            a in proptest::collection::vec(arb_value(), 0..300),
            b in proptest::collection::vec(arb_value(), 0..300),
        ) {
            let mut ha = LatencyHistogram::default();
            a.iter().for_each(|&(v, n)| ha.record_n(v, n));
            check_against_model(&ha, &a);
            let mut hb = LatencyHistogram::default();
            b.iter().for_each(|&(v, n)| hb.record_n(v, n));
            check_against_model(&hb, &b);
            let all: Vec<_> = a.iter().chain(&b).copied().collect();
            let mut ab = ha.clone();
            ab.merge(&hb);
            check_against_model(&ab, &all);
            let mut ba = hb.clone();
            ba.merge(&ha);
            proptest::prop_assert_eq!(&ab, &ba);
            // Prefixes: merging small into large and large into small, every representation.
            for cut in [0, 1, 3, 4, 20, 100] {
                let (x, y) = all.split_at(cut.min(all.len()));
                let mut hx = LatencyHistogram::default();
                x.iter().for_each(|&(v, n)| hx.record_n(v, n));
                let mut hy = LatencyHistogram::default();
                y.iter().for_each(|&(v, n)| hy.record_n(v, n));
                let mut xy = hx.clone();
                xy.merge(&hy);
                proptest::prop_assert_eq!(&xy, &ab);
                hy.merge(&hx);
                proptest::prop_assert_eq!(&hy, &ab);
            }
        }
    }

    #[test]
    fn small_and_wide_histograms_stay_small() {
        assert_eq!(size_of::<LatencyHistogram>(), 56);
        let mut h = LatencyHistogram::default();
        h.record(1);
        h.record(3_600_000_000);
        h.record(3_600_000_000);
        assert_eq!(h.heap_bytes(), 0);
        // 40 values from 1 µs to 1 h, spread evenly in log: sparse, 8 bytes a bucket.
        let mut v = 1.0f64;
        for _ in 0..40 {
            h.record(v as u64);
            v *= 1.75;
        }
        let buckets = h.bucket_counts().count();
        assert!(matches!(h.buckets, Buckets::Sparse(_)), "{h:?}");
        assert!(h.heap_bytes() <= 2 * 8 * buckets, "{}", h.heap_bytes());
    }

    #[test]
    fn busy_histograms_go_dense() {
        let mut h = LatencyHistogram::default();
        for v in (1_000..100_000).step_by(97) {
            h.record(v);
        }
        assert!(matches!(h.buckets, Buckets::Dense { .. }), "{h:?}");
        let span = bucket_index(100_000).unwrap_or(0) - bucket_index(1_000).unwrap_or(0) + 1;
        assert!(h.heap_bytes() <= 8 * (span as usize + 2 * DENSE_SLACK));
        // An outlier grows it; zeros inside are not buckets.
        h.record(1);
        h.record(u64::MAX);
        let all: Vec<_> = h.bucket_counts().collect();
        assert_eq!(all.first(), Some(&(0, 1)));
        assert_eq!(all.last(), Some(&(MAX_BUCKET_INDEX, 1)));
        assert!(all.iter().all(|&(_, c)| c > 0));
    }

    #[test]
    fn counts_saturate_in_every_storage() {
        let mut h = LatencyHistogram::default();
        h.record_n(5, u64::MAX - 1);
        h.record_n(5, 7);
        assert_eq!(
            h.bucket_counts().collect::<Vec<_>>(),
            [(bucket_index(5).unwrap_or(0), u64::MAX)]
        );
        assert_eq!(h.count(), u64::MAX);
        let mut inline = LatencyHistogram::default();
        inline.record(5);
        inline.merge(&h);
        assert_eq!(
            inline.bucket_counts().collect::<Vec<_>>(),
            [(bucket_index(5).unwrap_or(0), u64::MAX)]
        );
    }

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
