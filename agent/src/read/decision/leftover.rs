//! What to do with a rotated file that no glob matches ([`leftover`]):
//! leave it, read a generation the reader never saw at its path, or read
//! the unsent end of a file the flow shipped.

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
    /// ([`crate::shared::positions::Shipped`]), acknowledged through this offset.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
