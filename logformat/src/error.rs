//! Why a line did not match its format: [`ParseError`] (the column) and
//! [`Expected`] (what the format needed there). Its own module because both
//! the parser's loop and the time decoder report it.

/// What the parser expected where a line did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// This byte of the format's literal text.
    Byte(u8),
    /// The end of the line.
    EndOfLine,
    /// Something described in words, e.g. `digits for %>s`, `'[' to open %t`.
    Text(&'static str),
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Byte(b) if b.is_ascii_graphic() || *b == b' ' => {
                write!(f, "'{}'", char::from(*b))
            }
            Expected::Byte(b) => write!(f, "byte 0x{b:02x}"),
            Expected::EndOfLine => f.write_str("end of line"),
            Expected::Text(t) => f.write_str(t),
        }
    }
}

/// Why a line did not match the format: the 0-based byte column and what was
/// expected there. Displays as `column 41: expected digits for %>s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}")]
pub struct ParseError {
    /// 0-based byte offset in the line.
    pub column: usize,
    /// What the format needed at that column.
    pub expected: Expected,
}
