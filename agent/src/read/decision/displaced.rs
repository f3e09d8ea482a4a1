//! Whether a rotated file (plain or compressed) holds the unsent end of a
//! *displaced* reading, and from which offset to read it ([`displaced`]).

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

#[cfg(test)]
mod tests {
    use super::*;

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
