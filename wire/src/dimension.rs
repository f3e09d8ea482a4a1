//! CloudWatch dimension values: the rule CloudWatch enforces and one way to
//! make any text obey it.
//!
//! A dimension value must be 1 to 1,024 characters of printable ASCII (no
//! control characters) with at least one that is not whitespace. A datum
//! that breaks this fails its *whole* PutMetricData call with
//! `InvalidParameterValue`, taking up to 1,000 other datums with it, and
//! moto_server does not check it, so every door through which a name can
//! reach a dimension (the agent's `service`, the metadata file's
//! application, instance tags) checks it here, in one place.
//!
//! [`check_dimension_value`] says what is wrong (for `tailrace check` and the
//! metadata parser, which name the file and line); [`sanitize_dimension_value`]
//! is the one repair used everywhere a name must be kept rather than refused:
//! surrounding whitespace trimmed, every character CloudWatch refuses replaced
//! by `_`, cut to 1,024 characters.

use std::borrow::Cow;
use std::fmt;

/// The most characters CloudWatch accepts in a dimension value.
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;

/// Why CloudWatch would refuse a text as a dimension value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimensionProblem {
    /// The value is empty or only whitespace.
    Blank,
    /// The value is longer than [`MAX_DIMENSION_VALUE_CHARS`].
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// A character that is not ASCII.
    NonAscii {
        /// The character.
        ch: char,
        /// Its position, counted in characters from 1.
        position: usize,
    },
    /// An ASCII control character (tab, newline, DEL, …).
    Control {
        /// The character.
        ch: char,
        /// Its position, counted in characters from 1.
        position: usize,
    },
}

impl fmt::Display for DimensionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimensionProblem::Blank => {
                write!(f, "empty or only whitespace; CloudWatch needs at least one other character")
            }
            DimensionProblem::TooLong { chars } => write!(
                f,
                "{chars} characters long; CloudWatch accepts at most {MAX_DIMENSION_VALUE_CHARS}"
            ),
            DimensionProblem::NonAscii { ch, position } => write!(
                f,
                "character {position} ({ch:?}, U+{:04X}) is not ASCII; CloudWatch accepts only ASCII",
                *ch as u32
            ),
            DimensionProblem::Control { ch, position } => write!(
                f,
                "character {position} (U+{:04X}) is a control character; CloudWatch refuses them",
                *ch as u32
            ),
        }
    }
}

impl std::error::Error for DimensionProblem {}

/// Whether CloudWatch would accept `value` as a dimension value; the first
/// problem found otherwise.
pub fn check_dimension_value(value: &str) -> Result<(), DimensionProblem> {
    if value.trim().is_empty() {
        return Err(DimensionProblem::Blank);
    }
    let mut chars = 0usize;
    for (i, ch) in value.chars().enumerate() {
        chars += 1;
        if !ch.is_ascii() {
            return Err(DimensionProblem::NonAscii {
                ch,
                position: i + 1,
            });
        }
        if ch.is_ascii_control() {
            return Err(DimensionProblem::Control {
                ch,
                position: i + 1,
            });
        }
    }
    if chars > MAX_DIMENSION_VALUE_CHARS {
        return Err(DimensionProblem::TooLong { chars });
    }
    Ok(())
}

/// `value` made acceptable to CloudWatch: surrounding whitespace trimmed,
/// each non-ASCII or control character replaced by `_`, cut to
/// [`MAX_DIMENSION_VALUE_CHARS`]. `None` when nothing but whitespace is left
/// (the caller decides what a nameless thing is called). Borrows when
/// `value` was acceptable already.
pub fn sanitize_dimension_value(value: &str) -> Option<Cow<'_, str>> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    if check_dimension_value(trimmed).is_ok() {
        return Some(Cow::Borrowed(trimmed));
    }
    let cleaned: String = trimmed
        .chars()
        .take(MAX_DIMENSION_VALUE_CHARS)
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(Cow::Owned(cleaned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_cloudwatch_accepts() {
        for ok in [
            "checkout",
            "a",
            "billing api (eu)",
            "x/y:z=1,2",
            &"a".repeat(1024),
        ] {
            assert_eq!(check_dimension_value(ok), Ok(()), "{ok}");
            assert_eq!(sanitize_dimension_value(ok).as_deref(), Some(ok));
        }
    }

    #[test]
    fn names_each_problem() {
        assert_eq!(check_dimension_value(""), Err(DimensionProblem::Blank));
        assert_eq!(check_dimension_value(" \t"), Err(DimensionProblem::Blank));
        assert_eq!(
            check_dimension_value(&"a".repeat(1025)),
            Err(DimensionProblem::TooLong { chars: 1025 })
        );
        assert_eq!(
            check_dimension_value("café"),
            Err(DimensionProblem::NonAscii {
                ch: 'é',
                position: 4
            })
        );
        assert_eq!(
            check_dimension_value("a\tb"),
            Err(DimensionProblem::Control {
                ch: '\t',
                position: 2
            })
        );
        let text = check_dimension_value("caf\u{e9}").unwrap_err().to_string();
        assert!(
            text.contains("U+00E9") && text.contains("not ASCII"),
            "{text}"
        );
    }

    #[test]
    fn sanitized_values_always_pass() {
        let cases = [
            "  café au lait ".to_string(),
            "line\nbreak\u{7f}".to_string(),
            "é".repeat(2000),
            "ok".into(),
            "\u{0}x".into(),
        ];
        for case in &cases {
            let clean = sanitize_dimension_value(case).expect("not blank");
            assert_eq!(
                check_dimension_value(&clean),
                Ok(()),
                "{case:?} -> {clean:?}"
            );
        }
        assert_eq!(sanitize_dimension_value(" café ").as_deref(), Some("caf_"));
        assert_eq!(sanitize_dimension_value("   "), None);
        assert_eq!(
            sanitize_dimension_value(&"é".repeat(2000)).map(|c| c.len()),
            Some(1024)
        );
    }
}
