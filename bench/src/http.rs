//! Just enough HTTP/1.1 to serve the AWS SDK: request heads, `Content-Length`
//! and chunked bodies, keep-alive. Nothing here allocates per request except
//! the decoded body of a chunked request.

/// Longest request head accepted (request line plus headers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The parts of a request head the sink needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Request method, e.g. `POST`.
    pub method: String,
    /// Request target, e.g. `/` or `/stats`.
    pub target: String,
    /// `Content-Length`, when present.
    pub content_length: Option<usize>,
    /// Whether `Transfer-Encoding` ends in `chunked`.
    pub chunked: bool,
    /// `X-Amz-Target`, when present.
    pub amz_target: Option<String>,
    /// Whether the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Whether the connection closes after this request (`Connection: close`, or HTTP/1.0).
    pub close: bool,
    /// Bytes the head takes, the final blank line included.
    pub len: usize,
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

fn bad(msg: impl Into<String>) -> HttpError {
    HttpError(msg.into())
}

/// Parses the head at the start of `buf`: `Ok(None)` when it is not complete yet.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(bad("request head too long"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("bad request line `{request_line}`")));
    };
    let mut head = Head {
        method: method.to_string(),
        target: target.to_string(),
        close: version == "HTTP/1.0",
        len: end + 4,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("bad header line `{line}`")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("bad Content-Length `{value}`")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if name.eq_ignore_ascii_case("x-amz-target") {
            head.amz_target = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                head.close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                head.close = false;
            }
        }
    }
    Ok(Some(head))
}

/// Decodes a chunked body at the start of `buf`: `Ok(None)` when incomplete,
/// else the body and how many bytes of `buf` it took (trailers included).
pub fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = memchr::memmem::find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let size_line =
            std::str::from_utf8(&buf[at..at + eol]).map_err(|_| bad("bad chunk size"))?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size `{size_text}`")))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = memchr::memmem::find(&buf[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_with_length_and_target() {
        let req = b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n\r\n{\"a\":1}";
        let head = parse_head(req).expect("valid").expect("complete");
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/");
        assert_eq!(head.content_length, Some(12));
        assert_eq!(
            head.amz_target.as_deref(),
            Some("Kinesis_20131202.PutRecords")
        );
        assert!(!head.close);
        assert_eq!(&req[head.len..], b"{\"a\":1}");
    }

    #[test]
    fn incomplete_and_bad_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost"), Ok(None));
        assert!(parse_head(b"GARBAGE\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies() {
        let buf = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        let (body, used) = decode_chunked(buf).expect("valid").expect("complete");
        assert_eq!(body, b"hello world");
        assert_eq!(&buf[used..], b"NEXT");
        assert_eq!(decode_chunked(b"5\r\nhel"), Ok(None));
        assert!(decode_chunked(b"zz\r\n").is_err());
    }
}
