//! Times written without an offset are local time in the format's zone, through
//! daylight-saving transitions; impossible dates are refused. Expected instants are
//! written out by hand from the zones' published rules (EU: last Sunday of March
//! and October at 01:00 UTC; US: second Sunday of March at 02:00 local, first
//! Sunday of November at 02:00 local).

use tailrace_logformat::{LogFormat, Parsed, Zone};

const FMT: &str = "%{%Y-%m-%d %H:%M:%S}t %>s";

/// Unix seconds of a UTC civil time (independent of the parser: via `date`-style
/// arithmetic on days).
fn utc(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
    // Days from civil (H. Hinnant), written again here on purpose.
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + mi * 60 + s
}

/// Parse each local time in order with one `Parsed` (as the agent reads a file);
/// return (unix seconds, offset) per line.
fn read(zone: &str, locals: &[&str]) -> Vec<(i64, i32)> {
    let f = LogFormat::compile(FMT)
        .unwrap()
        .with_zone(Zone::named(zone).unwrap());
    let mut p = Parsed::new();
    locals
        .iter()
        .map(|l| {
            let line = format!("{l} 200");
            f.parse(line.as_bytes(), &mut p)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            let t = p.time().unwrap();
            (t.unix_secs, t.offset_secs)
        })
        .collect()
}

const H: i32 = 3600;

#[test]
fn east_of_utc_spring_and_autumn() {
    // Europe/Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    assert_eq!(
        read(
            "Europe/Paris",
            &[
                "2026-03-29 01:59:59",
                "2026-03-29 03:00:00",
                "2026-03-29 12:00:00"
            ]
        ),
        vec![
            (utc(2026, 3, 29, 0, 59, 59), H),
            (utc(2026, 3, 29, 1, 0, 0), 2 * H),
            (utc(2026, 3, 29, 10, 0, 0), 2 * H),
        ]
    );
    // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:00-02:59 twice.
    assert_eq!(
        read(
            "Europe/Paris",
            &[
                "2026-10-25 01:30:00",
                "2026-10-25 02:10:00", // first pass (summer time)
                "2026-10-25 02:50:00",
                "2026-10-25 02:49:00", // logged a little late: still the first pass
                "2026-10-25 02:05:00", // the clock went back: second pass (winter)
                "2026-10-25 02:55:00",
                "2026-10-25 03:10:00",
            ]
        ),
        vec![
            (utc(2026, 10, 24, 23, 30, 0), 2 * H),
            (utc(2026, 10, 25, 0, 10, 0), 2 * H),
            (utc(2026, 10, 25, 0, 50, 0), 2 * H),
            (utc(2026, 10, 25, 0, 49, 0), 2 * H),
            (utc(2026, 10, 25, 1, 5, 0), H),
            (utc(2026, 10, 25, 1, 55, 0), H),
            (utc(2026, 10, 25, 2, 10, 0), H),
        ]
    );
}

#[test]
fn west_of_utc_spring_and_autumn() {
    // America/New_York, 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    assert_eq!(
        read(
            "America/New_York",
            &["2026-03-08 01:59:59", "2026-03-08 03:00:00"]
        ),
        vec![
            (utc(2026, 3, 8, 6, 59, 59), -5 * H),
            (utc(2026, 3, 8, 7, 0, 0), -4 * H),
        ]
    );
    // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:00-01:59 twice.
    assert_eq!(
        read(
            "America/New_York",
            &[
                "2026-11-01 00:59:00",
                "2026-11-01 01:10:00",
                "2026-11-01 01:50:00",
                "2026-11-01 01:05:00",
                "2026-11-01 01:40:00",
                "2026-11-01 02:10:00",
            ]
        ),
        vec![
            (utc(2026, 11, 1, 4, 59, 0), -4 * H),
            (utc(2026, 11, 1, 5, 10, 0), -4 * H),
            (utc(2026, 11, 1, 5, 50, 0), -4 * H),
            (utc(2026, 11, 1, 6, 5, 0), -5 * H),
            (utc(2026, 11, 1, 6, 40, 0), -5 * H),
            (utc(2026, 11, 1, 7, 10, 0), -5 * H),
        ]
    );
}

#[test]
fn the_repeated_hour_first_seen_alone_is_summer_time() {
    assert_eq!(
        read("Europe/Paris", &["2026-10-25 02:30:00"]),
        vec![(utc(2026, 10, 25, 0, 30, 0), 2 * H)]
    );
}

#[test]
fn the_skipped_hour_reads_with_the_offset_before_the_gap() {
    assert_eq!(
        read("Europe/Paris", &["2026-03-29 02:30:00"]),
        vec![(utc(2026, 3, 29, 1, 30, 0), H)]
    );
}

#[test]
fn a_long_file_crosses_many_transitions_with_one_parsed() {
    // Every ten minutes for two years in New York, local times as the clock shows
    // them (a line every ten minutes is enough for the repeated hour's rule: the
    // instant closest to the previous line).
    let f = LogFormat::compile(FMT)
        .unwrap()
        .with_zone(Zone::named("America/New_York").unwrap());
    let mut p = Parsed::new();
    let start = utc(2025, 1, 1, 5, 0, 0); // 2025-01-01 00:00 EST
    let mut prev: Option<i64> = None;
    for i in 0..(2 * 365 * 24 * 6) {
        let instant = start + i * 600;
        // The local time as New York shows it (offset from an independent rule).
        let off = if is_us_dst(instant) {
            -4 * 3600
        } else {
            -5 * 3600
        };
        let local = instant + off;
        let (y, mo, d) = civil(local.div_euclid(86_400));
        let sod = local.rem_euclid(86_400);
        let line = format!(
            "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} 200",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        );
        f.parse(line.as_bytes(), &mut p).unwrap();
        let t = p.time().unwrap();
        assert_eq!(
            (t.unix_secs, t.offset_secs as i64),
            (instant, off),
            "{line}"
        );
        if let Some(prev) = prev {
            assert_eq!(t.unix_secs - prev, 600);
        }
        prev = Some(t.unix_secs);
    }
}

/// US rule since 2007: DST from the second Sunday of March 07:00 UTC to the
/// first Sunday of November 06:00 UTC.
fn is_us_dst(t: i64) -> bool {
    let (y, _, _) = civil(t.div_euclid(86_400));
    let sunday_on_or_after = |mo: i64, d: i64| {
        let days = utc(y, mo, d, 0, 0, 0) / 86_400;
        let wd = (days + 4).rem_euclid(7); // 1970-01-01 was a Thursday (4)
        d + (7 - wd) % 7
    };
    let start = utc(y, 3, sunday_on_or_after(3, 8), 7, 0, 0);
    let end = utc(y, 11, sunday_on_or_after(11, 1), 6, 0, 0);
    (start..end).contains(&t)
}

/// The UTC civil date of day `z` since 1970-01-01, from jiff's calendar (not
/// the parser's, and not written out again here).
fn civil(z: i64) -> (i64, i64, i64) {
    let date = jiff::Timestamp::from_second(z * 86_400)
        .expect("a day in jiff's range")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    )
}

#[test]
fn an_offset_in_the_text_wins_over_the_zone() {
    let f = LogFormat::compile("combined")
        .unwrap()
        .with_zone(Zone::named("Asia/Tokyo").unwrap());
    let mut p = Parsed::new();
    let line = br#"127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2 "-" "-""#;
    f.parse(line, &mut p).unwrap();
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    assert_eq!(p.time().unwrap().offset_secs, -7 * H);
    assert!(!f.has_local_time());
    let local = LogFormat::compile(FMT).unwrap();
    assert!(local.has_local_time());
}

#[test]
fn without_a_zone_local_times_stay_utc() {
    let f = LogFormat::compile(FMT).unwrap();
    let mut p = Parsed::new();
    f.parse(b"2026-10-25 02:30:00 200", &mut p).unwrap();
    assert_eq!(p.time().unwrap().unix_secs, utc(2026, 10, 25, 2, 30, 0));
}

#[test]
fn a_zone_name_other_than_utc_is_read_in_the_zone() {
    let f = LogFormat::compile("%{%Y-%m-%d %H:%M:%S %Z}t %>s")
        .unwrap()
        .with_zone(Zone::named("Europe/Paris").unwrap());
    let mut p = Parsed::new();
    f.parse(b"2026-07-01 12:00:00 CEST 200", &mut p).unwrap();
    assert_eq!(p.time().unwrap().unix_secs, utc(2026, 7, 1, 10, 0, 0));
    f.parse(b"2026-07-01 12:00:00 UTC 200", &mut p).unwrap();
    assert_eq!(p.time().unwrap().unix_secs, utc(2026, 7, 1, 12, 0, 0));
}

#[test]
fn json_shows_the_offset_in_force() {
    let f = LogFormat::compile(FMT)
        .unwrap()
        .with_zone(Zone::named("Europe/Paris").unwrap());
    let mut p = Parsed::new();
    let mut out = Vec::new();
    for (line, want) in [
        (&b"2026-10-25 02:10:00 200"[..], "2026-10-25T02:10:00+02:00"),
        (b"2026-10-25 02:05:00 200", "2026-10-25T02:05:00+01:00"),
    ] {
        f.parse(line, &mut p).unwrap();
        out.clear();
        p.write_json(&f, line, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(&format!("\"time\":\"{want}\"")), "{text}");
    }
}

#[test]
fn unknown_zones_are_refused_by_name() {
    let e = Zone::named("Europe/Atlantis").unwrap_err().to_string();
    assert!(e.contains("Europe/Atlantis") && e.contains("IANA"), "{e}");
}

#[test]
fn impossible_dates_are_rejected_with_a_reason() {
    let clf = LogFormat::compile("common").unwrap();
    let mut p = Parsed::new();
    let line = br#"1.2.3.4 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5"#;
    let e = clf.parse(line, &mut p).unwrap_err();
    assert_eq!(e.column, 12, "the column of the time field");
    assert!(e.to_string().contains("date that exists"), "{e}");
    for bad in [
        "29/Feb/2025",
        "31/Apr/2026",
        "31/Jun/2026",
        "31/Sep/2026",
        "31/Nov/2026",
    ] {
        let l = format!(r#"1.2.3.4 - - [{bad}:10:00:00 +0000] "GET / HTTP/1.1" 200 5"#);
        assert!(clf.parse(l.as_bytes(), &mut p).is_err(), "{bad}");
    }
    for good in ["29/Feb/2024", "29/Feb/2000", "31/Dec/2026", "30/Apr/2026"] {
        let l = format!(r#"1.2.3.4 - - [{good}:10:00:00 +0000] "GET / HTTP/1.1" 200 5"#);
        clf.parse(l.as_bytes(), &mut p)
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    assert!(clf
        .parse(
            br#"1.2.3.4 - - [29/Feb/1900:10:00:00 +0000] "GET / HTTP/1.1" 200 5"#,
            &mut p
        )
        .is_err());
    let strf = LogFormat::compile(FMT).unwrap();
    let e = strf.parse(b"2026-02-30 10:00:00 200", &mut p).unwrap_err();
    assert_eq!(e.column, 0);
    let yday = LogFormat::compile("%{%Y %j %H:%M:%S}t %>s").unwrap();
    assert!(yday.parse(b"2025 366 10:00:00 200", &mut p).is_err());
    yday.parse(b"2024 366 10:00:00 200", &mut p).unwrap();
}
