//! The planner's rules one at a time: grace, address reuse, reconcile,
//! precedence of people's rows, and files it must refuse to touch.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::validate;
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_inventory::owner::Owner;
use tailrace_inventory::plan::{plan, Instance, Observation, PlanError, State};
use tailrace_inventory::section::NEW_FILE_HEAD;

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_000_000 + s)
}

fn inst(id: &str, addrs: &[&str], app: Option<&str>, launched: u64, state: State) -> Instance {
    Instance {
        id: id.into(),
        addresses: addrs.iter().map(|a| a.parse().expect("ip")).collect(),
        owner: app.map(|a| Owner {
            application: a.into(),
            contact: format!("{a}@example.com"),
        }),
        launched_at: Some(t(launched)),
        state,
    }
}

fn app_of(text: &str, ip: &str) -> String {
    let ip: IpAddr = ip.parse().expect("ip");
    Metadata::parse(text)
        .metadata
        .resolve(Some(ip))
        .application
        .to_string()
}

fn partial(instances: Vec<Instance>) -> Observation {
    Observation {
        instances,
        complete: false,
    }
}

const GRACE: Duration = Duration::from_secs(1800);

#[test]
fn new_file_then_grace_then_removal() {
    let launch = partial(vec![inst(
        "i-1",
        &["10.0.0.5", "2001:db8::5"],
        Some("web"),
        0,
        State::Live,
    )]);
    let p = plan(None, &launch, t(0), GRACE, &validate).expect("plan");
    assert!(p.write);
    assert!(p.text.starts_with(NEW_FILE_HEAD));
    assert_eq!(p.diff.added.len(), 2);
    assert_eq!(app_of(&p.text, "10.0.0.5"), "web");
    assert_eq!(app_of(&p.text, "2001:db8::5"), "web");

    // The same observation again changes nothing.
    let again = plan(Some(&p.text), &launch, t(10), GRACE, &validate).expect("plan");
    assert!(!again.write && again.diff.is_empty(), "{}", again.diff);

    let gone = partial(vec![inst(
        "i-1",
        &["10.0.0.5", "2001:db8::5"],
        Some("web"),
        0,
        State::Gone(Some(t(100))),
    )]);
    let p2 = plan(Some(&p.text), &gone, t(120), GRACE, &validate).expect("plan");
    assert_eq!(p2.diff.retiring.len(), 2);
    assert_eq!(app_of(&p2.text, "10.0.0.5"), "web", "kept in grace");
    assert!(
        p2.text.contains("gone-since=2025-11-24T16:01:40Z"),
        "{}",
        p2.text
    );

    // One second before the grace ends (counted from the termination) it stays.
    let p3 = plan(
        Some(&p2.text),
        &Observation::default(),
        t(100 + 1799),
        GRACE,
        &validate,
    )
    .expect("plan");
    assert!(!p3.write);
    let p4 = plan(
        Some(&p3.text),
        &Observation::default(),
        t(100 + 1800),
        GRACE,
        &validate,
    )
    .expect("plan");
    assert_eq!(p4.diff.removed.len(), 2);
    assert_eq!(app_of(&p4.text, "10.0.0.5"), "unknown");
}

#[test]
fn reused_address_takes_the_new_owner_at_launch() {
    let p = plan(
        None,
        &partial(vec![inst(
            "i-old",
            &["10.0.0.5"],
            Some("old"),
            0,
            State::Live,
        )]),
        t(0),
        GRACE,
        &validate,
    )
    .expect("plan");
    let p = plan(
        Some(&p.text),
        &partial(vec![inst(
            "i-old",
            &["10.0.0.5"],
            Some("old"),
            0,
            State::Gone(None),
        )]),
        t(60),
        GRACE,
        &validate,
    )
    .expect("plan");
    assert_eq!(app_of(&p.text, "10.0.0.5"), "old");
    let p = plan(
        Some(&p.text),
        &partial(vec![inst(
            "i-new",
            &["10.0.0.5"],
            Some("new"),
            90,
            State::Live,
        )]),
        t(90),
        GRACE,
        &validate,
    )
    .expect("plan");
    assert_eq!(app_of(&p.text, "10.0.0.5"), "new");
    assert_eq!(p.diff.changed.len(), 1);
    assert!(!p.text.contains("gone-since"), "{}", p.text);
}

#[test]
fn two_live_claims_the_later_launch_wins() {
    let obs = partial(vec![
        inst("i-b", &["10.0.0.5"], Some("later"), 50, State::Live),
        inst("i-a", &["10.0.0.5"], Some("earlier"), 10, State::Live),
    ]);
    let p = plan(None, &obs, t(60), GRACE, &validate).expect("plan");
    assert_eq!(app_of(&p.text, "10.0.0.5"), "later");
    assert_eq!(p.diff.conflicts.len(), 1);
    assert_eq!(p.diff.conflicts[0].instance, "i-a");
}

#[test]
fn reconcile_retires_rows_of_instances_it_does_not_find_and_repairs_missed_launches() {
    let p = plan(
        None,
        &partial(vec![inst("i-1", &["10.0.0.1"], Some("a"), 0, State::Live)]),
        t(0),
        GRACE,
        &validate,
    )
    .expect("plan");
    // The termination event of i-1 and the launch event of i-2 were missed.
    let full = Observation {
        instances: vec![inst("i-2", &["10.0.0.2"], Some("b"), 5, State::Live)],
        complete: true,
    };
    let p = plan(Some(&p.text), &full, t(10), GRACE, &validate).expect("plan");
    assert_eq!(p.diff.added.len(), 1);
    assert_eq!(p.diff.retiring.len(), 1);
    assert_eq!(app_of(&p.text, "10.0.0.2"), "b");
    assert_eq!(app_of(&p.text, "10.0.0.1"), "a");
    let p = plan(Some(&p.text), &full, t(10 + 1800), GRACE, &validate).expect("plan");
    assert_eq!(app_of(&p.text, "10.0.0.1"), "unknown");
    assert_eq!(p.diff.removed.len(), 1);
    // An event about one instance leaves the others alone.
    let p2 = plan(Some(&p.text), &partial(vec![]), t(99_999), GRACE, &validate).expect("plan");
    assert_eq!(app_of(&p2.text, "10.0.0.2"), "b");
}

#[test]
fn unlisted_instances_and_tag_loss() {
    let obs = partial(vec![
        inst("i-untagged", &["10.0.0.1"], None, 0, State::Live),
        inst("i-noaddr", &[], Some("x"), 0, State::Live),
        inst("i-ok", &["10.0.0.3"], Some("ok"), 0, State::Live),
    ]);
    let p = plan(None, &obs, t(0), GRACE, &validate).expect("plan");
    assert_eq!(p.diff.unlisted.len(), 2, "{}", p.diff);
    assert_eq!(app_of(&p.text, "10.0.0.1"), "unknown");
    // The tag is removed: the row retires with the grace period.
    let p = plan(
        Some(&p.text),
        &partial(vec![inst("i-ok", &["10.0.0.3"], None, 0, State::Live)]),
        t(5),
        GRACE,
        &validate,
    )
    .expect("plan");
    assert_eq!(p.diff.retiring.len(), 1);
}

#[test]
fn people_rows_win_on_the_exact_address_and_lose_on_a_wider_block() {
    let hand = "ip_or_cidr,application,contact\n10.0.0.0/16,corp,c\n10.0.0.7,pinned,p\n";
    let obs = partial(vec![
        inst("i-1", &["10.0.0.7"], Some("inst"), 0, State::Live),
        inst("i-2", &["10.0.0.8"], Some("inst"), 0, State::Live),
    ]);
    let p = plan(Some(hand), &obs, t(0), GRACE, &validate).expect("plan");
    assert!(p.text.starts_with(hand));
    assert_eq!(app_of(&p.text, "10.0.0.7"), "pinned");
    assert_eq!(app_of(&p.text, "10.0.0.8"), "inst");
    assert_eq!(app_of(&p.text, "10.0.0.9"), "corp");
    assert_eq!(p.diff.conflicts.len(), 1);
    assert!(
        p.diff.conflicts[0].reason.contains("already listed"),
        "{:?}",
        p.diff.conflicts
    );
    assert!(Metadata::parse(&p.text).errors.is_empty());
}

#[test]
fn files_a_person_broke_are_left_alone() {
    let obs = partial(vec![inst("i-1", &["10.0.0.1"], Some("a"), 0, State::Live)]);
    let bad = "ip_or_cidr,application,contact\n10.0.0.0/33,x,y\n";
    match plan(Some(bad), &obs, t(0), GRACE, &validate) {
        Err(PlanError::InvalidFile(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].row, 2);
        }
        other => panic!("expected InvalidFile, got {other:?}"),
    }
    let broken = "ip_or_cidr,application,contact\n# >>> tailrace inventory (rows up to the end marker are rewritten: set tags instead)\n";
    let err = plan(Some(broken), &obs, t(0), GRACE, &validate).expect_err("unterminated");
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(matches!(
        plan(Some(""), &obs, t(0), GRACE, &validate),
        Err(PlanError::InvalidFile(_))
    ));
}

#[test]
fn a_hand_edit_inside_the_section_is_dropped_and_reported() {
    let p = plan(
        None,
        &partial(vec![inst("i-1", &["10.0.0.1"], Some("a"), 0, State::Live)]),
        t(0),
        GRACE,
        &validate,
    )
    .expect("plan");
    let edited = p.text.replace(
        "# <<< tailrace inventory",
        "10.0.0.9,typed-here,x\n# <<< tailrace inventory",
    );
    let p2 = plan(
        Some(&edited),
        &Observation::default(),
        t(1),
        GRACE,
        &validate,
    )
    .expect("plan");
    assert_eq!(p2.diff.ignored.len(), 1);
    assert!(p2.write);
    assert_eq!(app_of(&p2.text, "10.0.0.9"), "unknown");
    assert_eq!(app_of(&p2.text, "10.0.0.1"), "a");
}
