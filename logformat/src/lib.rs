//! Apache access-log parsing for tailrace, driven by Apache's own `LogFormat` string.
//!
//! # The problem
//!
//! Every web server in the fleet writes access logs in some `LogFormat`: the `common`
//! or `combined` presets, or a house format with `%D`, `%{X-Forwarded-For}i`, a
//! virtual host, a custom time. The agent must turn millions of such lines per minute
//! into (client, time, status, bytes, latency) with little CPU, and must not fall over
//! on the odd lines real servers write: TLS probes (`"\x16\x03\x01" 400 0`), timeouts
//! (`"-" 408 -`), IPv6 clients, escaped or even raw quotes inside a request line,
//! bytes that are not UTF-8, multi-megabyte lines.
//!
//! So the format string is compiled once ([`LogFormat::compile`]) into a small program
//! of literal text and fields, and each line is run through it ([`LogFormat::parse`])
//! by hand: no regex, `memchr` to find delimiters, fields recorded as `u32` offsets
//! into the line inside a reused [`Parsed`], so steady-state parsing allocates nothing.
//! A field ends at the next literal text of the format; a quoted field (`"%r"`) skips
//! `\"` escapes; when the rest of the line then does not match, a later end is tried
//! (bounded per line), which is what makes raw quotes and spaces survivable. A line
//! that does not match yields a [`ParseError`] with the byte column and what was
//! expected.
//!
//! # Use
//!
//! ```
//! use tailrace_logformat::{LogFormat, Parsed};
//!
//! let format = LogFormat::compile("combined").unwrap();
//! let line = br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
//! let mut parsed = Parsed::new();
//! format.parse(line, &mut parsed).unwrap();
//! assert_eq!(parsed.client(line), Some(&b"127.0.0.1"[..]));
//! assert_eq!(parsed.status(), Some(200));
//! assert_eq!(parsed.response_bytes(), 2326);
//! assert_eq!(parsed.time().unwrap().unix_secs, 971_211_336);
//! let ua = format.field_index("user_agent").unwrap();
//! assert_eq!(parsed.field(line, ua), Some(&b"Mozilla/4.08 [en] (Win98; I ;Nav)"[..]));
//!
//! let mut json = Vec::new();
//! parsed.write_json(&format, line, &mut json);
//! assert!(json.starts_with(br#"{"client":"127.0.0.1","ident":null,"user":"frank","time":"2000-10-10T13:55:36-07:00","request":"GET /apache_pb.gif HTTP/1.0","method":"GET""#));
//! ```
//!
//! # Modules
//!
//! - `directive`: one `%..` directive: reading it, its value type, its JSON name.
//! - `compile`: format string → program ([`LogFormat`]).
//! - `parse`: the hot loop ([`Parsed`], [`ParseError`]).
//! - `time`: `%t` / `%{..}t` compiled and parsed by hand ([`LogTime`]).
//! - `zone`: the time zone of times written without an offset ([`Zone`]), DST included.
//! - `json`: the `tailrace parse` JSON object.
//! - `fuzzing` (hidden): the fuzz targets' bodies, shared with their regression test.

mod calendar;
mod compile;
mod directive;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod json;
mod parse;
mod time;
mod zone;

pub use calendar::{rfc3339_utc, LogTime};
pub use compile::{CompileError, LogFormat, COMBINED, COMMON, MAX_FIELDS, VHOST_COMBINED};
pub use error::{Expected, ParseError};
pub use json::{split_request, RequestLine};
pub use parse::Parsed;
pub use zone::{Zone, ZoneError, FOLD_LATENESS_SECS};

#[cfg(test)]
mod tests;
