//! Unsent lines in a compressed rotation: finding a checkpointed file that
//! logrotate compressed while the agent was down, and reading it from the
//! checkpoint's offset.
//!
//! When the agent is stopped, killed or blocked by an outage with lines not
//! yet read or acknowledged and logrotate compresses the file holding them,
//! they may exist only as `access.log.1.gz` (`compress`, with or without
//! `delaycompress`). The agent does not tail compressed files, but for a
//! displaced reading (see [`crate::tailer`]) it looks among the `.gz` files
//! next to its path and in an `olddir`: one whose *decompressed* first bytes
//! have the reading's fingerprint is that file, and its bytes from the
//! reading's offset on are read like the end of any rotated file.
//!
//! Only gzip is read (logrotate's default `compresscmd`), through `flate2`;
//! `bzip2`, `xz` and `zstd` rotations are not.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use crate::identity::{Fingerprint, FINGERPRINT_BYTES};

/// Whether `path` names a compressed file this module can read.
pub fn is_gzip_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// Whether the decompressed content of `file` starts with the bytes
/// `fingerprint` covers. (Each function here reads `file` from its start,
/// whatever its position.) A file that is not gzip, or is cut short before
/// those bytes, does not match.
pub fn starts_like(file: &File, fingerprint: Fingerprint) -> bool {
    let len = (fingerprint.len as usize).min(FINGERPRINT_BYTES);
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let mut file = file;
    if file.seek(SeekFrom::Start(0)).is_err() {
        return false;
    }
    let mut decoder = MultiGzDecoder::new(BufReader::new(file));
    decoder.read_exact(&mut buf[..len]).is_ok() && Fingerprint::of_bytes(&buf[..len]) == fingerprint
}

/// Decompress all of `file` to count its bytes; errors if the stream is
/// corrupt or cut short (still being written by gzip).
pub fn decompressed_len(file: &File) -> io::Result<u64> {
    let mut file = file;
    file.seek(SeekFrom::Start(0))?;
    let mut decoder = MultiGzDecoder::new(BufReader::new(file));
    io::copy(&mut decoder, &mut io::sink())
}

/// A gzip file read as a stream of its decompressed bytes, from an offset.
pub struct GzInput {
    decoder: MultiGzDecoder<BufReader<File>>,
    /// Decompressed offset of the next byte `read` returns.
    position: u64,
    /// The end of the stream was reached (or it failed and was given up).
    finished: bool,
}

impl GzInput {
    /// Open `file` (a gzip stream from its start) and skip to decompressed
    /// byte `offset`. Errors if the stream ends before it.
    pub fn open_at(mut file: File, offset: u64) -> io::Result<GzInput> {
        file.seek(SeekFrom::Start(0))?;
        let mut decoder = MultiGzDecoder::new(BufReader::new(file));
        let skipped = io::copy(&mut (&mut decoder).take(offset), &mut io::sink())?;
        if skipped < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("decompressed content ends at byte {skipped}, before offset {offset}"),
            ));
        }
        Ok(GzInput {
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
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz_file(dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<std::path::PathBuf> {
        let path = dir.join(name);
        let mut out = File::create(&path)?;
        // Several members, as `cat a.gz b.gz` makes: all of them are read.
        for part in parts {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part)?;
            out.write_all(&enc.finish()?)?;
        }
        Ok(path)
    }

    fn tempdir(name: &str) -> io::Result<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!("tailrace-gz-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    #[test]
    fn matches_by_decompressed_prefix_and_reads_from_an_offset() -> io::Result<()> {
        let dir = tempdir("read")?;
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let (a, b) = text.split_at(5000);
        let path = gz_file(&dir, "access.log.2.gz", &[a, b])?;
        let plain = dir.join("access.log");
        std::fs::write(&plain, &text)?;
        let fp = Fingerprint::of(&File::open(&plain)?)?;

        assert!(is_gzip_name(&path));
        assert!(!is_gzip_name(&plain));
        let shared = File::open(&path)?;
        assert!(starts_like(&shared, fp));
        assert!(starts_like(&shared, fp), "a second look starts over");
        assert_eq!(decompressed_len(&shared)?, text.len() as u64);
        assert!(
            !starts_like(&File::open(&plain)?, fp),
            "plain bytes are not gzip"
        );
        let other = Fingerprint::of(&File::open(&gz_file(&dir, "x.gz", &[b"zzz"])?)?)?;
        assert!(!starts_like(&File::open(&path)?, other));
        assert_eq!(decompressed_len(&File::open(&path)?)?, text.len() as u64);

        let mut input = GzInput::open_at(File::open(&path)?, 4000)?;
        let mut rest = Vec::new();
        let mut buf = [0u8; 777];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
        assert_eq!(rest, &text[4000..]);
        assert!(input.is_finished());
        assert_eq!(input.position(), text.len() as u64);

        let past = GzInput::open_at(File::open(&path)?, text.len() as u64 + 1);
        assert!(past.is_err());
        std::fs::remove_dir_all(&dir)
    }

    #[test]
    fn a_stream_cut_short_is_an_error_not_an_end() -> io::Result<()> {
        let dir = tempdir("cut")?;
        let text: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{i} some log line with words\n").into_bytes())
            .collect();
        let path = gz_file(&dir, "a.gz", &[&text])?;
        let bytes = std::fs::read(&path)?;
        std::fs::write(&path, &bytes[..bytes.len() / 2])?;
        assert!(decompressed_len(&File::open(&path)?).is_err());
        std::fs::remove_dir_all(&dir)
    }
}
