//! The compressors logrotate can be told to use (`compresscmd`), with the
//! tool and file extension of each: gzip (its default), xz, zstd, bzip2.

use std::path::Path;

/// One of logrotate's compressors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Codec {
    /// Every compressor.
    pub const ALL: [Codec; 4] = [Codec::Gzip, Codec::Xz, Codec::Zstd, Codec::Bzip2];

    /// `compressext`: the extension of its files.
    pub fn ext(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Xz => "xz",
            Codec::Zstd => "zst",
            Codec::Bzip2 => "bz2",
        }
    }

    /// `compresscmd`: the system tool (which `-dc` decompresses).
    pub fn tool(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
        }
    }

    /// The compressor of a file, by its extension.
    pub fn of(path: &Path) -> Option<Codec> {
        let ext = path.extension()?;
        Codec::ALL.into_iter().find(|c| ext == c.ext())
    }
}
