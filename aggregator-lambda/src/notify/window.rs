//! Which window a message is about: the periods an alarm change covers, and
//! the one window to report among them. Pure.

use std::collections::BTreeMap;

use super::alarm::AlarmChange;

/// One application's requests in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTotal {
    /// The application.
    pub application: String,
    /// Window start, seconds since the epoch.
    pub window_start: i64,
    /// Window length in seconds.
    pub window_secs: u32,
    /// The window's total: Sum over every datapoint of the window.
    pub requests: f64,
    /// The same total per `Service` (empty when only the rollup was read).
    pub per_service: BTreeMap<String, f64>,
}

/// The windows an alarm change is about: `EvaluationPeriods + 2` periods
/// before the state change (windows arrive after they close) up to the
/// end of the period that holds it.
pub fn evaluation_range(change: &AlarmChange) -> (i64, i64) {
    let p = i64::from(change.period.max(60));
    let end = (change.time.div_euclid(p) + 1) * p;
    let start = end - p * (i64::from(change.evaluation_periods) + 2);
    (start, end)
}

/// The window to report: for `ALARM`, the largest window above the
/// threshold (the largest window when there is no threshold); otherwise
/// the latest window. `None` when there is no window, or in `ALARM` none is
/// above the threshold.
pub fn pick_window(windows: Vec<WindowTotal>, change: &AlarmChange) -> Option<WindowTotal> {
    if change.state == "ALARM" {
        let threshold = change.threshold.unwrap_or(f64::NEG_INFINITY);
        windows
            .into_iter()
            .filter(|w| w.requests > threshold)
            .max_by(|a, b| {
                a.requests
                    .total_cmp(&b.requests)
                    .then(a.window_start.cmp(&b.window_start))
            })
    } else {
        windows.into_iter().max_by_key(|w| w.window_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::alarm::parse_alarm;
    use crate::notify::alarm::tests::SINGLE;

    #[test]
    fn range_covers_the_evaluated_windows() {
        let c = parse_alarm(SINGLE).expect("parses");
        let (start, end) = evaluation_range(&c);
        // 07:12:03 -> up to 07:15, five periods back.
        assert_eq!(end, 1_796_109_300);
        assert_eq!(start, end - 5 * 300);
    }

    #[test]
    fn the_reported_window_is_the_largest_above_the_threshold() {
        let c = parse_alarm(SINGLE).expect("parses");
        let w = |start: i64, requests: f64| WindowTotal {
            application: "unknown".into(),
            window_start: start,
            window_secs: 300,
            requests,
            per_service: BTreeMap::new(),
        };
        let picked = pick_window(vec![w(0, 900.0), w(300, 1500.0), w(600, 1200.0)], &c);
        assert_eq!(picked.map(|p| p.window_start), Some(300));
        assert_eq!(pick_window(vec![w(0, 900.0)], &c), None);
        let mut ok = c.clone();
        ok.state = "OK".into();
        assert_eq!(
            pick_window(vec![w(0, 900.0), w(300, 10.0)], &ok).map(|p| p.window_start),
            Some(300)
        );
    }
}
