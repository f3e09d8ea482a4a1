//! Unit tests: every directive and preset, the odd lines real servers write, JSON.

use crate::{Expected, LogFormat, LogTime, ParseError, Parsed};

fn parse<'a>(fmt: &str, line: &'a str) -> (LogFormat, Parsed, &'a [u8]) {
    let f = LogFormat::compile(fmt).unwrap_or_else(|e| panic!("compile {fmt}: {e}"));
    let mut p = Parsed::new();
    f.parse(line.as_bytes(), &mut p)
        .unwrap_or_else(|e| panic!("parse {line:?} with {fmt}: {e}"));
    (f, p, line.as_bytes())
}

fn get<'a>(f: &LogFormat, p: &Parsed, line: &'a [u8], name: &str) -> Option<&'a str> {
    let idx = f
        .field_index(name)
        .unwrap_or_else(|| panic!("no field {name}"));
    p.field(line, idx).map(|b| std::str::from_utf8(b).unwrap())
}

fn json(f: &LogFormat, p: &Parsed, line: &[u8]) -> serde_json::Value {
    let mut out = Vec::new();
    p.write_json(f, line, &mut out);
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("invalid JSON {}: {e}", String::from_utf8_lossy(&out)))
}

fn err(fmt: &str, line: &str) -> ParseError {
    let f = LogFormat::compile(fmt).unwrap();
    let mut p = Parsed::new();
    f.parse(line.as_bytes(), &mut p).unwrap_err()
}

const APACHE_EXAMPLE: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

#[test]
fn preset_common() {
    let line =
        r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
    let (f, p, l) = parse("common", line);
    assert_eq!(f.spec(), crate::COMMON);
    assert_eq!(p.client(l), Some(&b"127.0.0.1"[..]));
    assert_eq!(get(&f, &p, l, "ident"), None);
    assert_eq!(get(&f, &p, l, "user"), Some("frank"));
    assert_eq!(get(&f, &p, l, "time"), Some("10/Oct/2000:13:55:36 -0700"));
    assert_eq!(
        p.time(),
        Some(LogTime {
            unix_secs: 971_211_336,
            nanos: 0,
            offset_secs: -25_200
        })
    );
    assert_eq!(p.status(), Some(200));
    assert_eq!(p.response_bytes(), 2326);
    assert_eq!(p.duration_us(), None);
    assert!(f.has_time());
    assert!(!f.has_latency());
    assert_eq!(
        f.field_names().collect::<Vec<_>>(),
        ["client", "ident", "user", "time", "request", "status", "bytes"]
    );
}

#[test]
fn preset_combined_json() {
    let (f, p, l) = parse("combined", APACHE_EXAMPLE);
    assert_eq!(
        get(&f, &p, l, "referer"),
        Some("http://www.example.com/start.html")
    );
    let v = json(&f, &p, l);
    assert_eq!(
        v,
        serde_json::json!({
            "client": "127.0.0.1", "ident": null, "user": "frank",
            "time": "2000-10-10T13:55:36-07:00",
            "request": "GET /apache_pb.gif HTTP/1.0", "method": "GET",
            "path": "/apache_pb.gif", "protocol": "HTTP/1.0",
            "status": 200, "bytes": 2326,
            "referer": "http://www.example.com/start.html",
            "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)"
        })
    );
}

#[test]
fn preset_vhost_combined() {
    let line = r#"www.example.com:443 2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] "GET /x?y=1 HTTP/2.0" 304 512 "-" "curl/8.0""#;
    let (f, p, l) = parse("vhost_combined", line);
    assert_eq!(get(&f, &p, l, "vhost"), Some("www.example.com"));
    assert_eq!(p.client(l), Some(&b"2001:db8::1"[..]));
    assert_eq!(p.status(), Some(304));
    assert_eq!(p.response_bytes(), 512);
    let v = json(&f, &p, l);
    assert_eq!(v["port"], 443);
    assert_eq!(v["bytes_out"], 512);
    assert_eq!(v["referer"], serde_json::Value::Null);
    assert_eq!(v["user_agent"], "curl/8.0");
    assert_eq!(v["path"], "/x?y=1");
    assert_eq!(v["time"], "2000-10-10T13:55:36+00:00");
}

#[test]
fn odd_lines_from_real_apache() {
    let f = "combined";
    let (fmt, p, l) = parse(
        "common",
        r#"::1 - - [10/Oct/2000:13:55:36 -0700] "\x16\x03\x01" 400 0"#,
    );
    assert_eq!(p.client(l), Some(&b"::1"[..]));
    assert_eq!(p.status(), Some(400));
    let v = json(&fmt, &p, l);
    assert_eq!(v["request"], r"\x16\x03\x01");
    assert!(v.get("method").is_none());

    let (fmt, p, l) = parse(
        "common",
        r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "-" 408 -"#,
    );
    assert_eq!(p.status(), Some(408));
    assert_eq!(p.response_bytes(), 0);
    let v = json(&fmt, &p, l);
    assert_eq!(v["request"], serde_json::Value::Null);
    assert_eq!(v["bytes"], 0);

    let (fmt, p, l) = parse(
        "common",
        r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /" 200 1"#,
    );
    let v = json(&fmt, &p, l);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/");
    assert!(v.get("protocol").is_none());

    // Escaped quote inside the request and the agent.
    let line = r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.1" 200 5 "-" "say \"hi\" \\o/""#;
    let (fmt, p, l) = parse(f, line);
    assert_eq!(get(&fmt, &p, l, "request"), Some(r#"GET /a\"b HTTP/1.1"#));
    let v = json(&fmt, &p, l);
    assert_eq!(v["path"], "/a\"b");
    assert_eq!(v["user_agent"], r#"say "hi" \o/"#);

    // A raw quote Apache did not escape (e.g. written by another server).
    let line = r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a"b HTTP/1.1" 200 5 "-" "Mozilla "quoted" x""#;
    let (fmt, p, l) = parse(f, line);
    assert_eq!(get(&fmt, &p, l, "request"), Some(r#"GET /a"b HTTP/1.1"#));
    assert_eq!(
        get(&fmt, &p, l, "user_agent"),
        Some(r#"Mozilla "quoted" x"#)
    );
    // Even one followed by a space.
    let line = r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a" b HTTP/1.1" 200 5 "-" "x""#;
    let (fmt, p, l) = parse(f, line);
    assert_eq!(get(&fmt, &p, l, "request"), Some(r#"GET /a" b HTTP/1.1"#));
    assert_eq!(p.status(), Some(200));

    // A user name with a space.
    let line = r#"1.2.3.4 - john smith [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5"#;
    let (fmt, p, l) = parse("common", line);
    assert_eq!(get(&fmt, &p, l, "user"), Some("john smith"));

    // Trailing \r.
    let line = "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 5\r";
    let (_, p, _) = parse("common", line);
    assert_eq!(p.response_bytes(), 5);
}

#[test]
fn non_utf8_is_valid_json() {
    let f = LogFormat::compile("combined").unwrap();
    let mut line = br#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /caf"#.to_vec();
    line.extend_from_slice(b"\xe9\xff HTTP/1.1\" 200 5 \"-\" \"\xc3\xa9t\xc3\"");
    let mut p = Parsed::new();
    f.parse(&line, &mut p).unwrap();
    let v = json(&f, &p, &line);
    assert_eq!(v["path"], "caf\u{FFFD}\u{FFFD}".replace("caf", "/caf"));
    assert_eq!(v["user_agent"], "ét\u{FFFD}");
    // Control characters are escaped.
    let (f, p, l) = parse("%h %{X}i", "a b\x01c\"\\");
    let mut out = Vec::new();
    p.write_json(&f, l, &mut out);
    assert_eq!(out, br#"{"client":"a","x":"b\u0001c\"\\"}"#);
}

#[test]
fn every_directive() {
    let fmt = r#"%a %{c}a %A %h %{c}h %l %u %t "%r" %m %U %q %H %>s %s %b %B %O %I %S %D %T %{ms}T %v %V %p %{remote}p %{local}p %{canonical}p "%{X-Forwarded-For}i" "%{Content-Type}o" "%{UNIQUE_ID}e" %{sid}C %{note}n %X %k %L %P %{tid}P %{hextid}P %R %f %{x}^ti %{y}^to 100%%"#;
    let line = r#"10.0.0.9 10.0.0.8 10.0.0.1 host.example 10.0.0.7 ident bob [10/Oct/2000:13:55:36 -0700] "POST /p?q=1 HTTP/1.1" POST /p ?q=1 HTTP/1.1 201 200 10 11 12 13 14 1500 2 1500 vh sn 443 55123 8443 443 "1.1.1.1, 2.2.2.2" "text/html" "abc" s1 n1 + 3 logid 1234 5678 0x1f handler /var/www/x t1 t2 100%"#;
    let (f, p, l) = parse(fmt, line);
    assert_eq!(p.client(l), Some(&b"10.0.0.9"[..]));
    assert_eq!(p.status(), Some(201));
    assert_eq!(p.response_bytes(), 10);
    assert_eq!(p.duration_us(), Some(1500));
    assert!(f.has_latency());
    let v = json(&f, &p, l);
    let expect: serde_json::Value = serde_json::from_str(
        r#"{
        "client": "10.0.0.9", "peer": "10.0.0.8", "local_ip": "10.0.0.1",
        "remote_host": "host.example", "peer_host": "10.0.0.7", "ident": "ident", "user": "bob",
        "time": "2000-10-10T13:55:36-07:00", "request": "POST /p?q=1 HTTP/1.1",
        "method": "POST", "path": "/p", "query": "?q=1", "protocol": "HTTP/1.1",
        "status": 201, "original_status": 200, "bytes": 10, "bytes_2": 11, "bytes_out": 12,
        "bytes_in": 13, "bytes_total": 14, "duration_us": 1500, "duration_s": 2,
        "duration_ms": 1500, "vhost": "vh", "server_name": "sn", "port": 443,
        "remote_port": 55123, "local_port": 8443, "port_2": 443,
        "x_forwarded_for": "1.1.1.1, 2.2.2.2", "resp_content_type": "text/html",
        "env_unique_id": "abc", "cookie_sid": "s1", "note_note": "n1",
        "connection_status": "+", "keepalive": 3, "log_id": "logid", "pid": 1234, "tid": 5678,
        "tid_2": "0x1f", "handler": "handler", "filename": "/var/www/x",
        "trailer_in_x": "t1", "trailer_out_y": "t2"
    }"#,
    )
    .unwrap();
    assert_eq!(v, expect);
    // The explicit %m/%U/%H keep their names; %r does not repeat them.
    let mut out = Vec::new();
    p.write_json(&f, l, &mut out);
    let s = String::from_utf8(out).unwrap();
    assert_eq!(s.matches("\"method\"").count(), 1);
}

#[test]
fn conditions_and_modifiers() {
    let fmt = r#"%!200h %<s %>s %400,501{User-agent}i %!200,304{Referer}i"#;
    let (f, p, l) = parse(fmt, "- 302 200 - http://r");
    assert_eq!(p.client(l), None);
    assert_eq!(p.status(), Some(200));
    assert_eq!(get(&f, &p, l, "user_agent"), None);
    assert_eq!(get(&f, &p, l, "referer"), Some("http://r"));
    // %s alone is the status.
    let (_, p, _) = parse("%s", "404");
    assert_eq!(p.status(), Some(404));
    let (_, p, _) = parse("%s", "-");
    assert_eq!(p.status(), None);
}

#[test]
fn durations() {
    for (fmt, line, us) in [
        ("%D", "1234", 1234),
        ("%T", "3", 3_000_000),
        ("%{s}T", "3", 3_000_000),
        ("%{ms}T", "7", 7000),
        ("%{us}T", "9", 9),
        ("%T %D", "3 3456", 3456),
    ] {
        let (f, p, _) = parse(fmt, line);
        assert!(f.has_latency());
        assert_eq!(p.duration_us(), Some(us), "{fmt}");
    }
    let (_, p, _) = parse("%D", "-");
    assert_eq!(p.duration_us(), None);
}

#[test]
fn bytes_preference() {
    let (_, p, _) = parse("%O %B", "100 90");
    assert_eq!(p.response_bytes(), 90);
    let (_, p, _) = parse("%O", "100");
    assert_eq!(p.response_bytes(), 100);
    let (_, p, _) = parse("%h", "x");
    assert_eq!(p.response_bytes(), 0);
    let (f, p, l) = parse("%I %b", "- -");
    assert_eq!(
        json(&f, &p, l),
        serde_json::json!({"bytes_in": 0, "bytes": 0})
    );
}

#[test]
fn custom_times() {
    let (_, p, _) = parse(
        "[%{%d/%b/%Y %T}t.%{msec_frac}t %{%z}t]",
        "[10/Oct/2000 13:55:36.123 -0700]",
    );
    let t = p.time().unwrap();
    assert_eq!(
        (t.unix_secs, t.nanos, t.offset_secs),
        (971_211_336, 123_000_000, -25_200)
    );
    let mut s = Vec::new();
    t.write_rfc3339(&mut s);
    assert_eq!(s, b"2000-10-10T13:55:36.123-07:00");

    let (_, p, _) = parse("%{%Y-%m-%dT%H:%M:%S%z}t", "2000-10-10T20:55:36+0000");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    let (_, p, _) = parse("%{%F %T}t", "2000-10-10 20:55:36");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    let (_, p, _) = parse(
        "%{%a, %e %B %Y %I:%M:%S %p %Z}t",
        "Tue, 10 October 2000 08:55:36 PM GMT",
    );
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    let (_, p, _) = parse("%{%y %j %H%M%S}t", "00 284 205536");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    let (_, p, _) = parse("%{%s}t", "971211336");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    let (_, p, _) = parse("%{sec}t", "971211336");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    let (_, p, _) = parse("%{msec}t", "971211336123");
    assert_eq!(p.time().unwrap().nanos, 123_000_000);
    let (_, p, _) = parse("%{usec}t", "971211336123456");
    assert_eq!(p.time().unwrap().nanos, 123_456_000);
    let (_, p, _) = parse("%{begin:sec}t.%{begin:usec_frac}t", "971211336.000042");
    assert_eq!(p.time().unwrap().nanos, 42_000);
    let (_, p, _) = parse("%{end:sec}t", "971211336");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    // begin: parts win over end: parts.
    let (_, p, _) = parse("%{end:sec}t %{sec}t", "5 7");
    assert_eq!(p.time().unwrap().unix_secs, 7);
    let (_, p, _) = parse("%{%d/%b/%Y:%H:%M:%S %z}t", "10/Oct/2000:13:55:36 -0700");
    assert_eq!(p.time().unwrap().unix_secs, 971_211_336);
    // A time of day alone is no instant.
    let (f, p, _) = parse("%{%H:%M}t", "13:55");
    assert!(f.has_time());
    assert_eq!(p.time(), None);
}

#[test]
fn parse_errors() {
    let e = err(
        "common",
        r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /" abc 5"#,
    );
    assert_eq!(
        e,
        ParseError {
            column: 49,
            expected: Expected::Text("digits for %>s")
        }
    );
    assert_eq!(e.to_string(), "column 49: expected digits for %>s");
    let e = err(
        "common",
        r#"1.2.3.4 - - 10/Oct/2000:13:55:36 -0700] "GET /" 200 5"#,
    );
    assert_eq!(e.column, 12);
    assert_eq!(e.expected.to_string(), "'[' to open %t");
    let e = err(
        "common",
        r#"1.2.3.4 - - [10/Okt/2000:13:55:36 -0700] "GET /" 200 5"#,
    );
    assert_eq!(e.column, 16);
    let e = err(
        "common",
        r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /" 2x0 5"#,
    );
    assert_eq!(e.column, 50);
    let e = err("%h %b", "1.2.3.4 5x");
    assert_eq!(e.expected, Expected::Text("digits or '-' for %b"));
    let e = err("%h [%u]", "a [b");
    assert_eq!(e.expected, Expected::Byte(b']'));
    assert_eq!(e.to_string(), "column 4: expected ']'");
    let e = err("%>s", "99999999999999999999999");
    assert_eq!(e.column, 0);
    let e = err("%>s", "70000");
    assert_eq!(e.expected, Expected::Text("digits for %>s"));
    let e = err("common", "");
    assert_eq!(e.column, 0);
}

#[test]
fn compile_errors() {
    let e = LogFormat::compile("%h %l %u %Z").unwrap_err();
    assert_eq!(e.column, 9);
    assert_eq!(e.directive, "%Z");
    assert!(
        e.to_string()
            .starts_with("column 9: unknown directive %Z (expected one of %a"),
        "{e}"
    );
    let e = LogFormat::compile("%h %{Referer").unwrap_err();
    assert_eq!(e.column, 4);
    assert!(LogFormat::compile("%h %").is_err());
    assert!(LogFormat::compile("%i").is_err());
    assert!(LogFormat::compile("%{xs}T").is_err());
    assert!(LogFormat::compile("%{x}p").is_err());
    assert!(LogFormat::compile("").is_err());
    let e = LogFormat::compile("%h %{%Y %Q}t").unwrap_err();
    assert_eq!(e.column, 8);
    assert!(e.to_string().contains("%Q"), "{e}");
    // Non-ASCII before the error: columns are chars.
    let e = LogFormat::compile("é %Z").unwrap_err();
    assert_eq!(e.column, 2);
}

#[test]
fn httpd_conf_escapes() {
    let (_, p, _) = parse(r#"%h \"%r\" %>s\t%b"#, "a \"GET / HTTP/1.1\" 200\t5");
    assert_eq!(p.status(), Some(200));
    assert_eq!(p.response_bytes(), 5);
}

#[test]
fn adjacent_fields() {
    let (f, p, l) = parse("%v%U %>s", "example.com/x 200");
    // The first split that lets the rest match.
    assert_eq!(get(&f, &p, l, "vhost"), Some(""));
    assert_eq!(get(&f, &p, l, "path"), Some("example.com/x"));
    let (f, p, l) = parse("%h:%p", "::1:8080");
    assert_eq!(p.client(l), Some(&b"::1"[..]));
    assert_eq!(json(&f, &p, l)["port"], 8080);
}

#[test]
fn field_index_and_names() {
    let f = LogFormat::compile(r#"%h %a "%{X-Forwarded-For}i" %D %{%s}t %{msec_frac}t"#).unwrap();
    assert_eq!(f.field_index("remote_host"), Some(0));
    assert_eq!(f.field_index("client"), Some(1));
    assert_eq!(f.field_index("x_forwarded_for"), Some(2));
    assert_eq!(f.field_index("time"), Some(4));
    assert_eq!(f.field_index("time_2"), Some(5));
    assert_eq!(f.field_index("nope"), None);
    let mut p = Parsed::new();
    let line = br#"h 1.2.3.4 "9.9.9.9" 10 971211336 005"#;
    f.parse(line, &mut p).unwrap();
    assert_eq!(p.client(line), Some(&b"1.2.3.4"[..]));
    assert_eq!(p.time().unwrap().nanos, 5_000_000);
    let v = json(&f, &p, line);
    assert_eq!(v["time"], "2000-10-10T20:55:36.005+00:00");
    assert!(v.get("time_2").is_none());
    // Out of range index is None, not a panic.
    assert_eq!(p.field(line, 99), None);
    assert_eq!(p.field(b"short", 3), None);
}

#[test]
fn parsed_is_reused_without_growth() {
    let f = LogFormat::compile("combined").unwrap();
    let mut p = Parsed::new();
    f.parse(APACHE_EXAMPLE.as_bytes(), &mut p).unwrap();
    let cap = p.spans.capacity();
    let ptr = p.spans.as_ptr();
    for _ in 0..100 {
        f.parse(APACHE_EXAMPLE.as_bytes(), &mut p).unwrap();
        let _ = f.parse(b"garbage", &mut p);
    }
    assert_eq!(p.spans.capacity(), cap);
    assert_eq!(p.spans.as_ptr(), ptr);
}

#[test]
fn send_sync() {
    fn check<T: Send + Sync>() {}
    check::<LogFormat>();
    check::<Parsed>();
}

#[test]
fn huge_numbers_do_not_panic() {
    let f = LogFormat::compile("%{sec}t %{%s}t %D %T").unwrap();
    let mut p = Parsed::new();
    assert!(f.parse(b"-9223372036854775808 1 1 1", &mut p).is_err());
    assert!(f
        .parse(b"9999999999999999999 -9999999999999999999 1 1", &mut p)
        .is_err());
    f.parse(b"9223372036854775807 1 1 18446744073709551615", &mut p)
        .unwrap();
    assert_eq!(p.duration_us(), Some(1));
    let f = LogFormat::compile("%{sec}t %T").unwrap();
    f.parse(b"-9223372036854775807 18446744073709551615", &mut p)
        .unwrap();
    assert_eq!(p.duration_us(), Some(u64::MAX));
    let mut out = Vec::new();
    p.write_json(&f, b"-9223372036854775807 18446744073709551615", &mut out);
    assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
}

#[test]
fn dash_time() {
    let (_, p, _) = parse("%h %t", "a -");
    assert_eq!(p.time(), None);
}

#[test]
fn request_split() {
    use crate::split_request;
    let r = split_request(b"GET /a b HTTP/1.1");
    assert_eq!(r.method, Some(&b"GET"[..]));
    assert_eq!(r.path, Some(&b"/a b"[..]));
    assert_eq!(r.protocol, Some(&b"HTTP/1.1"[..]));
    let r = split_request(b"GET /a b");
    assert_eq!(r.path, Some(&b"/a b"[..]));
    assert_eq!(r.protocol, None);
    assert_eq!(split_request(b"\\x16").method, None);
}

/// Found while writing the fuzz target (`fuzz/regressions/logformat_compile/`): a format of thousands of
/// directives took minutes to compile (JSON names de-duplicated in cubic time) and parsing
/// recursed once per field. The field cap bounds both.
#[test]
fn field_cap() {
    use crate::MAX_FIELDS;
    let at_cap = "%h".repeat(MAX_FIELDS);
    assert_eq!(
        LogFormat::compile(&at_cap)
            .expect("at the cap")
            .field_count(),
        MAX_FIELDS
    );
    let over = format!("{at_cap} %%%u");
    let e = LogFormat::compile(&over).unwrap_err();
    assert_eq!(e.column, 2 * MAX_FIELDS + 3);
    assert_eq!(e.directive, "%u");
    assert!(e.message.contains("too many directives"), "{e}");
    assert!(LogFormat::compile(&"%h".repeat(100_000)).is_err());
}

/// The deepest recursion the cap allows (every field's end may move) fits in a small
/// thread stack, matching line or not.
#[test]
fn field_cap_parses_on_a_small_stack() {
    use crate::MAX_FIELDS;
    let delimited = "%h ".repeat(MAX_FIELDS);
    let open = format!("{}x", "%h%u".repeat(MAX_FIELDS / 2));
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut p = Parsed::new();
            let f = LogFormat::compile(&delimited).expect("compile");
            let line = "a ".repeat(MAX_FIELDS);
            f.parse(line.as_bytes(), &mut p).expect("matching line");
            let short = "a ".repeat(MAX_FIELDS - 1);
            assert!(f.parse(short.as_bytes(), &mut p).is_err());
            let f = LogFormat::compile(&open).expect("compile");
            f.parse(b"abcx", &mut p).expect("matching line");
            assert!(f.parse(&b"ab".repeat(5000), &mut p).is_err());
        })
        .expect("spawn");
    handle.join().expect("no stack overflow");
}

/// One `Parsed` over many lines remembers the last CLF time text and the
/// last time finished (issue #25): a line whose text differs in a single
/// byte, has a longer form of the same offset, or names another zone, or a
/// format with a local-time part, must not be given the remembered time.
#[test]
fn remembered_times_are_only_reused_for_the_same_text() {
    let fresh = |fmt: &str, line: &str| parse(fmt, line).1.time().unwrap();
    let lines = [
        "[10/Oct/2000:13:55:36 -0700] a",
        "[10/Oct/2000:13:55:36 -0700] b",
        "[10/Oct/2000:13:55:37 -0700] c",
        "[10/Oct/2000:13:55:37 -07:00] d",
        "[10/Oct/2000:13:55:37 -07:30] e",
        "[10/Oct/2000:13:55:37 Z] f",
        "[10/Oct/2000:13:55:37 -0700] g",
        "[11/Oct/2000:13:55:37 -0700] h",
    ];
    let f = LogFormat::compile("%t %U").unwrap();
    let mut p = Parsed::new();
    for line in lines.iter().chain(lines.iter().rev()) {
        f.parse(line.as_bytes(), &mut p).unwrap();
        assert_eq!(p.time(), Some(fresh("%t %U", line)), "{line}");
    }
    // A zone-free time is not given to a line whose time is local: the same
    // `Parsed` with a format whose time takes the zone.
    let local = LogFormat::compile("%{%d/%b/%Y:%H:%M:%S}t %U").unwrap();
    for line in ["10/Oct/2000:13:55:36 a", "10/Oct/2000:13:55:36 b"] {
        local.parse(line.as_bytes(), &mut p).unwrap();
        assert_eq!(
            p.time(),
            Some(fresh("%{%d/%b/%Y:%H:%M:%S}t %U", line)),
            "{line}"
        );
    }
}
