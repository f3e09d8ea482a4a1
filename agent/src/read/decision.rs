//! The tailer's decisions, as pure functions: facts in, decisions out.
//!
//! The tailer ([`crate::read::tailer`]) gathers facts with I/O (stat, the first
//! bytes of a file, its checkpoint, the readings it holds, how long something
//! has been quiet) and carries decisions out (open a reading at an offset,
//! wait, close a reading, read a rotated copy). Everything in between lives
//! here, without I/O and without a clock, so each rule of
//! `docs/ARCHITECTURE.md` ("How the tailer decides where a file starts") is
//! one row of a table test.
//!
//! The decisions:
//! - [`start`]: where a file found by discovery starts reading, or why it
//!   must wait (and whether it is a `copytruncate` copy of a reading);
//! - [`may_close`]: when a reading whose path no longer leads to it may
//!   close, and what becomes of a partial last line;
//! - [`displaced`]: whether a rotated file (plain or compressed) holds the
//!   unsent end of a *displaced* reading (a checkpoint whose inode now holds
//!   other bytes, or a reading truncated while the agent ran), and from
//!   which offset to read it;
//! - [`leftover`]: what to do with a rotated file that no glob matches:
//!   leave it, or read a generation the reader never saw at its path
//!   (created and rotated away while the agent was down, or between two
//!   looks while it ran), or the unsent end of a file the flow shipped;
//! - [`name_for`]: which of the names of one file (hard links, symbolic
//!   links) a reading goes by: one inode is one reading;
//! - [`after_truncation`]: what a file found truncated (to any size) is:
//!   a new generation whose predecessor may have a copy, or the same file
//!   cut short.

use std::time::Duration;

use crate::shared::ledger::SourceId;

/// How long a file must be quiet before waits end and deleted files close.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(5);

/// How long a file renamed away from its path (still linked) must be quiet
/// before it closes. Apache's children write to the renamed file until they
/// finish the requests they serve at a graceful restart, which can take far
/// longer than a few seconds (long downloads): a renamed file is kept open
/// until it is deleted (logrotate's `compress` or `rotate N`), or quiet for
/// this long.
pub const DEFAULT_RENAMED_QUIET: Duration = Duration::from_secs(3600);

/// The longest a file that starts like a reading not truncated waits for
/// that truncation (a `copytruncate` copy in progress) while it keeps
/// growing. Past it, identical first lines are taken as a coincidence.
pub const COPY_WAIT_CAP: Duration = Duration::from_secs(120);

/// What the checkpoint of a found file's inode says, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFit {
    /// No checkpoint for this inode.
    None,
    /// A checkpoint whose fingerprint the file matches, at this offset.
    Matches {
        /// Resume offset.
        offset: u64,
    },
    /// A checkpoint whose fingerprint the file does not match: the inode
    /// was reused, or truncated and rewritten while the agent was down.
    FingerprintDiffers,
    /// The file matches the fingerprint but is shorter than the offset:
    /// truncated while the agent was down.
    Shorter,
    /// The file matches the fingerprint and is long enough, but the bytes
    /// just before the offset are not those the checkpoint saw there: cut
    /// to another size and written again while the agent was down.
    Cut,
}

/// What a found file's first bytes resemble among what the tailer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resemblance {
    /// Nothing known starts like it.
    Nothing,
    /// A reading that was truncated (`copytruncate`) starts like it: the
    /// file is its copy. `offset` is where that reading stood.
    TruncatedReading {
        /// The original's read offset at truncation.
        offset: u64,
        /// The original's reading.
        source: SourceId,
        /// Its bytes just before `offset` are not the original's: the
        /// original was cut and written again before it was copied.
        diverged: bool,
    },
    /// A displaced checkpoint starts like it (its file was copied and
    /// truncated while the agent was down): `offset` was acknowledged.
    DisplacedCheckpoint {
        /// The checkpoint's offset.
        offset: u64,
        /// As for [`Resemblance::TruncatedReading`].
        diverged: bool,
    },
    /// A reading not truncated starts like it: a copy about to be followed
    /// by the truncation of its original, or identical first lines.
    LiveReading,
    /// Shorter than the fingerprint of a truncated reading, and equal as
    /// far as it goes: cannot tell yet.
    TooShort,
    /// A file this flow is done with (closed, every line acknowledged, by
    /// this process or one before it: [`crate::shared::ledger::Shipped`])
    /// starts like it: a copy or a rename of it (a `copytruncate` copy that
    /// a reload's wider glob now matches). Everything before `offset` was
    /// shipped.
    Shipped {
        /// Acknowledged through here.
        offset: u64,
    },
}

/// How long a file has been waiting for a decision (absent on first sight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// Since it was first found.
    pub since_found: Duration,
    /// Since its size last changed.
    pub since_still: Duration,
}

/// Everything [`start`] needs to know of a found file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundFile {
    /// Its size now.
    pub size: u64,
    /// Its checkpoint, if any.
    pub checkpoint: CheckpointFit,
    /// `start_at: end` applies: the flow's real first start (it never ran
    /// before on this host) and the first scan.
    pub start_at_end: bool,
    /// What it starts like.
    pub resemblance: Resemblance,
    /// How long it has waited, if it waited before.
    pub waiting: Option<Waiting>,
    /// It was still undecided when its path stopped leading to it: renamed
    /// out of the globs (a rotation) before a decision was made, or deleted
    /// with bytes in it (compressed by the next rotation while the reader
    /// was blocked). It is followed by inode (or its descriptor) from then
    /// on.
    pub left_path: bool,
    /// The quiet time ([`DEFAULT_QUIET`] unless configured).
    pub quiet: Duration,
}

/// An offset to start at, possibly still to be computed by the I/O side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// This byte.
    Byte(u64),
    /// Just after the last newline of the file as it is now.
    LastLineBoundary,
}

/// Why a file waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Empty: nothing to decide on yet. Its place is held at 0 in the
    /// checkpoint and it is followed by inode while it waits, so a rotation
    /// or a crash before its first line does not lose it.
    Empty,
    /// A copy shorter than where its original was read: wait for it to grow.
    Copy,
    /// Too short to compare with a truncated reading.
    Short,
    /// Starts like a reading not truncated: wait for its truncation.
    Original,
}

/// Where a found file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Read from this offset; `why` is for the log.
    At {
        /// Where.
        offset: Offset,
        /// The rule that decided.
        why: &'static str,
        /// The file is a `copytruncate` copy of this reading (the ledger
        /// links them so the copy's checkpoint does not pass the original's
        /// unacknowledged lines).
        copy_of: Option<SourceId>,
        /// The file's checkpoint is displaced (its inode holds other bytes
        /// now): the unsent end may live in a rotated copy.
        displaces_checkpoint: bool,
        /// The file claims the displaced checkpoint it resembles.
        claims_displaced: bool,
    },
    /// Decide later.
    Wait(Wait),
}

fn at(offset: u64, why: &'static str) -> Start {
    Start::At {
        offset: Offset::Byte(offset),
        why,
        copy_of: None,
        displaces_checkpoint: false,
        claims_displaced: false,
    }
}

/// Where a found file starts. Mirrors the table in `docs/ARCHITECTURE.md`.
pub fn start(f: &FoundFile) -> Start {
    match f.checkpoint {
        CheckpointFit::Matches { offset } => return at(offset, "checkpoint"),
        CheckpointFit::Cut => {
            return at(
                0,
                "cut to another size and written again while the agent was down (the lines it kept are sent again)",
            )
        }
        CheckpointFit::FingerprintDiffers | CheckpointFit::Shorter => {
            // The inode holds other bytes now; the rest of the file is new.
            // (Its copy, if any, is found through the displaced checkpoint.)
            let why = if f.checkpoint == CheckpointFit::Shorter {
                "shorter than its checkpoint: truncated while the agent was down"
            } else {
                "inode reused, or truncated and rewritten, while the agent was down"
            };
            return Start::At {
                offset: Offset::Byte(0),
                why,
                copy_of: None,
                displaces_checkpoint: true,
                claims_displaced: false,
            };
        }
        CheckpointFit::None => {}
    }
    if f.start_at_end {
        return Start::At {
            offset: Offset::LastLineBoundary,
            why: "start_at: end",
            copy_of: None,
            displaces_checkpoint: false,
            claims_displaced: false,
        };
    }
    if f.size == 0 {
        // An empty file could still become a `copytruncate` copy (the copy
        // is created empty, then filled) — unless it was rotated away while
        // empty: a copy is not rotated before it is filled, the live file
        // is. Whatever Apache writes to it from now on (late lines, before
        // its graceful restart) is unsent.
        if f.left_path {
            return at(0, "rotated away before its first line");
        }
        return Start::Wait(Wait::Empty);
    }
    let still_for = f.waiting.map(|w| w.since_still);
    let quiet_now = still_for.is_some_and(|s| s >= f.quiet);
    match f.resemblance {
        Resemblance::Nothing => at(0, "new file"),
        Resemblance::TruncatedReading {
            source,
            diverged: true,
            ..
        } => copy_start(f, 0, quiet_now, Some(source), DIVERGED),
        Resemblance::TruncatedReading { offset, source, .. } => copy_start(
            f,
            offset,
            quiet_now,
            Some(source),
            "copy of a file being read (copytruncate)",
        ),
        Resemblance::DisplacedCheckpoint { diverged: true, .. } => {
            copy_start(f, 0, quiet_now, None, DIVERGED).claiming()
        }
        Resemblance::DisplacedCheckpoint { offset, .. } => copy_start(
            f,
            offset,
            quiet_now,
            None,
            "copy of a file truncated while the agent was down (copytruncate)",
        )
        .claiming(),
        Resemblance::Shipped { offset } => copy_start(
            f,
            offset,
            quiet_now,
            None,
            "same first bytes as a file this flow already shipped (its copy or rename)",
        ),
        Resemblance::LiveReading | Resemblance::TooShort => {
            // Waits end once the file stopped growing (a slow copy is still
            // a copy), or after a cap when it keeps growing.
            let capped = f.waiting.is_some_and(|w| w.since_found >= COPY_WAIT_CAP);
            if quiet_now || capped {
                at(0, "new file (same first bytes as another, by coincidence)")
            } else if f.resemblance == Resemblance::TooShort {
                Start::Wait(Wait::Short)
            } else {
                Start::Wait(Wait::Original)
            }
        }
    }
}

/// Why a copy whose bytes before the original's offset are not the
/// original's is read whole.
const DIVERGED: &str =
    "copy of a file cut and written again before it was copied: read whole (what it kept is sent again)";

/// A copy of a reading that stood at `target`: start there once the copy is
/// that long. A copy that stops growing short of it is not a copy of what
/// was read (its original was cut before it was copied): read it whole.
fn copy_start(
    f: &FoundFile,
    target: u64,
    quiet_now: bool,
    copy_of: Option<SourceId>,
    why: &'static str,
) -> Start {
    let (offset, why) = if f.size >= target {
        (Offset::Byte(target), why)
    } else if quiet_now {
        (Offset::Byte(0), DIVERGED)
    } else {
        return Start::Wait(Wait::Copy);
    };
    Start::At {
        offset,
        why,
        copy_of,
        displaces_checkpoint: false,
        claims_displaced: false,
    }
}

impl Start {
    /// The same start, claiming the displaced checkpoint it resembles.
    fn claiming(self) -> Start {
        match self {
            Start::At {
                offset,
                why,
                copy_of,
                displaces_checkpoint,
                ..
            } => Start::At {
                offset,
                why,
                copy_of,
                displaces_checkpoint,
                claims_displaced: true,
            },
            wait => wait,
        }
    }
}

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

/// Facts about a candidate for a displaced reading's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its (decompressed) first bytes have the displaced fingerprint.
    pub starts_like: bool,
    /// Its bytes just before the displaced offset are not those read there
    /// (the file was cut and written again before it was copied).
    pub diverged: bool,
    /// A plain file with these first bytes is being read already (the
    /// rotation is not compressed yet, or this is that file).
    pub being_read: bool,
    /// Its (decompressed) length, if known (a compressed file still being
    /// written has none yet).
    pub len: Option<u64>,
}

/// What a candidate is to a displaced reading at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Displaced {
    /// Not its copy.
    NotIt,
    /// Its copy, but not readable to its end yet (compressor still writing).
    NotYet,
    /// Its copy, and nothing in it was unsent.
    NothingUnsent,
    /// Its copy: read it from `offset`.
    ReadFrom(u64),
}

/// Whether `c` holds the unsent end of a displaced reading acknowledged up
/// to `offset`. A copy shorter than the offset, or whose bytes before it
/// are other bytes, is a copy of the file cut and written again before it
/// was copied: what it has past the cut is new, and where the cut was is
/// not known, so it is read whole.
pub fn displaced(c: &Candidate, offset: u64) -> Displaced {
    if !c.starts_like || c.being_read {
        return Displaced::NotIt;
    }
    match c.len {
        None => Displaced::NotYet,
        Some(len) if c.diverged || len < offset => Displaced::ReadFrom(0),
        Some(len) if len == offset => Displaced::NothingUnsent,
        Some(_) => Displaced::ReadFrom(offset),
    }
}

/// Facts about a rotated file found next to a watched path (one of
/// logrotate's names for it: `access.log.1`, `access.log-20261201.xz`, in
/// its directory or an `olddir`) that no glob matches, looked at when the
/// agent starts or when the reader finds that a rotation happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    /// Its inode is being read, or its (decompressed) first bytes are those
    /// of a file being read, checkpointed, or displaced: that file's
    /// rotation or copy, handled by the rules above.
    pub followed: bool,
    /// Its first bytes are those of a file this flow is done with
    /// ([`crate::shared::ledger::Shipped`]), acknowledged through this offset.
    pub shipped_through: Option<u64>,
    /// Its first bytes are those of a file this flow closed in this run,
    /// or of a rotation it found already old.
    pub seen: bool,
    /// Its (decompressed) length.
    pub len: u64,
    /// It was modified after the last look: the checkpoint the agent
    /// started from, or the reader's previous discovery.
    pub modified_since: bool,
}

/// What to do with a [`Leftover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverAction {
    /// Nothing: read already, being read, or old.
    Leave,
    /// A generation the reader never saw at its path, all unsent.
    ReadWhole,
    /// A file this flow shipped through this offset, longer now (the lines
    /// written between its last read and its rotation): read the rest.
    ReadFrom(u64),
}

/// What to do with a [`Leftover`]. A file created and rotated away while
/// the agent was stopped, or while the reader was blocked by an outage (or
/// just between two discoveries), was never seen at its path, so nothing
/// else names it: read it whole. A rotation older than the last look was
/// seen before. A file with the first bytes of one the flow shipped is that
/// file: only what lies past the shipped offset is new.
pub fn leftover(l: &Leftover) -> LeftoverAction {
    if l.followed {
        return LeftoverAction::Leave;
    }
    if let Some(offset) = l.shipped_through {
        return if l.len > offset {
            LeftoverAction::ReadFrom(offset)
        } else {
            LeftoverAction::Leave
        };
    }
    if !l.seen && l.modified_since {
        LeftoverAction::ReadWhole
    } else {
        LeftoverAction::Leave
    }
}

/// One of the names discovery found for a file (an inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    /// The reading goes by this name now.
    pub current: bool,
    /// The name is a symbolic link.
    pub symlink: bool,
}

/// Which of a file's names (in discovery's sorted order) its reading goes
/// by: the one it goes by already, while that still leads to it (discovery
/// never flips between two names of one file); else the first that is not
/// a symbolic link (the file's own name, which stays when a link is moved
/// to the next file); else the first.
pub fn name_for(names: &[Name]) -> usize {
    names
        .iter()
        .position(|n| n.current)
        .or_else(|| names.iter().position(|n| !n.symlink))
        .unwrap_or(0)
}

/// What a poll found of a file shorter than, or different from, what was
/// read of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Its size now.
    pub size: u64,
    /// Where reading stood.
    pub read: u64,
    /// Its first bytes are still those the reading began with.
    pub same_start: bool,
}

/// What a truncated file is. Either way it is read again from 0: where a
/// file was cut cannot be known once it was written to again (the bytes
/// Apache appended after the cut would be skipped by starting at its size),
/// so what it kept of its first bytes is sent again rather than new lines
/// lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncated {
    /// A new generation (`copytruncate`, or rewritten): the old reading is
    /// *displaced*, its unread end may live in a copy.
    Generation,
    /// The same file cut short (`truncate -s N`): no copy holds what it had
    /// past the read position; those bytes are lost.
    Cut,
}

/// What a truncated file is.
///
/// | found | is |
/// |---|---|
/// | shorter, other first bytes (or empty) | a new generation (`copytruncate`) |
/// | shorter, same first bytes | cut short (`truncate -s N`) |
/// | not shorter, other first bytes | a new generation, written while nobody looked |
/// | not shorter, same first bytes, other bytes before the read position | cut short, then written past the read position while nobody looked |
pub fn after_truncation(t: &Truncation) -> Truncated {
    if t.same_start && t.size > 0 {
        Truncated::Cut
    } else {
        Truncated::Generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = DEFAULT_QUIET;
    const S: SourceId = SourceId(7);

    fn found(size: u64) -> FoundFile {
        FoundFile {
            size,
            checkpoint: CheckpointFit::None,
            start_at_end: false,
            resemblance: Resemblance::Nothing,
            waiting: None,
            left_path: false,
            quiet: Q,
        }
    }

    fn waited(found: u64, still: u64) -> Option<Waiting> {
        Some(Waiting {
            since_found: Duration::from_secs(found),
            since_still: Duration::from_secs(still),
        })
    }

    fn offset(s: Start) -> Option<Offset> {
        match s {
            Start::At { offset, .. } => Some(offset),
            Start::Wait(_) => None,
        }
    }

    /// One row per row of ARCHITECTURE.md's "How the tailer decides where a
    /// file starts", in its order.
    #[test]
    fn where_a_file_starts_table() {
        use Offset::{Byte, LastLineBoundary};
        type Row = (&'static str, FoundFile, Start);
        let diverged_at = |copy_of, claims: bool| Start::At {
            offset: Byte(0),
            why: DIVERGED,
            copy_of,
            displaces_checkpoint: false,
            claims_displaced: claims,
        };
        let copy_at = |o: Offset, copy_of, claims: bool| Start::At {
            offset: o,
            why: if claims {
                "copy of a file truncated while the agent was down (copytruncate)"
            } else {
                "copy of a file being read (copytruncate)"
            },
            copy_of,
            displaces_checkpoint: false,
            claims_displaced: claims,
        };
        let rows: Vec<Row> = vec![
            (
                "checkpoint whose fingerprint matches: the checkpoint",
                FoundFile {
                    checkpoint: CheckpointFit::Matches { offset: 40 },
                    start_at_end: true,
                    ..found(100)
                },
                at(40, "checkpoint"),
            ),
            (
                "checkpoint whose fingerprint differs: 0, checkpoint displaced",
                FoundFile {
                    checkpoint: CheckpointFit::FingerprintDiffers,
                    ..found(100)
                },
                Start::At {
                    offset: Byte(0),
                    why: "inode reused, or truncated and rewritten, while the agent was down",
                    copy_of: None,
                    displaces_checkpoint: true,
                    claims_displaced: false,
                },
            ),
            (
                "cut and written again past its checkpoint while down (its bytes before the offset differ): 0",
                FoundFile {
                    checkpoint: CheckpointFit::Cut,
                    ..found(100)
                },
                at(
                    0,
                    "cut to another size and written again while the agent was down (the lines it kept are sent again)",
                ),
            ),
            (
                "shorter than its checkpoint: 0, checkpoint displaced",
                FoundFile {
                    checkpoint: CheckpointFit::Shorter,
                    ..found(10)
                },
                Start::At {
                    offset: Byte(0),
                    why: "shorter than its checkpoint: truncated while the agent was down",
                    copy_of: None,
                    displaces_checkpoint: true,
                    claims_displaced: false,
                },
            ),
            (
                "flow's real first start, start_at end: last line boundary",
                FoundFile {
                    start_at_end: true,
                    ..found(100)
                },
                Start::At {
                    offset: LastLineBoundary,
                    why: "start_at: end",
                    copy_of: None,
                    displaces_checkpoint: false,
                    claims_displaced: false,
                },
            ),
            ("new, empty: wait", found(0), Start::Wait(Wait::Empty)),
            (
                "new, empty, rotated away before its first line: 0 (model seed 4)",
                FoundFile {
                    left_path: true,
                    waiting: waited(3, 3),
                    ..found(0)
                },
                at(0, "rotated away before its first line"),
            ),
            (
                "... rotated away, then given late lines: 0",
                FoundFile {
                    left_path: true,
                    waiting: waited(3, 0),
                    ..found(120)
                },
                at(0, "new file"),
            ),
            (
                "copy of a truncated reading, long enough: the original's offset",
                FoundFile {
                    resemblance: Resemblance::TruncatedReading {
                        offset: 60,
                        source: S,
                        diverged: false,
                    },
                    ..found(100)
                },
                copy_at(Byte(60), Some(S), false),
            ),
            (
                "copy of a truncated reading, still growing short of it: wait",
                FoundFile {
                    resemblance: Resemblance::TruncatedReading {
                        offset: 60,
                        source: S,
                        diverged: false,
                    },
                    waiting: waited(30, 1),
                    ..found(50)
                },
                Start::Wait(Wait::Copy),
            ),
            (
                "copy of a truncated reading, stopped short of it: cut before it was copied, 0",
                FoundFile {
                    resemblance: Resemblance::TruncatedReading {
                        offset: 60,
                        source: S,
                        diverged: false,
                    },
                    waiting: waited(30, 5),
                    ..found(50)
                },
                diverged_at(Some(S), false),
            ),
            (
                "copy of a truncated reading whose bytes before the offset differ: 0 (model seed 32)",
                FoundFile {
                    resemblance: Resemblance::TruncatedReading {
                        offset: 60,
                        source: S,
                        diverged: true,
                    },
                    ..found(100)
                },
                diverged_at(Some(S), false),
            ),
            (
                "copy of a checkpoint displaced while down (copytruncate while stopped)",
                FoundFile {
                    resemblance: Resemblance::DisplacedCheckpoint {
                        offset: 60,
                        diverged: false,
                    },
                    ..found(100)
                },
                copy_at(Byte(60), None, true),
            ),
            (
                "... cut and written again before it was copied: 0",
                FoundFile {
                    resemblance: Resemblance::DisplacedCheckpoint {
                        offset: 60,
                        diverged: true,
                    },
                    ..found(100)
                },
                diverged_at(None, true),
            ),
            (
                "starts like a reading not truncated: wait for its truncation",
                FoundFile {
                    resemblance: Resemblance::LiveReading,
                    ..found(100)
                },
                Start::Wait(Wait::Original),
            ),
            (
                "... still growing after 8 s (a slow copy): keep waiting",
                FoundFile {
                    resemblance: Resemblance::LiveReading,
                    waiting: waited(8, 0),
                    ..found(100)
                },
                Start::Wait(Wait::Original),
            ),
            (
                "... quiet for 5 s and no truncation: a coincidence, 0",
                FoundFile {
                    resemblance: Resemblance::LiveReading,
                    waiting: waited(8, 5),
                    ..found(100)
                },
                at(0, "new file (same first bytes as another, by coincidence)"),
            ),
            (
                "... growing for longer than the cap: a coincidence, 0",
                FoundFile {
                    resemblance: Resemblance::LiveReading,
                    waiting: waited(COPY_WAIT_CAP.as_secs(), 0),
                    ..found(100)
                },
                at(0, "new file (same first bytes as another, by coincidence)"),
            ),
            (
                "too short to compare with a truncated reading: wait",
                FoundFile {
                    resemblance: Resemblance::TooShort,
                    ..found(10)
                },
                Start::Wait(Wait::Short),
            ),
            (
                "same first bytes as a file this flow shipped (a reload widened the glob): its offset",
                FoundFile {
                    resemblance: Resemblance::Shipped { offset: 60 },
                    ..found(100)
                },
                Start::At {
                    offset: Byte(60),
                    why: "same first bytes as a file this flow already shipped (its copy or rename)",
                    copy_of: None,
                    displaces_checkpoint: false,
                    claims_displaced: false,
                },
            ),
            ("anything else: 0", found(100), at(0, "new file")),
        ];
        for (name, facts, want) in rows {
            assert_eq!(start(&facts), want, "{name}");
        }
    }

    #[test]
    fn files_rotated_while_the_agent_was_down() {
        use LeftoverAction::{Leave, ReadFrom, ReadWhole};
        let base = Leftover {
            followed: false,
            shipped_through: None,
            seen: false,
            len: 500,
            modified_since: true,
        };
        let rows: Vec<(&str, Leftover, LeftoverAction)> = vec![
            // Model seed 4: created and rotated away while the agent was
            // starting, two late lines in it.
            ("unknown, modified while down: read from 0", base, ReadWhole),
            (
                "unknown, older than the last look: shipped before",
                Leftover {
                    modified_since: false,
                    ..base
                },
                Leave,
            ),
            (
                "a file being read, checkpointed or displaced: its own rules",
                Leftover {
                    followed: true,
                    shipped_through: Some(100),
                    ..base
                },
                Leave,
            ),
            (
                "closed in this run, or found old",
                Leftover { seen: true, ..base },
                Leave,
            ),
            (
                "shipped whole, then compressed while down (issue #11): not again",
                Leftover {
                    shipped_through: Some(500),
                    ..base
                },
                Leave,
            ),
            (
                "shipped through 300 when truncated; its copy holds more: the rest",
                Leftover {
                    shipped_through: Some(300),
                    seen: true,
                    ..base
                },
                ReadFrom(300),
            ),
        ];
        for (name, l, want) in rows {
            assert_eq!(leftover(&l), want, "{name}");
        }
    }

    #[test]
    fn one_file_one_reading_one_name() {
        let n = |current, symlink| Name { current, symlink };
        let rows: Vec<(&str, Vec<Name>, usize)> = vec![
            ("one name", vec![n(false, false)], 0),
            (
                "the name it goes by, while it leads to it (no flipping)",
                vec![n(false, false), n(true, false)],
                1,
            ),
            (
                "a new file: its own name, not the link to it (cronolog --symlink)",
                vec![n(false, true), n(false, false)],
                1,
            ),
            (
                "two hard links (rotatelogs -L): the first",
                vec![n(false, false), n(false, false)],
                0,
            ),
            (
                "only links: the first",
                vec![n(false, true), n(false, true)],
                0,
            ),
        ];
        for (name, names, want) in rows {
            assert_eq!(name_for(&names), want, "{name}");
        }
    }

    #[test]
    fn where_a_truncated_file_starts_again() {
        let t = |size, read, same_start| Truncation {
            size,
            read,
            same_start,
        };
        let rows = [
            (
                "copytruncate: empty",
                t(0, 500, false),
                Truncated::Generation,
            ),
            (
                "copytruncate, written again: other first bytes",
                t(120, 500, false),
                Truncated::Generation,
            ),
            ("truncate -s 300", t(300, 500, true), Truncated::Cut),
            (
                "rewritten past the read position while blocked",
                t(900, 500, false),
                Truncated::Generation,
            ),
            (
                "truncate -s N, then written past the read position (issue #23)",
                t(900, 500, true),
                Truncated::Cut,
            ),
        ];
        for (name, facts, want) in rows {
            assert_eq!(after_truncation(&facts), want, "{name}");
        }
    }

    #[test]
    fn start_at_end_only_without_a_checkpoint() {
        let f = FoundFile {
            checkpoint: CheckpointFit::Matches { offset: 3 },
            start_at_end: true,
            ..found(100)
        };
        assert_eq!(offset(start(&f)), Some(Offset::Byte(3)));
    }

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

    #[test]
    fn what_a_displaced_reading_matches() {
        let c = |starts_like, being_read, len| Candidate {
            starts_like,
            diverged: false,
            being_read,
            len,
        };
        assert_eq!(displaced(&c(false, false, Some(9)), 5), Displaced::NotIt);
        assert_eq!(displaced(&c(true, true, Some(9)), 5), Displaced::NotIt);
        assert_eq!(displaced(&c(true, false, None), 5), Displaced::NotYet);
        assert_eq!(
            displaced(&c(true, false, Some(5)), 5),
            Displaced::NothingUnsent
        );
        assert_eq!(
            displaced(&c(true, false, Some(9)), 5),
            Displaced::ReadFrom(5)
        );
        // Cut, written again, then copied (model seeds 32, 267): whole.
        assert_eq!(
            displaced(&c(true, false, Some(4)), 5),
            Displaced::ReadFrom(0)
        );
        let diverged = Candidate {
            diverged: true,
            ..c(true, false, Some(9))
        };
        assert_eq!(displaced(&diverged, 5), Displaced::ReadFrom(0));
    }
}
