//! The planner against an independent model of what the file must say.
//!
//! A random history of launches, retags, terminations and clock advances in
//! a small address pool (so addresses are reused), each followed by the run
//! the real system would make (an event-driven run for the instance, or a
//! full reconcile). After every run the file is read back with the
//! aggregator's own parser, and every address of the pool must resolve to
//! what the model says: the live owner; else, the last listed owner while its
//! grace lasts; else the hand-written rows (an exact hand-written row always
//! wins); else `unknown`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::validate;
use proptest::prelude::*;
use tailrace_aggregator::join::metadata::Metadata;
use tailrace_inventory::owner::{self, TagKeys};
use tailrace_inventory::plan::{plan, Instance, Observation, State};

const HAND: &str = "# people's rows\nip_or_cidr,application,contact\n10.0.0.0/16,corp,\"corp, net\"\n10.0.0.3,pinned,p@x\n";
const POOL: [&str; 6] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "2001:db8::1",
    "2001:db8::2",
];
const GRACE: Duration = Duration::from_secs(600);

/// Raw tag values and what must be written for them.
fn apps() -> Vec<(String, String)> {
    vec![
        ("web".into(), "web".into()),
        ("a,b \"q\"".into(), "a,b \"q\"".into()),
        ("café".into(), "caf_".into()),
        ("x".repeat(2000), "x".repeat(1024)),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Launch {
        addrs: Vec<usize>,
        app: Option<usize>,
        contact: usize,
    },
    Retag {
        pick: usize,
        app: usize,
    },
    Terminate {
        pick: usize,
        time_known: bool,
    },
    Advance {
        secs: u64,
    },
    Reconcile,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (proptest::collection::vec(0..POOL.len(), 1..3), proptest::option::weighted(0.85, 0..4usize), 0..3usize)
            .prop_map(|(addrs, app, contact)| Op::Launch { addrs, app, contact }),
        1 => (0..64usize, 0..4usize).prop_map(|(pick, app)| Op::Retag { pick, app }),
        2 => (0..64usize, any::<bool>()).prop_map(|(pick, time_known)| Op::Terminate { pick, time_known }),
        2 => (1..400u64).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Reconcile),
    ]
}

const CONTACTS: [&str; 3] = ["ops@x", "Doe, \"Jane\"", "Zoë"];

struct WorldInstance {
    id: String,
    addrs: Vec<IpAddr>,
    tags: Vec<(String, String)>,
    launched: SystemTime,
    gone: Option<SystemTime>,
}

fn observe(w: &WorldInstance, time_known: bool) -> Instance {
    Instance {
        id: w.id.clone(),
        addresses: w.addrs.clone(),
        owner: owner::resolve(&TagKeys::default(), &w.tags, None).map(|r| r.owner),
        launched_at: Some(w.launched),
        state: match w.gone {
            None => State::Live,
            Some(t) => State::Gone(time_known.then_some(t)),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn file_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let apps = apps();
        let pool: Vec<IpAddr> = POOL.iter().map(|a| a.parse().expect("pool ip")).collect();
        let mut now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let mut world: Vec<WorldInstance> = Vec::new();
        // Model: per address, the owner that holds it now, or the last
        // listed owner and when its instance went.
        let mut holder: BTreeMap<IpAddr, (usize, Option<SystemTime>)> = BTreeMap::new();
        let mut model_owner: BTreeMap<usize, Option<(String, String)>> = BTreeMap::new();
        let mut file = HAND.to_string();
        for op in ops {
            let obs = match op {
                Op::Launch { addrs, app, contact } => {
                    let mut mine: Vec<IpAddr> = addrs.iter().map(|&i| pool[i]).collect();
                    mine.sort();
                    mine.dedup();
                    let taken = |a: &IpAddr| world.iter().any(|w| w.gone.is_none() && w.addrs.contains(a));
                    if mine.iter().any(taken) { continue; }
                    let idx = world.len();
                    let mut tags = vec![("tailrace:contact".to_string(), CONTACTS[contact].to_string())];
                    if let Some(a) = app { tags.push(("tailrace:application".into(), apps[a].0.clone())); }
                    model_owner.insert(idx, app.map(|a| (apps[a].1.clone(), CONTACTS[contact].to_string())));
                    for a in &mine {
                        if app.is_some() { holder.insert(*a, (idx, None)); }
                    }
                    world.push(WorldInstance { id: format!("i-{idx:04}"), addrs: mine, tags, launched: now, gone: None });
                    Observation { instances: vec![observe(&world[idx], true)], complete: false }
                }
                Op::Retag { pick, app } => {
                    let live: Vec<usize> = (0..world.len()).filter(|&i| world[i].gone.is_none()).collect();
                    if live.is_empty() { continue; }
                    let idx = live[pick % live.len()];
                    let w = &mut world[idx];
                    w.tags.retain(|(k, _)| k != "tailrace:application");
                    w.tags.push(("tailrace:application".into(), apps[app].0.clone()));
                    let contact = w.tags.iter().find(|(k, _)| k == "tailrace:contact").map(|(_, v)| v.clone()).unwrap_or_default();
                    model_owner.insert(idx, Some((apps[app].1.clone(), contact)));
                    for a in &w.addrs { holder.insert(*a, (idx, None)); }
                    Observation { instances: vec![observe(&world[idx], true)], complete: false }
                }
                Op::Terminate { pick, time_known } => {
                    let live: Vec<usize> = (0..world.len()).filter(|&i| world[i].gone.is_none()).collect();
                    if live.is_empty() { continue; }
                    let idx = live[pick % live.len()];
                    world[idx].gone = Some(now);
                    for (_, h) in holder.iter_mut() {
                        if h.0 == idx { h.1 = Some(now); }
                    }
                    Observation { instances: vec![observe(&world[idx], time_known)], complete: false }
                }
                Op::Advance { secs } => {
                    now += Duration::from_secs(secs);
                    Observation::default()
                }
                Op::Reconcile => Observation {
                    instances: world.iter().map(|w| observe(w, true)).collect(),
                    complete: true,
                },
            };
            let p = plan(Some(&file), &obs, now, GRACE, &validate).expect("plan");
            file = p.text;
            let parsed = Metadata::parse(&file);
            prop_assert!(parsed.errors.is_empty(), "{:?}\n{}", parsed.errors, file);
            prop_assert!(file.starts_with(HAND), "people's rows changed:\n{}", file);
            for a in &pool {
                let expected: (String, String) = if a.to_string() == "10.0.0.3" {
                    ("pinned".into(), "p@x".into())
                } else {
                    let listed = holder.get(a).and_then(|&(idx, gone)| match gone {
                        Some(t) if now.duration_since(t).unwrap_or_default() >= GRACE => None,
                        _ => model_owner[&idx].clone(),
                    });
                    listed.unwrap_or_else(|| if a.is_ipv4() { ("corp".into(), "corp, net".into()) } else { ("unknown".into(), "".into()) })
                };
                let got = parsed.metadata.resolve(Some(*a));
                prop_assert_eq!((got.application.to_string(), got.contact.to_string()), expected, "address {} in\n{}", a, file);
            }
        }
    }
}
