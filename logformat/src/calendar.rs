//! Dates and time as text: proleptic Gregorian day arithmetic (H. Hinnant's
//! algorithms), and writing a time as RFC 3339 or as Apache's CLF. This is the
//! workspace's one RFC 3339 writer: a parsed line's time ([`LogTime::write_rfc3339`],
//! with its offset), and a Unix time in UTC ([`rfc3339_utc`]: the aggregator's
//! messages and logs, the agent's `status` and checkpoint reports).

/// A point in time as logged: seconds since the Unix epoch (UTC), nanoseconds, and the
/// UTC offset the line was written with (kept so RFC 3339 output shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_secs: i64,
    /// Nanoseconds within the second (0..1e9).
    pub nanos: u32,
    /// Offset from UTC of the logged local time, in seconds (`-0700` is -25200).
    pub offset_secs: i32,
}

impl LogTime {
    /// Append RFC 3339 text with the original offset, e.g. `2000-10-10T13:55:36-07:00`.
    /// A non-zero fraction is written with 3, 6 or 9 digits, whichever is exact.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        let local = self.unix_secs.saturating_add(i64::from(self.offset_secs));
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400);
        write_year(out, y);
        out.push(b'-');
        push2(out, m);
        out.push(b'-');
        push2(out, d);
        out.push(b'T');
        push2(out, (sod / 3600) as u32);
        out.push(b':');
        push2(out, (sod / 60 % 60) as u32);
        out.push(b':');
        push2(out, (sod % 60) as u32);
        if self.nanos != 0 {
            out.push(b'.');
            let (v, digits) = if self.nanos.is_multiple_of(1_000_000) {
                (self.nanos / 1_000_000, 3)
            } else if self.nanos.is_multiple_of(1_000) {
                (self.nanos / 1_000, 6)
            } else {
                (self.nanos, 9)
            };
            push_padded(out, v, digits);
        }
        let off = self.offset_secs;
        out.push(if off < 0 { b'-' } else { b'+' });
        let a = off.unsigned_abs();
        push2(out, a / 3600);
        out.push(b':');
        push2(out, a / 60 % 60);
    }

    /// Append Apache's default `%t` text without the brackets,
    /// e.g. `10/Oct/2000:13:55:36 -0700` (the fraction is not written).
    pub fn write_clf(&self, out: &mut Vec<u8>) {
        let local = self.unix_secs.saturating_add(i64::from(self.offset_secs));
        let (y, m, d) = civil_from_days(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400);
        push2(out, d);
        out.push(b'/');
        let idx = (m as usize).saturating_sub(1).min(11);
        out.extend_from_slice(&MONTHS[idx][..3]);
        out.push(b'/');
        write_year(out, y);
        out.push(b':');
        push2(out, (sod / 3600) as u32);
        out.push(b':');
        push2(out, (sod / 60 % 60) as u32);
        out.push(b':');
        push2(out, (sod % 60) as u32);
        out.push(b' ');
        let off = self.offset_secs;
        out.push(if off < 0 { b'-' } else { b'+' });
        let a = off.unsigned_abs();
        push2(out, a / 3600);
        push2(out, a / 60 % 60);
    }
}

pub(crate) fn write_year(out: &mut Vec<u8>, y: i64) {
    if (0..=9999).contains(&y) {
        push_padded(out, y as u32, 4);
    } else {
        out.extend_from_slice(y.to_string().as_bytes());
    }
}

pub(crate) fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

pub(crate) fn push_padded(out: &mut Vec<u8>, v: u32, digits: u32) {
    let mut div = 10u32.pow(digits - 1);
    while div > 0 {
        out.push(b'0' + (v / div % 10) as u8);
        div /= 10;
    }
}

pub(crate) const MONTHS: [&[u8]; 12] = [
    b"January",
    b"February",
    b"March",
    b"April",
    b"May",
    b"June",
    b"July",
    b"August",
    b"September",
    b"October",
    b"November",
    b"December",
];
pub(crate) const WEEKDAYS: [&[u8]; 7] = [
    b"Sunday",
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `secs` since the Unix epoch as RFC 3339 in UTC, to the second:
/// `2000-10-10T20:55:36Z`.
pub fn rfc3339_utc(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut out = Vec::with_capacity(20);
    write_year(&mut out, y);
    out.push(b'-');
    push2(&mut out, m);
    out.push(b'-');
    push2(&mut out, d);
    out.push(b'T');
    push2(&mut out, (sod / 3600) as u32);
    out.push(b':');
    push2(&mut out, (sod / 60 % 60) as u32);
    out.push(b':');
    push2(&mut out, (sod % 60) as u32);
    out.push(b'Z');
    // Only ASCII digits, '-', 'T', ':' and 'Z' were written.
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 11_240, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2000, 10, 10), 11_240);
    }

    #[test]
    fn rfc3339() {
        let t = LogTime {
            unix_secs: 971_211_336,
            nanos: 0,
            offset_secs: -7 * 3600,
        };
        let mut out = Vec::new();
        t.write_rfc3339(&mut out);
        assert_eq!(out, b"2000-10-10T13:55:36-07:00");
        out.clear();
        t.write_clf(&mut out);
        assert_eq!(out, b"10/Oct/2000:13:55:36 -0700");
        out.clear();
        LogTime {
            unix_secs: 0,
            nanos: 123_000_000,
            offset_secs: 0,
        }
        .write_rfc3339(&mut out);
        assert_eq!(out, b"1970-01-01T00:00:00.123+00:00");
        out.clear();
        LogTime {
            unix_secs: 0,
            nanos: 123_456_000,
            offset_secs: 5 * 3600 + 1800,
        }
        .write_rfc3339(&mut out);
        assert_eq!(out, b"1970-01-01T05:30:00.123456+05:30");
    }

    #[test]
    fn rfc3339_utc_formats() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(971_211_336), "2000-10-10T20:55:36Z");
        assert_eq!(rfc3339_utc(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }
}
