//! Access-log lines with known contents, for tests that compare what reached
//! the stream (or CloudWatch) with an independent count of what was written.
//!
//! Lines use [`FORMAT`], the combined format plus `%D`, and carry their time
//! in the log's own `%t`, so tests control event-time windows.

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
        let mut t = Vec::with_capacity(32);
        LogTime {
            unix_secs: self.time,
            nanos: 0,
            offset_secs: 0,
        }
        .write_clf(&mut t);
        let bytes = if self.bytes == 0 {
            "-".to_string()
        } else {
            self.bytes.to_string()
        };
        format!(
            "{} - - [{}] \"GET {} HTTP/1.1\" {} {} \"-\" \"tailrace-tests/1.0\" {}\n",
            self.client,
            String::from_utf8_lossy(&t),
            self.path,
            self.status,
            bytes,
            self.micros
        )
    }
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
    format!(
        "10.2.{}.{} - - [01/Dec/2026:07:{:02}:{:02} +0000] \"GET /item/{i:07}?m=1 HTTP/1.1\" 200 {} \"-\" \"model/1.0\"\n",
        i % 250,
        i % 199,
        (i / 60) % 60,
        i % 60,
        100 + i % 900
    )
}

/// The id of a [`numbered_line`] (with or without its newline).
pub fn id_of(line: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?;
    let at = s.find("/item/")? + 6;
    s.get(at..at + 7)?.parse().ok()
}
