//! Decoding one Kinesis record into partial aggregates.
//!
//! - tailrace partials are decoded as they are (every wire version the
//!   `tailrace-wire` crate knows);
//! - KPL aggregated records are de-aggregated and each inner record decoded
//!   (nested KPL is refused);
//! - raw access-log lines (parsed with `TAILRACE_RAW_FORMAT`) and Amazon
//!   Kinesis Agent `LOGTOJSON` objects (`COMMONAPACHELOG`/`COMBINEDAPACHELOG`
//!   field names) are aggregated into *synthetic* partials, one per window of
//!   their own timestamps, with host `raw` and service `TAILRACE_RAW_SERVICE`.
//!
//! A record that cannot be decoded at all is a [`DecodeError`] (the caller
//! skips, counts and logs it). Single lines of a raw or JSON record that do
//! not parse are *rejected lines*: counted, a few kept as samples, the rest of
//! the record still counts.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use tailrace_logformat::{LogFormat, Parsed};
use tailrace_wire::{classify, kpl, raw, ClientKey, ClientStats, Partial, RecordKind};

/// Host id of synthetic partials built from raw lines and JSON.
pub const SYNTHETIC_HOST: &str = "raw";

/// Rejected-line samples kept per record.
pub const MAX_SAMPLES: usize = 3;

/// Bytes kept of a rejected-line sample.
pub const MAX_SAMPLE_BYTES: usize = 300;

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Bad tailrace partial.
    #[error("tailrace partial: {0}")]
    Partial(#[from] tailrace_wire::DecodeError),
    /// Bad KPL aggregated record.
    #[error("KPL aggregated record: {0}")]
    Kpl(#[from] kpl::KplError),
    /// A KPL record inside a KPL record.
    #[error("KPL aggregated record nested inside another (inner record {0})")]
    NestedKpl(usize),
    /// Error in an inner record of a KPL aggregate.
    #[error("KPL inner record {index}: {source}")]
    Inner {
        /// 0-based index of the inner record.
        index: usize,
        /// What was wrong with it.
        source: Box<DecodeError>,
    },
    /// Not JSON although it starts like it.
    #[error("Kinesis Agent JSON: {0}")]
    Json(String),
}

/// The kind of producer a partial came from, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A tailrace partial.
    Partial,
    /// Raw access-log lines.
    RawLines,
    /// Kinesis Agent JSON.
    AgentJson,
}

/// What one record decoded into.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Partials, each with the kind of producer it came from.
    pub partials: Vec<(Source, Partial)>,
    /// Inner records of a KPL aggregate (0 when not KPL).
    pub kpl_inner: usize,
    /// Lines of raw/JSON records that were counted.
    pub lines: u64,
    /// Lines of raw/JSON records that did not parse.
    pub rejected_lines: u64,
    /// A few rejected lines with their reason.
    pub reject_samples: Vec<String>,
}

/// Decodes records; holds the compiled raw-line format and windowing rules.
#[derive(Debug, Clone)]
pub struct Decoder {
    raw_format: LogFormat,
    time_format: LogFormat,
    raw_service: String,
    window_secs: u32,
}

/// The raw-line LogFormat did not compile.
#[derive(Debug, thiserror::Error)]
#[error("TAILRACE_RAW_FORMAT {spec:?}: {source}")]
pub struct FormatError {
    /// The format given.
    pub spec: String,
    /// Why it did not compile.
    pub source: tailrace_logformat::CompileError,
}

impl Decoder {
    /// A decoder for raw lines in `raw_format` (a LogFormat string or preset),
    /// giving raw and JSON records the service `raw_service` and windows of
    /// `window_secs`.
    pub fn new(
        raw_format: &str,
        raw_service: &str,
        window_secs: u32,
    ) -> Result<Decoder, FormatError> {
        let compiled = LogFormat::compile(raw_format).map_err(|source| FormatError {
            spec: raw_format.into(),
            source,
        })?;
        let time_format = LogFormat::compile("%t").map_err(|source| FormatError {
            spec: "%t".into(),
            source,
        })?;
        Ok(Decoder {
            raw_format: compiled,
            time_format,
            raw_service: raw_service.into(),
            window_secs: window_secs.max(1),
        })
    }

    /// Decode one record. `sequence_number` names synthetic partials so that
    /// the same record delivered twice is recognised as a replay.
    pub fn decode(&self, data: &[u8], sequence_number: &str) -> Result<Decoded, DecodeError> {
        let mut out = Decoded::default();
        match classify(data) {
            RecordKind::Kpl => {
                let inner = kpl::deaggregate(data)?;
                out.kpl_inner = inner.len();
                for (index, record) in inner.iter().enumerate() {
                    let label = format!("{sequence_number}/{index}");
                    if classify(&record.data) == RecordKind::Kpl {
                        return Err(DecodeError::NestedKpl(index));
                    }
                    self.decode_plain(&record.data, &label, &mut out)
                        .map_err(|e| DecodeError::Inner {
                            index,
                            source: Box::new(e),
                        })?;
                }
            }
            _ => self.decode_plain(data, sequence_number, &mut out)?,
        }
        Ok(out)
    }

    fn decode_plain(&self, data: &[u8], label: &str, out: &mut Decoded) -> Result<(), DecodeError> {
        match classify(data) {
            RecordKind::Partial => {
                out.partials.push((Source::Partial, Partial::decode(data)?));
            }
            RecordKind::Kpl => return Err(DecodeError::NestedKpl(0)),
            RecordKind::AgentJson => {
                let mut windows = Windows::new(self.window_secs);
                self.decode_json(data, &mut windows, out)?;
                windows.finish(Source::AgentJson, &self.raw_service, label, out);
            }
            RecordKind::RawLines => {
                let mut windows = Windows::new(self.window_secs);
                let mut parsed = Parsed::new();
                for line in raw::lines(data) {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match self.raw_format.parse(line, &mut parsed) {
                        Err(e) => reject(out, line, &e.to_string()),
                        Ok(()) => match parsed.time() {
                            None => reject(out, line, "the line has no time"),
                            Some(t) => {
                                let client = client_key(parsed.client(line));
                                windows.record(
                                    t.unix_secs,
                                    client,
                                    parsed.status(),
                                    parsed.response_bytes(),
                                    parsed.duration_us(),
                                );
                                out.lines += 1;
                            }
                        },
                    }
                }
                windows.finish(Source::RawLines, &self.raw_service, label, out);
            }
        }
        Ok(())
    }

    fn decode_json(
        &self,
        data: &[u8],
        windows: &mut Windows,
        out: &mut Decoded,
    ) -> Result<(), DecodeError> {
        let mut parsed = Parsed::new();
        let mut any = false;
        for item in serde_json::Deserializer::from_slice(data).into_iter::<Value>() {
            let value = item.map_err(|e| DecodeError::Json(e.to_string()))?;
            any = true;
            let line = value.to_string();
            match self.json_line(&value, &mut parsed) {
                Ok((secs, client, status, bytes)) => {
                    windows.record(secs, client, status, bytes, None);
                    out.lines += 1;
                }
                Err(reason) => reject(out, line.as_bytes(), &reason),
            }
        }
        if !any {
            return Err(DecodeError::Json("no JSON object".into()));
        }
        Ok(())
    }

    /// One `LOGTOJSON` object: `host`, `datetime`, `response`, `bytes` (others
    /// ignored). Values are strings (`-` became `null`); numbers are accepted.
    #[allow(clippy::type_complexity)]
    fn json_line(
        &self,
        value: &Value,
        parsed: &mut Parsed,
    ) -> Result<(i64, ClientKey, Option<u16>, u64), String> {
        let obj = value
            .as_object()
            .ok_or_else(|| "not a JSON object".to_string())?;
        let host = match obj.get("host") {
            Some(Value::String(s)) => client_key(Some(s.as_bytes())),
            None | Some(Value::Null) => client_key(None),
            Some(other) => return Err(format!("host is not a string: {other}")),
        };
        let datetime = match obj.get("datetime") {
            Some(Value::String(s)) => s,
            _ => return Err("datetime is missing".into()),
        };
        let bracketed = format!("[{}]", datetime.trim_matches(|c| c == '[' || c == ']'));
        self.time_format
            .parse(bracketed.as_bytes(), parsed)
            .map_err(|e| format!("datetime {datetime:?}: {e}"))?;
        let secs = parsed
            .time()
            .ok_or_else(|| format!("datetime {datetime:?} is not a complete time"))?
            .unix_secs;
        let status = match obj.get("response") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                json_number(v)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| format!("response is not a status code: {v}"))?,
            ),
        };
        let bytes = match obj.get("bytes") {
            None | Some(Value::Null) => 0,
            Some(v) => json_number(v).ok_or_else(|| format!("bytes is not a number: {v}"))?,
        };
        Ok((secs, host, status, bytes))
    }
}

fn json_number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s == "-" => Some(0),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn client_key(text: Option<&[u8]>) -> ClientKey {
    match text {
        Some(t) if !t.is_empty() => ClientKey::from_text(t),
        _ => ClientKey::Name("-".into()),
    }
}

fn reject(out: &mut Decoded, line: &[u8], reason: &str) {
    out.rejected_lines += 1;
    if out.reject_samples.len() < MAX_SAMPLES {
        let mut text =
            String::from_utf8_lossy(&line[..line.len().min(MAX_SAMPLE_BYTES)]).into_owned();
        if line.len() > MAX_SAMPLE_BYTES {
            text.push('…');
        }
        out.reject_samples.push(format!("{reason}: {text}"));
    }
}

/// Per-window, per-client statistics of one raw or JSON record.
struct Windows {
    window_secs: u32,
    windows: BTreeMap<i64, HashMap<ClientKey, ClientStats>>,
}

impl Windows {
    fn new(window_secs: u32) -> Windows {
        Windows {
            window_secs,
            windows: BTreeMap::new(),
        }
    }

    fn record(
        &mut self,
        secs: i64,
        client: ClientKey,
        status: Option<u16>,
        bytes: u64,
        latency: Option<u64>,
    ) {
        let w = i64::from(self.window_secs);
        let start = secs.div_euclid(w) * w;
        self.windows
            .entry(start)
            .or_default()
            .entry(client)
            .or_default()
            .record(status, bytes, latency);
    }

    /// Turn the windows into synthetic partials named `label#<n>` (flow) so a
    /// replayed record is recognised by the merge's dedupe.
    fn finish(self, source: Source, service: &str, label: &str, out: &mut Decoded) {
        for (n, (start, clients)) in self.windows.into_iter().enumerate() {
            let mut groups: Vec<(ClientKey, ClientStats)> = clients.into_iter().collect();
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            out.partials.push((
                source,
                Partial {
                    host_id: SYNTHETIC_HOST.into(),
                    service: service.into(),
                    flow: format!("{label}#{n}"),
                    window_start: start,
                    window_secs: self.window_secs,
                    sequence: 0,
                    late: false,
                    groups,
                    overflow: ClientStats::default(),
                    overflow_clients: 0,
                    rejected_lines: 0,
                    reject_samples: Vec::new(),
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        Decoder::new("combined", "web", 300).expect("preset compiles")
    }

    fn total(d: &Decoded) -> ClientStats {
        let mut t = ClientStats::default();
        for (_, p) in &d.partials {
            t.merge(&p.total());
        }
        t
    }

    #[test]
    fn kinesis_agent_json_common_and_combined() {
        let data = br#"{"host":"10.0.0.1","ident":null,"authuser":null,"datetime":"10/Oct/2000:13:55:36 -0700","request":"GET / HTTP/1.1","response":"200","bytes":"2326"}
{"host":"10.0.0.1","ident":null,"authuser":"frank","datetime":"10/Oct/2000:13:56:10 -0700","request":"GET /x HTTP/1.1","response":"404","bytes":null,"referer":"http://a/","agent":"curl/8"}
{"host":"2001:db8::5","ident":null,"authuser":null,"datetime":"10/Oct/2000:14:01:00 -0700","request":"GET / HTTP/1.1","response":"503","bytes":"7"}
{"host":"10.0.0.2","datetime":"not a date","response":"200","bytes":"1"}
"#;
        let d = decoder().decode(data, "49590").expect("decodes");
        assert_eq!(d.lines, 3);
        assert_eq!(d.rejected_lines, 1);
        assert!(
            d.reject_samples[0].contains("datetime"),
            "{:?}",
            d.reject_samples
        );
        // 13:55:36 and 13:56:10 -0700 share the 20:55 UTC window; 14:01 is the next.
        assert_eq!(d.partials.len(), 2);
        let (src, first) = &d.partials[0];
        assert_eq!(*src, Source::AgentJson);
        assert_eq!(first.window_start, 971_211_300);
        assert_eq!(first.window_secs, 300);
        assert_eq!(first.service, "web");
        assert_eq!(first.host_id, SYNTHETIC_HOST);
        assert_eq!(first.groups.len(), 1);
        assert_eq!(first.groups[0].0, ClientKey::V4([10, 0, 0, 1]));
        assert_eq!(first.groups[0].1.requests, 2);
        assert_eq!(first.groups[0].1.bytes, 2326);
        assert_eq!(first.groups[0].1.client_errors(), 1);
        let second = &d.partials[1].1;
        assert_eq!(second.window_start, 971_211_600);
        assert_eq!(second.groups[0].1.server_errors(), 1);
        assert_ne!(first.flow, second.flow);
        let t = total(&d);
        assert_eq!((t.requests, t.bytes), (3, 2333));
    }

    #[test]
    fn json_numbers_and_bad_json() {
        let data = br#"{"host":"10.0.0.1","datetime":"10/Oct/2000:13:55:36 +0000","response":200,"bytes":5}"#;
        let d = decoder().decode(data, "1").expect("decodes");
        assert_eq!(total(&d).bytes, 5);
        assert!(matches!(
            decoder().decode(b"{\"host\": ", "2"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn raw_lines() {
        let data = b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 100 \"-\" \"ua\"\r\n\
\n\
garbage\n\
::1 - - [10/Oct/2000:13:55:37 -0700] \"GET / HTTP/1.0\" 500 - \"-\" \"ua\"\n";
        let d = decoder().decode(data, "7").expect("decodes");
        assert_eq!(d.lines, 2);
        assert_eq!(d.rejected_lines, 1);
        assert_eq!(d.partials.len(), 1);
        let t = total(&d);
        assert_eq!((t.requests, t.bytes, t.server_errors()), (2, 100, 1));
    }

    #[test]
    fn partial_and_kpl() {
        let mut stats = ClientStats::default();
        stats.record(Some(200), 10, Some(1500));
        let p = Partial {
            host_id: "h1".into(),
            service: "shop".into(),
            flow: "access".into(),
            window_start: 1_700_000_100,
            window_secs: 300,
            sequence: 4,
            late: false,
            groups: vec![(ClientKey::V4([10, 0, 0, 9]), stats)],
            overflow: ClientStats::default(),
            overflow_clients: 0,
            rejected_lines: 0,
            reject_samples: Vec::new(),
        };
        let d = decoder().decode(&p.encode(), "1").expect("partial");
        assert_eq!(d.partials, vec![(Source::Partial, p.clone())]);

        let inner = vec![
            kpl::KplRecord {
                partition_key: "a".into(),
                explicit_hash_key: None,
                data: p.encode(),
            },
            kpl::KplRecord {
                partition_key: "b".into(),
                explicit_hash_key: None,
                data: b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"ua\"\n".to_vec(),
            },
        ];
        let d = decoder().decode(&kpl::aggregate(&inner), "9").expect("kpl");
        assert_eq!(d.kpl_inner, 2);
        assert_eq!(d.partials.len(), 2);
        assert_eq!(d.partials[1].1.flow, "9/1#0");

        let nested = kpl::aggregate(&[kpl::KplRecord {
            partition_key: "n".into(),
            explicit_hash_key: None,
            data: kpl::aggregate(&inner),
        }]);
        assert!(decoder().decode(&nested, "3").is_err());
    }

    #[test]
    fn poison() {
        assert!(decoder().decode(b"\0TRP\x01\xff\xff\xff", "1").is_err());
        assert!(decoder().decode(b"\0TRP\x09", "1").is_err());
        let mut bad_kpl = kpl::MAGIC.to_vec();
        bad_kpl.extend_from_slice(&[0u8; 20]);
        assert!(decoder().decode(&bad_kpl, "1").is_err());
    }
}
