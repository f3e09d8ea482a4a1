//! The hot loop: running a compiled program over one line, recording each field as a
//! pair of `u32` offsets in a reused [`Parsed`] and decoding the few numbers the agent
//! needs (status, bytes, duration, time). No allocation once `Parsed` is warm.
//!
//! Fields normally end at the first occurrence of the literal text that follows them
//! (found with `memchr`). When the rest of the line then fails to match, the parser
//! tries the next occurrence (a `%r` holding a raw `"`, a `%u` holding a space), within
//! a fixed budget per line so a hostile line costs bounded time.

use memchr::memchr;

use crate::calendar::LogTime;
use crate::compile::{Feed, LogFormat, Shape, Step};
use crate::error::{Expected, ParseError};
use crate::time::{self, ClfMemo, TimeAcc};
use crate::zone::ZoneCache;

/// How many times per line the parser may retry a later end for a field.
const BACKTRACK_BUDGET: u32 = 64;

const ABSENT: u32 = u32::MAX;

/// The result of parsing one line: where each field is (offsets into the line) and the
/// decoded numbers. Create once, pass to [`LogFormat::parse`] for every line.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// Per field: start and end offsets; start == ABSENT when not matched.
    pub(crate) spans: Vec<(u32, u32)>,
    pub(crate) client_slot: Option<usize>,
    pub(crate) status: Option<u16>,
    pub(crate) bytes: u64,
    pub(crate) duration_us: Option<u64>,
    pub(crate) time: Option<LogTime>,
    acc: [TimeAcc; 2],
    zone_cache: ZoneCache,
    /// The last CLF time text and its parts (most lines repeat it).
    clf_memo: ClfMemo,
    /// The last parts finished into a time that no zone changes, and that
    /// time (most lines name the second of the line before).
    finished: Option<(TimeAcc, LogTime)>,
}

impl Default for Parsed {
    fn default() -> Self {
        Parsed::new()
    }
}

impl Parsed {
    /// An empty result, to be filled by [`LogFormat::parse`].
    pub fn new() -> Parsed {
        Parsed {
            spans: Vec::new(),
            client_slot: None,
            status: None,
            bytes: 0,
            duration_us: None,
            time: None,
            acc: [TimeAcc::default(); 2],
            zone_cache: ZoneCache::default(),
            clf_memo: ClfMemo::default(),
            finished: None,
        }
    }

    /// Client address: `%a` if the format has it, else `%h`. `None` when `-` or absent.
    pub fn client<'l>(&self, line: &'l [u8]) -> Option<&'l [u8]> {
        self.field(line, self.client_slot?)
    }

    /// Raw text of field `idx` (see [`LogFormat::field_index`]); `None` when absent or
    /// `-`. Not unescaped. For `%t` this is the text inside the brackets. `line` must be
    /// the line that was parsed.
    pub fn field<'l>(&self, line: &'l [u8], idx: usize) -> Option<&'l [u8]> {
        let &(s, e) = self.spans.get(idx)?;
        if s == ABSENT {
            return None;
        }
        let v = line.get(s as usize..e as usize)?;
        (v != b"-").then_some(v)
    }

    /// The time of the line, combined from all `%t` / `%{..}t` parts (the `begin:`
    /// parts, or the `end:` parts if there are no others). `None` without a time, or
    /// when the parts do not name an instant (no year and no epoch seconds). A custom
    /// format without `%z` is local time in the format's zone
    /// ([`LogFormat::with_zone`], UTC unless set); the offset found is in
    /// [`LogTime::offset_secs`].
    pub fn time(&self) -> Option<LogTime> {
        self.time
    }

    /// Final status (`%>s`), else original status (`%s` / `%<s`). `None` when absent or
    /// `-`.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Response size: `%b` or `%B`, else `%O`. `-` is 0; 0 when the format has none.
    pub fn response_bytes(&self) -> u64 {
        self.bytes
    }

    /// Time taken in microseconds: `%D` (or `%{us}T`), else `%{ms}T` × 1000, else `%T` /
    /// `%{s}T` × 1 000 000. `None` when absent or `-`.
    pub fn duration_us(&self) -> Option<u64> {
        self.duration_us
    }
}

#[inline]
fn fail(column: usize, expected: Expected) -> ParseError {
    ParseError { column, expected }
}

/// Whether the byte at `q` is escaped by an odd number of backslashes after `start`.
#[inline]
fn escaped(line: &[u8], start: usize, q: usize) -> bool {
    let mut n = 0;
    let mut i = q;
    while i > start && line[i - 1] == b'\\' {
        n += 1;
        i -= 1;
    }
    n % 2 == 1
}

/// First position at or after `from` where `term` starts (not escaped if `quoted`).
#[inline]
fn find_term(line: &[u8], from: usize, start: usize, term: &[u8], quoted: bool) -> Option<usize> {
    let first = *term.first()?;
    let mut at = from;
    while at <= line.len() {
        let q = at + memchr(first, line.get(at..)?)?;
        if line[q..].starts_with(term) && !(quoted && escaped(line, start, q)) {
            return Some(q);
        }
        at = q + 1;
    }
    None
}

impl LogFormat {
    /// Parse one line (without its trailing `\n`; a trailing `\r` is ignored) into
    /// `out`, reusing its storage. On error `out` holds partial results.
    pub fn parse(&self, line: &[u8], out: &mut Parsed) -> Result<(), ParseError> {
        let line = match line.last() {
            Some(b'\r') => &line[..line.len() - 1],
            _ => line,
        };
        if line.len() >= ABSENT as usize {
            return Err(fail(0, Expected::Text("a line shorter than 4 GiB")));
        }
        out.spans.clear();
        out.spans.resize(self.fields.len(), (ABSENT, ABSENT));
        out.client_slot = self.client_slot;
        out.status = None;
        out.bytes = 0;
        out.duration_us = None;
        out.time = None;
        out.acc = [TimeAcc::default(); 2];
        let mut budget = BACKTRACK_BUDGET;
        self.run(0, line, 0, out, &mut budget)?;
        if self.has_time {
            let acc = &out.acc[usize::from(!out.acc[0].seen())];
            out.time = match out.finished {
                Some((parts, time)) if acc.same_parts(&parts) => Some(time),
                _ => {
                    let time = acc.finish(&self.zone, &mut out.zone_cache)?;
                    if let Some(t) = time.filter(|_| acc.zone_free()) {
                        out.finished = Some((*acc, t));
                    }
                    time
                }
            };
        }
        Ok(())
    }

    /// Run steps from `i` at `pos`. Recurses only at fields whose end may need to move.
    fn run(
        &self,
        mut i: usize,
        line: &[u8],
        mut pos: usize,
        out: &mut Parsed,
        budget: &mut u32,
    ) -> Result<(), ParseError> {
        loop {
            let Some(step) = self.steps.get(i) else {
                return Ok(());
            };
            match step {
                Step::End => {
                    return if pos == line.len() {
                        Ok(())
                    } else {
                        Err(fail(pos, Expected::EndOfLine))
                    };
                }
                Step::Lit(lit) => {
                    let rest = &line[pos..];
                    if rest.starts_with(lit) {
                        pos += lit.len();
                    } else {
                        let k = lit.iter().zip(rest).take_while(|(a, b)| a == b).count();
                        return Err(fail(pos + k, Expected::Byte(lit[k])));
                    }
                }
                Step::Field(f) => match &f.shape {
                    Shape::Number { follow, at_end } => {
                        let start = pos;
                        let mut v: u64 = 0;
                        let mut overflow = false;
                        let dash = line.get(pos) == Some(&b'-');
                        if dash {
                            pos += 1;
                        } else {
                            while let Some(c @ b'0'..=b'9') = line.get(pos) {
                                match v
                                    .checked_mul(10)
                                    .and_then(|v| v.checked_add(u64::from(c - b'0')))
                                {
                                    Some(n) => v = n,
                                    None => overflow = true,
                                }
                                pos += 1;
                            }
                        }
                        let next_ok = match (follow, at_end) {
                            (Some(b), _) => line.get(pos) == Some(b),
                            (None, true) => pos == line.len(),
                            (None, false) => true,
                        };
                        if pos == start || !next_ok || overflow {
                            let col = if overflow { start } else { pos };
                            return Err(fail(col, Expected::Text(f.digits_expected)));
                        }
                        out.spans[f.slot] = (start as u32, pos as u32);
                        match f.feed {
                            Feed::None => {}
                            Feed::Status => {
                                out.status = if dash {
                                    None
                                } else {
                                    Some(u16::try_from(v).map_err(|_| {
                                        fail(start, Expected::Text(f.digits_expected))
                                    })?)
                                }
                            }
                            Feed::Bytes => out.bytes = v,
                            Feed::Duration(mult) => {
                                out.duration_us = (!dash).then(|| v.saturating_mul(mult))
                            }
                        }
                    }
                    Shape::Time(ti) => {
                        let spec = &self.times[*ti];
                        let start = pos;
                        if line.get(pos) == Some(&b'-')
                            && !line.get(pos + 1).is_some_and(u8::is_ascii_digit)
                        {
                            pos += 1;
                            out.spans[f.slot] = (start as u32, pos as u32);
                        } else {
                            let acc = &mut out.acc[usize::from(spec.end)];
                            let (end, s, e) = time::parse(spec, line, pos, acc, &mut out.clf_memo)?;
                            out.spans[f.slot] = (s as u32, e as u32);
                            pos = end;
                        }
                    }
                    Shape::ToEnd => {
                        out.spans[f.slot] = (pos as u32, line.len() as u32);
                        pos = line.len();
                    }
                    Shape::Delimited { term, quoted } => {
                        let start = pos;
                        let mut from = pos;
                        let mut first_err = None;
                        loop {
                            let Some(end) = find_term(line, from, start, term, *quoted) else {
                                return Err(first_err
                                    .unwrap_or_else(|| fail(line.len(), Expected::Byte(term[0]))));
                            };
                            out.spans[f.slot] = (start as u32, end as u32);
                            match self.run(i + 1, line, end, out, budget) {
                                Ok(()) => return Ok(()),
                                Err(e) => {
                                    let e = *first_err.get_or_insert(e);
                                    if *budget == 0 {
                                        return Err(e);
                                    }
                                    *budget -= 1;
                                    from = end + 1;
                                }
                            }
                        }
                    }
                    Shape::Open => {
                        let start = pos;
                        let mut first_err = None;
                        for end in start..=line.len() {
                            out.spans[f.slot] = (start as u32, end as u32);
                            match self.run(i + 1, line, end, out, budget) {
                                Ok(()) => return Ok(()),
                                Err(e) => {
                                    let e = *first_err.get_or_insert(e);
                                    if *budget == 0 {
                                        return Err(e);
                                    }
                                    *budget -= 1;
                                }
                            }
                        }
                        return Err(first_err.unwrap_or_else(|| fail(start, Expected::EndOfLine)));
                    }
                },
            }
            i += 1;
        }
    }
}
