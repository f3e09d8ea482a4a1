//! Packing planned datums into PutMetricData calls within CloudWatch's
//! limits (at most 1,000 datums and an estimated 1 MB of request body per
//! call), keeping each unit (window, application) in one call unless it
//! alone exceeds a call; and how a refused call is split ([`split_range`]).
//! Pure, like [`super::plan`].

use std::ops::Range;

use crate::publish::plan::PlannedDatum;

/// At most this many datums per PutMetricData.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// At most this many request-body bytes per PutMetricData (1 MB).
pub const MAX_BYTES_PER_CALL: usize = 1_000_000;

/// Fixed overhead of a PutMetricData request body (action, version, namespace).
const CALL_OVERHEAD: usize = 200;

/// Group datums into calls within the count and size limits, keeping order
/// and keeping each unit (a run of datums with the same [`PlannedDatum::unit`])
/// in one call; only a unit larger than a call on its own is split.
/// Returns index ranges into `datums`.
pub fn batches(
    datums: &[PlannedDatum],
    max_datums: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = CALL_OVERHEAD;
    let mut i = 0;
    while i < datums.len() {
        let unit = datums[i].unit;
        let end = datums[i..]
            .iter()
            .position(|d| d.unit != unit)
            .map_or(datums.len(), |n| i + n);
        let unit_bytes: usize = datums[i..end].iter().map(|d| d.size).sum();
        let fits_alone = end - i <= max_datums && CALL_OVERHEAD + unit_bytes <= max_bytes;
        if fits_alone {
            if i > start && (end - start > max_datums || bytes + unit_bytes > max_bytes) {
                out.push(start..i);
                start = i;
                bytes = CALL_OVERHEAD;
            }
            bytes += unit_bytes;
        } else {
            // Too big for any call: datum by datum.
            for (j, d) in datums.iter().enumerate().take(end).skip(i) {
                if j > start && (j - start >= max_datums || bytes + d.size > max_bytes) {
                    out.push(start..j);
                    start = j;
                    bytes = CALL_OVERHEAD;
                }
                bytes += d.size;
            }
        }
        i = end;
    }
    if start < datums.len() {
        out.push(start..datums.len());
    }
    out
}

/// Split a refused range in two: at the unit boundary nearest its middle
/// when it holds several units (so units stay whole as long as possible),
/// else at its middle.
pub(crate) fn split_range(
    datums: &[PlannedDatum],
    range: Range<usize>,
) -> (Range<usize>, Range<usize>) {
    let mid = range.start + range.len() / 2;
    let boundary = (range.start + 1..range.end)
        .filter(|&i| datums[i].unit != datums[i - 1].unit)
        .min_by_key(|&i| i.abs_diff(mid));
    let at = boundary.unwrap_or(mid);
    (range.start..at, at..range.end)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::join::merge::MetricKey;
    use crate::publish::plan::plan;
    use crate::publish::plan::tests::{entry, now};

    #[test]
    fn batches_respect_count_and_size() {
        let (k, e) = entry(2000, 600, &[0]);
        let mut entries = Vec::new();
        let keys: Vec<MetricKey> = (0..300)
            .map(|i| MetricKey {
                application: format!("app-{i}").into(),
                ..k.clone()
            })
            .collect();
        for key in &keys {
            entries.push((key, &e));
        }
        let p = plan(&entries, now());
        let ranges = batches(&p.datums, MAX_DATUMS_PER_CALL, MAX_BYTES_PER_CALL);
        let mut covered = 0;
        for r in &ranges {
            assert_eq!(r.start, covered);
            covered = r.end;
            assert!(r.len() <= MAX_DATUMS_PER_CALL);
            let bytes: usize =
                CALL_OVERHEAD + p.datums[r.clone()].iter().map(|d| d.size).sum::<usize>();
            assert!(bytes <= MAX_BYTES_PER_CALL, "{bytes}");
        }
        assert_eq!(covered, p.datums.len());
        assert!(
            ranges.len() > p.datums.len() / MAX_DATUMS_PER_CALL + 1,
            "size limit was binding"
        );
        for pair in ranges.windows(2) {
            assert_ne!(
                p.datums[pair[0].end - 1].unit,
                p.datums[pair[1].start].unit,
                "a unit that fits in a call is never split"
            );
        }

        // Count limit alone.
        let small: Vec<PlannedDatum> = plan(&[(&k, &entry(1, 0, &[0]).1)], now()).datums;
        let many: Vec<PlannedDatum> = small.iter().cycle().take(2500).cloned().collect();
        let r = batches(&many, 1000, usize::MAX);
        assert_eq!(r, vec![0..1000, 1000..2000, 2000..2500]);
    }

    #[test]
    fn units_keep_an_application_together() {
        // Two services of one application and one of another, same window.
        let (k1, e1) = entry(3, 0, &[0]);
        let (mut k2, e2) = entry(4, 0, &[1]);
        k2.service = "api".into();
        let (mut k3, e3) = entry(5, 0, &[2]);
        k3.application = "other".into();
        let p = plan(&[(&k1, &e1), (&k2, &e2), (&k3, &e3)], now());
        assert_eq!(p.units.len(), 2);
        // 4 datums per dimension set: shop has 2 services + rollup, other 1 + rollup.
        let per_unit: Vec<usize> = (0..2)
            .map(|u| p.datums.iter().filter(|d| d.unit == u).count())
            .collect();
        assert_eq!(per_unit, vec![8, 12]);
        assert_eq!(*p.units[1].contributors, BTreeSet::from([0, 1]));
        // A call limit of 12 datums: never split a unit that fits.
        assert_eq!(batches(&p.datums, 12, usize::MAX), vec![0..8, 8..20]);
        // 10: the second unit fits in no call and is split.
        assert_eq!(batches(&p.datums, 10, usize::MAX), vec![0..10, 10..20]);
        assert_eq!(batches(&p.datums, 20, usize::MAX), vec![0..20]);
    }

    #[test]
    fn a_refused_call_splits_at_unit_boundaries_then_in_halves() {
        let (k, e) = entry(1, 0, &[0]);
        let keys: Vec<MetricKey> = (0..5)
            .map(|i| MetricKey {
                application: format!("app-{i}").into(),
                ..k.clone()
            })
            .collect();
        let entries: Vec<_> = keys.iter().map(|key| (key, &e)).collect();
        // 5 units of 8 datums.
        let p = plan(&entries, now());
        assert_eq!(p.datums.len(), 40);
        // Nearest unit boundary to the middle (20) is 16 or 24: 16 (first found).
        assert_eq!(split_range(&p.datums, 0..40), (0..16, 16..40));
        assert_eq!(split_range(&p.datums, 16..40), (16..24, 24..40));
        // Inside one unit: halves.
        assert_eq!(split_range(&p.datums, 16..24), (16..20, 20..24));
        assert_eq!(split_range(&p.datums, 16..17 + 1), (16..17, 17..18));
        // Isolating one datum among 40 takes at most 1 + 2·⌈log2(40)⌉ calls
        // (the first, then two per level: 13 here).
        let bad = 29;
        let mut queue: Vec<std::ops::Range<usize>> = Vec::new();
        queue.push(0..40);
        let mut calls = 0;
        let mut dropped = Vec::new();
        while let Some(r) = queue.pop() {
            calls += 1;
            if !r.contains(&bad) {
                continue;
            }
            if r.len() == 1 {
                dropped.push(r.start);
                continue;
            }
            let (a, b) = split_range(&p.datums, r);
            queue.push(b);
            queue.push(a);
        }
        assert_eq!(dropped, vec![bad]);
        assert!(calls <= 1 + 2 * 6, "{calls}");
    }
}
