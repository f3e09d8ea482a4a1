//! Which address is the client: the connection's peer (`%a` / `%h`), or an address
//! from a header such as `X-Forwarded-For` when the request came through proxies the
//! operator trusts (`client_field` + `trusted_proxies`).
//!
//! `X-Forwarded-For` is a list every proxy appends the address it received the
//! request from to; everything left of what a trusted proxy appended was written by
//! someone else, possibly the client itself. So, as Apache's `mod_remoteip` does:
//!
//! - **trusted networks** (`trusted_proxies: [10.0.0.0/8, "2001:db8::/32"]`): the
//!   header is believed only when the peer itself is in a trusted network; then the
//!   client is the right-most entry that is *not* in a trusted network. If every
//!   entry is trusted, the left-most one is the client. An entry that is not an
//!   address stops the walk: the client is the trusted hop that appended it.
//! - **a hop count** (`trusted_proxies: N`, the older form): the client is the N-th
//!   entry from the right (the one the N-th proxy appended). With fewer than N
//!   entries the request did not pass all N proxies and the peer is used. A count
//!   cannot check that the peer is a proxy: prefer networks.
//! - `trusted_proxies: 0` or `[]`: trust nobody; the peer is the client.
//!
//! Entries may be `ip`, `ip:port`, `[v6]` or `[v6]:port` (what some proxies write);
//! the address is returned without port or brackets, as a slice of the line (no
//! allocation per line). IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`) match IPv4
//! networks. Written here rather than taken from a crate: the selection is a dozen
//! lines over `std::net` parsing and `ipnet` for the networks.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::proxies::ProxyTrust;

/// The address in one header entry (`ip`, `ip:port`, `[v6]`, `[v6]:port`), as the
/// slice of `entry` that holds it and the parsed address; `None` when it is not one.
pub fn entry_address(entry: &[u8]) -> Option<(&[u8], IpAddr)> {
    let e = entry.trim_ascii();
    let text = std::str::from_utf8(e).ok()?;
    if let Ok(a) = text.parse::<IpAddr>() {
        return Some((e, canonical(a)));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let inner = &rest[..close];
        let after = &rest[close + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        let a = inner.parse::<IpAddr>().ok()?;
        return Some((&e[1..1 + close], canonical(a)));
    }
    // `a.b.c.d:port` (a bare IPv6 address has more than one colon and parsed above).
    let (host, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    let a = host.parse::<std::net::Ipv4Addr>().ok()?;
    Some((&e[..host.len()], IpAddr::V4(a)))
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

fn canonical(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

fn trusted(nets: &[IpNet], a: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&a))
}

/// The client of one line: `peer` is the `%a` / `%h` text, `header` the
/// `client_field` text (`None` when absent or `-`). Falls back to the peer, then `-`.
pub fn select<'l>(
    trust: &ProxyTrust,
    peer: Option<&'l [u8]>,
    header: Option<&'l [u8]>,
) -> &'l [u8] {
    let fallback = peer.unwrap_or(b"-");
    let Some(header) = header else {
        return fallback;
    };
    match trust {
        ProxyTrust::Hops(0) => fallback,
        ProxyTrust::Hops(n) => match header.rsplit(|&b| b == b',').nth(n - 1) {
            Some(entry) => match entry_address(entry) {
                Some((text, _)) => text,
                None => fallback,
            },
            None => fallback,
        },
        ProxyTrust::Networks(nets) => {
            if nets.is_empty() {
                return fallback;
            }
            // The peer must be a trusted proxy for the header to mean anything.
            let peer_trusted = peer
                .and_then(entry_address)
                .is_some_and(|(_, a)| trusted(nets, a));
            if !peer_trusted {
                return fallback;
            }
            let mut last_trusted = fallback;
            for entry in header.rsplit(|&b| b == b',') {
                match entry_address(entry) {
                    Some((text, a)) if trusted(nets, a) => last_trusted = text,
                    Some((text, _)) => return text,
                    None => return last_trusted,
                }
            }
            last_trusted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::proxies::parse_network;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> ProxyTrust {
        ProxyTrust::Networks(list.iter().map(|n| parse_network(n).unwrap()).collect())
    }

    fn pick<'l>(t: &ProxyTrust, peer: &'l str, header: &'l str) -> &'l str {
        let h = (!header.is_empty()).then_some(header.as_bytes());
        std::str::from_utf8(select(t, Some(peer.as_bytes()), h)).unwrap()
    }

    #[test]
    fn networks_take_the_rightmost_untrusted_entry() {
        let t = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        // Client 203.0.113.9 → ALB 10.0.1.5 → inner proxy 10.0.2.6 → Apache.
        assert_eq!(pick(&t, "10.0.2.6", "203.0.113.9, 10.0.1.5"), "203.0.113.9");
        // A forged left part is ignored: the right-most untrusted entry wins.
        assert_eq!(
            pick(&t, "10.0.2.6", "1.1.1.1, 203.0.113.9, 10.0.1.5"),
            "203.0.113.9"
        );
        // The peer is not a proxy: the header is the client's own words.
        assert_eq!(pick(&t, "198.51.100.7", "1.1.1.1"), "198.51.100.7");
        // Every entry trusted: the left-most is the client (an internal caller).
        assert_eq!(pick(&t, "10.0.2.6", "10.9.9.9, 10.0.1.5"), "10.9.9.9");
        // Ports and brackets.
        assert_eq!(pick(&t, "10.0.2.6", "203.0.113.9:51234"), "203.0.113.9");
        assert_eq!(
            pick(&t, "2001:db8::5", "[2001:db9::1]:443, [2001:db8::7]"),
            "2001:db9::1"
        );
        assert_eq!(pick(&t, "10.0.2.6", "2001:db9::2"), "2001:db9::2");
        // An IPv4-mapped peer is the IPv4 proxy.
        assert_eq!(pick(&t, "::ffff:10.0.2.6", "203.0.113.9"), "203.0.113.9");
        // Garbage stops the walk at the trusted hop that appended it.
        assert_eq!(
            pick(&t, "10.0.2.6", "203.0.113.9, bogus, 10.0.1.5"),
            "10.0.1.5"
        );
        assert_eq!(pick(&t, "10.0.2.6", "unknown"), "10.0.2.6");
        // No header: the peer.
        assert_eq!(pick(&t, "10.0.2.6", ""), "10.0.2.6");
    }

    #[test]
    fn hop_counts() {
        let one = ProxyTrust::Hops(1);
        let two = ProxyTrust::Hops(2);
        assert_eq!(
            pick(&one, "10.0.0.1", "1.1.1.1, 203.0.113.9"),
            "203.0.113.9"
        );
        assert_eq!(
            pick(&two, "10.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.1.5"),
            "203.0.113.9"
        );
        // Fewer entries than proxies: the header was not written by them all.
        assert_eq!(pick(&two, "10.0.0.1", "1.1.1.1"), "10.0.0.1");
        // 0 trusts nobody.
        assert_eq!(
            pick(&ProxyTrust::Hops(0), "10.0.0.1", "1.1.1.1"),
            "10.0.0.1"
        );
        assert_eq!(pick(&nets(&[]), "10.0.0.1", "1.1.1.1"), "10.0.0.1");
        // ip:port is an address, not a name.
        assert_eq!(pick(&one, "10.0.0.1", "203.0.113.9:8080"), "203.0.113.9");
    }

    #[test]
    fn network_entries() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network(" 10.1.2.3 ").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("proxy.internal").is_err());
        assert!(entry_address(b"[::1]x").is_none());
        assert!(entry_address(b"1.2.3.4:").is_none());
        assert!(entry_address(b"host:80").is_none());
    }

    proptest! {
        /// Whatever a client writes in front, with the chain of trusted proxies
        /// behind, the client found is the address the first proxy appended.
        #[test]
        fn forged_prefixes_never_win(
            forged in proptest::collection::vec((any::<[u8; 4]>(), any::<bool>()), 0..6),
            client in any::<[u8; 4]>(),
            hops in proptest::collection::vec(any::<[u8; 3]>(), 0..4),
            peer in any::<[u8; 3]>(),
        ) {
            let client = std::net::Ipv4Addr::from([203, client[1], client[2], client[3]]);
            let mut header: Vec<String> = forged
                .iter()
                .map(|(a, port)| {
                    let ip = std::net::Ipv4Addr::from(*a);
                    if *port { format!("{ip}:1234") } else { ip.to_string() }
                })
                .collect();
            header.push(client.to_string());
            for h in &hops {
                header.push(std::net::Ipv4Addr::from([10, h[0], h[1], h[2]]).to_string());
            }
            let header = header.join(", ");
            let peer = std::net::Ipv4Addr::from([10, peer[0], peer[1], peer[2]]).to_string();
            let t = nets(&["10.0.0.0/8"]);
            prop_assert_eq!(pick(&t, &peer, &header), client.to_string());
            // Hop counting with the right count finds the same client.
            let h = ProxyTrust::Hops(hops.len() + 1);
            prop_assert_eq!(pick(&h, &peer, &header), client.to_string());
        }
    }
}
