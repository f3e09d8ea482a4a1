//! `LogFormat::parse` does not allocate once `Parsed` is warm, for good and bad lines.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tailrace_logformat::{LogFormat, Parsed};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// A counting allocator is unsafe by its trait; it only forwards to System.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parse_does_not_allocate_when_warm() {
    let lines: [&[u8]; 6] = [
        br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
        br#"::1 - - [10/Oct/2000:13:55:36 -0700] "\x16\x03\x01" 400 0 "-" "-""#,
        br#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a"b HTTP/1.1" 200 5 "-" "Mozilla "quoted" x""#,
        br#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /" abc 5 "-" "-""#,
        b"garbage \xff\xfe",
        b"",
    ];
    let f = LogFormat::compile("combined").unwrap();
    let custom =
        LogFormat::compile(r#"%h [%{%d/%b/%Y %T}t.%{msec_frac}t %{%z}t] "%r" %>s %D"#).unwrap();
    let custom_line: &[u8] = br#"1.2.3.4 [10/Oct/2000 13:55:36.123 -0700] "GET / HTTP/1.1" 200 17"#;
    let mut p = Parsed::new();
    for l in lines {
        let _ = f.parse(l, &mut p);
    }
    custom.parse(custom_line, &mut p).unwrap();
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..100 {
        for l in lines {
            let _ = f.parse(l, &mut p);
        }
        custom.parse(custom_line, &mut p).unwrap();
    }
    assert_eq!(ALLOCS.load(Ordering::SeqCst), before);
}
