//! The one line generator of the tests: access-log lines with known
//! contents, for tests that compare what reached the stream (or CloudWatch)
//! with an independent count of what was written. Every line is made by
//! [`combined_line`], and every time stamp by `LogTime::write_clf`
//! ([`clf_time`]).
//!
//! [`Request`] lines use [`FORMAT`], the combined format plus `%D`, and carry
//! their time in the log's own `%t`, so tests control event-time windows;
//! [`numbered_line`] and [`tagged_line`] are `combined` lines whose path
//! tells every line apart.

use tailrace_logformat::LogTime;

/// The LogFormat of the lines written here.
pub const FORMAT: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D"#;

/// One request, as the test means it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Client address as written in `%h`.
    pub client: String,
    /// Event time, unix seconds (UTC).
    pub time: i64,
    /// Request path.
    pub path: String,
    /// Final status.
    pub status: u16,
    /// Response bytes (`%b`; 0 is written as `-`).
    pub bytes: u64,
    /// Duration in microseconds (`%D`).
    pub micros: u64,
}

impl Request {
    /// The access-log line, with its trailing newline.
    pub fn line(&self) -> String {
        let mut line = combined_line(
            &self.client,
            self.time,
            &self.path,
            self.status,
            self.bytes,
            "tailrace-tests/1.0",
        );
        line.pop();
        format!("{line} {}\n", self.micros)
    }
}

/// `unix_secs` as Apache's `%t` in UTC, without the brackets:
/// `10/Oct/2000:13:55:36 +0000`.
pub fn clf_time(unix_secs: i64) -> String {
    let mut t = Vec::with_capacity(26);
    LogTime {
        unix_secs,
        nanos: 0,
        offset_secs: 0,
    }
    .write_clf(&mut t);
    String::from_utf8_lossy(&t).into_owned()
}

/// A `combined` line with its newline: `GET path` from `client` at `time`
/// (unix seconds, UTC), answered `status` with `bytes` (0 is written `-`),
/// no referer, user agent `agent`.
pub fn combined_line(
    client: &str,
    time: i64,
    path: &str,
    status: u16,
    bytes: u64,
    agent: &str,
) -> String {
    let bytes = if bytes == 0 {
        "-".to_string()
    } else {
        bytes.to_string()
    };
    format!(
        "{client} - - [{}] \"GET {path} HTTP/1.1\" {status} {bytes} \"-\" \"{agent}\"\n",
        clf_time(time)
    )
}

/// 25/Nov/2026 10:00:00 UTC: the time of every [`tagged_line`].
pub const TAGGED_TIME: i64 = 1_795_600_800;

/// Line `i` of a flow's log: `GET /{tag}/{i:06}` from `192.0.2.{i % 200}`,
/// all at [`TAGGED_TIME`], 5 bytes. For tests that only need lines they can
/// tell apart by tag and number.
pub fn tagged_line(tag: &str, i: usize) -> String {
    combined_line(
        &format!("192.0.2.{}", i % 200),
        TAGGED_TIME,
        &format!("/{tag}/{i:06}"),
        200,
        5,
        "t",
    )
}

/// Lines `range` of [`tagged_line`]`(tag, _)`, as one text.
pub fn tagged_lines(tag: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| tagged_line(tag, i)).collect()
}

/// Append `text` to the file at `path` (created if missing), in one write.
pub fn append(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .write_all(text.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

/// Current unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Append lines `first..first + count` of a synthetic fleet to `buf`: 2,000
/// client addresses in 10.0.0.0/15, path `/{tag}/{n}` (so each line can be
/// told apart), stamped `time`; with `errors`, every 50th answers 503.
pub fn fleet_lines(buf: &mut String, tag: &str, first: u64, count: u64, time: i64, errors: bool) {
    for n in first..first + count {
        buf.push_str(
            &Request {
                client: format!("10.{}.{}.{}", n % 2, (n / 2) % 4, n % 250),
                time,
                path: format!("/{tag}/{n}"),
                status: if errors && n.is_multiple_of(50) {
                    503
                } else {
                    200
                },
                bytes: 100 + n % 900,
                micros: 500 + n % 10_000,
            }
            .line(),
        );
    }
}

/// Line `i` of a numbered log in the `combined` format: its id is in the
/// path (`/item/0000042`), so an oracle can tell every line apart and find
/// it again ([`id_of`]) however the line was rotated, compressed or shipped.
pub fn numbered_line(i: usize) -> String {
    combined_line(
        &format!("10.2.{}.{}", i % 250, i % 199),
        NUMBERED_TIME + ((i / 60) % 60 * 60 + i % 60) as i64,
        &format!("/item/{i:07}?m=1"),
        200,
        100 + (i % 900) as u64,
        "model/1.0",
    )
}

/// 01/Dec/2026 07:00:00 UTC: the hour every [`numbered_line`] falls in.
pub const NUMBERED_TIME: i64 = 1_796_108_400;

/// Lines `range` of [`numbered_line`], as one text.
pub fn numbered_lines(range: std::ops::Range<usize>) -> String {
    range.map(numbered_line).collect()
}

/// The id of a [`numbered_line`] (with or without its newline).
pub fn id_of(line: &[u8]) -> Option<usize> {
    item_id(line, 7)
}

/// The `digits`-digit number after the first `/item/` of a line: the id
/// of a line written as `GET /item/{id:0digits$}` (with or without its
/// newline).
pub fn item_id(line: &[u8], digits: usize) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?;
    let at = s.find("/item/")? + 6;
    s.get(at..at + digits)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_apache_writes_them() {
        assert_eq!(clf_time(971_186_136), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(
            numbered_line(61),
            "10.2.61.61 - - [01/Dec/2026:07:01:01 +0000] \"GET /item/0000061?m=1 HTTP/1.1\" 200 161 \"-\" \"model/1.0\"\n"
        );
        assert_eq!(id_of(numbered_line(4242).as_bytes()), Some(4242));
        assert_eq!(
            tagged_line("vis", 201),
            "192.0.2.1 - - [25/Nov/2026:10:00:00 +0000] \"GET /vis/000201 HTTP/1.1\" 200 5 \"-\" \"t\"\n"
        );
        let r = Request {
            client: "10.0.0.1".into(),
            time: 971_186_136,
            path: "/a".into(),
            status: 503,
            bytes: 0,
            micros: 7,
        };
        assert_eq!(
            r.line(),
            "10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a HTTP/1.1\" 503 - \"-\" \"tailrace-tests/1.0\" 7\n"
        );
    }
}
