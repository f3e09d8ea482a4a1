//! The text a person reads: subject and body of each notification, from
//! what the notifier gathered. Pure: no AWS call here, so every wording is
//! tested without a server.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::join::metadata::UNKNOWN;
use crate::publish::tally::TopClients;
use tailrace_logformat::rfc3339_utc as rfc3339;

use super::alarm::AlarmChange;
use super::owners::Owner;
use super::window::WindowTotal;

/// SNS subjects are at most 100 characters.
pub const MAX_SUBJECT: usize = 99;

/// The message for one application (or for the pipeline itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The alarm.
    pub alarm: String,
    /// Its new state.
    pub state: String,
    /// The application (`None` for alarms about the pipeline itself).
    pub application: Option<String>,
    /// Contacts from the metadata file, joined with "; " (empty if none).
    pub contact: String,
    /// The window and its total, when CloudWatch had it.
    pub total: Option<WindowTotal>,
    /// The top clients listed, most requests first.
    pub clients: Vec<(String, u64)>,
    /// SNS subject (at most 99 characters, one line).
    pub subject: String,
    /// The text a person reads.
    pub body: String,
}

/// What the notifier found of the window's total.
#[derive(Debug, Clone, PartialEq)]
pub enum TotalNote {
    /// Read from CloudWatch.
    Read(WindowTotal),
    /// Not readable: why, in words.
    NotReadable(String),
}

/// What the notifier found of the window's top clients.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientsNote {
    /// From the client tallies, with what AWS knows of each listed address.
    Listed {
        /// The top clients and their bounds.
        top: TopClients,
        /// What AWS knows of each of `top.clients`, in order.
        owners: Vec<Owner>,
    },
    /// The tallies hold nothing for this application and window.
    NoneWritten(String),
    /// Tallies are not kept (no `TAILRACE_TALLIES`).
    NotKept,
    /// The tallies could not be read.
    Unreadable(String),
}

/// Everything one application's message says.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplicationReport {
    /// The application.
    pub application: String,
    /// Its contacts from the metadata file ("; "-joined; empty if none).
    pub contact: String,
    /// The window reported (start, seconds), when one is known.
    pub window: Option<(i64, u32)>,
    /// Its total.
    pub total: TotalNote,
    /// Its top clients.
    pub clients: ClientsNote,
    /// When CloudWatch and the tallies were read, seconds since the epoch.
    pub read_at: i64,
}

/// The message for one application.
pub fn application_notification(
    change: &AlarmChange,
    namespace: &str,
    report: ApplicationReport,
) -> Notification {
    let app = &report.application;
    let total = match &report.total {
        TotalNote::Read(t) => Some(t.requests),
        TotalNote::NotReadable(_) => None,
    };
    let tallied = match &report.clients {
        ClientsNote::Listed { top, .. } => Some(top.requests),
        _ => None,
    };
    let hhmm = |start: i64| rfc3339(start).get(11..16).unwrap_or("?").to_owned();
    let subject = match (total, report.window) {
        (Some(n), Some((start, _))) => format!(
            "{}: {app} sent {} requests in the {} UTC window",
            change.state,
            fmt_count(n),
            hhmm(start)
        ),
        (None, Some((start, _))) if tallied.is_some() => format!(
            "{}: {app} sent {} requests in the {} UTC window (tallies)",
            change.state,
            fmt_count(tallied.unwrap_or_default() as f64),
            hhmm(start)
        ),
        _ => format!(
            "{}: {app} ({}): total not yet readable",
            change.state, change.name
        ),
    };
    let who = if app == UNKNOWN {
        "nobody: these clients are in no row of the metadata file; the top clients below \
         say what AWS knows of them"
            .to_owned()
    } else if report.contact.is_empty() {
        "none in the metadata file".to_owned()
    } else {
        report.contact.clone()
    };
    let mut body = format!("tailrace: alarm {} is {}.\n\n", change.name, change.state);
    body.push_str(&format!("Application:  {app}\n"));
    body.push_str(&format!("Contact:      {who}\n"));
    match report.window {
        Some((start, secs)) => body.push_str(&format!(
            "Window:       {} to {} ({} min)\n",
            rfc3339(start),
            rfc3339(start + i64::from(secs)),
            secs / 60
        )),
        None => body.push_str("Window:       not yet known (nothing readable yet)\n"),
    }
    let over = change
        .threshold
        .map(|t| format!(" (threshold {})", fmt_count(t)))
        .unwrap_or_default();
    match &report.total {
        TotalNote::Read(t) => {
            body.push_str(&format!(
                "Requests:     {} in the whole window{over}: the Sum of every datapoint of the \
                 window in CloudWatch ({namespace}), read at {}\n",
                fmt_count(t.requests),
                rfc3339(report.read_at)
            ));
            if !t.per_service.is_empty() {
                let split: Vec<String> = t
                    .per_service
                    .iter()
                    .map(|(s, n)| format!("{s} {}", fmt_count(*n)))
                    .collect();
                body.push_str(&format!("Per service:  {}\n", split.join(", ")));
            }
        }
        TotalNote::NotReadable(why) => {
            body.push_str(&format!(
                "Requests:     not yet readable in CloudWatch ({namespace}) at {}{over}: {why}",
                rfc3339(report.read_at)
            ));
            if let Some(n) = tallied {
                body.push_str(&format!(
                    "; the aggregator's client tallies count {} in the window",
                    fmt_count(n as f64)
                ));
            }
            body.push('\n');
        }
    }
    body.push('\n');
    body.push_str(&clients_section(&report.clients, total, app == UNKNOWN));
    if !change.reason.is_empty() {
        body.push_str(&format!("\nWhy:          {}\n", change.reason));
    }
    if !change.description.is_empty() {
        body.push_str(&format!("\n{}\n", change.description));
    }
    let clients = match &report.clients {
        ClientsNote::Listed { top, .. } => top.clients.clone(),
        _ => Vec::new(),
    };
    Notification {
        alarm: change.name.clone(),
        state: change.state.clone(),
        application: Some(report.application.clone()),
        contact: report.contact,
        total: match report.total {
            TotalNote::Read(t) => Some(t),
            TotalNote::NotReadable(_) => None,
        },
        clients,
        subject: one_line(&subject, MAX_SUBJECT),
        body,
    }
}

/// The "Top clients" part of a message.
fn clients_section(note: &ClientsNote, total: Option<f64>, unknown: bool) -> String {
    let (top, owners) = match note {
        ClientsNote::Listed { top, owners } => (top, owners),
        ClientsNote::NoneWritten(why) => {
            return format!("Top clients:  none recorded for this window: {why}\n")
        }
        ClientsNote::NotKept => {
            return "Top clients:  not kept (the aggregator has no TAILRACE_TALLIES)\n".into()
        }
        ClientsNote::Unreadable(why) => {
            return format!("Top clients:  the client tallies could not be read: {why}\n")
        }
    };
    let mut out = String::new();
    let of = if top.truncated {
        format!("at least {}", top.distinct_clients)
    } else {
        top.distinct_clients.to_string()
    };
    let exactness = if top.bound == 0 {
        "counts exact".to_owned()
    } else {
        let share = total
            .filter(|t| *t > 0.0)
            .map(|t| format!(", {:.2}% of the window", 100.0 * top.bound as f64 / t))
            .unwrap_or_default();
        format!(
            "each count may be low by up to {}{share}",
            fmt_count(top.bound as f64)
        )
    };
    out.push_str(&format!(
        "Top clients:  {} of {of} addresses, from {} host{}; {exactness}\n",
        top.clients.len(),
        top.hosts.len(),
        if top.hosts.len() == 1 { "" } else { "s" }
    ));
    if let Some(t) = total {
        let tallied = top.requests as f64;
        if (tallied - t).abs() >= 0.5 {
            let why = if tallied < t {
                "batches whose tallies were not written, or aggregators without TAILRACE_TALLIES"
            } else {
                "a batch published twice to CloudWatch counts once here, or a datapoint is not \
                 yet visible in CloudWatch"
            };
            out.push_str(&format!(
                "              the tallies hold {} of the window's {} requests ({why})\n",
                fmt_count(tallied),
                fmt_count(t)
            ));
        }
    }
    if top.unattributed > 0 {
        out.push_str(&format!(
            "              {} requests came from clients the agents merged into their overflow \
             group (max_groups_per_window): no address\n",
            fmt_count(top.unattributed as f64)
        ));
    }
    let width = top
        .clients
        .iter()
        .map(|(a, _)| a.len())
        .max()
        .unwrap_or(0)
        .max("address".len());
    out.push_str(&format!(
        "  {:>9}  {:<width$}  what AWS knows\n",
        "requests", "address"
    ));
    for (i, (address, count)) in top.clients.iter().enumerate() {
        let who = owners
            .get(i)
            .map(|o| o.describe(unknown))
            .unwrap_or_default();
        out.push_str(&format!("  {count:>9}  {address:<width$}  {who}\n"));
    }
    out
}

/// The message for an alarm about the pipeline itself, or one no
/// application's window explains.
pub fn pipeline_notification(change: &AlarmChange) -> Notification {
    let subject = one_line(&format!("{}: {}", change.state, change.name), MAX_SUBJECT);
    let mut body = format!(
        "tailrace: alarm {} is {} since {}.\n",
        change.name,
        change.state,
        rfc3339(change.time)
    );
    if let (Some(ns), Some(m)) = (&change.namespace, &change.metric_name) {
        body.push_str(&format!("Metric:       {ns} {m}\n"));
    }
    if !change.reason.is_empty() {
        body.push_str(&format!("Why:          {}\n", change.reason));
    }
    if !change.description.is_empty() {
        body.push_str(&format!("\n{}\n", change.description));
    }
    Notification {
        alarm: change.name.clone(),
        state: change.state.clone(),
        application: None,
        contact: String::new(),
        total: None,
        clients: Vec::new(),
        subject,
        body,
    }
}

/// A count without a fraction when it has none.
pub fn fmt_count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

/// One printable ASCII line of at most `max` characters (SNS subjects).
pub fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > max {
        out.truncate(max - 3);
        out.push_str("...");
    }
    out
}

/// Now, seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::alarm::parse_alarm;
    use crate::notify::alarm::tests::{INSIGHTS, SINGLE};
    use crate::notify::owners::Interface;
    use std::collections::{BTreeMap, BTreeSet};

    fn top(clients: &[(&str, u64)], bound: u64) -> TopClients {
        TopClients {
            clients: clients.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
            bound,
            requests: clients.iter().map(|(_, n)| n).sum(),
            unattributed: 0,
            distinct_clients: clients.len(),
            truncated: bound > 0,
            hosts: BTreeSet::from(["h1".to_string(), "h2".to_string()]),
            per_service: BTreeMap::new(),
        }
    }

    #[test]
    fn an_unknown_flood_lists_addresses_counts_and_owners() {
        let change = parse_alarm(SINGLE).expect("parses");
        let report = ApplicationReport {
            application: "unknown".into(),
            contact: String::new(),
            window: Some((1_796_108_700, 300)),
            total: TotalNote::Read(WindowTotal {
                application: "unknown".into(),
                window_start: 1_796_108_700,
                window_secs: 300,
                requests: 1500.0,
                per_service: BTreeMap::from([("checkout".to_string(), 1500.0)]),
            }),
            clients: ClientsNote::Listed {
                top: top(&[("10.4.2.17", 1200), ("192.0.2.7", 300)], 0),
                owners: vec![
                    Owner::Interfaces(vec![Interface {
                        id: "eni-1".into(),
                        vpc: Some("vpc-1".into()),
                        instance: Some(super::super::owners::InstanceInfo {
                            id: "i-0abc".into(),
                            name: Some("batch-7".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    Owner::Outside,
                ],
            },
            read_at: 1_796_109_130,
        };
        let n = application_notification(&change, "Tailrace", report);
        assert_eq!(
            n.subject,
            "ALARM: unknown sent 1500 requests in the 07:05 UTC window"
        );
        assert!(
            n.body
                .contains("Top clients:  2 of 2 addresses, from 2 hosts; counts exact\n"),
            "{}",
            n.body
        );
        assert!(
            n.body
                .contains("       1200  10.4.2.17  EC2 instance i-0abc \"batch-7\" in vpc-1\n"),
            "{}",
            n.body
        );
        assert!(
            n.body
                .contains("        300  192.0.2.7  outside this account's VPCs\n"),
            "{}",
            n.body
        );
        assert!(n.body.contains("Contact:      nobody"), "{}", n.body);
    }

    #[test]
    fn with_nothing_readable_the_application_and_contact_are_still_named() {
        let mut change = parse_alarm(INSIGHTS).expect("parses");
        change.applications = vec!["search".into()];
        let report = ApplicationReport {
            application: "search".into(),
            contact: "search-team@example.com".into(),
            window: None,
            total: TotalNote::NotReadable("no datapoint yet".into()),
            clients: ClientsNote::NotKept,
            read_at: 1_796_109_130,
        };
        let n = application_notification(&change, "Tailrace", report);
        assert_eq!(
            n.subject,
            "ALARM: search (tailrace-source-application-requests): total not yet readable"
        );
        assert!(n.body.contains("Application:  search\n"), "{}", n.body);
        assert!(
            n.body.contains("Contact:      search-team@example.com\n"),
            "{}",
            n.body
        );
        assert!(
            n.body
                .contains("Requests:     not yet readable in CloudWatch (Tailrace)"),
            "{}",
            n.body
        );
    }

    #[test]
    fn a_bound_and_a_partial_coverage_are_said() {
        let s = clients_section(
            &ClientsNote::Listed {
                top: top(&[("192.0.2.1", 900)], 12),
                owners: vec![Owner::Outside],
            },
            Some(1200.0),
            true,
        );
        assert!(
            s.contains("1 of at least 1 addresses, from 2 hosts; each count may be low by up to 12, 1.00% of the window"),
            "{s}"
        );
        assert!(
            s.contains("the tallies hold 900 of the window's 1200 requests"),
            "{s}"
        );
    }

    #[test]
    fn operational_alarm_is_passed_on() {
        let msg = SINGLE
            .replace(r#"[{"value":"unknown","name":"SourceApplication"}]"#, "[]")
            .replace(
                r#""MetricName":"Requests""#,
                r#""MetricName":"PoisonRecords""#,
            );
        let c = parse_alarm(&msg).expect("parses");
        assert!(!c.is_about_applications());
        let n = pipeline_notification(&c);
        assert_eq!(n.subject, "ALARM: tailrace-unknown-sources");
        assert!(n.body.contains("Tailrace PoisonRecords"), "{}", n.body);
        assert!(n.application.is_none());
    }

    #[test]
    fn subjects_are_one_short_line() {
        let s = one_line(&format!("ALARM: {}\nx", "a".repeat(200)), MAX_SUBJECT);
        assert_eq!(s.len(), MAX_SUBJECT);
        assert!(!s.contains('\n'));
        assert_eq!(fmt_count(1234.0), "1234");
        assert_eq!(fmt_count(0.5), "0.50");
    }
}
