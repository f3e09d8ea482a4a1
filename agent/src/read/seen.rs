//! What a flow has already read, known by a file's first bytes.
//!
//! A rotation can make a new inode out of bytes the flow has read: a
//! compressor writes `access.log.2.gz` from `access.log.1` and deletes it.
//! Such a file is known by its (decompressed) first bytes, not by its
//! inode. [`SeenFirsts`] remembers the fingerprints of the readings a flow
//! closed and of the rotated files it found already old, so their later
//! copies are not mistaken for generations it never saw
//! ([`crate::read::decision::leftover`]). [`FirstBytes`] holds a
//! candidate's first bytes once, so comparing it with many fingerprints
//! reads (or decompresses) it once.

use std::collections::VecDeque;
use std::fs::File;
use std::io;

use crate::read::compressed::{self, Codec};
use crate::shared::identity::{read_prefix, Fingerprint, FINGERPRINT_BYTES};

/// How many fingerprints a flow remembers: far more than `rotate N` keeps,
/// at 16 bytes each.
const REMEMBERED: usize = 4096;

/// Fewer first bytes than this cannot tell a file from another (a line's
/// address and time differ within them), unless they are the whole file.
pub const TELLING_BYTES: usize = 64;

/// The first bytes of a file, decompressed if it is compressed.
pub struct FirstBytes {
    buf: [u8; FINGERPRINT_BYTES],
    len: usize,
}

impl FirstBytes {
    /// Read (or decompress, with `codec`) the first bytes of `file`.
    pub fn of(file: &File, codec: Option<Codec>) -> io::Result<FirstBytes> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let len = match codec {
            Some(codec) => compressed::read_first(file, codec, &mut buf)?,
            None => read_prefix(file, &mut buf)?,
        };
        Ok(FirstBytes { buf, len })
    }

    /// How many bytes are held (fewer than a fingerprint covers only for a
    /// short file).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fingerprint of these bytes.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_bytes(&self.buf[..self.len])
    }

    /// Whether one of these and `other` begins with the other (a copy in
    /// progress holds fewer bytes than its original). Both empty: no.
    pub fn same_start(&self, other: &FirstBytes) -> bool {
        let n = self.len.min(other.len);
        n > 0 && self.buf[..n] == other.buf[..n]
    }

    /// Whether these bytes begin with the bytes `f` was taken of. A
    /// fingerprint of fewer than [`TELLING_BYTES`] says nothing, unless it
    /// covers these bytes whole (model seed 194: a file cut to 2 bytes,
    /// `10`, "began" every line of the log); an empty one matches nothing.
    pub fn starts_with(&self, f: Fingerprint) -> bool {
        let n = f.len as usize;
        n > 0
            && n <= self.len
            && (n >= TELLING_BYTES || n == self.len)
            && Fingerprint::of_bytes(&self.buf[..n]) == f
    }
}

/// Fingerprints of files a flow has done with: readings it closed, rotated
/// files it found already old. Bounded; the oldest are forgotten first.
#[derive(Default)]
pub struct SeenFirsts {
    recent: VecDeque<Fingerprint>,
}

impl SeenFirsts {
    /// Remember `f` (an empty fingerprint is not remembered: it would
    /// match nothing).
    pub fn remember(&mut self, f: Fingerprint) {
        if f.len == 0 || self.recent.contains(&f) {
            return;
        }
        if self.recent.len() >= REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back(f);
    }

    /// Whether `firsts` begins like a remembered file.
    pub fn knows(&self, firsts: &FirstBytes) -> bool {
        self.recent.iter().any(|&f| firsts.starts_with(f))
    }

    /// How many fingerprints are remembered.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firsts(bytes: &[u8]) -> FirstBytes {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let len = bytes.len().min(FINGERPRINT_BYTES);
        buf[..len].copy_from_slice(&bytes[..len]);
        FirstBytes { buf, len }
    }

    #[test]
    fn a_file_is_known_by_the_first_bytes_of_a_remembered_one() {
        let mut seen = SeenFirsts::default();
        let line = b"10.0.0.1 - - [01/Dec/2026:07:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n";
        // Remembered while the file was shorter than a full fingerprint.
        seen.remember(Fingerprint::of_bytes(&line[..TELLING_BYTES]));
        assert!(seen.knows(&firsts(line)));
        assert!(!seen.knows(&firsts(b"10.0.0.2 - - [01/Dec/2026:07:00:00 +0000]")));
        // Shorter than what was remembered: not known.
        assert!(!seen.knows(&firsts(&line[..10])));
        // A few first bytes say nothing of a longer file ...
        seen.remember(Fingerprint::of_bytes(b"10"));
        assert!(!seen.knows(&firsts(b"10.0.0.3 - - [01/Dec/2026:07:00:00 +0000]")));
        // ... but all of a file that short.
        assert!(seen.knows(&firsts(b"10")));
    }

    #[test]
    fn a_copy_in_progress_starts_like_its_original() {
        let original =
            firsts(b"10.0.0.1 - - [01/Dec/2026:07:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n");
        assert!(firsts(b"10.0.0.1 - - [01/Dec/2026:07:00").same_start(&original));
        assert!(original.same_start(&firsts(b"10.0.0.1 - - [01/Dec")));
        assert!(!firsts(b"10.0.0.2 - - [01/Dec").same_start(&original));
        assert!(!firsts(b"").same_start(&original));
    }

    #[test]
    fn the_empty_fingerprint_is_never_remembered_nor_matched() {
        let mut seen = SeenFirsts::default();
        seen.remember(Fingerprint::EMPTY);
        assert!(seen.is_empty());
        assert!(!firsts(b"abc").starts_with(Fingerprint::EMPTY));
    }

    #[test]
    fn memory_is_bounded_and_forgets_the_oldest() {
        let mut seen = SeenFirsts::default();
        for i in 0..REMEMBERED + 10 {
            seen.remember(Fingerprint::of_bytes(format!("line {i}\n").as_bytes()));
        }
        assert_eq!(seen.len(), REMEMBERED);
        assert!(!seen.knows(&firsts(b"line 0\n")));
        assert!(seen.knows(&firsts(format!("line {}\n", REMEMBERED + 9).as_bytes())));
    }
}
