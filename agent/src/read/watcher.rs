//! Reading one file: lines out of an open descriptor, from an offset, with a
//! length limit.
//!
//! A `FileWatcher` lives from the moment the tailer opens a file until the
//! tailer closes it (rotated away and quiet, or deleted and drained). It owns
//! the descriptor, so a renamed or deleted file keeps being read; it holds a
//! trailing partial line until its newline arrives; it cuts lines longer than
//! the limit, ships their first bytes and skips the rest; and it notices
//! truncation (`copytruncate`, `truncate -s N`) when the file shrinks below
//! what it has read, or when its first bytes, or the bytes just before the
//! read position, are no longer those it read (truncated and written again
//! past the read position while nobody looked).
//! A watcher may also read a compressed rotation as a stream ([`CompressedInput`]): the
//! unsent end of a file compressed while the agent was down.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::Instant;

use crate::read::compressed::CompressedInput;
use crate::shared::identity::{read_at_most, FileKey, Fingerprint, FINGERPRINT_BYTES};
use crate::shared::ledger::SourceId;
use crate::shared::sink::{LineSink, SinkClosed};

/// Bytes read from the file per `read_at` call.
pub const READ_CHUNK: usize = 64 * 1024;

/// How many bytes just before the read position are compared with what was
/// read there: enough to tell a line from another (a line's time and
/// address), one small read per poll that finds new bytes.
pub const TAIL_BYTES: usize = 32;

/// What one poll of a watcher found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Bytes read (possibly 0: nothing new).
    Read(u64),
    /// The file is shorter than what was already read: it was truncated.
    Truncated {
        /// The size found.
        size: u64,
    },
}

/// One open file being read. See the module doc for its lifecycle.
pub struct FileWatcher {
    /// The ledger entry this reading reports to.
    pub source: SourceId,
    /// Device + inode.
    pub key: FileKey,
    /// Last path it was found at.
    pub path: PathBuf,
    file: File,
    /// Fingerprint as far as known (grows until full).
    pub fingerprint: Fingerprint,
    /// The first bytes of this generation as read, while the fingerprint
    /// is not full and the reading began at 0: the fingerprint is taken of
    /// the bytes read, not of the file again, which a `copytruncate` may
    /// have emptied since.
    head: Option<Vec<u8>>,
    /// Offset of the first byte not yet passed to the sink as (part of) a line.
    offset: u64,
    /// Bytes from `offset` on, read but not yet a complete line.
    buf: Vec<u8>,
    /// Discarding the tail of an over-long line.
    skipping: bool,
    /// Last time the file grew.
    pub last_growth: Instant,
    /// The path no longer leads to this file (rotated away or deleted).
    pub orphaned: bool,
    /// A rotated copy (plain or compressed) read for a displaced reading's
    /// unsent end: nobody writes to it, so it closes once drained and quiet.
    pub copy: bool,
    /// Lines cut because they exceeded the limit.
    pub truncated_lines: u64,
    /// Modification time at the last discovery, while nothing of this
    /// generation has been read: a change then, with nothing to read, is a
    /// generation written and truncated between two looks (`copytruncate`).
    pub mtime_at_look: Option<std::time::SystemTime>,
    /// Fingerprint, read offset, reading and tail (when known) of the
    /// generation before the last truncation, to recognize its
    /// `copytruncate` copy.
    pub previous: Option<(Fingerprint, u64, SourceId, Option<Fingerprint>)>,
    /// Set when `file` is a compressed rotation read as a stream of its
    /// decompressed bytes (offsets are decompressed offsets).
    gz: Option<Box<CompressedInput>>,
    /// The bytes just before `offset` (up to [`TAIL_BYTES`]), as read: a
    /// file cut short and written again past them no longer has them
    /// there.
    tail: Tail,
    /// The largest size a poll saw of this generation: on a truncation, the
    /// bytes between the read position and it were never read.
    pub seen_size: u64,
    /// Why it was opened where it was (the rule of [`crate::read::decision`]).
    pub why: &'static str,
    /// The file's own path, when `path` reaches it through a symbolic link.
    pub target: Option<PathBuf>,
}

impl FileWatcher {
    /// Start reading `file` at `offset`.
    pub fn new(
        source: SourceId,
        key: FileKey,
        path: PathBuf,
        file: File,
        fingerprint: Fingerprint,
        offset: u64,
    ) -> Self {
        let mtime_at_look = file.metadata().and_then(|m| m.modified()).ok();
        // Starting past 0 (a checkpoint, `start_at: end`, a copy's offset):
        // the bytes before it, to see a cut there before anything is read.
        let tail = Tail::before(&file, offset);
        FileWatcher {
            source,
            key,
            path,
            file,
            fingerprint,
            // From 0, the fingerprint is taken of the bytes read: the file
            // may have been truncated and written again since it was opened
            // (`copytruncate` right after), and a fingerprint of bytes never
            // read would make their copy look like this reading's.
            head: (offset == 0).then(Vec::new),
            offset,
            buf: Vec::new(),
            skipping: false,
            last_growth: Instant::now(),
            orphaned: false,
            copy: false,
            truncated_lines: 0,
            mtime_at_look,
            previous: None,
            gz: None,
            tail,
            seen_size: offset,
            why: "",
            target: None,
        }
    }

    /// Read the compressed rotation `file` from decompressed byte `gz.position()`:
    /// a rotated file, so it starts orphaned and closes once drained.
    pub fn compressed(
        source: SourceId,
        key: FileKey,
        path: PathBuf,
        file: File,
        fingerprint: Fingerprint,
        gz: CompressedInput,
    ) -> Self {
        let offset = gz.position();
        let mut w = FileWatcher::new(source, key, path, file, fingerprint, offset);
        // Offsets are decompressed ones: the file's own bytes say nothing.
        w.tail = Tail::default();
        w.gz = Some(Box::new(gz));
        w.orphaned = true;
        w.copy = true;
        w
    }

    /// Whether this watcher reads a compressed rotation.
    pub fn is_compressed(&self) -> bool {
        self.gz.is_some()
    }

    /// Offset through which everything was passed to the sink.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The open descriptor.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes buffered as an incomplete line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// A fingerprint of the bytes just before [`FileWatcher::offset`] (up
    /// to [`TAIL_BYTES`]), when they were read.
    pub fn mark(&self) -> Option<Fingerprint> {
        (self.gz.is_none() && self.tail.len > 0)
            .then(|| Fingerprint::of_bytes(&self.tail.bytes[..self.tail.len]))
    }

    /// Start over at 0 as a new source (after truncation).
    pub fn restart(&mut self, source: SourceId, fingerprint: Fingerprint) {
        self.previous = Some((self.fingerprint, self.offset, self.source, self.mark()));
        self.source = source;
        self.fingerprint = fingerprint;
        self.head = Some(Vec::new());
        self.offset = 0;
        self.buf.clear();
        self.skipping = false;
        self.last_growth = Instant::now();
        self.tail = Tail::default();
        self.seen_size = 0;
    }

    /// Whether the file has been deleted (no links left).
    pub fn is_deleted(&self) -> bool {
        self.file.metadata().map(|m| m.nlink() == 0).unwrap_or(true)
    }

    /// Size of the file now. For a compressed rotation: its decompressed length
    /// once the stream was read to the end, `u64::MAX` before.
    pub fn size(&self) -> io::Result<u64> {
        match &self.gz {
            Some(gz) if gz.is_finished() => Ok(gz.position()),
            Some(_) => Ok(u64::MAX),
            None => Ok(self.file.metadata()?.len()),
        }
    }

    /// Read up to `budget` bytes, passing complete lines to `sink`.
    pub fn poll(
        &mut self,
        sink: &mut dyn LineSink,
        max_line: usize,
        budget: u64,
    ) -> io::Result<Result<Polled, SinkClosed>> {
        if self.gz.is_some() {
            return Ok(self.poll_compressed(sink, max_line, budget));
        }
        let size = self.size()?;
        let mut read_pos = self.offset + self.buf.len() as u64;
        if size < read_pos {
            return Ok(Ok(Polled::Truncated { size }));
        }
        // Truncated and written again past our offset while we were not
        // looking (blocked by a Kinesis outage, say): the size alone cannot
        // tell; the first bytes can when it was emptied (`copytruncate`),
        // the bytes just before the offset when it was cut to another size
        // (`truncate -s N`). Two reads of at most 256 and 32 bytes per poll
        // that finds new bytes, not per line.
        if size > read_pos
            && read_pos > 0
            && ((self.fingerprint.len > 0 && !self.fingerprint.matches(&self.file)?)
                || !self.tail.matches(&self.file, self.offset)?)
        {
            return Ok(Ok(Polled::Truncated { size }));
        }
        // Bytes of this generation, as far as anyone can tell now.
        self.seen_size = self.seen_size.max(size);
        let mut total = 0u64;
        while read_pos < size && total < budget {
            // The sink may have blocked for minutes (an outage) since the
            // last chunk: look again before reading on.
            if total > 0 && !self.tail.matches(&self.file, self.offset)? {
                let size = self.size()?;
                return Ok(Ok(Polled::Truncated { size }));
            }
            let want = READ_CHUNK.min((size - read_pos) as usize);
            let old_len = self.buf.len();
            self.buf.resize(old_len + want, 0);
            let n = match self.file.read_at(&mut self.buf[old_len..], read_pos) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old_len);
                    return Err(e);
                }
            };
            self.buf.truncate(old_len + n);
            if n == 0 {
                break;
            }
            if let Some(head) = self.head.as_mut() {
                if head.len() as u64 == read_pos && head.len() < FINGERPRINT_BYTES {
                    let take = n.min(FINGERPRINT_BYTES - head.len());
                    head.extend_from_slice(&self.buf[old_len..old_len + take]);
                }
            }
            read_pos += n as u64;
            total += n as u64;
            if let Err(closed) = self.split_lines(sink, max_line, old_len) {
                return Ok(Err(closed));
            }
        }
        if total > 0 {
            self.last_growth = Instant::now();
            match self.head.take() {
                Some(head) => {
                    self.fingerprint = Fingerprint::of_bytes(&head);
                    if head.len() < FINGERPRINT_BYTES {
                        self.head = Some(head);
                    }
                }
                None if !self.fingerprint.is_full() => {
                    self.fingerprint = Fingerprint::of(&self.file)?;
                }
                None => {}
            }
        } else if self.buf.is_empty() && self.buf.capacity() > 0 {
            // Idle: give the buffer back so many quiet files cost little.
            self.buf = Vec::new();
        }
        Ok(Ok(Polled::Read(total)))
    }

    /// Pass a partial last line (bytes after the last newline) on as a
    /// line: the file is closing and nobody will complete it.
    pub fn flush_partial(&mut self, sink: &mut dyn LineSink) -> Result<(), SinkClosed> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if !self.skipping {
            sink.line(self.source, self.offset, &self.buf, false)?;
        }
        self.tail.push(&self.buf);
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        self.skipping = false;
        Ok(())
    }

    /// [`FileWatcher::poll`] for a compressed rotation: decompressed bytes in
    /// order. A stream that turns out corrupt is given up at that point,
    /// with an error naming the file and the offset (it was checked whole
    /// before reading began, so this takes a change on disk since).
    fn poll_compressed(
        &mut self,
        sink: &mut dyn LineSink,
        max_line: usize,
        budget: u64,
    ) -> Result<Polled, SinkClosed> {
        let mut total = 0u64;
        while total < budget {
            let Some(gz) = self.gz.as_mut() else { break };
            let old_len = self.buf.len();
            self.buf.resize(old_len + READ_CHUNK, 0);
            let n = match gz.read(&mut self.buf[old_len..]) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(path = %self.path.display(), offset = gz.position(), error = %e, "compressed rotation unreadable from here on; the lines after this offset are not shipped");
                    0
                }
            };
            self.buf.truncate(old_len + n);
            if n == 0 {
                break;
            }
            total += n as u64;
            self.split_lines(sink, max_line, old_len)?;
        }
        if total > 0 {
            self.last_growth = Instant::now();
        }
        Ok(Polled::Read(total))
    }

    /// Pass every complete line in `buf` to the sink; `new_from` is where the
    /// bytes just read begin (earlier bytes hold no newline).
    fn split_lines(
        &mut self,
        sink: &mut dyn LineSink,
        max_line: usize,
        new_from: usize,
    ) -> Result<(), SinkClosed> {
        let mut start = 0usize;
        let mut scan = new_from;
        if self.skipping {
            match memchr::memchr(b'\n', &self.buf[scan..]) {
                Some(i) => {
                    start = scan + i + 1;
                    scan = start;
                    self.skipping = false;
                }
                None => {
                    self.tail.push(&self.buf);
                    self.offset += self.buf.len() as u64;
                    self.buf.clear();
                    return Ok(());
                }
            }
        }
        for nl in memchr::memchr_iter(b'\n', &self.buf[scan..]) {
            let end = scan + nl;
            let line = &self.buf[start..end];
            let line_start = self.offset + start as u64;
            if line.len() > max_line {
                self.truncated_lines += 1;
                sink.line(self.source, line_start, &line[..max_line], true)?;
            } else {
                sink.line(self.source, line_start, line, false)?;
            }
            start = end + 1;
        }
        // An incomplete line longer than the limit: ship its head, skip the rest.
        if self.buf.len() - start > max_line {
            let line_start = self.offset + start as u64;
            self.truncated_lines += 1;
            sink.line(
                self.source,
                line_start,
                &self.buf[start..start + max_line],
                true,
            )?;
            self.skipping = true;
            start = self.buf.len();
        }
        // The bytes just before the new offset: one copy of at most 32
        // bytes per read, not per line.
        self.tail.push(&self.buf[..start]);
        self.offset += start as u64;
        self.buf.drain(..start);
        Ok(())
    }
}

/// The bytes of a file just before a reading's offset (up to
/// [`TAIL_BYTES`]).
#[derive(Default)]
struct Tail {
    bytes: [u8; TAIL_BYTES],
    len: usize,
}

impl Tail {
    /// The bytes of `file` just before `offset` (none at 0, or when they
    /// cannot be read).
    fn before(file: &File, offset: u64) -> Tail {
        let mut t = Tail::default();
        let n = (offset.min(TAIL_BYTES as u64)) as usize;
        match read_at_most(file, &mut t.bytes[..n], offset - n as u64) {
            Ok(got) if got == n => {
                t.len = n;
                t
            }
            _ => Tail::default(),
        }
    }

    /// `bytes` were just passed, ending at the new offset.
    fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL_BYTES {
            self.bytes
                .copy_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
            self.len = TAIL_BYTES;
            return;
        }
        let keep = (TAIL_BYTES - bytes.len()).min(self.len);
        self.bytes.copy_within(self.len - keep..self.len, 0);
        self.bytes[keep..keep + bytes.len()].copy_from_slice(bytes);
        self.len = keep + bytes.len();
    }

    /// Whether `file` still has these bytes just before `offset` (true
    /// when none are known).
    fn matches(&self, file: &File, offset: u64) -> io::Result<bool> {
        let n = self.len;
        if n == 0 || offset < n as u64 {
            return Ok(true);
        }
        let mut now = [0u8; TAIL_BYTES];
        let got = read_at_most(file, &mut now[..n], offset - n as u64)?;
        Ok(got == n && now[..n] == self.bytes[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Default)]
    struct Collect(Vec<(u64, Vec<u8>, bool)>);
    impl LineSink for Collect {
        fn line(
            &mut self,
            _s: SourceId,
            start: u64,
            line: &[u8],
            truncated: bool,
        ) -> Result<(), SinkClosed> {
            self.0.push((start, line.to_vec(), truncated));
            Ok(())
        }
        fn tick(&mut self) -> Result<(), SinkClosed> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkClosed> {
            Ok(())
        }
    }

    fn watcher(path: &std::path::Path) -> io::Result<FileWatcher> {
        let f = File::open(path)?;
        let key = FileKey::of(&f)?;
        Ok(FileWatcher::new(
            SourceId(1),
            key,
            path.into(),
            f,
            Fingerprint::EMPTY,
            0,
        ))
    }

    #[test]
    fn partial_lines_wait_and_long_lines_are_cut() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tailrace-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("a.log");
        let mut f = File::create(&path)?;
        f.write_all(b"one\ntw")?;
        let mut w = watcher(&path)?;
        let mut sink = Collect::default();
        assert_eq!(w.poll(&mut sink, 10, u64::MAX)?.ok(), Some(Polled::Read(6)));
        assert_eq!(sink.0, vec![(0, b"one".to_vec(), false)]);
        f.write_all(b"o\n0123456789abcdef\nlast\n")?;
        w.poll(&mut sink, 10, u64::MAX)?.ok();
        assert_eq!(sink.0[1], (4, b"two".to_vec(), false));
        assert_eq!(sink.0[2], (8, b"0123456789".to_vec(), true));
        assert_eq!(sink.0[3], (25, b"last".to_vec(), false));
        assert_eq!(w.offset(), 30);
        // an over-long line still being written is cut once, then skipped to its newline
        f.write_all(b"ABCDEFGHIJKLMNOP")?;
        w.poll(&mut sink, 10, u64::MAX)?.ok();
        f.write_all(b"QRST\nok\n")?;
        w.poll(&mut sink, 10, u64::MAX)?.ok();
        assert_eq!(sink.0[4], (30, b"ABCDEFGHIJ".to_vec(), true));
        assert_eq!(sink.0[5], (51, b"ok".to_vec(), false));
        assert_eq!(sink.0.len(), 6);
        // truncation is reported
        f.set_len(0)?;
        assert_eq!(
            w.poll(&mut sink, 10, u64::MAX)?.ok(),
            Some(Polled::Truncated { size: 0 })
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// `truncate -s N` while the reader was not looking, then written past
    /// where it stood: the first bytes are the same, the size is larger;
    /// only the bytes before the read position tell.
    #[test]
    fn a_file_cut_to_any_size_and_written_past_the_read_position_is_seen() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tailrace-wcut-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("a.log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        let lines: String = (0..40)
            .map(|i| format!("line {i:04} of the first run\n"))
            .collect();
        f.write_all(lines.as_bytes())?;
        let mut w = watcher(&path)?;
        let mut sink = Collect::default();
        w.poll(&mut sink, 1000, u64::MAX)?.ok();
        assert_eq!(sink.0.len(), 40);
        let read = w.offset();
        f.set_len(300)?;
        let more: String = (0..40)
            .map(|i| format!("line {i:04} of the second run\n"))
            .collect();
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new().append(true).open(&path)?,
            more.as_bytes(),
        )?;
        assert!(std::fs::metadata(&path)?.len() > read);
        assert!(matches!(
            w.poll(&mut sink, 1000, u64::MAX)?.ok(),
            Some(Polled::Truncated { .. })
        ));
        assert_eq!(
            sink.0.len(),
            40,
            "nothing read past the cut as if it were the old file"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// Opened (and fingerprinted) at 0, then truncated and written again
    /// before the first read (`copytruncate` right after a reload's
    /// restart, model seed 82): the fingerprint is of the bytes read, so
    /// the copy of the bytes never read is not taken for this reading.
    #[test]
    fn a_reading_from_0_is_fingerprinted_by_what_it_read() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tailrace-wfp-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("a.log");
        let first: String = (0..20)
            .map(|i| format!("first generation line {i:04}\n"))
            .collect();
        std::fs::write(&path, &first)?;
        let f = File::open(&path)?;
        let key = FileKey::of(&f)?;
        let at_open = Fingerprint::of(&f)?;
        let mut w = FileWatcher::new(SourceId(1), key, path.clone(), f, at_open, 0);
        let second: String = (0..20)
            .map(|i| format!("second generation line {i:04}\n"))
            .collect();
        std::fs::write(&path, &second)?;
        let mut sink = Collect::default();
        w.poll(&mut sink, 1000, u64::MAX)?.ok();
        assert_ne!(w.fingerprint, at_open);
        assert_eq!(w.fingerprint, Fingerprint::of(&File::open(&path)?)?);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn the_tail_follows_reads_of_any_length() {
        let mut t = Tail::default();
        t.push(b"0123456789");
        assert_eq!(&t.bytes[..t.len], b"0123456789");
        t.push(b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(&t.bytes[..t.len], b"456789abcdefghijklmnopqrstuvwxyz");
        t.push(&[b'.'; 40]);
        assert_eq!(&t.bytes[..t.len], &[b'.'; TAIL_BYTES]);
    }
}
