//! The agent raises its soft open-files limit to the hard limit (its own process:
//! lowering the limit would disturb other tests running in parallel).

#[test]
fn soft_limit_reaches_the_hard_limit() {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    // Lower the soft limit first so that raising it is observable.
    let low = hard.min(256);
    rlimit::setrlimit(rlimit::Resource::NOFILE, low, hard).expect("setrlimit");
    assert_eq!(
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .expect("getrlimit")
            .0,
        low
    );
    let now = tailrace_agent::limits::raise_nofile().expect("a limit");
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    assert_eq!(soft, now);
    assert_eq!(soft, hard);
}
