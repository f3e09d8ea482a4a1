//! How a histogram's counts are stored: up to 3 non-empty buckets inline,
//! then a sorted list of packed (index, count) entries, then a dense array
//! over the span of indexes once that is no larger than a few times the
//! number of buckets. Adding and merging work on each form; equality and
//! every accessor of [`super::LatencyHistogram`] see only the buckets.

use super::bounds::BUCKETS;

/// Non-empty buckets a histogram keeps without allocating.
pub(super) const INLINE: usize = 3;
/// A packed bucket is `(index << COUNT_BITS) | count`, for counts below `2^COUNT_BITS`.
pub(super) const COUNT_BITS: u32 = 48;
/// The largest count a packed bucket holds.
pub(super) const PACKED_MAX: u64 = (1 << COUNT_BITS) - 1;
/// A sparse histogram with at least this many buckets becomes dense when dense is not much
/// larger (see [`DENSE_FACTOR`]).
pub(super) const DENSE_MIN_BUCKETS: usize = 16;
/// Go dense when the index span is at most this many times the number of non-empty buckets
/// (dense storage then costs at most this many times the sparse storage).
pub(super) const DENSE_FACTOR: usize = 4;
/// Extra buckets added on the growing side when a dense histogram must grow.
pub(super) const DENSE_SLACK: usize = 16;

#[inline(always)]
pub(super) fn pack(index: usize, count: u64) -> u64 {
    ((index as u64) << COUNT_BITS) | count
}

#[inline(always)]
pub(super) fn packed_index(packed: u64) -> usize {
    (packed >> COUNT_BITS) as usize
}

#[inline(always)]
pub(super) fn packed_count(packed: u64) -> u64 {
    packed & PACKED_MAX
}

/// `packed` with `n` more observations, or `None` when the count would not fit the packing.
#[inline(always)]
pub(super) fn packed_add(packed: u64, n: u64) -> Option<u64> {
    match packed_count(packed).checked_add(n) {
        Some(c) if c <= PACKED_MAX => Some(packed + n),
        _ => None,
    }
}

/// Position of bucket `index` in an ascending packed list (`Err`: where to insert it).
#[inline(always)]
pub(super) fn find_packed(entries: &[u64], index: usize) -> Result<usize, usize> {
    entries.binary_search_by_key(&index, |&p| packed_index(p))
}

/// The storage of the non-zero buckets.
#[derive(Clone, Debug)]
pub(super) enum Buckets {
    /// Up to [`INLINE`] packed buckets, strictly ascending by index, counts > 0; no allocation.
    Inline { len: u8, packed: [u64; INLINE] },
    /// Packed buckets, strictly ascending by index, counts > 0 (more than [`INLINE`]).
    Sparse(Vec<u64>),
    /// `counts[k]` is the count of bucket `lo + k` (possibly 0); `counts` is not empty.
    Dense { lo: u16, counts: Vec<u64> },
}

impl Default for Buckets {
    fn default() -> Buckets {
        Buckets::Inline {
            len: 0,
            packed: [0; INLINE],
        }
    }
}

impl Buckets {
    /// The packed buckets of a sparse storage (`None` when dense).
    pub(super) fn packed(&self) -> Option<&[u64]> {
        match self {
            Buckets::Inline { len, packed } => packed.get(..usize::from(*len)),
            Buckets::Sparse(entries) => Some(entries),
            Buckets::Dense { .. } => None,
        }
    }

    /// `(index, count)` of every non-empty bucket, ascending.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i32, u64)> + Clone + '_ {
        let (packed, lo, dense): (&[u64], usize, &[u64]) = match self {
            Buckets::Dense { lo, counts } => (&[], usize::from(*lo), counts),
            other => (other.packed().unwrap_or(&[]), 0, &[]),
        };
        packed
            .iter()
            .map(|&p| (packed_index(p) as i32, packed_count(p)))
            .chain(
                dense
                    .iter()
                    .enumerate()
                    .filter(|&(_, &c)| c != 0)
                    .map(move |(k, &c)| ((lo + k) as i32, c)),
            )
    }

    /// Sparse storage for ascending packed buckets (inline when they fit), dense when that is
    /// not much larger.
    pub(super) fn from_packed(entries: Vec<u64>) -> Buckets {
        if entries.len() <= INLINE {
            let mut packed = [0; INLINE];
            packed[..entries.len()].copy_from_slice(&entries);
            return Buckets::Inline {
                len: entries.len() as u8,
                packed,
            };
        }
        let mut buckets = Buckets::Sparse(entries);
        buckets.densify_if_worth_it();
        buckets
    }

    /// Turns a sparse storage dense when it has at least [`DENSE_MIN_BUCKETS`] buckets and the
    /// dense span is at most [`DENSE_FACTOR`] times their number.
    pub(super) fn densify_if_worth_it(&mut self) {
        if let Buckets::Sparse(entries) = self {
            if let (Some(&first), Some(&last)) = (entries.first(), entries.last()) {
                let span = packed_index(last) - packed_index(first) + 1;
                if entries.len() >= DENSE_MIN_BUCKETS && span <= DENSE_FACTOR * entries.len() {
                    self.make_dense(packed_index(first), packed_index(last));
                }
            }
        }
    }

    /// Converts to dense storage covering at least `lo..=hi` (and every non-empty bucket).
    pub(super) fn make_dense(&mut self, lo: usize, hi: usize) {
        let Some(packed) = self.packed() else {
            self.grow_dense(lo, hi, 0);
            return;
        };
        let (lo, hi) = match (packed.first(), packed.last()) {
            (Some(&f), Some(&l)) => (lo.min(packed_index(f)), hi.max(packed_index(l))),
            _ => (lo, hi),
        };
        let mut counts = vec![0u64; hi - lo + 1];
        for &p in packed {
            counts[packed_index(p) - lo] = packed_count(p);
        }
        // Indexes are at most MAX_BUCKET_INDEX, so `lo` fits.
        *self = Buckets::Dense {
            lo: lo as u16,
            counts,
        };
    }

    /// Grows a dense storage to cover `lo..=hi`, plus `slack` buckets on a side that grows
    /// (within `0..=MAX_BUCKET_INDEX`).
    pub(super) fn grow_dense(&mut self, lo: usize, hi: usize, slack: usize) {
        let Buckets::Dense {
            lo: dense_lo,
            counts,
        } = self
        else {
            return;
        };
        let old_lo = usize::from(*dense_lo);
        let old_hi = old_lo + counts.len() - 1;
        if lo >= old_lo && hi <= old_hi {
            return;
        }
        let new_lo = if lo < old_lo {
            lo.saturating_sub(slack)
        } else {
            old_lo
        };
        let new_hi = if hi > old_hi {
            (hi + slack).min(BUCKETS - 1)
        } else {
            old_hi
        };
        if new_lo == old_lo {
            counts.reserve_exact(new_hi - old_hi);
            counts.resize(new_hi - new_lo + 1, 0);
        } else {
            let mut grown = vec![0u64; new_hi - new_lo + 1];
            let at = old_lo - new_lo;
            grown[at..at + counts.len()].copy_from_slice(counts);
            *counts = grown;
            // At most MAX_BUCKET_INDEX.
            *dense_lo = new_lo as u16;
        }
    }

    /// Adds `n` to bucket `index`, which a dense storage already covers.
    pub(super) fn dense_add(&mut self, index: usize, n: u64) {
        if let Buckets::Dense { lo, counts } = self {
            if let Some(c) = counts.get_mut(index.wrapping_sub(usize::from(*lo))) {
                *c = c.saturating_add(n);
            }
        }
    }

    /// Adds `n > 0` observations to bucket `index`.
    #[inline(always)]
    pub(super) fn add(&mut self, index: usize, n: u64) {
        match self {
            Buckets::Dense { lo, counts } => {
                if let Some(c) = counts.get_mut(index.wrapping_sub(usize::from(*lo))) {
                    *c = c.saturating_add(n);
                    return;
                }
            }
            Buckets::Inline { len, packed } => {
                let used = usize::from(*len);
                match find_packed(&packed[..used], index) {
                    Ok(pos) => {
                        if let Some(p) = packed_add(packed[pos], n) {
                            packed[pos] = p;
                            return;
                        }
                    }
                    Err(pos) => {
                        if used < INLINE && n <= PACKED_MAX {
                            packed.copy_within(pos..used, pos + 1);
                            packed[pos] = pack(index, n);
                            *len += 1;
                            return;
                        }
                    }
                }
            }
            Buckets::Sparse(entries) => match find_packed(entries, index) {
                Ok(pos) => {
                    if let Some(p) = packed_add(entries[pos], n) {
                        entries[pos] = p;
                        return;
                    }
                }
                Err(pos) => {
                    if n <= PACKED_MAX {
                        entries.insert(pos, pack(index, n));
                        self.densify_if_worth_it();
                        return;
                    }
                }
            },
        }
        self.add_slow(index, n);
    }

    /// [`Buckets::add`] when the storage must change: a dense one grows, a full inline one
    /// moves to the heap, a count too large to pack makes it dense.
    #[cold]
    #[inline(never)]
    pub(super) fn add_slow(&mut self, index: usize, n: u64) {
        match self {
            Buckets::Dense { .. } => self.grow_dense(index, index, DENSE_SLACK),
            Buckets::Inline { len, packed } if n <= PACKED_MAX => {
                let used = usize::from(*len);
                if let Err(pos) = find_packed(&packed[..used], index) {
                    let mut entries = Vec::with_capacity(2 * INLINE + 2);
                    entries.extend_from_slice(&packed[..pos]);
                    entries.push(pack(index, n));
                    entries.extend_from_slice(&packed[pos..used]);
                    *self = Buckets::Sparse(entries);
                    return;
                }
                // The bucket exists and its count outgrows the packing.
                self.make_dense(index, index);
            }
            _ => self.make_dense(index, index),
        }
        self.dense_add(index, n);
    }

    /// Adds every bucket of `other`.
    pub(super) fn merge(&mut self, other: &Buckets) {
        if other.packed().is_some_and(<[u64]>::is_empty) {
            return;
        }
        if self.packed().is_some_and(<[u64]>::is_empty) {
            *self = other.clone();
            return;
        }
        match (self.packed(), other) {
            (Some(mine), Buckets::Dense { .. }) => {
                let mine = mine.to_vec();
                *self = other.clone();
                for p in mine {
                    self.add(packed_index(p), packed_count(p));
                }
            }
            (Some(mine), _) => {
                let theirs = other.packed().unwrap_or(&[]);
                match merge_packed(mine, theirs) {
                    Some(merged) => *self = Buckets::from_packed(merged),
                    None => {
                        // A count outgrew the packing: add bucket by bucket (goes dense).
                        for &p in theirs {
                            self.add(packed_index(p), packed_count(p));
                        }
                    }
                }
            }
            (None, Buckets::Dense { lo, counts }) => {
                let lo = usize::from(*lo);
                self.grow_dense(lo, lo + counts.len() - 1, 0);
                if let Buckets::Dense {
                    lo: my_lo,
                    counts: mine,
                } = self
                {
                    let at = lo - usize::from(*my_lo);
                    for (a, &b) in mine[at..at + counts.len()].iter_mut().zip(counts) {
                        *a = a.saturating_add(b);
                    }
                }
            }
            (None, _) => {
                let theirs = other.packed().unwrap_or(&[]);
                if let (Some(&f), Some(&l)) = (theirs.first(), theirs.last()) {
                    self.grow_dense(packed_index(f), packed_index(l), 0);
                }
                for &p in theirs {
                    self.dense_add(packed_index(p), packed_count(p));
                }
            }
        }
    }
}

/// The union of two ascending packed lists, counts of equal indexes added; `None` when a sum
/// does not fit the packing.
pub(super) fn merge_packed(a: &[u64], b: &[u64]) -> Option<Vec<u64>> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        let (ix, iy) = (packed_index(x), packed_index(y));
        if ix < iy {
            merged.push(x);
            i += 1;
        } else if iy < ix {
            merged.push(y);
            j += 1;
        } else {
            merged.push(packed_add(x, packed_count(y))?);
            i += 1;
            j += 1;
        }
    }
    merged.extend_from_slice(a.get(i..).unwrap_or(&[]));
    merged.extend_from_slice(b.get(j..).unwrap_or(&[]));
    Some(merged)
}
