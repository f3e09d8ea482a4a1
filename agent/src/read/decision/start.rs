//! Where a file found by discovery starts reading ([`start`]), or why it
//! must wait, and whether it is a `copytruncate` copy of a reading. The
//! table of `docs/ARCHITECTURE.md`, "How the tailer decides where a file
//! starts", is [`tests::where_a_file_starts_table`], row by row.

use std::time::Duration;

use crate::shared::ledger::SourceId;

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
    /// this process or one before it: [`crate::shared::positions::Shipped`])
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
    /// The quiet time ([`super::DEFAULT_QUIET`] unless configured).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::decision::DEFAULT_QUIET;

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
    fn start_at_end_only_without_a_checkpoint() {
        let f = FoundFile {
            checkpoint: CheckpointFit::Matches { offset: 3 },
            start_at_end: true,
            ..found(100)
        };
        assert_eq!(offset(start(&f)), Some(Offset::Byte(3)));
    }
}
