//! Compiling a LogFormat string (or preset name) into a program: a list of steps
//! (literal text, fields with the rule that finds their end, end of line), plus the
//! per-field facts the parser and JSON writer need (JSON names, which field feeds
//! status / bytes / duration / client).

use crate::directive::{self, DurUnit, Kind, ValueType};
use crate::time::TimeSpec;
use crate::zone::Zone;

/// The `common` preset.
pub const COMMON: &str = r#"%h %l %u %t "%r" %>s %b"#;
/// The `combined` preset.
pub const COMBINED: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i""#;
/// The `vhost_combined` preset.
pub const VHOST_COMBINED: &str = r#"%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i""#;

/// Most fields (directives other than `%%`) a LogFormat may have. Real formats have a few
/// dozen. The cap bounds what a hostile or broken format costs: the parser recurses once per
/// field whose end may move, so the stack it needs grows with the field count, and compiling
/// grows faster than linearly with it.
pub const MAX_FIELDS: usize = 128;

/// Why a LogFormat string did not compile.
///
/// Displays as `column 12: unknown directive %Z (expected one of ...)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct CompileError {
    /// 0-based character (not byte) column in the format string where the problem is.
    pub column: usize,
    /// The directive text at fault (e.g. `%Z`), empty when the problem is not one
    /// directive.
    pub directive: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// How the parser finds where a field ends.
#[derive(Clone, Debug)]
pub(crate) enum Shape {
    /// Ends where `term` (the following literal text) starts. `quoted`: the field sits
    /// between `"` and `"`, so `\"` inside it does not end it.
    Delimited { term: Box<[u8]>, quoted: bool },
    /// The last thing on the line: runs to the end.
    ToEnd,
    /// Directly followed by another field: any length that lets the rest match.
    Open,
    /// A number: a run of digits or a single `-`. `follow`: the byte that must come
    /// next (`None`: end of line or another field).
    Number { follow: Option<u8>, at_end: bool },
    /// A time part (index into `LogFormat::times`); it delimits itself.
    Time(usize),
}

/// Which `Parsed` number a field decodes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Feed {
    None,
    Status,
    Bytes,
    /// Duration in units of `mult` microseconds.
    Duration(u64),
}

/// One field of the program.
#[derive(Clone, Debug)]
pub(crate) struct FieldStep {
    pub slot: usize,
    pub shape: Shape,
    pub feed: Feed,
    /// For "expected digits for %>s".
    pub digits_expected: &'static str,
}

/// One step of the program.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    Lit(Box<[u8]>),
    Field(FieldStep),
    End,
}

/// How the JSON writer renders one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonKind {
    /// A string; `unescape`: the field is quoted, so `\"` and `\\` are unescaped.
    Str { unescape: bool },
    /// An integer; `-` is null.
    Int,
    /// A byte count; `-` is 0.
    ByteCount,
    /// The combined time of the line.
    Time,
    /// A time part already covered by `Time`: not written.
    Skip,
    /// `%r`, plus method / path / protocol unless the format has them explicitly.
    Request {
        unescape: bool,
        method: bool,
        path: bool,
        protocol: bool,
    },
    /// `%X`: `-` is a value here (connection closed), not null.
    ConnStatus,
}

/// Facts about one field (one directive) of the format.
#[derive(Clone, Debug)]
pub(crate) struct FieldInfo {
    pub name: String,
    pub json: JsonKind,
}

/// A compiled LogFormat. Cheap to share (`Send + Sync`); compile once, parse many lines.
#[derive(Clone, Debug)]
pub struct LogFormat {
    pub(crate) spec: String,
    pub(crate) steps: Vec<Step>,
    pub(crate) fields: Vec<FieldInfo>,
    pub(crate) times: Vec<TimeSpec>,
    pub(crate) client_slot: Option<usize>,
    pub(crate) has_time: bool,
    pub(crate) has_latency: bool,
    pub(crate) zone: Zone,
}

enum Tok {
    Lit(Vec<u8>),
    Field(Kind),
}

impl LogFormat {
    /// Compile `spec`: a preset name (`common`, `combined`, `vhost_combined`) or an
    /// Apache LogFormat string such as
    /// `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D`.
    ///
    /// Literal text may use Apache's escapes `\n`, `\t`, `\r`, `\\`, and `\"` (as
    /// copied from an `httpd.conf` line) for `"`.
    pub fn compile(spec: &str) -> Result<LogFormat, CompileError> {
        let spec = match spec.trim() {
            "common" => COMMON,
            "combined" => COMBINED,
            "vhost_combined" => VHOST_COMBINED,
            _ => spec,
        };
        if spec.is_empty() {
            return Err(CompileError {
                column: 0,
                directive: String::new(),
                message: "empty LogFormat (expected a preset name or a format string)".into(),
            });
        }
        let chars: Vec<char> = spec.chars().collect();
        let mut toks: Vec<Tok> = Vec::new();
        let mut times = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        let mut fields = 0;
        while i < chars.len() {
            match chars[i] {
                '%' => {
                    let (d, used) =
                        directive::read(&chars[i..], &mut times).map_err(|e| CompileError {
                            column: i + e.offset,
                            directive: e.directive,
                            message: e.message,
                        })?;
                    match d {
                        directive::Parsed::Percent => lit.push(b'%'),
                        directive::Parsed::Field(k) => {
                            if fields == MAX_FIELDS {
                                return Err(CompileError {
                                    column: i,
                                    directive: chars[i..i + used].iter().collect(),
                                    message: format!(
                                        "too many directives: at most {MAX_FIELDS} fields per LogFormat"
                                    ),
                                });
                            }
                            fields += 1;
                            if !lit.is_empty() {
                                toks.push(Tok::Lit(std::mem::take(&mut lit)));
                            }
                            toks.push(Tok::Field(k));
                        }
                    }
                    i += used;
                }
                '\\' if i + 1 < chars.len() => {
                    let c = match chars[i + 1] {
                        'n' => Some(b'\n'),
                        't' => Some(b'\t'),
                        'r' => Some(b'\r'),
                        '\\' => Some(b'\\'),
                        '"' => Some(b'"'),
                        _ => None,
                    };
                    match c {
                        Some(c) => {
                            lit.push(c);
                            i += 2;
                        }
                        None => {
                            lit.push(b'\\');
                            i += 1;
                        }
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    lit.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit));
        }
        Ok(Self::build(spec.to_string(), toks, times))
    }

    fn build(spec: String, toks: Vec<Tok>, times: Vec<TimeSpec>) -> LogFormat {
        let kinds: Vec<&Kind> = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Field(k) => Some(k),
                Tok::Lit(_) => None,
            })
            .collect();
        let has = |f: &dyn Fn(&Kind) -> bool| kinds.iter().position(|k| f(k));
        let client_ip = has(&|k| *k == Kind::ClientIp);
        let final_status = has(&|k| *k == Kind::StatusFinal);
        let client_slot = client_ip.or_else(|| has(&|k| *k == Kind::RemoteHost));
        let status_slot = final_status.or_else(|| has(&|k| *k == Kind::StatusOriginal));
        let bytes_slot = has(&|k| matches!(k, Kind::Bytes | Kind::BytesB))
            .or_else(|| has(&|k| *k == Kind::BytesOut));
        let dur_slot = has(&|k| matches!(k, Kind::DurationUs | Kind::DurationT(DurUnit::Us)))
            .or_else(|| has(&|k| *k == Kind::DurationT(DurUnit::Ms)))
            .or_else(|| has(&|k| *k == Kind::DurationT(DurUnit::S)));

        // JSON names, de-duplicated in format order.
        let mut used: Vec<String> = Vec::new();
        let mut names = Vec::with_capacity(kinds.len());
        for k in &kinds {
            let base = k.json_name(client_ip.is_some(), final_status.is_some());
            let mut name = base.clone();
            let mut n = 2;
            while used.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
            used.push(name.clone());
            names.push(name);
        }

        // Steps, and whether each field is quoted.
        let mut steps = Vec::with_capacity(toks.len() + 1);
        let mut quoted = vec![false; kinds.len()];
        let mut slot = 0;
        for (j, t) in toks.iter().enumerate() {
            match t {
                Tok::Lit(l) => steps.push(Step::Lit(l.clone().into_boxed_slice())),
                Tok::Field(k) => {
                    let next = toks.get(j + 1);
                    let prev_quote =
                        j > 0 && matches!(&toks[j - 1], Tok::Lit(l) if l.last() == Some(&b'"'));
                    let shape = match (k.value_type(), next) {
                        (ValueType::Time, _) => match k {
                            Kind::Time(ti) => Shape::Time(*ti),
                            _ => Shape::ToEnd,
                        },
                        (ValueType::Int | ValueType::ByteCount, Some(Tok::Lit(l))) => {
                            Shape::Number {
                                follow: l.first().copied(),
                                at_end: false,
                            }
                        }
                        (ValueType::Int | ValueType::ByteCount, None) => Shape::Number {
                            follow: None,
                            at_end: true,
                        },
                        (ValueType::Int | ValueType::ByteCount, Some(Tok::Field(_))) => {
                            Shape::Number {
                                follow: None,
                                at_end: false,
                            }
                        }
                        (ValueType::Str, Some(Tok::Lit(l))) => {
                            let q = prev_quote && l.first() == Some(&b'"');
                            quoted[slot] = q;
                            Shape::Delimited {
                                term: l.clone().into_boxed_slice(),
                                quoted: q,
                            }
                        }
                        (ValueType::Str, None) => Shape::ToEnd,
                        (ValueType::Str, Some(Tok::Field(_))) => Shape::Open,
                    };
                    let feed = if Some(slot) == status_slot {
                        Feed::Status
                    } else if Some(slot) == bytes_slot {
                        Feed::Bytes
                    } else if Some(slot) == dur_slot {
                        Feed::Duration(match k {
                            Kind::DurationT(DurUnit::S) => 1_000_000,
                            Kind::DurationT(DurUnit::Ms) => 1000,
                            _ => 1,
                        })
                    } else {
                        Feed::None
                    };
                    steps.push(Step::Field(FieldStep {
                        slot,
                        shape,
                        feed,
                        digits_expected: k.digits_expected(),
                    }));
                    slot += 1;
                }
            }
        }
        steps.push(Step::End);

        let mut first_time = true;
        let explicit = |k: Kind| kinds.iter().any(|x| **x == k);
        let fields = kinds
            .iter()
            .zip(names)
            .enumerate()
            .map(|(s, (k, name))| {
                let json = match k {
                    Kind::Time(_) if first_time => {
                        first_time = false;
                        JsonKind::Time
                    }
                    Kind::Time(_) => JsonKind::Skip,
                    Kind::Request => JsonKind::Request {
                        unescape: quoted[s],
                        method: !explicit(Kind::Method) && !used_elsewhere(&used, "method"),
                        path: !explicit(Kind::UrlPath) && !used_elsewhere(&used, "path"),
                        protocol: !explicit(Kind::Protocol) && !used_elsewhere(&used, "protocol"),
                    },
                    Kind::ConnStatus => JsonKind::ConnStatus,
                    _ => match k.value_type() {
                        ValueType::Int => JsonKind::Int,
                        ValueType::ByteCount => JsonKind::ByteCount,
                        _ => JsonKind::Str {
                            unescape: quoted[s],
                        },
                    },
                };
                FieldInfo { name, json }
            })
            .collect();

        LogFormat {
            spec,
            steps,
            fields,
            client_slot,
            has_time: kinds.iter().any(|k| matches!(k, Kind::Time(_))),
            has_latency: kinds
                .iter()
                .any(|k| matches!(k, Kind::DurationUs | Kind::DurationT(_))),
            times,
            zone: Zone::utc(),
        }
    }

    /// The same format reading times without an offset (`%{%d/%b/%Y:%T}t`, a `%Z`
    /// other than UTC/GMT) as local time in `zone`. The default is UTC; the agent
    /// passes the host's zone or the flow's `timezone`.
    pub fn with_zone(mut self, zone: Zone) -> LogFormat {
        self.zone = zone;
        self
    }

    /// The zone times without an offset are read in.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// Whether some time part of the format carries no UTC offset (no `%z`, and not
    /// the default `%t`), so its lines are read in [`LogFormat::zone`].
    pub fn has_local_time(&self) -> bool {
        self.times.iter().any(|t| t.is_local())
    }

    /// The LogFormat string (a preset name is expanded).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Whether the format logs a time (`%t` or `%{..}t`).
    pub fn has_time(&self) -> bool {
        self.has_time
    }

    /// Whether the format logs the time taken (`%D`, `%T`, `%{us}T`, `%{ms}T`, `%{s}T`).
    pub fn has_latency(&self) -> bool {
        self.has_latency
    }

    /// Index of the field whose JSON name is `json_name` (e.g. `"x_forwarded_for"`,
    /// `"client"`, `"vhost"`), for [`Parsed::field`](crate::Parsed::field).
    pub fn field_index(&self, json_name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == json_name)
    }

    /// The JSON names of the fields, in format order (index = field index). A second
    /// time part (`%{..}t` after the first) is named `time_2`, ... and not written as
    /// its own JSON key: all parts make up `time`.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// Number of fields (directives other than `%%`).
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }
}

/// `name` is already used by some field (so a derived `%r` part must not repeat it).
fn used_elsewhere(used: &[String], name: &str) -> bool {
    used.iter().any(|u| u == name)
}
