//! When a reading whose path no longer leads to it may close
//! ([`may_close`]), and how long files must be quiet first.

use std::time::Duration;

/// How long a file must be quiet before waits end and deleted files close.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(5);

/// How long a file renamed away from its path (still linked) must be quiet
/// before it closes. Apache's children write to the renamed file until they
/// finish the requests they serve at a graceful restart, which can take far
/// longer than a few seconds (long downloads): a renamed file is kept open
/// until it is deleted (logrotate's `compress` or `rotate N`), or quiet for
/// this long.
pub const DEFAULT_RENAMED_QUIET: Duration = Duration::from_secs(3600);

/// Facts about a reading, for [`may_close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Its path no longer leads to it (renamed out of the globs), or it
    /// was opened as a rotated file or a copy.
    pub orphaned: bool,
    /// It has no links left (deleted).
    pub deleted: bool,
    /// A rotated copy (plain or compressed) nobody writes to.
    pub copy: bool,
    /// Everything in it was read (a partial last line may remain).
    pub drained: bool,
    /// Since it last grew.
    pub quiet_for: Duration,
}

/// When readings close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseTimes {
    /// Deleted files and copies: quiet this long once drained.
    pub quiet: Duration,
    /// Files renamed away and still linked: quiet this long.
    pub renamed_quiet: Duration,
}

/// What to do with a reading now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Keep reading it.
    Keep,
    /// Close it; a partial last line (bytes after the last newline) is
    /// passed on as a line first: nobody will complete it any more.
    CloseShippingPartial,
}

/// Whether a reading may close.
pub fn may_close(r: &Reading, t: &CloseTimes) -> Close {
    if !r.drained {
        return Close::Keep;
    }
    let wait = if r.deleted || r.copy {
        t.quiet
    } else if r.orphaned {
        t.renamed_quiet
    } else {
        return Close::Keep;
    };
    if r.quiet_for >= wait {
        Close::CloseShippingPartial
    } else {
        Close::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = DEFAULT_QUIET;

    #[test]
    fn when_readings_close() {
        let t = CloseTimes {
            quiet: Q,
            renamed_quiet: DEFAULT_RENAMED_QUIET,
        };
        let base = Reading {
            orphaned: true,
            deleted: false,
            copy: false,
            drained: true,
            quiet_for: Duration::from_secs(6),
        };
        let rows: Vec<(&str, Reading, Close)> = vec![
            (
                "at its path: never",
                Reading {
                    orphaned: false,
                    quiet_for: Duration::from_secs(99_999),
                    ..base
                },
                Close::Keep,
            ),
            (
                "renamed, quiet 6 s: Apache's old children may still write",
                base,
                Close::Keep,
            ),
            (
                "renamed, quiet an hour: close",
                Reading {
                    quiet_for: DEFAULT_RENAMED_QUIET,
                    ..base
                },
                Close::CloseShippingPartial,
            ),
            (
                "deleted, drained, quiet 5 s: close",
                Reading {
                    deleted: true,
                    ..base
                },
                Close::CloseShippingPartial,
            ),
            (
                "deleted, not drained: keep",
                Reading {
                    deleted: true,
                    drained: false,
                    quiet_for: Duration::from_secs(99_999),
                    ..base
                },
                Close::Keep,
            ),
            (
                "a copy, drained, quiet 5 s: close",
                Reading { copy: true, ..base },
                Close::CloseShippingPartial,
            ),
            (
                "deleted, quiet 1 s: keep",
                Reading {
                    deleted: true,
                    quiet_for: Duration::from_secs(1),
                    ..base
                },
                Close::Keep,
            ),
        ];
        for (name, r, want) in rows {
            assert_eq!(may_close(&r, &t), want, "{name}");
        }
    }
}
