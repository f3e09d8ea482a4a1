//! What a file found truncated (to any size) is ([`after_truncation`]): a
//! new generation whose predecessor may have a copy, or the same file cut
//! short.

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
}
