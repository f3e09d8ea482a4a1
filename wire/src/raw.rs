//! Raw-line records: access-log lines exactly as written, each ending in `\n`, no header.
//!
//! This is what the Kinesis Agent sends without conversion, so consumers of such records keep
//! working when a host switches to tailrace's `mode: raw`.

/// The lines of a raw-line record, each without its `\n` (a final line without `\n` included).
///
/// Lines are returned exactly as written: a `\r` before the `\n` stays. Empty data has no
/// lines; `"a\n\nb"` has three (`a`, an empty one, `b`).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut rest = (!data.is_empty()).then_some(body);
    std::iter::from_fn(move || {
        let current = rest?;
        match memchr::memchr(b'\n', current) {
            Some(pos) => {
                rest = Some(&current[pos + 1..]);
                Some(&current[..pos])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Packs lines into raw-line records of at most `max_record_bytes` each.
///
/// Push lines (without their `\n`) one by one; when a line does not fit in the current record,
/// [`RecordPacker::push`] returns the full record (which holds every line pushed before this
/// one) and starts a new record with the line. A line longer than a whole record is cut to
/// `max_record_bytes − 1` bytes (plus its `\n`): a multi-megabyte line is garbage anyway, and the
/// consumer counts it as a reject.
#[derive(Debug, Clone)]
pub struct RecordPacker {
    max_record_bytes: usize,
    buf: Vec<u8>,
    lines: usize,
}

impl RecordPacker {
    /// A packer for records of at most `max_record_bytes` (at least 1 is used). Callers pass
    /// [`crate::MAX_RECORD_BYTES`] minus the partition key length.
    pub fn new(max_record_bytes: usize) -> RecordPacker {
        RecordPacker {
            max_record_bytes: max_record_bytes.max(1),
            buf: Vec::new(),
            lines: 0,
        }
    }

    /// Adds a line (without `\n`; a trailing `\n` is not doubled). Returns the previous record if
    /// this line did not fit into it.
    pub fn push(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = &line[..line.len().min(self.max_record_bytes - 1)];
        let full =
            if !self.buf.is_empty() && self.buf.len() + line.len() + 1 > self.max_record_bytes {
                self.finish()
            } else {
                None
            };
        if self.buf.is_empty() {
            // Sized once per record: growing by doubling would copy it several times.
            self.buf.reserve_exact(self.max_record_bytes);
        }
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.lines += 1;
        full
    }

    /// Takes the current record, if it holds any line.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.lines == 0 {
            return None;
        }
        self.lines = 0;
        Some(std::mem::take(&mut self.buf))
    }

    /// Bytes in the current record.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the current record holds no line.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Lines in the current record.
    pub fn line_count(&self) -> usize {
        self.lines
    }
}

/// Packs all `lines` into records of at most `max_record_bytes` (see [`RecordPacker`]).
pub fn pack<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    max_record_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut packer = RecordPacker::new(max_record_bytes);
    let mut records: Vec<Vec<u8>> = lines.into_iter().filter_map(|l| packer.push(l)).collect();
    records.extend(packer.finish());
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8]) -> Vec<&[u8]> {
        lines(data).collect()
    }

    #[test]
    fn splits_lines() {
        assert!(collect(b"").is_empty());
        assert_eq!(collect(b"a"), vec![b"a".as_slice()]);
        assert_eq!(collect(b"a\n"), vec![b"a".as_slice()]);
        assert_eq!(collect(b"\n"), vec![b"".as_slice()]);
        assert_eq!(collect(b"a\n\nb"), vec![b"a".as_slice(), b"", b"b"]);
        assert_eq!(collect(b"a\r\nb\n"), vec![b"a\r".as_slice(), b"b"]);
    }

    #[test]
    fn packs_within_limit() {
        let input: Vec<Vec<u8>> = (0..100).map(|i| format!("line {i}").into_bytes()).collect();
        let records = pack(input.iter().map(|l| l.as_slice()), 32);
        assert!(records.iter().all(|r| r.len() <= 32 && r.ends_with(b"\n")));
        let back: Vec<&[u8]> = records.iter().flat_map(|r| lines(r)).collect();
        assert_eq!(back, input.iter().map(|l| l.as_slice()).collect::<Vec<_>>());
    }

    #[test]
    fn long_line_is_cut() {
        let records = pack([b"0123456789".as_slice(), b"ab"], 5);
        assert_eq!(records, vec![b"0123\n".to_vec(), b"ab\n".to_vec()]);
    }
}
