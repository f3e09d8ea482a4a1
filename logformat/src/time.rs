//! Time: compiling `%t` / `%{format}t` into a small program once, parsing a time part
//! of a line by hand (a fixed-position fast path for Apache's default
//! `[%d/%b/%Y:%H:%M:%S %z]`), and combining several parts into one [`LogTime`]. A
//! time without an offset is local time in the format's [`Zone`] (see `zone`); an
//! impossible date (`31/Feb`) is refused. Dates and writing a time as text are
//! [`crate::calendar`]'s.

use crate::calendar::{days_from_civil, LogTime, MONTHS, WEEKDAYS};
use crate::error::{Expected, ParseError};
use crate::zone::{Zone, ZoneCache};

mod clf;

use clf::parse_clf;
pub(crate) use clf::ClfMemo;

/// One conversion of a strftime-style pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(u8),
    /// `%n`, `%t`: any run of white space (possibly empty).
    Space,
    Year4,
    Year2,
    Month,
    MonthName,
    Day,
    DaySpace,
    Yday,
    Hour,
    Hour12,
    Minute,
    Second,
    AmPm,
    Weekday,
    Zone,
    ZoneName,
    Epoch,
}

/// What one `%t` / `%{..}t` directive writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    /// `%d/%b/%Y:%H:%M:%S %z`, in brackets for plain `%t`.
    Clf {
        brackets: bool,
    },
    Strf(Vec<Tok>),
    Sec,
    Msec,
    Usec,
    MsecFrac,
    UsecFrac,
}

/// A compiled time directive: the format and whether it logs the end of the request
/// (`end:`) rather than its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimeSpec {
    pub format: TimeFormat,
    pub end: bool,
}

const STRF_KNOWN: &str =
    "%Y %y %m %d %e %j %H %I %M %S %p %b %h %B %a %A %z %Z %s %T %F %D %R %n %t %%";

impl TimeSpec {
    /// Whether this part is a calendar time without an offset (read in the zone).
    pub(crate) fn is_local(&self) -> bool {
        match &self.format {
            TimeFormat::Strf(toks) => {
                !toks.contains(&Tok::Zone)
                    && !toks.contains(&Tok::Epoch)
                    && toks
                        .iter()
                        .any(|t| matches!(t, Tok::Hour | Tok::Hour12 | Tok::Day))
            }
            _ => false,
        }
    }

    /// Compile the argument of `%{..}t` (`None` for plain `%t`). On error: char offset
    /// within the argument and a message.
    pub(crate) fn compile(arg: Option<&str>) -> Result<TimeSpec, (usize, String)> {
        let Some(arg) = arg else {
            return Ok(TimeSpec {
                format: TimeFormat::Clf { brackets: true },
                end: false,
            });
        };
        let (end, body, skip) = if let Some(b) = arg.strip_prefix("begin:") {
            (false, b, 6)
        } else if let Some(b) = arg.strip_prefix("end:") {
            (true, b, 4)
        } else {
            (false, arg, 0)
        };
        let format = match body {
            "sec" => TimeFormat::Sec,
            "msec" => TimeFormat::Msec,
            "usec" => TimeFormat::Usec,
            "msec_frac" => TimeFormat::MsecFrac,
            "usec_frac" => TimeFormat::UsecFrac,
            "" => TimeFormat::Clf { brackets: true },
            "%d/%b/%Y:%H:%M:%S %z" => TimeFormat::Clf { brackets: false },
            _ => TimeFormat::Strf(compile_strf(body).map_err(|(o, m)| (o + skip, m))?),
        };
        Ok(TimeSpec { format, end })
    }
}

fn compile_strf(body: &str) -> Result<Vec<Tok>, (usize, String)> {
    let mut toks = Vec::new();
    let mut it = body.chars().enumerate().peekable();
    while let Some((i, c)) = it.next() {
        if c != '%' {
            let mut buf = [0u8; 4];
            toks.extend(c.encode_utf8(&mut buf).bytes().map(Tok::Lit));
            continue;
        }
        let Some((_, k)) = it.next() else {
            return Err((
                i,
                "expected a conversion letter after '%' in time format".into(),
            ));
        };
        match k {
            'Y' => toks.push(Tok::Year4),
            'y' => toks.push(Tok::Year2),
            'm' => toks.push(Tok::Month),
            'd' => toks.push(Tok::Day),
            'e' => toks.push(Tok::DaySpace),
            'j' => toks.push(Tok::Yday),
            'H' => toks.push(Tok::Hour),
            'I' => toks.push(Tok::Hour12),
            'M' => toks.push(Tok::Minute),
            'S' => toks.push(Tok::Second),
            'p' => toks.push(Tok::AmPm),
            'b' | 'h' | 'B' => toks.push(Tok::MonthName),
            'a' | 'A' => toks.push(Tok::Weekday),
            'z' => toks.push(Tok::Zone),
            'Z' => toks.push(Tok::ZoneName),
            's' => toks.push(Tok::Epoch),
            'n' | 't' => toks.push(Tok::Space),
            '%' => toks.push(Tok::Lit(b'%')),
            'T' => toks.extend([
                Tok::Hour,
                Tok::Lit(b':'),
                Tok::Minute,
                Tok::Lit(b':'),
                Tok::Second,
            ]),
            'R' => toks.extend([Tok::Hour, Tok::Lit(b':'), Tok::Minute]),
            'F' => toks.extend([
                Tok::Year4,
                Tok::Lit(b'-'),
                Tok::Month,
                Tok::Lit(b'-'),
                Tok::Day,
            ]),
            'D' => toks.extend([
                Tok::Month,
                Tok::Lit(b'/'),
                Tok::Day,
                Tok::Lit(b'/'),
                Tok::Year2,
            ]),
            other => {
                return Err((
                    i,
                    format!("unknown time conversion %{other} (expected one of {STRF_KNOWN}, or sec, msec, usec, msec_frac, usec_frac)"),
                ))
            }
        }
    }
    Ok(toks)
}

/// The parts of a time seen so far in one line (one accumulator for `begin:` parts,
/// one for `end:` parts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimeAcc {
    seen: bool,
    /// The text gave the offset (`%z`, CLF, or a `%Z` of UTC/GMT).
    has_offset: bool,
    /// Where the first part of this time starts in the line (for errors).
    col: u32,
    has_year: bool,
    has_epoch: bool,
    hour12: bool,
    /// 0 unknown, 1 AM, 2 PM
    ampm: u8,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    yday: u16,
    year: i32,
    offset: i32,
    nanos: u32,
    epoch: i64,
}

impl TimeAcc {
    /// Whether any part of this time was parsed.
    pub(crate) fn seen(&self) -> bool {
        self.seen
    }

    /// Whether `other` holds the same parts (where they began in the line
    /// aside).
    #[inline]
    pub(crate) fn same_parts(&self, other: &TimeAcc) -> bool {
        TimeAcc { col: 0, ..*self } == TimeAcc { col: 0, ..*other }
    }

    /// Whether [`TimeAcc::finish`] gives the same for these parts whatever
    /// the zone (the text gave the offset, or epoch seconds).
    #[inline]
    pub(crate) fn zone_free(&self) -> bool {
        self.has_offset || self.has_epoch
    }

    /// Combine the parts into a time; `None` when they do not name an instant
    /// (no year and no epoch seconds). Without an offset in the text the time is
    /// local time in `zone` (resolved through `cache`). A date that does not exist
    /// (`31/Feb`, day 366 of a common year) is an error.
    #[inline]
    pub(crate) fn finish(
        &self,
        zone: &Zone,
        cache: &mut ZoneCache,
    ) -> Result<Option<LogTime>, ParseError> {
        let (unix_secs, offset) = if self.has_epoch {
            (self.epoch, self.offset)
        } else if self.has_year {
            let year = i64::from(self.year);
            let days = if self.month != 0 && self.day != 0 {
                if u32::from(self.day) > days_in_month(year, u32::from(self.month)) {
                    return Err(err(
                        self.col as usize,
                        "a date that exists (day of month within the month's length, not 31/Feb) in the time",
                    ));
                }
                days_from_civil(year, u32::from(self.month), u32::from(self.day))
            } else if self.yday != 0 {
                if self.yday > 365 && days_in_month(year, 2) == 28 {
                    return Err(err(
                        self.col as usize,
                        "a day of the year that exists (366 only in a leap year) in the time",
                    ));
                }
                days_from_civil(year, 1, 1) + i64::from(self.yday) - 1
            } else {
                return Ok(None);
            };
            let mut hour = i64::from(self.hour);
            if self.hour12 {
                hour %= 12;
            }
            if self.ampm == 2 {
                hour = hour % 12 + 12;
            }
            let local =
                days * 86_400 + hour * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
            let offset = if self.has_offset {
                self.offset
            } else {
                cache.offset(zone, local)
            };
            (local - i64::from(offset), offset)
        } else {
            return Ok(None);
        };
        Ok(Some(LogTime {
            unix_secs,
            nanos: self.nanos,
            offset_secs: offset,
        }))
    }
}

/// Days in `month` (1-12) of proleptic Gregorian `year`.
#[inline]
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[inline]
fn digit(b: &[u8], i: usize) -> Option<u32> {
    match b.get(i) {
        Some(c @ b'0'..=b'9') => Some(u32::from(c - b'0')),
        _ => None,
    }
}

#[inline]
fn two(b: &[u8], i: usize) -> Option<u32> {
    Some(digit(b, i)? * 10 + digit(b, i + 1)?)
}

fn err(column: usize, what: &'static str) -> ParseError {
    ParseError {
        column,
        expected: Expected::Text(what),
    }
}

/// Month number (1-12) of a three-letter English abbreviation.
#[inline]
fn month_abbr(b: &[u8]) -> Option<u8> {
    let k = [b.first()? | 0x20, b.get(1)? | 0x20, b.get(2)? | 0x20];
    Some(match &k {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    })
}

/// Parse `+hhmm` / `-hhmm` (also `+hh:mm`, `Z`) at `p`; returns (offset secs, new pos).
fn parse_zone(b: &[u8], p: usize) -> Option<(i32, usize)> {
    let sign = match b.get(p)? {
        b'+' => 1,
        b'-' => -1,
        b'Z' => return Some((0, p + 1)),
        _ => return None,
    };
    let h = two(b, p + 1)?;
    let (m, end) = if b.get(p + 3) == Some(&b':') {
        (two(b, p + 4)?, p + 6)
    } else {
        (two(b, p + 3)?, p + 5)
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some((sign * (h * 3600 + m * 60) as i32, end))
}

/// Read up to `max` digits (at least one) at `p`: (value, new pos).
#[inline]
fn digits(b: &[u8], p: usize, max: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = p;
    while i < b.len() && i - p < max {
        match b[i] {
            c @ b'0'..=b'9' => v = v * 10 + u64::from(c - b'0'),
            _ => break,
        }
        i += 1;
    }
    (i > p).then_some((v, i))
}

/// Parse the time part `spec` at `p`, filling `acc`; returns the end of the part and
/// the span of its text (inside the brackets for `%t`).
pub(crate) fn parse(
    spec: &TimeSpec,
    b: &[u8],
    p: usize,
    acc: &mut TimeAcc,
    memo: &mut ClfMemo,
) -> Result<(usize, usize, usize), ParseError> {
    if !acc.seen {
        acc.col = p as u32;
    }
    match &spec.format {
        TimeFormat::Clf { brackets: true } => {
            if b.get(p) != Some(&b'[') {
                return Err(err(p, "'[' to open %t"));
            }
            let end = parse_clf(b, p + 1, acc, memo)?;
            if b.get(end) != Some(&b']') {
                return Err(err(end, "']' to close %t"));
            }
            Ok((end + 1, p + 1, end))
        }
        TimeFormat::Clf { brackets: false } => {
            let end = parse_clf(b, p, acc, memo)?;
            Ok((end, p, end))
        }
        TimeFormat::Sec | TimeFormat::Msec | TimeFormat::Usec => {
            let neg = b.get(p) == Some(&b'-');
            let start = p + usize::from(neg);
            let (v, end) = digits(b, start, 19)
                .ok_or_else(|| err(start, "digits for epoch time in %{..}t"))?;
            let v =
                signed(neg, v).ok_or_else(|| err(start, "epoch time within range in %{..}t"))?;
            let (secs, nanos) = match spec.format {
                TimeFormat::Sec => (v, 0),
                TimeFormat::Msec => (v.div_euclid(1000), v.rem_euclid(1000) * 1_000_000),
                _ => (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1000),
            };
            acc.seen = true;
            acc.has_epoch = true;
            acc.epoch = secs;
            acc.nanos = nanos as u32;
            Ok((end, p, end))
        }
        TimeFormat::MsecFrac | TimeFormat::UsecFrac => {
            let n = if spec.format == TimeFormat::MsecFrac {
                3
            } else {
                6
            };
            let (v, end) = digits(b, p, n)
                .filter(|&(_, e)| e - p == n)
                .ok_or_else(|| err(p, "fraction digits for %{msec_frac}t / %{usec_frac}t"))?;
            acc.seen = true;
            acc.nanos = (v * if n == 3 { 1_000_000 } else { 1000 }) as u32;
            Ok((end, p, end))
        }
        TimeFormat::Strf(toks) => {
            let end = parse_strf(toks, b, p, acc)?;
            Ok((end, p, end))
        }
    }
}

fn parse_strf(
    toks: &[Tok],
    b: &[u8],
    mut p: usize,
    acc: &mut TimeAcc,
) -> Result<usize, ParseError> {
    acc.seen = true;
    for tok in toks {
        let num = |p: usize,
                   max: usize,
                   lo: u64,
                   hi: u64,
                   what: &'static str|
         -> Result<(u64, usize), ParseError> {
            match digits(b, p, max) {
                Some((v, e)) if (lo..=hi).contains(&v) => Ok((v, e)),
                _ => Err(err(p, what)),
            }
        };
        match *tok {
            Tok::Lit(c) => {
                if b.get(p) != Some(&c) {
                    return Err(ParseError {
                        column: p,
                        expected: Expected::Byte(c),
                    });
                }
                p += 1;
            }
            Tok::Space => {
                while matches!(b.get(p), Some(b' ' | b'\t')) {
                    p += 1;
                }
            }
            Tok::Year4 => {
                let (v, e) = num(p, 4, 0, 9999, "four-digit year (%Y) in %{..}t")?;
                acc.has_year = true;
                acc.year = v as i32;
                p = e;
            }
            Tok::Year2 => {
                let (v, e) = num(p, 2, 0, 99, "two-digit year (%y) in %{..}t")?;
                acc.has_year = true;
                acc.year = if v < 69 {
                    2000 + v as i32
                } else {
                    1900 + v as i32
                };
                p = e;
            }
            Tok::Month => {
                let (v, e) = num(p, 2, 1, 12, "month 01-12 (%m) in %{..}t")?;
                acc.month = v as u8;
                p = e;
            }
            Tok::Day | Tok::DaySpace => {
                if *tok == Tok::DaySpace && b.get(p) == Some(&b' ') {
                    p += 1;
                }
                let (v, e) = num(p, 2, 1, 31, "day of month 01-31 (%d) in %{..}t")?;
                acc.day = v as u8;
                p = e;
            }
            Tok::Yday => {
                let (v, e) = num(p, 3, 1, 366, "day of year 001-366 (%j) in %{..}t")?;
                acc.yday = v as u16;
                p = e;
            }
            Tok::Hour | Tok::Hour12 => {
                let (v, e) = if *tok == Tok::Hour {
                    num(p, 2, 0, 24, "hour 00-23 (%H) in %{..}t")?
                } else {
                    num(p, 2, 1, 12, "hour 01-12 (%I) in %{..}t")?
                };
                acc.hour = v as u8;
                acc.hour12 |= *tok == Tok::Hour12;
                p = e;
            }
            Tok::Minute => {
                let (v, e) = num(p, 2, 0, 59, "minute 00-59 (%M) in %{..}t")?;
                acc.minute = v as u8;
                p = e;
            }
            Tok::Second => {
                let (v, e) = num(p, 2, 0, 60, "second 00-60 (%S) in %{..}t")?;
                acc.second = v as u8;
                p = e;
            }
            Tok::AmPm => {
                let k = b.get(p..p + 2).map(|s| [s[0] | 0x20, s[1] | 0x20]);
                acc.ampm = match k {
                    Some([b'a', b'm']) => 1,
                    Some([b'p', b'm']) => 2,
                    _ => return Err(err(p, "AM or PM (%p) in %{..}t")),
                };
                p += 2;
            }
            Tok::MonthName => {
                let m = month_abbr(b.get(p..p + 3).unwrap_or(&[]))
                    .ok_or_else(|| err(p, "month name (%b) in %{..}t"))?;
                acc.month = m;
                p += name_len(&b[p..], MONTHS[usize::from(m) - 1]);
            }
            Tok::Weekday => {
                let w = WEEKDAYS
                    .iter()
                    .find(|w| {
                        b.get(p..p + 3)
                            .is_some_and(|s| s.eq_ignore_ascii_case(&w[..3]))
                    })
                    .ok_or_else(|| err(p, "weekday name (%a) in %{..}t"))?;
                p += name_len(&b[p..], w);
            }
            Tok::Zone => {
                let (o, e) = parse_zone(b, p)
                    .ok_or_else(|| err(p, "UTC offset like -0700 (%z) in %{..}t"))?;
                acc.offset = o;
                acc.has_offset = true;
                p = e;
            }
            Tok::ZoneName => {
                let s = p;
                while b.get(p).is_some_and(u8::is_ascii_alphabetic) {
                    p += 1;
                }
                if p == s {
                    return Err(err(p, "time zone name (%Z) in %{..}t"));
                }
                // UTC and GMT are offsets; any other name (CET, EST, …) is the
                // abbreviation of the local zone: the time is read in the format's zone.
                if matches!(&b[s..p], b"UTC" | b"GMT" | b"Z") {
                    acc.offset = 0;
                    acc.has_offset = true;
                }
            }
            Tok::Epoch => {
                let neg = b.get(p) == Some(&b'-');
                let s = p + usize::from(neg);
                let (v, e) =
                    digits(b, s, 19).ok_or_else(|| err(s, "epoch seconds (%s) in %{..}t"))?;
                acc.has_epoch = true;
                acc.epoch = signed(neg, v)
                    .ok_or_else(|| err(s, "epoch seconds within range (%s) in %{..}t"))?;
                p = e;
            }
        }
    }
    Ok(p)
}

/// `v` with a sign, if it fits an `i64`.
fn signed(neg: bool, v: u64) -> Option<i64> {
    let v = i64::try_from(v).ok()?;
    Some(if neg { -v } else { v })
}

/// Length of a month/weekday name at the start of `b`: the full name if it is there,
/// else the three-letter abbreviation.
fn name_len(b: &[u8], full: &[u8]) -> usize {
    if b.len() >= full.len() && b[..full.len()].eq_ignore_ascii_case(full) {
        full.len()
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_errors() {
        assert!(TimeSpec::compile(Some("%Y %Q")).is_err());
        assert!(TimeSpec::compile(Some("%Y %")).is_err());
        assert!(TimeSpec::compile(Some("end:usec_frac")).is_ok_and(|s| s.end));
    }
}
