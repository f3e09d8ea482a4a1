//! Log lines of raw-mode hosts and Kinesis Agent objects, as text.

use tailrace_logformat::LogTime;

/// Appends `unix_secs` as Apache's `%t` in UTC, `dd/Mon/yyyy:HH:MM:SS +0000`.
fn write_clf_utc(out: &mut Vec<u8>, unix_secs: i64) {
    LogTime {
        unix_secs,
        nanos: 0,
        offset_secs: 0,
    }
    .write_clf(out);
}

/// One request of a simulated host.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `%h`.
    pub client: &'a str,
    /// Unix seconds.
    pub time: i64,
    /// `%>s`.
    pub status: u16,
    /// `%b` (0 written as `-`).
    pub bytes: u64,
    /// Path of the request line.
    pub path: &'a str,
}

const AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// A `combined` line (no `\n`), as Apache writes it.
pub fn combined_line(out: &mut Vec<u8>, r: &Request<'_>) {
    out.extend_from_slice(r.client.as_bytes());
    out.extend_from_slice(b" - - [");
    write_clf_utc(out, r.time);
    out.extend_from_slice(b"] \"GET ");
    out.extend_from_slice(r.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\" ");
    out.extend_from_slice(itoa::Buffer::new().format(r.status).as_bytes());
    out.push(b' ');
    if r.bytes == 0 {
        out.push(b'-');
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(r.bytes).as_bytes());
    }
    out.extend_from_slice(b" \"https://shop.example.com/\" \"");
    out.extend_from_slice(AGENT.as_bytes());
    out.push(b'"');
}

/// The Kinesis Agent's `LOGTOJSON` object (`COMBINEDAPACHELOG` field names)
/// for the same request.
pub fn agent_json(r: &Request<'_>) -> serde_json::Value {
    let mut stamp = Vec::with_capacity(26);
    write_clf_utc(&mut stamp, r.time);
    serde_json::json!({
        "host": r.client,
        "ident": null,
        "authuser": null,
        "datetime": String::from_utf8_lossy(&stamp),
        "request": format!("GET {} HTTP/1.1", r.path),
        "response": r.status.to_string(),
        "bytes": if r.bytes == 0 { "-".to_string() } else { r.bytes.to_string() },
        "referrer": "https://shop.example.com/",
        "agent": AGENT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let r = Request {
            client: "10.0.0.1",
            time: 971_186_136,
            status: 200,
            bytes: 0,
            path: "/a",
        };
        let mut line = Vec::new();
        combined_line(&mut line, &r);
        let text = String::from_utf8(line).unwrap_or_default();
        assert!(text.starts_with(
            "10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a HTTP/1.1\" 200 - \"https://"
        ));
        let json = agent_json(&r);
        assert_eq!(json["datetime"], "10/Oct/2000:13:55:36 +0000");
        assert_eq!(json["bytes"], "-");
    }
}
