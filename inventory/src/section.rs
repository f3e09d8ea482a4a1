//! The updater's section of the metadata file, and the rows around it.
//!
//! The updater owns the lines between [`BEGIN`] and [`END`] (both comment
//! lines, which the aggregator's parser skips, so the aggregator needs no
//! change and reads one file). Everything outside them is the people's and
//! is written back byte for byte. Inside, each row is preceded by one
//! annotation comment the updater reads back:
//!
//! ```text
//! # >>> tailrace inventory (rows up to the end marker are rewritten: set tags instead)
//! # instance=i-0abc address=10.0.1.5
//! 10.0.1.5,checkout,team-checkout@example.com
//! # instance=i-0def address=10.0.1.6 gone-since=2026-12-01T07:05:00Z
//! 10.0.1.6,checkout,"Doe, Jane"
//! # <<< tailrace inventory
//! ```
//!
//! A row's CSV line is kept verbatim while its instance is gone (it is never
//! parsed back: the annotation carries what the planner needs). Lines inside
//! the section that are neither are reported and not kept.

use std::net::IpAddr;
use std::time::SystemTime;

/// First line of the updater's section.
pub const BEGIN: &str =
    "# >>> tailrace inventory (rows up to the end marker are rewritten: set tags instead)";
/// Last line of the updater's section.
pub const END: &str = "# <<< tailrace inventory";
/// What a new file starts with.
pub const NEW_FILE_HEAD: &str = "ip_or_cidr,application,contact\n";

const BEGIN_PREFIX: &str = "# >>> tailrace inventory";

/// One row of the updater's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedRow {
    /// The instance the address belongs (or belonged) to.
    pub instance: String,
    /// The address (a /32 or /128 row).
    pub address: IpAddr,
    /// When the instance was seen gone (terminated, or the address left it);
    /// `None` while it is live.
    pub gone_since: Option<SystemTime>,
    /// The CSV line, without its newline.
    pub line: String,
}

/// A metadata file cut into the people's text and the updater's rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parts {
    /// Text before the section (with its last newline).
    pub before: String,
    /// Text after the section.
    pub after: String,
    /// The updater's rows, in file order.
    pub rows: Vec<ManagedRow>,
    /// 1-based first and last line of the section in the file, if present.
    pub lines: Option<(usize, usize)>,
    /// Lines inside the section that were not understood (line, reason).
    pub ignored: Vec<(usize, String)>,
}

/// The section markers are broken: the file cannot be updated safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    /// A begin marker without an end marker.
    #[error("line {0}: `{BEGIN_PREFIX}` has no `{END}` after it")]
    Unterminated(usize),
    /// Two begin markers, or an end marker without a begin marker.
    #[error("line {0}: unexpected inventory marker (expected one `{BEGIN_PREFIX} ...` line, then one `{END}` line)")]
    Stray(usize),
}

/// Cut `text` into its parts. A file without a section is all people's text.
pub fn split(text: &str) -> Result<Parts, SectionError> {
    let mut parts = Parts::default();
    // 0: before, 1: inside, 2: after
    let mut zone = 0;
    let mut begin_line = 0;
    let mut pending: Option<(usize, Annotation)> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let trimmed = bare.trim();
        let is_begin = trimmed.starts_with(BEGIN_PREFIX);
        let is_end = trimmed == END;
        match zone {
            0 if is_begin => {
                zone = 1;
                begin_line = n;
            }
            0 if is_end => return Err(SectionError::Stray(n)),
            0 => parts.before.push_str(line),
            1 if is_begin => return Err(SectionError::Stray(n)),
            1 if is_end => {
                if let Some((at, _)) = pending.take() {
                    parts
                        .ignored
                        .push((at, "annotation without a row after it".into()));
                }
                zone = 2;
                parts.lines = Some((begin_line, n));
            }
            1 => {
                if trimmed.is_empty() {
                    continue;
                }
                if let Some(rest) = trimmed.strip_prefix('#') {
                    if let Some((at, _)) = pending.take() {
                        parts
                            .ignored
                            .push((at, "annotation without a row after it".into()));
                    }
                    match parse_annotation(rest) {
                        Ok(a) => pending = Some((n, a)),
                        Err(reason) => parts.ignored.push((n, reason)),
                    }
                    continue;
                }
                match pending.take() {
                    Some((_, a)) => parts.rows.push(ManagedRow {
                        instance: a.instance,
                        address: a.address,
                        gone_since: a.gone_since,
                        line: trimmed.to_string(),
                    }),
                    None => parts.ignored.push((
                        n,
                        "row without an `# instance=... address=...` annotation (added by hand inside the updater's section?)".into(),
                    )),
                }
            }
            _ if is_begin || is_end => return Err(SectionError::Stray(n)),
            _ => parts.after.push_str(line),
        }
    }
    if zone == 1 {
        return Err(SectionError::Unterminated(begin_line));
    }
    Ok(parts)
}

struct Annotation {
    instance: String,
    address: IpAddr,
    gone_since: Option<SystemTime>,
}

fn parse_annotation(rest: &str) -> Result<Annotation, String> {
    let (mut instance, mut address, mut gone_since) = (None, None, None);
    for token in rest.split_whitespace() {
        let (k, v) = token
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in the annotation, found `{token}`"))?;
        match k {
            "instance" => instance = Some(v.to_string()),
            "address" => {
                address = Some(
                    v.parse::<IpAddr>()
                        .map_err(|_| format!("address=`{v}` is not an IP address"))?,
                )
            }
            "gone-since" => {
                gone_since = Some(
                    humantime::parse_rfc3339(v).map_err(|e| format!("gone-since=`{v}`: {e}"))?,
                )
            }
            _ => return Err(format!("unknown annotation key `{k}`")),
        }
    }
    Ok(Annotation {
        instance: instance.ok_or("annotation without instance=")?,
        address: address.ok_or("annotation without address=")?,
        gone_since,
    })
}

/// The file with `rows` as the section (placed where the old one was, or at
/// the end). Also returns, for each row, the 1-based line number of its CSV
/// line, so a validator's complaint can be traced back to the row.
pub fn render(before: &str, rows: &[ManagedRow], after: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(before.len() + after.len() + rows.len() * 96 + 128);
    out.push_str(before);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut line_no = out.matches('\n').count();
    let mut row_lines = Vec::with_capacity(rows.len());
    out.push_str(BEGIN);
    out.push('\n');
    line_no += 1;
    for r in rows {
        out.push_str("# instance=");
        out.push_str(&r.instance);
        out.push_str(" address=");
        out.push_str(&r.address.to_string());
        if let Some(t) = r.gone_since {
            out.push_str(" gone-since=");
            out.push_str(&humantime::format_rfc3339_seconds(t).to_string());
        }
        out.push('\n');
        out.push_str(&r.line);
        out.push('\n');
        line_no += 2;
        row_lines.push(line_no);
    }
    out.push_str(END);
    out.push('\n');
    out.push_str(after);
    (out, row_lines)
}

/// One CSV row `address,application,contact` with the quoting the
/// aggregator's parser reads back: a field holding a comma, a quote or
/// surrounding whitespace is quoted, quotes doubled.
pub fn csv_row(address: IpAddr, application: &str, contact: &str) -> String {
    let mut s = address.to_string();
    for field in [application, contact] {
        s.push(',');
        if field.contains([',', '"']) || field.trim() != field || field.starts_with('#') {
            s.push('"');
            s.push_str(&field.replace('"', "\"\""));
            s.push('"');
        } else {
            s.push_str(field);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn row(id: &str, addr: &str, gone: Option<u64>, app: &str) -> ManagedRow {
        let address: IpAddr = addr.parse().expect("ip");
        ManagedRow {
            instance: id.into(),
            address,
            gone_since: gone.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            line: csv_row(address, app, "c"),
        }
    }

    #[test]
    fn render_then_split_round_trips_and_keeps_people_text() {
        let before = "# partners\nip_or_cidr,application,contact\n10.9.0.0/16,vpn,\"net, ops\"\n";
        let after = "# trailing note\n192.0.2.0/24,partner,p@x\n";
        let rows = vec![
            row("i-1", "10.0.0.5", None, "web"),
            row("i-2", "2001:db8::7", Some(1_764_572_700), "a,b"),
        ];
        let (text, lines) = render(before, &rows, after);
        assert_eq!(lines, vec![6, 8]);
        assert_eq!(text.lines().nth(5), Some(rows[0].line.as_str()));
        let parts = split(&text).expect("split");
        assert_eq!(parts.before, before);
        assert_eq!(parts.after, after);
        assert_eq!(parts.rows, rows);
        assert_eq!(parts.lines, Some((4, 9)));
        assert!(parts.ignored.is_empty());
        // Rendering what was split gives the same bytes.
        assert_eq!(render(&parts.before, &parts.rows, &parts.after).0, text);
    }

    #[test]
    fn no_section_is_all_people_text() {
        let text = "ip_or_cidr,application,contact\n10.0.0.0/8,corp,x";
        let parts = split(text).expect("split");
        assert_eq!(parts.before, text);
        assert!(parts.rows.is_empty());
        assert_eq!(parts.lines, None);
        let (out, _) = render(&parts.before, &[], &parts.after);
        assert!(out.starts_with("ip_or_cidr,application,contact\n10.0.0.0/8,corp,x\n# >>>"));
    }

    #[test]
    fn broken_markers_are_errors_and_stray_lines_are_reported() {
        let t = format!("{NEW_FILE_HEAD}{BEGIN}\n");
        assert_eq!(split(&t), Err(SectionError::Unterminated(2)));
        let t = format!("{NEW_FILE_HEAD}{END}\n");
        assert_eq!(split(&t), Err(SectionError::Stray(2)));
        let t = format!("{NEW_FILE_HEAD}{BEGIN}\n{BEGIN}\n{END}\n");
        assert_eq!(split(&t), Err(SectionError::Stray(3)));
        let t = format!(
            "{NEW_FILE_HEAD}{BEGIN}\n10.0.0.1,x,y\n# instance=i-1 address=nope\n10.0.0.2,x,y\n# instance=i-3 address=10.0.0.3\n{END}\n"
        );
        let parts = split(&t).expect("split");
        assert!(parts.rows.is_empty());
        let lines: Vec<usize> = parts.ignored.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5, 6], "{:?}", parts.ignored);
    }

    #[test]
    fn csv_quoting() {
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(csv_row(a, "web", "ops@x"), "10.0.0.1,web,ops@x");
        assert_eq!(
            csv_row(a, "a,b", "Doe, \"Jane\""),
            "10.0.0.1,\"a,b\",\"Doe, \"\"Jane\"\"\""
        );
        assert_eq!(csv_row(a, "web", ""), "10.0.0.1,web,");
    }
}
