//! The text units a config file writes values in: durations (`250ms`, `5m`,
//! `1h 30m`), byte sizes (`4 MiB`, `1048576`) and toggles (`true`, `false`,
//! `auto`): how each is parsed, serialized, and described in the JSON Schema.

use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Schema of a duration written as text (`250ms`, `30s`, `5m`, `1h 30m`).
pub struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: numbers with units, e.g. `250ms`, `30s`, `5m`, `1h`, `1h 30m` (units: ns, us, ms, s, m, h, d and their long forms).",
            "type": "string",
            "pattern": DURATION_PATTERN,
            "x-tailrace": "duration",
        })
    }
}

/// Schema of a byte size: a number of bytes or text with a unit.
pub struct SizeText;

impl JsonSchema for SizeText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A byte size: a number of bytes, or a number with a unit: `512 KiB`, `4 MiB`, `1 GiB` (powers of 1024; also k, m, g) or `10 MB` (powers of 1000).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": SIZE_PATTERN},
            ],
            "x-tailrace": "size",
        })
    }
}

/// What [`parse_duration`] accepts, as a JSON Schema pattern (a description:
/// the parser is the authority).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*[a-zA-Z]+\s*)+$";
/// What [`parse_size`] accepts, as a JSON Schema pattern.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+(\.[0-9]*)?\s*([bB]|[kKmMgG]([iI]?[bB])?)?\s*$";

/// Parse `5m`, `30s`, `1h 30m`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| "expected a duration like `30s`, `5m` or `1h`".to_string())
}

/// Parse a byte size: `1048576`, `512 KiB`, `4 MiB`, `1 GiB`, `10 MB`, `1k`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "expected a size like `512 KiB` or `4 MiB` (units: B, KiB, MiB, GiB, kB, MB, GB), not `{unit}`"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a size like `512 KiB` or `4 MiB`".to_string())?;
    if !(value.is_finite() && value >= 0.0) {
        return Err("expected a non-negative size".to_string());
    }
    Ok((value * mult as f64) as u64)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

/// Serialize a duration as text (`5m`).
pub(super) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// Serialize a duration that kept its position, as text.
pub(super) fn ser_spanned_duration<S: serde::Serializer>(
    d: &Spanned<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    ser_duration(&d.value, s)
}

/// Deserialize a duration from text (`30s`, `5m`).
pub(super) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(de::Error::custom)
}

/// Deserialize a duration from text, keeping where it was written.
pub(super) fn de_spanned_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Spanned<Duration>, D::Error> {
    let s: Spanned<String> = Spanned::deserialize(d)?;
    let value = parse_duration(&s.value).map_err(de::Error::custom)?;
    Ok(Spanned::new(value, s.referenced, s.defined))
}

/// Deserialize a byte size from a number or text (`4 MiB`).
pub(super) fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => parse_size(&s).map_err(de::Error::custom),
    }
}

/// `true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Toggle {
    /// Decided at start (see where it is used).
    Auto,
    /// On.
    On,
    /// Off.
    Off,
}

impl JsonSchema for Toggle {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Toggle".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`true`, `false` or `auto`.",
            "anyOf": [{ "type": "boolean" }, { "const": "auto" }],
            "x-tailrace": "toggle",
        })
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum BoolOrStr {
            Bool(bool),
            Str(String),
        }
        match BoolOrStr::deserialize(d)? {
            BoolOrStr::Bool(true) => Ok(Toggle::On),
            BoolOrStr::Bool(false) => Ok(Toggle::Off),
            BoolOrStr::Str(s) if s == "auto" => Ok(Toggle::Auto),
            BoolOrStr::Str(s) => Err(de::Error::custom(format!(
                "expected `true`, `false` or `auto`, got `{s}`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("1 MB"), Ok(1_000_000));
        assert!(parse_size("4 parsecs").is_err());
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
