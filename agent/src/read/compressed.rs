//! Unsent lines in a compressed rotation: recognizing a rotated file that
//! logrotate compressed (gzip, xz, zstd or bzip2), matching its decompressed
//! first bytes against a reading's fingerprint, and reading it from an
//! offset as a stream of its decompressed bytes.
//!
//! When the agent is stopped, killed or blocked by an outage with lines not
//! yet read or acknowledged and logrotate compresses the file holding them,
//! they may exist only as `access.log.1.gz` (`compress`, with or without
//! `delaycompress`; `.xz`, `.zst` or `.bz2` with logrotate's `compresscmd`
//! and `compressext`). The agent does not tail compressed files, but for a
//! displaced reading (see [`crate::read::tailer`]) it looks among the compressed
//! files next to its path and in an `olddir`: one whose *decompressed* first
//! bytes have the reading's fingerprint is that file, and its bytes from the
//! reading's offset on are read like the end of any rotated file.
//!
//! A file's format ([`Codec`]) is told by its extension, and, for a name
//! without a known one (a custom `compressext`), by its magic bytes.
//! Decoders: `flate2` (gzip), `liblzma` (xz), `ruzstd` (zstd) and `bzip2`;
//! each reads every member/stream/frame of a concatenated file, and a file
//! cut short (its compressor still writing) is an error, not an end.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::shared::identity::{read_prefix, Fingerprint, FINGERPRINT_BYTES};

/// A compression format logrotate can be told to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (`.gz`), logrotate's default.
    Gzip,
    /// xz (`.xz`).
    Xz,
    /// Zstandard (`.zst`).
    Zstd,
    /// bzip2 (`.bz2`).
    Bzip2,
}

impl Codec {
    /// The format a file name's extension names, if any.
    pub fn of_name(path: &Path) -> Option<Codec> {
        match path.extension()?.to_str()? {
            "gz" => Some(Codec::Gzip),
            "xz" => Some(Codec::Xz),
            "zst" | "zstd" => Some(Codec::Zstd),
            "bz2" => Some(Codec::Bzip2),
            _ => None,
        }
    }

    /// The format whose magic bytes `head` (a file's first bytes) starts
    /// with. The checks are long enough that a log line never passes them
    /// (bzip2's `BZh` is followed by a level digit and a block or end
    /// marker).
    pub fn of_magic(head: &[u8]) -> Option<Codec> {
        const XZ: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
        const ZSTD: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
        const BZ_BLOCK: &[u8] = &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
        const BZ_END: &[u8] = &[0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
        if head.len() >= 3 && head[0] == 0x1F && head[1] == 0x8B && head[2] == 8 {
            Some(Codec::Gzip)
        } else if head.starts_with(XZ) {
            Some(Codec::Xz)
        } else if head.starts_with(ZSTD) {
            Some(Codec::Zstd)
        } else if head.len() >= 10
            && head.starts_with(b"BZh")
            && (b'1'..=b'9').contains(&head[3])
            && (&head[4..10] == BZ_BLOCK || &head[4..10] == BZ_END)
        {
            Some(Codec::Bzip2)
        } else {
            None
        }
    }

    /// The format of `file` at `path`: by its extension, else by its magic
    /// bytes; `None` for a plain file (or one too short to tell yet).
    pub fn of_file(path: &Path, file: &File) -> Option<Codec> {
        if let Some(codec) = Codec::of_name(path) {
            return Some(codec);
        }
        let mut head = [0u8; 10];
        let n = read_prefix(file, &mut head).ok()?;
        Codec::of_magic(&head[..n])
    }

    /// Its usual extension, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
        }
    }

    /// A decoder of `file` from its start (whatever its position).
    fn decoder(self, file: &File) -> io::Result<Box<dyn Read + Send>> {
        let mut file = file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        let input = BufReader::new(file);
        Ok(match self {
            Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
            Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
            Codec::Zstd => Box::new(ZstdFrames::new(input)),
        })
    }
}

/// Every frame of a zstd file, one after the other (`zstd` writes one per
/// file; `cat a.zst b.zst` makes two). A frame cut short is an error.
struct ZstdFrames {
    /// The source, between frames.
    source: Option<BufReader<File>>,
    /// The frame being read.
    frame:
        Option<ruzstd::decoding::StreamingDecoder<BufReader<File>, ruzstd::decoding::FrameDecoder>>,
}

impl ZstdFrames {
    fn new(source: BufReader<File>) -> Self {
        ZstdFrames {
            source: Some(source),
            frame: None,
        }
    }
}

impl Read for ZstdFrames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(frame) = self.frame.as_mut() {
                let n = frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                if !frame.decoder.is_finished() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "zstd frame cut short",
                    ));
                }
                if let Some(frame) = self.frame.take() {
                    self.source = Some(frame.into_inner());
                }
            }
            let Some(mut source) = self.source.take() else {
                return Ok(0);
            };
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let frame = ruzstd::decoding::StreamingDecoder::new(source)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.frame = Some(frame);
        }
    }
}

/// Whether the decompressed content of `file` starts with the bytes
/// `fingerprint` covers. (Each function here reads `file` from its start,
/// whatever its position.) A file not in `codec`, or cut short before those
/// bytes, does not match.
pub fn starts_like(file: &File, codec: Codec, fingerprint: Fingerprint) -> bool {
    let len = (fingerprint.len as usize).min(FINGERPRINT_BYTES);
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let Ok(mut decoder) = codec.decoder(file) else {
        return false;
    };
    decoder.read_exact(&mut buf[..len]).is_ok() && Fingerprint::of_bytes(&buf[..len]) == fingerprint
}

/// The fingerprint of the decompressed first bytes of `file`.
pub fn fingerprint(file: &File, codec: Codec) -> io::Result<Fingerprint> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let n = read_first(file, codec, &mut buf)?;
    Ok(Fingerprint::of_bytes(&buf[..n]))
}

/// Decompress up to `buf.len()` first bytes of `file` into `buf`; returns
/// how many (fewer only if the stream is shorter).
pub fn read_first(file: &File, codec: Codec, buf: &mut [u8]) -> io::Result<usize> {
    let mut decoder = codec.decoder(file)?;
    let mut n = 0;
    while n < buf.len() {
        match decoder.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Decompress all of `file` to count its bytes; errors if the stream is
/// corrupt or cut short (still being written by its compressor).
pub fn decompressed_len(file: &File, codec: Codec) -> io::Result<u64> {
    let mut decoder = codec.decoder(file)?;
    io::copy(&mut decoder, &mut io::sink())
}

/// A compressed file read as a stream of its decompressed bytes, from an
/// offset.
pub struct CompressedInput {
    decoder: Box<dyn Read + Send>,
    /// Decompressed offset of the next byte `read` returns.
    position: u64,
    /// The end of the stream was reached (or it failed and was given up).
    finished: bool,
}

impl CompressedInput {
    /// Open `file` (a `codec` stream from its start) and skip to
    /// decompressed byte `offset`. Errors if the stream ends before it.
    pub fn open_at(file: &File, codec: Codec, offset: u64) -> io::Result<CompressedInput> {
        let mut decoder = codec.decoder(file)?;
        let skipped = io::copy(&mut (&mut decoder).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("decompressed content ends at byte {skipped}, before offset {offset}"),
            ));
        }
        Ok(CompressedInput {
            decoder,
            position: offset,
            finished: false,
        })
    }

    /// Decompressed bytes into `buf`; 0 at the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        match self.decoder.read(buf) {
            Ok(0) => {
                self.finished = true;
                Ok(0)
            }
            Ok(n) => {
                self.position += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    /// Decompressed offset of the next byte.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether the whole stream has been read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ALL: [Codec; 4] = [Codec::Gzip, Codec::Xz, Codec::Zstd, Codec::Bzip2];

    fn compress(codec: Codec, data: &[u8]) -> io::Result<Vec<u8>> {
        Ok(match codec {
            Codec::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()?
            }
            Codec::Xz => {
                let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
                enc.write_all(data)?;
                enc.finish()?
            }
            Codec::Bzip2 => {
                let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                enc.write_all(data)?;
                enc.finish()?
            }
            Codec::Zstd => {
                ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
            }
        })
    }

    /// A file of several members/streams/frames, as `cat a b` makes: all of
    /// them are read.
    fn compressed_file(
        dir: &Path,
        name: &str,
        codec: Codec,
        parts: &[&[u8]],
    ) -> io::Result<std::path::PathBuf> {
        let path = dir.join(name);
        let mut out = File::create(&path)?;
        for part in parts {
            out.write_all(&compress(codec, part)?)?;
        }
        Ok(path)
    }

    fn tempdir(name: &str) -> io::Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!("tailrace-gz-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn ext(codec: Codec) -> &'static str {
        match codec {
            Codec::Gzip => "gz",
            Codec::Xz => "xz",
            Codec::Zstd => "zst",
            Codec::Bzip2 => "bz2",
        }
    }

    #[test]
    fn matches_by_decompressed_prefix_and_reads_from_an_offset() -> io::Result<()> {
        let dir = tempdir("read")?;
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let (a, b) = text.split_at(5000);
        let plain = dir.join("access.log");
        std::fs::write(&plain, &text)?;
        let fp = Fingerprint::of(&File::open(&plain)?)?;
        assert_eq!(Codec::of_file(&plain, &File::open(&plain)?), None);
        for codec in ALL {
            let name = format!("access.log.2.{}", ext(codec));
            let path = compressed_file(&dir, &name, codec, &[a, b])?;
            assert_eq!(Codec::of_name(&path), Some(codec), "{codec:?}");
            let shared = File::open(&path)?;
            assert!(starts_like(&shared, codec, fp), "{codec:?}");
            assert!(
                starts_like(&shared, codec, fp),
                "{codec:?}: a second look starts over"
            );
            assert_eq!(
                decompressed_len(&shared, codec)?,
                text.len() as u64,
                "{codec:?}"
            );
            assert!(
                !starts_like(&File::open(&plain)?, codec, fp),
                "{codec:?}: plain bytes are not compressed"
            );
            let other_name = format!("x.{}", ext(codec));
            let other_file = File::open(compressed_file(&dir, &other_name, codec, &[b"zzz"])?)?;
            assert!(!starts_like(&other_file, codec, fp), "{codec:?}");

            let mut input = CompressedInput::open_at(&File::open(&path)?, codec, 4000)?;
            let mut rest = Vec::new();
            let mut buf = [0u8; 777];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&buf[..n]);
            }
            assert_eq!(rest, &text[4000..], "{codec:?}");
            assert!(input.is_finished());
            assert_eq!(input.position(), text.len() as u64);
            let past = CompressedInput::open_at(&File::open(&path)?, codec, text.len() as u64 + 1);
            assert!(past.is_err(), "{codec:?}");
        }
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_custom_compressext_is_told_by_magic_bytes() -> io::Result<()> {
        let dir = tempdir("magic")?;
        for codec in ALL {
            // logrotate `compressext .log-old`: the name says nothing.
            let path = compressed_file(&dir, "access.log.1.log-old", codec, &[b"a line\n"])?;
            assert_eq!(Codec::of_name(&path), None);
            assert_eq!(
                Codec::of_file(&path, &File::open(&path)?),
                Some(codec),
                "{codec:?}"
            );
        }
        // Log lines, however odd, are not compressed files.
        for line in [
            &b"BZh9 - - [01/Dec/2026]"[..],
            b"10.0.0.1 - -",
            b"\x1f",
            b"",
        ] {
            assert_eq!(Codec::of_magic(line), None, "{line:?}");
        }
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_an_end() -> io::Result<()> {
        let dir = tempdir("cut")?;
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{i} some log line with words\n").into_bytes())
            .collect();
        for codec in ALL {
            let name = format!("a.{}", ext(codec));
            let path = compressed_file(&dir, &name, codec, &[&text])?;
            let bytes = std::fs::read(&path)?;
            std::fs::write(&path, &bytes[..bytes.len() / 2])?;
            assert!(
                decompressed_len(&File::open(&path)?, codec).is_err(),
                "{codec:?}"
            );
            // Garbage is an error too, never a panic.
            std::fs::write(&path, b"\x28\xb5\x2f\xfd garbage garbage garbage")?;
            assert!(
                decompressed_len(&File::open(&path)?, codec).is_err(),
                "{codec:?}"
            );
        }
        std::fs::remove_dir_all(&dir)
    }
}
