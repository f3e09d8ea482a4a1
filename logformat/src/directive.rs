//! One Apache log directive (`%h`, `%>s`, `%{Referer}i`, ...): reading it out of a
//! LogFormat string, what kind of value it writes into a line, and its JSON name.

use crate::time::TimeSpec;

/// Which port `%p` / `%{..}p` logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortKind {
    Canonical,
    Local,
    Remote,
}

/// Unit of `%T` / `%{us}T` / `%{ms}T` / `%{s}T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DurUnit {
    Us,
    Ms,
    S,
}

/// What a directive logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    RemoteHost,
    PeerHost,
    ClientIp,
    PeerIp,
    LocalIp,
    Ident,
    User,
    /// Index into `LogFormat::times`.
    Time(usize),
    Request,
    Method,
    UrlPath,
    Query,
    Protocol,
    StatusFinal,
    StatusOriginal,
    /// `%b`
    Bytes,
    /// `%B`
    BytesB,
    BytesOut,
    BytesIn,
    BytesTotal,
    /// `%D`
    DurationUs,
    DurationT(DurUnit),
    VHost,
    ServerName,
    Port(PortKind),
    ReqHeader(String),
    RespHeader(String),
    Env(String),
    Cookie(String),
    Note(String),
    TrailerIn(String),
    TrailerOut(String),
    ConnStatus,
    KeepAlive,
    LogId,
    Pid,
    Tid,
    HexTid,
    Handler,
    Filename,
}

/// How a directive's value looks in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    /// Free text; `-` is null.
    Str,
    /// Decimal digits; `-` is null.
    Int,
    /// Decimal digits; `-` is 0 (CLF byte counts).
    ByteCount,
    /// A time part, parsed by `time.rs`.
    Time,
}

impl Kind {
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Kind::Time(_) => ValueType::Time,
            Kind::Bytes | Kind::BytesB | Kind::BytesOut | Kind::BytesIn | Kind::BytesTotal => {
                ValueType::ByteCount
            }
            Kind::StatusFinal
            | Kind::StatusOriginal
            | Kind::DurationUs
            | Kind::DurationT(_)
            | Kind::Port(_)
            | Kind::KeepAlive
            | Kind::Pid
            | Kind::Tid => ValueType::Int,
            _ => ValueType::Str,
        }
    }

    /// The message for a number field that holds something else.
    pub(crate) fn digits_expected(&self) -> &'static str {
        match self {
            Kind::StatusFinal => "digits for %>s",
            Kind::StatusOriginal => "digits for %s",
            Kind::Bytes => "digits or '-' for %b",
            Kind::BytesB => "digits for %B",
            Kind::BytesOut => "digits for %O",
            Kind::BytesIn => "digits for %I",
            Kind::BytesTotal => "digits for %S",
            Kind::DurationUs => "digits for %D",
            Kind::DurationT(DurUnit::S) => "digits for %T",
            Kind::DurationT(DurUnit::Ms) => "digits for %{ms}T",
            Kind::DurationT(DurUnit::Us) => "digits for %{us}T",
            Kind::Port(PortKind::Canonical) => "digits for %p",
            Kind::Port(PortKind::Local) => "digits for %{local}p",
            Kind::Port(PortKind::Remote) => "digits for %{remote}p",
            Kind::KeepAlive => "digits for %k",
            Kind::Pid => "digits for %P",
            Kind::Tid => "digits for %{tid}P",
            _ => "digits",
        }
    }

    /// JSON name before de-duplication. `has_client_ip`: the format also has `%a`;
    /// `has_final_status`: the format also has `%>s`.
    pub(crate) fn json_name(&self, has_client_ip: bool, has_final_status: bool) -> String {
        let s = match self {
            Kind::RemoteHost if has_client_ip => "remote_host",
            Kind::RemoteHost | Kind::ClientIp => "client",
            Kind::PeerHost => "peer_host",
            Kind::PeerIp => "peer",
            Kind::LocalIp => "local_ip",
            Kind::Ident => "ident",
            Kind::User => "user",
            Kind::Time(_) => "time",
            Kind::Request => "request",
            Kind::Method => "method",
            Kind::UrlPath => "path",
            Kind::Query => "query",
            Kind::Protocol => "protocol",
            Kind::StatusFinal => "status",
            Kind::StatusOriginal if has_final_status => "original_status",
            Kind::StatusOriginal => "status",
            Kind::Bytes | Kind::BytesB => "bytes",
            Kind::BytesOut => "bytes_out",
            Kind::BytesIn => "bytes_in",
            Kind::BytesTotal => "bytes_total",
            Kind::DurationUs | Kind::DurationT(DurUnit::Us) => "duration_us",
            Kind::DurationT(DurUnit::Ms) => "duration_ms",
            Kind::DurationT(DurUnit::S) => "duration_s",
            Kind::VHost => "vhost",
            Kind::ServerName => "server_name",
            Kind::Port(PortKind::Canonical) => "port",
            Kind::Port(PortKind::Local) => "local_port",
            Kind::Port(PortKind::Remote) => "remote_port",
            Kind::ReqHeader(n) => return header_name("", n),
            Kind::RespHeader(n) => return header_name("resp_", n),
            Kind::Env(n) => return header_name("env_", n),
            Kind::Cookie(n) => return header_name("cookie_", n),
            Kind::Note(n) => return header_name("note_", n),
            Kind::TrailerIn(n) => return header_name("trailer_in_", n),
            Kind::TrailerOut(n) => return header_name("trailer_out_", n),
            Kind::ConnStatus => "connection_status",
            Kind::KeepAlive => "keepalive",
            Kind::LogId => "log_id",
            Kind::Pid => "pid",
            Kind::Tid | Kind::HexTid => "tid",
            Kind::Handler => "handler",
            Kind::Filename => "filename",
        };
        s.to_string()
    }
}

/// `prefix` + the name lowercased with `-` turned into `_` (`User-Agent` → `user_agent`).
fn header_name(prefix: &str, name: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + name.len());
    s.push_str(prefix);
    for c in name.chars() {
        if c == '-' {
            s.push('_');
        } else {
            s.extend(c.to_lowercase());
        }
    }
    s
}

/// The directive letters we know, for the "unknown directive" message.
pub(crate) const KNOWN: &str = "%a %A %b %B %C %D %e %f %h %H %i %I %k %l %L %m %n %o %O %p %P %q %r %R %s %S %t %T %u %U %v %V %X %^ti %^to %%";

/// A directive read out of a format string.
pub(crate) enum Parsed {
    /// `%%`: a literal percent sign.
    Percent,
    /// A field directive.
    Field(Kind),
}

/// The reason a directive did not compile: char offset from the directive's `%`,
/// and the message.
pub(crate) struct DirError {
    pub offset: usize,
    pub directive: String,
    pub message: String,
}

/// Read one directive from `chars`, whose first char is the `%`. Returns what it is and
/// how many chars it used. Time formats are compiled and pushed onto `times`.
pub(crate) fn read(chars: &[char], times: &mut Vec<TimeSpec>) -> Result<(Parsed, usize), DirError> {
    let mut i = 1;
    let mut arg: Option<(String, usize)> = None;
    let mut gt = false;
    let mut lt = false;
    let mut is_trailer = false;
    let letter = loop {
        let Some(&c) = chars.get(i) else {
            return Err(DirError {
                offset: 0,
                directive: chars.iter().collect(),
                message: "expected a directive letter after '%'".to_string(),
            });
        };
        match c {
            '!' | ',' | '0'..='9' => i += 1,
            '<' => {
                lt = true;
                i += 1;
            }
            '>' => {
                gt = true;
                i += 1;
            }
            '{' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|&c| c == '}') else {
                    return Err(DirError {
                        offset: i,
                        directive: chars.iter().collect(),
                        message: "expected '}' to close '%{'".to_string(),
                    });
                };
                arg = Some((chars[start..start + len].iter().collect(), start));
                i = start + len + 1;
            }
            '^' => {
                let two: String = chars.get(i + 1..i + 3).unwrap_or(&[]).iter().collect();
                if two != "ti" && two != "to" {
                    return Err(DirError {
                        offset: 0,
                        directive: chars[..(i + 3).min(chars.len())].iter().collect(),
                        message: "unknown directive (expected %{Name}^ti or %{Name}^to)"
                            .to_string(),
                    });
                }
                i += 2;
                is_trailer = true;
                break if two == "ti" { 'I' } else { 'O' };
            }
            c => break c,
        }
    };
    let directive: String = chars[..=i].iter().collect();
    let err = |message: String| DirError {
        offset: 0,
        directive: directive.clone(),
        message,
    };
    let need_arg = |what: &str| -> Result<String, DirError> {
        match &arg {
            Some((a, _)) if !a.is_empty() => Ok(a.clone()),
            _ => Err(DirError {
                offset: 0,
                directive: directive.clone(),
                message: format!("{directive} needs a name: expected %{{Name}}{what}"),
            }),
        }
    };
    let argv = arg.as_ref().map(|(a, _)| a.as_str());
    let kind = match letter {
        '%' => return Ok((Parsed::Percent, i + 1)),
        'I' if is_trailer => Kind::TrailerIn(need_arg("^ti")?),
        'O' if is_trailer => Kind::TrailerOut(need_arg("^to")?),
        'h' if argv == Some("c") => Kind::PeerHost,
        'h' => Kind::RemoteHost,
        'a' if argv == Some("c") => Kind::PeerIp,
        'a' => Kind::ClientIp,
        'A' => Kind::LocalIp,
        'l' => Kind::Ident,
        'u' => Kind::User,
        't' => {
            let (fmt, at) = match &arg {
                Some((a, at)) => (Some(a.as_str()), *at),
                None => (None, 0),
            };
            let spec = TimeSpec::compile(fmt).map_err(|(off, message)| DirError {
                offset: at + off,
                directive: directive.clone(),
                message,
            })?;
            times.push(spec);
            Kind::Time(times.len() - 1)
        }
        'r' => Kind::Request,
        'm' => Kind::Method,
        'U' => Kind::UrlPath,
        'q' => Kind::Query,
        'H' => Kind::Protocol,
        's' if gt => Kind::StatusFinal,
        's' => {
            let _ = lt;
            Kind::StatusOriginal
        }
        'b' => Kind::Bytes,
        'B' => Kind::BytesB,
        'O' => Kind::BytesOut,
        'I' => Kind::BytesIn,
        'S' => Kind::BytesTotal,
        'D' => Kind::DurationUs,
        'T' => match argv {
            None | Some("s") => Kind::DurationT(DurUnit::S),
            Some("ms") => Kind::DurationT(DurUnit::Ms),
            Some("us") => Kind::DurationT(DurUnit::Us),
            Some(other) => {
                return Err(err(format!(
                    "unknown unit {other:?} in {directive} (expected us, ms or s)"
                )))
            }
        },
        'v' => Kind::VHost,
        'V' => Kind::ServerName,
        'p' => match argv {
            None | Some("canonical") => Kind::Port(PortKind::Canonical),
            Some("local") => Kind::Port(PortKind::Local),
            Some("remote") => Kind::Port(PortKind::Remote),
            Some(other) => {
                return Err(err(format!(
                    "unknown port {other:?} in {directive} (expected canonical, local or remote)"
                )))
            }
        },
        'i' => Kind::ReqHeader(need_arg("i")?),
        'o' => Kind::RespHeader(need_arg("o")?),
        'e' => Kind::Env(need_arg("e")?),
        'C' => Kind::Cookie(need_arg("C")?),
        'n' => Kind::Note(need_arg("n")?),
        'X' => Kind::ConnStatus,
        'k' => Kind::KeepAlive,
        'L' => Kind::LogId,
        'P' => match argv {
            None | Some("pid") => Kind::Pid,
            Some("tid") => Kind::Tid,
            Some("hextid") => Kind::HexTid,
            Some(other) => {
                return Err(err(format!(
                    "unknown id {other:?} in {directive} (expected pid, tid or hextid)"
                )))
            }
        },
        'R' => Kind::Handler,
        'f' => Kind::Filename,
        _ => {
            return Err(err(format!(
                "unknown directive {directive} (expected one of {KNOWN})"
            )))
        }
    };
    Ok((Parsed::Field(kind), i + 1))
}
