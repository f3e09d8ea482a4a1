//! Apache's default time text (`%t`, `dd/Mon/yyyy:HH:MM:SS +zzzz`): its
//! fixed-position parser, and the memo of the last text parsed that lets the
//! lines of one second skip it (issue #25).

use super::{err, month_abbr, parse_zone, two, TimeAcc};
use crate::error::ParseError;

/// The longest CLF time text: `dd/Mon/yyyy:HH:MM:SS +hh:mm`.
const CLF_MAX: usize = 27;

/// The last CLF time text parsed, and the parts it gave. Apache stamps the
/// requests of one second alike, so most lines carry the time text of the
/// line before: comparing it costs a fraction of parsing it again (about 400
/// instructions a line; BENCHMARKS.md, issue #25). What [`parse_clf`] gives
/// depends on the bytes it consumed alone, so equal bytes give equal parts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ClfMemo {
    text: [u8; CLF_MAX],
    /// Bytes of `text` in use; 0: nothing remembered.
    len: usize,
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    offset: i32,
}

impl ClfMemo {
    /// Set the parts of a CLF time in `acc`.
    #[inline]
    fn apply(&self, acc: &mut TimeAcc) {
        acc.seen = true;
        acc.has_year = true;
        acc.year = self.year;
        acc.month = self.month;
        acc.day = self.day;
        acc.hour = self.hour;
        acc.minute = self.minute;
        acc.second = self.second;
        acc.offset = self.offset;
        acc.has_offset = true;
    }
}

/// [`parse_clf_text`], or what the same text gave the last time.
#[inline]
pub(super) fn parse_clf(
    b: &[u8],
    p: usize,
    acc: &mut TimeAcc,
    memo: &mut ClfMemo,
) -> Result<usize, ParseError> {
    let n = memo.len;
    if n > 0 && b.get(p..p + n) == Some(&memo.text[..n]) {
        memo.apply(acc);
        return Ok(p + n);
    }
    let end = parse_clf_text(b, p, acc)?;
    let len = end - p;
    if len <= CLF_MAX {
        memo.text[..len].copy_from_slice(&b[p..end]);
        *memo = ClfMemo {
            len,
            year: acc.year,
            month: acc.month,
            day: acc.day,
            hour: acc.hour,
            minute: acc.minute,
            second: acc.second,
            offset: acc.offset,
            ..*memo
        };
    }
    Ok(end)
}

/// Parse Apache's default time text `dd/Mon/yyyy:HH:MM:SS +zzzz` at `p` (after the `[`).
#[inline]
fn parse_clf_text(b: &[u8], p: usize, acc: &mut TimeAcc) -> Result<usize, ParseError> {
    let day = two(b, p).ok_or_else(|| err(p, "two-digit day in %t"))?;
    if b.get(p + 2) != Some(&b'/') {
        return Err(err(p + 2, "'/' after the day in %t"));
    }
    let month = month_abbr(b.get(p + 3..p + 6).unwrap_or(&[]))
        .ok_or_else(|| err(p + 3, "month name (Jan..Dec) in %t"))?;
    if b.get(p + 6) != Some(&b'/') {
        return Err(err(p + 6, "'/' after the month in %t"));
    }
    let year = (|| Some(two(b, p + 7)? * 100 + two(b, p + 9)?))()
        .ok_or_else(|| err(p + 7, "four-digit year in %t"))?;
    if b.get(p + 11) != Some(&b':') {
        return Err(err(p + 11, "':' after the year in %t"));
    }
    let hour = two(b, p + 12).ok_or_else(|| err(p + 12, "two-digit hour in %t"))?;
    if b.get(p + 14) != Some(&b':') {
        return Err(err(p + 14, "':' after the hour in %t"));
    }
    let minute = two(b, p + 15).ok_or_else(|| err(p + 15, "two-digit minute in %t"))?;
    if b.get(p + 17) != Some(&b':') {
        return Err(err(p + 17, "':' after the minute in %t"));
    }
    let second = two(b, p + 18).ok_or_else(|| err(p + 18, "two-digit second in %t"))?;
    if b.get(p + 20) != Some(&b' ') {
        return Err(err(p + 20, "' ' before the UTC offset in %t"));
    }
    let (offset, end) =
        parse_zone(b, p + 21).ok_or_else(|| err(p + 21, "UTC offset like -0700 in %t"))?;
    if !(1..=31).contains(&day) || hour > 24 || minute > 59 || second > 60 {
        return Err(err(p, "a valid date and time in %t"));
    }
    acc.seen = true;
    acc.has_year = true;
    acc.year = year as i32;
    acc.month = month;
    acc.day = day as u8;
    acc.hour = hour as u8;
    acc.minute = minute as u8;
    acc.second = second as u8;
    acc.offset = offset;
    acc.has_offset = true;
    Ok(end)
}
