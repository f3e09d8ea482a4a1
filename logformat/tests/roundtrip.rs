//! Property tests: generate field values, render a line the way Apache would, parse
//! it back and get the values (and the JSON) back; arbitrary and mangled bytes never
//! panic and always give valid JSON when they parse.

use proptest::prelude::*;
use serde_json::Value;
use tailrace_logformat::{LogFormat, LogTime, Parsed};

/// Apache's escaping of a logged value: `"` and `\` get a backslash.
fn apache_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn ipv4() -> impl Strategy<Value = String> {
    any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
}

fn client() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ipv4(),
        1 => any::<[u16; 3]>().prop_map(|b| format!("2001:db8:{:x}::{:x}:{:x}", b[0], b[1], b[2])),
        1 => Just("::1".to_string()),
    ]
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![Just("-".to_string()), "[a-z0-9._@]{1,12}"]
}

fn log_time() -> impl Strategy<Value = LogTime> {
    (0i64..4_000_000_000, -56i32..=56).prop_map(|(s, q)| LogTime {
        unix_secs: s,
        nanos: 0,
        offset_secs: q * 900,
    })
}

/// Free text as a client may send it: printable ASCII including `"`, `\` and spaces,
/// plus some non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("-".to_string()),
        4 => "[ -~]{1,60}",
        1 => "[ -~é日]{1,30}",
    ]
}

fn request() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            "[A-Z]{3,7}",
            "/[a-zA-Z0-9/._~%-]{0,40}",
            proptest::option::of("[a-z0-9=&]{1,20}"),
            prop_oneof![Just("HTTP/1.0"), Just("HTTP/1.1"), Just("HTTP/2.0")]
        )
            .prop_map(|(m, p, q, v)| match q {
                Some(q) => format!("{m} {p}?{q} {v}"),
                None => format!("{m} {p} {v}"),
            }),
        1 => Just("-".to_string()),
        1 => Just(r"\x16\x03\x01".to_string()),
        1 => "[A-Z]{3} /[a-z\"]{0,10}",
        1 => "[ -~]{1,40}",
    ]
}

fn bytes_field() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(0u64..10_000_000_000)
}

#[derive(Debug, Clone)]
struct Values {
    client: String,
    ident: String,
    user: String,
    time: LogTime,
    request: String,
    status: u16,
    bytes: Option<u64>,
    referer: String,
    agent: String,
    duration: u32,
    xff: String,
}

fn values() -> impl Strategy<Value = Values> {
    (
        (client(), word(), word(), log_time(), request()),
        (100u16..600, bytes_field(), text(), text(), any::<u32>()),
        prop_oneof![
            Just("-".to_string()),
            proptest::collection::vec(ipv4(), 1..4).prop_map(|v| v.join(", "))
        ],
    )
        .prop_map(
            |(
                (client, ident, user, time, request),
                (status, bytes, referer, agent, duration),
                xff,
            )| {
                Values {
                    client,
                    ident,
                    user,
                    time,
                    request,
                    status,
                    bytes,
                    referer,
                    agent,
                    duration,
                    xff,
                }
            },
        )
}

fn clf(t: &LogTime) -> String {
    let mut v = Vec::new();
    t.write_clf(&mut v);
    String::from_utf8(v).unwrap()
}

fn rfc3339(t: &LogTime) -> String {
    let mut v = Vec::new();
    t.write_rfc3339(&mut v);
    String::from_utf8(v).unwrap()
}

fn dash_null(s: &str) -> Value {
    if s == "-" {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

fn parse_ok(f: &LogFormat, line: &str) -> (Parsed, Value) {
    let mut p = Parsed::new();
    if let Err(e) = f.parse(line.as_bytes(), &mut p) {
        panic!("{line:?} did not parse with {}: {e}", f.spec());
    }
    let mut out = Vec::new();
    p.write_json(f, line.as_bytes(), &mut out);
    let v: Value = serde_json::from_slice(&out).expect("valid JSON");
    (p, v)
}

fn field<'a>(f: &LogFormat, p: &Parsed, line: &'a str, name: &str) -> Option<&'a [u8]> {
    p.field(line.as_bytes(), f.field_index(name).expect("field exists"))
}

fn check_common(f: &LogFormat, p: &Parsed, json: &Value, line: &str, v: &Values) {
    assert_eq!(p.client(line.as_bytes()), Some(v.client.as_bytes()));
    assert_eq!(json["client"], v.client.as_str());
    assert_eq!(json["ident"], dash_null(&v.ident));
    assert_eq!(json["user"], dash_null(&v.user));
    assert_eq!(p.time(), Some(v.time));
    assert_eq!(json["time"], rfc3339(&v.time).as_str());
    let req_raw = apache_escape(&v.request);
    let expect_raw = (req_raw != "-").then_some(req_raw.as_bytes());
    assert_eq!(field(f, p, line, "request"), expect_raw);
    assert_eq!(json["request"], dash_null(&v.request));
    assert_eq!(p.status(), Some(v.status));
    assert_eq!(json["status"], v.status);
    assert_eq!(p.response_bytes(), v.bytes.unwrap_or(0));
    assert_eq!(json["referer"], dash_null(&v.referer));
    assert_eq!(json["user_agent"], dash_null(&v.agent));
}

fn bytes_text(b: Option<u64>) -> String {
    b.map_or("-".to_string(), |b| b.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn combined_round_trip(v in values()) {
        let f = LogFormat::compile("combined").unwrap();
        let line = format!(
            r#"{} {} {} [{}] "{}" {} {} "{}" "{}""#,
            v.client, v.ident, v.user, clf(&v.time), apache_escape(&v.request), v.status,
            bytes_text(v.bytes), apache_escape(&v.referer), apache_escape(&v.agent)
        );
        let (p, json) = parse_ok(&f, &line);
        check_common(&f, &p, &json, &line, &v);
        prop_assert_eq!(&json["bytes"], &Value::from(v.bytes.unwrap_or(0)));
        // The split of a well-formed request line.
        if let Some((m, rest)) = v.request.split_once(' ') {
            prop_assert_eq!(&json["method"], m);
            if let Some((path, proto)) = rest.rsplit_once(' ').filter(|(_, p)| p.starts_with("HTTP/")) {
                prop_assert_eq!(&json["path"], path);
                prop_assert_eq!(&json["protocol"], proto);
            } else {
                prop_assert_eq!(&json["path"], rest);
                prop_assert!(json.get("protocol").is_none());
            }
        } else {
            prop_assert!(json.get("method").is_none());
        }
    }

    #[test]
    fn duration_and_xff_round_trip(v in values()) {
        let f = LogFormat::compile(
            r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D "%{X-Forwarded-For}i""#,
        ).unwrap();
        let line = format!(
            r#"{} {} {} [{}] "{}" {} {} "{}" "{}" {} "{}""#,
            v.client, v.ident, v.user, clf(&v.time), apache_escape(&v.request), v.status,
            bytes_text(v.bytes), apache_escape(&v.referer), apache_escape(&v.agent),
            v.duration, v.xff
        );
        let (p, json) = parse_ok(&f, &line);
        check_common(&f, &p, &json, &line, &v);
        prop_assert_eq!(p.duration_us(), Some(u64::from(v.duration)));
        prop_assert_eq!(&json["duration_us"], &Value::from(v.duration));
        prop_assert_eq!(&json["x_forwarded_for"], &dash_null(&v.xff));
        let expect_xff = (v.xff != "-").then_some(v.xff.as_bytes());
        prop_assert_eq!(field(&f, &p, &line, "x_forwarded_for"), expect_xff);
    }

    #[test]
    fn vhost_combined_round_trip(v in values(), vhost in "[a-z]{1,10}\\.example\\.com", port in 1u16..) {
        let f = LogFormat::compile("vhost_combined").unwrap();
        let line = format!(
            r#"{}:{} {} {} {} [{}] "{}" {} {} "{}" "{}""#,
            vhost, port, v.client, v.ident, v.user, clf(&v.time), apache_escape(&v.request),
            v.status, bytes_text(v.bytes), apache_escape(&v.referer), apache_escape(&v.agent)
        );
        let (p, json) = parse_ok(&f, &line);
        check_common(&f, &p, &json, &line, &v);
        prop_assert_eq!(&json["vhost"], vhost.as_str());
        prop_assert_eq!(&json["port"], &Value::from(port));
        prop_assert_eq!(&json["bytes_out"], &Value::from(v.bytes.unwrap_or(0)));
    }

    #[test]
    fn custom_time_round_trip(
        t in log_time(), ms in 0u32..1000, client in client(), req in request(), status in 100u16..600, d in 0u32..100_000,
    ) {
        let f = LogFormat::compile(r#"%a [%{%Y-%m-%dT%H:%M:%S}t.%{msec_frac}t %{%z}t] "%r" %>s %{ms}T"#).unwrap();
        let t = LogTime { nanos: ms * 1_000_000, ..t };
        let mut local = Vec::new();
        LogTime { unix_secs: t.unix_secs + i64::from(t.offset_secs), nanos: 0, offset_secs: 0 }.write_rfc3339(&mut local);
        let local = String::from_utf8(local).unwrap();
        let (ymdhms, _) = local.split_at(19);
        let mut zone = clf(&t);
        let zone = zone.split_off(zone.len() - 5);
        let line = format!(r#"{client} [{ymdhms}.{ms:03} {zone}] "{}" {status} {d}"#, apache_escape(&req));
        let (p, json) = parse_ok(&f, &line);
        prop_assert_eq!(p.time(), Some(t));
        let want = rfc3339(&t);
        prop_assert_eq!(&json["time"], want.as_str());
        prop_assert_eq!(p.duration_us(), Some(u64::from(d) * 1000));
        prop_assert_eq!(p.client(line.as_bytes()), Some(client.as_bytes()));
    }

    /// Quotes Apache did not escape (another writer) still parse when unambiguous.
    #[test]
    fn raw_quotes_in_last_field(v in values(), agent in "[a-z \"]{0,30}") {
        let f = LogFormat::compile("combined").unwrap();
        let line = format!(
            r#"{} - - [{}] "GET / HTTP/1.1" {} 1 "-" "{}""#,
            v.client, clf(&v.time), v.status, agent
        );
        let (p, _) = parse_ok(&f, &line);
        let expect = (agent != "-").then_some(agent.as_bytes());
        prop_assert_eq!(field(&f, &p, &line, "user_agent"), expect);
    }

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        for spec in ["common", "combined", "vhost_combined", "%h %{%Y %j %I %p %Z}t %>s%b %{X}i%U", "%{sec}t.%{usec_frac}t %D %T"] {
            let f = LogFormat::compile(spec).unwrap();
            let mut p = Parsed::new();
            if f.parse(&line, &mut p).is_ok() {
                let mut out = Vec::new();
                p.write_json(&f, &line, &mut out);
                prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
            }
        }
    }

    #[test]
    fn mangled_lines_never_panic(v in values(), cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), truncate in any::<prop::sample::Index>()) {
        let f = LogFormat::compile("combined").unwrap();
        let mut line = format!(
            r#"{} {} {} [{}] "{}" {} {} "{}" "{}""#,
            v.client, v.ident, v.user, clf(&v.time), apache_escape(&v.request), v.status,
            bytes_text(v.bytes), apache_escape(&v.referer), apache_escape(&v.agent)
        ).into_bytes();
        for (i, b) in cuts {
            let i = i.index(line.len());
            line[i] = b;
        }
        let line = &line[..truncate.index(line.len() + 1)];
        let mut p = Parsed::new();
        match f.parse(line, &mut p) {
            Ok(()) => {
                let mut out = Vec::new();
                p.write_json(&f, line, &mut out);
                prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
            }
            Err(e) => prop_assert!(e.column <= line.len()),
        }
    }

    #[test]
    fn arbitrary_formats_never_panic(spec in "[%a-zA-Z{}<>!0-9 \"\\[\\]:.-]{0,30}", line in "[ -~]{0,60}") {
        if let Ok(f) = LogFormat::compile(&spec) {
            let mut p = Parsed::new();
            if f.parse(line.as_bytes(), &mut p).is_ok() {
                let mut out = Vec::new();
                p.write_json(&f, line.as_bytes(), &mut out);
                prop_assert!(serde_json::from_slice::<Value>(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
            }
        }
    }
}
