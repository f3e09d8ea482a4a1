//! The client tallies one invocation of the notifier reads: the listing of
//! the alarm's evaluation range once (object names carry window,
//! application and requests, so applications and windows are ranked
//! without reading an object), then only the objects of the application
//! and period a message is about, each read once.
//!
//! A notification therefore reads one application's objects of one period
//! (a few per batch of the window), not the whole range's: at 1,000 hosts
//! a window's tallies of every application are several MB, one
//! application's a fraction of that.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::publish::tally::store::{encode_application, PeriodTallies, TallyKey, TallyStore};

use super::alarm::AlarmChange;
use super::window::WindowTotal;

/// The objects of an evaluation range, as listed.
#[derive(Debug, Default)]
pub struct Listing {
    /// Their names, in window order.
    pub keys: Vec<TallyKey>,
    /// Whether the listing stopped at `store::MAX_OBJECTS`.
    pub truncated: bool,
}

/// What one invocation read of the tallies.
pub struct TallyReads {
    store: Option<TallyStore>,
    listings: BTreeMap<(i64, i64), Result<Arc<Listing>, String>>,
    objects: BTreeMap<(String, i64, i64), Arc<PeriodTallies>>,
}

impl TallyReads {
    /// Reads from `store`; `None` when tallies are not kept.
    pub fn new(store: Option<TallyStore>) -> TallyReads {
        TallyReads {
            store,
            listings: BTreeMap::new(),
            objects: BTreeMap::new(),
        }
    }

    /// Where the tallies are, for messages (`None` when not kept).
    pub fn location(&self) -> Option<String> {
        self.store.as_ref().map(TallyStore::location)
    }

    /// The listing of the windows starting in `[start, end)`; `None`
    /// when tallies are not kept.
    pub async fn listing(&mut self, start: i64, end: i64) -> Option<Result<Arc<Listing>, String>> {
        let store = self.store.as_ref()?;
        if let Some(l) = self.listings.get(&(start, end)) {
            return Some(l.clone());
        }
        let l = match store.list(start, end).await {
            Ok((keys, truncated)) => Ok(Arc::new(Listing { keys, truncated })),
            Err(e) => {
                tracing::warn!(error = %e, "client tallies not listed");
                Err(e.to_string())
            }
        };
        self.listings.insert((start, end), l.clone());
        Some(l)
    }

    /// The objects of `application` (encoded) among `keys` whose window
    /// starts in `[from, to)`.
    pub async fn objects(
        &mut self,
        keys: &[TallyKey],
        application: &str,
        from: i64,
        to: i64,
    ) -> Arc<PeriodTallies> {
        let cache = (application.to_owned(), from, to);
        if let Some(o) = self.objects.get(&cache) {
            return o.clone();
        }
        let Some(store) = &self.store else {
            return Arc::default();
        };
        let wanted: Vec<String> = keys
            .iter()
            .filter(|k| {
                k.application == application && k.window_start >= from && k.window_start < to
            })
            .map(|k| k.key.clone())
            .collect();
        let read = store.read(wanted).await;
        for e in &read.errors {
            tracing::warn!(error = %e, "client tally unreadable");
        }
        let read = Arc::new(read);
        self.objects.insert(cache, read.clone());
        read
    }

    /// The name of the application an encoded name stands for: decoded,
    /// or, for a long name kept as a hash, read from one of its objects.
    pub async fn application_name(&mut self, keys: &[TallyKey], encoded: &str) -> Option<String> {
        if let Some(name) = decode_application(encoded) {
            return Some(name);
        }
        let first = keys.iter().find(|k| k.application == encoded)?;
        let (from, to) = (first.window_start, first.window_start + 1);
        let read = self.objects(keys, encoded, from, to).await;
        read.tallies.first().map(|t| t.application.clone())
    }
}

/// An encoded application name read back (`None` for a hashed one).
pub fn decode_application(encoded: &str) -> Option<String> {
    if encoded.starts_with('~') {
        return None;
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The application's requests per alarm period, as the object names count
/// them (an estimate: a retry that wrote other entries counts twice here;
/// the message's counts come from the objects, each entry once).
pub fn period_totals(
    keys: &[TallyKey],
    application: &str,
    change: &AlarmChange,
) -> Vec<WindowTotal> {
    let encoded = encode_application(application);
    let period = i64::from(change.period.max(60));
    let mut sums: BTreeMap<i64, u64> = BTreeMap::new();
    for k in keys.iter().filter(|k| k.application == encoded) {
        *sums
            .entry(k.window_start.div_euclid(period) * period)
            .or_default() += k.requests;
    }
    sums.into_iter()
        .map(|(start, n)| WindowTotal {
            application: application.to_owned(),
            window_start: start,
            window_secs: change.period,
            requests: n as f64,
            per_service: BTreeMap::new(),
        })
        .collect()
}

/// The encoded applications with a period above the alarm's threshold.
pub fn above_threshold(keys: &[TallyKey], change: &AlarmChange) -> BTreeSet<String> {
    let period = i64::from(change.period.max(60));
    let threshold = change.threshold.unwrap_or(f64::NEG_INFINITY);
    let mut sums: BTreeMap<(&str, i64), u64> = BTreeMap::new();
    for k in keys {
        *sums
            .entry((
                k.application.as_str(),
                k.window_start.div_euclid(period) * period,
            ))
            .or_default() += k.requests;
    }
    sums.into_iter()
        .filter(|(_, n)| *n as f64 > threshold)
        .map(|((app, _), _)| app.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::alarm::parse_alarm;
    use crate::notify::alarm::tests::SINGLE;

    fn key(window_start: i64, application: &str, requests: u64) -> TallyKey {
        TallyKey {
            key: format!("t/{window_start:010}/{application}/300-0-{requests}.json"),
            window_start,
            application: application.into(),
            requests,
        }
    }

    #[test]
    fn names_decode_and_periods_add_up() {
        assert_eq!(
            decode_application("a%2Fb%20c%25").as_deref(),
            Some("a/b c%")
        );
        assert_eq!(decode_application("billing").as_deref(), Some("billing"));
        assert_eq!(decode_application("~0123456789abcdef"), None);
        assert_eq!(decode_application("bad%zz"), None);
        let change = parse_alarm(SINGLE).expect("parses"); // threshold 1000
        let keys = [
            key(600, "unknown", 700),
            key(600, "unknown", 400),
            key(600, "billing", 900),
            key(900, "unknown", 300),
        ];
        let totals = period_totals(&keys, "unknown", &change);
        assert_eq!(
            totals
                .iter()
                .map(|w| (w.window_start, w.requests))
                .collect::<Vec<_>>(),
            vec![(600, 1100.0), (900, 300.0)]
        );
        assert_eq!(
            above_threshold(&keys, &change),
            BTreeSet::from(["unknown".to_string()])
        );
    }
}
