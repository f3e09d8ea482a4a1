//! Client keys: who sent a group of requests.
//!
//! Apache's `%h` is the client address, or a host name when `HostnameLookups` is on, or (in
//! odd logs) anything at all. IP addresses are stored in their binary form (4 or 16 bytes),
//! everything else verbatim as (lossy) UTF-8, truncated to [`MAX_NAME_BYTES`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name a [`ClientKey::Name`] keeps (longer text is cut at a character boundary).
///
/// DNS names are at most 253 bytes; anything longer is garbage and only needs to stay
/// recognizable. The decoder rejects longer names.
pub const MAX_NAME_BYTES: usize = 256;

/// Who sent a group of requests: the client address.
///
/// IPs are stored compactly; anything else (a hostname when `HostnameLookups` is on, garbage)
/// verbatim (lossy UTF-8). IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) stay [`ClientKey::V6`]:
/// they are what the log says, and the consumer may map them when joining.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    /// An IPv4 address, network byte order.
    V4([u8; 4]),
    /// An IPv6 address, network byte order.
    V6([u8; 16]),
    /// Anything that is not an IP address, verbatim (lossy UTF-8, at most [`MAX_NAME_BYTES`]).
    Name(String),
}

impl ClientKey {
    /// Parses the client field of a log line: an IPv4 or IPv6 address (also in brackets,
    /// `[::1]`; surrounding ASCII whitespace ignored), else a name (verbatim, lossy UTF-8,
    /// truncated to [`MAX_NAME_BYTES`]).
    pub fn from_text(text: &[u8]) -> ClientKey {
        if let Some(key) = parse_ip(text) {
            return key;
        }
        ClientKey::Name(truncate_name(String::from_utf8_lossy(text).into_owned()))
    }

    /// The IP address, if this key is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ClientKey::V4(b) => Some(IpAddr::V4(Ipv4Addr::from(*b))),
            ClientKey::V6(b) => Some(IpAddr::V6(Ipv6Addr::from(*b))),
            ClientKey::Name(_) => None,
        }
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => ClientKey::V6(v6.octets()),
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(b) => Ipv4Addr::from(*b).fmt(f),
            ClientKey::V6(b) => Ipv6Addr::from(*b).fmt(f),
            ClientKey::Name(name) => f.write_str(name),
        }
    }
}

fn parse_ip(text: &[u8]) -> Option<ClientKey> {
    let text = text.trim_ascii();
    // The longest IPv6 text form is 45 bytes (plus brackets); don't even look at longer input.
    if text.is_empty() || text.len() > 47 {
        return None;
    }
    let s = std::str::from_utf8(text).ok()?;
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| ClientKey::V6(v6.octets()));
    }
    s.parse::<IpAddr>().ok().map(ClientKey::from)
}

/// Cuts `name` to at most [`MAX_NAME_BYTES`] bytes at a character boundary.
pub(crate) fn truncate_name(name: String) -> String {
    truncate_string(name, MAX_NAME_BYTES)
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn truncate_string(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_names() {
        assert_eq!(
            ClientKey::from_text(b"10.0.0.1"),
            ClientKey::V4([10, 0, 0, 1])
        );
        let v6 = ClientKey::from_text(b"2001:db8::1");
        assert_eq!(v6.to_string(), "2001:db8::1");
        assert_eq!(ClientKey::from_text(b"[::1]").to_string(), "::1");
        let mapped = ClientKey::from_text(b"::ffff:10.0.0.1");
        assert!(matches!(mapped, ClientKey::V6(_)));
        assert_eq!(
            ClientKey::from_text(b"host.example.com"),
            ClientKey::Name("host.example.com".into())
        );
        assert_eq!(ClientKey::from_text(b"-"), ClientKey::Name("-".into()));
        assert_eq!(
            ClientKey::from_text(b"\xff1"),
            ClientKey::Name("\u{fffd}1".into())
        );
        assert_eq!(
            ClientKey::from_text(b"10.0.0.256"),
            ClientKey::Name("10.0.0.256".into())
        );
        assert_eq!(ClientKey::from_text(b"").to_string(), "");
        assert_eq!(
            ClientKey::from_text(b" 10.0.0.1\t"),
            ClientKey::V4([10, 0, 0, 1])
        );
    }

    #[test]
    fn long_names_are_truncated_at_char_boundary() {
        let long = "é".repeat(300);
        let ClientKey::Name(name) = ClientKey::from_text(long.as_bytes()) else {
            panic!("not a name")
        };
        assert!(name.len() <= MAX_NAME_BYTES);
        assert_eq!(name.len(), 256);
    }

    #[test]
    fn ip_accessor() {
        assert_eq!(
            ClientKey::V4([127, 0, 0, 1]).ip(),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(ClientKey::Name("x".into()).ip(), None);
    }
}
