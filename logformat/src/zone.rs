//! Local time: the time zone a `%t` / `%{..}t` without an offset was written in, and
//! turning such a local time into an instant without allocating per line.
//!
//! Apache writes `%{%d/%b/%Y:%H:%M:%S}t` (and any strftime form without `%z`) in the
//! server's local time. A [`Zone`] is that time zone: the host's (`TZ`, else
//! `/etc/localtime`), an IANA name from the system tz database, or UTC; the rules
//! (offsets and daylight-saving transitions) come from `jiff`.
//!
//! Resolving a local time asks `jiff` only when it leaves the interval of local
//! times already known to map to one offset: a [`ZoneCache`] (kept in each
//! [`Parsed`](crate::Parsed)) holds the current interval between two transitions,
//! so a steady stream of lines costs two comparisons.
//!
//! Two local times need a rule:
//! - **the repeated hour** (autumn, clocks go back): a local time there names two
//!   instants. Order in the file decides: the earlier instant (summer time) is taken
//!   unless it lies more than [`FOLD_LATENESS_SECS`] (2 minutes) before the previous
//!   line read through the same [`Parsed`](crate::Parsed); then the later one (winter
//!   time). So the first pass through the hour reads as summer time, the first line
//!   whose clock went back starts the second pass, and the rest of that pass stays
//!   there; a line stamped a little before its neighbour (Apache stamps a request's
//!   start and logs it at its end) stays in its pass. A file that starts inside the
//!   hour starts in summer time. Lines more than 2 minutes out of order inside that
//!   hour can be put an hour off: the log itself does not say which pass they were.
//! - **the skipped hour** (spring, clocks go forward): a correctly set clock never
//!   writes it; it is read with the offset from before the gap (`jiff`'s
//!   "compatible" rule), so it lands just after the transition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// Why a time zone name was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown time zone `{name}`: {reason} (expected an IANA name such as `Europe/Paris`, `America/New_York` or `UTC`, from the system's tz database)")]
pub struct ZoneError {
    /// The name given.
    pub name: String,
    /// What the tz database said.
    pub reason: String,
}

/// In the repeated hour, how far before the previous line a line may be stamped and
/// still be read in the same pass (Apache stamps a request's start and logs it at
/// its end, so lines are a little out of order).
pub const FOLD_LATENESS_SECS: i64 = 120;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The time zone local times (a time without `%z`) are read in. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Zone {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tz: TimeZone,
    /// Distinguishes zones so a cache filled for one is never used for another.
    id: u64,
    /// How it was named, for messages.
    label: String,
}

impl Zone {
    fn new(tz: TimeZone, label: String) -> Zone {
        Zone {
            inner: Arc::new(Inner {
                tz,
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                label,
            }),
        }
    }

    /// UTC: what a local time was read as before time zones were supported.
    pub fn utc() -> Zone {
        Zone::new(TimeZone::UTC, "UTC".into())
    }

    /// The host's time zone: `TZ` if set, else `/etc/localtime`; UTC when neither
    /// can be read (as the C library does).
    pub fn system() -> Zone {
        let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
        let label = tz.iana_name().unwrap_or("the host's time zone").to_string();
        Zone::new(tz, label)
    }

    /// A zone by IANA name (`Europe/Paris`), from the system's tz database.
    pub fn named(name: &str) -> Result<Zone, ZoneError> {
        let tz = TimeZone::get(name).map_err(|e| ZoneError {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Zone::new(tz, name.to_string()))
    }

    /// A fixed offset from UTC, in seconds east (`3600` is UTC+1, no DST).
    pub fn fixed(offset_secs: i32) -> Zone {
        let off = jiff::tz::Offset::from_seconds(offset_secs).unwrap_or(jiff::tz::Offset::UTC);
        Zone::new(TimeZone::fixed(off), format!("UTC{off}"))
    }

    /// How the zone was named (an IANA name, `UTC`, or a fixed offset).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Offset (seconds east of UTC) in force at `unix_secs`.
    pub fn offset_at(&self, unix_secs: i64) -> i32 {
        match Timestamp::from_second(unix_secs) {
            Ok(ts) => self.inner.tz.to_offset(ts).seconds(),
            Err(_) => 0,
        }
    }
}

/// Local times known to map to one offset, and the last instant resolved (for the
/// repeated hour). One per [`Parsed`](crate::Parsed); fills on first use.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ZoneCache {
    zone_id: u64,
    /// Local seconds (wall clock read as if UTC) `lo <= l < hi` have offset `offset`.
    lo: i64,
    hi: i64,
    offset: i32,
    /// The instant of the last line resolved through this cache.
    last: Option<i64>,
}

impl ZoneCache {
    /// The offset of local time `local` (seconds since the epoch as if the wall clock
    /// were UTC) in `zone`.
    #[inline]
    pub(crate) fn offset(&mut self, zone: &Zone, local: i64) -> i32 {
        let off = if self.zone_id == zone.inner.id && self.lo <= local && local < self.hi {
            self.offset
        } else {
            self.slow(zone, local)
        };
        self.last = Some(local - i64::from(off));
        off
    }

    #[cold]
    fn slow(&mut self, zone: &Zone, local: i64) -> i32 {
        if self.zone_id != zone.inner.id {
            *self = ZoneCache {
                zone_id: zone.inner.id,
                ..ZoneCache::default()
            };
        }
        let tz = &zone.inner.tz;
        let Ok(dt) = Timestamp::from_second(local).map(|t| jiff::tz::Offset::UTC.to_datetime(t))
        else {
            return 0;
        };
        match tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                let off = offset.seconds();
                self.fill(tz, local, off);
                off
            }
            // The skipped hour: the offset from before the gap.
            AmbiguousOffset::Gap { before, .. } => before.seconds(),
            // The repeated hour: the earliest instant not before the previous line
            // (less a little lateness); if neither is, the later one.
            AmbiguousOffset::Fold { before, after } => {
                let (b, a) = (before.seconds(), after.seconds());
                let early = local - i64::from(b);
                match self.last {
                    Some(last) if early < last - FOLD_LATENESS_SECS => a,
                    _ => b,
                }
            }
        }
    }

    /// Remember the local-time interval around `local` that maps to `off` only.
    fn fill(&mut self, tz: &TimeZone, local: i64, off: i32) {
        let Ok(at) = Timestamp::from_second(local - i64::from(off)) else {
            return;
        };
        // Transitions strictly before and after `at` bound the interval.
        let lo = match tz
            .preceding(
                at.checked_add(jiff::SignedDuration::from_secs(1))
                    .unwrap_or(at),
            )
            .next()
        {
            Some(t) => {
                let start = t.timestamp().as_second();
                let prev = Timestamp::from_second(start - 1)
                    .map(|p| tz.to_offset(p).seconds())
                    .unwrap_or(off);
                start + i64::from(off.max(prev))
            }
            None => i64::MIN,
        };
        let hi = match tz.following(at).next() {
            Some(t) => t.timestamp().as_second() + i64::from(off.min(t.offset().seconds())),
            None => i64::MAX,
        };
        if lo <= local && local < hi {
            self.lo = lo;
            self.hi = hi;
            self.offset = off;
        }
    }
}
