//! The Apache common-log time stamp: `10/Oct/2000:13:55:36 +0000` (UTC only).

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Length of a stamp written by [`write_clf_time`].
pub const CLF_TIME_LEN: usize = 26;

/// Civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn two(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Appends `unix_secs` as `dd/Mon/yyyy:HH:MM:SS +0000` (years 0..=9999).
pub fn write_clf_time(out: &mut Vec<u8>, unix_secs: i64) {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    let year = year.clamp(0, 9999) as u32;
    two(out, day);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(month - 1) as usize]);
    out.push(b'/');
    two(out, year / 100);
    two(out, year % 100);
    out.push(b':');
    two(out, secs / 3600);
    out.push(b':');
    two(out, secs / 60 % 60);
    out.push(b':');
    two(out, secs % 60);
    out.extend_from_slice(b" +0000");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(t: i64) -> String {
        let mut v = Vec::new();
        write_clf_time(&mut v, t);
        assert_eq!(v.len(), CLF_TIME_LEN);
        String::from_utf8(v).expect("ascii")
    }

    #[test]
    fn known_stamps() {
        assert_eq!(fmt(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(fmt(971_186_136), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(fmt(1_709_208_000), "29/Feb/2024:12:00:00 +0000");
        assert_eq!(fmt(1_798_761_599), "31/Dec/2026:23:59:59 +0000");
    }
}
