//! Which proxies the operator trusts to have written `client_field`
//! (`trusted_proxies`): a hop count or a list of networks, as the config
//! holds it once validated. Choosing the client with it is the packer's
//! (`pack::client_addr`).

use std::net::IpAddr;

use ipnet::IpNet;

/// Which proxies are trusted to have written the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyTrust {
    /// The N-th entry from the right is the client; 0 trusts nobody.
    Hops(usize),
    /// Networks whose addresses are trusted proxies; empty trusts nobody.
    Networks(Vec<IpNet>),
}

/// Parse one `trusted_proxies` entry: an address (`10.0.0.7`, `2001:db8::1`) or a
/// network in CIDR notation (`10.0.0.0/8`).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(addr) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    Err(format!(
        "`{text}` is not an IP address or a CIDR network (expected e.g. `10.0.0.0/8`, `192.168.1.10` or `2001:db8::/32`)"
    ))
}
