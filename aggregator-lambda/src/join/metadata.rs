//! The metadata join: parse the CSV that maps client addresses and CIDR blocks
//! to source applications, and find the most specific match for a client.
//!
//! File format (UTF-8, one entry per line):
//!
//! ```text
//! # comments and blank lines are ignored
//! ip_or_cidr,application,contact
//! 10.1.0.0/16,checkout,team-checkout@example.com
//! 10.1.2.3,checkout-canary,"Jane Doe, +1 555 0100"
//! 2001:db8::/32,partner-api,partners@example.com
//! ```
//!
//! Fields may be double-quoted (a quote inside a quoted field is doubled).
//! A bare address is a /32 (IPv4) or /128 (IPv6) entry. The longest prefix
//! wins. Every wrong row is reported with its line number and the reason; see
//! [`Metadata::parse`].
//!
//! The application becomes the `SourceApplication` dimension, so a row is
//! refused (not repaired: the owner of the file should see it) when
//! CloudWatch would refuse the name — empty, longer than 1,024 characters,
//! not ASCII, or with control characters — by the one rule the product
//! uses everywhere (`tailrace_wire::dimension`). The name `unknown` (in any
//! case) is refused too: it is what clients that match no row are called,
//! and a row of that name would merge its clients with them.
//!
//! IPv4 and IPv4-mapped IPv6 are one address family here. A client written
//! `::ffff:10.1.2.3` is the IPv4 client `10.1.2.3`, and a row written
//! IPv4-mapped with a prefix of at least 96 (`::ffff:10.1.0.0/112`) is the
//! IPv4 row `10.1.0.0/16`: either form of a client matches either form of a
//! row (and the two forms of one block on two rows are a duplicate). Other
//! IPv6 rows, even those whose block contains the mapped range (`::/0`,
//! `::/80`), match native IPv6 clients only: an IPv6 catch-all must not
//! capture every IPv4 client.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Application name of clients that match no entry.
pub const UNKNOWN: &str = "unknown";

/// The expected header columns.
pub const HEADER: [&str; 3] = ["ip_or_cidr", "application", "contact"];

/// A source application and who to call about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppInfo {
    /// Application name (the `SourceApplication` dimension).
    pub application: Arc<str>,
    /// Contact (free text: a team address, a phone number…); empty if none.
    pub contact: Arc<str>,
}

/// One wrong line of the metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line number in the file.
    pub row: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: {}", self.row, self.reason)
    }
}

/// One prefix-length level of the lookup table.
#[derive(Debug, Clone, Default)]
struct Level<K> {
    prefix_len: u8,
    entries: HashMap<K, usize>,
}

/// A parsed metadata file: a longest-prefix-match table for IPv4 and IPv6.
///
/// The table is a hash map per prefix length, probed from the most specific
/// length present down to the least; lookups cost at most one hash probe per
/// distinct prefix length in the file.
#[derive(Debug, Clone)]
pub struct Metadata {
    apps: Vec<AppInfo>,
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
    unknown: AppInfo,
    entries: usize,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata::empty()
    }
}

/// The result of parsing a file: the entries that were right, and the rows
/// that were not.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Table built from the valid rows.
    pub metadata: Metadata,
    /// Wrong rows, in file order. Empty when the file is entirely valid.
    pub errors: Vec<RowError>,
}

impl Metadata {
    /// A table with no entries: every client is `unknown`.
    pub fn empty() -> Metadata {
        Metadata {
            apps: Vec::new(),
            v4: Vec::new(),
            v6: Vec::new(),
            unknown: AppInfo {
                application: UNKNOWN.into(),
                contact: "".into(),
            },
            entries: 0,
        }
    }

    /// Number of address/CIDR entries in the table.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Parse a metadata file. Never fails: wrong rows (and a missing or wrong
    /// header, reported as its row) are listed in [`Parsed::errors`]; the
    /// caller decides whether a file with errors may replace a good one.
    pub fn parse(text: &str) -> Parsed {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut errors = Vec::new();
        let mut apps: Vec<AppInfo> = Vec::new();
        let mut app_index: HashMap<AppInfo, usize> = HashMap::new();
        // (prefix, len) -> (app index, row) to report duplicates.
        let mut v4: HashMap<(u32, u8), (usize, usize)> = HashMap::new();
        let mut v6: HashMap<(u128, u8), (usize, usize)> = HashMap::new();
        let mut header_seen = false;

        for (i, line) in text.lines().enumerate() {
            let row = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields = match split_csv(trimmed) {
                Ok(f) => f,
                Err(reason) => {
                    errors.push(RowError { row, reason });
                    if !header_seen {
                        header_seen = true;
                    }
                    continue;
                }
            };
            if !header_seen {
                header_seen = true;
                let got: Vec<String> = fields.iter().map(|f| f.trim().to_lowercase()).collect();
                if got != HEADER {
                    errors.push(RowError {
                        row,
                        reason: format!(
                            "expected the header `{}`, found `{}`",
                            HEADER.join(","),
                            trimmed
                        ),
                    });
                    // A data row where the header should be: parse it too, so
                    // its own mistakes are reported as well.
                    if looks_like_header(&got) {
                        continue;
                    }
                } else {
                    continue;
                }
            }
            if fields.len() != 3 {
                errors.push(RowError {
                    row,
                    reason: format!(
                        "expected 3 fields (ip_or_cidr,application,contact), found {}",
                        fields.len()
                    ),
                });
                continue;
            }
            let application = fields[1].trim();
            let contact = fields[2].trim();
            if application.is_empty() {
                errors.push(RowError {
                    row,
                    reason: "application is empty".into(),
                });
                continue;
            }
            if let Err(problem) = tailrace_wire::dimension::check_dimension_value(application) {
                errors.push(RowError {
                    row,
                    reason: format!("application `{}`: {problem}", shown(application)),
                });
                continue;
            }
            if application.eq_ignore_ascii_case(UNKNOWN) {
                errors.push(RowError {
                    row,
                    reason: format!(
                        "application `{application}` is reserved for clients that match no row; give these clients another name"
                    ),
                });
                continue;
            }
            let net = match parse_net(fields[0].trim()) {
                Ok(n) => n,
                Err(reason) => {
                    errors.push(RowError { row, reason });
                    continue;
                }
            };
            let info = AppInfo {
                application: application.into(),
                contact: contact.into(),
            };
            let idx = *app_index.entry(info.clone()).or_insert_with(|| {
                apps.push(info);
                apps.len() - 1
            });
            let dup = match net {
                Net::V4(addr, len) => v4.insert((addr, len), (idx, row)),
                Net::V6(addr, len) => v6.insert((addr, len), (idx, row)),
            };
            if let Some((prev_idx, prev_row)) = dup {
                // Keep the first entry; report the conflicting one.
                match net {
                    Net::V4(addr, len) => v4.insert((addr, len), (prev_idx, prev_row)),
                    Net::V6(addr, len) => v6.insert((addr, len), (prev_idx, prev_row)),
                };
                errors.push(RowError {
                    row,
                    reason: format!("{} is already listed on row {prev_row}", fields[0].trim()),
                });
            }
        }
        if !header_seen {
            errors.push(RowError {
                row: 1,
                reason: format!(
                    "the file is empty: expected the header `{}`",
                    HEADER.join(",")
                ),
            });
        }

        let entries = v4.len() + v6.len();
        let mut metadata = Metadata::empty();
        metadata.apps = apps;
        metadata.entries = entries;
        metadata.v4 = build_levels(v4);
        metadata.v6 = build_levels(v6);
        Parsed { metadata, errors }
    }

    /// The application of `ip`, if an entry covers it (most specific wins).
    pub fn lookup(&self, ip: IpAddr) -> Option<&AppInfo> {
        match ip {
            IpAddr::V4(v4) => self.lookup_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.lookup_v4(v4),
                None => self.lookup_v6(v6),
            },
        }
    }

    /// The application of a client, `unknown` when there is no address or no
    /// entry covers it.
    pub fn resolve(&self, ip: Option<IpAddr>) -> &AppInfo {
        ip.and_then(|ip| self.lookup(ip)).unwrap_or(&self.unknown)
    }

    /// The `unknown` application.
    pub fn unknown(&self) -> &AppInfo {
        &self.unknown
    }

    /// The contacts the file gives for the application named `name`, in
    /// file order, without repeats or empty ones (the notifier's "who do I
    /// call" for an application an alarm names). Empty when the file does
    /// not list the application.
    pub fn contacts_of(&self, name: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in self.apps.iter().filter(|a| &*a.application == name) {
            if !a.contact.is_empty() && !out.contains(&&*a.contact) {
                out.push(&a.contact);
            }
        }
        out
    }

    fn lookup_v4(&self, ip: Ipv4Addr) -> Option<&AppInfo> {
        let bits = u32::from(ip);
        self.v4.iter().find_map(|level| {
            level
                .entries
                .get(&mask_u32(bits, level.prefix_len))
                .map(|&i| &self.apps[i])
        })
    }

    fn lookup_v6(&self, ip: Ipv6Addr) -> Option<&AppInfo> {
        let bits = u128::from(ip);
        self.v6.iter().find_map(|level| {
            level
                .entries
                .get(&mask_u128(bits, level.prefix_len))
                .map(|&i| &self.apps[i])
        })
    }
}

/// A name as an error message shows it: escaped, at most 40 characters.
fn shown(name: &str) -> String {
    let mut out: String = name.chars().take(40).flat_map(char::escape_debug).collect();
    if name.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn looks_like_header(fields: &[String]) -> bool {
    fields
        .first()
        .map(|f| parse_net(f).is_err())
        .unwrap_or(true)
}

fn build_levels<K: std::hash::Hash + Eq>(map: HashMap<(K, u8), (usize, usize)>) -> Vec<Level<K>> {
    let mut levels: Vec<Level<K>> = Vec::new();
    for ((addr, len), (idx, _row)) in map {
        match levels.iter_mut().find(|l| l.prefix_len == len) {
            Some(level) => {
                level.entries.insert(addr, idx);
            }
            None => {
                let mut entries = HashMap::new();
                entries.insert(addr, idx);
                levels.push(Level {
                    prefix_len: len,
                    entries,
                });
            }
        }
    }
    levels.sort_by_key(|l| std::cmp::Reverse(l.prefix_len));
    levels
}

fn mask_u32(bits: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask_u128(bits: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

/// Parse an address or CIDR block; host bits must be zero.
fn parse_net(s: &str) -> Result<Net, String> {
    if s.is_empty() {
        return Err("ip_or_cidr is empty: expected an IPv4/IPv6 address or CIDR block".into());
    }
    let (addr_s, len_s) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr_s
        .parse()
        .map_err(|_| format!("expected an IPv4/IPv6 address or CIDR block (like 10.1.0.0/16 or 2001:db8::/32), found `{s}`"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = match len_s {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("`{s}`: expected a prefix length from 0 to {max}")),
        },
    };
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let masked = mask_u32(bits, len);
            if masked != bits {
                return Err(format!(
                    "`{s}` has host bits set; did you mean {}/{len}?",
                    Ipv4Addr::from(masked)
                ));
            }
            Ok(Net::V4(bits, len))
        }
        IpAddr::V6(a) => {
            // An IPv4-mapped entry is an IPv4 entry.
            if let Some(v4) = a.to_ipv4_mapped() {
                if len >= 96 {
                    let l4 = len - 96;
                    let bits = u32::from(v4);
                    if mask_u32(bits, l4) != bits {
                        return Err(format!("`{s}` has host bits set"));
                    }
                    return Ok(Net::V4(bits, l4));
                }
            }
            let bits = u128::from(a);
            let masked = mask_u128(bits, len);
            if masked != bits {
                return Err(format!(
                    "`{s}` has host bits set; did you mean {}/{len}?",
                    Ipv6Addr::from(masked)
                ));
            }
            Ok(Net::V6(bits, len))
        }
    }
}

/// Split one CSV line into fields, honouring double quotes.
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                in_quotes = true;
                was_quoted = true;
            }
            '"' => return Err("unexpected `\"` inside an unquoted field".into()),
            _ if was_quoted && !c.is_whitespace() => {
                return Err("text after a closing `\"`".into());
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated `\"` (a field cannot span lines)".into());
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cloudwatch_would_refuse_are_wrong_rows() {
        let long = "a".repeat(1025);
        let text = format!(
            "ip_or_cidr,application,contact\n\
             10.0.0.1,caf\u{e9},x\n\
             10.0.0.2,\"tab\there\",x\n\
             10.0.0.3,{long},x\n\
             10.0.0.4,{},x\n\
             10.0.0.5,unknown,x\n\
             10.0.0.6,\"  Unknown \",x\n\
             10.0.0.7,unknown-scanner,x\n",
            "b".repeat(1024)
        );
        let parsed = Metadata::parse(&text);
        let rows: Vec<usize> = parsed.errors.iter().map(|e| e.row).collect();
        assert_eq!(rows, vec![2, 3, 4, 6, 7], "{:?}", parsed.errors);
        assert!(
            parsed.errors[0].reason.contains("not ASCII"),
            "{:?}",
            parsed.errors
        );
        assert!(parsed.errors[1].reason.contains("control character"));
        assert!(parsed.errors[2].reason.contains("1025 characters"));
        assert!(
            parsed.errors[2].reason.len() < 200,
            "long names are shortened"
        );
        assert!(parsed.errors[3].reason.contains("reserved"));
        assert!(parsed.errors[4].reason.contains("reserved"));
        let m = &parsed.metadata;
        assert_eq!(m.len(), 2, "the 1,024-character name and unknown-scanner");
        assert_eq!(app(m, "10.0.0.7"), "unknown-scanner");
        // The refused `unknown` row does not make its client an application.
        assert_eq!(app(m, "10.0.0.5"), UNKNOWN);
    }

    #[test]
    fn ipv4_mapped_clients_and_rows_are_ipv4() {
        let m = Metadata::parse(
            "ip_or_cidr,application,contact\n\
             10.1.0.0/16,four,x\n\
             ::ffff:10.2.0.0/112,mapped,x\n\
             ::/0,v6-all,x\n\
             2001:db8::/32,six,x\n",
        );
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        let m = &m.metadata;
        // Either form of the client matches either form of the row.
        assert_eq!(app(m, "10.1.2.3"), "four");
        assert_eq!(app(m, "::ffff:10.1.2.3"), "four");
        assert_eq!(app(m, "10.2.3.4"), "mapped");
        assert_eq!(app(m, "::ffff:10.2.3.4"), "mapped");
        // IPv6 rows match native IPv6 clients only, catch-alls included.
        assert_eq!(app(m, "2001:db8::1"), "six");
        assert_eq!(app(m, "2001:db9::1"), "v6-all");
        assert_eq!(app(m, "10.9.9.9"), UNKNOWN);
        assert_eq!(app(m, "::ffff:10.9.9.9"), UNKNOWN);
        // One block in both forms is one entry listed twice.
        let dup = Metadata::parse(
            "ip_or_cidr,application,contact\n10.1.0.0/16,a,x\n::ffff:10.1.0.0/112,b,x\n",
        );
        assert_eq!(dup.errors.len(), 1, "{:?}", dup.errors);
        assert_eq!(dup.errors[0].row, 3);
        assert!(dup.errors[0].reason.contains("already listed on row 2"));
    }

    fn app(m: &Metadata, ip: &str) -> String {
        let ip: IpAddr = ip.parse().expect("test ip");
        m.resolve(Some(ip)).application.to_string()
    }

    const GOOD: &str = "\
# tailrace metadata
ip_or_cidr,application,contact

10.0.0.0/8,corp,corp@example.com
10.1.0.0/16,checkout,checkout@example.com
10.1.2.0/24,checkout-batch,batch@example.com
10.1.2.3,canary,\"Jane Doe, +1 555 0100\"
192.0.2.7 , partner , partner@example.com
2001:db8::/32,v6-app,v6@example.com
2001:db8:1::/48,v6-inner,inner@example.com
2001:db8:1::42,v6-host,
0.0.0.0/0,internet,noc@example.com
";

    #[test]
    fn longest_prefix_wins_v4() {
        let p = Metadata::parse(GOOD);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let m = p.metadata;
        assert_eq!(m.len(), 9);
        assert_eq!(app(&m, "10.9.9.9"), "corp");
        assert_eq!(app(&m, "10.1.9.9"), "checkout");
        assert_eq!(app(&m, "10.1.2.4"), "checkout-batch");
        assert_eq!(app(&m, "10.1.2.3"), "canary");
        assert_eq!(app(&m, "192.0.2.7"), "partner");
        assert_eq!(app(&m, "8.8.8.8"), "internet");
        assert_eq!(app(&m, "::ffff:10.1.2.3"), "canary");
        let canary = m.lookup("10.1.2.3".parse().expect("ip")).expect("entry");
        assert_eq!(&*canary.contact, "Jane Doe, +1 555 0100");
    }

    #[test]
    fn longest_prefix_wins_v6_and_unknown() {
        let m = Metadata::parse(GOOD).metadata;
        assert_eq!(app(&m, "2001:db8:ffff::1"), "v6-app");
        assert_eq!(app(&m, "2001:db8:1:2::1"), "v6-inner");
        assert_eq!(app(&m, "2001:db8:1::42"), "v6-host");
        assert_eq!(app(&m, "2001:db9::1"), UNKNOWN);
        assert_eq!(app(&m, "::1"), UNKNOWN);
        assert_eq!(&*m.resolve(None).application, UNKNOWN);
        assert_eq!(
            &*m.lookup("2001:db8:1::42".parse().expect("ip"))
                .expect("entry")
                .contact,
            ""
        );
    }

    #[test]
    fn no_default_route_means_unknown() {
        let m = Metadata::parse("ip_or_cidr,application,contact\n10.0.0.0/8,corp,x\n").metadata;
        assert_eq!(app(&m, "11.0.0.1"), UNKNOWN);
        assert_eq!(app(&m, "10.255.255.255"), "corp");
    }

    #[test]
    fn bad_rows_are_reported_with_their_line_numbers() {
        let text = "\
ip_or_cidr,application,contact
10.0.0.0/8,corp,a
10.0.0.1/8,corp,b
not-an-ip,x,y
10.2.0.0/33,x,y
10.3.0.0/16,,y
10.4.0.0/16,x
# fine
10.0.0.0/8,other,dup
\"10.5.0.0/16,x,y
2001:db8::1/32,x,y
";
        let p = Metadata::parse(text);
        let rows: Vec<usize> = p.errors.iter().map(|e| e.row).collect();
        assert_eq!(rows, vec![3, 4, 5, 6, 7, 9, 10, 11], "{:?}", p.errors);
        assert!(
            p.errors[0].reason.contains("did you mean 10.0.0.0/8"),
            "{}",
            p.errors[0]
        );
        assert!(p.errors[1].reason.contains("not-an-ip"));
        assert!(p.errors[2].reason.contains("prefix length"));
        assert!(p.errors[3].reason.contains("application is empty"));
        assert!(p.errors[4].reason.contains("expected 3 fields"));
        assert!(p.errors[5].reason.contains("already listed on row 2"));
        assert!(p.errors[6].reason.contains("unterminated"));
        assert!(p.errors[7].reason.contains("host bits"));
        // The valid row survives, and the duplicate did not replace it.
        assert_eq!(app(&p.metadata, "10.0.0.1"), "corp");
        assert_eq!(p.metadata.len(), 1);
    }

    #[test]
    fn header_is_required() {
        let p = Metadata::parse("10.0.0.0/8,corp,a\n");
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].row, 1);
        assert!(p.errors[0].reason.contains("expected the header"));
        // The data row itself was still understood.
        assert_eq!(app(&p.metadata, "10.0.0.1"), "corp");

        let p = Metadata::parse("# only a comment\n\n");
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].reason.contains("empty"));

        let p = Metadata::parse("ip,app,contact\n10.0.0.0/8,corp,a\n");
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].row, 1);
    }

    #[test]
    fn header_is_case_insensitive_and_bom_tolerated() {
        let p =
            Metadata::parse("\u{feff}IP_or_CIDR, Application ,Contact\r\n10.0.0.0/8,corp,a\r\n");
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(app(&p.metadata, "10.0.0.1"), "corp");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            split_csv(r#"a,"b, c","d ""e""""#).expect("valid"),
            vec!["a", "b, c", r#"d "e""#]
        );
        assert!(split_csv(r#"a,b"c,d"#).is_err());
        assert!(split_csv(r#"a,"b"c,d"#).is_err());
    }
}
