//! The one HTTP/1.1 reader of the tests and the bench: request and response
//! heads, `Content-Length` and chunked bodies, `Expect: 100-continue`,
//! keep-alive. Just enough to stand between the AWS SDK for Rust and
//! `moto_server` (the fault proxies) or in place of Kinesis (the bench's
//! sink); written by hand because the SDK's HTTP stack is not a public API
//! and raw bytes make it easy to pass requests through.
//!
//! The parsers work on a buffer the caller fills ([`parse_request_head`],
//! [`parse_response_head`], [`decode_chunked`]); with the `servers` feature,
//! [`read_request`] fills it from a socket, and [`Response`] is an answer to
//! write back.

/// Longest head accepted (start line plus headers).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A parsed request or response head.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// The start line's three words: `METHOD TARGET VERSION` of a request,
    /// `VERSION STATUS REASON` of a response (the reason may hold spaces).
    pub start: [String; 3],
    /// Every header, in order, name and value trimmed.
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, when present.
    pub content_length: Option<usize>,
    /// Whether `Transfer-Encoding` ends in `chunked`.
    pub chunked: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Whether the connection closes after this message (`Connection:
    /// close`, or HTTP/1.0 without `Connection: keep-alive`).
    pub close: bool,
    /// Bytes the head takes, the final blank line included.
    pub len: usize,
}

impl Head {
    /// A request's method, e.g. `POST`.
    pub fn method(&self) -> &str {
        &self.start[0]
    }

    /// A request's target, e.g. `/` or `/stats`.
    pub fn target(&self) -> &str {
        &self.start[1]
    }

    /// A response's status code.
    pub fn status(&self) -> Result<u16, HttpError> {
        self.start[1]
            .parse()
            .map_err(|_| bad(format!("bad status `{}`", self.start[1])))
    }

    /// A response's reason phrase.
    pub fn reason(&self) -> &str {
        &self.start[2]
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a message could not be read.
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

/// Parses the request head at the start of `buf`: `Ok(None)` when it is not
/// complete yet.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    parse_head(buf, true)
}

/// Parses the response head at the start of `buf`: `Ok(None)` when it is not
/// complete yet.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    parse_head(buf, false)
}

fn parse_head(buf: &[u8], request: bool) -> Result<Option<Head>, HttpError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(bad("HTTP head too long"));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("HTTP head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    let mut parts = start_line.splitn(3, ' ');
    let (Some(a), Some(b), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(format!("bad start line `{start_line}`")));
    };
    let version = if request { c } else { a };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not HTTP/1.x: `{start_line}`")));
    }
    let mut head = Head {
        start: [a.to_string(), b.to_string(), c.to_string()],
        close: version == "HTTP/1.0",
        len: end + 4,
        ..Head::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("bad header line `{line}`")));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("bad Content-Length `{value}`")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                head.close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                head.close = false;
            }
        }
        head.headers.push((name.to_string(), value.to_string()));
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

/// The body of a response read to its end (`rest`: the bytes after the
/// head): chunked, `Content-Length`, or everything up to the close.
pub fn response_body(head: &Head, rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    if head.chunked {
        return decode_chunked(rest)?
            .map(|(body, _)| body)
            .ok_or_else(|| bad("truncated chunked body"));
    }
    match head.content_length {
        Some(n) if n <= rest.len() => Ok(rest[..n].to_vec()),
        Some(_) => Err(bad("truncated body")),
        None => Ok(rest.to_vec()),
    }
}

/// Headers a proxy never copies from one side to the other: framing and
/// hop-by-hop.
pub fn hop_by_hop(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "expect",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A whole message to send: status or request line, headers, body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers, framing ones excluded ([`Response::to_bytes`] writes
    /// `Content-Length` and, when asked, `Connection: close`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An answer with `content_type` and `body` and a fixed request id.
    pub fn new(status: u16, reason: &str, content_type: &str, body: Vec<u8>) -> Response {
        Response {
            status,
            reason: reason.to_string(),
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                (
                    "x-amzn-RequestId".into(),
                    "00000000-0000-0000-0000-fa0170000000".into(),
                ),
            ],
            body,
        }
    }

    /// The bytes on the wire, with `Content-Length`, and `Connection: close`
    /// if `close`.
    pub fn to_bytes(&self, close: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A request as read by [`read_request`]: its head and its (de-chunked) body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The head.
    pub head: Head,
    /// The body, chunked encoding removed.
    pub body: Vec<u8>,
}

#[cfg(feature = "servers")]
mod io {
    use anyhow::{Context, Result};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{decode_chunked, parse_request_head, parse_response_head, response_body};
    use super::{hop_by_hop, Head, Request, Response};

    /// Reads the next request head of a connection into `buf` (which keeps
    /// what follows it): `None` when the client closed between requests.
    pub async fn read_head(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Head>> {
        loop {
            if let Some(head) = parse_request_head(buf)? {
                return Ok(Some(head));
            }
            if sock.read_buf(buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads the body of the request `head` (answering `Expect:
    /// 100-continue` first) and removes the request from `buf`: `None` when
    /// the client closed mid-body.
    pub async fn read_body(
        sock: &mut TcpStream,
        buf: &mut Vec<u8>,
        head: Head,
    ) -> Result<Option<Request>> {
        if head.expect_continue {
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let (body, used) = if head.chunked {
            loop {
                if let Some((body, n)) = decode_chunked(&buf[head.len..])? {
                    break (body, head.len + n);
                }
                if sock.read_buf(buf).await? == 0 {
                    return Ok(None);
                }
            }
        } else {
            let len = head.content_length.unwrap_or(0);
            while buf.len() < head.len + len {
                if sock.read_buf(buf).await? == 0 {
                    return Ok(None);
                }
            }
            (buf[head.len..head.len + len].to_vec(), head.len + len)
        };
        buf.drain(..used);
        Ok(Some(Request { head, body }))
    }

    /// Reads one whole request: [`read_head`], then [`read_body`].
    pub async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>> {
        match read_head(sock, buf).await? {
            Some(head) => read_body(sock, buf, head).await,
            None => Ok(None),
        }
    }

    /// Sends `head` with `body` to `upstream` (`host:port`) on a fresh
    /// connection (`Connection: close`, `Content-Length` framing, hop-by-hop
    /// headers dropped) and reads the answer to its end; the answer's
    /// framing headers and `x-amz-crc32` (a proxy may change the body) are
    /// dropped.
    pub async fn forward(upstream: &str, head: &Head, body: &[u8]) -> Result<Response> {
        let mut up = TcpStream::connect(upstream)
            .await
            .with_context(|| format!("connecting to {upstream}"))?;
        let mut out = format!("{} {} HTTP/1.1\r\n", head.method(), head.target());
        for (k, v) in &head.headers {
            if !hop_by_hop(k) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        up.write_all(&bytes).await?;
        let mut raw = Vec::new();
        up.read_to_end(&mut raw).await?;
        let answer = parse_response_head(&raw)?.context("upstream closed before a full head")?;
        let body = response_body(&answer, &raw[answer.len..])?;
        Ok(Response {
            status: answer.status()?,
            reason: answer.reason().to_string(),
            headers: answer
                .headers
                .into_iter()
                .filter(|(k, _)| !hop_by_hop(k) && !k.eq_ignore_ascii_case("x-amz-crc32"))
                .collect(),
            body,
        })
    }
}

#[cfg(feature = "servers")]
pub use io::{forward, read_body, read_head, read_request};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_with_length_and_target() {
        let req = b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 12\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n\r\n{\"a\":1}";
        let head = parse_request_head(req).expect("valid").expect("complete");
        assert_eq!(head.method(), "POST");
        assert_eq!(head.target(), "/");
        assert_eq!(head.content_length, Some(12));
        assert_eq!(
            head.header("x-amz-target"),
            Some("Kinesis_20131202.PutRecords")
        );
        assert!(!head.close);
        assert_eq!(&req[head.len..], b"{\"a\":1}");
    }

    #[test]
    fn response_head_keeps_the_reason_whole() {
        let head =
            parse_response_head(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n")
                .expect("valid")
                .expect("complete");
        assert_eq!(head.status(), Ok(503));
        assert_eq!(head.reason(), "Service Unavailable");
        assert!(head.close);
    }

    #[test]
    fn incomplete_and_bad_heads() {
        assert_eq!(parse_request_head(b"GET / HTTP/1.1\r\nHost"), Ok(None));
        assert!(parse_request_head(b"GARBAGE\r\n\r\n").is_err());
        assert!(parse_request_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_request_head(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").is_err());
        assert!(parse_response_head(b"GET / HTTP/1.1\r\n\r\n").is_err());
        let head = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(head.close, "HTTP/1.0 closes unless kept alive");
    }

    #[test]
    fn chunked_bodies() {
        let buf = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
        let (body, used) = decode_chunked(buf).expect("valid").expect("complete");
        assert_eq!(body, b"hello world");
        assert_eq!(&buf[used..], b"NEXT", "trailers are consumed, NEXT is not");
        assert_eq!(decode_chunked(b"5\r\nhel"), Ok(None));
        assert!(decode_chunked(b"zz\r\n").is_err());
        assert!(decode_chunked(b"2\r\nabX\r\n").is_err());
    }

    #[test]
    fn responses_frame_their_body() {
        let r = Response::new(200, "OK", "text/plain", b"hi".to_vec());
        let bytes = r.to_bytes(true);
        let head = parse_response_head(&bytes)
            .expect("valid")
            .expect("complete");
        assert_eq!(head.content_length, Some(2));
        assert!(head.close);
        assert_eq!(response_body(&head, &bytes[head.len..]), Ok(b"hi".to_vec()));
        assert!(response_body(&head, b"h").is_err());
    }
}
