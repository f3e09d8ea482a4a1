//! What makes a file the same file: device + inode, confirmed by a fingerprint
//! of its first bytes.
//!
//! Device and inode follow a file through renames (logrotate's default), but
//! inodes are reused after deletion, so a checkpoint also remembers a hash of
//! the file's first bytes and how many bytes it covered. A file is the one a
//! checkpoint describes only if both agree. The fingerprint also recognizes a
//! `copytruncate` copy: a new inode whose first bytes equal a file we were
//! already reading.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many leading bytes a full fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 256;

/// Device and inode of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileKey {
    /// The key of an open file.
    pub fn of(file: &File) -> io::Result<FileKey> {
        Ok(FileKey::of_meta(&file.metadata()?))
    }

    /// The key of the file `meta` describes.
    pub fn of_meta(meta: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A hash of a file's first `len` bytes (`len` ≤ [`FINGERPRINT_BYTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Bytes covered.
    pub len: u32,
    /// xxh3 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of an empty file.
    pub const EMPTY: Fingerprint = Fingerprint {
        len: 0,
        hash: 0x2d06800538d394c2, // xxh3_64(b"")
    };

    /// Fingerprint the first `min(size, FINGERPRINT_BYTES)` bytes of `file`.
    pub fn of(file: &File) -> io::Result<Fingerprint> {
        Self::prefix(file, FINGERPRINT_BYTES)
    }

    /// Fingerprint the first `min(size, len)` bytes of `file`.
    pub fn prefix(file: &File, len: usize) -> io::Result<Fingerprint> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let got = read_prefix(file, &mut buf[..len.min(FINGERPRINT_BYTES)])?;
        Ok(Fingerprint::of_bytes(&buf[..got]))
    }

    /// The fingerprint of `bytes` (at most [`FINGERPRINT_BYTES`] of them),
    /// however they were read.
    pub fn of_bytes(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            len: bytes.len() as u32,
            hash: xxhash_rust::xxh3::xxh3_64(bytes),
        }
    }

    /// Whether `file` starts with the bytes this fingerprint covers.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let now = Self::prefix(file, self.len as usize)?;
        Ok(now == *self)
    }

    /// Whether `file`'s `len` bytes just before `end` are those this
    /// fingerprint was taken of (a *tail*: the bytes before a read
    /// position or a checkpoint).
    pub fn matches_before(&self, file: &File, end: u64) -> io::Result<bool> {
        let n = self.len as usize;
        if (end as usize) < n || n > FINGERPRINT_BYTES {
            return Ok(false);
        }
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let got = read_at_most(file, &mut buf[..n], end - n as u64)?;
        Ok(got == n && Fingerprint::of_bytes(&buf[..n]) == *self)
    }

    /// Whether this fingerprint covers all the bytes a fingerprint can.
    pub fn is_full(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }
}

/// Read up to `buf.len()` bytes from the start of `file`; returns how many.
pub fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    read_at_most(file, buf, 0)
}

/// Read up to `buf.len()` bytes of `file` from byte `at` (fewer only at
/// its end); returns how many.
pub fn read_at_most(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read_at(&mut buf[got..], at + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn empty_constant_is_right() {
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), Fingerprint::EMPTY.hash);
    }

    #[test]
    fn prefix_fingerprint_follows_growth() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tailrace-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("a.log");
        let mut f = File::create(&path)?;
        f.write_all(b"first line\n")?;
        let small = Fingerprint::of(&File::open(&path)?)?;
        assert_eq!(small.len, 11);
        f.write_all(&[b'x'; 400])?;
        let reopened = File::open(&path)?;
        assert!(
            small.matches(&reopened)?,
            "a grown file still matches its short fingerprint"
        );
        let full = Fingerprint::of(&reopened)?;
        assert!(full.is_full());
        std::fs::write(&path, b"other line\n")?;
        assert!(!small.matches(&File::open(&path)?)?);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
