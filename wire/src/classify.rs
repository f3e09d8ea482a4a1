//! Telling the kinds of Kinesis records apart by their first bytes.

use crate::kpl;
use crate::partial::PARTIAL_MAGIC;

/// What kind of record a Kinesis record's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A tailrace partial aggregate (`\0TRP` + version byte); decode with [`crate::Partial::decode`].
    Partial,
    /// A KPL aggregated record (`F3 89 9A C2`); de-aggregate with [`crate::kpl::deaggregate`],
    /// then classify each inner record.
    Kpl,
    /// Kinesis Agent `LOGTOJSON` output: JSON object(s), one per line (first non-whitespace
    /// byte is `{`).
    AgentJson,
    /// Raw access-log lines, each ending in `\n`; split with [`crate::raw::lines`].
    RawLines,
}

/// Classifies a record by its first bytes (rules in `docs/ARCHITECTURE.md`):
/// `\0TRP` → [`RecordKind::Partial`], `F3 89 9A C2` → [`RecordKind::Kpl`], `{` after optional
/// ASCII whitespace → [`RecordKind::AgentJson`], anything else (empty data included) →
/// [`RecordKind::RawLines`].
///
/// Only the magic is looked at: a record with a partial's or KPL's magic but broken content is
/// still classified as such, so decoding reports it instead of counting garbage lines.
pub fn classify(data: &[u8]) -> RecordKind {
    if data.starts_with(&PARTIAL_MAGIC) {
        return RecordKind::Partial;
    }
    if data.starts_with(&kpl::MAGIC) {
        return RecordKind::Kpl;
    }
    match data.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => RecordKind::AgentJson,
        _ => RecordKind::RawLines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(classify(b"\0TRP\x01rest"), RecordKind::Partial);
        assert_eq!(classify(b"\0TRP"), RecordKind::Partial);
        assert_eq!(classify(&[0xF3, 0x89, 0x9A, 0xC2, 0]), RecordKind::Kpl);
        assert_eq!(classify(b"{\"host\":\"x\"}\n"), RecordKind::AgentJson);
        assert_eq!(classify(b" \r\n\t{}"), RecordKind::AgentJson);
        assert_eq!(
            classify(b"10.0.0.1 - - [..] \"GET / HTTP/1.1\" 200 5\n"),
            RecordKind::RawLines
        );
        assert_eq!(classify(b""), RecordKind::RawLines);
        assert_eq!(classify(b"   "), RecordKind::RawLines);
        assert_eq!(classify(b"\0TR"), RecordKind::RawLines);
    }
}
