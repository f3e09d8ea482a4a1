//! Rendering a parsed line as the `tailrace parse` JSON object: field names from the
//! format, `-` as null (or 0 for byte counts), numbers as integers, time as RFC 3339,
//! `%r` split into method / path / protocol, and always-valid JSON strings.
//!
//! Bytes that are not valid UTF-8 are written as U+FFFD (one per offending byte), so
//! the output is valid UTF-8 JSON; the raw line stays available through
//! [`Parsed::field`] for anyone who needs the exact bytes.

use memchr::{memchr, memrchr};

use crate::compile::{JsonKind, LogFormat};
use crate::parse::Parsed;

/// The parts of an HTTP request line (`%r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method (`GET`); `None` when the line has no space (e.g. a TLS probe).
    pub method: Option<&'a [u8]>,
    /// The target with its query string; `None` when there is no method.
    pub path: Option<&'a [u8]>,
    /// The protocol (`HTTP/1.1`) when the last word starts with `HTTP/`.
    pub protocol: Option<&'a [u8]>,
}

/// Split a request line `METHOD TARGET PROTOCOL`. Missing parts are `None`:
/// `GET /` has no protocol, `\x16\x03\x01` has none of them.
pub fn split_request(req: &[u8]) -> RequestLine<'_> {
    let Some(sp) = memchr(b' ', req) else {
        return RequestLine {
            method: None,
            path: None,
            protocol: None,
        };
    };
    let method = &req[..sp];
    let rest = &req[sp + 1..];
    let (path, protocol) = match memrchr(b' ', rest) {
        Some(l) if rest[l + 1..].starts_with(b"HTTP/") => (&rest[..l], Some(&rest[l + 1..])),
        _ => (rest, None),
    };
    RequestLine {
        method: Some(method),
        path: Some(path),
        protocol,
    }
}

fn key(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    write_str(out, name.as_bytes(), false);
    out.push(b':');
}

/// Append `v` in decimal.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Decimal value of an all-digit field (validated by the parser); saturates.
fn decimal(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, c| {
        v.saturating_mul(10)
            .saturating_add(u64::from(c.wrapping_sub(b'0') % 10))
    })
}

/// Append `b` as a JSON string. `unescape`: turn `\"` into `"` and `\\` into `\` first
/// (Apache's escapes inside quoted fields); other backslashes stay as written.
pub(crate) fn write_str(out: &mut Vec<u8>, b: &[u8], unescape: bool) {
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if (0x20..0x80).contains(&c) && c != b'"' && c != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&b[run..i]);
        match c {
            b'\\' => {
                let next = b.get(i + 1).copied();
                if unescape && matches!(next, Some(b'"' | b'\\')) {
                    out.push(b'\\');
                    out.push(next.unwrap_or(b'\\'));
                    i += 2;
                } else {
                    out.extend_from_slice(b"\\\\");
                    i += 1;
                }
            }
            b'"' => {
                out.extend_from_slice(b"\\\"");
                i += 1;
            }
            b'\n' => {
                out.extend_from_slice(b"\\n");
                i += 1;
            }
            b'\r' => {
                out.extend_from_slice(b"\\r");
                i += 1;
            }
            b'\t' => {
                out.extend_from_slice(b"\\t");
                i += 1;
            }
            0..=0x1f | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
                i += 1;
            }
            _ => {
                let w = match c {
                    0xc2..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf4 => 4,
                    _ => 0,
                };
                match b.get(i..i + w) {
                    Some(s) if w > 0 && std::str::from_utf8(s).is_ok() => {
                        out.extend_from_slice(s);
                        i += w;
                    }
                    _ => {
                        out.extend_from_slice("\u{FFFD}".as_bytes());
                        i += 1;
                    }
                }
            }
        }
        run = i;
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

fn str_or_null(out: &mut Vec<u8>, v: Option<&[u8]>, unescape: bool) {
    match v {
        Some(v) => write_str(out, v, unescape),
        None => out.extend_from_slice(b"null"),
    }
}

impl Parsed {
    /// Append the `tailrace parse` JSON object for this line (no trailing newline) to
    /// `out`. `format` and `line` must be the ones given to [`LogFormat::parse`].
    ///
    /// Keys follow the format's field names ([`LogFormat::field_names`]); `-` is null
    /// for strings and numbers and 0 for byte counts; `%t` parts become one `time`
    /// (RFC 3339 with the logged offset); `%r` also yields `method`, `path`, `protocol`
    /// when present (omitted when missing). Invalid UTF-8 becomes U+FFFD.
    pub fn write_json(&self, format: &LogFormat, line: &[u8], out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (idx, info) in format.fields.iter().enumerate() {
            let v = self.field(line, idx);
            match info.json {
                JsonKind::Skip => continue,
                JsonKind::Str { unescape } => {
                    key(out, &mut first, &info.name);
                    str_or_null(out, v, unescape);
                }
                JsonKind::ConnStatus => {
                    key(out, &mut first, &info.name);
                    let raw = self
                        .spans
                        .get(idx)
                        .and_then(|&(s, e)| line.get(s as usize..e as usize));
                    str_or_null(out, raw, false);
                }
                JsonKind::Int => {
                    key(out, &mut first, &info.name);
                    match v {
                        Some(v) => write_u64(out, decimal(v)),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                JsonKind::ByteCount => {
                    key(out, &mut first, &info.name);
                    write_u64(out, v.map_or(0, decimal));
                }
                JsonKind::Time => {
                    key(out, &mut first, &info.name);
                    match self.time {
                        Some(t) => {
                            out.push(b'"');
                            t.write_rfc3339(out);
                            out.push(b'"');
                        }
                        None => out.extend_from_slice(b"null"),
                    }
                }
                JsonKind::Request {
                    unescape,
                    method,
                    path,
                    protocol,
                } => {
                    key(out, &mut first, &info.name);
                    str_or_null(out, v, unescape);
                    if let Some(v) = v {
                        let r = split_request(v);
                        for (want, name, part) in [
                            (method, "method", r.method),
                            (path, "path", r.path),
                            (protocol, "protocol", r.protocol),
                        ] {
                            if let (true, Some(p)) = (want, part) {
                                key(out, &mut first, name);
                                write_str(out, p, unescape);
                            }
                        }
                    }
                }
            }
        }
        out.push(b'}');
    }
}
